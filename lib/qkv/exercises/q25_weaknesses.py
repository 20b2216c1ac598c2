"""Checker for the Q25 exercise: the floating-point operations of one self-attention layer."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import torch

from qkv.attention import MultiHeadAttention
from qkv.complexity import count_flops

from .core import Case, Mismatch, Verdict, kernel_state_kept, run_checks

__all__ = ["check_attention_flops", "measured_attention_flops"]


def measured_attention_flops(n: int, d_model: int, n_heads: int = 1) -> int:
    """Count the matmul FLOPs of one :class:`~qkv.attention.MultiHeadAttention` self-attention
    forward pass on ``(1, n, d_model)``, with :class:`torch.utils.flop_counter.FlopCounterMode`.

    The reference path (``need_weights=True``) is counted, since the counter does not see
    inside the fused CPU kernel; a multiply-add counts as 2 FLOPs, bias adds and the
    softmax are not counted.

    Used in: Q25 (chapters/transformer/q25_weaknesses).
    """
    with kernel_state_kept():  # the layer's initialisation draws from the global generator
        layer = MultiHeadAttention(d_model, n_heads)
    x = torch.zeros(1, n, d_model, dtype=layer.w_q.weight.dtype)
    return count_flops(lambda: layer(x, need_weights=True))["total"]


def _flops_case(n: int, d_model: int, n_heads: int) -> Case:
    def run(fn: Callable) -> None:
        expected = measured_attention_flops(n, d_model, n_heads)
        got = fn(n, d_model)
        if isinstance(got, torch.Tensor):
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, Real) or got != expected:  # numpy too
            raise Mismatch(
                f"n={n}, d_model={d_model} ({n_heads} heads): FlopCounterMode counts "
                f"{expected:,} FLOPs, you returned {got!r}"
            )

    return Case(f"n={n}, d_model={d_model}, {n_heads} heads", run)


def check_attention_flops(fn: Callable[[int, int], int]) -> Verdict:
    """Check the reader's ``attention_flops(n, d_model)`` from Q25.

    ``fn`` must return the FLOPs of one self-attention layer on ``n`` tokens of width
    ``d_model`` (batch 1): the four projections ``W_Q, W_K, W_V, W_O``, the scores
    ``Q K^T`` and the weighted sum, 2 FLOPs per multiply-add, biases and softmax
    ignored. Compared with :func:`measured_attention_flops` for several sizes (the
    number of heads must not matter).

    Used in: Q25 (chapters/transformer/q25_weaknesses).
    """
    settings = [(1, 4, 1), (7, 12, 3), (64, 8, 2), (5, 40, 4), (33, 36, 6)]
    return run_checks("attention_flops", fn, [_flops_case(*s) for s in settings])
