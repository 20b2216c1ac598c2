"""The Q7 checker: wrong rotations fail, the reference passes."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q07_attention_variants import check_rotary
from qkv.positions import apply_rotary


def reference(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    d_k = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)  # (d_k / 2,)
    angle = positions[:, None].double() * theta  # (L, d_k / 2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def half_split(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """GPT-NeoX's and Llama's pairing (i, i + d_k/2): the same rotations, features permuted."""
    d_k = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)
    angle = positions[:, None].double() * theta  # (L, d_k / 2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    first, second = x[..., : d_k // 2], x[..., d_k // 2 :]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


def in_place(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    x.copy_(reference(x, positions))
    return x


def test_reference_passes() -> None:
    verdict = check_rotary(reference)
    assert verdict.passed, verdict
    assert check_rotary(apply_rotary).passed


def test_rotate_half_pairing_is_accepted_too() -> None:
    verdict = check_rotary(half_split)
    assert verdict.passed, verdict


def test_a_wrong_rotation_is_shown_against_both_pairings() -> None:
    verdict = check_rotary(lambda x, p: half_split(x, p + 1))
    assert verdict.status == "failed", verdict
    assert "matches neither pairing" in verdict.detail
    assert "RoFormer" in verdict.detail and "GPT-NeoX and Llama" in verdict.detail


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (lambda x, p: reference(x, -p), "expected"),  # rotates the other way
        (lambda x, p: reference(x, p + 1), "expected"),  # positions off by one
        (lambda x, p: x.clone(), "expected"),  # forgot to rotate
        (lambda x, p: reference(x, p)[..., :-1], "expected shape"),
        (in_place, "changed its input"),
    ],
)
def test_wrong_rotations_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_rotary(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_wrong_frequencies_fail_only_far_from_the_start() -> None:
    def slow(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # theta_i = 10000^(-i / d_k): every pair but the first turns at the wrong speed
        d_k = x.shape[-1]
        angle = positions[:, None].double() * 10000.0 ** (-torch.arange(d_k // 2) / d_k)
        pairs = torch.view_as_complex(x.double().unflatten(-1, (d_k // 2, 2)).contiguous())
        turned = pairs * torch.polar(torch.ones_like(angle), angle)
        return torch.view_as_real(turned).flatten(-2).to(x.dtype)

    verdict = check_rotary(slow)
    assert verdict.status == "failed" and "shape (5, 8)" in verdict.detail, verdict
