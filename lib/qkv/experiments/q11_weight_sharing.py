"""Q11 (transformer/q11_weight_sharing): what tying and layer sharing save, and what not.

- :func:`paper_parameter_count`: the parameter count of the Transformer of Vaswani et
  al. 2017 written out from its description (§3), to check a built model against.
- :func:`layer_sharing_cost`: parameters, counted FLOPs and time of a stack that
  reuses one layer (ALBERT) against one with separate layers (a worked example).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from qkv._checks import check_int
from qkv.complexity import count_flops, median_seconds
from qkv.experiments import claims, experiment
from qkv.layers import TransformerEncoderLayer
from qkv.tying import count_parameters

__all__ = ["CLAIMS", "layer_sharing_cost", "paper_parameter_count"]


def paper_parameter_count(
    vocab_size: int, d_model: int, d_ff: int, n_layers: int, *, ties: int = 2
) -> int:
    """Parameters of the original Transformer, counted from the paper's description.

    Per sub-layer: multi-head attention has four ``d_model x d_model`` projections with
    biases (§3.2.2); the feed-forward network two linear maps with biases (§3.3); each
    sub-layer is followed by a LayerNorm (gain and bias, §3.1). An encoder layer has two
    sub-layers, a decoder layer three; ``n_layers`` of each. Positions are sinusoidal (no
    parameters, §3.5) and the output projection has no bias. ``ties``: 0 = three ``V x
    d_model`` matrices, 1 = target embedding shared with the output layer, 2 = all three
    shared (§3.4). Used in: Q11.
    """
    check_int("ties", ties, 0)
    if ties > 2:
        raise ValueError(f"ties must be 0, 1 or 2, got {ties}")
    d = d_model
    attention = 4 * (d * d + d)
    ffn = d * d_ff + d_ff + d_ff * d + d
    norm = 2 * d
    encoder_layer = attention + ffn + 2 * norm
    decoder_layer = 2 * attention + ffn + 3 * norm
    embeddings = (3 - ties) * vocab_size * d
    return embeddings + n_layers * (encoder_layer + decoder_layer)


@experiment
def layer_sharing_cost(
    seed: int, *, d_model: int = 64, n_heads: int = 4, n_layers: int = 6, n_tokens: int = 64
) -> dict[str, dict[str, float]]:
    """ALBERT-style sharing (one layer applied ``n_layers`` times) against separate layers.

    For each stack, on a batch ``(8, n_tokens, d_model)``: ``parameters``
    (:func:`qkv.tying.count_parameters`, shared tensors once), ``flops`` (counted by
    ``FlopCounterMode``) and ``seconds`` (mean of 3 forward passes, for show only).
    Used in: Q11.
    """
    torch.manual_seed(seed)
    one = TransformerEncoderLayer(d_model, n_heads, 4 * d_model).eval()
    stacks = {
        "shared": nn.Sequential(*[one] * n_layers),
        "separate": nn.Sequential(
            *[TransformerEncoderLayer(d_model, n_heads, 4 * d_model) for _ in range(n_layers)]
        ).eval(),
    }
    x = torch.randn(8, n_tokens, d_model, generator=torch.Generator().manual_seed(seed))
    out: dict[str, dict[str, float]] = {}
    for name, stack in stacks.items():
        with torch.no_grad():
            times = median_seconds({name: partial(stack, x)}, repeats=3)
        out[name] = {
            "parameters": count_parameters(stack),
            "flops": count_flops(partial(stack, x))["total"],
            "seconds": times[name],
        }
    return out


CLAIMS = claims()  # the chapter's numbers are counts, not seed-dependent measurements
