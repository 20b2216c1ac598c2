"""The Q18 checker: the exact GELU, right and wrong."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.exercises import check_gelu


def test_exact_forms_pass() -> None:
    for fn in (
        lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
        lambda x: x * torch.special.ndtr(x),
    ):
        verdict = check_gelu(fn)
        assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # Google BERT's tanh approximation: close, not exact
        (lambda x: torch.nn.functional.gelu(x, approximate="tanh"), "tolerance"),
        # the sigmoid approximation x * sigmoid(1.702 x)
        (lambda x: x * torch.sigmoid(1.702 * x), "tolerance"),
        # ReLU
        (torch.relu, "tolerance"),
        # forgot the factor x: returns Phi(x)
        (lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2))), "tolerance"),
        # computes in float32 whatever the input: wrong dtype for float64
        (lambda x: torch.nn.functional.gelu(x.float()), "dtype"),
    ],
)
def test_wrong_gelus_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_gelu(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_overflowing_form_fails_on_large_inputs() -> None:
    def via_exp(x: torch.Tensor) -> torch.Tensor:  # tanh written with exp overflows
        z = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1 + (torch.exp(2 * z) - 1) / (torch.exp(2 * z) + 1))

    verdict = check_gelu(via_exp)
    assert verdict.status == "failed", verdict
