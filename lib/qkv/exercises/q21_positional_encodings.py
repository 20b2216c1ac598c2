"""Checker for the Q21 exercise: the sinusoidal position encoding table."""

from __future__ import annotations

from collections.abc import Callable

import torch

from qkv.positions import sinusoidal_positions

from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_sinusoidal_table"]


def _table_case(max_len: int, d_model: int) -> Case:
    def run(fn: Callable) -> None:
        expected = sinusoidal_positions(max_len, d_model)  # (max_len, d_model) float32
        assert_close(fn(max_len, d_model), expected, f"max_len={max_len}, d_model={d_model}")

    return Case(f"max_len={max_len}, d_model={d_model}", run)


def check_sinusoidal_table(fn: Callable[[int, int], torch.Tensor]) -> Verdict:
    """Check the reader's ``sinusoidal_table(max_len, d_model)`` from Q21.

    ``fn`` must return the float32 ``(max_len, d_model)`` table of Vaswani et al.
    2017 §3.5: ``PE[pos, 2i] = sin(pos / 10000^(2i/d_model))`` and
    ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model))`` (an odd ``d_model`` ends with
    one extra sine column). Compared with the book's own table, long
    tables included, where a wrong frequency shows.

    Used in: Q21 (chapters/transformer/q21_positional_encodings).
    """
    sizes = [(1, 2), (6, 4), (9, 10), (5, 7), (200, 64), (50, 512)]
    return run_checks("sinusoidal_table", fn, [_table_case(n, d) for n, d in sizes])
