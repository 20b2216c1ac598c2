"""Checker for the Q20 exercise: sliding windows that cover a long sequence."""

from __future__ import annotations

from collections.abc import Callable

import torch

from qkv.longtext import sliding_windows

from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_sliding_windows"]


def _case(length: int, window: int, stride: int) -> Case:
    name = f"L={length}, window={window}, stride={stride}"

    def run(fn: Callable) -> None:
        ids = torch.arange(100, 100 + length)
        expected_windows, expected_starts = sliding_windows(ids, window, stride)
        got = fn(ids.clone(), window, stride)
        if not isinstance(got, tuple) or len(got) != 2:
            raise Mismatch(f"{name}: expected a pair (windows, starts), got {type(got).__name__}")
        assert_close(got[1], expected_starts, f"{name}: starts")
        assert_close(got[0], expected_windows, f"{name}: windows")

    return Case(name, run)


def check_sliding_windows(fn: Callable) -> Verdict:
    """Check the reader's ``my_sliding_windows(ids, window, stride)`` from Q20.

    ``fn`` takes a 1-D tensor ``(L,)`` and must return ``(windows, starts)``
    equal to :func:`qkv.longtext.sliding_windows`: starts every ``stride``
    tokens, a last window that ends at the last token, and one whole window when
    ``L <= window``. Cases include ``L`` shorter than, equal to and one more than
    the window, a stride equal to the window, and lengths that are not a
    multiple of the stride.

    Used in: Q20.
    """
    settings = [(1000, 512, 256), (10, 16, 4), (16, 16, 4), (17, 16, 4), (40, 8, 8), (23, 6, 5)]
    return run_checks("sliding_windows", fn, [_case(*s) for s in settings])
