"""Checker for the Q24 exercise: the label-smoothed cross-entropy, written by hand."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_label_smoothed_loss"]


def _case(seed: int, n: int, vocab: int, epsilon: float, scale: float, n_ignored: int) -> Case:
    what = f"N={n} tokens, V={vocab}, epsilon={epsilon:g}, logits of size {scale:g}"
    if n_ignored:
        what += f", {n_ignored} target(s) = -100"

    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(n, vocab, generator=g, dtype=torch.float64) * scale
        target = torch.randint(0, vocab, (n,), generator=g)
        target[:n_ignored] = -100
        expected = F.cross_entropy(logits, target, label_smoothing=epsilon, ignore_index=-100)
        got = fn(logits, target, epsilon)  # run_checks reports a change of an input in place
        if isinstance(got, torch.Tensor) and got.dim() != 0:
            raise Mismatch(f"{what}: return the mean loss (a scalar), got shape {tuple(got.shape)}")
        assert_close(got, expected, what, atol=1e-8)

    return Case(what, run)


def check_label_smoothed_loss(fn: Callable[..., torch.Tensor]) -> Verdict:
    """Check the reader's ``label_smoothed_loss(logits, target, epsilon)`` from Q24.

    ``logits: (N, V)`` float64, ``target: (N,)`` class ids, ``-100`` = ignore;
    the answer is the mean over the non-ignored tokens of the cross-entropy
    against ``(1 - epsilon) * one_hot + epsilon / V``, as
    ``F.cross_entropy(logits, target, label_smoothing=epsilon)``. Cases include
    V = 2 (where spreading epsilon over V - 1 classes differs most), epsilon 0
    and 1, logits large enough to overflow a naive softmax, and ignored targets.

    Used in: Q24 (transformer/q24_original_training_recipe).
    """
    settings = [
        (6, 11, 0.1, 1.0, 0),
        (5, 2, 0.1, 1.0, 0),
        (4, 7, 0.0, 1.0, 0),
        (3, 5, 1.0, 1.0, 0),
        (8, 13, 0.2, 1.0, 3),
        (6, 9, 0.1, 300.0, 0),
        (1, 3, 0.1, 1.0, 0),
    ]
    cases = [_case(seed, *setting) for seed, setting in enumerate(settings)]
    return run_checks("label_smoothed_loss", fn, cases)
