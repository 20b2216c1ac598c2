"""Nadaraya–Watson kernel regression, written as one call of attention.

Nadaraya (1964) and Watson (1964) estimate ``f(x)`` as a kernel-weighted average of
training targets. With the Gaussian kernel the weights are a softmax of
``-(x - x_i)^2 / (2 sigma^2)``; expanding the square and dropping the ``-x^2`` term
(the softmax ignores a constant per query) gives scaled dot-product attention with
queries ``q = (x, 1)``, keys ``k_i = (x_i, -x_i^2 / 2)``, values ``y_i`` and scale
``1 / sigma^2``. :func:`bandwidth_errors` is the chapter's seeded experiment: the
error of the estimate for several bandwidths on one draw of noisy data.

Used in: Q1 (chapters/attention/q01_what_is_attention).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from qkv._checks import check_generator
from qkv.attention import scaled_dot_product_attention

__all__ = ["RegressionData", "noisy_sine", "nadaraya_watson", "bandwidth_errors"]


class RegressionData(NamedTuple):
    """Training pairs ``(x_train (m,), y_train (m,))``, queries ``x_query (n,)`` and
    the noise-free ``truth (n,)`` at the queries."""

    x_train: Tensor
    y_train: Tensor
    x_query: Tensor
    truth: Tensor


def noisy_sine(
    m: int = 50, n: int = 100, *, noise: float = 0.3, generator: torch.Generator | int
) -> RegressionData:
    """``m`` noisy samples of ``f(x) = sin 2x + x / 2`` on ``[0, 5]`` (sorted by x) and a
    grid of ``n`` query points; ``generator`` (or an int seed) fixes the draw. Used in: Q1.
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


def bandwidth_errors(seed: int, sigmas: tuple[float, ...] = (0.1, 0.3, 1.0)) -> dict[float, float]:
    """Mean squared error to the true curve of :func:`nadaraya_watson` on
    ``noisy_sine(generator=seed)``, for each bandwidth in ``sigmas``. Used in: Q1."""
    data = noisy_sine(generator=seed)
    errors = {}
    for sigma in sigmas:
        pred, _ = nadaraya_watson(data.x_query, data.x_train, data.y_train, sigma)
        errors[sigma] = ((pred - data.truth) ** 2).mean().item()
    return errors
