"""Checker for the Q32 exercise: the prefix-LM (non-causal decoder) attention mask."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import scaled_dot_product_attention
from ..masks import prefix_lm_mask
from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_prefix_lm_mask"]


def _case(seed: int, n: int, prefix: int) -> Case:
    def run(fn: Callable) -> None:
        got = fn(n, prefix)
        assert_close(got, prefix_lm_mask(n, prefix), f"n={n}, prefix={prefix}")
        # What the mask is for: prefix outputs ignore the targets, and each target output
        # ignores the targets after it.
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 6, generator=g)  # (L, d)
        out = scaled_dot_product_attention(x, x, x, mask=got)
        for t in range(prefix, n):
            changed = x.clone()
            changed[t:] = torch.randn(n - t, 6, generator=g)
            moved = scaled_dot_product_attention(changed, changed, changed, mask=got) - out
            if t > 0 and moved[:t].abs().max() > 1e-5:
                raise Mismatch(
                    f"n={n}, prefix={prefix}: changing tokens {t}.. moved the outputs before {t}"
                )

    return Case(f"n={n}, prefix={prefix}", run)


def check_prefix_lm_mask(fn: Callable[[int, int], torch.Tensor]) -> Verdict:
    """Check the reader's ``prefix_lm_mask(n, prefix)`` from Q32.

    ``fn`` must return a bool ``(n, n)`` mask, ``True`` where query ``i`` may attend to
    key ``j``: ``j < prefix`` (the prefix is bidirectional) or ``j <= i`` (causal).
    Cases include ``prefix = 0`` (a causal decoder), ``prefix = n`` (an encoder) and
    ``prefix = 1``.

    Used in: Q32 (chapters/llm/q32_decoder_only).
    """
    shapes = [(6, 3), (5, 0), (4, 4), (7, 1), (1, 1)]
    cases = [_case(seed, n, prefix) for seed, (n, prefix) in enumerate(shapes)]
    return run_checks("prefix_lm_mask", fn, cases)
