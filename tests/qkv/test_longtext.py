"""Tests for qkv.longtext: truncation, sliding windows, pooling, Longformer's mask."""

import pytest
import torch

from qkv.longtext import (
    aggregate,
    local_global_mask,
    sliding_windows,
    truncate,
)

# ---------------------------------------------------------------- truncate


@pytest.mark.parametrize("as_list", [False, True])
def test_truncate_strategies(as_list):
    ids = torch.arange(100, 137)  # L = 37
    if as_list:
        ids = ids.tolist()
    head = truncate(ids, 11, "head")
    tail = truncate(ids, 11, "tail")
    both = truncate(ids, 11, "head+tail", head=4)
    assert type(head) is type(ids)
    assert list(head) == list(range(100, 111))
    assert list(tail) == list(range(126, 137))
    assert list(both) == [100, 101, 102, 103] + list(range(130, 137))


def test_head_plus_tail_keeps_exactly_the_requested_counts():
    # Sun et al. 2019's best IMDb setting: 128 from the start, 382 from the end
    ids = torch.arange(3000)
    out = truncate(ids, 510, "head+tail", head=128)
    assert len(out) == 510
    assert torch.equal(out[:128], ids[:128])
    assert torch.equal(out[128:], ids[-382:])


def test_head_plus_tail_default_head_and_extremes():
    ids = list(range(50))
    assert truncate(ids, 12, "head+tail") == ids[:3] + ids[-9:]  # head = 12 // 4
    assert truncate(ids, 12, "head+tail", head=0) == ids[-12:]
    assert truncate(ids, 12, "head+tail", head=12) == ids[:12]


@pytest.mark.parametrize("strategy", ["head", "tail", "head+tail"])
def test_short_input_comes_back_whole(strategy):
    ids = torch.arange(7)
    assert torch.equal(truncate(ids, 7, strategy), ids)
    assert torch.equal(truncate(ids, 99, strategy), ids)


@pytest.mark.parametrize(
    ("args", "kw", "error", "match"),
    [
        ((torch.zeros(2, 3), 2), {}, ValueError, r"ids must be 1-D \(L,\)"),
        (((1, 2, 3), 2), {}, TypeError, "ids must be a 1-D tensor or a list"),
        (([1, 2, 3], 0), {}, ValueError, "max_len must be >= 1"),
        (([1, 2, 3], 2.0), {}, TypeError, "max_len must be an int"),
        (([1, 2, 3], 2, "middle"), {}, ValueError, "strategy must be"),
        (([1, 2, 3], 2, "head"), {"head": 1}, ValueError, "head is only used with"),
        (([1, 2, 3], 2, "head+tail"), {"head": 3}, ValueError, "head must be <= max_len=2"),
        (([1, 2, 3], 2, "head+tail"), {"head": -1}, ValueError, "head must be >= 0"),
    ],
)
def test_truncate_bad_input(args, kw, error, match):
    with pytest.raises(error, match=match):
        truncate(*args, **kw)


# ---------------------------------------------------------------- sliding windows


@pytest.mark.parametrize(
    ("length", "window", "stride"),
    [(37, 11, 5), (37, 11, 11), (36, 11, 5), (100, 16, 4), (12, 11, 1), (23, 7, 3)],
)
def test_windows_cover_every_token_with_the_stated_overlaps(length, window, stride):
    ids = torch.arange(1000, 1000 + length)
    windows, starts = sliding_windows(ids, window, stride)
    assert windows.shape == (len(starts), window)
    for w, s in zip(windows, starts.tolist(), strict=True):
        assert torch.equal(w, ids[s : s + window])
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts.tolist():
        covered[s : s + window] = True
    assert covered.all()
    assert starts[0] == 0 and starts[-1] + window == length
    overlaps = (starts[:-1] + window - starts[1:]).tolist()
    assert all(o == window - stride for o in overlaps[:-1])
    # the end-aligned last window overlaps by at least window - stride, never fully
    assert window - stride <= overlaps[-1] < window


@pytest.mark.parametrize("length", [1, 6, 11])
def test_input_no_longer_than_window_gives_one_window(length):
    ids = torch.arange(length)
    windows, starts = sliding_windows(ids, 11, 5)
    assert starts.tolist() == [0]
    assert torch.equal(windows, ids[None])


def test_batched_windows(device):
    ids = torch.arange(3 * 37, device=device).reshape(3, 37)
    windows, starts = sliding_windows(ids, 11, 5)
    assert windows.shape == (3, len(starts), 11) and windows.device == ids.device
    for b in range(3):
        single, _ = sliding_windows(ids[b], 11, 5)
        assert torch.equal(windows[b], single)


