"""Checker for the Q8 exercise: write a padding mask."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import scaled_dot_product_attention
from ..masks import key_mask
from ..masks import padding_mask as reference_padding_mask
from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_padding_mask"]


def _padding_case(seed: int, lengths: list[int], max_len: int, why: str) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        lengths_t = torch.tensor(lengths)
        h, d_k = 2, 5
        x = torch.randn(len(lengths), h, max_len, d_k, generator=g)  # (B, h, L, d_k)
        pad = fn(lengths_t.clone(), max_len)
        expected = reference_padding_mask(lengths_t, max_len)
        assert_close(pad, expected, f"lengths={lengths}, max_len={max_len}")
        # The property that matters: every real token sees exactly what it would
        # see if its sequence were run alone, unpadded.
        out = scaled_dot_product_attention(x, x, x, mask=key_mask(pad))
        for b, n in enumerate(lengths):
            if n == 0:
                continue  # an empty sequence has no real token to compare
            xb = x[b, :, :n]  # (h, n, d_k): the sequence alone, unpadded
            alone = scaled_dot_product_attention(xb, xb, xb)
            assert_close(out[b, :, :n], alone, f"real tokens of sequence {b} (length {n})")

    return Case(f"lengths {lengths}, max_len={max_len} ({why})", run)


def check_padding_mask(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> Verdict:
    """Check the reader's ``padding_mask(lengths, max_len)`` from Q8.

    ``fn`` takes ``lengths: (B,)`` integer tensor and ``max_len: int`` and must
    return a bool ``(B, max_len)`` tensor, ``True`` at real tokens. The decisive
    check is the unpadded-equivalence test: attention over the padded batch
    with the mask gives every real token exactly its output when run alone. The
    cases include a batch where no sequence reaches ``max_len`` (so
    ``torch.arange(lengths.max())`` is too short) and a sequence of length 0.

    Used in: Q8 (chapters/attention/q08_padding_mask).
    """
    settings = [
        ([4, 2], 4, "one sequence fills the batch"),
        ([7, 3, 5], 7, "dynamic padding to the longest"),
        ([3, 1, 5, 2], 9, "no sequence is full: padded to a fixed max_len"),
        ([2, 0, 3], 5, "an empty sequence"),
        ([1, 6, 6, 4, 2], 6, "two full sequences"),
    ]
    cases = [_padding_case(seed, *setting) for seed, setting in enumerate(settings)]
    return run_checks("padding_mask", fn, cases)
