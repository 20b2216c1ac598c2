"""Attention: scaled dot-product, additive, multi-head (with GQA/MQA) and chunked.

Scaled dot-product attention is Eq. (1) of Vaswani et al. 2017,
``softmax(Q K^T / sqrt(d_k)) V``; ``q, k, v`` are Q, K, V. A query row with no
allowed key returns zeros (output and weights), never NaN, in every dtype.

The input rules (every function here, and :class:`MultiHeadAttention`):

- ``q, k, v`` have the same rank and the same leading (batch, head) dims: nothing
  broadcasts silently into another tensor's batch or head axis.
- ``mask``: bool, ``True`` = may attend (the convention of
  :func:`torch.nn.functional.scaled_dot_product_attention`), or float, added to the
  scores (``-inf``, or ``finfo.min`` of the mask's own dtype = masked; a masked key gets
  weight 0 whatever its score, in every dtype). Its rank fixes its meaning: either 2-D
  ``(n, m)`` exactly, one pair mask for every batch element and head (causal, local
  window), or the scores' rank ``(..., n, m)``, size-1 axes broadcasting. Nothing
  else: a ``(B, m)`` padding mask passed as ``mask`` would read as ``(n, m)``. With a
  2-D mask and ``B == n > 1`` the call is refused as ambiguous.
- ``key_padding_mask``: bool ``(B, m)``, ``True`` = **real token** (qkv's convention,
  the opposite of :class:`torch.nn.MultiheadAttention`'s ``key_padding_mask``, where
  ``True`` = ignore), combined with ``mask`` by AND. The same as
  ``mask=qkv.masks.key_mask(pad)`` for 4-D inputs.
- ``scale`` is a finite number >= 0 (0 gives uniform weights). NaN or inf in q, k, v,
  or NaN or ``+inf`` in a float mask, raises ``ValueError``, on every path and device.
  Scanning q, k and v first would cost ~10% of a call at n = 128 on CPU, so the check
  looks at the result (one sum over the output, a few percent; a host sync on CUDA)
  and only when that is not finite searches the inputs for the cause. A NaN that
  reaches no output (in a query whose keys are all masked; in a masked key, on some
  kernels) therefore passes; an overflow in the scores is reported too.

Where each function is taught (chapter numbers; files under chapters/):

- :func:`scaled_dot_product_attention`: Q1, Q2, Q4, Q5, Q7, Q8, Q9, Q12.
- :func:`additive_attention`, :class:`AdditiveAttention` (Bahdanau; they live in
  :mod:`qkv.additive`): Q1, Q2, Q3, Q6, Q7.
- :class:`MultiHeadAttention` (with GQA/MQA): Q1, Q2, Q4, Q5, Q6, Q7, Q8, Q9, Q10, Q14.
- :func:`chunked_attention` (online softmax, the FlashAttention idea; it lives in
  :mod:`qkv.chunked`): Q1, Q2, Q7, Q20.
- :func:`attention_entropy` (how peaked the weights are): Q7, Q9, Q12.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import (
    check_attention_mask,
    check_finite_result,
    check_positive_ints,
    check_probability,
    check_qkv,
    check_scale,
)
from qkv.additive import AdditiveAttention, additive_attention
from qkv.chunked import chunked_attention
from qkv.masks import empty_rows, is_masked, masked_softmax

__all__ = [
    "scaled_dot_product_attention",
    "additive_attention",
    "AdditiveAttention",
    "MultiHeadAttention",
    "chunked_attention",
    "attention_entropy",
]


@overload
def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: Literal[False] = False,
    key_padding_mask: Tensor | None = None,
) -> Tensor: ...


@overload
def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: Literal[True],
    key_padding_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]: ...


@overload
def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool,  # known only at run time, as in MultiHeadAttention
    key_padding_mask: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]: ...


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
    key_padding_mask: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Scaled dot-product attention, Eq. (1) of Vaswani et al. 2017.

    Args:
        q: queries ``(..., n, d_k)``, e.g. ``(B, h, n, d_k)``.
        k: keys ``(..., m, d_k)``, the same leading dims as ``q``.
        v: values ``(..., m, d_v)``, the same leading dims as ``q``.
        mask: bool, ``True`` = may attend, or float, added to the scores; 2-D ``(n, m)``
            or of the scores' rank ``(..., n, m)`` (see the module docstring).
        scale: multiplies ``q k^T``, finite and >= 0; defaults to ``1 / sqrt(d_k)`` (Q12).
        dropout_p: dropout on the weights, applied whenever ``dropout_p > 0``, as in
            torch's function: callers pass 0 at evaluation (``MultiHeadAttention`` does).
        return_weights: also return the weights, computed by the readable reference
            path (scores -> mask -> softmax over keys -> weighted sum); otherwise the
            fast path calls :func:`torch.nn.functional.scaled_dot_product_attention`.
        key_padding_mask: bool ``(B, m)``, ``True`` = real token (NOT torch's
            ``nn.MultiheadAttention`` convention); ANDed with ``mask``.

    Returns:
        ``out`` ``(..., n, d_v)``, or ``(out, weights)`` with weights ``(..., n, m)``
        (after dropout, so that ``out == weights @ v``). Rows with no allowed key are 0.

    Raises:
        ValueError: a mask or shapes outside the rules above, a bad ``scale``, or NaN/inf.

    Used in: Q1, Q2, Q4, Q5, Q7, Q8, Q20, Q25.
    """
    check_qkv(q, k, v)
    mask = check_attention_mask(mask, key_padding_mask, q.shape, k.shape[-2], q.dtype, q.device)
    scale = check_scale(scale, q.shape[-1])
    check_probability(dropout_p=dropout_p)
    if return_weights:  # the reference path
        # In float32 at least, as the fused kernel: in float16 an allowed score below
        # -65504 would become -inf. Scaling q first keeps q k^T small as well.
        acc = torch.promote_types(q.dtype, torch.float32)
        q_acc, k_acc, v_acc = q.to(acc), k.to(acc), v.to(acc)
        scores = (q_acc * scale) @ k_acc.transpose(-2, -1)  # (..., n, d_k) @ (..., d_k, m)
        weights = masked_softmax(scores, mask)
        if dropout_p > 0:
            weights = F.dropout(weights, dropout_p)
        out = (weights @ v_acc).to(q.dtype)  # (..., n, m) @ (..., m, d_v) -> (..., n, d_v)
        check_finite_result(out, q=q, k=k, v=v, mask=mask)
        return out, weights.to(q.dtype)
    if mask is None:  # nothing to guard: hand over to torch at once
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
    else:
        if mask.dtype != torch.bool:  # finfo.min -> -inf: a large score outweighs finfo.min
            mask = mask.masked_fill(is_masked(mask), float("-inf"))
        empty = empty_rows(mask)
        # Most masks leave no row empty: then skip two passes (over the mask and the
        # output). The test itself is a host sync on CUDA, like the finiteness check.
        if not empty.any():
            out = F.scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p, scale=scale)
        else:
            # torch's kernel, like a plain softmax, may give NaN for a row with no allowed key
            # (older versions did): let such rows attend everywhere, then zero them.
            mask = mask | empty if mask.dtype == torch.bool else mask.masked_fill(empty, 0.0)
            out = F.scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p, scale=scale)
            out = out.masked_fill(empty, 0.0)
    check_finite_result(out, q=q, k=k, v=v, mask=mask)
    return out


