"""Tests for qkv.complexity: counted FLOPs, growth exponents, peak memory, gradient reach."""

import math
from pathlib import Path

import pytest
import torch

from qkv.complexity import (
    PeakMemory,
    attention_flops,
    best_seconds,
    count_flops,
    growth_exponent,
    influence_on_last,
    median_seconds,
    peak_memory_mib,
    rnn_flops,
    rnn_reach,
    rnn_reach_ratio,
)


def test_count_flops_of_one_matrix_product(device):
    a, b = torch.randn(5, 7, device=device), torch.randn(7, 3, device=device)
    counts = count_flops(lambda: a @ b)
    assert counts["total"] == 2 * 5 * 7 * 3  # one multiply-add = 2 FLOPs
    assert count_flops(lambda: a + 1) == {"total": 0}  # element-wise work is not counted


@pytest.mark.parametrize("n, d_model, n_heads", [(7, 12, 3), (13, 20, 4), (1, 6, 2)])
def test_attention_flops_match_8nd2_plus_4n2d(device, n, d_model, n_heads):
    flops = attention_flops(n, d_model, n_heads, device=device)
    assert flops["projections"] == 8 * n * d_model**2  # W^Q, W^K, W^V, W^O
    assert flops["attention"] == 4 * n**2 * d_model  # Q K^T and A V over all heads
    assert flops["total"] == flops["projections"] + flops["attention"]


def test_rnn_flops_match_4nd2(device):
    assert rnn_flops(9, 6, device=device) == 4 * 9 * 6**2  # W_ih x_t and W_hh h_{t-1}


@pytest.mark.parametrize("bad", [dict(n=0, d_model=4, n_heads=2), dict(n=3, d_model=5, n_heads=2)])
def test_attention_flops_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="divisible by n_heads"):
        attention_flops(**bad)


def test_rnn_flops_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n, d >= 1"):
        rnn_flops(0, 3)


@pytest.mark.parametrize("p", [1.0, 2.0, 2.7])
def test_growth_exponent_recovers_a_power_law(p):
    ns = [16, 32, 64, 128]
    values = [0.5 + 3e-4 * n**p if i == 0 else 3e-4 * n**p for i, n in enumerate(ns)]
    assert growth_exponent(ns, values, last=3) == pytest.approx(p, abs=1e-9)
    assert growth_exponent(ns, values, last=4) < p  # the offset at n = 16 flattens the fit


def test_growth_exponent_rejects_bad_input():
    with pytest.raises(ValueError, match="last"):
        growth_exponent([1, 2], [1, 4], last=3)
    with pytest.raises(ValueError, match="positive"):
        growth_exponent([1, 2], [0, 4], last=2)


def test_best_seconds_is_the_minimum_and_checks_arguments():
    calls = []
    assert best_seconds(lambda: calls.append(1), repeats=4, clock="cpu") >= 0
    assert len(calls) == 5  # one warm-up and four timed calls
    with pytest.raises(ValueError, match="repeats"):
        best_seconds(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="clock"):
        best_seconds(lambda: None, clock="gpu")


def test_peak_memory_grows_with_the_weight_matrix(device):
    small, large = peak_memory_mib([512, 1024], device=device.type)
    weights_mib = 1024**2 * 4 / 2**20  # one (1024, 1024) float32 matrix
    assert large > weights_mib  # the (n, n) weights were really allocated
    assert 2.5 < large / small < 6  # about 4x per doubling of n


def test_peak_memory_rejects_bad_input():
    with pytest.raises(ValueError, match="lengths"):
        peak_memory_mib([])
    with pytest.raises(ValueError, match="device"):
        peak_memory_mib([8], device="tpu")


def test_influence_on_last_against_a_known_jacobian():
    x = torch.randn(5, 3)

    def running_sum(z):  # out[L-1] = sum_j x_j, so d out[L-1] / d x_j = I for every j
        return (z.cumsum(dim=1),)

    assert torch.allclose(influence_on_last(running_sum, x), torch.full((5,), math.sqrt(3)))
    with pytest.raises(ValueError, match=r"\(L, w\)"):
        influence_on_last(running_sum, x[None])


def test_rnn_reach_keeps_global_state_and_orthogonal_init_reaches_further():
    before = torch.get_rng_state()
    reach = rnn_reach(3, length=11, width=7)
    assert torch.equal(torch.get_rng_state(), before)
    assert reach["default"].shape == reach["orthogonal"].shape == (11,)
    assert 0 < reach["spectral_radius"] < 1  # uniform(±1/sqrt(7)) init: contracting
    assert rnn_reach_ratio(3, "default") < rnn_reach_ratio(3, "orthogonal")
    assert rnn_reach_ratio(3) == rnn_reach_ratio(3)  # deterministic in the seed
    with pytest.raises(ValueError, match="init"):
        rnn_reach_ratio(0, "xavier")
    with pytest.raises(ValueError, match="length"):
        rnn_reach(0, length=1)


def test_windowed_peak_memory_grows_slower_than_full():
    full = peak_memory_mib([256, 1024], d_k=16, n_heads=2)
    windows = peak_memory_mib([256, 1024], d_k=16, n_heads=2, window=64)
    assert windows[-1] < full[-1] / 4  # w x w blocks instead of one n x n matrix
    assert full[-1] / full[0] > 8  # quadratic: 16x the elements for 4x the length
    with pytest.raises(ValueError, match="window must be in"):
        peak_memory_mib([256], window=512)


def test_median_seconds_interleaves_the_calls_and_takes_medians():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    seconds = median_seconds(fns, 3, warmup=False)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # order rotated each round
    assert set(seconds) == {"a", "b", "c"} and all(s >= 0 for s in seconds.values())
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        median_seconds(fns, 0)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_sees_a_block_that_is_freed_before_the_end():
    with PeakMemory("cpu") as peak:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB of float32, touched
        del block
    assert 48 < peak.mib < 200, peak.mib
    with PeakMemory("cpu") as nothing:
        pass
    assert nothing.mib < 16


def test_the_measuring_harness_exists_once():
    """Peak memory and timing loops live in qkv.complexity; the benchmarks use it."""
    root = Path(__file__).resolve().parents[2]
    files = [*(root / "lib" / "qkv").rglob("*.py"), *(root / "benchmarks").glob("*.py")]
    harness = ("VmHWM", "clear_refs", "max_memory_allocated(", "time.process_time()")
    owners = {p.relative_to(root).as_posix() for p in files for h in harness if h in p.read_text()}
    assert owners == {"lib/qkv/complexity.py"}
