"""Tests for qkv.train: determinism, budgets, gradient norms, schedules, metrics."""

import copy
import time
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from qkv.train import History, TrainConfig, evaluate, train

D_IN, D_HIDDEN = 7, 37


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(D_IN, D_HIDDEN), nn.Dropout(0.1), nn.Tanh(), nn.Linear(D_HIDDEN, 1)
    )


TRUE_W = torch.linspace(-1, 1, D_IN)


def batch_fn(step, generator):
    """A noiseless linear-regression batch of 3 drawn from ``generator``."""
    x = torch.randn(3, D_IN, generator=generator)
    return x, x @ TRUE_W


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x).squeeze(-1), y)


def mse_metric(model, batch):
    return {"mse": loss_fn(model, batch), "training": float(model.training)}


def test_same_seed_same_history_and_global_rng_untouched(device):
    config = TrainConfig(steps=25, lr=1e-2, seed=3, device=device)
    rng_before = torch.get_rng_state()
    a = train(_model(), batch_fn, loss_fn, config)
    # a different global RNG state must not matter: train seeds its own (dropout)
    model = _model()
    torch.manual_seed(12345)
    b = train(model, batch_fn, loss_fn, config)
    c = train(_model(), batch_fn, loss_fn, TrainConfig(steps=25, lr=1e-2, seed=4, device=device))
    assert a.loss == b.loss and a.grad_norm == b.grad_norm
    assert a.loss != c.loss
    model = _model()
    torch.manual_seed(12345)
    expected_state = torch.get_rng_state()
    train(model, batch_fn, loss_fn, config)
    assert torch.equal(torch.get_rng_state(), expected_state)
    assert not torch.equal(rng_before, expected_state)


def test_training_reduces_the_loss_and_records_every_step():
    history = train(_model(), batch_fn, loss_fn, TrainConfig(steps=300, lr=1e-2, device="cpu"))
    assert history.step == list(range(300))
    assert len(history.loss) == len(history.grad_norm) == len(history.lr) == 300
    assert history.seconds == sorted(history.seconds)
    first, last = sum(history.loss[:20]) / 20, sum(history.loss[-20:]) / 20
    assert last < 0.2 * first
    assert not history.diverged


def test_grad_norm_is_measured_before_clipping_and_clipping_applies():
    model = _model()
    reference = copy.deepcopy(model)
    clip = 1e-3
    config = TrainConfig(steps=1, grad_clip=clip, device="cpu", seed=5)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    history = train(model, batch_fn, loss_fn, config, optimizer=optimizer)

    # the same first step by hand; the model has dropout, so seed it as train() does
    batch = batch_fn(0, torch.Generator().manual_seed(5))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        loss_fn(reference, batch).backward()
    grads = [p.grad for p in reference.parameters()]
    expected = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    assert history.grad_norm[0] == pytest.approx(float(expected), rel=1e-5)
    assert history.grad_norm[0] > 100 * clip
    # SGD with lr 1 moves the parameters by exactly the clipped gradient
    with torch.no_grad():
        moved = torch.stack(
            [
                (p - q).norm()
                for p, q in zip(model.parameters(), reference.parameters(), strict=True)
            ]
        )
    assert float(moved.norm()) == pytest.approx(clip, rel=1e-3)


def test_default_schedule_warms_up_linearly_then_stays_constant():
    config = TrainConfig(steps=7, lr=0.1, warmup_steps=4, device="cpu")
    history = train(_model(), batch_fn, loss_fn, config)
    assert history.lr == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_own_optimizer_and_scheduler():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    config = TrainConfig(steps=5, device="cpu")
    history = train(model, batch_fn, loss_fn, config, optimizer=optimizer, scheduler=scheduler)
    assert history.lr == pytest.approx([0.5, 0.5, 0.05, 0.05, 0.005])


def test_log_every_keeps_the_last_step():
    history = train(_model(), batch_fn, loss_fn, TrainConfig(steps=11, log_every=3, device="cpu"))
    assert history.step == [0, 3, 6, 9, 10]


def test_wall_time_budget_stops_early():
    def slow_batch(step, generator):
        time.sleep(0.05)
        return batch_fn(step, generator)

    config = TrainConfig(steps=1000, max_seconds=0.2, device="cpu")
    history = train(_model(), slow_batch, loss_fn, config)
    assert 3 <= len(history.step) <= 10
    assert history.seconds[-1] >= 0.2


