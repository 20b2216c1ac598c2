"""Attention masks: which query may look at which key.

Convention (the whole book): a boolean mask is ``True`` where a query **may
attend** to a key, as in :func:`torch.nn.functional.scaled_dot_product_attention`.
A mask's rank fixes its meaning (the rule of :mod:`qkv.attention`): 2-D is a pair
mask ``(n, m)`` shared by every sequence and head (:func:`causal_mask`); anything
else has the scores' rank, e.g. ``(B, 1, 1, m)`` for ``(B, h, n, m)`` scores
(:func:`key_mask`), with size-1 axes broadcasting. A ``(B, m)`` padding mask is
never passed as ``mask``: use :func:`key_mask`, or attention's ``key_padding_mask=``.

PyTorch has two opposite conventions, a classic trap (Q8)::

    SDPA attn_mask:           True = may attend    (qkv uses this one)
    nn.MultiheadAttention
      key_padding_mask:       True = IGNORE this key
      attn_mask (bool):       True = NOT allowed

For example, with lengths ``[2, 3]`` and ``L = 3``::

    pad = padding_mask(torch.tensor([2, 3]))   # [[T, T, F], [T, T, T]]
    to_torch_key_padding_mask(pad)             # [[F, F, T], [F, F, F]]

A float mask is *added* to the scores instead: :func:`to_additive` gives 0 where
allowed and the dtype's most negative finite value where not. That value, rather
than ``-1e9``, is used because ``-1e9`` overflows to ``-inf`` in float16 (its
largest magnitude is 65504).

Used in: Q2, Q4, Q7, Q8, Q11, Q14, Q15, Q27, Q32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qkv._checks import check_int

__all__ = [
    "padding_mask",
    "causal_mask",
    "prefix_lm_mask",
    "key_mask",
    "combine",
    "to_additive",
    "to_torch_key_padding_mask",
    "masked_mean",
]


def padding_mask(lengths: torch.Tensor | Sequence[int], max_len: int | None = None) -> torch.Tensor:
    """Boolean mask of the real (non-padding) tokens of a right-padded batch.

    Args:
        lengths: ``(B,)`` integer tensor (or list of ints), the length of each sequence.
        max_len: ``L``, the padded length; defaults to ``max(lengths)``.

    Returns:
        ``(B, L)`` bool, ``True`` = real token, ``False`` = padding; on the
        device of ``lengths``. Use :func:`key_mask` to feed it to attention.

    Used in: Q2, Q4, Q8, Q14.
    """
    if not isinstance(lengths, torch.Tensor):
        try:  # [] is an empty batch (B = 0), not a float tensor
            lengths = torch.as_tensor(lengths) if len(lengths) else torch.zeros(0, dtype=torch.long)
        except (TypeError, ValueError, RuntimeError):  # ["a"], "ab", None, a generator
            raise TypeError(
                f"lengths must be a (B,) integer tensor or a list of ints, got {lengths!r}"
            ) from None
    if lengths.dtype == torch.bool or lengths.dtype.is_floating_point or lengths.dtype.is_complex:
        raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be non-negative, got {lengths.tolist()}")
    if max_len is not None:
        max_len = check_int("max_len", max_len, 0)
    longest = int(lengths.max()) if lengths.numel() else 0
    if max_len is None:
        max_len = longest
    elif longest > max_len:
        raise ValueError(f"every length must be <= max_len={max_len}, got a length of {longest}")
    positions = torch.arange(max_len, device=lengths.device)
    return positions < lengths[:, None]  # (L,) vs (B, 1) -> (B, L)


def causal_mask(
    n: int, m: int | None = None, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean causal (look-ahead) mask: query ``i`` may attend to keys up to its own position.

    The queries are aligned to the **end** of the keys, as in decoding with a
    KV cache: with ``m > n`` the ``n`` queries are the last ``n`` of ``m``
    positions, so query ``i`` sees keys ``0 .. i + m - n``. (PyTorch's
    ``is_causal=True`` aligns to the *start* instead, ``j <= i``; the two agree
    only when ``n == m``.) With ``m < n`` the first ``n - m`` queries see no key.

    Args:
        n: number of queries.
        m: number of keys; defaults to ``n`` (self-attention).
        device: where to build the mask.

    Returns:
        ``(n, m)`` bool, ``True`` = allowed (on and below the aligned diagonal).

    Used in: Q2, Q7, Q11, Q14, Q15, Q27, Q32.
    """
    m = n if m is None else m
    n, m = check_int("n", n, 0), check_int("m", m, 0)
    ones = torch.ones(n, m, dtype=torch.bool, device=device)
    return ones.tril(diagonal=m - n)  # key j allowed iff j <= i + (m - n)


