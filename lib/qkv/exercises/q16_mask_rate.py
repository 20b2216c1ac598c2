"""Checker for the Q16 exercise: BERT's masking procedure, 15% then 80/10/10."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .core import Case, Mismatch, Verdict, run_checks

__all__ = ["check_bert_masking"]

IGNORE = -100
_V, _MASK = 50, 3
_SPECIAL = (0, 1, 2)  # [PAD], [CLS], [SEP]; [MASK] = 3 is special too


def _sentences(batch: int, length: int, seed: int) -> torch.Tensor:
    """``[CLS] w ... w [SEP] [PAD] ...`` rows of random lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, _V, (batch, length), generator=g)
    ids[:, 0] = 1
    ends = torch.randint(2, length + 1, (batch,), generator=g)
    for b, end in enumerate(ends.tolist()):
        ids[b, end - 1] = 2
        ids[b, end:] = 0
    return ids


def _call(fn: Callable, ids: torch.Tensor, rate: float, seed: int):
    original = ids.clone()
    out = fn(
        ids,
        rate=rate,
        vocab_size=_V,
        mask_id=_MASK,
        special_ids=_SPECIAL,
        generator=torch.Generator().manual_seed(seed),
    )
    if not torch.equal(ids, original):
        raise Mismatch("your function modified input_ids in place; return new tensors")
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Mismatch(f"expected a tuple (inputs, labels), got {type(out).__name__}")
    inputs, labels = out
    for name, t in (("inputs", inputs), ("labels", labels)):
        if not isinstance(t, torch.Tensor) or t.shape != ids.shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise Mismatch(f"{name}: expected a tensor of shape {tuple(ids.shape)}, got {got}")
    return inputs, labels


def _near(what: str, count: int, n: int, p: float) -> None:
    """``count`` of ``n`` trials must be within 5 binomial standard errors of ``n p``."""
    se = math.sqrt(n * p * (1 - p))
    if abs(count - n * p) > 5 * se + 1:
        raise Mismatch(f"{what}: {count} of {n} ({count / n:.3f}), expected about {p:.3f}")


def _bookkeeping(fn: Callable) -> None:
    ids = _sentences(40, 17, seed=1)
    inputs, labels = _call(fn, ids, 0.3, seed=2)
    chosen = labels != IGNORE
    special = torch.isin(ids, torch.tensor((*_SPECIAL, _MASK)))
    if (chosen & special).any():
        raise Mismatch("a special token ([CLS], [SEP] or [PAD]) was chosen for prediction")
    if not torch.equal(labels[chosen], ids[chosen]):
        raise Mismatch("labels must hold the ORIGINAL token at every chosen position")
    if not torch.equal(inputs[~chosen], ids[~chosen]):
        raise Mismatch("a position that was not chosen was changed in inputs")
    replaced = inputs[chosen & (inputs != _MASK)]
    if torch.isin(replaced, torch.tensor((*_SPECIAL, _MASK))).any():
        raise Mismatch("a random replacement was a special token")


def _proportions(rate: float) -> Callable[[Callable], None]:
    def run(fn: Callable) -> None:
        ids = _sentences(400, 64, seed=3)
        inputs, labels = _call(fn, ids, rate, seed=4)
        chosen = labels != IGNORE
        eligible = int((ids > _MASK).sum())
        n = int(chosen.sum())
        _near(f"chosen tokens at rate {rate}", n, eligible, rate)
        if n == 0:
            return
        masked = int((inputs[chosen] == _MASK).sum())
        kept = int((inputs[chosen] == ids[chosen]).sum())
        _near("chosen tokens replaced by [MASK]", masked, n, 0.8)
        # a random replacement equals the original with probability 1 / (V - 4)
        _near("chosen tokens left unchanged", kept, n, 0.1 + 0.1 / (_V - 4))
        _near(
            "chosen tokens replaced by another token",
            n - masked - kept,
            n,
            0.1 * (1 - 1 / (_V - 4)),
        )

    return run


def _edges(fn: Callable) -> None:
    empty = torch.zeros(3, 0, dtype=torch.long)
    inputs, labels = _call(fn, empty, 0.15, seed=5)
    only_special = torch.tensor([[1, 2, 0, 0], [1, 2, 0, 0]])
    inputs, labels = _call(fn, only_special, 1.0, seed=6)
    if (labels != IGNORE).any() or not torch.equal(inputs, only_special):
        raise Mismatch("rows of special tokens only must come back unchanged, with no labels")
    words = _sentences(5, 9, seed=7)
    _, labels = _call(fn, words, 1.0, seed=8)
    if not torch.equal(labels != IGNORE, words > _MASK):
        raise Mismatch("rate = 1.0 must choose every non-special token")


def _uses_the_generator(fn: Callable) -> None:
    ids = _sentences(20, 32, seed=9)
    first = _call(fn, ids, 0.5, seed=10)
    again = _call(fn, ids, 0.5, seed=10)
    other = _call(fn, ids, 0.5, seed=11)
    if not all(torch.equal(a, b) for a, b in zip(first, again, strict=True)):
        raise Mismatch(
            "two calls with generators seeded alike gave different results: draw every random "
            "number from `generator` (torch.rand(..., generator=generator)), not the global one"
        )
    if all(torch.equal(a, b) for a, b in zip(first, other, strict=True)):
        raise Mismatch("generators seeded differently gave the same result: use `generator`")


def check_bert_masking(fn: Callable) -> Verdict:
    """Check the reader's ``bert_mask(input_ids, *, rate, vocab_size, mask_id, special_ids,
    generator)`` from Q16.

    It must return new ``(inputs, labels)``: each non-special token chosen with
    probability ``rate``; a chosen token becomes ``mask_id`` (80%), a random
    non-special token (10%) or stays (10%); ``labels`` holds the original id at
    chosen positions and -100 elsewhere. Proportions are checked on 25,000
    tokens within 5 binomial standard errors; also an empty batch, rows of
    special tokens only, ``rate = 1``, and that every draw comes from
    ``generator`` (the same seed gives the same result, another seed another).
    Used in: Q16.
    """
    cases = [
        Case("labels, specials, unchosen positions", _bookkeeping),
        Case("proportions at rate 0.15", _proportions(0.15)),
        Case("proportions at rate 0.4", _proportions(0.4)),
        Case("empty batch, specials only, rate 1", _edges),
        Case("the generator decides every draw", _uses_the_generator),
    ]
    return run_checks("bert_mask", fn, cases)