def test_non_finite_loss_stops_the_run_without_updating():
    calls = []

    def nan_at_step_two(model, batch):
        calls.append(len(calls))
        loss = loss_fn(model, batch)
        return loss * float("nan") if len(calls) == 3 else loss

    model, two_steps = _model(), _model()
    history = train(model, batch_fn, nan_at_step_two, TrainConfig(steps=10, device="cpu"))
    assert history.diverged and history.step == [0, 1, 2]
    assert torch.isnan(torch.tensor(history.loss[-1]))
    # the parameters are those after two good steps, untouched by the NaN step
    train(two_steps, batch_fn, loss_fn, TrainConfig(steps=2, device="cpu"))
    for p, q in zip(model.parameters(), two_steps.parameters(), strict=True):
        assert torch.equal(p, q)


def test_metrics_and_evaluate():
    model = _model()
    eval_batch = batch_fn(0, torch.Generator().manual_seed(99))
    config = TrainConfig(steps=6, log_every=2, lr=1e-2, device="cpu")
    history = train(model, batch_fn, loss_fn, config, metric_fn=mse_metric, eval_batch=eval_batch)
    assert history.step == [0, 2, 4, 5]
    assert len(history.metrics["mse"]) == 4
    assert history.values("training") == [0.0] * 4  # metrics run in eval mode
    assert model.training  # and train() restored the mode
    final = evaluate(model, eval_batch, mse_metric)
    assert final["mse"] == pytest.approx(history.metrics["mse"][-1])
    model.eval()
    evaluate(model, eval_batch, mse_metric)
    assert not model.training


def test_evaluate_runs_without_gradients():
    def metric(model, batch):
        assert not torch.is_grad_enabled()
        return {"n": batch[0].shape[0]}

    assert evaluate(_model(), batch_fn(0, torch.Generator()), metric) == {"n": 3.0}


def test_history_values_unknown_key():
    with pytest.raises(KeyError, match="no series 'accuracy'"):
        History().values("accuracy")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": 0}, "steps must be >= 1, got 0"),
        ({"steps": 3, "seed": -1}, "seed must be >= 0, got -1"),
        ({"steps": 3, "log_every": 0}, "log_every must be >= 1, got 0"),
        ({"steps": 3, "lr": float("nan")}, "lr must be a finite number >= 0"),
        ({"steps": 3, "lr": -1e-3}, "lr must be a finite number >= 0"),
        ({"steps": 3, "grad_clip": 0.0}, "grad_clip must be > 0 or None"),
        ({"steps": 3, "max_seconds": -1}, "max_seconds must be a finite number >= 0"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_config_counts_are_ints_numpy_included():
    with pytest.raises(TypeError, match="steps must be an int, got float 2.0"):
        TrainConfig(steps=2.0)
    with pytest.raises(TypeError, match="seed must be an int, got bool"):
        TrainConfig(steps=2, seed=True)
    config = TrainConfig(steps=np.int64(3), seed=np.int32(1))
    assert type(config.steps) is int and type(config.seed) is int


def test_bad_train_arguments():
    config = TrainConfig(steps=2, device="cpu")
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(other, step_size=1)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train(model, batch_fn, loss_fn, {"steps": 2})
    with pytest.raises(ValueError, match="metric_fn needs an eval_batch"):
        train(model, batch_fn, loss_fn, config, metric_fn=mse_metric)
    with pytest.raises(ValueError, match="scheduler must drive the optimizer"):
        train(model, batch_fn, loss_fn, config, optimizer=optimizer, scheduler=scheduler)
    with pytest.raises(ValueError, match="scheduler must drive the optimizer"):
        train(model, batch_fn, loss_fn, config, scheduler=scheduler)
    with pytest.raises(ValueError, match="warmup_steps belongs to the default schedule"):
        train(
            model,
            batch_fn,
            loss_fn,
            TrainConfig(steps=2, warmup_steps=1),
            optimizer=other,
            scheduler=scheduler,
        )
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor, got \(3,\)"):
        train(model, batch_fn, lambda m, b: m(b[0]).squeeze(-1), config)
    with pytest.raises(TypeError, match="metric_fn must return a dict"):
        evaluate(model, batch_fn(0, torch.Generator()), lambda m, b: 1.0)
    with pytest.raises(TypeError, match="metric_fn must be callable"):
        evaluate(model, batch_fn(0, torch.Generator()), "accuracy")


class Pair(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor


def test_named_tuple_batches_reach_the_loss_intact(device):
    seen = []

    def named_batch_fn(step, generator):
        return Pair(*batch_fn(step, generator))

    def named_loss(model, batch):
        seen.append(type(batch))
        return nn.functional.mse_loss(model(batch.x).squeeze(-1), batch.y)

    history = train(_model(), named_batch_fn, named_loss, TrainConfig(steps=3, device=device))
    assert seen == [Pair] * 3 and len(history.loss) == 3
