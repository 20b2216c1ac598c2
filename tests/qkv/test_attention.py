"""Tests for qkv.attention against PyTorch's own attention, with stated tolerances.

Tolerances: float32 against torch ``atol=1e-5, rtol=1e-4`` (different summation
orders); float64 comparisons of two of our own paths ``atol=1e-12``.
"""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qkv.attention import (
    AdditiveAttention,
    MultiHeadAttention,
    additive_attention,
    attention_entropy,
    chunked_attention,
    scaled_dot_product_attention,
)
from qkv.masks import causal_mask, combine, key_mask, padding_mask, to_additive

from .reference import perturbed

F32 = {"atol": 1e-5, "rtol": 1e-4}
F64 = {"atol": 1e-12, "rtol": 1e-10}

# batch dims of q, k, v, n, m, d_k, d_v: odd sizes, so a swapped axis fails loudly
SHAPES = [
    ((3, 4), 7, 11, 9, 5),
    ((2,), 1, 13, 4, 6),
    ((), 5, 5, 8, 8),
    ((2, 3), 6, 3, 7, 2),  # m < n
]


def make_qkv(batch, n, m, d_k, d_v, *, seed=0, dtype=torch.float32, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    shapes = ((*batch, n, d_k), (*batch, m, d_k), (*batch, m, d_v))
    return [torch.randn(s, generator=gen, dtype=dtype).to(device) for s in shapes]


def random_mask(shape, *, seed, device="cpu"):
    """Random bool mask in which key 0 is always allowed (torch gives NaN for an empty row)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=gen) > 0.5
    mask[..., 0] = True
    return mask.to(device)


def masks_for(batch, n, m, seed, device):
    return {
        "none": None,
        "bool": random_mask((n, m), seed=seed, device=device),
        "bool per batch": random_mask((*batch, 1, m), seed=seed + 1, device=device),
        "float": torch.randn(n, m, generator=torch.Generator().manual_seed(seed)).to(device),
        "causal": causal_mask(n, m, device=device) | causal_mask(n, m, device=device)[-1],
    }


def reference(q, k, v, mask=None, **kw):
    return scaled_dot_product_attention(q, k, v, mask, return_weights=True, **kw)


# ---------------------------------------------------------------- scaled dot-product


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", SHAPES)
def test_sdpa_matches_torch_both_paths(device, shape, seed):
    q, k, v = make_qkv(*shape, seed=seed, device=device)
    batch = shape[0]
    for name, mask in masks_for(batch, shape[1], shape[2], seed, device).items():
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        fast = scaled_dot_product_attention(q, k, v, mask)
        ref, weights = reference(q, k, v, mask)
        torch.testing.assert_close(fast, expected, **F32, msg=f"fast path, mask {name}")
        torch.testing.assert_close(ref, expected, **F32, msg=f"reference path, mask {name}")
        torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights[..., 0]), **F32)
        if mask is not None and mask.dtype == torch.bool:
            assert weights.masked_select(~mask.expand_as(weights)).eq(0).all()


@pytest.mark.parametrize("scale", [0.3, 2.0])
def test_custom_scale(device, scale):
    q, k, v = make_qkv(*SHAPES[0], seed=3, device=device)
    mask = random_mask((7, 11), seed=3, device=device)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask, scale=scale), expected)
    torch.testing.assert_close(reference(q, k, v, mask, scale=scale)[0], expected, **F32)
    # the default is 1 / sqrt(d_k), d_k = 9
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, scale=1 / 3), scaled_dot_product_attention(q, k, v)
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_reference_equals_fast_path_in_float64(device, shape):
    q, k, v = make_qkv(*shape, seed=4, dtype=torch.float64, device=device)
    batch = shape[0]
    for mask in masks_for(batch, shape[1], shape[2], 4, device).values():
        fast = scaled_dot_product_attention(q, k, v, mask)
        ref, weights = reference(q, k, v, mask)
        torch.testing.assert_close(ref, fast, **F64)
        torch.testing.assert_close(ref, weights @ v, **F64)


def test_softmax_is_over_the_key_axis():
    q, k, v = make_qkv((2,), 4, 9, 5, 3, seed=5)
    _, weights = reference(q, k, v)
    assert weights.shape == (2, 4, 9)  # (B, n, m)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
    assert not torch.allclose(weights.sum(-2), torch.ones(2, 9), atol=1e-2)


def test_dropout_is_applied_whenever_p_is_positive():
    q, k, v = make_qkv(*SHAPES[0], seed=6)
    _, clean = reference(q, k, v)
    torch.manual_seed(0)
    out, dropped = reference(q, k, v, dropout_p=0.25)
    kept = dropped != 0
    assert 0.6 < kept.float().mean() < 0.9  # about 3/4 of the weights survive
    torch.testing.assert_close(dropped[kept], clean[kept] / 0.75)
    torch.testing.assert_close(out, dropped @ v)  # weights returned are those applied
    torch.manual_seed(0)
    fast_1 = scaled_dot_product_attention(q, k, v, dropout_p=0.25)
    torch.manual_seed(0)
    fast_2 = scaled_dot_product_attention(q, k, v, dropout_p=0.25)
    torch.testing.assert_close(fast_1, fast_2)
    assert not torch.allclose(fast_1, scaled_dot_product_attention(q, k, v), atol=1e-3)


# ---------------------------------------------------------------- fully masked rows


def fully_masked_cases(n, m, dtype, device):
    mask = causal_mask(n, m, device=device).clone()  # m < n: the first n - m rows see nothing
    mask[n - 1] = False  # and one more row with no allowed key
    blocked = ~mask.any(-1)
    additive = to_additive(mask, dtype)
    minus_inf = torch.zeros(n, m, dtype=dtype, device=device).masked_fill(~mask, float("-inf"))
    return blocked, {"bool": mask, "finfo.min": additive, "-inf": minus_inf}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fully_masked_rows_are_zero_without_nan(device, dtype):
    n, m = 6, 4
    q, k, v = make_qkv((3, 2), n, m, 8, 5, seed=7, dtype=dtype, device=device)
    blocked, masks = fully_masked_cases(n, m, dtype, device)
    w_q, w_k, w = (torch.randn(s, dtype=dtype, device=device) for s in ((7, 8), (7, 8), (7,)))
    paths = {
        "fast": lambda x, mask: scaled_dot_product_attention(*x, mask),
        "reference": lambda x, mask: reference(*x, mask)[0],
        "chunked": lambda x, mask: chunked_attention(*x, mask, chunk_size=3),
        "additive": lambda x, mask: additive_attention(*x, w_q, w_k, w, mask)[0],
    }
    for (name, path), (kind, mask) in ((p, mk) for p in paths.items() for mk in masks.items()):
        inputs = [t.detach().requires_grad_() for t in (q, k, v)]
        out = path(inputs, mask)
        msg = f"{name} path, {kind} mask, {dtype}"
        assert not out.isnan().any(), msg
        assert out[..., blocked, :].eq(0).all(), msg
        assert out[..., ~blocked, :].abs().sum() > 0, msg
        out.float().square().sum().backward()
        assert not any(t.grad.isnan().any() for t in inputs), msg
    _, weights = reference(q, k, v, masks["bool"])
    assert weights[..., blocked, :].eq(0).all() and not weights.isnan().any()


def test_fully_masked_rows_agree_with_torch_elsewhere(device):
    q, k, v = make_qkv((2,), 6, 4, 8, 5, seed=8, device=device)
    blocked, masks = fully_masked_cases(6, 4, torch.float32, device)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=masks["bool"])[:, ~blocked]
    for mask in masks.values():
        torch.testing.assert_close(
            scaled_dot_product_attention(q, k, v, mask)[:, ~blocked], expected
        )


def test_fast_path_does_not_rely_on_the_kernel_for_empty_rows(monkeypatch):
    # torch 2.13 itself returns zeros for an all-False bool row; older kernels gave NaN
    def naive_kernel(q, k, v, attn_mask=None, dropout_p=0.0, scale=None):
        minus_inf = torch.zeros(attn_mask.shape).masked_fill(~attn_mask, float("-inf"))
        return (q @ k.transpose(-2, -1) * scale + minus_inf).softmax(-1) @ v  # empty row: NaN

    monkeypatch.setattr(F, "scaled_dot_product_attention", naive_kernel)
    q, k, v = make_qkv((2,), 6, 4, 8, 5, seed=8)
    blocked, masks = fully_masked_cases(6, 4, torch.float32, "cpu")
    q.requires_grad_()
    out = scaled_dot_product_attention(q, k, v, masks["bool"])
    out.sum().backward()
    assert out[:, blocked].eq(0).all() and not out.isnan().any() and not q.grad.isnan().any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_float_mask_is_cast_to_the_input_dtype(device, dtype):
    q, k, v = make_qkv(*SHAPES[0], seed=21, dtype=dtype, device=device)
    mask = random_mask((7, 11), seed=21, device=device)
    additive = to_additive(mask, torch.float32)  # float32 mask, other input dtype
    for path in (scaled_dot_product_attention, chunked_attention, lambda *x: reference(*x)[0]):
        out = path(q, k, v, additive)
        assert out.dtype == dtype
        torch.testing.assert_close(out, path(q, k, v, mask))


def test_gradcheck_float64():
    q, k, v = make_qkv((2,), 4, 5, 3, 2, seed=9, dtype=torch.float64)
    mask = random_mask((4, 5), seed=9)
    mask[1] = False  # a fully masked row must have a finite, zero gradient too
    inputs = [t.requires_grad_() for t in (q, k, v)]
    assert torch.autograd.gradcheck(lambda *x: reference(*x, mask), inputs)
    assert torch.autograd.gradcheck(lambda *x: scaled_dot_product_attention(*x, mask), inputs)
    assert torch.autograd.gradcheck(lambda *x: chunked_attention(*x, mask, chunk_size=2), inputs)


# ---------------------------------------------------------------- chunked attention


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 5, 13, 1024])
def test_chunked_equals_full(device, chunk_size):
    for shape in SHAPES:
        q, k, v = make_qkv(*shape, seed=10, dtype=torch.float64, device=device)
        batch = shape[0]
        for name, mask in masks_for(batch, shape[1], shape[2], 10, device).items():
            torch.testing.assert_close(
                chunked_attention(q, k, v, mask, chunk_size=chunk_size),
                reference(q, k, v, mask)[0],
                **F64,
                msg=f"chunk_size {chunk_size}, shape {shape}, mask {name}",
            )


@pytest.mark.parametrize(("n", "m"), [(0, 5), (4, 0)])
def test_no_queries_or_no_keys_match_torch(n, m):
    q, k, v = make_qkv((2,), n, m, 3, 2, seed=22)
    expected = F.scaled_dot_product_attention(q, k, v)  # shape (2, n, 2); zeros when m = 0
    for out in (
        scaled_dot_product_attention(q, k, v),
        reference(q, k, v)[0],
        chunked_attention(q, k, v, chunk_size=2),
    ):
        torch.testing.assert_close(out, expected)


def test_chunked_is_stable_for_large_scores():
    # scores around +-1e3: exp would overflow float32 without the running max
    q, k, v = make_qkv((2,), 9, 21, 16, 4, seed=11)
    out = chunked_attention(q * 40, k * 5, v, chunk_size=4)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q * 40, k * 5, v), **F32)


def test_chunked_custom_scale():
    q, k, v = make_qkv(*SHAPES[0], seed=12)
    torch.testing.assert_close(
        chunked_attention(q, k, v, scale=0.7, chunk_size=4),
        F.scaled_dot_product_attention(q, k, v, scale=0.7),
        **F32,
    )


# ---------------------------------------------------------------- additive attention


def test_additive_attention_matches_an_explicit_loop():
    torch.manual_seed(13)
    q, k, v = torch.randn(3, 4, 6), torch.randn(3, 5, 7), torch.randn(3, 5, 2)
    w_q, w_k, w = torch.randn(9, 6), torch.randn(9, 7), torch.randn(9)
    mask = random_mask((3, 1, 5), seed=13)
    out, weights = additive_attention(q, k, v, w_q, w_k, w, mask)
    for b in range(3):
        for i in range(4):  # Bahdanau et al. 2015: e_ij = v_a . tanh(W_a s_i + U_a h_j)
            scores = torch.stack([w @ torch.tanh(w_q @ q[b, i] + w_k @ k[b, j]) for j in range(5)])
            alpha = scores.masked_fill(~mask[b, 0], float("-inf")).softmax(0)
            torch.testing.assert_close(weights[b, i], alpha)
            torch.testing.assert_close(out[b, i], alpha @ v[b])


def test_additive_module_defaults_value_to_key(device):
    torch.manual_seed(14)
    module = AdditiveAttention(d_q=6, d_k=7, d_hidden=9).to(device)
    query, key = torch.randn(3, 4, 6, device=device), torch.randn(3, 5, 7, device=device)
    out, weights = module(query, key)
    assert out.shape == (3, 4, 7) and weights.shape == (3, 4, 5)
    expected = additive_attention(
        query, key, key, module.w_q.weight, module.w_k.weight, module.w.weight[0]
    )
    torch.testing.assert_close(out, expected[0])
    torch.testing.assert_close(weights, expected[1])


# ---------------------------------------------------------------- multi-head attention


def torch_mha(d_model=36, n_heads=4, *, bias=True, seed=15):
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True)
    return perturbed(m, seed=seed + 1)  # torch initialises biases to 0: make them matter


@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch_self_attention_with_padding(device, bias):
    theirs = torch_mha(bias=bias).to(device)
    ours = MultiHeadAttention.from_torch(theirs)
    x = torch.randn(3, 7, 36, device=device)
    pad = padding_mask(torch.tensor([7, 5, 2], device=device))
    expected, expected_weights = theirs(x, x, x, key_padding_mask=~pad)
    out, weights = ours(x, mask=key_mask(pad), need_weights=True)
    torch.testing.assert_close(out, expected, **F32)
    assert weights.shape == (3, 4, 7, 7)  # per head; torch averages over heads
    torch.testing.assert_close(weights.mean(1), expected_weights, **F32)
    torch.testing.assert_close(ours(x, mask=key_mask(pad))[0], expected, **F32)
    assert ours(x)[1] is None


def test_mha_matches_torch_cross_attention_with_both_masks(device):
    theirs = torch_mha(seed=16).to(device)
    ours = MultiHeadAttention.from_torch(theirs)
    query, memory = torch.randn(3, 5, 36, device=device), torch.randn(3, 8, 36, device=device)
    pad = padding_mask(torch.tensor([8, 6, 3], device=device))
    forbidden = ~random_mask((5, 8), seed=16, device=device)  # torch: True = NOT allowed
    expected, _ = theirs(query, memory, memory, key_padding_mask=~pad, attn_mask=forbidden)
    out, _ = ours(query, memory, mask=combine(key_mask(pad), ~forbidden))
    torch.testing.assert_close(out, expected, **F32)


def test_from_torch_with_sequence_first_layout():
    torch.manual_seed(17)
    theirs = nn.MultiheadAttention(36, 4, batch_first=False).eval()
    x = torch.randn(7, 3, 36)  # (L, B, d_model)
    ours = MultiHeadAttention.from_torch(theirs)
    torch.testing.assert_close(ours(x.transpose(0, 1))[0].transpose(0, 1), theirs(x, x, x)[0])
    assert not ours.training


def test_from_torch_rejects_unsupported_modules():
    with pytest.raises(TypeError, match="expected torch.nn.MultiheadAttention, got Linear"):
        MultiHeadAttention.from_torch(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="kdim and vdim must equal embed_dim=8, got 5, 8"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, kdim=5))
    with pytest.raises(ValueError, match="add_bias_kv=True and add_zero_attn=True"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))
    with pytest.raises(ValueError, match="add_bias_kv=True and add_zero_attn=True"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_zero_attn=True))


def test_gqa_with_all_kv_heads_is_plain_mha():
    torch.manual_seed(18)
    plain = MultiHeadAttention(36, 4)
    grouped = MultiHeadAttention(36, 4, n_kv_heads=4)
    grouped.load_state_dict(plain.state_dict())
    x = torch.randn(3, 7, 36)
    torch.testing.assert_close(grouped(x)[0], plain(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_grouped_and_multi_query_attention_against_manual_heads(device, n_kv_heads):
    torch.manual_seed(19)
    mha = MultiHeadAttention(36, 4, n_kv_heads=n_kv_heads).to(device)
    assert mha.w_k.weight.shape == (n_kv_heads * 9, 36)  # d_k = 36 / 4 = 9
    query, memory = torch.randn(3, 5, 36, device=device), torch.randn(3, 8, 36, device=device)
    mask = key_mask(padding_mask(torch.tensor([8, 4, 6], device=device)))
    out, weights = mha(query, memory, mask=mask, need_weights=True)
    assert out.shape == (3, 5, 36) and weights.shape == (3, 4, 5, 8)
    # by hand: query head i reads K/V head i // (h / n_kv_heads)
    q = mha.w_q(query).view(3, 5, 4, 9)
    k, v = mha.w_k(memory).view(3, 8, n_kv_heads, 9), mha.w_v(memory).view(3, 8, n_kv_heads, 9)
    heads = []
    for i in range(4):
        j = i // (4 // n_kv_heads)
        heads.append(
            F.scaled_dot_product_attention(q[:, :, i], k[:, :, j], v[:, :, j], attn_mask=mask[:, 0])
        )
    expected = mha.w_o(torch.cat(heads, dim=-1))
    torch.testing.assert_close(out, expected, **F32)
    params = sum(p.numel() for p in mha.parameters())
    assert params == 2 * (36 * 36 + 36) + 2 * (36 * n_kv_heads * 9 + n_kv_heads * 9)


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_mha_rotate_turns_queries_and_keys_never_values(device, n_kv_heads):
    """``rotate`` (RoPE) is applied to q (B, h, n, d_k) and k (B, n_kv_heads, m, d_k) only:
    the result equals attention over apply_rotary(q), apply_rotary(k) and the plain v."""
    from qkv.positions import apply_rotary

    torch.manual_seed(23)
    mha = MultiHeadAttention(40, 4, n_kv_heads=n_kv_heads).to(device).eval()  # d_k = 10
    x = torch.randn(3, 7, 40, device=device)
    seen = []

    def rotate(t):
        seen.append(tuple(t.shape))
        return apply_rotary(t)

    out, _ = mha(x, mask=causal_mask(7, device=device)[None, None], rotate=rotate)
    assert seen == [(3, 4, 7, 10), (3, n_kv_heads, 7, 10)]
    q = apply_rotary(mha.w_q(x).view(3, 7, 4, 10).transpose(1, 2))
    k = apply_rotary(mha.w_k(x).view(3, 7, n_kv_heads, 10).transpose(1, 2))
    v = mha.w_v(x).view(3, 7, n_kv_heads, 10).transpose(1, 2)
    group = 4 // n_kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    expected = mha.w_o(attended.transpose(1, 2).reshape(3, 7, 40))
    torch.testing.assert_close(out, expected, **F32)
    assert not torch.allclose(out, mha(x, mask=causal_mask(7, device=device)[None, None])[0])


def test_mha_dropout_only_in_training():
    torch.manual_seed(20)
    mha = MultiHeadAttention(36, 4, dropout=0.5)
    x = torch.randn(3, 7, 36)
    mha.eval()
    torch.testing.assert_close(mha(x)[0], mha(x)[0], atol=0, rtol=0)
    mha.train()
    assert not torch.allclose(mha(x)[0], mha(x)[0])


# ---------------------------------------------------------------- bad input


def _good(**overrides):
    q, k, v = make_qkv((2,), 4, 5, 3, 2, seed=0)
    return {"q": q, "k": k, "v": v} | overrides


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"q": torch.randn(3)}, ValueError, r"q must have at least 2 dims .*got \(3,\)"),
        ({"k": torch.randn(2, 5, 4)}, ValueError, "same d_k, got 3 and 4"),
        ({"v": torch.randn(2, 6, 2)}, ValueError, "same m, got 5 and 6"),
        ({"v": torch.randn(3, 5, 2)}, ValueError, "same rank and the same leading"),
        ({"k": torch.randn(5, 3)}, ValueError, r"same rank .*got \[\(2, 4, 3\), \(5, 3\)"),
        ({"q": torch.randn(2, 4, 0), "k": torch.randn(2, 5, 0)}, ValueError, "d_k >= 1"),
        ({"q": torch.ones(2, 4, 3, dtype=torch.long)}, TypeError, "floating-point Tensor, got"),
        ({"q": [[1.0]]}, TypeError, "q must be a floating-point Tensor, got list"),
        ({"k": torch.randn(2, 5, 3).double()}, TypeError, "share a dtype"),
        ({"mask": torch.ones(4, 5, dtype=torch.int64)}, TypeError, "bool .* or floating"),
        ({"mask": torch.ones(4, 6, dtype=torch.bool)}, ValueError, r"exactly \(n, m\) = \(4, 5\)"),
        ({"mask": torch.ones(3, 4, 5, dtype=torch.bool)}, ValueError, r"\(2, 4, 5\), got \(3, 4"),
        ({"mask": torch.ones(1, 2, 4, 5, dtype=torch.bool)}, ValueError, "the scores' rank 3"),
        ({"mask": torch.ones(5, dtype=torch.bool)}, ValueError, r"rank 3 .*got \(5,\)"),
        ({"mask": torch.tensor(True)}, ValueError, r"rank 3 .*got \(\); for a \(B, m\)"),
        ({"key_padding_mask": torch.ones(2, 6, dtype=torch.bool)}, ValueError, r"= \(2, 5\)"),
        ({"key_padding_mask": torch.ones(2, 5)}, TypeError, "key_padding_mask must be bool"),
        ({"scale": float("nan")}, ValueError, "scale must be a finite number >= 0, got nan"),
        ({"scale": -0.5}, ValueError, "scale must be a finite number >= 0, got -0.5"),
        ({"scale": -1}, ValueError, "scale must be a finite number >= 0, got -1"),
        ({"scale": float("inf")}, ValueError, "finite number >= 0, got inf"),
        ({"scale": True}, TypeError, "scale must be a real number or None, got bool"),
    ],
)
def test_attention_functions_reject_bad_input(overrides, error, match):
    args = _good(**overrides)
    q, k, v, mask = args.pop("q"), args.pop("k"), args.pop("v"), args.pop("mask", None)
    for fn in (scaled_dot_product_attention, chunked_attention, reference):
        with pytest.raises(error, match=match):
            fn(q, k, v, mask, **args)


def test_other_bad_arguments():
    args = _good()
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\], got 1.5"):
        scaled_dot_product_attention(**args, dropout_p=1.5)
    bad_sizes = ((0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError))
    for chunk_size, error in bad_sizes:
        with pytest.raises(error, match="chunk_size must be"):
            chunked_attention(**args, chunk_size=chunk_size)
    # numpy integers are integers (check_int), as everywhere in qkv
    torch.testing.assert_close(
        chunked_attention(**args, chunk_size=np.int64(2)), chunked_attention(**args)
    )
    q, k, v = args.values()
    with pytest.raises(ValueError, match=r"w_k must have shape \(7, 3\), got \(7, 4\)"):
        additive_attention(q, k, v, torch.randn(7, 3), torch.randn(7, 4), torch.randn(7))
    with pytest.raises(ValueError, match=r"w must have shape \(7,\), got \(1, 7\)"):
        additive_attention(q, k, v, torch.randn(7, 3), torch.randn(7, 3), torch.randn(1, 7))
    with pytest.raises(ValueError, match="d_hidden must be >= 1, got 0"):
        AdditiveAttention(3, 3, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_model": 36, "n_heads": 5}, "d_model=36 is not a multiple of n_heads=5"),
        ({"d_model": 36, "n_heads": 4, "n_kv_heads": 3}, "n_heads=4 is not a multiple of n_kv"),
        ({"d_model": 36, "n_heads": 0}, "n_heads must be >= 1, got 0"),
        ({"d_model": 36, "n_heads": 4, "dropout": -0.1}, r"dropout must be in \[0, 1\]"),
    ],
)
def test_mha_rejects_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


def test_mha_rejects_bad_input():
    mha = MultiHeadAttention(36, 4)
    x = torch.randn(3, 7, 36)
    with pytest.raises(ValueError, match=r"query must be \(B, L, d_model=36\), got \(7, 36\)"):
        mha(x[0])
    with pytest.raises(ValueError, match=r"key must be \(B, L, d_model=36\), got \(3, 7, 35\)"):
        mha(x, x[..., :35])
    with pytest.raises(ValueError, match="must share B"):
        mha(x, x[:2])
    with pytest.raises(ValueError, match="key, value share m"):
        mha(x, x, x[:, :5])
    with pytest.raises(ValueError, match=r"scores' rank 4 .*got \(3, 7, 7\)"):
        mha(x, mask=torch.ones(3, 7, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(3, 4, 7, 7\), got \(2, 1, 1, 7\)"):
        mha(x, mask=torch.ones(2, 1, 1, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask must be \(B, m\) = \(3, 7\)"):
        mha(x, key_padding_mask=torch.ones(7, 3, dtype=torch.bool))


def test_attention_entropy_of_one_hot_uniform_and_masked_rows():
    w = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0]])
    expected = torch.tensor([0.0, math.log(4), math.log(2)])
    torch.testing.assert_close(attention_entropy(w), expected)
    assert attention_entropy(torch.zeros(2, 3, 5)).eq(0).all()  # no allowed key: 0, not NaN
    p = torch.softmax(torch.randn(3, 4, 7, 9, generator=torch.Generator().manual_seed(0)), -1)
    reference = -(p * p.log()).sum(-1)  # fine here: softmax weights are never exactly 0
    torch.testing.assert_close(attention_entropy(p), reference)
    with pytest.raises(TypeError, match=r"floating-point tensor \(\.\.\., n, m\), got torch.int64"):
        attention_entropy(torch.ones(2, 3, dtype=torch.long))


# ---------------------------------------------------------------- the input rules (issue 10)


def _paths():
    """Every public way to compute softmax attention, as ``fn(q, k, v, mask, **kw) -> out``."""
    return {
        "fast": scaled_dot_product_attention,
        "reference": lambda *a, **kw: reference(*a, **kw)[0],
        "chunked": lambda *a, **kw: chunked_attention(*a, chunk_size=2, query_chunk_size=3, **kw),
    }


def test_padding_mask_passed_as_mask_is_refused_not_misread(device):
    # A (B, m) mask with B == n used to broadcast as a pair mask (n, m): max error 2.1.
    q, k, v = make_qkv((4,), 4, 4, 8, 8, seed=30, device=device)
    pad = padding_mask(torch.tensor([4, 3, 2, 1], device=device))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=pad[:, None, :])
    causal = causal_mask(4, device=device)
    for name, path in _paths().items():
        with pytest.raises(ValueError, match=r"ambiguous when the batch size B = 4 equals n"):
            path(q, k, v, pad)
        with pytest.raises(ValueError, match=r"a padding mask as key_padding_mask=pad"):
            path(q, k, v, causal)  # a pair mask looks the same: say it with the scores' rank
        torch.testing.assert_close(path(q, k, v, key_padding_mask=pad), expected, **F32, msg=name)
        torch.testing.assert_close(path(q, k, v, pad[:, None, :]), expected, **F32, msg=name)
        torch.testing.assert_close(
            path(q, k, v, causal[None]), F.scaled_dot_product_attention(q, k, v, attn_mask=causal)
        )
        with pytest.raises(ValueError, match=r"exactly \(n, m\) = \(3, 4\), got \(4, 4\); for a"):
            path(q[:, :3], k, v, pad)  # B != n: a 2-D mask must be exactly (n, m)


def test_three_dim_mask_with_four_dim_inputs_is_refused():
    # A (B, 1, m) mask against (B, h, n, m) scores with B == h used to read B as h.
    q, k, v = make_qkv((2, 2), 3, 5, 4, 4, seed=31)
    pad = padding_mask(torch.tensor([5, 2]))
    for path in _paths().values():
        with pytest.raises(ValueError, match=r"scores' rank 4 .*got \(2, 1, 5\).*key_mask\(pad\)"):
            path(q, k, v, pad[:, None, :])
        torch.testing.assert_close(
            path(q, k, v, key_padding_mask=pad), path(q, k, v, key_mask(pad)), **F64
        )


def test_key_padding_mask_combines_with_bool_and_float_masks(device):
    q, k, v = make_qkv((3, 2), 5, 6, 4, 3, seed=32, device=device)
    pad = padding_mask(torch.tensor([6, 4, 1], device=device))
    pair = random_mask((5, 6), seed=32, device=device)
    additive = torch.randn(5, 6, generator=torch.Generator().manual_seed(32)).to(device)
    both_bool = pair & pad[:, None, None, :]
    both_float = additive.masked_fill(~pad[:, None, None, :], float("-inf"))
    for mask, combined in ((pair, both_bool), (additive, both_float)):
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=combined)
        for name, path in _paths().items():
            out = path(q, k, v, mask, key_padding_mask=pad)
            torch.testing.assert_close(out, expected, **F32, msg=f"{name}, {mask.dtype}")


def test_mha_key_padding_mask_matches_torch_and_refuses_a_raw_padding_mask():
    theirs = torch_mha(seed=33)
    ours = MultiHeadAttention.from_torch(theirs)
    x = torch.randn(4, 4, 36)  # B == L: a (B, L) mask used to be read as (L, L)
    pad = padding_mask(torch.tensor([4, 3, 2, 1]))
    expected, _ = theirs(x, x, x, key_padding_mask=~pad)  # torch: True = ignore
    torch.testing.assert_close(ours(x, key_padding_mask=pad)[0], expected, **F32)
    torch.testing.assert_close(ours(x, mask=key_mask(pad))[0], expected, **F32)
    with pytest.raises(ValueError, match=r"ambiguous when the batch size B = 4 equals n"):
        ours(x, mask=pad)
    with pytest.raises(ValueError, match=r"2-D mask must be exactly \(n, m\) = \(4, 4\), got \(3"):
        ours(x[:3], mask=pad[:3])


def test_q_k_v_of_different_ranks_or_batch_dims_are_refused():
    q, k, v = make_qkv((3, 4), 5, 7, 8, 8, seed=34)
    for path in _paths().values():
        with pytest.raises(ValueError, match=r"same rank .*\(3, 4, 5, 8\), \(4, 7, 8\)"):
            path(q, k[0], v[0])  # (h, m, d) used to broadcast over B
        with pytest.raises(ValueError, match="same leading .*expand them"):
            path(q, k[:1], v[:1])  # size 1 used to broadcast silently
        torch.testing.assert_close(  # the explicit spelling: expand, a view
            path(q, k[:1].expand(3, -1, -1, -1), v[:1].expand(3, -1, -1, -1)),
            F.scaled_dot_product_attention(q, k[:1], v[:1]),
            **F32,
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_large_logits_in_every_dtype(device, dtype):
    # |q|, |k| ~ 100 per entry, d_k = 64: q k^T overflows float16 unless q is scaled first.
    q, k, v = make_qkv((2, 3), 5, 7, 64, 4, seed=35, device=device)
    q, k, v = (100 * q).to(dtype), (100 * k).to(dtype), v.to(dtype)
    expected = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    for name, path in _paths().items():
        out = path(q, k, v)
        assert out.dtype == dtype, name
        torch.testing.assert_close(out.double(), expected, atol=1e-3, rtol=0, msg=name)


def test_chunked_bfloat16_error_is_that_of_the_fused_kernel():
    # Accumulating in bfloat16 made chunked attention's error 4x torch's at m = 4096.
    gen = torch.Generator().manual_seed(36)
    q, k, v = (torch.randn(1, 2, s, 64, generator=gen) for s in (64, 4096, 4096))
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
    fused = (F.scaled_dot_product_attention(q, k, v).double() - exact).abs()
    for chunk_size in (64, 1024):
        ours = (chunked_attention(q, k, v, chunk_size=chunk_size).double() - exact).abs()
        assert ours.max() <= 2 * fused.max() and ours.mean() <= 2 * fused.mean(), chunk_size


def test_nan_and_inf_raise_on_every_path(device):
    q, k, v = make_qkv((2,), 4, 5, 3, 2, seed=37, device=device)
    w_q, w_k, w = (torch.randn(s, device=device) for s in ((7, 3), (7, 3), (7,)))
    paths = _paths() | {
        "additive": lambda q, k, v, m=None: additive_attention(q, k, v, w_q, w_k, w, m)[0]
    }
    for (name, bad), (path_name, path) in itertools.product(
        (("q", float("nan")), ("k", float("inf")), ("v", float("nan")), ("q", float("-inf"))),
        paths.items(),
    ):
        if path_name == "additive" and not math.isnan(bad):  # tanh(inf) = 1 is finite
            continue
        inputs = {"q": q, "k": k, "v": v}
        inputs[name] = inputs[name].clone()
        inputs[name][1, 2, 0] = bad
        with pytest.raises(ValueError, match=f"{name} contains NaN or inf"):
            path(inputs["q"], inputs["k"], inputs["v"])
    for bad in (float("nan"), float("inf")):
        mask = torch.zeros(4, 5, device=device)
        mask[2, 3] = bad
        for path in paths.values():
            with pytest.raises(
                ValueError, match=r"mask contains NaN or \+inf \(-inf means masked\)"
            ):
                path(q, k, v, mask)
    mha = MultiHeadAttention(6, 2).to(device)
    with pytest.raises(ValueError, match="q contains NaN or inf"):
        mha(torch.full((2, 3, 6), float("nan"), device=device))


def test_overflow_in_the_scores_is_reported():
    q = torch.full((2, 3, 64), 1e20)  # q.k / 8 = 8e40 > 3.4e38, the float32 maximum
    with pytest.raises(ValueError, match="although every input is finite: the scores overflow"):
        reference(q, q, q)


def test_float16_scores_beyond_its_range_match_the_fused_kernel():
    q = torch.full((2, 3, 64), 300.0, dtype=torch.float16)  # q.k / 8 = 720000 > 65504
    v = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(0)).half()
    expected = F.scaled_dot_product_attention(q, q, v)  # computed in float32 inside
    torch.testing.assert_close(reference(q, q, v)[0], expected)
    torch.testing.assert_close(scaled_dot_product_attention(q, q, v), expected)


@pytest.mark.parametrize(("n", "m"), [(0, 5), (4, 0), (0, 0)])
def test_no_queries_or_no_keys_give_zeros_of_the_right_shape(device, n, m):
    q, k, v = make_qkv((2, 3), n, m, 4, 6, seed=38, device=device)
    masks = {
        "none": None,
        "size-1 axes": torch.ones(1, 1, n, m, dtype=torch.bool, device=device),
        "pair": torch.ones(n, m, dtype=torch.bool, device=device),
        "float, per batch": torch.zeros(2, 1, 1, m, device=device),
    }
    for (name, path), (kind, mask) in ((p, mk) for p in _paths().items() for mk in masks.items()):
        out = path(q, k, v, mask)
        assert out.shape == (2, 3, n, 6) and out.eq(0).all(), f"{name} path, {kind} mask"
    _, weights = reference(q, k, v, masks["size-1 axes"])
    assert weights.shape == (2, 3, n, m)
    pad = torch.ones(2, m, dtype=torch.bool, device=device)
    assert chunked_attention(q[0], k[0], v[0], key_padding_mask=pad[:1].expand(3, m)).shape[1] == n


def test_mask_with_larger_batch_dims_than_the_scores_is_refused():
    q, k, v = make_qkv((1,), 3, 5, 4, 4, seed=39)
    for path in _paths().values():
        with pytest.raises(ValueError, match=r"scores' size \(1, 3, 5\), got \(2, 3, 5\)"):
            path(q, k, v, torch.ones(2, 3, 5, dtype=torch.bool))


def test_chunked_attention_never_allocates_more_than_one_block():
    # Tiling only the keys, or blocks of (chunk_size, chunk_size), held far more than this.
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LargestAllocation(TorchDispatchMode):
        nbytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            seen = {t.untyped_storage().data_ptr() for t in tensors}  # views and in-place ops
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                    self.nbytes = max(self.nbytes, t.untyped_storage().nbytes())
            return out

    q, k, v = make_qkv((2, 3), 512, 512, 8, 8, seed=40)
    for mask in (None, causal_mask(512), to_additive(causal_mask(512))[None, None]):
        with LargestAllocation() as largest:
            out = chunked_attention(q, k, v, mask, chunk_size=128, query_chunk_size=16)
        block = 2 * 3 * 16 * 128 * 4  # (B, h, query_chunk_size, chunk_size) float32
        assert largest.nbytes <= max(block, out.untyped_storage().nbytes())
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, mask), **F32)


@pytest.mark.parametrize("query_chunk_size", [1, 2, 5, 256])
def test_chunked_query_blocks_equal_full(query_chunk_size):
    q, k, v = make_qkv((2, 3), 7, 11, 5, 4, seed=41, dtype=torch.float64)
    for mask in masks_for((2, 3), 7, 11, 41, "cpu").values():
        torch.testing.assert_close(
            chunked_attention(q, k, v, mask, chunk_size=4, query_chunk_size=query_chunk_size),
            reference(q, k, v, mask)[0],
            **F64,
        )
    with pytest.raises(ValueError, match="query_chunk_size must be >= 1, got 0"):
        chunked_attention(q, k, v, query_chunk_size=0)


# ---------------------------------------------------------------- half precision: masks win


def _half_case(dtype=torch.float16):
    """One query, two keys: the allowed key scores about -5.9e4, the masked one +3e4."""
    q = torch.tensor([[[300.0, 0.0]]], dtype=dtype)  # (1, n=1, 2); scale 1/sqrt(2)
    k = torch.tensor([[[-280.0, 0.0], [150.0, 0.0]]], dtype=dtype)  # (1, m=2, 2)
    v = torch.tensor([[[1.0], [2.0]]], dtype=dtype)  # the answer is 1.0: key 0's value
    allowed = torch.tensor([[[True, False]]])
    return q, k, v, allowed


def _all_paths(q, k, v, mask, **kw):
    return {
        "fast": scaled_dot_product_attention(q, k, v, mask, **kw),
        "reference": scaled_dot_product_attention(q, k, v, mask, return_weights=True, **kw)[0],
        "chunked": chunked_attention(q, k, v, mask, **kw),
    }


@pytest.mark.parametrize("kind", ["to_additive", "finfo.min", "finfo.min + key_padding_mask"])
def test_a_masked_key_loses_whatever_its_score_in_float16(kind):
    q, k, v, allowed = _half_case()
    finfo_min = torch.zeros(1, 1, 2, dtype=torch.float16).masked_fill(~allowed, -65504.0)
    kw = {}
    if kind == "to_additive":
        mask = to_additive(allowed, torch.float16)
    elif kind == "finfo.min":  # Hugging Face's convention for an additive mask
        mask = finfo_min
    else:  # qkv combines a float mask with the padding mask itself
        q, k, v = q[None], k[None], v[None]  # (B=1, h=1, n, d)
        mask, kw = torch.zeros(1, 1, 1, 2, dtype=torch.float16), {"key_padding_mask": allowed[0]}
    for name, out in _all_paths(q, k, v, mask, **kw).items():
        assert out.flatten().tolist() == [1.0], (kind, name)


def test_float16_weights_path_agrees_with_the_fused_kernel_when_an_allowed_score_overflows():
    q, k, v, allowed = _half_case()
    k[0, 0, 0] = -400.0  # the allowed score 300 * -400 / sqrt(2) = -84853 < -65504
    expected = F.scaled_dot_product_attention(q, k, v, allowed)  # float32 inside
    assert expected.item() == 1.0
    for name, out in _all_paths(q, k, v, allowed).items():
        assert out.item() == 1.0, name
    mha = MultiHeadAttention(2, 1, bias=False).half()  # need_weights=True: the weights path
    with torch.no_grad():  # identity projections (times sqrt(2) for W_q): the same scores
        for w in (mha.w_q, mha.w_k, mha.w_v, mha.w_o):
            w.weight.copy_(torch.eye(2))
        mha.w_q.weight.mul_(2**0.5)
        _, weights = mha(q / 2**0.5, k, mask=allowed[0], need_weights=True)
    assert weights.flatten().tolist() == [1.0, 0.0]


@pytest.mark.parametrize("mask_dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_mask_with_float32_inputs_still_masks_every_key(mask_dtype):
    q, k, v = make_qkv((1,), 2, 4, 3, 2, seed=50)
    allowed = torch.tensor([[[True, True, False, False], [False, False, False, False]]])
    for mask in (
        to_additive(allowed, mask_dtype),
        torch.zeros(1, 2, 4, dtype=mask_dtype).masked_fill(~allowed, torch.finfo(mask_dtype).min),
    ):
        for name, out in _all_paths(q, k, v, mask).items():
            assert out[0, 1].eq(0).all(), name  # the row with no allowed key
            expected = F.scaled_dot_product_attention(q[:, :1], k, v, allowed[:, :1])
            torch.testing.assert_close(out[:, :1], expected, msg=name)


def test_a_mask_on_another_device_is_refused_clearly():
    q, k, v = make_qkv((2,), 3, 4, 4, 4, seed=51)
    mask = torch.ones(2, 3, 4, dtype=torch.bool, device="meta")
    w_q = w_k = torch.ones(2, 4)
    additive = {"additive": lambda *a: additive_attention(*a[:3], w_q, w_k, torch.ones(2), a[3])}
    for path in {**_paths(), **additive}.values():
        with pytest.raises(ValueError, match="mask must be on q's device cpu, got a mask on meta"):
            path(q, k, v, mask)
    with pytest.raises(ValueError, match="key_padding_mask must be on q's device"):
        pad = torch.ones(2, 4, dtype=torch.bool, device="meta")
        chunked_attention(q, k, v, key_padding_mask=pad)


def test_additive_attention_names_a_weight_of_the_wrong_type_or_dtype():
    q, k, v = make_qkv((2,), 3, 4, 3, 5, seed=52)
    w_q, w_k, w = torch.randn(7, 3), torch.randn(7, 3), torch.randn(7)
    with pytest.raises(TypeError, match="w must be a Tensor of q's dtype torch.float32, got list"):
        additive_attention(q, k, v, w_q, w_k, w.tolist())
    with pytest.raises(TypeError, match="w must be a Tensor of q's dtype .*, got torch.float64"):
        additive_attention(q, k, v, w_q, w_k, w.double())
    with pytest.raises(TypeError, match="w_q must be a Tensor of q's dtype"):
        additive_attention(q, k, v, w_q.half(), w_k, w)
