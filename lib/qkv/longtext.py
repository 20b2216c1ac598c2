"""Long texts with a fixed-length encoder: truncate, slide windows, pool chunks, sparsify.

BERT has ``max_position_embeddings = 512`` learned positions and attention that
costs O(L^2) time and memory, so a longer text must be cut, split or attended
to sparsely. This module holds the remedies that Q20 measures (hierarchical
encoding, Pappagari et al. 2019, is discussed there but not run):

1. :func:`truncate`: keep the head, the tail, or both (Sun et al. 2019).
2. :func:`sliding_windows` + :func:`aggregate`: overlapping windows, one
   prediction per window, pooled.
3. :func:`local_global_mask`: Longformer's sliding-window + global attention
   pattern (Beltagy et al. 2020), as a boolean mask (True = may attend).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import torch

from ._checks import check_dim, check_int

__all__ = [
    "truncate",
    "sliding_windows",
    "aggregate",
    "local_global_mask",
]

Ids = TypeVar("Ids", torch.Tensor, list)


def truncate(ids: Ids, max_len: int, strategy: str = "head", head: int | None = None) -> Ids:
    """Cut a token sequence to at most ``max_len`` tokens.

    ``"head"`` keeps the first ``max_len`` tokens, ``"tail"`` the last, and
    ``"head+tail"`` the first ``head`` and the last ``max_len - head``. Sun et
    al. 2019 ("How to Fine-Tune BERT for Text Classification?", §5.3) found
    head 128 + tail 382 (of 510, leaving room for [CLS] and [SEP]) best on
    IMDb; the default ``head = max_len // 4`` keeps about that proportion.

    Args:
        ids: a 1-D tensor ``(L,)`` or a list of token ids.
        max_len: the length to cut to, >= 1.
        strategy: ``"head"``, ``"tail"`` or ``"head+tail"``.
        head: tokens kept from the start with ``"head+tail"``, in [0, max_len].
    Returns:
        the same type as ``ids``, of length ``min(L, max_len)``; a sequence
        already short enough comes back whole (for a tensor, as a view).
    Used in: Q20.
    """
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D (L,), got shape {tuple(ids.shape)}")
    elif not isinstance(ids, list):
        raise TypeError(f"ids must be a 1-D tensor or a list, got {type(ids).__name__}")
    max_len = check_int("max_len", max_len, 1)
    if strategy not in ("head", "tail", "head+tail"):
        raise ValueError(f"strategy must be 'head', 'tail' or 'head+tail', got {strategy!r}")
    if head is not None and strategy != "head+tail":
        raise ValueError(f"head is only used with strategy='head+tail', got {strategy!r}")
    if strategy == "head+tail":
        head = max_len // 4 if head is None else check_int("head", head, 0)
        if head > max_len:
            raise ValueError(f"head must be <= max_len={max_len}, got {head}")

    length = len(ids)
    if length <= max_len or strategy == "head":
        return ids[:max_len]
    if strategy == "tail":
        return ids[length - max_len :]
    assert head is not None  # strategy == "head+tail" set it above
    start, end = ids[:head], ids[length - (max_len - head) :]
    return torch.cat([start, end]) if isinstance(ids, torch.Tensor) else start + end


def sliding_windows(
    ids: torch.Tensor, window: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a sequence into overlapping windows that cover every token.

    Windows start at ``0, stride, 2 * stride, ...``; the last window is moved
    back to end exactly at the last token, so nothing is lost and no window is
    padded. Consecutive windows therefore overlap by ``window - stride``
    tokens, except the last pair, which overlaps by at least that much. A
    sequence no longer than ``window`` gives one window: the whole sequence.

    Args:
        ids: ``(..., L)``, e.g. ``(L,)`` or ``(B, L)``; windows are cut along
            the last dimension.
        window: tokens per window, >= 1 (e.g. 512 for BERT).
        stride: distance between window starts, in [1, window] (a larger
            stride would skip tokens).
    Returns:
        ``(windows, starts)``: ``windows`` ``(..., W, min(L, window))`` and the
        start offset of each window ``starts`` ``(W,)`` (int64).
    Used in: Q20.
    """
    if not isinstance(ids, torch.Tensor) or ids.dim() < 1:
        raise TypeError(f"ids must be a tensor of shape (..., L), got {type(ids).__name__}")
    window = check_int("window", window, 1)
    stride = check_int("stride", stride, 1)
    if stride > window:
        raise ValueError(
            f"stride must be <= window, or tokens are skipped; got stride={stride} "
            f"> window={window}"
        )
    length = ids.shape[-1]
    if length <= window:
        starts = [0]
    else:
        starts = list(range(0, length - window, stride)) + [length - window]
    starts_t = torch.tensor(starts, device=ids.device)
    width = min(length, window)
    # (W, 1) + (width,) -> (W, width): the positions each window takes
    index = starts_t[:, None] + torch.arange(width, device=ids.device)
    # (..., L) -> (..., W, width)
    return ids[..., index], starts_t


def aggregate(logits: torch.Tensor, how: str = "mean", *, dim: int = 0) -> torch.Tensor:
    """Pool the per-window predictions of one document into one prediction.

    ``"mean"`` averages the windows' logits; ``"max"`` takes, for each class,
    the largest logit of any window (good when one window holding the evidence
    should decide).

    Args:
        logits: ``(W, C)``, one row per window (floating point).
        how: ``"mean"`` or ``"max"``.
        dim: the window dimension (0 for ``(W, C)``; 1 for ``(B, W, C)``).
    Returns:
        ``(C,)`` (the input's shape without ``dim``).
    Used in: Q20.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        got = logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(f"logits must be a floating-point tensor, got {got}")
    if how not in ("mean", "max"):
        raise ValueError(f"how must be 'mean' or 'max', got {how!r}")
    if logits.dim() == 0:
        raise ValueError("logits must have a window dimension, got a 0-d tensor")
    dim = check_dim("dim", dim, logits.dim())
    if logits.shape[dim] == 0:
        raise ValueError(f"logits need at least one window along dim {dim}, got {logits.shape}")
    return logits.mean(dim) if how == "mean" else logits.amax(dim)


def local_global_mask(
    n: int,
    window: int,
    global_positions: Iterable[int] = (),
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Longformer's attention pattern: a local band plus global tokens.

    Beltagy et al. 2020 (§3.1): with window size ``w`` each token attends to
    ``w // 2`` tokens on each side (and itself), i.e. ``|i - j| <= w // 2``;
    a global token (e.g. [CLS]) attends to every position and every position
    attends to it, so the mask stays symmetric. It has about
    ``L * (w + 1 + 2 g)`` True entries instead of ``L^2``.

    Args:
        n: sequence length ``L``.
        window: ``w`` >= 1 (``w`` = 1 keeps only the diagonal).
        global_positions: positions in ``[0, L)`` with global attention.
        device: where to build the mask.
    Returns:
        bool ``(L, L)``, True = query ``i`` may attend to key ``j``.
    Used in: Q5, Q7, Q20.
    """
    n = check_int("n", n, 1)
    window = check_int("window", window, 1)
    positions = [check_int("global position", p, 0) for p in global_positions]
    if any(p >= n for p in positions):
        raise ValueError(f"global positions must be < n={n}, got {positions}")
    idx = torch.arange(n, device=device)
    # (L, 1) - (1, L) -> (L, L): distance between query i and key j
    mask = (idx[:, None] - idx[None, :]).abs() <= window // 2
    if positions:
        is_global = torch.zeros(n, dtype=torch.bool, device=device)
        is_global[positions] = True
        mask = mask | is_global[:, None] | is_global[None, :]
    return mask