def prefix_lm_mask(
    n: int, prefix: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean prefix-LM (non-causal decoder) mask: bidirectional over a prefix, causal after.

    Query ``i`` may attend to key ``j`` when ``j < prefix`` (every prefix token, as in an
    encoder) or ``j <= i`` (the causal mask). Prefix queries therefore see the whole
    prefix but no target token; target queries see the prefix and the targets up to
    themselves: UniLM's sequence-to-sequence mask, T5's "causal with prefix" mask.
    ``prefix = 0`` gives :func:`causal_mask`, ``prefix = n`` a full mask.

    Returns:
        ``(n, n)`` bool, ``True`` = allowed.

    Used in: Q32.
    """
    n, prefix = check_int("n", n, 0), check_int("prefix", prefix, 0)
    if prefix > n:
        raise ValueError(f"prefix must be at most n = {n}, got {prefix}")
    prefix_keys = torch.arange(n, device=device) < prefix  # (n,): key j lies in the prefix
    return causal_mask(n, device=device) | prefix_keys  # (n, n) | (n,) broadcasts over queries


def key_mask(pad: torch.Tensor) -> torch.Tensor:
    """Reshape a padding mask so it masks the **keys** of every query and head.

    Args:
        pad: ``(B, L)`` bool, ``True`` = real token (from :func:`padding_mask`).

    Returns:
        ``(B, 1, 1, L)`` bool, broadcasting against scores ``(B, h, n, m=L)``.
        Only key columns are masked: padded *queries* still produce outputs,
        which the loss or pooling must ignore (Q8).

    Used in: Q2, Q8, Q14.
    """
    _check_bool(pad, "pad")
    if pad.dim() != 2:
        raise ValueError(f"pad must be (B, L), got shape {tuple(pad.shape)}")
    return pad[:, None, None, :]  # (B, L) -> (B, 1, 1, L)


def combine(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Combine boolean masks with logical AND (allowed only where every mask allows).

    Args:
        *masks: bool masks, ``True`` = may attend, of shapes that broadcast
            together, e.g. ``key_mask(pad)`` ``(B, 1, 1, m)`` and
            ``causal_mask(n, m)`` ``(n, m)``. ``None`` entries are skipped.

    Returns:
        The broadcast bool mask (``(B, 1, n, m)`` in the example), or ``None``
        when every argument is ``None``.
    Used in: Q14.
    """
    present = [mask for mask in masks if mask is not None]
    for i, mask in enumerate(present):
        _check_bool(mask, f"mask {i}")
    if not present:
        return None
    shapes = [tuple(mask.shape) for mask in present]
    try:
        torch.broadcast_shapes(*shapes)
    except RuntimeError:
        raise ValueError(f"masks must broadcast together, got shapes {shapes}") from None
    combined = present[0]
    for mask in present[1:]:
        combined = combined & mask
    return combined


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Convert a boolean mask to a float mask that is added to the scores.

    Args:
        mask: bool, any shape, ``True`` = may attend.
        dtype: a floating dtype, normally that of the scores.

    Returns:
        Same shape, ``dtype``: 0 where allowed, ``torch.finfo(dtype).min`` (the most
        negative finite value, not ``-1e9`` which overflows in float16) where not.

    Used in: Q7, Q8.
    """
    _check_bool(mask, "mask")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, torch.finfo(dtype).min)


def to_torch_key_padding_mask(pad: torch.Tensor) -> torch.Tensor:
    """Convert a padding mask to :class:`torch.nn.MultiheadAttention`'s ``key_padding_mask``.

    Args:
        pad: ``(B, L)`` bool, ``True`` = real token (qkv's convention).

    Returns:
        ``(B, L)`` bool, ``True`` = **ignore** this key (PyTorch's convention there).

    Used in: Q8 (attention/q08_padding_mask).
    """
    _check_bool(pad, "pad")
    if pad.dim() != 2:
        raise ValueError(f"pad must be (B, L), got shape {tuple(pad.shape)}")
    return ~pad


def masked_mean(x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Average the real tokens of each sequence, ignoring padding (mean pooling).

    Padded positions still carry outputs after attention (their queries are not
    masked), so a plain ``x.mean(dim=1)`` mixes them into the sentence vector.

    Args:
        x: ``(B, L, d_model)`` token vectors.
        pad: ``(B, L)`` bool, ``True`` = real token.

    Returns:
        ``(B, d_model)``; a sequence with no real token gives zeros, not NaN.

    Used in: Q8.
    """
    _check_bool(pad, "pad")
    if x.dim() != 3 or pad.shape != x.shape[:2]:
        shapes = f"{tuple(x.shape)} and {tuple(pad.shape)}"
        raise ValueError(f"expected x (B, L, d_model) and pad (B, L), got {shapes}")
    weights = pad.to(x.dtype).unsqueeze(-1)  # (B, L) -> (B, L, 1)
    count = weights.sum(dim=1).clamp(min=1)  # (B, 1); an empty sequence divides 0 by 1
    return (x * weights).sum(dim=1) / count


def _check_bool(mask: torch.Tensor, name: str) -> None:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool (True = may attend), got {mask.dtype}")


# ---------------------------------------------------------------- applying a mask to scores
# Private helpers of qkv.attention and qkv.additive (a mask here is already validated).


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the key axis (-1) of ``scores (..., n, m)``; masked keys get weight 0."""
    if mask is None:
        return scores.softmax(dim=-1)
    empty = _empty_rows(mask)
    mask = _let_empty_rows_attend(mask, empty)
    if mask.dtype == torch.bool:  # finfo.min, not -1e9: -1e9 overflows float16
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    else:
        scores = scores + mask
    # Masking before the softmax renormalises over the allowed keys only.
    return scores.softmax(dim=-1).masked_fill(empty, 0.0)


def _empty_rows(mask: torch.Tensor) -> torch.Tensor:
    """``(..., n, 1)`` bool: True for the query rows in which no key is allowed."""
    if mask.dtype == torch.bool:
        return ~mask.any(dim=-1, keepdim=True)
    return (mask <= torch.finfo(mask.dtype).min).all(dim=-1, keepdim=True)


def _let_empty_rows_attend(mask: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    # An empty row is softmax over all -inf = 0/0 = NaN (in a plain softmax and in older
    # torch kernels), in the output and its gradient. Letting it attend everywhere is a
    # harmless computation instead, whose result the caller then zeroes.
    if mask.dtype == torch.bool:
        return mask | empty
    return mask.masked_fill(empty, 0.0)
