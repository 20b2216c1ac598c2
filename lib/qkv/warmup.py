"""Learning-rate warm-up schedules: BERT's, the cosine variant and the Transformer's.

Every schedule is a plain function of the optimizer step. Steps count from 0,
as in :class:`torch.optim.lr_scheduler.LambdaLR`: step 0 is the first update.
The ``linear_warmup_*`` functions return a *multiplier* in [0, 1] of the peak
learning rate; :func:`noam` returns the learning rate itself (set the
optimizer's ``lr=1.0`` when you wrap it with :func:`lambda_lr`).

All warm-ups start from 0 at step 0, so the very first update is a no-op; this
is the formulas' value at step 0 and what Hugging Face's schedulers do.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._checks import check_int, check_number

__all__ = [
    "linear_warmup_constant",
    "linear_warmup_linear_decay",
    "linear_warmup_cosine_decay",
    "noam",
    "lambda_lr",
]


def _check_schedule(step: int, warmup_steps: int, total_steps: int) -> tuple[int, int, int]:
    """Return the three as Python ints (a NumPy step then gives a Python float)."""
    step = check_int("step", step, 0)
    total_steps = check_int("total_steps", total_steps, 1)
    warmup_steps = check_int("warmup_steps", warmup_steps, 0)
    if warmup_steps > total_steps:
        raise ValueError(
            f"warmup_steps must be <= total_steps, got warmup_steps={warmup_steps} "
            f"> total_steps={total_steps}"
        )
    return step, warmup_steps, total_steps


def linear_warmup_constant(step: int, warmup_steps: int) -> float:
    """Linear warm-up from 0 to 1 over ``warmup_steps``, then constant 1.

    Isolates the effect of warm-up from that of decay. Same values as Hugging
    Face's ``get_constant_schedule_with_warmup``.
    Used in: :func:`qkv.train.train`.
    """
    step = check_int("step", step, 0)
    warmup_steps = check_int("warmup_steps", warmup_steps, 0)
    return step / warmup_steps if step < warmup_steps else 1.0


def linear_warmup_linear_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """BERT's schedule: linear warm-up to 1, then linear decay to 0 at ``total_steps``.

    Devlin et al. 2019 (§A.2): peak lr 1e-4 reached after 10,000 steps of linear
    warm-up, then linear decay. Steps past ``total_steps`` give 0. Same values
    as Hugging Face's ``get_linear_schedule_with_warmup``.

    Args:
        step: optimizer step, counted from 0.
        warmup_steps: steps to reach the peak (0 = no warm-up); <= ``total_steps``.
        total_steps: step at which the multiplier reaches 0.
    Returns:
        the multiplier of the peak learning rate, in [0, 1].
    Used in: Q19.
    """
    step, warmup_steps, total_steps = _check_schedule(step, warmup_steps, total_steps)
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def linear_warmup_cosine_decay(
    step: int, warmup_steps: int, total_steps: int, num_cycles: float = 0.5
) -> float:
    """Linear warm-up to 1, then cosine decay: ``0.5 * (1 + cos(2 pi num_cycles p))``.

    ``p`` is the fraction of the decay phase done, in [0, 1]; with the default
    ``num_cycles=0.5`` the multiplier falls from 1 to 0 along half a cosine
    period (Loshchilov & Hutter 2017, SGDR, without restarts). Steps past
    ``total_steps`` keep the final value. Same values as Hugging Face's
    ``get_cosine_schedule_with_warmup`` for steps up to ``total_steps``.

    Args:
        step, warmup_steps, total_steps: as in :func:`linear_warmup_linear_decay`.
        num_cycles: number of cosine periods over the decay phase, > 0.
    Returns:
        the multiplier of the peak learning rate, in [0, 1].
    Used in: Q19.
    """
    step, warmup_steps, total_steps = _check_schedule(step, warmup_steps, total_steps)
    num_cycles = check_number("num_cycles", num_cycles)  # True is refused, numpy accepted
    if not num_cycles > 0 or math.isinf(num_cycles):
        raise ValueError(f"num_cycles must be a finite number > 0, got {num_cycles!r}")
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress)))


def noam(step: int, d_model: int, warmup_steps: int) -> float:
    """The Transformer's learning rate, Vaswani et al. 2017 Eq. (3).

    ``lrate = d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)``: linear
    growth for ``warmup_steps`` steps, then decay as ``step^-0.5``. The peak is
    at ``step == warmup_steps`` with value ``(d_model * warmup_steps)^-0.5``.
    The paper's step number is used as is, so step 0 gives 0 (the limit of the
    formula, ``min(inf, 0)``), like the linear warm-ups.

    Args:
        step: optimizer step, counted from 0.
        d_model: model width (the paper: 512).
        warmup_steps: the paper's ``warmup_steps`` (4000), > 0.
    Returns:
        the learning rate itself, not a multiplier.
    Used in: Q19, Q24.
    """
    step = check_int("step", step, 0)
    d_model = check_int("d_model", d_model, 1)
    warmup_steps = check_int("warmup_steps", warmup_steps, 1)
    if step == 0:
        return 0.0
    return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def lambda_lr(
    optimizer: torch.optim.Optimizer, fn: Callable[..., float], **kw: object
) -> torch.optim.lr_scheduler.LambdaLR:
    """Wrap a schedule as a :class:`~torch.optim.lr_scheduler.LambdaLR`.

    The scheduler sets each group's lr to ``base_lr * fn(step, **kw)``; call
    ``scheduler.step()`` after every ``optimizer.step()``. Bad keyword
    arguments fail here, since ``LambdaLR`` evaluates ``fn(0, **kw)`` at once.

    Example: ``lambda_lr(opt, linear_warmup_linear_decay, warmup_steps=100,
    total_steps=1000)``.
    Used in: Q24, :func:`qkv.train.train`.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(step, **kw), got {fn!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: fn(step, **kw))
