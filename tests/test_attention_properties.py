"""Property-based tests: qkv's three attention paths against PyTorch on random inputs.

Hypothesis draws the rank (2 to 4), the batch dims, ``n`` and ``m`` (0 included), the
widths, a mask of an accepted form (none; 2-D ``(n, m)``; the scores' rank with random
size-1 axes; bool or float with ``-inf`` and ``finfo.min`` entries), an optional
``key_padding_mask``, a scale and block sizes. The fast path, the reference path and
chunked attention must equal :func:`torch.nn.functional.scaled_dot_product_attention`
in float64, except in rows with no allowed key, which qkv defines as zeros. A second
test draws masks outside the rule and checks that every path refuses them alike.

The examples are derandomized and bounded (a fixed profile), so the file takes a few
seconds and the same cases run on every machine.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qkv.attention import chunked_attention, scaled_dot_product_attention

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
    q, k, v = (torch.randn(*batch, L, d, generator=gen, dtype=torch.float64)
               for L, d in ((n, d_k), (m, d_k), (m, d_v)))  # fmt: skip
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
