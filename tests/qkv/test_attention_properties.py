"""Property-based tests: qkv's three attention paths against PyTorch on random inputs.

Hypothesis draws the rank (2 to 4), the batch dims, ``n`` and ``m`` (0 included), the
widths, a mask of an accepted form (none; 2-D ``(n, m)``; the scores' rank with random
size-1 axes; bool or float with ``-inf`` and ``finfo.min`` entries), an optional
``key_padding_mask``, a scale and block sizes. The fast path, the reference path and
chunked attention must equal :func:`torch.nn.functional.scaled_dot_product_attention`
in float64, except in rows with no allowed key, which qkv defines as zeros. A second
test draws masks outside the rule and checks that every path refuses them alike.

Two more tests run in float16, bfloat16 and float32 against PyTorch's SDPA in the same
dtype: masks in any of those dtypes (``-inf`` or ``finfo.min`` of the mask's dtype) over
padded keys with huge scores, on the three paths; and :class:`MultiHeadAttention` with
grouped-query heads (``enable_gqa=True`` in PyTorch) on both of its paths, with the
padding given as ``key_padding_mask`` or as one additive mask.

The examples are derandomized and bounded (a fixed profile), so the file takes a few
seconds and the same cases run on every machine.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qkv.attention import MultiHeadAttention, chunked_attention, scaled_dot_product_attention

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

PROFILE = settings(
    max_examples=150,
    derandomize=True,  # the same examples every run: CI time and results stay fixed
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MIN = torch.finfo(torch.float64).min


@st.composite
def attention_inputs(draw):
    rank = draw(st.integers(2, 4))
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=rank - 2, max_size=rank - 2)))
    n, m = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    d_k, d_v = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    q, k, v = (
        torch.randn(*batch, L, d, generator=gen, dtype=torch.float64)
        for L, d in ((n, d_k), (m, d_k), (m, d_v))
    )
    kind = draw(st.sampled_from(["none", "bool", "float"]))
    mask = None
    if kind != "none":
        pair_ok = rank == 2 or not (batch[0] == n > 1)  # B == n > 1: a 2-D mask is ambiguous
        if pair_ok and draw(st.booleans()):
            shape = (n, m)
        else:
            full = (*batch, n, m)
            shape = tuple(draw(st.sampled_from([1, s])) for s in full)
        if kind == "bool":
            mask = torch.rand(shape, generator=gen) < draw(st.sampled_from([0.3, 0.7, 1.0]))
        else:
            mask = torch.randn(shape, generator=gen, dtype=torch.float64)
            blocked = torch.rand(shape, generator=gen) < 0.4
            mask = mask.masked_fill(blocked, draw(st.sampled_from([float("-inf"), MIN])))
    pad = None
    if rank > 2 and draw(st.booleans()):
        pad = torch.rand(batch[0], m, generator=gen) < 0.7
    scale = draw(st.one_of(st.none(), st.floats(0.05, 4.0)))
    blocks = {"chunk_size": draw(st.integers(1, 4)), "query_chunk_size": draw(st.integers(1, 4))}
    return q, k, v, mask, pad, scale, blocks


def torch_reference(q, k, v, mask, pad, scale):
    """PyTorch's SDPA with the same combined mask; rows with no allowed key set to 0."""
    n, m = q.shape[-2], k.shape[-2]
    if pad is not None:
        pad = pad.view(pad.shape[0], *(1,) * (q.dim() - 2), m)  # (B, m) -> (B, 1, ..., 1, m)
        if mask is None or mask.dtype == torch.bool:
            mask = pad if mask is None else mask & pad
        else:
            mask = torch.where(pad, mask, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if mask is None:
        return out
    mask = mask.expand(*q.shape[:-2], n, m)
    empty = ~mask.any(-1) if mask.dtype == torch.bool else (mask <= MIN).all(-1)
    return torch.where(empty[..., None], 0.0, out)  # torch may give NaN or a uniform row


@PROFILE
@given(attention_inputs())
def test_every_path_matches_torch(case):
    q, k, v, mask, pad, scale, blocks = case
    expected = torch_reference(q, k, v, mask, pad, scale)
    for device in DEVICES:
        args = [x.to(device) for x in (q, k, v)] + [None if mask is None else mask.to(device)]
        kw = {"scale": scale, "key_padding_mask": None if pad is None else pad.to(device)}
        fast = scaled_dot_product_attention(*args, **kw)
        ref, weights = scaled_dot_product_attention(*args, **kw, return_weights=True)
        chunked = chunked_attention(*args, **kw, **blocks)
        for name, out in (("fast", fast), ("reference", ref), ("chunked", chunked)):
            assert out.shape == expected.shape, name
            torch.testing.assert_close(out.cpu(), expected, atol=1e-10, rtol=1e-8, msg=name)
        torch.testing.assert_close(ref, weights @ args[2], atol=1e-12, rtol=0)
        sums = weights.sum(-1)
        assert ((sums - 1).abs() < 1e-12).logical_or(sums == 0).all()


@st.composite
def bad_masks(draw):
    """Inputs of rank 3 or 4 with a mask outside the rule: another rank, or a wrong size."""
    rank = draw(st.integers(3, 4))
    batch = tuple(draw(st.lists(st.integers(2, 3), min_size=rank - 2, max_size=rank - 2)))
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    q, k, v = (torch.zeros(*batch, L, 2) for L in (n, m, m))
    wrong_rank = draw(st.sampled_from([r for r in range(6) if r not in (2, rank)]))
    if draw(st.booleans()):
        shape = tuple(draw(st.integers(1, 3)) for _ in range(wrong_rank))
    else:  # the scores' rank, one axis neither 1 nor the scores' size
        shape = [*batch, n, m]
        axis = draw(st.integers(0, rank - 1))
        shape[axis] += draw(st.integers(1, 2))
        shape = tuple(shape)
    dtype = draw(st.sampled_from([torch.bool, torch.float64]))
    return q, k, v, torch.zeros(shape, dtype=dtype)


@PROFILE
@given(bad_masks())
def test_every_path_refuses_a_mask_outside_the_rule_alike(case):
    q, k, v, mask = case
    messages = set()
    for path in (
        scaled_dot_product_attention,
        lambda *a: scaled_dot_product_attention(*a, return_weights=True),
        chunked_attention,
    ):
        with pytest.raises(ValueError, match="for a \\(B, m\\) padding mask") as error:
            path(q, k, v, mask)
        messages.add(str(error.value))
    assert len(messages) == 1


# ---------------------------------------------------------------- half precision
# Inputs in float16, bfloat16 or float32, masks in float16, bfloat16, float32 or bool, with
# masked entries -inf or the most negative finite value *of the mask's dtype*. Padded keys
# hold garbage 1000 times larger than the real ones: a masked key must lose whatever its
# score. The reference is PyTorch's SDPA in the inputs' dtype (it computes in float32) with
# the same mask written as a bool mask or with -inf, which no score outweighs.

HALF_PROFILE = settings(PROFILE, max_examples=60)
TOLERANCE = {  # output rounding of each dtype, a few ulps
    torch.float16: {"atol": 3e-3, "rtol": 3e-3},
    torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2},
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
}
DTYPES = [torch.float16, torch.bfloat16, torch.float32]


