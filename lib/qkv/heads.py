"""What several heads buy: the left-and-right-neighbour task of Q10.

Each of ``L`` tokens is a one-hot content (``V`` symbols) followed by a one-hot
position, so ``d_model = V + L``; the target of token ``t`` is the content of its
left neighbour ``t - 1`` followed by that of its right neighbour ``t + 1``
(cyclically), shape ``2 V``. One softmax head returns one convex combination of
values per query, so it can only average the two neighbours; two heads can fetch
one each. :func:`train_neighbour_heads` trains a :class:`qkv.attention.MultiHeadAttention`
with ``n_heads`` heads on the task with :func:`qkv.train.train`, as a function of the
seed, so ``benchmarks/robustness.py`` can rerun the chapter's run over many seeds.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.attention import MultiHeadAttention
from qkv.train import History, TrainConfig, train

__all__ = ["neighbour_batch", "neighbour_mse", "NeighbourRun", "train_neighbour_heads"]


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
