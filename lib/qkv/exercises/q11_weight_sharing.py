"""Checker for the Q11 exercise: the gradient of a tied embedding matrix."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_tied_gradient"]


def _tied_case(name: str, ids: list[int], vocab_size: int, d_model: int, seed: int) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        n = len(ids)
        token_ids = torch.tensor(ids, dtype=torch.long)
        grad_embedded = torch.randn(n, d_model, generator=g, dtype=torch.float64)
        hidden = torch.randn(n, d_model, generator=g, dtype=torch.float64)
        grad_logits = torch.randn(n, vocab_size, generator=g, dtype=torch.float64)
        # autograd's answer: one matrix E used twice, as a lookup and as the output layer
        E = torch.randn(vocab_size, d_model, generator=g, dtype=torch.float64, requires_grad=True)
        embedded, logits = E[token_ids], hidden @ E.T  # (n, d_model), (n, V)
        ((embedded * grad_embedded).sum() + (logits * grad_logits).sum()).backward()
        got = fn(token_ids.clone(), grad_embedded.clone(), hidden.clone(), grad_logits.clone())
        assert E.grad is not None  # E is a leaf that requires grad, and backward() ran
        assert_close(got, E.grad, f"{name}: dL/dE", atol=1e-8)

    return Case(name, run)


def check_tied_gradient(fn: Callable[..., torch.Tensor]) -> Verdict:
    """Check the reader's ``tied_gradient(ids, grad_embedded, hidden, grad_logits)`` from Q11.

    One matrix ``E: (V, d_model)`` is the input embedding (``embedded = E[ids]``) and
    the output layer (``logits = hidden @ E.T``). Given the upstream gradients
    ``grad_embedded: (n, d_model)`` (at the embedding's output) and
    ``grad_logits: (n, V)``, with ``ids: (n,)`` and ``hidden: (n, d_model)``, ``fn``
    must return ``dL/dE: (V, d_model)``, compared with autograd's. Cases include
    repeated ids, no tokens at all, and a vocabulary token that never occurs.

    Used in: Q11 (chapters/transformer/q11_weight_sharing).
    """
    cases = [
        _tied_case("3 distinct ids, V=5, d=4", [0, 3, 1], 5, 4, 0),
        _tied_case("repeated ids, V=7, d=3", [2, 2, 5, 2, 0], 7, 3, 1),
        _tied_case("one token, V=11, d=6", [10], 11, 6, 2),
        _tied_case("no tokens at all (n=0)", [], 4, 5, 3),
    ]
    return run_checks("tied_gradient", fn, cases)
