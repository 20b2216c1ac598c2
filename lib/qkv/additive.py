"""Additive (MLP) attention of Bahdanau et al. 2015: a learned score, not a dot product.

The score of query ``q_i`` and key ``k_j`` is ``w^T tanh(W_q q_i + W_k k_j)`` (App. A.1.2;
``W_a``, ``U_a`` and ``v_a`` in the paper), then a softmax over the keys as in
:func:`qkv.attention.scaled_dot_product_attention`, whose input rules (shapes, masks,
NaN) apply here too. Re-exported by :mod:`qkv.attention`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv._checks import check_attention_mask, check_finite_result, check_int, check_qkv
from qkv.masks import masked_softmax

__all__ = ["additive_attention", "AdditiveAttention"]


def additive_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    w_q: Tensor,
    w_k: Tensor,
    w: Tensor,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Additive (MLP) attention of Bahdanau et al. 2015 (App. A.1.2): ``w^T tanh(W_q q + W_k k)``.

    Args:
        q: queries ``(..., n, d_q)`` (the decoder state ``s_{i-1}`` in the paper).
        k: keys ``(..., m, d_k)`` (the encoder states ``h_j``).
        v: values ``(..., m, d_v)``; classically the same tensor as ``k``.
        w_q: ``(d_hidden, d_q)``, W_a in the paper (``nn.Linear`` weight layout).
        w_k: ``(d_hidden, d_k)``, U_a.
        w: ``(d_hidden,)``, v_a.
        mask: as in :func:`scaled_dot_product_attention` (``True`` = may attend).

    Returns:
        ``(out, weights)``: ``(..., n, d_v)`` and ``(..., n, m)``; rows with no allowed key are 0.

    Used in: Q1, Q2.
    """
    check_qkv(q, k, v, same_d_k=False)
    for name, weight in (("w_q", w_q), ("w_k", w_k), ("w", w)):
        if not isinstance(weight, Tensor) or weight.dtype != q.dtype:
            got = weight.dtype if isinstance(weight, Tensor) else type(weight).__name__
            raise TypeError(f"{name} must be a Tensor of q's dtype {q.dtype}, got {got}")
    d_hidden = w_q.shape[0] if w_q.dim() == 2 else -1
    for name, weight, shape in (
        ("w_q", w_q, (d_hidden, q.shape[-1])),
        ("w_k", w_k, (d_hidden, k.shape[-1])),
        ("w", w, (d_hidden,)),
    ):
        if tuple(weight.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(weight.shape)}")
    mask = check_attention_mask(mask, None, q.shape, k.shape[-2], q.dtype, q.device)
    q_hidden = (q @ w_q.T).unsqueeze(-2)  # (..., n, d_q) -> (..., n, 1, d_hidden)
    k_hidden = (k @ w_k.T).unsqueeze(-3)  # (..., m, d_k) -> (..., 1, m, d_hidden)
    scores = torch.tanh(q_hidden + k_hidden) @ w  # (..., n, m, d_hidden) -> (..., n, m)
    weights = masked_softmax(scores, mask)
    out = weights @ v  # (..., n, m) @ (..., m, d_v) -> (..., n, d_v)
    check_finite_result(out, q=q, k=k, v=v, mask=mask)
    return out, weights


class AdditiveAttention(nn.Module):
    """Bahdanau et al. 2015 attention as a module, with learned W_q, W_k and w (no biases).

    Args:
        d_q: query width.
        d_k: key width.
        d_hidden: width of the tanh layer.

    Used in: Q6.
    """

    def __init__(self, d_q: int, d_k: int, d_hidden: int) -> None:
        super().__init__()
        for name, size in (("d_q", d_q), ("d_k", d_k), ("d_hidden", d_hidden)):
            check_int(name, size, 1)
        self.w_q = nn.Linear(d_q, d_hidden, bias=False)  # W_a
        self.w_k = nn.Linear(d_k, d_hidden, bias=False)  # U_a
        self.w = nn.Linear(d_hidden, 1, bias=False)  # v_a

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Attend from ``query (..., n, d_q)`` to ``key (..., m, d_k)``.

        ``value (..., m, d_v)`` defaults to ``key``; ``mask`` is ``True`` where a query may
        attend. Returns ``(out, weights)``: ``(..., n, d_v)`` and ``(..., n, m)``.
        """
        value = key if value is None else value
        w = self.w.weight.squeeze(0)  # (1, d_hidden) -> (d_hidden,)
        return additive_attention(query, key, value, self.w_q.weight, self.w_k.weight, w, mask)
