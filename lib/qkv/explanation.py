"""What attention weights do and do not tell: two measurable reasons for caution.

1. The weights are not identifiable from the output. ``o = sum_i alpha_i v_i`` is
   linear in ``alpha``; with more keys ``m`` than ``d_v + 1`` there are other
   distributions with the *same* output (Brunner et al. 2020).
   :func:`same_output_weights` finds one far from ``alpha``.
2. Key ``i`` contributes the vector ``alpha_i v_i``, of size ``alpha_i |v_i|``
   (Kobayashi et al. 2020): with value norms that vary, the key with the largest
   weight is often not the largest contributor (:func:`top_weight_is_not_top_contributor`).

Both experiments are functions of a seed, so the chapter and
``benchmarks/robustness.py`` run the same code.

Used in: Q1 (chapters/attention/q01_what_is_attention).
"""

from __future__ import annotations

from itertools import combinations
from typing import NamedTuple

import torch
from torch import Tensor

from qkv.attention import scaled_dot_product_attention

__all__ = [
    "same_output_weights",
    "SameOutput",
    "same_output_experiment",
    "top_weight_is_not_top_contributor",
]


def same_output_weights(alpha: Tensor, values: Tensor, *, blend: float = 0.05) -> Tensor:
    """Another distribution over the ``m`` keys with the same output ``alpha @ values``.

    The distributions ``w >= 0`` with ``w @ values = alpha @ values`` and ``sum w = 1``
    form a polytope whose corners have at most ``d_v + 1`` non-zero weights. This
    solves for every corner (choose ``d_v + 1`` keys, solve the square system, keep the
    non-negative solutions), takes the one farthest from ``alpha`` in L1 distance, and
    mixes in ``blend`` of ``alpha`` so that every weight is positive (hence the softmax
    of some scores, ``log w``). The output is unchanged by the mixing: it is linear.

    Args:
        alpha: ``(m,)`` non-negative weights summing to 1.
        values: ``(m, d_v)`` with ``m > d_v + 1``.
    Returns:
        ``(m,)`` weights.
    """
    if alpha.dim() != 1 or values.dim() != 2 or values.shape[0] != alpha.shape[0]:
        raise ValueError(
            f"expected alpha (m,) and values (m, d_v), got {tuple(alpha.shape)} "
            f"and {tuple(values.shape)}"
        )
    m, d_v = values.shape
    if m <= d_v + 1:
        raise ValueError(f"need more keys than d_v + 1 = {d_v + 1}, got m = {m}")
    constraints = torch.cat([values, torch.ones(m, 1, dtype=values.dtype)], dim=1).T  # (d_v+1, m)
    target = constraints @ alpha  # (d_v + 1,): the output and the total weight
    corners = []
    for kept in map(list, combinations(range(m), d_v + 1)):  # keys with a non-zero weight
        system = constraints[:, kept]
        if torch.linalg.matrix_rank(system) < d_v + 1:
            continue
        w = torch.zeros_like(alpha)
        w[kept] = torch.linalg.solve(system, target)
        if (w >= 0).all():
            corners.append(w)
    farthest = max(corners, key=lambda w: (w - alpha).abs().sum())
    return (1 - blend) * farthest + blend * alpha


class SameOutput(NamedTuple):
    """One draw of :func:`same_output_experiment`: the layer's weights ``alpha (m,)``,
    the other weights ``other (m,)``, the values ``(m, d_v)`` and the output ``(d_v,)``."""

    alpha: Tensor
    other: Tensor
    values: Tensor
    output: Tensor

    @property
    def distance(self) -> float:
        """Total variation distance between the two distributions, in [0, 1]."""
        return 0.5 * (self.other - self.alpha).abs().sum().item()


def same_output_experiment(seed: int, m: int = 8, d_k: int = 4, d_v: int = 3) -> SameOutput:
    """One query attends over ``m`` random keys and values (seeded); return its weights
    and :func:`same_output_weights` for them. Used in: Q1."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(*s, generator=g) for s in ((1, d_k), (m, d_k), (m, d_v)))
    out, alpha = scaled_dot_product_attention(q, k, v, return_weights=True)
    return SameOutput(alpha[0], same_output_weights(alpha[0], v), v, out[0])


def top_weight_is_not_top_contributor(
    seed: int, n_queries: int = 1000, m: int = 10, d: int = 8
) -> float:
    """Share of queries whose largest weight is not on the largest contribution.

    ``n_queries`` random queries attend over ``m`` random keys; the values are random
    with norms spread by a factor ``exp(N(0, 1))`` (in trained models value norms vary
    too). The contribution of key ``i`` is ``alpha_i |v_i|``. Used in: Q1.
    """
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(n_queries, d, generator=g), torch.randn(m, d, generator=g)
    v = torch.randn(m, d, generator=g) * torch.exp(torch.randn(m, 1, generator=g))  # (m, d)
    _, w = scaled_dot_product_attention(q, k, v, return_weights=True)  # (n_queries, m)
    contribution = w * v.norm(dim=-1)  # (n_queries, m): |alpha_i v_i|
    return (w.argmax(-1) != contribution.argmax(-1)).float().mean().item()
