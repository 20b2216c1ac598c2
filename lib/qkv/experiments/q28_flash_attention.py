"""Q28 (FlashAttention): the same FLOPs, far fewer bytes, and an exact result.

Three pieces of evidence for the chapter, all on the CPU and all exact in float64:

- :func:`standard_io` and :func:`flash_io` run the two algorithms of Dao et al.
  (2022), Algorithm 0 and Algorithm 1, on real tensors while a :class:`Traffic`
  counter records every element moved between a slow memory (HBM) and a fast memory
  of ``capacity`` elements (SRAM), and refuses any step whose working set does not
  fit. Both outputs are compared with PyTorch's attention.
- :class:`FlashAttentionFunction`: the forward keeps only the output and one
  log-sum-exp per query; the backward recomputes each block of scores from q, k and
  those statistics (Algorithm 2's idea) instead of reading a stored ``(n, n)``
  matrix. ``torch.autograd.gradcheck`` tests it against finite differences.
- :func:`split_key_decode`: one query over a long cache, the keys split into chunks
  that are processed independently and merged by their log-sum-exps
  (Flash-Decoding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from qkv.experiments import claims

__all__ = [
    "Traffic",
    "standard_io",
    "flash_io",
    "flash_block_sizes",
    "FlashAttentionFunction",
    "split_key_decode",
    "standard_attention",
    "flash_attention",
    "saved_for_backward",
    "training_flops",
    "CLAIMS",
]

CLAIMS = claims()  # every number of Q28 is counted or exact: nothing depends on a seed


@dataclass
class Traffic:
    """Elements moved between slow memory (HBM) and a fast memory of ``capacity`` elements."""

    capacity: int
    reads: int = 0
    writes: int = 0
    peak: int = 0  # the largest working set held in fast memory

    def read(self, *tensors: Tensor) -> None:
        self.reads += sum(t.numel() for t in tensors)

    def write(self, *tensors: Tensor) -> None:
        self.writes += sum(t.numel() for t in tensors)

    def hold(self, *tensors: Tensor) -> None:
        """Declare the working set of one step; it must fit in fast memory."""
        size = sum(t.numel() for t in tensors)
        if size > self.capacity:
            raise MemoryError(f"working set of {size} elements > fast memory of {self.capacity}")
        self.peak = max(self.peak, size)

    @property
    def total(self) -> int:
        return self.reads + self.writes


def standard_io(q: Tensor, k: Tensor, v: Tensor, capacity: int) -> tuple[Tensor, Traffic]:
    """Algorithm 0: write the scores S and the weights P to slow memory, read them back.

    ``q, k, v: (n, d)``. Products are computed in row blocks that fit in fast memory;
    the softmax reads one row of S at a time (so ``capacity >= 2 n``). Returns the
    output ``(n, d)`` and the traffic: about ``4 n^2`` for S and P, whatever the
    capacity, plus the reads of K and V once per block of rows.
    Used in: Q28.
    """
    n, d = q.shape
    io = Traffic(capacity)
    # The largest block of rows with a block of Q, one of K and their scores in fast memory:
    # 2 * rows * d + rows**2 <= capacity.
    rows = max(1, math.isqrt(d * d + capacity) - d)
    s = torch.empty(n, n, dtype=q.dtype)  # lives in slow memory
    for i in range(0, n, rows):
        q_i = q[i : i + rows]
        io.read(q_i)
        for j in range(0, n, rows):
            k_j = k[j : j + rows]
            io.read(k_j)
            s_ij = q_i @ k_j.T / math.sqrt(d)
            io.hold(q_i, k_j, s_ij)
            s[i : i + rows, j : j + rows] = s_ij
            io.write(s_ij)
    p = torch.empty_like(s)
    for i in range(n):  # softmax, one row at a time: read S, write P
        io.read(s[i])
        p[i] = torch.softmax(s[i], dim=-1)
        io.hold(s[i], p[i])
        io.write(p[i])
    out = torch.zeros(n, d, dtype=q.dtype)
    for i in range(0, n, rows):
        o_i = out[i : i + rows]
        for j in range(0, n, rows):
            p_ij, v_j = p[i : i + rows, j : j + rows], v[j : j + rows]
            io.read(p_ij, v_j)
            o_i += p_ij @ v_j
            io.hold(p_ij, v_j, o_i)
        io.write(o_i)
    return out, io


def flash_block_sizes(capacity: int, d: int) -> tuple[int, int]:
    """Algorithm 1's blocks: ``B_c = ceil(M / 4d)`` keys, ``B_r = min(B_c, d)`` queries."""
    b_c = math.ceil(capacity / (4 * d))
    return min(b_c, d), b_c


def flash_io(q: Tensor, k: Tensor, v: Tensor, capacity: int) -> tuple[Tensor, Traffic]:
    """Algorithm 1: tiles of K, V in the outer loop, of Q in the inner one, online softmax.

    The output ``O`` and the per-query statistics ``m`` (running max) and ``l``
    (running sum) live in slow memory and are read and written once per key block;
    the ``(n, n)`` matrices never exist. Every block fits when ``capacity >= 8 d (d + 1)``.
    Returns the output ``(n, d)`` and the traffic, ``Θ(n^2 d^2 / capacity)``.
    Used in: Q28.
    """
    n, d = q.shape
    io = Traffic(capacity)
    b_r, b_c = flash_block_sizes(capacity, d)
    out = torch.zeros(n, d, dtype=q.dtype)
    m = torch.full((n,), -math.inf, dtype=q.dtype)
    ell = torch.zeros(n, dtype=q.dtype)
    for j in range(0, n, b_c):
        k_j, v_j = k[j : j + b_c], v[j : j + b_c]
        io.read(k_j, v_j)
        for i in range(0, n, b_r):
            rows = slice(i, i + b_r)
            q_i, o_i, m_i, l_i = q[rows], out[rows], m[rows], ell[rows]
            io.read(q_i, o_i, m_i, l_i)
            s_ij = q_i @ k_j.T / math.sqrt(d)  # (B_r, B_c), fast memory only
            m_new = torch.maximum(m_i, s_ij.amax(dim=-1))
            p_ij = torch.exp(s_ij - m_new[:, None])
            rescale = torch.exp(m_i - m_new)  # shrink what was summed under the old max
            l_new = rescale * l_i + p_ij.sum(dim=-1)
            o_new = (rescale * l_i)[:, None] * o_i + p_ij @ v_j
            io.hold(k_j, v_j, q_i, o_i, s_ij, m_i, l_i)
            out[rows], m[rows], ell[rows] = o_new / l_new[:, None], m_new, l_new
            io.write(o_i, m_i, l_i)
    return out, io


