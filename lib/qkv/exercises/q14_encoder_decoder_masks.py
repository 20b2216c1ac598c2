"""Checker for the Q14 exercise: the decoder's self-attention mask from target lengths."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import scaled_dot_product_attention
from ..masks import causal_mask, combine, key_mask, padding_mask
from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_decoder_self_mask"]


def _mask_case(seed: int, lengths: list[int], n: int) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        lengths_t = torch.tensor(lengths)
        got = fn(lengths_t.clone(), n)
        expected = combine(causal_mask(n), key_mask(padding_mask(lengths_t, n)))  # (B, 1, n, n)
        assert expected is not None  # combine returns None only when given no mask
        assert_close(got, expected, f"lengths={lengths}, n={n}")
        # What the mask is for: each real target token sees exactly its own prefix.
        x = torch.randn(len(lengths), 2, n, 5, generator=g)  # (B, h, n, d_k)
        out = scaled_dot_product_attention(x, x, x, mask=got)
        for b, length in enumerate(lengths):
            if length == 0:
                continue
            xb = x[b, :, :length]  # (h, length, d_k): the target alone, unpadded
            alone = scaled_dot_product_attention(xb, xb, xb, mask=causal_mask(length)[None])
            assert_close(out[b, :, :length], alone, f"real tokens of target {b} (length {length})")

    return Case(f"lengths={lengths}, n={n}", run)


def check_decoder_self_mask(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> Verdict:
    """Check the reader's ``decoder_self_mask(lengths, n)`` from Q14.

    ``fn`` takes target lengths ``(B,)`` and the padded length ``n`` and must return
    a bool ``(B, 1, n, n)`` mask, ``True`` where query ``i`` may attend to key ``j``:
    ``j <= i`` (causal) and ``j < lengths[b]`` (not padding). Cases include a
    sequence of length 0, batches with no full-length sequence, and ``n = 1``.

    Used in: Q14 (chapters/transformer/q14_encoder_decoder_masks).
    """
    shapes = [([3, 5, 1], 5), ([2, 4], 7), ([0, 3, 6], 6), ([1], 1)]
    cases = [_mask_case(seed, lengths, n) for seed, (lengths, n) in enumerate(shapes)]
    return run_checks("decoder_self_mask", fn, cases)
