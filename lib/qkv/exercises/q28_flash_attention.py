"""Checker for the Q28 exercise: merge two partial attention results by their log-sum-exps."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_merge_partials"]


def _partial(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``q (n, d)`` over one chunk of keys: output and log-sum-exp ``(n,)``."""
    s = q @ k.T / math.sqrt(q.shape[-1])
    return torch.softmax(s, dim=-1) @ v, torch.logsumexp(s, dim=-1)


def _case(seed: int, n: int, m1: int, m2: int, shift: float) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(n, 8, generator=g, dtype=torch.float64)
        k = torch.randn(m1 + m2, 8, generator=g, dtype=torch.float64)
        k[m1:] += shift  # the second chunk scores higher (or lower) than the first
        v = torch.randn(m1 + m2, 5, generator=g, dtype=torch.float64)
        (o1, l1), (o2, l2) = _partial(q, k[:m1], v[:m1]), _partial(q, k[m1:], v[m1:])
        result = fn(o1.clone(), l1.clone(), o2.clone(), l2.clone())
        if not (isinstance(result, tuple) and len(result) == 2):
            raise Mismatch("return a pair (output, lse)")
        expected_o, expected_lse = _partial(q, k, v)
        label = f"n={n}, chunks of {m1} and {m2} keys, shift {shift}"
        assert_close(result[0], expected_o, label + ": output")
        assert_close(result[1], expected_lse, label + ": lse")

    return Case(f"n={n}, m={m1}+{m2}, shift={shift}", run)


def check_merge_partials(fn: Callable) -> Verdict:
    """Check the reader's ``merge_partials(o1, lse1, o2, lse2)`` from Q28.

    ``o1, o2: (n, d_v)`` are the attention outputs of the same queries over two
    disjoint chunks of keys, ``lse1, lse2: (n,)`` the log-sum-exps of their scores.
    ``fn`` must return the output and the log-sum-exp over all the keys, as one
    attention over the concatenated chunks gives them. Cases include chunks of very
    different sizes and a chunk whose scores are far larger than the other's.

    Used in: Q28 (chapters/llm/q28_flash_attention).
    """
    shapes = [(3, 4, 4, 0.0), (2, 1, 9, 0.0), (4, 6, 2, 3.0), (1, 5, 5, -4.0)]
    cases = [_case(seed, *shape) for seed, shape in enumerate(shapes)]
    return run_checks("merge_partials", fn, cases)
