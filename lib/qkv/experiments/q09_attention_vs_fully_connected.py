"""Q9 (chapters/attention/q09_attention_vs_fully_connected): FC token mixer vs attention.

Both layers compute ``y_i = sum_j M_ij x_j``. In :class:`FCTokenMixer` the mixing
matrix ``M`` is a parameter ``(L, L)``; in :class:`AttentionTokenMixer` it is
``softmax(q k^T / sqrt(d_k))``, computed from the input. Each mixer returns its output
and its mixing matrix. :func:`jacobian_mixing_matrix` measures the effective mixing
matrix from the outside, by autograd, so the claim "fixed for FC, input-dependent for
attention" does not rest on the matrices the layers report. :func:`toy_mixers`,
:func:`mixing_change` and :func:`sharpening` are the chapter's experiments as
functions of the seed; ``CLAIMS`` holds the chapter's seed-dependent claims (rerun
over seeds by ``benchmarks/robustness.py``).
Shapes: ``B`` batch, ``L`` tokens, ``d`` features per token.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.attention import attention_entropy, scaled_dot_product_attention
from qkv.experiments import Claim, claims, experiment

__all__ = [
    "FCTokenMixer",
    "AttentionTokenMixer",
    "jacobian_mixing_matrix",
    "ToyMixers",
    "toy_mixers",
    "mixing_change",
    "sharpening",
]


class FCTokenMixer(nn.Module):
    """``nn.Linear(L, L)`` along the length axis, shared by the ``d`` features.

    ``forward(x)`` with ``x: (B, L, d)`` returns ``(y, M)``: ``y = W x + b`` ``(B, L, d)``
    and the mixing matrix ``M = W`` expanded to ``(B, L, L)``, the same for every input.
    Used in: Q9.
    """

    def __init__(self, L: int) -> None:
        super().__init__()
        self.linear = nn.Linear(check_int("L", L, 1), L)  # weight (L, L): (output, input) position

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] != self.linear.in_features:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (B, L={self.linear.in_features}, d), got {got}")
        y = self.linear(x.transpose(1, 2)).transpose(1, 2)  # (B, L, d) -> (B, d, L) -> (B, L, d)
        return y, self.linear.weight.expand(x.shape[0], -1, -1)


class AttentionTokenMixer(nn.Module):
    """Single-head self-attention with values equal to the inputs (``W_V = I``).

    ``M(x) = softmax((x W_Q)(x W_K)^T / sqrt(d))`` with ``W_Q, W_K: (d, d)``, so that
    ``y = M(x) x`` and the mixing matrix is exactly the attention weights.
    ``forward(x)`` with ``x: (B, L, d)``, any ``L``, returns ``(y, M)``, ``M: (B, L, L)``.
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        d = check_int("d", d, 1)
        self.w_q = nn.Parameter(torch.randn(d, d) / d**0.5)
        self.w_k = nn.Parameter(torch.randn(d, d) / d**0.5)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.w_q.shape[0]:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (B, L, d={self.w_q.shape[0]}), got {got}")
        return scaled_dot_product_attention(x @ self.w_q, x @ self.w_k, x, return_weights=True)


def jacobian_mixing_matrix(mixer: nn.Module, x: Tensor) -> Tensor:
    """Effective mixing matrix of ``mixer`` at one sequence ``x: (L, d)``, by autograd.

    ``M_ij = trace(dy_i / dx_j) / d``: the average over features of how much output
    token ``i`` moves with input token ``j``. For a layer ``y = M x + b`` with ``M``
    independent of ``x`` this is exactly ``M``; for attention it is the linearisation
    at ``x`` (the weights plus the softmax's own dependence on ``x``). ``mixer`` maps
    ``(B, L, d)`` to ``(y, ...)``. Returns ``(L, L)``.
    Used in: Q9.
    """
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be one float sequence (L, d), got {got}")
    jacobian = torch.func.jacrev(lambda t: mixer(t[None])[0][0])(x)  # (L, d, L, d)
    return torch.einsum("iaja->ij", jacobian) / x.shape[-1]  # trace of each (d, d) block


class ToyMixers(NamedTuple):
    """The chapter's two mixers and two inputs ``x1, x2: (1, L, d)``."""

    fc: FCTokenMixer
    attention: AttentionTokenMixer
    x1: Tensor
    x2: Tensor


@experiment
def toy_mixers(
    *, seed: int, L: int = 7, d: int = 12, device: str | torch.device | None = None
) -> ToyMixers:
    """An FC token mixer, an attention mixer and two random inputs, all from ``seed``.

    Parameters and inputs are drawn on the CPU, so a seed gives the same numbers on
    every device.
    Used in: Q9.
    """
    check_int("seed", seed, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fc, attention = FCTokenMixer(L), AttentionTokenMixer(d)
        x1, x2 = torch.randn(2, 1, L, d)
    return ToyMixers(fc.to(device), attention.to(device), x1.to(device), x2.to(device))


@experiment
def mixing_change(seed: int, **kwargs) -> dict[str, float]:
    """Largest change of the Jacobian mixing matrix between the two inputs, per mixer.

    Returns ``{"FC": max|M(x1) - M(x2)|, "attention": ...}`` with ``M`` from
    :func:`jacobian_mixing_matrix`; ``kwargs`` go to :func:`toy_mixers`.
    Used in: Q9.
    """
    toy = toy_mixers(seed=seed, **kwargs)
    return {
        name: (jacobian_mixing_matrix(m, toy.x1[0]) - jacobian_mixing_matrix(m, toy.x2[0]))
        .abs()
        .max()
        .item()
        for name, m in (("FC", toy.fc), ("attention", toy.attention))
    }


@experiment
def sharpening(seed: int, factor: float = 3.0, **kwargs) -> float:
    """Drop of attention's mean row entropy (nats) when the input is scaled by ``factor``.

    Scores are quadratic in ``x``, so scaling it sharpens the weights. ``kwargs`` go to
    :func:`toy_mixers`.
    Used in: Q9.
    """
    toy = toy_mixers(seed=seed, **kwargs)
    with torch.no_grad():
        before = attention_entropy(toy.attention(toy.x1)[1]).mean()
        after = attention_entropy(toy.attention(factor * toy.x1)[1]).mean()
    return (before - after).item()


_SEEDS = tuple(range(20))  # the chapter's toy mixers: L = 7 tokens of width d = 12

CLAIMS = claims(
    Claim(
        "q09-fc-change",
        "FC mixer: largest change of the Jacobian mixing matrix, x1 vs x2",
        lambda seed: mixing_change(seed, L=7, d=12)["FC"],
        "<",
        1e-6,
        _SEEDS,
    ),
    Claim(
        "q09-attention-change",
        "attention: largest change of the Jacobian mixing matrix",
        lambda seed: mixing_change(seed, L=7, d=12)["attention"],
        ">",
        0.1,
        _SEEDS,
    ),
    Claim(
        "q09-sharpening",
        "attention: drop of the mean row entropy at 3× input (nats)",
        lambda seed: sharpening(seed, factor=3.0, L=7, d=12),
        ">",
        0.5,
        _SEEDS,
    ),
)
