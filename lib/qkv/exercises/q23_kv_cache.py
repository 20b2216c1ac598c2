"""Checker for the Q23 exercise: one decoding step with a key/value cache."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import scaled_dot_product_attention
from ..masks import causal_mask
from .core import Case, Mismatch, Verdict, assert_close, run_checks

__all__ = ["check_cached_attention_step"]


def _decode_case(seed: int, batch: int, length: int, d_model: int, d_k: int) -> Case:
    def run(fn: Callable) -> None:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, length, d_model, generator=g)  # (B, L, d_model)
        w_q, w_k, w_v = (torch.randn(d_model, d_k, generator=g) / d_model**0.5 for _ in range(3))
        # The reference: one parallel, teacher-forced pass with the causal mask.
        q, k, v = x @ w_q, x @ w_k, x @ w_v  # (B, L, d_k) each
        full = scaled_dot_product_attention(q, k, v, causal_mask(length)[None])  # (B, L, d_k)
        past_k = past_v = torch.zeros(batch, 0, d_k)  # the empty cache
        for t in range(length):  # feed the tokens one at a time, as in generation
            x_t = x[:, t : t + 1]  # (B, 1, d_model)
            kept = (past_k.clone(), past_v.clone())
            result = fn(x_t.clone(), w_q, w_k, w_v, past_k, past_v)
            if not isinstance(result, tuple) or len(result) != 3:
                raise Mismatch("return a tuple (out, k_cache, v_cache)")
            out, new_k, new_v = result
            if not (torch.equal(past_k, kept[0]) and torch.equal(past_v, kept[1])):
                raise Mismatch(f"step {t}: the old cache was modified in place; return new tensors")
            where = f"step {t} (cache of {t} tokens, B={batch})"
            assert_close(new_k, k[:, : t + 1], f"{where}: the key cache after appending")
            assert_close(new_v, v[:, : t + 1], f"{where}: the value cache after appending")
            assert_close(out, full[:, t : t + 1], f"{where}: output vs the full causal forward")
            past_k, past_v = new_k, new_v

    return Case(f"B={batch}, {length} steps, d_model={d_model}, d_k={d_k}, seed {seed}", run)


def check_cached_attention_step(fn: Callable) -> Verdict:
    """Check the reader's ``cached_attention_step(x_t, w_q, w_k, w_v, past_k, past_v)`` from Q23.

    ``x_t: (B, 1, d_model)`` is the newest token's input, ``w_q, w_k, w_v: (d_model, d_k)``
    one head's projections, ``past_k, past_v: (B, t, d_k)`` the cache (``t = 0`` at the
    first step). ``fn`` must return ``(out, k_cache, v_cache)``: the token's attention
    output ``(B, 1, d_k)`` and the caches ``(B, t + 1, d_k)``, without changing the old
    ones. Step by step, every output must equal the same row of one parallel causal
    forward pass over the whole sequence.

    Used in: Q23 (chapters/transformer/q23_kv_cache).
    """
    sizes = [(1, 1, 5, 3), (2, 6, 7, 5), (3, 9, 12, 4)]
    cases = [_decode_case(seed, *size) for seed, size in enumerate(sizes)]
    return run_checks("cached_attention_step", fn, cases)
