"""Chunked attention: exact softmax attention in blocks, with an online softmax.

The FlashAttention blocking (Dao et al. 2022, Alg. 1) in plain PyTorch: queries are
cut into blocks of ``query_chunk_size`` rows (``B_r`` in the paper) and, for each,
the keys and values into chunks of ``chunk_size`` (``B_c``). A running max and a
running sum per query (Milakov & Gimelshein 2018) rescale the partial results
whenever a new chunk raises the max, so the ``(n, m)`` score matrix is never formed:
the largest temporary is one ``(..., query_chunk_size, chunk_size)`` block. Sums are
accumulated in float32 (float64 stays float64) and cast back at the end, as fused
kernels do.

Re-exported as :func:`qkv.attention.chunked_attention`, where the mask rule and the
other attention functions are documented.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qkv._checks import (
    check_attention_mask,
    check_finite_result,
    check_int,
    check_qkv,
    check_scale,
)

__all__ = ["chunked_attention"]


def chunked_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    scale: float | None = None,
    chunk_size: int = 1024,
    query_chunk_size: int = 256,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """Exact attention over blocks of queries and chunks of keys, never forming ``(n, m)``.

    Args:
        q: queries ``(..., n, d_k)``.
        k: keys ``(..., m, d_k)``, same leading dims as ``q``.
        v: values ``(..., m, d_v)``.
        mask: as in :func:`qkv.attention.scaled_dot_product_attention`: bool
            (``True`` = may attend) or float (added), 2-D ``(n, m)`` or of the scores' rank.
        scale: multiplies ``q k^T``, finite and >= 0; defaults to ``1 / sqrt(d_k)``.
        chunk_size: keys per chunk (``B_c``), a positive int.
        query_chunk_size: queries per block (``B_r``), a positive int.
        key_padding_mask: bool ``(B, m)``, ``True`` = real token; ANDed with ``mask``.

    Returns:
        ``(..., n, d_v)``, equal to the full computation; rows with no allowed key are 0.

    Raises:
        ValueError: for NaN or inf in the inputs that reach the result (see
            :mod:`qkv.attention`), and for shapes outside the mask rule.

    Used in: Q7, Q8, Q28.
    """
    chunk_size = check_int("chunk_size", chunk_size, 1)
    query_chunk_size = check_int("query_chunk_size", query_chunk_size, 1)
    batch = check_qkv(q, k, v)
    n, m = q.shape[-2], k.shape[-2]
    full_mask = check_attention_mask(mask, key_padding_mask, q.shape, m, q.dtype, q.device)
    scale = check_scale(scale, q.shape[-1])
    if full_mask is not None:
        full_mask = full_mask.expand(*full_mask.shape[:-2], n, m)  # a view: blocks slice it
    acc_dtype = torch.promote_types(q.dtype, torch.float32)  # bf16/fp16 sums in float32
    out = q.new_zeros((*batch, n, v.shape[-1]))  # zeros stay for n = 0 or m = 0
    for i in range(0, n, query_chunk_size):
        rows = slice(i, i + query_chunk_size)
        q_block = q[..., rows, :].to(acc_dtype) * scale  # scaled before the product: no overflow
        block_mask = None if full_mask is None else full_mask[..., rows, :]
        out[..., rows, :] = _online_softmax(q_block, k, v, block_mask, chunk_size)
    check_finite_result(out, q=q, k=k, v=v, mask=full_mask)
    return out


def _online_softmax(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, chunk_size: int
) -> Tensor:
    """Attention of one block of scaled queries ``(..., r, d_k)`` over all keys, chunk by chunk."""
    shape = (*q.shape[:-1], 1)
    running_max = q.new_full(shape, float("-inf"))  # (..., r, 1): max score seen so far
    running_sum = q.new_zeros(shape)  # (..., r, 1): sum of exp(score - running_max)
    acc = q.new_zeros((*q.shape[:-1], v.shape[-1]))  # (..., r, d_v): same sum, weighting v
    for j in range(0, k.shape[-2], chunk_size):
        cols = slice(j, j + chunk_size)
        scores = q @ k[..., cols, :].to(q.dtype).transpose(-2, -1)  # (..., r, d_k) -> (..., r, c)
        # In place from here on: `scores` is this loop's own buffer, the one block-sized tensor.
        if mask is not None:  # -inf, not finfo.min: a masked score must never become the max
            block = mask[..., cols]
            if block.dtype != torch.bool:  # a float mask: added; masked where <= finfo.min
                scores, block = scores.add_(block), ~(block <= torch.finfo(block.dtype).min)
            scores.masked_fill_(~block, float("-inf"))
        # The max only shifts the exponent for safety; the result does not depend on it.
        new_max = torch.maximum(running_max, scores.detach().amax(-1, keepdim=True))
        shift = new_max.masked_fill(new_max == float("-inf"), 0.0)  # no key yet: avoid -inf - -inf
        p = scores.sub_(shift).exp_()  # (..., r, c): exp(score - max)
        correction = torch.exp(running_max - shift)  # rescale the sums made under the old max
        running_sum = running_sum * correction + p.sum(-1, keepdim=True)
        acc = acc * correction + p @ v[..., cols, :].to(q.dtype)  # (..., r, c) @ (..., c, d_v)
        running_max = new_max
        del scores, p  # free this block before the next one is computed: one block at a time
    return acc / running_sum.masked_fill(running_sum == 0, 1.0)  # rows with no key: 0 / 1
