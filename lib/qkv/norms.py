"""LayerNorm and RMSNorm written out, to read next to the formulas.

Both normalise **each token over its own** ``d_model`` **features**: the
statistics are taken over the last axis only, never over the batch or the
positions, so a token's output does not depend on the other tokens in the
batch, on the sequence length or on padding, and training and inference
compute the same thing. (BatchNorm takes each feature's statistics over the
batch instead; see Q22.)

- :class:`LayerNorm` (Ba et al. 2016): ``(x - mean) / sqrt(var + eps) * weight + bias``
  with the *biased* variance (divide by ``d_model``), as :class:`torch.nn.LayerNorm`.
- :class:`RMSNorm` (Zhang & Sennrich 2019): ``x / sqrt(mean(x^2) + eps) * weight``,
  no mean subtraction and no bias (LLaMA), as :class:`torch.nn.RMSNorm`.

The library's layers use PyTorch's modules; these two exist for teaching and
are tested equal to PyTorch's. Like PyTorch's, they compute the statistics in
float32 for float16 and bfloat16 inputs (a float16 square overflows once
``|x|`` passes 256) and return the input's dtype.
"""

from __future__ import annotations

from numbers import Real

import torch
from torch import Tensor, nn

from ._checks import check_int

__all__ = ["LayerNorm", "RMSNorm"]


def _check_input(x: object, d_model: int, name: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} expects a floating-point tensor (..., d_model), got {got}")
    if x.dim() == 0 or x.shape[-1] != d_model:
        raise ValueError(
            f"{name} expects input (..., d_model={d_model}), got shape {tuple(x.shape)}"
        )


def _check_eps(eps: float) -> float:
    if not isinstance(eps, Real) or isinstance(eps, bool) or not eps >= 0:  # numpy too
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    return float(eps)


class LayerNorm(nn.Module):
    """LayerNorm over the last axis (Ba et al. 2016), as ``torch.nn.LayerNorm(d_model)``.

    ``y = (x - mu) / sqrt(sigma^2 + eps) * weight + bias`` with ``mu`` and
    ``sigma^2`` the mean and the biased variance of the ``d_model`` features of
    one token. ``x: (..., d_model)`` -> same shape. ``weight`` (the gain) starts
    at 1 and ``bias`` at 0.

    Used in: Q22 (transformer/q22_residual_layernorm).
    """

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.d_model = check_int("d_model", d_model, 1)
        self.eps = _check_eps(eps)
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.d_model, "LayerNorm")
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))  # float16 squares overflow
        mean = x32.mean(dim=-1, keepdim=True)  # (..., 1): one mean per token
        # biased variance (divide by d_model), as in the paper and in PyTorch
        var = (x32 - mean).pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
        y = (x32 - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        return y.to(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm over the last axis (Zhang & Sennrich 2019), as ``torch.nn.RMSNorm``.

    ``y = x / sqrt(mean(x^2) + eps) * weight``: LayerNorm without the mean
    subtraction and without a bias, so it rescales a token but does not
    re-centre it. ``x: (..., d_model)`` -> same shape. ``eps`` must be given
    explicitly (``torch.nn.RMSNorm`` defaults to the dtype's machine epsilon;
    LLaMA uses 1e-6 or 1e-5).

    Used in: Q22 (transformer/q22_residual_layernorm).
    """

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.d_model = check_int("d_model", d_model, 1)
        self.eps = _check_eps(eps)
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.d_model, "RMSNorm")
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))  # float16 squares overflow
        mean_square = x32.pow(2).mean(dim=-1, keepdim=True)  # (..., 1): one per token
        return (x32 * torch.rsqrt(mean_square + self.eps) * self.weight).to(x.dtype)
