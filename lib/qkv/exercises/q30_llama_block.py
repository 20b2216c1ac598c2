"""Checker for the Q30 exercise: LLaMA's SwiGLU feed-forward network from its three weights."""

from __future__ import annotations

from collections.abc import Callable

import torch

from qkv.llama import SwiGLU

from .core import Case, Verdict, assert_close, run_checks

__all__ = ["check_swiglu"]


def _case(seed: int, shape: tuple[int, ...], d_model: int, d_ff: int) -> Case:
    def run(fn: Callable) -> None:
        torch.manual_seed(seed)
        ffn = SwiGLU(d_model, d_ff).double()
        x = 2 * torch.randn(*shape, d_model, dtype=torch.float64)  # inputs large enough to
        weights = [
            p.detach().clone()
            for p in (ffn.gate_proj.weight, ffn.up_proj.weight, ffn.down_proj.weight)
        ]
        got = fn(x.clone(), *weights)  # tell SiLU from GELU and the gate from the up branch
        with torch.no_grad():
            expected = ffn(x)
        assert_close(got, expected, f"x {tuple(x.shape)}, d_ff={d_ff}")

    return Case(f"x {(*shape, d_model)}, d_ff={d_ff}", run)


def check_swiglu(fn: Callable) -> Verdict:
    """Check the reader's ``swiglu(x, w_gate, w_up, w_down)`` from Q30.

    ``x: (..., d_model)``; ``w_gate, w_up: (d_ff, d_model)`` and ``w_down: (d_model, d_ff)``
    in ``torch.nn.Linear``'s layout (Hugging Face's ``gate_proj``, ``up_proj``,
    ``down_proj``). ``fn`` must return ``W_down (SiLU(W_gate x) * W_up x)``, compared with
    :class:`qkv.llama.SwiGLU` in float64 for several shapes and widths.

    Used in: Q30.
    """
    specs = [((3,), 6, 16), ((2, 5), 12, 32), ((1, 1, 4), 9, 24), ((7,), 8, 8)]
    return run_checks("swiglu", fn, [_case(i, *spec) for i, spec in enumerate(specs)])
