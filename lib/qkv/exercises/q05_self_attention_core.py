"""Checker for the Q5 exercise: self-attention from X, W_Q, W_K and W_V."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import scaled_dot_product_attention
from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_self_attention"]

# (case name, x shape (..., L, d_model), d_k, d_v). d_model, d_k and d_v differ, so
# scaling by the wrong width or a transposed weight fails; the square case catches a
# transposed weight that happens to fit.
_SETTINGS = [
    ("one sequence", (7, 12), 5, 3),
    ("a batch (B, L, d_model)", (3, 7, 12), 5, 3),
    ("square weights, d_model = d_k = d_v", (2, 6, 8), 8, 8),
    ("one token", (2, 1, 9), 4, 6),
]


def _self_attention_case(seed: int, name: str, x_shape, d_k: int, d_v: int) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        d_model = x_shape[-1]
        x = torch.randn(x_shape, generator=g, dtype=torch.float64)
        w_q, w_k = torch.randn(2, d_model, d_k, generator=g, dtype=torch.float64)
        w_v = torch.randn(d_model, d_v, generator=g, dtype=torch.float64)
        got = fn(x, w_q, w_k, w_v)  # run_checks fails it if it changes an input
        expected = scaled_dot_product_attention(x @ w_q, x @ w_k, x @ w_v)
        where = f"x {tuple(x_shape)}, d_k={d_k}, d_v={d_v}"
        assert_close(got, expected, where, atol=1e-8)

    return Case(name, run)


def check_self_attention(fn: Callable[..., torch.Tensor]) -> Verdict:
    """Check the reader's ``self_attention(x, w_q, w_k, w_v)`` from Q5.

    ``fn`` takes ``x: (..., L, d_model)`` and the projection matrices in the
    paper's layout, ``w_q, w_k: (d_model, d_k)`` and ``w_v: (d_model, d_v)``
    (so ``Q = x @ w_q``), all float64, and must return
    ``softmax(Q Kᵀ / sqrt(d_k)) V`` of shape ``(..., L, d_v)`` without changing
    its inputs. Compared with :func:`qkv.attention.scaled_dot_product_attention`
    on seeded random inputs.

    Used in: Q5 (chapters/attention/q05_self_attention_core).
    """
    cases = [_self_attention_case(seed, *setting) for seed, setting in enumerate(_SETTINGS)]
    return run_checks("self_attention", fn, cases)
