"""A tiny, deterministic training loop shared by the chapters' experiments.

The loop is the textbook one (batch -> loss -> backward -> clip -> step ->
schedule) plus what an experiment needs to be trusted: a fixed seed for the
batches and for dropout (without touching the caller's global random state),
a step and a wall-time budget, and a :class:`History` of loss, gradient norm,
learning rate and metrics. Two runs with the same seed give the same losses.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, TypeVar

import torch
from torch import nn

import qkv
from qkv._checks import check_int
from qkv.warmup import lambda_lr, linear_warmup_constant

__all__ = ["TrainConfig", "History", "train", "evaluate"]

# the model's own class: a loss_fn written for `Seq2Seq` may be passed with a Seq2Seq model
ModelT = TypeVar("ModelT", bound=nn.Module)
BatchFn = Callable[[int, torch.Generator], Any]
LossFn = Callable[[ModelT, Any], torch.Tensor]
MetricFn = Callable[[ModelT, Any], Mapping[str, float | torch.Tensor]]


@dataclass
class TrainConfig:
    """What a training run does.

    Attributes:
        steps: number of optimizer updates (the step budget), >= 1.
        lr: peak learning rate of the default AdamW optimizer.
        seed: seeds the generator given to ``batch_fn`` and the dropout masks.
        device: where to train; ``None`` = :func:`qkv.device`.
        max_seconds: optional wall-time budget; the run stops after the first
            step that ends past it (at least one step is always taken).
        log_every: record the history every ``log_every`` steps (and at the
            last step).
        grad_clip: clip the total L2 gradient norm to this value; ``None`` = no
            clipping (the norm is still logged).
        warmup_steps: linear warm-up of the default schedule (then constant).
        weight_decay: of the default AdamW optimizer.
    """

    steps: int
    lr: float = 1e-3
    seed: int = 0
    device: str | torch.device | None = None
    max_seconds: float | None = None
    log_every: int = 1
    grad_clip: float | None = None
    warmup_steps: int = 0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        for name, minimum in (("steps", 1), ("seed", 0), ("log_every", 1), ("warmup_steps", 0)):
            setattr(self, name, check_int(name, getattr(self, name), minimum))
        for name in ("lr", "weight_decay", "max_seconds", "grad_clip"):
            value = getattr(self, name)
            optional = name in ("max_seconds", "grad_clip")
            if optional and value is None:
                continue
            bad = isinstance(value, bool) or not isinstance(value, Real)  # numpy numbers pass
            if bad or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            if optional and value == 0:
                raise ValueError(f"{name} must be > 0 or None, got {value!r}")


@dataclass
class History:
    """What :func:`train` recorded, one entry per logged step.

    Attributes:
        step: the logged steps (0-based).
        loss: training loss of that step's batch (not averaged).
        grad_norm: total L2 norm of all gradients, before clipping.
        lr: learning rate used by that step's update (first param group).
        seconds: wall time since the start of training.
        metrics: ``name -> values``, from ``metric_fn`` at the same steps,
            measured after that step's update.
        diverged: True if the run stopped at a non-finite loss or gradient;
            that step is recorded but no update was made.
    Used in: :func:`qkv.plot.training_curves` and every chapter that trains.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    diverged: bool = False

    def values(self, key: str) -> list[float]:
        """The recorded series ``key``: a field above or a metric name."""
        if key in ("step", "loss", "grad_norm", "lr", "seconds"):
            return getattr(self, key)
        if key in self.metrics:
            return self.metrics[key]
        known = ["loss", "grad_norm", "lr", "seconds", *self.metrics]
        raise KeyError(f"no series {key!r} in this history; known: {known}")


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) tuple, NamedTuple, list or dict to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple takes fields
        return type(batch)(*(_to_device(x, device) for x in batch))
    if isinstance(batch, tuple | list):
        return type(batch)(_to_device(x, device) for x in batch)
    if isinstance(batch, Mapping):
        return {key: _to_device(x, device) for key, x in batch.items()}
    return batch


