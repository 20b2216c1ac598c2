"""The Q21 checker: the sinusoidal table, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises import check_sinusoidal_table


def reference(max_len: int, d_model: int) -> torch.Tensor:
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = pos / 10000 ** (two_i / d_model)  # (max_len, ceil(d_model / 2))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = angle.sin()
    pe[:, 1::2] = angle[:, : d_model // 2].cos()
    return pe.float()


def _halves(max_len: int, d_model: int) -> torch.Tensor:
    """All sines, then all cosines: a common variant, but not the paper's layout."""
    pe = reference(max_len, d_model)
    return torch.cat((pe[:, 0::2], pe[:, 1::2]), dim=1)


def _feature_index_exponent(max_len: int, d_model: int) -> torch.Tensor:
    """10000^(j / d) with j the feature index: wrong frequencies for the cosines."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    j = torch.arange(d_model, dtype=torch.float64)
    angle = pos / 10000 ** (j / d_model)
    return torch.where(j.long() % 2 == 0, angle.sin(), angle.cos()).float()


def _swapped(max_len: int, d_model: int) -> torch.Tensor:
    pe = reference(max_len, d_model)
    out = pe.clone()
    n = d_model // 2
    out[:, 0 : 2 * n : 2], out[:, 1 : 2 * n : 2] = pe[:, 1 : 2 * n : 2], pe[:, 0 : 2 * n : 2]
    return out


def _base_1000(max_len: int, d_model: int) -> torch.Tensor:
    """Wavelengths up to 1000 * 2 pi instead of 10000 * 2 pi."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    angle = pos / 1000 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angle.sin(), angle[:, : d_model // 2].cos()
    return pe.float()


def test_reference_passes() -> None:
    verdict = check_sinusoidal_table(reference)
    assert verdict.passed, verdict


def test_untouched_stub_is_not_attempted() -> None:
    def stub(max_len, d_model):
        raise NotImplementedError

    assert check_sinusoidal_table(stub).status == "not attempted"


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (_halves, "at index"),
        (_feature_index_exponent, "at index"),
        (_swapped, "at index"),
        (lambda n, d: reference(n, d).double(), "dtype"),
        (_base_1000, "at index"),
    ],
)
def test_wrong_tables_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_sinusoidal_table(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_an_odd_width_is_checked() -> None:
    def even_only(max_len: int, d_model: int) -> torch.Tensor:
        return reference(max_len, d_model - d_model % 2)  # drops the last sine of odd widths

    verdict = check_sinusoidal_table(even_only)
    assert verdict.status == "failed" and "d_model=7" in verdict.detail, verdict
