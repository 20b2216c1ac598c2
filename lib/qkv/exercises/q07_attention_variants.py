"""Checker for the Q7 exercise: rotary position embedding (RoPE)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..positions import apply_rotary, rotary_angles
from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_rotary"]


def _rotate_half(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """RoPE with GPT-NeoX's and Llama's pairing: feature ``i`` turns with ``i + d_k/2``.

    The same rotation angles as :func:`qkv.positions.apply_rotary` (the RoFormer
    paper's interleaved pairs ``(2i, 2i+1)``), applied to a permutation of the
    features, so the score still depends on ``j - i`` only.
    """
    d_k = x.shape[-1]
    if x.dtype == torch.float64:
        positions = positions.to(torch.float64)
    angles = rotary_angles(positions, d_k)  # (L, d_k / 2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., : d_k // 2], x[..., d_k // 2 :]  # (..., L, d_k / 2) each
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


def _rotary_case(seed: int, shape: tuple[int, ...], first: int, dtype: torch.dtype) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(shape, generator=g, dtype=dtype)  # (..., L, d_k)
        positions = torch.arange(first, first + shape[-2])  # (L,)
        got = fn(x, positions.clone())  # run_checks fails it if it changes x
        what = f"x of shape {tuple(shape)}, positions {first}..{first + shape[-2] - 1}"
        # far positions: angles of ~1000 rad carry float32 rounding of ~1e-4 rad
        atol = 1e-5 * max(1, first)
        references = {
            "interleaved pairs (x[2i], x[2i+1]), as in the RoFormer paper": apply_rotary(
                x, positions
            ),
            "rotate-half pairs (x[i], x[i + d_k/2]), as in GPT-NeoX and Llama": _rotate_half(
                x, positions
            ),
        }
        failures = []
        for pairing, expected in references.items():
            try:
                assert_close(got, expected, what, atol=atol)
            except Mismatch as err:
                failures.append(f"with {pairing}: {err}")
            else:
                return  # either pairing is RoPE: accepted
        raise Mismatch("matches neither pairing of RoPE. " + "; ".join(failures))

    return Case(f"shape {tuple(shape)}, first position {first}", run)


def check_rotary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Verdict:
    """Check the reader's ``rotary(x, positions)`` from Q7.

    ``fn`` takes ``x: (..., L, d_k)`` (``d_k`` even) and integer ``positions: (L,)``
    and must return a new ``(..., L, d_k)`` tensor in which every pair of features
    of the token at position ``p`` is rotated by the angle ``p * 10000^(-2i / d_k)``.
    Either pairing is accepted: ``(x[..., 2i], x[..., 2i+1])`` (Su et al. 2021,
    interleaved, as :func:`qkv.positions.apply_rotary`) or ``(x[..., i],
    x[..., i + d_k/2])`` (rotate-half, the GPT-NeoX and Llama code); a wrong answer
    is shown against both. Checked from position 0 and from far positions (where a
    wrong frequency shows), in float32 and float64.

    Used in: Q7 (chapters/attention/q07_attention_variants).
    """
    settings = [
        ((5, 2), 0, torch.float32),
        ((5, 8), 0, torch.float32),
        ((3, 2, 7, 6), 100, torch.float32),
        ((2, 9, 12), 1000, torch.float64),
    ]
    cases = [_rotary_case(seed, *setting) for seed, setting in enumerate(settings)]
    return run_checks("rotary", fn, cases)
