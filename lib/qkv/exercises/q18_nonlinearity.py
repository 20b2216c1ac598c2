"""Checker for the Q18 exercise: the exact GELU, x·Φ(x)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_gelu"]


def _case(name: str, make: Callable[[], torch.Tensor], atol: float) -> Case:
    def run(fn: Callable) -> None:
        x = make()
        assert_close(fn(x.clone()), F.gelu(x), name, atol=atol)

    return Case(name, run)


def _grid() -> torch.Tensor:
    return torch.linspace(-6.0, 6.0, 1201, dtype=torch.float64)


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 5, 7, generator=g, dtype=torch.float32) * 3  # whatever the default


def _extremes() -> torch.Tensor:
    return torch.tensor([-60.0, -20.0, -8.0, 0.0, 8.0, 20.0, 60.0], dtype=torch.float64)


def check_gelu(fn: Callable[[torch.Tensor], torch.Tensor]) -> Verdict:
    """Check the reader's exact ``gelu(x)`` from Q18.

    ``fn`` takes a tensor of any shape and floating dtype and must return
    ``x * Φ(x)`` (Φ the standard normal CDF) with the same shape and dtype; it
    is compared with :func:`torch.nn.functional.gelu` (exact form) on a fine
    grid in float64, a float32 batch, and very large inputs (no NaN, no
    overflow). The tanh approximation differs by up to 5e-4 and fails.

    Used in: Q18.
    """
    cases = [
        _case("float64 grid on [-6, 6]", _grid, 1e-6),
        _case("float32 batch (3, 5, 7)", _batch, 1e-5),
        _case("very large inputs", _extremes, 1e-6),
    ]
    return run_checks("gelu", fn, cases)
