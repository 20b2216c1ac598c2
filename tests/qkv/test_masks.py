"""Tests for qkv.masks: values, conventions (True = may attend) and every error path."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qkv.masks import (
    causal_mask,
    combine,
    empty_rows,
    key_mask,
    masked_mean,
    masked_softmax,
    padding_mask,
    to_additive,
    to_torch_key_padding_mask,
)


def test_padding_mask_values(device):
    pad = padding_mask(torch.tensor([2, 5, 0], device=device), max_len=6)
    expected = torch.tensor(
        [[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool
    )
    assert pad.dtype == torch.bool and pad.device.type == device.type
    assert torch.equal(pad.cpu(), expected)


def test_padding_mask_defaults_to_longest_and_takes_lists():
    pad = padding_mask([3, 1])
    assert torch.equal(pad, torch.tensor([[True, True, True], [True, False, False]]))
    assert padding_mask(torch.zeros(0, dtype=torch.long)).shape == (0, 0)


@pytest.mark.parametrize(
    ("lengths", "max_len", "error", "match"),
    [
        ([3, 7], 5, ValueError, "max_len=5, got a length of 7"),
        ([3, -1], None, ValueError, "non-negative"),
        ([[3, 1]], None, ValueError, r"1-D \(B,\), got shape \(1, 2\)"),
        ([1.5, 2.0], None, TypeError, "integer tensor, got dtype torch.float32"),
        ([True, False], None, TypeError, "integer tensor, got dtype torch.bool"),
        ([1, 2], -1, ValueError, "max_len must be >= 0, got -1"),
        ([1, 2], 2.5, TypeError, "max_len must be an int, got float 2.5"),
        (["a"], None, TypeError, r"integer tensor or a list of ints, got \['a'\]"),
        (None, None, TypeError, "lengths must be a .* list of ints, got None"),
    ],
)
def test_padding_mask_rejects(lengths, max_len, error, match):
    with pytest.raises(error, match=match):
        padding_mask(lengths, max_len)


def test_causal_mask_square_is_lower_triangular(device):
    mask = causal_mask(5, device=device)
    assert mask.device.type == device.type and mask.dtype == torch.bool
    for i in range(5):
        for j in range(5):
            assert bool(mask[i, j]) == (j <= i)


def test_causal_mask_aligns_queries_to_the_end_of_the_keys():
    # 3 new queries at positions 4, 5, 6 of 7 (a KV cache): query i sees keys 0 .. i + 4
    mask = causal_mask(3, 7)
    assert mask.tolist() == [
        [True, True, True, True, True, False, False],
        [True, True, True, True, True, True, False],
        [True] * 7,
    ]
    # the last query row of the rectangular mask equals the last row of the square one
    assert torch.equal(mask, causal_mask(7)[-3:])
    # more queries than keys: the first n - m queries see nothing
    assert causal_mask(4, 2).tolist() == [
        [False, False],
        [False, False],
        [True, False],
        [True, True],
    ]


def test_causal_mask_differs_from_torch_is_causal_when_m_exceeds_n():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 3, 4), torch.randn(1, 7, 4), torch.randn(1, 7, 5)
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(3, 7))
    top_left = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert not torch.allclose(ours, top_left, atol=1e-3)
    square_q = torch.randn(1, 7, 4)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(square_q, k, v, attn_mask=causal_mask(7)),
        F.scaled_dot_product_attention(square_q, k, v, is_causal=True),
    )


@pytest.mark.parametrize(
    ("n", "m", "error", "match"),
    [
        (-1, None, ValueError, "n must be >= 0, got -1"),
        (3, -2, ValueError, "m must be >= 0, got -2"),
        (2.0, None, TypeError, "n must be an int, got float 2.0"),
        (True, 3, TypeError, "n must be an int, got bool True"),
    ],
)
def test_causal_mask_rejects(n, m, error, match):
    with pytest.raises(error, match=match):
        causal_mask(n, m)


def test_empty_batch_and_numpy_sizes():
    assert padding_mask([]).shape == (0, 0) and padding_mask([]).dtype == torch.bool
    assert padding_mask([], max_len=3).shape == (0, 3)
    assert torch.equal(padding_mask([1, 2], np.int64(3)), padding_mask([1, 2], 3))
    assert torch.equal(causal_mask(np.int64(3), np.int32(4)), causal_mask(3, 4))


def test_key_mask_shape_and_broadcast(device):
    pad = padding_mask(torch.tensor([3, 1], device=device), max_len=4)
    mask = key_mask(pad)
    assert mask.shape == (2, 1, 1, 4)
    scores = torch.zeros(2, 3, 5, 4, device=device)  # (B, h, n, m)
    blocked = scores.masked_fill(~mask, 1.0)
    # key columns are masked for every head and query; query rows are never masked
    assert blocked[0, :, :, 3].eq(1).all() and blocked[0, :, :, :3].eq(0).all()
    assert blocked[1, :, :, 1:].eq(1).all() and blocked[1, :, :, 0].eq(0).all()


def test_combine_is_logical_and_with_broadcasting():
    pad = padding_mask([3, 2], max_len=3)
    combined = combine(key_mask(pad), causal_mask(3), None)
    assert combined.shape == (2, 1, 3, 3)
    expected = torch.tensor(
        [[[1, 0, 0], [1, 1, 0], [1, 1, 1]], [[1, 0, 0], [1, 1, 0], [1, 1, 0]]], dtype=torch.bool
    )
    assert torch.equal(combined[:, 0], expected)
    assert combine(None, None) is None
    assert combine(pad) is pad


def test_to_additive_values_and_dtypes():
    mask = torch.tensor([[True, False, True]])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        additive = to_additive(mask, dtype)
        assert additive.dtype == dtype
        # -inf, not finfo.min: a masked score of 3e4 plus -65504 beats an allowed -5.9e4
        assert additive.tolist() == [[0.0, float("-inf"), 0.0]]


def test_to_additive_gives_the_same_attention_as_the_bool_mask():
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 5, 6), torch.randn(3, 7, 6), torch.randn(3, 7, 4)
    mask = key_mask(padding_mask([7, 4, 2]))[:, 0]  # (B, 1, m)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=to_additive(mask)),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
    )


def test_torch_key_padding_mask_inverts_and_matches_nn_multihead_attention():
    torch.manual_seed(2)
    pad = padding_mask([5, 3, 1])
    assert torch.equal(to_torch_key_padding_mask(pad), ~pad)
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        with_padding, _ = mha(x, x, x, key_padding_mask=to_torch_key_padding_mask(pad))
        # the same layer fed the bool attn_mask of the opposite convention
        attn_mask = ~key_mask(pad).expand(3, 2, 5, 5).reshape(6, 5, 5)
        with_attn_mask, _ = mha(x, x, x, attn_mask=attn_mask)
    # real tokens only: torch's fused inference path may zero the padded query rows
    torch.testing.assert_close(with_padding[pad], with_attn_mask[pad])
    # the last sequence has one real token: every query sees only x[2, 0]
    alone, _ = mha(x[2:, :1], x[2:, :1], x[2:, :1])
    torch.testing.assert_close(with_padding[2, :1], alone[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("fn", "arg", "error", "match"),
    [
        (key_mask, torch.ones(2, 3), TypeError, "pad must have dtype torch.bool"),
        (key_mask, torch.ones(2, 3, 1, dtype=torch.bool), ValueError, r"\(B, L\), got shape"),
        (key_mask, [[True]], TypeError, "pad must be a bool torch.Tensor, got list"),
        (to_torch_key_padding_mask, torch.ones(2, 3, dtype=torch.int64), TypeError, "int64"),
        (to_torch_key_padding_mask, torch.ones(3, dtype=torch.bool), ValueError, r"\(B, L\)"),
        (to_additive, torch.zeros(2, 2), TypeError, "mask must have dtype torch.bool"),
    ],
)
def test_mask_helpers_reject(fn, arg, error, match):
    with pytest.raises(error, match=match):
        fn(arg)


def test_to_additive_rejects_integer_dtype():
    with pytest.raises(TypeError, match="floating torch.dtype, got torch.int32"):
        to_additive(torch.ones(2, dtype=torch.bool), torch.int32)


def test_combine_rejects():
    with pytest.raises(TypeError, match="mask 1 must have dtype torch.bool"):
        combine(torch.ones(2, 2, dtype=torch.bool), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"broadcast together, got shapes \[\(2, 3\), \(4, 3\)\]"):
        combine(torch.ones(2, 3, dtype=torch.bool), torch.ones(4, 3, dtype=torch.bool))


def test_masked_mean_averages_real_tokens_only() -> None:
    x = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)
    pad = padding_mask(torch.tensor([2, 0]), 4)
    out = masked_mean(x, pad)
    assert torch.equal(out[0], x[0, :2].mean(dim=0))
    assert torch.equal(out[1], torch.zeros(3))  # empty sequence: zeros, not NaN
    with pytest.raises(ValueError, match=r"expected x \(B, L, d_model\) and pad \(B, L\)"):
        masked_mean(x, pad[:, :3])
    with pytest.raises(TypeError, match="pad must have dtype torch.bool"):
        masked_mean(x, pad.long())


# ---------------------------------------------------------------- masked_softmax (public)


def test_masked_softmax_renormalises_over_allowed_keys_and_zeroes_empty_rows():
    scores = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(1)) < 0.6
    mask[0, 1] = False  # a row with no allowed key
    for m in (mask, to_additive(mask)):
        weights = masked_softmax(scores, m)
        for b, i in ((b, i) for b in range(2) for i in range(3)):
            allowed = mask[b, i]
            expected = torch.zeros(4)
            if allowed.any():
                expected[allowed] = scores[b, i, allowed].softmax(-1)
            torch.testing.assert_close(weights[b, i], expected)
    assert torch.equal(empty_rows(mask)[..., 0], ~mask.any(-1))
    torch.testing.assert_close(masked_softmax(scores), scores.softmax(-1))


def test_no_module_imports_private_mask_helpers():
    """Other modules use the public masked_softmax and empty_rows (d2l's name for the first)."""
    import pathlib
    import re

    lib = pathlib.Path(__file__).resolve().parents[2] / "lib" / "qkv"
    private = re.compile(r"from qkv\.masks import[^\n]*\b_[a-z]")
    offenders = [p.name for p in lib.rglob("*.py") if private.search(p.read_text())]
    assert offenders == []


def test_masked_mean_ignores_nan_and_inf_at_padded_positions():
    x = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    pad = padding_mask(torch.tensor([2, 0]), 4)
    dirty = x.clone()
    dirty[0, 2:] = float("nan")
    dirty[0, 3, 0] = float("inf")
    dirty[1] = float("nan")  # no real token at all
    pooled = masked_mean(dirty, pad)
    torch.testing.assert_close(pooled[0], x[0, :2].mean(0))
    assert pooled[1].eq(0).all()
