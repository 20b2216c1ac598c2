"""The Q30 checker: SwiGLU from its three weights, right and wrong."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qkv.exercises.q30_llama_block import check_swiglu


def reference(x, w_gate, w_up, w_down):
    return (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x, g, u, d: (F.silu(x @ u.T) * (x @ g.T)) @ d.T,  # SiLU on the up branch
        lambda x, g, u, d: (torch.sigmoid(x @ g.T) * (x @ u.T)) @ d.T,  # GLU: a sigmoid gate
        lambda x, g, u, d: (F.gelu(x @ g.T) * (x @ u.T)) @ d.T,  # GEGLU
        lambda x, g, u, d: F.silu(x @ g.T) @ d.T,  # no gate: a plain SiLU FFN
        lambda x, g, u, d: F.silu((x @ g.T) * (x @ u.T)) @ d.T,  # SiLU after the product
        lambda x, g, u, d: (F.silu(x @ g.T) + (x @ u.T)) @ d.T,  # sum instead of product
    ],
)
def test_wrong_swiglus_fail(wrong) -> None:
    assert check_swiglu(wrong).status == "failed"


def test_the_reference_passes_and_the_stub_is_not_attempted() -> None:
    verdict = check_swiglu(reference)
    assert verdict.passed, verdict

    def stub(x, w_gate, w_up, w_down):
        raise NotImplementedError

    assert check_swiglu(stub).status == "not attempted"
