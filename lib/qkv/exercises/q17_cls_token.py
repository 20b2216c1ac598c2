"""Checker for the Q17 exercise: mean pooling over the real tokens."""

from __future__ import annotations

from collections.abc import Callable

import torch

from qkv.masks import masked_mean

from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_mean_pooling"]


def _case(
    name: str, lengths: list[int], L: int, H: int, dtype=torch.float32, *, left: bool = False
) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(len(lengths) * 100 + L)
        hidden = torch.randn(len(lengths), L, H, generator=g).to(dtype)
        attention_mask = (torch.arange(L) < torch.tensor(lengths)[:, None]).long()
        if left:  # padding first, as decoder-style batches do: the real tokens are at the end
            attention_mask = attention_mask.flip(-1)
        expected = masked_mean(hidden, attention_mask.bool())
        got = fn(hidden.clone(), attention_mask.clone())
        assert_close(got, expected, f"{name}, lengths {lengths}", atol=1e-5)

    return Case(name, run)


def check_mean_pooling(fn: Callable) -> Verdict:
    """Check the reader's ``mean_pool(hidden (B, L, H), attention_mask (B, L) of 0/1)``.

    It must average each row's real tokens (mask 1) into ``(B, H)``, ignore
    padding wherever it is (right or left), keep the input's dtype, and return
    zeros, not NaN, for a row with no real token. Compared with :func:`qkv.masks.masked_mean`.
    Used in: Q17.
    """
    cases = [
        _case("no padding", [5, 5], 5, 4),
        _case("padded batch, no full-length row", [3, 1, 4], 6, 7),
        _case("a row with no real token", [2, 0, 5], 5, 3),
        _case("float64, odd sizes", [7, 2, 3], 7, 9, torch.float64),
        _case("left padding: real tokens at the end", [2, 5, 1], 5, 3, left=True),
    ]
    return run_checks("mean_pool", fn, cases)
