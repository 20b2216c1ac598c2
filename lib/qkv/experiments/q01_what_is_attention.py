"""Q1, What is attention? (chapters/attention/q01_what_is_attention): the experiments.

1. Nadaraya–Watson kernel regression is one call of attention. Nadaraya (1964) and
   Watson (1964) estimate ``f(x)`` as a kernel-weighted average of training targets;
   with the Gaussian kernel the weights are a softmax of ``-(x - x_i)^2 / (2 sigma^2)``.
   Expanding the square and dropping the ``-x^2`` term (the softmax ignores a constant
   per query) gives scaled dot-product attention with queries ``q = (x, 1)``, keys
   ``k_i = (x_i, -x_i^2 / 2)``, values ``y_i`` and scale ``1 / sigma^2``
   (:func:`nadaraya_watson`). :func:`bandwidth_errors` measures the error for several
   bandwidths on one seeded draw of noisy data: a wide kernel oversmooths, a very
   narrow one follows the noise.
2. The weights are not identifiable from the output. ``o = sum_i alpha_i v_i`` is
   linear in ``alpha``; with more keys ``m`` than ``d_v + 1`` there are other
   distributions with the *same* output (Brunner et al. 2020).
   :func:`same_output_weights` finds one far from ``alpha``.
3. Key ``i`` contributes the vector ``alpha_i v_i``, of size ``alpha_i |v_i|``
   (Kobayashi et al. 2020): with value norms that vary, the key with the largest
   weight is often not the largest contributor (:func:`top_weight_is_not_top_contributor`).
"""

from __future__ import annotations

from itertools import combinations
from typing import NamedTuple

import torch
from torch import Tensor

from qkv._checks import check_generator
from qkv.attention import scaled_dot_product_attention
from qkv.experiments import Claim, claims, experiment

__all__ = [
    "RegressionData",
    "noisy_sine",
    "nadaraya_watson",
    "bandwidth_errors",
    "same_output_weights",
    "SameOutput",
    "same_output_experiment",
    "top_weight_is_not_top_contributor",
    "SIGMAS",
    "CLAIMS",
]

SIGMAS = (0.02, 0.1, 0.3, 1.0)  # bandwidths of the regression: too narrow, ..., too wide
N_TRAIN, N_QUERY, NOISE = 50, 100, 0.3  # noisy samples, grid points, noise std
SEEDS = tuple(range(20))


class RegressionData(NamedTuple):
    """Training pairs ``(x_train (m,), y_train (m,))``, queries ``x_query (n,)`` and
    the noise-free ``truth (n,)`` at the queries."""

    x_train: Tensor
    y_train: Tensor
    x_query: Tensor
    truth: Tensor


def noisy_sine(
    m: int = N_TRAIN, n: int = N_QUERY, *, noise: float = NOISE, generator: torch.Generator | int
) -> RegressionData:
    """``m`` noisy samples of ``f(x) = sin 2x + x / 2`` on ``[0, 5]`` (sorted by x) and a
    grid of ``n`` query points; ``generator`` (or an int seed) fixes the draw.

    Used in: Q1.
    """
    generator = check_generator(generator)  # or an int seed (numpy integers too)
    x_train = torch.sort(torch.rand(m, generator=generator) * 5).values  # (m,)
    y_train = torch.sin(2 * x_train) + x_train / 2 + noise * torch.randn(m, generator=generator)
    x_query = torch.linspace(0, 5, n)  # (n,)
    truth = torch.sin(2 * x_query) + x_query / 2
    return RegressionData(x_train, y_train, x_query, truth)


