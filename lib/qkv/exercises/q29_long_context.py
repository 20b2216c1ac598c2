"""Checker for the Q29 exercise: RoPE frequencies after position interpolation."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..positions import rope_frequencies
from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_pi_frequencies"]


def _case(d_k: int, base: float, factor: float) -> Case:
    def run(fn: Callable) -> None:
        got = fn(d_k, base, factor)
        label = f"d_k={d_k}, base={base:g}, factor={factor:g}"
        expected, _ = rope_frequencies(
            d_k, base=base, scaling={"rope_type": "linear", "factor": factor}
        )
        assert_close(got, expected, label)
        # What it is for: the last position of a context `factor` times longer turns each
        # pair no further than the last trained position did.
        trained, length = rope_frequencies(d_k, base=base)[0], 64
        if ((factor * length - 1) * got > length * trained * (1 + 1e-12)).any():
            raise Mismatch(f"{label}: some pair turns past its trained range")

    return Case(f"d_k={d_k}, base={base:g}, factor={factor:g}", run)


def check_pi_frequencies(fn: Callable[[int, float, float], torch.Tensor]) -> Verdict:
    """Check the reader's ``pi_frequencies(d_k, base, factor)`` from Q29.

    ``fn`` must return the float64 frequencies ``theta_i / factor`` with
    ``theta_i = base^(-2i / d_k)``, ``i = 0 .. d_k / 2 - 1``. Cases include a
    fractional factor, a large base and the smallest head width.

    Used in: Q29 (chapters/llm/q29_long_context).
    """
    shapes = [(128, 10000.0, 4.0), (64, 500000.0, 8.0), (2, 10000.0, 2.5), (16, 100.0, 1.0)]
    return run_checks("pi_frequencies", fn, [_case(*shape) for shape in shapes])
