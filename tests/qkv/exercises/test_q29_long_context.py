"""The Q29 checker: position-interpolated RoPE frequencies, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q29_long_context import check_pi_frequencies


def plain(d_k, base):
    return base ** -(torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)


def test_the_reference_passes() -> None:
    verdict = check_pi_frequencies(lambda d_k, base, factor: plain(d_k, base) / factor)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # frequencies multiplied: positions stretched, not squeezed
        (lambda d_k, base, factor: plain(d_k, base) * factor, "factor="),
        # NTK-style base change instead of interpolation
        (lambda d_k, base, factor: plain(d_k, base * factor ** (d_k / max(d_k - 2, 1))), "factor="),
        # exponent over every index, not every second one: the wrong spectrum
        (
            lambda d_k, base, factor: (
                base ** -(torch.arange(d_k // 2, dtype=torch.float64) / d_k) / factor
            ),
            "factor=",
        ),
        # float32: the checker compares float64 frequencies exactly
        (lambda d_k, base, factor: (plain(d_k, base) / factor).float(), "dtype"),
    ],
)
def test_wrong_frequencies_fail(wrong, expected) -> None:
    verdict = check_pi_frequencies(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_the_untouched_stub_is_not_attempted() -> None:
    def stub(d_k, base, factor):
        raise NotImplementedError

    assert check_pi_frequencies(stub).status == "not attempted"
