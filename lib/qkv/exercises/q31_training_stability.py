"""Checker for the Q31 exercise: logit soft-capping, as in Gemma 2."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_soft_cap"]


def _case(seed: int, scale: float, cap: float) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        logits = scale * torch.randn(4, 9, generator=g, dtype=torch.float64)
        got = fn(logits.clone(), cap)
        label = f"logits of scale {scale:g}, cap {cap:g}"
        assert_close(got, cap * torch.tanh(logits / cap), label)
        # What it is for: bounded by the cap, nearly unchanged where logits are small,
        # and smooth: the gradient never vanishes to exactly zero as a clamp's does.
        probe = logits.clone().requires_grad_()
        (grad,) = torch.autograd.grad(fn(probe, cap).sum(), probe)
        if (grad == 0).any():
            raise Mismatch(f"{label}: the gradient is exactly zero somewhere (a clamp?)")

    return Case(f"scale {scale:g}, cap {cap:g}", run)


def check_soft_cap(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> Verdict:
    """Check the reader's ``soft_cap(logits, cap)`` from Q31.

    ``fn`` must return ``cap * tanh(logits / cap)``: every value within ``(-cap, cap)``,
    small logits almost unchanged, differentiable everywhere. Cases include logits far
    beyond the cap (Gemma 2's 30 and 50) and logits well inside it.

    Used in: Q31 (chapters/llm/q31_training_stability).
    """
    shapes = [(1.0, 30.0), (200.0, 30.0), (80.0, 50.0), (5.0, 2.0)]
    return run_checks("soft_cap", fn, [_case(seed, *shape) for seed, shape in enumerate(shapes)])
