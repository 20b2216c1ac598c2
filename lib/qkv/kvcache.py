"""The key/value cache of a decoder: what it holds, what it costs in memory and time.

Under a causal mask the keys and values of past positions never change, so a
decoder keeps every layer's K and V and, at each step, computes q, k, v for the
new token only, appends k and v, and attends over the cache (queries are not
kept: a past query is never used again). Memory grows linearly with the tokens:
``2 * n_layers * n_kv_heads * d_head * tokens * bytes`` per sequence.

- :class:`KVCache`: the cache :class:`qkv.gpt.GPT` returns (keys and values only).
- :func:`kv_cache_bytes`: that formula, for tables of real configurations.
- :func:`decode_step_seconds`: CPU time of one decoding step, with and without the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.complexity import median_seconds

__all__ = ["KVCache", "kv_cache_bytes", "decode_step_seconds"]


@dataclass(frozen=True)
class KVCache:
    """Every layer's past keys and values (no queries): ``keys[l], values[l]: (B, h, m, d_k)``.

    ``m`` is the number of tokens seen so far. A cache is immutable: :meth:`qkv.gpt.GPT.forward`
    returns a new, longer one, so an old cache can be reused (e.g. to branch).
    ``owner`` is a token of the model that made it (an object no other model holds).
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    owner: object

    @property
    def length(self) -> int:
        """``m``, the number of cached positions."""
        return self.keys[0].shape[2]

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def nbytes(self) -> int:
        """Bytes held: ``2 * n_layer * B * h * m * d_k * bytes per element``."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


def kv_cache_bytes(
    n_layers: int,
    n_kv_heads: int,
    d_head: int,
    tokens: int,
    *,
    bytes_per_element: int = 2,
    batch_size: int = 1,
) -> int:
    """Bytes of a key/value cache: ``2 * n_layers * n_kv_heads * d_head * tokens * bytes * B``.

    The 2 counts keys and values. Multi-head attention has ``n_kv_heads = h``;
    grouped-query attention fewer; multi-query attention 1. ``bytes_per_element`` is 2
    for float16/bfloat16, 4 for float32, 1 for an 8-bit cache.

    Used in: Q23, Q27.
    """
    sizes = dict(
        n_layers=n_layers,
        n_kv_heads=n_kv_heads,
        d_head=d_head,
        bytes_per_element=bytes_per_element,
        batch_size=batch_size,
    )
    for name, value in sizes.items():
        check_int(name, value, 1)
    check_int("tokens", tokens, 0)
    return 2 * n_layers * n_kv_heads * d_head * tokens * bytes_per_element * batch_size


@torch.no_grad()
def decode_step_seconds(
    model: nn.Module, ids: Tensor, positions: Sequence[int], *, repeats: int = 7
) -> dict[str, list[float]]:
    """Median CPU time of generating the token at each position, with and without the cache.

    For a position ``t``: *with* the cache, one forward of token ``t`` given the cache of
    tokens ``0 .. t - 1`` (built once, not timed); *without* it, one forward of tokens
    ``0 .. t``, as a decoder without a cache does at every step. Process CPU time is used
    (not wall time) so that other jobs on a shared machine do not count; run with
    ``torch.set_num_threads(1)``, since idle worker threads spin and count as CPU time.

    Args:
        model: a decoder called as ``model(ids, cache) -> (logits, cache)``
            (:class:`qkv.gpt.GPT`).
        ids: ``(B, L)`` token ids, ``L > max(positions)``.
        positions: the positions ``t >= 1`` to time.
        repeats: timings per position and mode; the median is kept.

    Returns:
        ``{"cache": [...], "no cache": [...]}``: seconds per step at each position.
    """
    check_int("repeats", repeats, 1)
    if not positions or min(positions) < 1 or max(positions) >= ids.shape[1]:
        raise ValueError(f"positions must lie in [1, {ids.shape[1] - 1}], got {list(positions)}")

    def median(step: Callable[[], object]) -> float:
        return median_seconds({"step": step}, repeats, clock="cpu", warmup=False)["step"]

    seconds: dict[str, list[float]] = {"cache": [], "no cache": []}
    for t in positions:
        _, cache = model(ids[:, :t])  # the prefix, computed once
        seconds["cache"].append(median(partial(model, ids[:, t : t + 1], cache)))
        seconds["no cache"].append(median(partial(model, ids[:, : t + 1])))
    return seconds
