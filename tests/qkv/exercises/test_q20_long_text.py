"""The Q20 checker: sliding windows, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises import check_sliding_windows
from qkv.longtext import sliding_windows


def test_the_library_passes() -> None:
    verdict = check_sliding_windows(sliding_windows)
    assert verdict.passed, verdict


def unfold_only(ids, window, stride):
    """Drops the tail that does not fill a window: tokens are lost."""
    windows = ids.unfold(0, min(window, len(ids)), stride)
    return windows, torch.arange(len(windows)) * stride


def padded_last(ids, window, stride):
    """Pads the last window instead of moving it back."""
    L = len(ids)
    if L <= window:
        return ids[None], torch.tensor([0])
    starts = torch.arange(0, L - window + stride, stride)
    padded = torch.cat([ids, ids.new_zeros(window)])
    return padded[starts[:, None] + torch.arange(min(L, window))], starts


def always_window(ids, window, stride):
    """Returns a window of `window` tokens even when the sequence is shorter."""
    windows, starts = sliding_windows(torch.cat([ids, ids.new_zeros(window)]), window, stride)
    return windows[:1], starts[:1]


@pytest.mark.parametrize("wrong", [unfold_only, padded_last, always_window])
def test_wrong_windowings_fail(wrong) -> None:
    verdict = check_sliding_windows(wrong)
    assert verdict.status == "failed", verdict


def duplicated_last(ids, window, stride):
    """Always appends a window ending at the last token, even when one already does."""
    L = len(ids)
    if L <= window:
        return ids[None], torch.tensor([0])
    starts = torch.tensor([*range(0, L - window + 1, stride), L - window])
    return ids[starts[:, None] + torch.arange(window)], starts


def test_a_duplicated_last_window_fails() -> None:
    verdict = check_sliding_windows(duplicated_last)
    assert verdict.status == "failed" and "window=8, stride=8" in verdict.detail, verdict
