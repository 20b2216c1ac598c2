"""Tests for qkv.warmup: formulas at chosen steps, agreement with transformers' schedulers."""

import math

import pytest
import torch

from qkv.warmup import (
    lambda_lr,
    linear_warmup_constant,
    linear_warmup_cosine_decay,
    linear_warmup_linear_decay,
    noam,
)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.0), (1, 0.1), (5, 0.5), (10, 1.0), (55, 0.5), (100, 0.0), (150, 0.0)],
)
def test_linear_decay_values(step, expected):
    # warm-up 10 steps to 1, then 90 steps down to 0: at step 55, half way down
    assert linear_warmup_linear_decay(step, 10, 100) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.0), (3, 0.3), (10, 1.0), (40, 0.75), (70, 0.25), (100, 0.0), (130, 0.0)],
)
def test_cosine_decay_values(step, expected):
    # decay phase 90 steps: step 40 is 1/3 of the way, 0.5 * (1 + cos(pi / 3)) = 0.75
    got = linear_warmup_cosine_decay(step, 10, 100)
    assert got == pytest.approx(expected, abs=1e-12)


def test_cosine_num_cycles_one_returns_to_peak():
    # one full period: down to 0 half way through the decay phase, back to 1 at the end
    assert linear_warmup_cosine_decay(55, 10, 100, num_cycles=1.0) == pytest.approx(0.0, abs=1e-12)
    assert linear_warmup_cosine_decay(100, 10, 100, num_cycles=1.0) == pytest.approx(1.0)


def test_constant_after_warmup():
    assert [linear_warmup_constant(s, 4) for s in range(7)] == [0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert linear_warmup_constant(0, 0) == 1.0


def test_no_warmup_starts_at_peak():
    assert linear_warmup_linear_decay(0, 0, 20) == 1.0
    assert linear_warmup_cosine_decay(0, 0, 20) == 1.0


@pytest.mark.parametrize(("warmup", "total"), [(0, 17), (7, 37), (37, 37), (1, 2)])
def test_multipliers_within_unit_interval_and_monotone(warmup, total):
    for fn in (linear_warmup_linear_decay, linear_warmup_cosine_decay):
        values = [fn(s, warmup, total) for s in range(total + 5)]
        assert all(0.0 <= v <= 1.0 for v in values)
        rising, falling = values[:warmup], values[warmup:]
        assert rising == sorted(rising)
        assert falling == sorted(falling, reverse=True)


def _multipliers(scheduler, optimizer, n_steps):
    values = []
    for _ in range(n_steps):
        values.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return values


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=1.0)


@pytest.mark.parametrize(("warmup", "total"), [(0, 23), (5, 41), (13, 13), (10, 100)])
@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_matches_transformers_every_step(kind, warmup, total):
    opt = pytest.importorskip("transformers.optimization")
    reference = {
        "linear": lambda o: opt.get_linear_schedule_with_warmup(o, warmup, total),
        "cosine": lambda o: opt.get_cosine_schedule_with_warmup(o, warmup, total),
        "constant": lambda o: opt.get_constant_schedule_with_warmup(o, warmup),
    }[kind]
    ours = {
        "linear": (linear_warmup_linear_decay, {"total_steps": total}),
        "cosine": (linear_warmup_cosine_decay, {"total_steps": total}),
        "constant": (linear_warmup_constant, {}),
    }[kind]
    o1, o2 = _optimizer(), _optimizer()
    expected = _multipliers(reference(o1), o1, total + 1)
    fn, kw = ours
    got = _multipliers(lambda_lr(o2, fn, warmup_steps=warmup, **kw), o2, total + 1)
    assert got == pytest.approx(expected, abs=1e-12, rel=0)


@pytest.mark.parametrize(("d_model", "warmup"), [(512, 4000), (36, 37), (99, 1)])
def test_noam_peaks_at_warmup(d_model, warmup):
    values = torch.tensor(
        [noam(s, d_model, warmup) for s in range(3 * warmup + 10)], dtype=torch.float64
    )
    assert int(values.argmax()) == warmup
    peak = d_model**-0.5 * warmup**-0.5
    assert float(values.max()) == pytest.approx(peak, rel=1e-12)


def test_noam_formula_and_step_zero():
    # Eq. (3) evaluated by hand for d_model 512, warmup 4000
    assert noam(0, 512, 4000) == 0.0
    assert noam(1, 512, 4000) == pytest.approx(512**-0.5 * 4000**-1.5)
    assert noam(2000, 512, 4000) == pytest.approx(512**-0.5 * 2000 * 4000**-1.5)
    assert noam(16000, 512, 4000) == pytest.approx(512**-0.5 / math.sqrt(16000))


def test_lambda_lr_with_noam_sets_learning_rate():
    o = _optimizer()
    scheduler = lambda_lr(o, noam, d_model=36, warmup_steps=5)
    got = _multipliers(scheduler, o, 12)
    assert got == pytest.approx([noam(s, 36, 5) for s in range(12)])


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((-1, 10, 100), ValueError, "step must be >= 0"),
        ((0, -1, 100), ValueError, "warmup_steps must be >= 0"),
        ((0, 10, 0), ValueError, "total_steps must be >= 1"),
        ((0, 101, 100), ValueError, "warmup_steps must be <= total_steps"),
        ((1.5, 10, 100), TypeError, "step must be an int"),
        ((1, 10.0, 100), TypeError, "warmup_steps must be an int"),
        ((1, 10, True), TypeError, "total_steps must be an int"),
    ],
)
def test_bad_schedule_arguments(args, error, match):
    for fn in (linear_warmup_linear_decay, linear_warmup_cosine_decay):
        with pytest.raises(error, match=match):
            fn(*args)


def test_bad_other_arguments():
    with pytest.raises(ValueError, match="num_cycles must be a finite number > 0"):
        linear_warmup_cosine_decay(0, 1, 10, num_cycles=0)
    with pytest.raises(ValueError, match="num_cycles must be a finite number > 0"):
        linear_warmup_cosine_decay(0, 1, 10, num_cycles=float("nan"))
    with pytest.raises(ValueError, match="step must be >= 0"):
        linear_warmup_constant(-2, 3)
    with pytest.raises(ValueError, match="warmup_steps must be >= 1"):
        noam(5, 512, 0)
    with pytest.raises(ValueError, match="d_model must be >= 1"):
        noam(5, 0, 10)
    with pytest.raises(TypeError, match="step must be an int"):
        noam(2.0, 512, 10)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        lambda_lr("sgd", noam, d_model=4, warmup_steps=2)
    with pytest.raises(TypeError, match="fn must be callable"):
        lambda_lr(_optimizer(), 3)
    with pytest.raises(TypeError, match="unexpected keyword"):
        lambda_lr(_optimizer(), noam, d_model=4, warmup=2)


def test_num_cycles_must_be_a_real_number_not_a_bool() -> None:
    import numpy as np

    with pytest.raises(TypeError, match="num_cycles must be a real number, got bool True"):
        linear_warmup_cosine_decay(5, 2, 10, num_cycles=True)
    expected = linear_warmup_cosine_decay(5, 2, 10, num_cycles=0.5)
    assert linear_warmup_cosine_decay(5, 2, 10, num_cycles=np.float32(0.5)) == expected