@st.composite
def half_inputs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    B, h = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    n, m = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    d_k, d_v = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    q, k, v = (torch.randn(B, h, L, d, generator=gen) for L, d in ((n, d_k), (m, d_k), (m, d_v)))
    pad = torch.rand(B, m, generator=gen) < 0.7
    k = torch.where(pad[:, None, :, None], k, 1000 * k.abs())  # padded keys: huge scores
    allowed = torch.rand(B, 1, n, m, generator=gen) < draw(st.sampled_from([0.5, 0.8, 1.0]))
    kind = draw(st.sampled_from(["bool", torch.float16, torch.bfloat16, torch.float32]))
    if kind == "bool":
        mask = allowed
    else:
        fill = draw(st.sampled_from(["-inf", "finfo.min"]))
        value = float("-inf") if fill == "-inf" else torch.finfo(kind).min
        mask = torch.randn(allowed.shape, generator=gen).to(kind).masked_fill(~allowed, value)
    q, k, v = (x.to(dtype) for x in (q, k, v))
    return q, k, v, mask, allowed, pad


def torch_half_reference(q, k, v, mask, allowed, pad):
    """PyTorch's SDPA; the mask written with -inf; rows with no allowed key set to 0."""
    allowed = allowed & pad[:, None, None, :]  # (B, 1, n, m)
    bias = torch.zeros(allowed.shape) if mask.dtype == torch.bool else mask.float()
    attn_mask = bias.masked_fill(~allowed, float("-inf")).to(q.dtype)
    empty = ~allowed.any(-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.masked_fill(empty, 0.0))
    return out.masked_fill(empty, 0.0)


