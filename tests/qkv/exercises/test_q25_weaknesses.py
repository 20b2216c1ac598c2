"""The Q25 checker: FLOPs of one self-attention layer, right and wrong."""

from __future__ import annotations

import pytest

from qkv.exercises import check_attention_flops
from qkv.exercises.q25_weaknesses import measured_attention_flops


def reference(n: int, d_model: int) -> int:
    return 8 * n * d_model**2 + 4 * n**2 * d_model


def test_reference_passes_and_matches_the_counter() -> None:
    verdict = check_attention_flops(reference)
    assert verdict.passed, verdict
    assert measured_attention_flops(10, 12, 3) == reference(10, 12)


def test_untouched_stub_is_not_attempted() -> None:
    def stub(n, d_model):
        raise NotImplementedError

    assert check_attention_flops(stub).status == "not attempted"


@pytest.mark.parametrize(
    "wrong",
    [
        lambda n, d: 4 * n * d**2 + 2 * n**2 * d,  # multiply-adds, not FLOPs
        lambda n, d: 6 * n * d**2 + 4 * n**2 * d,  # forgot W_O
        lambda n, d: 8 * n * d**2 + 2 * n**2 * d,  # forgot the weighted sum of values
        lambda n, d: 4 * n**2 * d,  # the quadratic part only
        lambda n, d: float("nan"),
    ],
)
def test_wrong_counts_fail_with_a_counter_example(wrong) -> None:
    verdict = check_attention_flops(wrong)
    assert verdict.status == "failed", verdict
    assert "FlopCounterMode counts" in verdict.detail, verdict.detail


def test_a_numpy_integer_is_a_number() -> None:
    import numpy as np

    assert check_attention_flops(lambda n, d_model: np.int64(reference(n, d_model))).passed