def attention_entropy(weights: Tensor) -> Tensor:
    """Entropy of each query's attention distribution, in nats.

    ``H = -sum_j p_j log p_j``: 0 for a one-hot row (hard attention), ``log m`` for a
    uniform row over ``m`` keys. A zero weight (a masked key) contributes 0, not NaN.

    Args:
        weights: ``(..., n, m)``, each row non-negative and summing to 1 (or all 0 for
            a query with no allowed key, whose entropy is then 0).

    Returns:
        ``(..., n)``.

    Used in: Q7, Q9.
    """
    if not isinstance(weights, Tensor) or not weights.is_floating_point() or weights.dim() < 1:
        got = f"{weights.dtype} tensor" if isinstance(weights, Tensor) else type(weights).__name__
        raise TypeError(f"weights must be a floating-point tensor (..., n, m), got {got}")
    return -torch.special.xlogy(weights, weights).sum(dim=-1)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017 §3.2.2), with grouped-query heads.

    ``n_kv_heads < n_heads`` shares each K/V head among ``n_heads // n_kv_heads``
    query heads: grouped-query attention (Ainslie et al. 2023); ``n_kv_heads=1`` is
    multi-query attention (Shazeer 2019). Each head has width ``d_k = d_model // n_heads``
    unless ``d_k`` is given (Hugging Face's ``head_dim``; then W_q is ``d_model -> h * d_k``
    and W_o is ``h * d_k -> d_model``).

    Args:
        d_model: model width.
        n_heads: number of query heads ``h``.
        n_kv_heads: number of K/V heads, dividing ``n_heads``; defaults to ``n_heads``.
        bias: whether the projections W_q, W_k, W_v, W_o have biases.
        dropout: dropout probability on the attention weights, in training mode only.
        d_k: the width of each head; defaults to ``d_model // n_heads``.

    Used in: Q1, Q2, Q4, Q5, Q6, Q7, Q8, Q9, Q10, Q14, Q18, Q23.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        d_k: int | None = None,
    ) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        check_positive_ints(d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads)
        if d_k is not None:
            check_positive_ints(d_k=d_k)
        elif d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of n_heads={n_heads}")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
        check_probability(dropout=dropout)
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.d_k = d_model // n_heads if d_k is None else d_k
        self.dropout = dropout
        self.w_q = nn.Linear(d_model, n_heads * self.d_k, bias=bias)  # W^Q of all heads, stacked
        self.w_k = nn.Linear(d_model, n_kv_heads * self.d_k, bias=bias)
        self.w_v = nn.Linear(d_model, n_kv_heads * self.d_k, bias=bias)
        self.w_o = nn.Linear(n_heads * self.d_k, d_model, bias=bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        need_weights: bool = False,
        *,
        key_padding_mask: Tensor | None = None,
        rotate: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``, each head on its own subspace.

        Args:
            query: ``(B, n, d_model)``.
            key: ``(B, m, d_model)``; defaults to ``query`` (self-attention).
            value: ``(B, m, d_model)``; defaults to ``key``.
            mask: bool, ``True`` = may attend (or float, added to the scores), either
                ``(n, m)`` or 4-D broadcastable to ``(B, h, n, m)``, e.g. ``key_mask(pad)``;
                refused as ambiguous when it is 2-D and ``B == n > 1`` (pass ``mask[None, None]``).
            need_weights: also return the attention weights of every head.
            key_padding_mask: bool ``(B, m)``, ``True`` = real token (the opposite of
                ``torch.nn.MultiheadAttention``'s ``key_padding_mask``); ANDed with ``mask``.
            rotate: applied to the projected queries ``(B, h, n, d_k)`` and keys
                ``(B, n_kv_heads, m, d_k)``, never to the values: RoPE (a closure over the
                positions, as in :class:`qkv.stack.TransformerStack` and :mod:`qkv.llama`), or None.

        Returns:
            ``(out, weights)``: ``(B, n, d_model)`` and ``(B, h, n, m)`` or ``None``.
        """
        key = query if key is None else key
        value = key if value is None else value
        for name, x in (("query", query), ("key", key), ("value", value)):
            if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.d_model:
                got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"{name} must be (B, L, d_model={self.d_model}), got {got}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            shapes = [tuple(x.shape) for x in (query, key, value)]
            raise ValueError(f"query, key, value must share B; key, value share m: {shapes}")
        B, n, m = query.shape[0], query.shape[1], key.shape[1]
        q = self.w_q(query).view(B, n, self.n_heads, self.d_k).transpose(1, 2)
        k = self.w_k(key).view(B, m, self.n_kv_heads, self.d_k).transpose(1, 2)
        v = self.w_v(value).view(B, m, self.n_kv_heads, self.d_k).transpose(1, 2)
        # (B, L, heads * d_k) -> (B, heads, L, d_k), heads = n_heads for q, n_kv_heads for k, v
        if rotate is not None:  # positions enter q and k only (Su et al. 2021 §3.4)
            q, k = rotate(q), rotate(k)
        if self.n_kv_heads != self.n_heads:  # each K/V head serves a group of query heads
            group = self.n_heads // self.n_kv_heads
            k = k.repeat_interleave(group, dim=1)  # (B, n_kv_heads, m, d_k) -> (B, h, m, d_k)
            v = v.repeat_interleave(group, dim=1)
        dropout_p = self.dropout if self.training else 0.0
        result = scaled_dot_product_attention(
            q,
            k,
            v,
            mask,
            dropout_p=dropout_p,
            return_weights=need_weights,
            key_padding_mask=key_padding_mask,
        )
        out, weights = result if isinstance(result, tuple) else (result, None)
        out = out.transpose(1, 2).reshape(B, n, -1)  # (B, h, n, d_k) -> (B, n, h * d_k)
        return self.w_o(out), weights

    @classmethod
    def from_torch(cls, m: nn.MultiheadAttention) -> MultiHeadAttention:
        """Build a module with the weights (and mode) of a :class:`torch.nn.MultiheadAttention`.

        qkv is batch first: a module with ``batch_first=False`` takes ``(n, B, d_model)``,
        so transpose its inputs to ``(B, n, d_model)`` to compare. Its ``attn_mask``
        (bool ``True`` = NOT allowed) and ``key_padding_mask`` (``True`` = ignore) become
        ``mask = combine(~attn_mask, key_mask(~key_padding_mask))`` here. Its weights are
        averaged over heads; ours are per head: compare ``weights.mean(1)``.

        Args:
            m: the module to copy; ``kdim``/``vdim`` must equal ``embed_dim``, and
                ``add_bias_kv``/``add_zero_attn`` must be off.

        Returns:
            A new :class:`MultiHeadAttention` on the same device and dtype.
        """
        if not isinstance(m, nn.MultiheadAttention):
            raise TypeError(f"expected torch.nn.MultiheadAttention, got {type(m).__name__}")
        if not m._qkv_same_embed_dim:
            raise ValueError(
                f"kdim and vdim must equal embed_dim={m.embed_dim}, got {m.kdim}, {m.vdim}"
            )
        if m.bias_k is not None or m.add_zero_attn:
            raise ValueError("add_bias_kv=True and add_zero_attn=True are not supported")
        bias = m.in_proj_bias is not None
        mha = cls(m.embed_dim, m.num_heads, bias=bias, dropout=m.dropout)
        w_q, w_k, w_v = m.in_proj_weight.chunk(3)  # (3 d_model, d_model) -> 3 x (d_model, d_model)
        state = {"w_q.weight": w_q, "w_k.weight": w_k, "w_v.weight": w_v}
        state["w_o.weight"] = m.out_proj.weight
        if bias:
            b_q, b_k, b_v = m.in_proj_bias.chunk(3)
            state |= {"w_q.bias": b_q, "w_k.bias": b_k, "w_v.bias": b_v}
            state["w_o.bias"] = m.out_proj.bias
        mha = mha.to(device=m.in_proj_weight.device, dtype=m.in_proj_weight.dtype)
        mha.load_state_dict(state)
        return mha.train(m.training)
