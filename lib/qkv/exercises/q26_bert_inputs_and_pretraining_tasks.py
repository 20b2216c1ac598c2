"""Checker for the Q26 exercise: BERT's input vector as the sum of three lookups."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_bert_input_sum"]


def _case(name: str, seed: int, B: int, L: int, V: int, P: int, T: int, H: int) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        tables = (
            torch.randn(V, H, generator=g),
            torch.randn(P, H, generator=g),
            torch.randn(T, H, generator=g),
        )
        ids = torch.randint(0, V, (B, L), generator=g)
        segments = torch.randint(0, T, (B, L), generator=g)
        expected = tables[0][ids] + tables[2][segments] + tables[1][:L]
        assert_close(fn(ids.clone(), segments.clone(), tables), expected, name)

    return Case(name, run)


def check_bert_input_sum(fn: Callable) -> Verdict:
    """Check the reader's ``bert_input_sum(input_ids, token_type_ids, tables)`` from Q26.

    ``tables = (token_table (V, H), position_table (P, H), segment_table (T, H))``;
    ``fn`` must return the ``(B, L, H)`` sum ``token[ids] + segment[types] +
    position[0..L-1]``. Cases use odd sizes, sequences shorter than and as long as
    the position table, a batch of one, and three segment types, so a swapped
    table, positions that do not restart at 0, or a missing term all fail.

    Used in: Q26.
    """
    cases = [
        _case("B=3, L=7, V=99, P=23, T=2, H=36", 0, 3, 7, 99, 23, 2, 36),
        _case("L equal to the position table, P=9", 1, 2, 9, 31, 9, 2, 10),
        _case("batch of one, three segment types", 2, 1, 5, 17, 11, 3, 6),
    ]
    return run_checks("bert_input_sum", fn, cases)