@HALF_PROFILE
@given(half_inputs())
def test_half_precision_masks_match_torch_on_every_path(case):
    q, k, v, mask, allowed, pad = case
    expected = torch_half_reference(*case)
    kw = {"key_padding_mask": pad}
    paths = {
        "fast": scaled_dot_product_attention(q, k, v, mask, **kw),
        "reference": scaled_dot_product_attention(q, k, v, mask, return_weights=True, **kw)[0],
        "chunked": chunked_attention(q, k, v, mask, chunk_size=2, query_chunk_size=2, **kw),
    }
    for name, out in paths.items():
        assert out.dtype == q.dtype, name
        torch.testing.assert_close(out, expected, **TOLERANCE[q.dtype], msg=name)


@st.composite
def gqa_inputs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n_kv_heads = draw(st.integers(1, 2))
    n_heads = n_kv_heads * draw(st.integers(1, 3))
    d_model = n_heads * draw(st.integers(1, 3))
    B, L = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31))
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (B,), generator=gen)
    pad = torch.arange(L) < lengths[:, None]  # (B, L), True = real token
    x = torch.randn(B, L, d_model, generator=gen)
    scale = draw(st.sampled_from([1.0, 30.0]))  # 30: scores of +-3e4, near float16's limit
    x = torch.where(pad[..., None], scale * x, 1000 * x)  # padded positions: huge garbage
    causal = draw(st.booleans())
    padding_as = draw(st.sampled_from(["key_padding_mask", "finfo.min", "-inf"]))
    return dtype, n_heads, n_kv_heads, d_model, seed, x.to(dtype), pad, causal, padding_as


@HALF_PROFILE
@given(gqa_inputs())
def test_grouped_query_attention_matches_torch_in_every_dtype(case):
    dtype, n_heads, n_kv_heads, d_model, seed, x, pad, causal, padding_as = case
    torch.manual_seed(seed)
    mha = MultiHeadAttention(d_model, n_heads, n_kv_heads=n_kv_heads).to(dtype).eval()
    B, L, _ = x.shape
    d_k = d_model // n_heads
    allowed = pad[:, None, None, :]  # (B, 1, 1, L)
    if causal:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool).tril()
    pair = torch.ones(L, L, dtype=torch.bool).tril() if causal else torch.ones(L, L).bool()
    if padding_as == "key_padding_mask":
        mask, kw = pair[None, None], {"key_padding_mask": pad}
    else:  # one additive mask in the inputs' dtype, as Hugging Face builds it
        value = float("-inf") if padding_as == "-inf" else torch.finfo(dtype).min
        mask, kw = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, value), {}
    with torch.no_grad():
        q = mha.w_q(x).view(B, L, n_heads, d_k).transpose(1, 2)
        k = mha.w_k(x).view(B, L, n_kv_heads, d_k).transpose(1, 2)
        v = mha.w_v(x).view(B, L, n_kv_heads, d_k).transpose(1, 2)
        empty = ~allowed.any(-1, keepdim=True)
        attn_mask = allowed | empty
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=True)
        heads = heads.masked_fill(empty, 0.0)
        expected = mha.w_o(heads.transpose(1, 2).reshape(B, L, d_model))
        for need_weights in (False, True):
            out, _ = mha(x, mask=mask, need_weights=need_weights, **kw)
            real = pad[..., None].expand_as(out)  # padded queries' outputs are meaningless
            torch.testing.assert_close(
                out[real], expected[real], **TOLERANCE[dtype], msg=f"need_weights={need_weights}"
            )
