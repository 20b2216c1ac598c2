"""Q10 (chapters/attention/q10_multi_head_dimensions): the left-and-right-neighbour task.

Each of ``L`` tokens is a one-hot content (``V`` symbols) followed by a one-hot
position, so ``d_model = V + L``; the target of token ``t`` is the content of its
left neighbour ``t - 1`` followed by that of its right neighbour ``t + 1``
(cyclically), shape ``2 V``. One softmax head returns one convex combination of
values per query, so it can only average the two neighbours; two heads can fetch
one each. :func:`train_neighbour_heads` trains a :class:`qkv.attention.MultiHeadAttention`
with ``n_heads`` heads on the task with :func:`qkv.train.train`, as a function of the
seed, so ``benchmarks/robustness.py`` can rerun the chapter's run over many seeds;
``CLAIMS`` holds the chapter's seed-dependent claims.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.attention import MultiHeadAttention
from qkv.experiments import Claim, claims, experiment
from qkv.train import History, TrainConfig, train

__all__ = [
    "neighbour_batch",
    "neighbour_mse",
    "NeighbourRun",
    "train_neighbour_heads",
    "neighbour_weights",
    "average_floor",
]


def neighbour_batch(
    size: int, generator: torch.Generator, *, L: int = 8, V: int = 8
) -> tuple[Tensor, Tensor]:
    """A random batch of the neighbour task: inputs ``(size, L, V + L)``, targets ``(size, L, 2V)``.

    Inputs are ``[one-hot content | one-hot position]``; the target of token ``t`` is
    ``[content of t - 1 | content of t + 1]`` (indices modulo ``L``).
    Used in: Q10.
    """
    for name, value in (("size", size), ("L", L), ("V", V)):
        check_int(name, value, 1)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    content = torch.randint(0, V, (size, L), generator=generator)  # (size, L) symbols
    positions = torch.eye(L).expand(size, L, L)
    x = torch.cat([F.one_hot(content, V).float(), positions], dim=-1)  # (size, L, V + L)
    left, right = content.roll(1, dims=1), content.roll(-1, dims=1)  # symbol at t - 1, t + 1
    target = torch.cat([F.one_hot(left, V), F.one_hot(right, V)], dim=-1).float()
    return x, target


def neighbour_mse(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean squared error per output feature of an attention layer on a neighbour batch.

    ``model(x)`` must return ``(out, weights)`` with ``out`` of the target's shape, as
    :class:`qkv.attention.MultiHeadAttention` does when ``d_model = 2V`` (``V = L``).
    """
    x, target = batch
    return F.mse_loss(model(x)[0], target)


class NeighbourRun(NamedTuple):
    """A trained layer, its training :class:`qkv.train.History`, and its held-out MSE."""

    model: MultiHeadAttention
    history: History
    held_out_mse: float


@experiment
def train_neighbour_heads(
    n_heads: int,
    *,
    seed: int = 0,
    steps: int = 250,
    lr: float = 1e-2,
    L: int = 8,
    device: str | torch.device | None = None,
) -> NeighbourRun:
    """Train ``MultiHeadAttention(2L, n_heads)`` from scratch on the neighbour task.

    ``V = L`` symbols, so ``d_model = 2L`` for inputs and targets alike. The
    initialisation and the batches (32 sequences per step) come from ``seed``; AdamW
    with learning rate ``lr``. The held-out MSE is measured on 512 sequences drawn
    from a generator seeded with ``10_000 + seed``.
    Used in: Q10.
    """
    check_int("n_heads", n_heads, 1)
    check_int("seed", seed, 0)
    check_int("L", L, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MultiHeadAttention(2 * L, n_heads)

    def batch_fn(step: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        return neighbour_batch(32, gen, L=L, V=L)

    config = TrainConfig(steps=steps, lr=lr, seed=seed, log_every=10, device=device)
    history = train(model, batch_fn, neighbour_mse, config)
    x, target = neighbour_batch(512, torch.Generator().manual_seed(10_000 + seed), L=L, V=L)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        held_out = neighbour_mse(model, (x.to(device), target.to(device))).item()
    return NeighbourRun(model, history, held_out)


def neighbour_weights(run: NeighbourRun, *, seed: int = 0) -> dict[str, Tensor]:
    """What a trained layer's heads look at, on the held-out rows of ``seed``.

    Returns ``"left"`` and ``"right"``: each head's mean attention weight on the left
    and on the right neighbour, shape ``(h,)``; ``"left_std"``: the standard deviation
    of the left-neighbour weight over all held-out tokens, ``(h,)`` (zero for a head
    whose split does not depend on the content); and ``"average_mse"``: the MSE on the
    same rows of the plain average of the two neighbours in both halves of the target.
    Used in: Q10.
    """
    model = run.model
    L = model.d_model // 2
    x, target = neighbour_batch(512, torch.Generator().manual_seed(10_000 + seed), L=L, V=L)
    device = next(model.parameters()).device
    with torch.no_grad():
        _, weights = model(x.to(device), need_weights=True)  # (512, h, L, L)
    t = torch.arange(L, device=device)
    left, right = weights[..., t, (t - 1) % L], weights[..., t, (t + 1) % L]  # (512, h, L)
    return {
        "left": left.mean((0, 2)).cpu(),
        "right": right.mean((0, 2)).cpu(),
        "left_std": left.std((0, 2)).cpu(),
        "average_mse": _average_mse(target, L),
    }


def _average_mse(target: Tensor, L: int) -> Tensor:
    average = (target[..., :L] + target[..., L:]) / 2  # (size, L, L)
    return F.mse_loss(average.repeat(1, 1, 2), target)


def average_floor(seed: int, *, L: int = 8) -> float:
    """The plain average of the two neighbours, scored on the held-out rows of ``seed``.

    The MSE per output feature of writing ``(left + right) / 2`` into both halves of the
    target, on the 512 held-out sequences that :func:`train_neighbour_heads` draws for
    ``seed``: the floor of a learned linear readout of any fixed split, on the very rows
    that seed's held-out MSE is measured on. Used in: Q10.
    """
    check_int("seed", seed, 0)
    check_int("L", L, 2)
    _, target = neighbour_batch(512, torch.Generator().manual_seed(10_000 + seed), L=L, V=L)
    return _average_mse(target, L).item()


@functools.cache
def _run(n_heads: int, seed: int) -> NeighbourRun:
    return train_neighbour_heads(n_heads, seed=seed, device="cpu")


def _split(seed: int) -> float:
    """Two heads: the smaller |left - right| weight gap if the heads prefer different
    neighbours, else minus it."""
    w = neighbour_weights(_run(2, seed), seed=seed)
    gap = w["left"] - w["right"]  # (2,)
    return gap.abs().min().item() * (1.0 if gap[0] * gap[1] < 0 else -1.0)


def _held_out_mse(n_heads: int):
    return lambda seed: _run(n_heads, seed).held_out_mse


CLAIMS = claims(
    Claim(
        "q10-two-heads",
        "two heads (d_k = 8), 250 steps: held-out MSE",
        _held_out_mse(2),
        "<",
        0.005,
    ),
    Claim(
        "q10-one-head",
        "one head (d_k = 16), 250 steps: held-out MSE",
        _held_out_mse(1),
        ">",
        0.03,
    ),
    Claim(
        "q10-heads-split-neighbours",
        "two heads: each prefers another neighbour; smaller |left − right| weight gap",
        _split,
        ">",
        0.3,
    ),
)