@pytest.mark.parametrize(
    ("ids", "window", "stride", "error", "match"),
    [
        (torch.arange(9), 0, 1, ValueError, "window must be >= 1"),
        (torch.arange(9), -3, 1, ValueError, "window must be >= 1"),
        (torch.arange(9), 4, 0, ValueError, "stride must be >= 1"),
        (torch.arange(9), 4, 5, ValueError, "stride must be <= window"),
        (torch.arange(9), 4.0, 2, TypeError, "window must be an int"),
        ([1, 2, 3], 2, 1, TypeError, r"ids must be a tensor of shape \(\.\.\., L\)"),
    ],
)
def test_sliding_windows_bad_input(ids, window, stride, error, match):
    with pytest.raises(error, match=match):
        sliding_windows(ids, window, stride)


# ---------------------------------------------------------------- pooling


def test_aggregate_mean_and_max():
    logits = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.5]])
    torch.testing.assert_close(aggregate(logits, "mean"), torch.tensor([2.0, -1.0, -0.5]))
    torch.testing.assert_close(aggregate(logits, "max"), torch.tensor([3.0, 0.0, 0.5]))
    batched = torch.stack([logits, -logits])  # (B, W, C)
    torch.testing.assert_close(aggregate(batched, "max", dim=1)[1], torch.tensor([-1, 2, 1.5]))


@pytest.mark.parametrize(
    ("logits", "how", "error", "match"),
    [
        (torch.zeros(2, 3), "median", ValueError, "how must be 'mean' or 'max'"),
        (torch.zeros(2, 3, dtype=torch.long), "mean", TypeError, "floating-point"),
        (torch.zeros(0, 3), "mean", ValueError, "at least one window"),
    ],
)
def test_aggregate_bad_input(logits, how, error, match):
    with pytest.raises(error, match=match):
        aggregate(logits, how)


def test_aggregate_dim_is_checked_and_may_be_negative():
    logits = torch.randn(2, 4, 3)  # (B, W, C)
    with pytest.raises(ValueError, match="dim=5 is out of range for a tensor with 3 dims"):
        aggregate(logits, dim=5)
    with pytest.raises(TypeError, match="dim must be an int, got float"):
        aggregate(logits, dim=1.0)
    torch.testing.assert_close(aggregate(logits, dim=-2), logits.mean(1))


# ---------------------------------------------------------------- Longformer mask


def _reference_mask(n, window, global_positions):
    allowed = [[False] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            local = abs(i - j) <= window // 2
            allowed[i][j] = local or i in global_positions or j in global_positions
    return torch.tensor(allowed)


@pytest.mark.parametrize(
    ("n", "window", "global_positions"),
    [(37, 6, ()), (37, 7, (0,)), (23, 1, (0, 11, 22)), (9, 40, ()), (12, 4, (3, 3))],
)
def test_local_global_mask_against_loops(n, window, global_positions):
    mask = local_global_mask(n, window, global_positions)
    assert mask.dtype == torch.bool and mask.shape == (n, n)
    assert torch.equal(mask, _reference_mask(n, window, set(global_positions)))
    assert torch.equal(mask, mask.T)


@pytest.mark.parametrize(("n", "window"), [(37, 6), (101, 10), (64, 17)])
def test_local_mask_density(n, window):
    # a band of half-width r has n (2r + 1) - r (r + 1) entries (the corners are cut)
    r = window // 2
    mask = local_global_mask(n, window)
    assert int(mask.sum()) == n * (2 * r + 1) - r * (r + 1)
    # each global token adds a full row and column, minus what the band already had
    with_global = local_global_mask(n, window, [0])
    assert int(with_global.sum()) == int(mask.sum()) + 2 * (n - (r + 1))


def test_local_global_mask_device(device):
    assert local_global_mask(7, 2, [0], device=device).device.type == device.type


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0, 3), ValueError, "n must be >= 1"),
        ((7, 0), ValueError, "window must be >= 1"),
        ((7, 2.5), TypeError, "window must be an int"),
        ((7, 2, [7]), ValueError, "global positions must be < n=7"),
        ((7, 2, [-1]), ValueError, "global position must be >= 0"),
    ],
)
def test_local_global_mask_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        local_global_mask(*args)


def test_every_public_name_is_used_outside_the_tests():
    """No dead code: each name is used by a chapter or another qkv module."""
    from pathlib import Path

    import qkv.longtext

    root = Path(__file__).resolve().parents[2]
    sources = [*(root / "chapters").rglob("*.ipynb"), *(root / "lib" / "qkv").rglob("*.py")]
    texts = [p.read_text() for p in sources if p.name != "longtext.py"]
    unused = [name for name in qkv.longtext.__all__ if not any(name in t for t in texts)]
    assert unused == []