def nadaraya_watson(
    x_query: Tensor, x_train: Tensor, y_train: Tensor, sigma: float
) -> tuple[Tensor, Tensor]:
    """Gaussian-kernel regression of 1-D data as attention.

    Args:
        x_query: ``(n,)`` query points; x_train, y_train: ``(m,)`` training pairs;
        sigma: the kernel's bandwidth (> 0).
    Returns:
        predictions ``(n,)`` and the weights ``(n, m)`` (each row sums to 1).
    Used in: Q1.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if x_query.dim() != 1 or x_train.dim() != 1 or x_train.shape != y_train.shape:
        raise ValueError(
            "expected x_query (n,), x_train (m,) and y_train (m,), got "
            f"{tuple(x_query.shape)}, {tuple(x_train.shape)}, {tuple(y_train.shape)}"
        )
    q = torch.stack([x_query, torch.ones_like(x_query)], dim=-1)  # (n, 2): q = (x, 1)
    k = torch.stack([x_train, -(x_train**2) / 2], dim=-1)  # (m, 2): k_i = (x_i, -x_i^2/2)
    v = y_train[:, None]  # (m,) -> (m, 1)
    out, weights = scaled_dot_product_attention(q, k, v, scale=sigma**-2, return_weights=True)
    return out[:, 0], weights  # (n, 1) -> (n,)


@experiment
def bandwidth_errors(seed: int, sigmas: tuple[float, ...] = SIGMAS) -> dict[float, float]:
    """Mean squared error to the true curve of :func:`nadaraya_watson` on
    ``noisy_sine(generator=seed)``, for each bandwidth in ``sigmas``.

    Used in: Q1.
    """
    data = noisy_sine(generator=seed)
    errors = {}
    for sigma in sigmas:
        pred, _ = nadaraya_watson(data.x_query, data.x_train, data.y_train, sigma)
        errors[sigma] = ((pred - data.truth) ** 2).mean().item()
    return errors


def same_output_weights(alpha: Tensor, values: Tensor, *, blend: float = 0.05) -> Tensor:
    """Another distribution over the ``m`` keys with the same output ``alpha @ values``.

    The distributions ``w >= 0`` with ``w @ values = alpha @ values`` and ``sum w = 1``
    form a polytope whose corners have at most ``d_v + 1`` non-zero weights. This
    solves for every corner (choose ``d_v + 1`` keys, solve the square system, keep the
    non-negative solutions), takes the one farthest from ``alpha`` in L1 distance, and
    mixes in ``blend`` of ``alpha`` so that every weight is positive (hence the softmax
    of some scores, ``log w``). The output is unchanged by the mixing: it is linear.

    Args:
        alpha: ``(m,)`` non-negative weights summing to 1.
        values: ``(m, d_v)`` with ``m > d_v + 1``.
    Returns:
        ``(m,)`` weights.
    """
    if alpha.dim() != 1 or values.dim() != 2 or values.shape[0] != alpha.shape[0]:
        raise ValueError(
            f"expected alpha (m,) and values (m, d_v), got {tuple(alpha.shape)} "
            f"and {tuple(values.shape)}"
        )
    m, d_v = values.shape
    if m <= d_v + 1:
        raise ValueError(f"need more keys than d_v + 1 = {d_v + 1}, got m = {m}")
    constraints = torch.cat([values, torch.ones(m, 1, dtype=values.dtype)], dim=1).T  # (d_v+1, m)
    target = constraints @ alpha  # (d_v + 1,): the output and the total weight
    corners = []
    for kept in map(list, combinations(range(m), d_v + 1)):  # keys with a non-zero weight
        system = constraints[:, kept]
        if torch.linalg.matrix_rank(system) < d_v + 1:
            continue
        w = torch.zeros_like(alpha)
        w[kept] = torch.linalg.solve(system, target)
        if (w >= 0).all():
            corners.append(w)
    farthest = max(corners, key=lambda w: (w - alpha).abs().sum())
    return (1 - blend) * farthest + blend * alpha


class SameOutput(NamedTuple):
    """One draw of :func:`same_output_experiment`: the query ``q (1, d_k)``, keys
    ``k (m, d_k)``, values ``(m, d_v)``, the layer's weights ``alpha (m,)``, the other
    weights ``other (m,)`` and the layer's output ``(d_v,)``."""

    q: Tensor
    k: Tensor
    values: Tensor
    alpha: Tensor
    other: Tensor
    output: Tensor

    @property
    def distance(self) -> float:
        """Total variation distance between the two distributions, in [0, 1]."""
        return 0.5 * (self.other - self.alpha).abs().sum().item()


@experiment
def same_output_experiment(seed: int, m: int = 8, d_k: int = 4, d_v: int = 3) -> SameOutput:
    """One query attends over ``m`` random keys and values (seeded); return its weights
    and :func:`same_output_weights` for them.

    Used in: Q1.
    """
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(*s, generator=g) for s in ((1, d_k), (m, d_k), (m, d_v)))
    out, alpha = scaled_dot_product_attention(q, k, v, return_weights=True)
    return SameOutput(q, k, v, alpha[0], same_output_weights(alpha[0], v), out[0])


@experiment
def top_weight_is_not_top_contributor(
    seed: int, n_queries: int = 1000, m: int = 10, d: int = 8
) -> float:
    """Share of queries whose largest weight is not on the largest contribution.

    ``n_queries`` random queries attend over ``m`` random keys; the values are random
    with norms spread by a factor ``exp(N(0, 1))`` (in trained models value norms vary
    too). The contribution of key ``i`` is ``alpha_i |v_i|``.
    Used in: Q1.
    """
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(n_queries, d, generator=g), torch.randn(m, d, generator=g)
    v = torch.randn(m, d, generator=g) * torch.exp(torch.randn(m, 1, generator=g))  # (m, d)
    _, w = scaled_dot_product_attention(q, k, v, return_weights=True)  # (n_queries, m)
    contribution = w * v.norm(dim=-1)  # (n_queries, m): |alpha_i v_i|
    return (w.argmax(-1) != contribution.argmax(-1)).float().mean().item()


def _mse_ratio(seed: int, narrow: float, wide: float) -> float:
    errors = bandwidth_errors(seed, (narrow, wide))
    return errors[narrow] / errors[wide]


CLAIMS = claims(
    Claim(
        "q01-oversmoothing",
        "Nadaraya–Watson: MSE to f with σ = 1 over MSE with σ = 0.3",
        lambda seed: _mse_ratio(seed, 1.0, 0.3),
        ">",
        3.0,
        SEEDS,
    ),
    Claim(
        "q01-undersmoothing",
        "Nadaraya–Watson: MSE to f with σ = 0.02 over MSE with σ = 0.3",
        lambda seed: _mse_ratio(seed, 0.02, 0.3),
        ">",
        1.0,
        SEEDS,
    ),
    Claim(
        "q01-same-output-distance",
        "total variation distance between two weight vectors with the same output",
        lambda seed: same_output_experiment(seed).distance,
        ">",
        0.3,
        SEEDS,
    ),
    Claim(
        "q01-top-weight-not-top-contributor",
        "share of queries whose top-weighted key is not the top contributor α_i‖v_i‖",
        top_weight_is_not_top_contributor,
        ">",
        0.3,
        SEEDS,
    ),
)
