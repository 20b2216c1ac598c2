"""Input checks shared by every qkv module (private: not part of the API).

One behaviour everywhere: an integer argument accepts any integral number
(``int``, ``numpy.int64``, ...) and returns it as a Python ``int``; ``bool``,
``float`` (even ``3.0``), strings and tensors are rejected with a ``TypeError``,
an integer out of range with a ``ValueError``. Each message names the argument,
what was expected and what came.

This module imports nothing from qkv, so every module (``masks`` and
``attention`` included) may use it without creating an import cycle.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch

__all__ = [
    "check_int",
    "check_positive_ints",
    "check_probability",
    "check_ids",
    "check_dim",
]


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= ``minimum``.

    ``bool`` is rejected although it is an ``int`` subclass: ``n_heads=True`` is a bug.
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive_ints(**sizes: object) -> None:
    """Check that every keyword argument is an int >= 1 (a size, a count, a width)."""
    for name, value in sizes.items():
        check_int(name, value, 1)


def check_probability(**probabilities: object) -> None:
    """Check that every keyword argument is a real number in ``[0, 1]`` (a dropout rate)."""
    for name, p in probabilities.items():
        if isinstance(p, bool) or not isinstance(p, Real):
            raise TypeError(f"{name} must be a number in [0, 1], got {type(p).__name__} {p!r}")
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"{name} must be in [0, 1], got {p}")


def check_ids(ids: object, vocab_size: int, max_len: int, name: str) -> None:
    """Token ids must be an integer ``(B, L)`` tensor in ``[0, vocab_size)``, ``1 <= L <= max_len``.

    ``L = 0`` is refused: a model that pools the first position ([CLS]) or
    predicts the next token has nothing to work on.
    """
    if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise TypeError(f"{name} must be an integer tensor of token ids, got {got}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must be (B, L), got shape {tuple(ids.shape)}")
    if ids.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one token per sequence, got shape (B, 0)")
    if ids.shape[1] > max_len:
        raise ValueError(f"{name} has length {ids.shape[1]} > the maximum of {max_len} positions")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(
            f"{name} must be in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]"
        )


def check_dim(name: str, dim: object, ndim: int) -> int:
    """Return ``dim`` as a non-negative axis of a tensor with ``ndim`` axes, or raise."""
    dim = check_int(name, dim)
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name}={dim} is out of range for a tensor with {ndim} dims")
    return dim % ndim
