"""Checker for the Q15 exercise: count BERT's parameters without building it."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral

import torch

from qkv.bert import Bert, BertConfig
from qkv.tying import count_parameters

from .core import Case, Mismatch, Verdict, run_checks

__all__ = ["check_bert_parameter_count"]

# (vocab_size, hidden_size, layers, heads, intermediate_size, positions, segment types)
_CONFIGS = {
    "BERT-base": BertConfig.base(),
    "BERT-large": BertConfig.large(),
    "odd sizes, FFN not 4H": BertConfig(99, 36, 3, 4, 37, 23, 3),
    "one layer, one segment type": BertConfig(50, 8, 1, 2, 16, 7, 1),
    "no feed-forward growth": BertConfig(11, 12, 2, 3, 12, 5, 2),
}


def _case(name: str, config: BertConfig) -> Case:
    def run(fn: Callable) -> None:
        with torch.device("meta"):  # shapes only: counting BERT-large costs no memory
            expected = count_parameters(Bert(config))
        got = fn(config)
        if isinstance(got, torch.Tensor):
            got = got.item()
        if not isinstance(got, Integral) or isinstance(got, bool):  # numpy integers too
            raise Mismatch(f"{name}: expected an int, got {type(got).__name__}")
        if got != expected:
            raise Mismatch(f"{name} ({config}): expected {expected:,} parameters, got {got:,}")

    return Case(name, run)


def check_bert_parameter_count(fn: Callable[[BertConfig], int]) -> Verdict:
    """Check the reader's ``count_bert_parameters(config)`` from Q15.

    ``fn`` takes a :class:`qkv.bert.BertConfig` and must return the number of
    parameters of :class:`qkv.bert.Bert` built with it (embeddings with their
    LayerNorm, every encoder layer, the pooler); it is compared with the count
    of the instantiated model for BERT-base, BERT-large and small odd sizes,
    some with a feed-forward size other than ``4 H``.

    Used in: Q15.
    """
    return run_checks("count_bert_parameters", fn, [_case(n, c) for n, c in _CONFIGS.items()])
