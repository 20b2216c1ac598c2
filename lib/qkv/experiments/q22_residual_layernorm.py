"""Q22 (transformer/q22_residual_layernorm): residuals, LayerNorm vs BatchNorm, Post-LN vs Pre-LN.

- :func:`norm_changes`: how much one token's normalised output moves when its batch
  changes (padding, other sentences, eval mode), LayerNorm against BatchNorm.
- :func:`residual_stack_gains`: singular values of the Jacobian of a stack of
  feed-forward blocks with and without residuals, under PyTorch's default
  initialisation or a variance-preserving (He) one.
- :func:`gradient_norms_at_init`: per-layer gradient norms of a Post-LN or Pre-LN
  stack at initialisation (Xiong et al. 2020, Fig. 3).
- The high-learning-rate runs and their claim are Q19's
  (:func:`qkv.experiments.q19_warmup.warmup_run`, ``q19-pre-ln-needs-no-warmup``).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from qkv.experiments import Claim, claims, experiment
from qkv.experiments.q19_warmup import markov_language
from qkv.layers import PositionwiseFeedForward
from qkv.stack import TransformerStack, layer_gradient_norms

__all__ = ["CLAIMS", "DEPTHS", "gradient_norms_at_init", "norm_changes", "residual_stack_gains"]

DEPTHS = (1, 2, 4, 8, 12, 16, 20, 24)  # feed-forward blocks stacked
D = 16  # width of the stacked blocks


@experiment
def norm_changes(seed: int) -> dict[str, dict[str, float]]:
    """Max change of one token's output (sentence 0, position 2) as its batch changes.

    A batch ``(4, 7, 16)`` of standard normal tokens; "batch padded" appends five zero
    vectors per sentence, "other sentences" replaces sentences 1-3 by ``3 N(0, 1) + 1``.
    LayerNorm changes are against the token normalised alone; BatchNorm (``nn.BatchNorm1d``
    over the ``B * L`` tokens, training mode, then eval mode after those three batches
    updated its running statistics) against the token in its own batch.
    Returns ``{"LayerNorm": {...}, "BatchNorm": {...}}``. Used in: Q22.
    """
    g = torch.Generator().manual_seed(seed)
    B, L, d = 4, 7, 16
    x = torch.randn(B, L, d, generator=g)
    padded = torch.cat([x, torch.zeros(B, 5, d)], dim=1)  # (B, L + 5, d)
    other = torch.cat([x[:1], 3 * torch.randn(B - 1, L, d, generator=g) + 1])
    ln = nn.LayerNorm(d)
    alone = ln(x[0, 2][None])[0]
    ln_out = {
        "in its batch": ln(x)[0, 2],
        "batch padded": ln(padded)[0, 2],
        "other sentences": ln(other)[0, 2],
    }
    bn = nn.BatchNorm1d(d)

    def bn_token(t: torch.Tensor) -> torch.Tensor:  # (B, L', d) -> the token's output
        return bn(t.reshape(-1, d)).reshape(t.shape)[0, 2]

    own = bn_token(x)
    bn_out = {"batch padded": bn_token(padded), "other sentences": bn_token(other)}
    bn.eval()
    bn_out["eval mode"] = bn_token(x)
    with torch.no_grad():
        return {
            "LayerNorm": {k: float((v - alone).abs().max()) for k, v in ln_out.items()},
            "BatchNorm": {k: float((v - own).abs().max()) for k, v in bn_out.items()},
        }


@experiment
def residual_stack_gains(seed: int, init: str = "default") -> dict[str, list[float]]:
    """Gains of a stack of ReLU feed-forward blocks (width 16, hidden 64), by depth.

    For each depth in ``DEPTHS``: the largest singular value of the Jacobian of the
    plain stack ``f_k(...f_1(x))`` and the smallest of the residual stack
    ``x + f(x)`` repeated, at one random input; and the cosine between output and input
    at the deepest stack. ``init``: ``"default"`` (PyTorch's ``nn.Linear``, weight
    variance ``1 / (3 fan_in)``) or ``"he"`` (variance ``2 / fan_in``, biases 0: a plain
    ReLU stack then keeps its signal's scale on average). Used in: Q22.
    """
    if init not in ("default", "he"):
        raise ValueError(f"init must be 'default' or 'he', got {init!r}")
    torch.manual_seed(seed)
    blocks = [PositionwiseFeedForward(D, 4 * D, activation="relu") for _ in range(max(DEPTHS))]
    if init == "he":
        for block in blocks:
            for m in block.modules():
                if isinstance(m, nn.Linear):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
    x0 = torch.randn(D)

    def stack(t: torch.Tensor, depth: int, residual: bool) -> torch.Tensor:
        for f in blocks[:depth]:
            t = t + f(t) if residual else f(t)
        return t

    jacobian = torch.autograd.functional.jacobian
    out: dict[str, list[float]] = {"plain max": [], "residual min": []}
    for depth in DEPTHS:
        plain = jacobian(lambda t, k=depth: stack(t, k, False), x0)  # (D, D)
        res = jacobian(lambda t, k=depth: stack(t, k, True), x0)
        out["plain max"].append(float(torch.linalg.svdvals(plain).max()))
        out["residual min"].append(float(torch.linalg.svdvals(res).min()))
    with torch.no_grad():
        deepest = max(DEPTHS)
        cos = torch.nn.functional.cosine_similarity
        out["cosine"] = [float(cos(stack(x0, deepest, r), x0, dim=0)) for r in (False, True)]
    return out


@experiment
def gradient_norms_at_init(
    seed: int, *, norm_first: bool, n_layers: int = 12, d_model: int = 64
) -> list[float]:
    """Per-layer gradient norms of a freshly initialised stack on one batch (64 × 32 tokens).

    ``seed`` fixes the initialisation and the batch; bottom layer first. Used in: Q22.
    """
    torch.manual_seed(seed)
    lang = markov_language()
    model = TransformerStack(
        lang.vocab_size, d_model, 4, 4 * d_model, n_layers, norm_first=norm_first
    )
    return layer_gradient_norms(model, lang.sample(64, 33, generator=seed))


@functools.cache
def _norms(seed: int, norm_first: bool) -> tuple[float, ...]:
    return tuple(gradient_norms_at_init(seed, norm_first=norm_first))


def gradient_growth(seed: int) -> float:
    """(last / first layer gradient norm) of Post-LN divided by that of Pre-LN."""
    post, pre = _norms(seed, False), _norms(seed, True)
    return (post[-1] / post[0]) / (pre[-1] / pre[0])


def last_layer_ratio(seed: int) -> float:
    """Last layer's gradient norm, Post-LN over Pre-LN."""
    return _norms(seed, False)[-1] / _norms(seed, True)[-1]


CLAIMS = claims(
    Claim(
        "q22-gradient-growth",
        "12 layers at init: last/first layer gradient norm, Post-LN over Pre-LN",
        gradient_growth,
        ">",
        2.0,
    ),
    Claim(
        "q22-last-layer-gradient",
        "12 layers at init: last layer's gradient norm, Post-LN over Pre-LN",
        last_layer_ratio,
        ">",
        2.0,
    ),
    Claim(
        "q22-batchnorm-moves",
        "one token's BatchNorm output: smallest change over padding, other sentences, eval mode",
        lambda seed: min(norm_changes(seed)["BatchNorm"].values()),
        ">",
        0.1,
    ),
    Claim(
        "q22-layernorm-still",
        "one token's LayerNorm output: largest change over batch, padding, other sentences",
        lambda seed: max(norm_changes(seed)["LayerNorm"].values()),
        "<",
        1e-6,
    ),
    Claim(
        "q22-plain-stack-vanishes",
        "24 ReLU FFN blocks, PyTorch's default init, no residual: largest singular value",
        lambda seed: residual_stack_gains(seed)["plain max"][-1],
        "<",
        1e-6,
    ),
    Claim(
        "q22-plain-stack-explodes-he",
        "24 ReLU FFN blocks, He init, no residual: largest singular value",
        lambda seed: residual_stack_gains(seed, "he")["plain max"][-1],
        ">",
        10.0,
    ),
    Claim(
        "q22-residual-keeps-gain",
        "24 ReLU FFN blocks, default init: smallest singular value with residuals",
        lambda seed: residual_stack_gains(seed)["residual min"][-1],
        ">",
        1e-2,
    ),
)