class FlashAttentionFunction(torch.autograd.Function):
    """Attention ``softmax(q k^T / sqrt(d)) v`` that saves no ``(n, m)`` matrix for backward.

    Forward saves ``q, k, v``, the output and the log-sum-exp of each query's scores;
    backward recomputes the scores block by block of ``block`` keys.
    ``q: (n, d)``, ``k, v: (m, d)``.
    Used in: Q28.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, block: int) -> Tensor:  # type: ignore[override]
        """The output, by an online softmax over blocks of ``block`` keys; saves O and the LSE."""
        scale = 1 / math.sqrt(q.shape[-1])
        lse = torch.full(q.shape[:-1], -math.inf, dtype=q.dtype)
        out = torch.zeros_like(q)
        for j in range(0, k.shape[0], block):  # online softmax over key blocks
            s = q @ k[j : j + block].T * scale
            new_lse = torch.logaddexp(lse, torch.logsumexp(s, dim=-1))
            out = (
                out * torch.exp(lse - new_lse)[:, None]
                + torch.exp(s - new_lse[:, None]) @ v[j : j + block]
            )
            lse = new_lse
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.block, ctx.scale = block, scale
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        """Gradients of q, k, v, each block of weights recomputed from q, k and the LSE."""
        q, k, v, out, lse = ctx.saved_tensors
        block, scale = ctx.block, ctx.scale
        delta = (grad_out * out).sum(dim=-1)  # D_i = rowsum(dO ∘ O)
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for j in range(0, k.shape[0], block):
            k_j, v_j = k[j : j + block], v[j : j + block]
            p = torch.exp(q @ k_j.T * scale - lse[:, None])  # recomputed, never stored
            dv[j : j + block] = p.T @ grad_out
            ds = p * (grad_out @ v_j.T - delta[:, None])  # softmax backward
            dq += ds @ k_j * scale
            dk[j : j + block] = ds.T @ q * scale
        return dq, dk, dv, None


def split_key_decode(q: Tensor, k: Tensor, v: Tensor, splits: int) -> Tensor:
    """One query ``(1, d)`` over ``m`` cached keys, in ``splits`` independent chunks.

    Each chunk returns its normalised partial output and the log-sum-exp of its
    scores; the merge weights chunk ``s`` by ``exp(lse_s - lse)``, with ``lse`` the
    log-sum-exp over every key. On a GPU the chunks run in parallel (Flash-Decoding).
    Used in: Q28.
    """
    scale = 1 / math.sqrt(q.shape[-1])
    partial, lses = [], []
    for k_s, v_s in zip(k.chunk(splits), v.chunk(splits), strict=True):
        s = q @ k_s.T * scale  # (1, m / splits)
        lses.append(torch.logsumexp(s, dim=-1))
        partial.append(torch.softmax(s, dim=-1) @ v_s)
    lse = torch.logsumexp(torch.stack(lses), dim=0)
    out = sum(torch.exp(l_s - lse)[:, None] * o_s for l_s, o_s in zip(lses, partial, strict=True))
    return cast(Tensor, out)  # sum() starts from the int 0; the first chunk makes it a Tensor


def standard_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` as autograd records it: the ``(n, m)`` weights are saved.

    Used in: Q28.
    """
    return torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1) @ v


def flash_attention(q: Tensor, k: Tensor, v: Tensor, block: int = 64) -> Tensor:
    """The same attention through :class:`FlashAttentionFunction` (blocks of ``block`` keys).

    Used in: Q28.
    """
    return FlashAttentionFunction.apply(q, k, v, block)


def saved_for_backward(attention: Callable[..., Tensor], q: Tensor, k: Tensor, v: Tensor) -> int:
    """Elements autograd keeps for the backward pass of ``attention(q, k, v)``.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``; a tensor saved twice
    (the same storage) counts once.
    Used in: Q28.
    """
    seen: dict[tuple[int, int, tuple[int, ...]], int] = {}

    def pack(t: Tensor) -> Tensor:
        seen[(t.untyped_storage().data_ptr(), int(t.storage_offset()), tuple(t.shape))] = t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        attention(*(x.detach().requires_grad_() for x in (q, k, v)))
    return sum(seen.values())


def training_flops(attention: Callable[..., Tensor], q: Tensor, k: Tensor, v: Tensor) -> dict:
    """FLOPs PyTorch counts for the forward and the backward pass of ``attention``.

    Used in: Q28.
    """
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    with FlopCounterMode(display=False) as forward:
        out = attention(q, k, v)
    with FlopCounterMode(display=False) as backward:
        out.backward(torch.ones_like(out))
    return {"forward": forward.get_total_flops(), "backward": backward.get_total_flops()}
