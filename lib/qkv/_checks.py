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
from torch import Tensor

__all__ = [
    "check_int",
    "check_generator",
    "check_positive_ints",
    "check_number",
    "check_probability",
    "check_ids",
    "check_dim",
    "check_qkv",
    "check_scale",
    "check_attention_mask",
    "check_finite_result",
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


def check_generator(generator: object) -> torch.Generator:
    """A CPU generator: ``generator`` itself, or a new one seeded with an integer seed >= 0.

    Any integral seed is accepted (``numpy.int64`` too); ``bool`` is not.
    """
    if isinstance(generator, torch.Generator):
        if generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU generator, got one on {generator.device}")
        return generator
    if isinstance(generator, Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(check_int("generator (a seed)", generator, 0))
    raise TypeError(f"generator must be a torch.Generator or an int seed >= 0, got {generator!r}")


def check_positive_ints(**sizes: object) -> None:
    """Check that every keyword argument is an int >= 1 (a size, a count, a width)."""
    for name, value in sizes.items():
        check_int(name, value, 1)


def check_number(name: str, value: object) -> float:
    """Return a real number (``int``, ``float``, ``numpy.float32``, ...) as a Python float.

    ``bool`` is rejected although it is an ``int`` subclass (``num_cycles=True`` is a
    bug), and so are strings, tensors and complex numbers, with a ``TypeError``.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_probability(**probabilities: object) -> None:
    """Check that every keyword argument is a real number in ``[0, 1]`` (a dropout rate)."""
    for name, p in probabilities.items():
        if isinstance(p, bool) or not isinstance(p, Real):
            raise TypeError(f"{name} must be a number in [0, 1], got {type(p).__name__} {p!r}")
        value = float(p)  # numbers.Real has no comparison operators in typeshed
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
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


# ---------------------------------------------------------------- attention inputs
# Shared by qkv.attention and qkv.chunked. The mask rule (the book's, see qkv.attention):
# a mask is 2-D (n, m) or has the scores' rank (..., n, m); never anything in between.

_PADDING_HINT = (
    "for a (B, m) padding mask pass key_padding_mask=pad (True = real token), or "
    "qkv.masks.key_mask(pad) -> (B, 1, 1, m) with 4-D inputs, pad[:, None, :] with 3-D"
)


def check_qkv(q: Tensor, k: Tensor, v: Tensor, *, same_d_k: bool = True) -> tuple[int, ...]:
    """Validate q (..., n, d_k), k (..., m, d_k), v (..., m, d_v); return the batch dims ``...``.

    One dtype and one rank, and the same batch dims: torch would broadcast a size-1 or a
    missing axis, which silently mixes the batch and head axes. ``k.expand(...)`` shares
    keys explicitly (a view, no copy); ``MultiHeadAttention(n_kv_heads=...)`` groups heads.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name} must be a floating-point Tensor, got {got}")
        if x.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dims (..., L, d), got {tuple(x.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if same_d_k and q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if q.shape[-1] == 0 or k.shape[-1] == 0:
        raise ValueError(f"q and k need d_k >= 1, got shapes {tuple(q.shape)}, {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same m, got {k.shape[-2]} and {v.shape[-2]}")
    if not q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
        shapes = [tuple(x.shape) for x in (q, k, v)]
        raise ValueError(
            f"q, k, v must have the same rank and the same leading (batch, head) dims, got "
            f"{shapes}; to share keys and values, expand them (k.expand(...), a view)"
        )
    return tuple(q.shape[:-2])


def check_scale(scale: object, d_k: int) -> float:
    """Return the score scale: ``1 / sqrt(d_k)`` by default, else a finite number >= 0.

    0 is allowed (uniform weights, the limit Q12 plots); a negative scale reverses the
    ranking of the keys, almost surely a bug.
    """
    if scale is None:
        return d_k**-0.5
    if isinstance(scale, bool) or not isinstance(scale, Real):
        raise TypeError(f"scale must be a real number or None, got {type(scale).__name__}")
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0, got {scale}")
    return float(scale)


def check_attention_mask(
    mask: object,
    key_padding_mask: object,
    q_shape: torch.Size,
    m: int,
    dtype: torch.dtype,
    device: torch.device | None = None,
) -> Tensor | None:
    """Validate ``mask`` and ``key_padding_mask`` against the scores ``(..., n, m)``.

    Returns one mask (bool, or float in ``dtype``, where ``-inf`` and ``finfo(dtype).min``
    mean masked) that is 2-D ``(n, m)`` or of the scores' rank, combining the two by AND;
    ``None`` when both are ``None``. Both masks must be on ``device`` (that of q), when it is given.
    """
    rank, n = len(q_shape), q_shape[-2]
    scores = (*q_shape[:-2], n, m)
    if mask is not None:
        if not isinstance(mask, Tensor) or not (
            mask.dtype == torch.bool or mask.dtype.is_floating_point
        ):
            got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise TypeError(f"mask must be bool (True = may attend) or floating (added), got {got}")
        shape = tuple(mask.shape)
        if mask.dim() == 2 and rank > 2:  # a pair mask, shared by every batch element and head
            if shape != (n, m):
                raise ValueError(
                    f"a 2-D mask must be exactly (n, m) = {(n, m)}, got {shape}; {_PADDING_HINT}"
                )
            if q_shape[0] == n > 1:  # a (B, m) padding mask would look the same
                raise ValueError(
                    f"a 2-D mask {shape} is ambiguous when the batch size B = {n} equals n: a pair "
                    f"mask (n, m) or a padding mask (B, m)? Pass a pair mask with the scores' rank "
                    f"{rank} (e.g. mask[None, None] for 4-D inputs, mask[None] for 3-D), a padding "
                    f"mask as key_padding_mask=pad"
                )
        elif mask.dim() != rank or any(s not in (1, f) for s, f in zip(shape, scores, strict=True)):
            raise ValueError(
                f"mask must be 2-D (n, m) = {(n, m)} or have the scores' rank {rank} with each "
                f"axis of size 1 or of the scores' size {scores}, got {shape}; {_PADDING_HINT}"
            )
        if device is not None and mask.device != device:  # chunked ignored a meta mask
            raise ValueError(f"mask must be on q's device {device}, got a mask on {mask.device}")
        if mask.dtype not in (torch.bool, dtype):
            # Masked entries (-inf, or at most finfo.min of the mask's own dtype: a float16
            # mask's -65504 is an ordinary value in float32) stay masked: -inf in `dtype`.
            # A mask already in `dtype` is kept as it is (no copy): each path reads its
            # finfo.min entries as masked itself.
            blocked = mask <= torch.finfo(mask.dtype).min
            mask = mask.to(dtype).masked_fill_(blocked, float("-inf"))
    if key_padding_mask is None:
        return mask
    pad = key_padding_mask
    if not isinstance(pad, Tensor) or pad.dtype != torch.bool:
        got = pad.dtype if isinstance(pad, Tensor) else type(pad).__name__
        raise TypeError(f"key_padding_mask must be bool (B, m), True = real token, got {got}")
    if rank < 3 or tuple(pad.shape) != (q_shape[0], m):
        expected = (q_shape[0], m) if rank > 2 else "a batch axis in q, k, v"
        raise ValueError(f"key_padding_mask must be (B, m) = {expected}, got {tuple(pad.shape)}")
    if device is not None and pad.device != device:
        raise ValueError(f"key_padding_mask must be on q's device {device}, got {pad.device}")
    pad = pad.view(pad.shape[0], *(1,) * (rank - 2), m)  # (B, m) -> (B, 1, ..., 1, m)
    if mask is None:
        return pad
    if mask.dtype == torch.bool:
        return mask & pad
    return torch.where(pad, mask, float("-inf"))  # a float mask: masked = -inf, never finite


def check_finite_result(out: Tensor, **inputs: Tensor | None) -> None:
    """Raise ``ValueError`` if ``out`` holds NaN or inf, naming the input that caused it.

    The inputs are not scanned first: one reduction over the (smaller) output is enough
    to know that no NaN reached it, since a NaN or inf makes the sum non-finite. Only
    then are q, k, v and the mask searched. ``.item()`` is one host sync on CUDA.
    """
    if out.numel() == 0:
        return
    total = out.sum() if out.element_size() >= 4 else out.sum(dtype=torch.float32)
    if math.isfinite(total.item()) or torch.isfinite(out).all():  # the second: a sum overflow
        return
    for name, x in inputs.items():
        if x is None or not x.is_floating_point():
            continue
        bad = x.isnan() | (x == float("inf")) if name == "mask" else ~x.isfinite()
        if bad.any():
            what = "NaN or +inf (-inf means masked)" if name == "mask" else "NaN or inf"
            raise ValueError(f"{name} contains {what}: attention needs finite inputs")
    raise ValueError(
        f"the result has NaN or inf although every input is finite: the scores overflow "
        f"{out.dtype}; use smaller inputs or compute in float32"
    )
