"""Checker for the Q2 exercise: scaled dot-product attention in a few lines."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import scaled_dot_product_attention
from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_attention"]

# (case name, q shape, k shape, v shape, mask shape or None). Leading dims broadcast,
# and so does the mask: (n, m) is shared by every batch and head, (B, 1, 1, m) is a
# padding mask. Every size differs from every other, so a swapped axis fails loudly.
_SETTINGS = [
    ("one head, no mask", (5, 4), (7, 4), (7, 6), None),
    ("(B, h) batch, no mask", (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6), None),
    (
        "mask (n, m) shared by every batch and head",
        (2, 3, 5, 4),
        (2, 3, 7, 4),
        (2, 3, 7, 6),
        (5, 7),
    ),
    ("padding-style mask (B, 1, 1, m)", (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6), (2, 1, 1, 7)),
    ("full mask (B, h, n, m)", (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6), (2, 3, 5, 7)),
    ("k, v shared by the heads (B, 1, m, d)", (3, 2, 6, 5), (3, 1, 9, 5), (3, 1, 9, 3), (6, 9)),
    ("self-attention, n = m, one query", (1, 1, 1, 8), (1, 1, 1, 8), (1, 1, 1, 2), (1, 1)),
]


def _random_mask(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Bool mask, True = may attend, with at least one allowed key in every row."""
    mask = torch.rand(shape, generator=g) < 0.6
    keep = torch.randint(shape[-1], (*shape[:-1], 1), generator=g)  # one key per row
    return mask.scatter(-1, keep, True)


def _attention_case(seed: int, name: str, q_shape, k_shape, v_shape, mask_shape) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        # float64: the reader's few lines and the fused kernel then agree to ~1e-15
        shapes = (q_shape, k_shape, v_shape)
        q, k, v = (torch.randn(s, generator=g, dtype=torch.float64) for s in shapes)
        mask = None if mask_shape is None else _random_mask(mask_shape, g)
        got = fn(q, k, v, mask)  # run_checks fails it if it changes q, k, v or mask
        where = f"q {q_shape}, k {k_shape}, v {v_shape}, mask {mask_shape}"
        k, v = (x.expand(*q.shape[:-2], *x.shape[-2:]) for x in (k, v))  # qkv needs equal dims
        assert_close(got, scaled_dot_product_attention(q, k, v, mask), where, atol=1e-8)

    return Case(name, run)


def check_attention(fn: Callable[..., torch.Tensor]) -> Verdict:
    """Check the reader's ``attention(q, k, v, mask)`` from Q2.

    ``fn`` takes ``q: (..., n, d_k)``, ``k: (..., m, d_k)``, ``v: (..., m, d_v)``
    (float64, leading dims that broadcast, e.g. ``(B, h)``) and ``mask``: ``None``
    or bool broadcastable to ``(..., n, m)``, ``True`` = may attend (every query
    is given at least one allowed key). It must return ``softmax(q kᵀ / sqrt(d_k))
    v`` with masked keys at weight 0, shape ``(..., n, d_v)``, and leave its
    inputs unchanged. Compared with :func:`qkv.attention.scaled_dot_product_attention`
    on seeded random inputs and masks.

    Used in: Q2 (chapters/attention/q02_attention_step_by_step).
    """
    cases = [_attention_case(seed, *setting) for seed, setting in enumerate(_SETTINGS)]
    return run_checks("attention", fn, cases)
