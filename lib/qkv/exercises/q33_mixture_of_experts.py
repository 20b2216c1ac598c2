"""Checker for the Q33 exercise: the Switch Transformer's load-balancing loss."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..moe import Routing, load_balancing_loss
from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_load_balancing_loss"]


def _routing(seed: int, tokens: int, n_experts: int, top_k: int, skew: float) -> Routing:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(tokens, n_experts, generator=g)
    logits[:, 0] += skew  # expert 0 favoured by ``skew``
    probs = logits.softmax(dim=-1)
    weights, experts = probs.topk(top_k, dim=-1)
    return Routing(probs, experts, weights, torch.zeros_like(experts, dtype=torch.bool))


def _case(seed: int, tokens: int, n_experts: int, top_k: int, skew: float) -> Case:
    def run(fn: Callable) -> None:
        routing = _routing(seed, tokens, n_experts, top_k, skew)
        probs = routing.probs.clone().requires_grad_()
        got = fn(probs, routing.experts.clone())
        label = f"{tokens} tokens, {n_experts} experts, top-{top_k}, skew {skew}"
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise Mismatch(f"{label}: return a scalar tensor, got {got!r}")
        assert_close(got, load_balancing_loss(routing), label)
        (grad,) = torch.autograd.grad(got, probs, allow_unused=True)
        if grad is None or not grad.abs().sum() > 0:
            raise Mismatch(f"{label}: the loss must be differentiable in the router probabilities")

    return Case(f"T={tokens}, E={n_experts}, k={top_k}, skew={skew}", run)


def check_load_balancing_loss(fn: Callable) -> Verdict:
    """Check the reader's ``load_balancing_loss(probs, experts)`` from Q33.

    ``probs: (T, E)`` router probabilities, ``experts: (T, k)`` the chosen experts.
    ``fn`` must return ``E * sum_i f_i * P_i`` with ``f_i`` the share of the ``T * k``
    assignments that went to expert ``i`` and ``P_i`` the mean probability of expert
    ``i``, differentiable through ``probs``. Cases include top-2 routing, a skewed
    router and an expert that receives no token.

    Used in: Q33 (chapters/llm/q33_mixture_of_experts).
    """
    shapes = [(32, 4, 1, 0.0), (48, 8, 2, 0.0), (40, 4, 1, 3.0), (16, 8, 2, 5.0), (5, 8, 1, 0.0)]
    cases = [_case(seed, *shape) for seed, shape in enumerate(shapes)]
    return run_checks("load_balancing_loss", fn, cases)
