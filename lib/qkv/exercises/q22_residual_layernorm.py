"""Checker for the Q22 exercise: LayerNorm over the last axis, written by hand."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_layer_norm"]


def _case(seed: int, shape: tuple[int, ...], eps: float, what: str) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        d = shape[-1]
        x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3 + 5  # far from (0, 1)
        weight = torch.randn(d, generator=g, dtype=torch.float64)
        bias = torch.randn(d, generator=g, dtype=torch.float64)
        expected = F.layer_norm(x, (d,), weight, bias, eps)
        got = fn(x, weight, bias, eps)  # run_checks reports a change of x in place
        assert_close(got, expected, f"{what}, x of shape {shape}, eps={eps:g}", atol=1e-6)

    return Case(what, run)


def check_layer_norm(fn: Callable[..., torch.Tensor]) -> Verdict:
    """Check the reader's ``layer_norm(x, weight, bias, eps)`` from Q22.

    ``x: (..., d)`` float64, ``weight`` and ``bias`` ``(d,)``; the answer must
    equal :func:`torch.nn.functional.layer_norm` over the last axis (biased
    variance, ``eps`` inside the square root), leave the inputs unchanged, and
    work for any number of leading axes, a single feature and a batch of one.

    Used in: Q22 (transformer/q22_residual_layernorm).
    """
    cases = [
        _case(2, (2, 9, 9), 0.5, "a large eps"),
        _case(0, (3, 7, 37), 1e-5, "a batch of sequences"),
        _case(1, (5, 5), 1e-5, "a square matrix of tokens"),
        _case(3, (1, 1, 6), 1e-5, "a batch of one token"),
        _case(4, (4, 1), 1e-5, "one feature per token"),
        _case(5, (2, 3, 4, 11), 1e-5, "four axes"),
    ]
    return run_checks("layer_norm", fn, cases)
