"""Tests for qkv.positions: RoPE against complex multiplication, ALiBi against the paper.

Tolerances: float64 ``atol=1e-10`` (only the order of a few products differs);
float32 ``atol=1e-5``.
"""

import math

import numpy as np
import pytest
import torch

from qkv.attention import scaled_dot_product_attention
from qkv.masks import causal_mask, to_additive
from qkv.positions import (
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    rotary_angles,
    sinusoidal_positions,
)

F64 = {"atol": 1e-10, "rtol": 1e-10}


def randn(*shape, seed=0, dtype=torch.float64, device="cpu"):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


def rotary_by_complex_numbers(x, positions, base=10000.0):
    """An independent RoPE: pair (x[2i], x[2i+1]) is the complex number x[2i] + i x[2i+1],
    multiplied by exp(i p theta_i) (Su et al. 2021 §3.2.1)."""
    d_k = x.shape[-1]
    theta = torch.tensor([base ** (-2 * i / d_k) for i in range(d_k // 2)], dtype=torch.float64)
    z = torch.view_as_complex(x.to(torch.float64).reshape(*x.shape[:-1], d_k // 2, 2).contiguous())
    turned = z * torch.polar(torch.ones_like(theta), positions.double()[..., None] * theta)
    return torch.view_as_real(turned).flatten(-2)


# ---------------------------------------------------------------- RoPE


def test_rotary_angles_are_position_times_the_papers_frequencies() -> None:
    angles = rotary_angles(torch.arange(7), 10)
    assert angles.shape == (7, 5) and angles.dtype == torch.float32
    expected = torch.tensor([[p * 10000 ** (-2 * i / 10) for i in range(5)] for p in range(7)])
    torch.testing.assert_close(angles, expected)
    assert angles[1, 0] == 1.0  # the fastest pair turns by one radian per position


def test_rotary_frequencies_are_those_of_the_sinusoidal_table() -> None:
    angles = rotary_angles(torch.arange(11, dtype=torch.float64), 12)
    table = sinusoidal_positions(11, 12, dtype=torch.float64)  # Vaswani et al. 2017 §3.5
    torch.testing.assert_close(angles.sin(), table[:, 0::2], **F64)
    torch.testing.assert_close(angles.cos(), table[:, 1::2], **F64)


@pytest.mark.parametrize("shape", [(3, 4, 7, 10), (7, 2), (5, 1, 6)])
def test_apply_rotary_matches_complex_multiplication(shape, device) -> None:
    x = randn(*shape, device=device)
    positions = torch.arange(shape[-2]) * 3 + 2  # not 0..L-1: positions are free
    got = apply_rotary(x, positions.to(device))
    expected = rotary_by_complex_numbers(x.cpu(), positions)
    torch.testing.assert_close(got.cpu(), expected, **F64)
    torch.testing.assert_close(
        apply_rotary(x).cpu(), rotary_by_complex_numbers(x.cpu(), torch.arange(shape[-2])), **F64
    )


def test_score_depends_only_on_the_offset(device) -> None:
    q, k = randn(3, 1, 10, seed=1, device=device), randn(3, 1, 10, seed=2, device=device)
    i, j = torch.tensor([4]), torch.tensor([9])

    def score(shift: int) -> torch.Tensor:
        q_rot = apply_rotary(q, (i + shift).to(device))
        k_rot = apply_rotary(k, (j + shift).to(device))
        return (q_rot * k_rot).sum(-1)  # (3, 1)

    for shift in (-4, 1, 37, 1000):
        torch.testing.assert_close(score(shift), score(0), **F64)
    # and it is q . R_(j - i) k, Su et al. 2021 §3.2.2
    relative = (q * apply_rotary(k, (j - i).to(device))).sum(-1)
    torch.testing.assert_close(score(0), relative, **F64)
    # a different offset gives a different score: the property is not vacuous
    moved = (apply_rotary(q, i.to(device)) * apply_rotary(k, (j + 1).to(device))).sum(-1)
    assert (moved - score(0)).abs().min() > 1e-3


def test_rotation_preserves_the_norm_and_position_zero_is_the_identity(device) -> None:
    x = randn(3, 4, 7, 10, seed=3, device=device)
    rotated = apply_rotary(x, torch.arange(100, 107, device=device))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), **F64)
    torch.testing.assert_close(apply_rotary(x, torch.zeros(7, device=device)), x, **F64)
    assert not torch.allclose(rotated, x)


def test_shifted_positions_leave_attention_unchanged(device) -> None:
    q, k, v = (randn(3, 4, 7, 10, seed=s, device=device) for s in (4, 5, 6))

    def attend(offset: int) -> torch.Tensor:
        positions = torch.arange(7, device=device) + offset
        return scaled_dot_product_attention(
            apply_rotary(q, positions), apply_rotary(k, positions), v
        )

    torch.testing.assert_close(attend(250), attend(0), **F64)


def test_per_batch_positions_broadcast(device) -> None:
    x = randn(3, 7, 6, seed=7, device=device)
    positions = torch.stack([torch.arange(7) + 5 * b for b in range(3)]).to(device)  # (B, L)
    got = apply_rotary(x, positions)
    for b in range(3):
        torch.testing.assert_close(got[b], apply_rotary(x[b], positions[b]), **F64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_keeps_dtype_and_does_not_touch_the_input(dtype) -> None:
    x = randn(2, 7, 8, seed=8).to(dtype)
    before = x.clone()
    out = apply_rotary(x, torch.arange(7))
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.equal(x, before)
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    expected = rotary_by_complex_numbers(before, torch.arange(7))
    torch.testing.assert_close(out.double(), expected, atol=tol, rtol=tol)


def test_rotary_errors() -> None:
    with pytest.raises(ValueError, match="must be even"):
        apply_rotary(torch.randn(7, 9))
    with pytest.raises(ValueError, match="positive even int"):
        rotary_angles(torch.arange(7), 9)
    with pytest.raises(ValueError, match="positive even int"):
        rotary_angles(torch.arange(7), 0)
    with pytest.raises(TypeError, match="floating-point Tensor"):
        apply_rotary(torch.ones(7, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point Tensor"):
        apply_rotary(torch.ones(8))
    with pytest.raises(ValueError, match="must broadcast"):
        apply_rotary(torch.randn(7, 8), torch.arange(6))
    with pytest.raises(TypeError, match="integer or float Tensor"):
        rotary_angles(torch.ones(7, dtype=torch.bool), 8)
    with pytest.raises(TypeError, match="integer or float Tensor"):
        rotary_angles([0, 1, 2], 8)
    with pytest.raises(ValueError, match="base must be"):
        apply_rotary(torch.randn(7, 8), base=1.0)


# ---------------------------------------------------------------- ALiBi


def test_alibi_slopes_for_8_heads_are_the_papers_sequence() -> None:
    expected = torch.tensor([1 / 2**k for k in range(1, 9)])  # 1/2, 1/4, ..., 1/256
    torch.testing.assert_close(alibi_slopes(8), expected, rtol=0, atol=0)


def test_alibi_slopes_for_16_heads_start_at_one_over_sqrt_two() -> None:
    expected = torch.tensor([2 ** (-k / 2) for k in range(1, 17)])  # 1/2^0.5, 1/2, ..., 1/2^8
    torch.testing.assert_close(alibi_slopes(16), expected)


def test_alibi_slopes_for_a_non_power_of_two() -> None:
    # 12 heads: the 8-head slopes, then 4 of the 16-head slopes that lie between them
    eight = [2.0**-k for k in range(1, 9)]
    between = [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(eight + between))
    torch.testing.assert_close(alibi_slopes(1), torch.tensor([2.0**-8]))
    assert len(set(alibi_slopes(12).tolist())) == 12  # every head has its own slope


def test_alibi_bias_is_minus_slope_times_distance(device) -> None:
    bias = alibi_bias(4, 7, device=device)
    assert bias.shape == (4, 7, 7) and bias.device.type == device.type
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(7):
            for j in range(7):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h].item() * abs(i - j))
    # Toeplitz: the bias depends on i - j only
    torch.testing.assert_close(bias[:, 1:, 1:], bias[:, :-1, :-1])


def test_alibi_in_causal_attention_matches_a_written_out_softmax(device) -> None:
    q, k, v = (randn(3, 4, 7, 5, seed=s, device=device) for s in (9, 10, 11))
    mask = alibi_bias(4, 7, device=device).double()[None] + to_additive(
        causal_mask(7, device=device), torch.float64
    )  # (1, h, L, L): the scores' rank
    got = scaled_dot_product_attention(q, k, v, mask)
    scores = q @ k.transpose(-2, -1) / math.sqrt(5)
    slopes = alibi_slopes(4).double().to(device)[:, None, None]
    i, j = torch.arange(7, device=device)[:, None], torch.arange(7, device=device)[None, :]
    scores = (scores + slopes * (j - i)).masked_fill(j > i, float("-inf"))  # paper's causal form
    torch.testing.assert_close(got, scores.softmax(-1) @ v, **F64)


def test_alibi_errors() -> None:
    for bad in (0, -2):
        with pytest.raises(ValueError, match="n_heads must be >= 1"):
            alibi_slopes(bad)
    for bad in (2.0, True):
        with pytest.raises(TypeError, match="n_heads must be an int"):
            alibi_slopes(bad)
    assert torch.equal(alibi_slopes(np.int64(6)), alibi_slopes(6))
    assert torch.equal(sinusoidal_positions(np.int64(5), np.int32(6)), sinusoidal_positions(5, 6))
    with pytest.raises(ValueError, match="L must be >= 1"):
        alibi_bias(4, 0)
    with pytest.raises(ValueError, match="n_heads must be >= 1"):
        alibi_bias(0, 7)


def test_rope_decay_bound_against_a_loop_and_its_decay() -> None:
    import cmath

    from qkv.positions import rope_decay_bound

    d_k, r = 16, 7
    thetas = [10000 ** (-2 * i / d_k) for i in range(d_k // 2)]
    partial = [sum(cmath.exp(1j * r * t) for t in thetas[:j]) for j in range(1, d_k // 2 + 1)]
    expected = sum(abs(s) for s in partial) / (d_k // 2)
    assert rope_decay_bound(torch.tensor([r]), d_k).item() == pytest.approx(expected, rel=1e-12)
    bound = rope_decay_bound(torch.arange(0, 1001), 128)
    assert bound[0].item() == pytest.approx((64 + 1) / 2)  # every S_j = j at r = 0
    assert bound[200:].max() < bound[0] / 2  # far apart, the bound is much smaller
    with pytest.raises(TypeError, match="distances must be"):
        rope_decay_bound([1, 2], 8)
