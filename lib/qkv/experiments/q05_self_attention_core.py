"""Q5, What is the core of self-attention? (chapters/attention/q05_self_attention_core).

Two seed-dependent experiments (the chapter's FLOP counts and memory peaks are not
seed-dependent; they use :mod:`qkv.complexity`):

1. How much of position 0 reaches the last output of one self-attention layer
   (:func:`attention_reach`) and of a tanh RNN of 24 steps, with PyTorch's default
   initialisation and with an orthogonal recurrent matrix (:func:`rnn_reach`, from
   :func:`qkv.complexity.rnn_reach`).
2. What the ``1/sqrt(d_k)`` does to the gradient that reaches the queries
   (:func:`query_gradients`): unscaled, the softmax saturates, most queries get a
   near-zero gradient and a few get a large one.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor

from qkv import complexity
from qkv.attention import MultiHeadAttention
from qkv.experiments import Claim, claims, experiment

__all__ = [
    "LENGTH",
    "WIDTH",
    "attention_reach",
    "rnn_reach",
    "query_gradients",
    "gradient_summary",
    "CLAIMS",
]

LENGTH, WIDTH = 24, 16  # the RNN's sequence length and width
N_QUERIES, N_KEYS = 2000, 16  # queries of the gradient experiment, keys per query
SEEDS = tuple(range(10))


@experiment
def attention_reach(seed: int, *, length: int = LENGTH, width: int = WIDTH) -> Tensor:
    """``||d out[L-1] / d x[j]||`` for every position ``j`` through one randomly
    initialised two-head :class:`qkv.attention.MultiHeadAttention` (seeded), shape ``(L,)``
    (:func:`qkv.complexity.influence_on_last`).

    Used in: Q5.
    """
    torch.manual_seed(seed)  # the layer's initialisation (restored on exit)
    layer = MultiHeadAttention(width, 2).eval()
    x = torch.randn(length, width, generator=torch.Generator().manual_seed(seed))  # (L, w)
    return complexity.influence_on_last(layer, x)


@experiment
def rnn_reach(seed: int, *, length: int = LENGTH, width: int = WIDTH) -> dict[str, Tensor | float]:
    """:func:`qkv.complexity.rnn_reach` on one torch thread, the caller's state untouched:
    ``{"default": (L,), "orthogonal": (L,), "spectral_radius": float}``.

    Used in: Q5.
    """
    return complexity.rnn_reach(seed, length=length, width=width)


def _reach_ratio(seed: int, init: str) -> float:
    influence = cast(Tensor, rnn_reach(seed)[init])  # (L,): only the radius is a float
    return (influence[0] / influence[-1]).item()


@experiment
def query_gradients(
    seed: int, d_k: int, *, n_queries: int = N_QUERIES, n_keys: int = N_KEYS
) -> dict[str, Tensor]:
    """``|dL/dq|`` for each of ``n_queries`` queries, with and without the ``1/sqrt(d_k)``.

    Each query (unit-variance entries) attends over its own ``n_keys`` random keys and
    values of width ``d_k``; the loss is a fixed random projection of the outputs, so
    its gradient is what a downstream layer would send back. The gradient reaches
    ``q`` through the softmax's Jacobian *and* the scale, so the scaled version
    carries the factor ``1/sqrt(d_k)`` too.

    Returns:
        ``{"unscaled": (n_queries,), "scaled": (n_queries,)}`` gradient norms.
    Used in: Q5.
    """
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_queries, 1, d_k, generator=g)  # (N, 1, d_k)
    k, v = torch.randn(2, n_queries, n_keys, d_k, generator=g)  # (N, m, d_k) each
    readout = torch.randn(n_queries, 1, d_k, generator=g)  # the loss's random projection
    norms = {}
    for name, scale in [("unscaled", 1.0), ("scaled", d_k**-0.5)]:
        query = q.clone().requires_grad_()
        weights = (query @ k.mT * scale).softmax(dim=-1)  # (N, 1, m)
        loss = (weights @ v * readout).sum()
        (grad,) = torch.autograd.grad(loss, query)
        norms[name] = grad.norm(dim=-1).flatten()  # (N,)
    return norms


def gradient_summary(norms: dict[str, Tensor]) -> dict[str, float]:
    """Unscaled over scaled, for the median and the mean gradient norm.

    Used in: Q5.
    """
    u, s = norms["unscaled"], norms["scaled"]
    return {
        "median ratio": (u.median() / s.median()).item(),
        "mean ratio": (u.mean() / s.mean()).item(),
    }


def _summary(seed: int, d_k: int, key: str) -> float:
    return gradient_summary(query_gradients(seed, d_k))[key]


CLAIMS = claims(
    Claim(
        "q05-attention-reach",
        "one self-attention layer: weakest over strongest influence on the last output",
        lambda seed: (lambda i: (i.min() / i.max()).item())(attention_reach(seed)),
        ">",
        0.05,
        SEEDS,
    ),
    Claim(
        "q05-rnn-default-init",
        "tanh RNN, PyTorch's default init: influence of position 0 / position 23",
        lambda seed: _reach_ratio(seed, "default"),
        "<",
        1e-5,
        SEEDS,
    ),
    Claim(
        "q05-rnn-orthogonal-more",
        "tanh RNN, orthogonal W_hh: influence of position 0 / position 23 (more reach)",
        lambda seed: _reach_ratio(seed, "orthogonal"),
        ">",
        1e-5,
        SEEDS,
    ),
    Claim(
        "q05-rnn-orthogonal-still-decays",
        "tanh RNN, orthogonal W_hh: influence of position 0 / position 23 (still decays)",
        lambda seed: _reach_ratio(seed, "orthogonal"),
        "<",
        1e-2,
        SEEDS,
    ),
    Claim(
        "q05-unscaled-gradients-vanish",
        "d_k = 512: median ‖dL/dq‖ without the 1/√d_k over the median with it",
        lambda seed: _summary(seed, 512, "median ratio"),
        "<",
        0.2,
        SEEDS,
    ),
    Claim(
        "q05-unscaled-gradients-larger-at-64",
        "d_k = 64: median ‖dL/dq‖ without the 1/√d_k over the median with it",
        lambda seed: _summary(seed, 64, "median ratio"),
        ">",
        1.0,
        SEEDS,
    ),
    Claim(
        "q05-unscaled-gradients-heavy-tailed",
        "d_k = 512: mean ‖dL/dq‖ without the 1/√d_k over the mean with it",
        lambda seed: _summary(seed, 512, "mean ratio"),
        ">",
        1.5,
        SEEDS,
    ),
)
