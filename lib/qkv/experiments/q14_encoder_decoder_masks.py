"""Q14 (transformer/q14_encoder_decoder_masks): which outputs move when later tokens change.

- :func:`future_perturbation`: one encoder layer and one decoder layer (random weights);
  every token from position 4 on is replaced; how much the outputs at positions 0-3
  move in each.
- :func:`left_padding_errors`: a left-padded target through a decoder layer, with the
  causal mask alone and with causal AND padding, against each target run alone.
"""

from __future__ import annotations

import torch

from qkv.experiments import Claim, claims, experiment
from qkv.layers import TransformerDecoderLayer, TransformerEncoderLayer
from qkv.masks import key_mask

__all__ = ["CLAIMS", "D_MODEL", "future_perturbation", "left_padding_errors"]

D_MODEL, N_HEADS, D_FF = 32, 4, 64
N, M = 7, 6  # target and source lengths (padded)
CHANGED_FROM = 4  # tokens from this position on are replaced


def _layers(seed: int) -> tuple[TransformerEncoderLayer, TransformerDecoderLayer]:
    torch.manual_seed(seed)
    encoder = TransformerEncoderLayer(D_MODEL, N_HEADS, D_FF).eval()
    decoder = TransformerDecoderLayer(D_MODEL, N_HEADS, D_FF).eval()
    return encoder, decoder


@experiment
def future_perturbation(seed: int) -> dict[str, float]:
    """Replace tokens ``4 ..`` of a ``(2, 7, 32)`` input; how far do outputs ``0 .. 3`` move?

    Returns ``encoder_min``: the smallest, over the two sequences and positions 0-3, of
    the largest change of an encoder output (padding mask only, so every one should
    move), and ``decoder_max``: the largest change of any decoder output there (causal
    mask, so none should). Used in: Q14.
    """
    encoder, decoder = _layers(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, N, D_MODEL, generator=g)
    memory = torch.randn(2, M, D_MODEL, generator=g)  # stands in for the encoder output
    changed = x.clone()
    changed[:, CHANGED_FROM:] = torch.randn(2, N - CHANGED_FROM, D_MODEL, generator=g)
    with torch.no_grad():
        enc = (encoder(changed) - encoder(x))[:, :CHANGED_FROM].abs().amax(dim=-1)  # (B, 4)
        dec = (decoder(changed, memory) - decoder(x, memory))[:, :CHANGED_FROM].abs()
    return {"encoder_min": float(enc.min()), "decoder_max": float(dec.max())}


@experiment
def left_padding_errors(seed: int, lengths: tuple[int, ...] = (4, 6)) -> dict[str, float]:
    """Largest error of a left-padded decoder input at its real tokens, two masks.

    Each target ``b`` has ``lengths[b]`` real tokens at the end of ``N = 7`` positions.
    ``causal_only``: the layer's own causal mask alone (real tokens attend to the padding
    before them); ``causal_and_padding``: with the target padding mask too. The reference
    is each target run alone, unpadded. Returns the smallest error over the targets for
    ``causal_only`` (every target is wrong) and the largest for ``causal_and_padding``.
    Used in: Q14.
    """
    _, decoder = _layers(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), N, D_MODEL, generator=g)
    memory = torch.randn(len(lengths), M, D_MODEL, generator=g)
    real = torch.arange(N) >= N - torch.tensor(lengths)[:, None]  # (B, N), padding first
    causal_only, masked = [], []
    with torch.no_grad():
        plain = decoder(x, memory)  # the layer always adds the causal mask
        padded = decoder(x, memory, self_mask=key_mask(real))
        for b, k in enumerate(lengths):
            alone = decoder(x[b : b + 1, N - k :], memory[b : b + 1])[0]
            causal_only.append(float((plain[b, N - k :] - alone).abs().max()))
            masked.append(float((padded[b, N - k :] - alone).abs().max()))
    return {"causal_only": min(causal_only), "causal_and_padding": max(masked)}


CLAIMS = claims(
    Claim(
        "q14-encoder-sees-future",
        "encoder layer, tokens 4-6 replaced: smallest max-change of an output at positions 0-3",
        lambda seed: future_perturbation(seed)["encoder_min"],
        ">",
        1e-2,
    ),
    Claim(
        "q14-decoder-blind-to-future",
        "decoder layer, tokens 4-6 replaced: largest change of an output at positions 0-3",
        lambda seed: future_perturbation(seed)["decoder_max"],
        "<",
        1e-6,
    ),
    Claim(
        "q14-left-padding-needs-mask",
        "left-padded targets, causal mask only: smallest error at the real tokens",
        lambda seed: left_padding_errors(seed)["causal_only"],
        ">",
        1e-2,
    ),
    Claim(
        "q14-left-padding-masked",
        "left-padded targets, causal AND padding mask: largest error at the real tokens",
        lambda seed: left_padding_errors(seed)["causal_and_padding"],
        "<",
        1e-5,
    ),
)
