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
allowed and ``-inf`` where not. A float mask made elsewhere may use the most negative
finite value of its dtype (Hugging Face's convention); qkv reads that value as masked
too (:func:`is_masked`) and replaces it by ``-inf``, since a large score outweighs any
finite penalty: in float16 (largest magnitude 65504), ``-65504 + 3e4`` beats an allowed
score of ``-5.9e4``. :func:`masked_softmax` applies any of these masks to scores.

Used in: Q2, Q4, Q7, Q8, Q11, Q14, Q15, Q23, Q27, Q28, Q32.
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
    "masked_softmax",
    "is_masked",
    "empty_rows",
]


def padding_mask(lengths: torch.Tensor | Sequence[int], max_len: int | None = None) -> torch.Tensor:
    """Boolean mask of the real (non-padding) tokens of a right-padded batch.

    Args:
        lengths: ``(B,)`` integer tensor (or list of ints), the length of each sequence.
        max_len: ``L``, the padded length; defaults to ``max(lengths)``.

    Returns:
        ``(B, L)`` bool, ``True`` = real token, ``False`` = padding; on the
        device of ``lengths``. Use :func:`key_mask` to feed it to attention.

    Used in: Q2, Q4, Q8, Q14, Q23.
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

    Used in: Q2, Q7, Q8, Q11, Q14, Q15, Q27, Q28, Q32.
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

    Used in: Q2, Q8, Q14, Q23.
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
    Used in: Q8, Q14.
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
        Same shape, ``dtype``: 0 where allowed, ``-inf`` where not. Not ``-1e9`` or
        ``torch.finfo(dtype).min``: a large enough score outweighs any finite number (in
        float16 a masked score of 3e4 plus -65504 still beats an allowed -5.9e4), while
        ``-inf`` plus any finite score stays ``-inf``. A row with every key masked is then
        all ``-inf``, NaN in a plain softmax: :func:`masked_softmax` and qkv's attention
        return zeros for it.

    Used in: Q7, Q8.
    """
    _check_bool(mask, "mask")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, float("-inf"))


def to_torch_key_padding_mask(pad: torch.Tensor) -> torch.Tensor:
    """Convert a padding mask to :class:`torch.nn.MultiheadAttention`'s ``key_padding_mask``.

    Args:
        pad: ``(B, L)`` bool, ``True`` = real token (qkv's convention).

    Returns:
        ``(B, L)`` bool, ``True`` = **ignore** this key (PyTorch's convention there).

    Used in: Q8, Q14.
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
    keep = pad.unsqueeze(-1)  # (B, L) -> (B, L, 1)
    # where(), not a product with 0/1 weights: NaN * 0 = NaN, so a NaN (or inf) at a padded
    # position would reach the mean. Padded positions must not take part at all.
    total = torch.where(keep, x, 0.0).sum(dim=1)  # (B, d_model)
    count = keep.sum(dim=1).clamp(min=1).to(x.dtype)  # (B, 1); an empty sequence: 0 / 1
    return total / count


def _check_bool(mask: torch.Tensor, name: str) -> None:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool (True = may attend), got {mask.dtype}")


# ---------------------------------------------------------------- applying a mask to scores


def masked_softmax(
    scores: torch.Tensor, mask: torch.Tensor | None = None, *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Softmax over the keys (the last axis) of ``scores``, where masked keys get weight 0.

    The name is d2l's; the mask follows the book's convention (``True`` = may attend).
    A masked key gets weight exactly 0 whatever its score: it is set to ``-inf``, which no
    score can beat, not to a large negative number, which a large score outweighs (in
    float16, a masked score of 3e4 plus ``finfo.min`` = -65504 beats an allowed -5.9e4).
    Masking before the softmax renormalises over the allowed keys only. A query row with
    no allowed key gets all-zero weights, never NaN. The arithmetic is done in at least
    float32, as fused attention kernels do.

    Args:
        scores: ``(..., n, m)`` floating scores.
        mask: ``None``; bool, ``True`` = may attend; or float, added to the scores, where
            ``-inf`` or the most negative finite value of the *mask's* dtype
            (``finfo(mask.dtype).min``, whatever the scores' dtype) means masked. It must
            broadcast to ``scores``.
        dtype: the dtype of the result; defaults to that of ``scores``.

    Returns:
        ``(..., n, m)`` weights, each row summing to 1 or, with no allowed key, to 0.

    Used in: Q8.
    """
    dtype = scores.dtype if dtype is None else dtype
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    if mask is not None:
        blocked = ~mask if mask.dtype == torch.bool else is_masked(mask)
        if mask.dtype != torch.bool:
            scores = scores + mask.to(scores.dtype).masked_fill(blocked, 0.0)
        empty = blocked.all(dim=-1, keepdim=True)  # (..., n, 1): rows with no allowed key
        # An empty row would be softmax over all -inf = 0/0 = NaN, in the output and its
        # gradient: let it attend everywhere (a harmless computation), then zero it.
        scores = scores.masked_fill(blocked & ~empty, float("-inf"))
    weights = scores.softmax(dim=-1)
    if mask is not None:
        weights = weights.masked_fill(empty, 0.0)
    return weights.to(dtype)


def is_masked(mask: torch.Tensor) -> torch.Tensor:
    """Which entries of a mask mean "may not attend".

    Args:
        mask: bool, ``True`` = may attend; or float (additive), where ``-inf`` and anything
            at or below ``torch.finfo(mask.dtype).min`` are masked. The dtype is the
            mask's own, so a float16 mask of -65504 still masks when it is used with
            float32 scores, where -65504 is an ordinary score.

    Returns:
        bool, the shape of ``mask``, ``True`` = masked.
    """
    if mask.dtype == torch.bool:
        return ~mask
    return mask <= torch.finfo(mask.dtype).min


def empty_rows(mask: torch.Tensor) -> torch.Tensor:
    """Which query rows of a mask ``(..., n, m)`` allow no key at all.

    Such a row is a softmax over nothing, 0/0 = NaN in a plain softmax, so attention
    treats it apart (zero output and weights).

    Args:
        mask: bool (``True`` = may attend) or float (``-inf`` or ``finfo.min`` = masked).

    Returns:
        ``(..., n, 1)`` bool, ``True`` for a row in which every key is masked.
    Used in: Q8.
    """
    return is_masked(mask).all(dim=-1, keepdim=True)
