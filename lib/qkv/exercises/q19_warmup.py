"""Checker for the Q19 exercise: one Adam update, bias correction included."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_adam_step"]


def _case(seed: int, shape: tuple[int, ...], steps: int, scale: float, eps: float) -> Case:
    what = f"{steps} step(s) on a {shape} parameter, gradients of size {scale:g}, eps={eps:g}"

    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        lr, betas = 1e-3, (0.9, 0.98)
        start = torch.randn(*shape, generator=g, dtype=torch.float64)
        grads = [
            torch.randn(*shape, generator=g, dtype=torch.float64) * scale for _ in range(steps)
        ]
        reference = start.clone().requires_grad_()
        adam = torch.optim.Adam([reference], lr=lr, betas=betas, eps=eps)
        param, m, v = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
        for step, grad in enumerate(grads, start=1):
            before = param.clone()
            reference.grad = grad.clone()
            adam.step()
            out = fn(param, grad, m, v, step, lr, betas[0], betas[1], eps)  # guarded: no in-place
            if not (isinstance(out, tuple) and len(out) == 3):
                raise Mismatch(f"{what}: return the tuple (param, m, v), got {type(out).__name__}")
            param, m, v = out
            if not isinstance(param, torch.Tensor):
                raise Mismatch(f"{what}: param must be a tensor, got {type(param).__name__}")
            expected = reference.detach() - before  # compare the updates, of size ~lr
            assert_close(param - before, expected, f"{what}, the update at step {step}", atol=1e-8)

    return Case(what, run)


def check_adam_step(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> Verdict:
    """Check the reader's ``adam_step(param, grad, m, v, step, lr, beta1, beta2, eps)`` from Q19.

    ``step`` counts from 1; the function returns the new ``(param, m, v)`` and
    must agree with :class:`torch.optim.Adam` (bias-corrected moments, ``eps``
    added to the square root) step after step, for gradients from 1e-9 to 1e3
    and for a gradient of exactly zero, without modifying its inputs.

    Used in: Q19 (bert/q19_warmup).
    """
    settings = [
        ((3, 5), 1, 1.0, 1e-8),
        ((7,), 1, 1e3, 1e-8),
        ((2, 3), 1, 1e-9, 1e-8),  # the gradient is as small as eps: eps matters
        ((1,), 1, 0.0, 1e-8),  # no gradient: no move
        ((4, 3), 6, 1.0, 1e-8),
        ((5,), 4, 1e-2, 1e-6),
    ]
    cases = [_case(seed, *setting) for seed, setting in enumerate(settings)]
    return run_checks("adam_step", fn, cases)