@contextlib.contextmanager
def _seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the CPU (and the CUDA device's) global generator, restoring it on exit."""
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def evaluate(model: ModelT, batch: Any, metric_fn: MetricFn[ModelT]) -> dict[str, float]:
    """Compute ``metric_fn(model, batch)`` in eval mode without gradients.

    Dropout is off during the call; the model's previous mode is restored after.
    The batch is moved to the device of the model's first parameter.

    Args:
        model: the model.
        batch: tensors, or a tuple/list/dict of them.
        metric_fn: ``(model, batch) -> {name: value}`` (floats or 0-d tensors).
    Returns:
        ``{name: float}``.
    """
    if not callable(metric_fn):
        raise TypeError(f"metric_fn must be callable as metric_fn(model, batch), got {metric_fn}")
    first = next(model.parameters(), None)
    if first is not None:
        batch = _to_device(batch, first.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            values = metric_fn(model, batch)
    finally:
        model.train(was_training)
    if not isinstance(values, Mapping):
        raise TypeError(f"metric_fn must return a dict name -> number, got {type(values)}")
    return {name: float(value) for name, value in values.items()}


def train(
    model: ModelT,
    batch_fn: BatchFn,
    loss_fn: LossFn[ModelT],
    config: TrainConfig,
    *,
    metric_fn: MetricFn[ModelT] | None = None,
    eval_batch: Any = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> History:
    """Train ``model`` in place for ``config.steps`` updates; return the history.

    Each step: ``batch = batch_fn(step, generator)`` (moved to the device),
    ``loss = loss_fn(model, batch)``, backward, gradient norm (and clipping),
    ``optimizer.step()``, ``scheduler.step()``. The generator is a CPU
    :class:`torch.Generator` seeded with ``config.seed``; draw every random
    batch from it and the run is reproducible. The model is moved to the
    device and left in its previous train/eval mode.

    Args:
        model: the module to train (its initialisation is the caller's).
        batch_fn: ``(step, generator) -> batch``.
        loss_fn: ``(model, batch) -> scalar loss``.
        config: see :class:`TrainConfig`.
        metric_fn: ``(model, batch) -> {name: value}``, computed with
            :func:`evaluate` on ``eval_batch`` at every logged step.
        eval_batch: the held-out batch for ``metric_fn``.
        optimizer: default ``AdamW(lr=config.lr, weight_decay=config.weight_decay)``;
            when given, ``config.lr`` and ``config.weight_decay`` are not used.
        scheduler: default linear warm-up over ``config.warmup_steps``, then
            constant; when given it must drive ``optimizer``.
    Returns:
        a :class:`History`; a non-finite loss or gradient stops the run with
        ``history.diverged = True`` instead of training on NaN.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if metric_fn is not None and eval_batch is None:
        raise ValueError("metric_fn needs an eval_batch to compute the metrics on")
    if scheduler is not None and (optimizer is None or scheduler.optimizer is not optimizer):
        raise ValueError("scheduler must drive the optimizer passed with it")
    if scheduler is not None and config.warmup_steps:
        raise ValueError("warmup_steps belongs to the default schedule; set it to 0")
    device = qkv.device() if config.device is None else torch.device(config.device)
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    if scheduler is None:
        scheduler = lambda_lr(optimizer, linear_warmup_constant, warmup_steps=config.warmup_steps)
    max_norm = config.grad_clip if config.grad_clip is not None else math.inf

    history = History()
    generator = torch.Generator().manual_seed(config.seed)
    was_training = model.training
    start = time.perf_counter()
    with _seeded_rng(config.seed, device):
        model.train()
        try:
            for step in range(config.steps):
                batch = _to_device(batch_fn(step, generator), device)
                loss = loss_fn(model, batch)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss)
                    raise ValueError(f"loss_fn must return a scalar tensor, got {got}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # the total norm is measured before clipping (max_norm = inf: no clipping)
                grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), max_norm))
                loss_value, lr = loss.item(), optimizer.param_groups[0]["lr"]
                history.diverged = not (math.isfinite(loss_value) and math.isfinite(grad_norm))
                if not history.diverged:
                    optimizer.step()
                    scheduler.step()
                seconds = time.perf_counter() - start
                out_of_time = config.max_seconds is not None and seconds >= config.max_seconds
                last = history.diverged or out_of_time or step == config.steps - 1
                if step % config.log_every == 0 or last:
                    history.step.append(step)
                    history.loss.append(loss_value)
                    history.grad_norm.append(grad_norm)
                    history.lr.append(lr)
                    history.seconds.append(seconds)
                    if metric_fn is not None:
                        for name, value in evaluate(model, eval_batch, metric_fn).items():
                            history.metrics.setdefault(name, []).append(value)
                if last:
                    break
        finally:
            model.train(was_training)
    return history
