"""Q23 (transformer/q23_kv_cache): what the KV cache saves, counted and timed.

- :func:`step_flops`: floating-point operations of generating the token at each
  position with the cache (one token, the cache of the rest) and without it (the whole
  prefix again), counted by :class:`torch.utils.flop_counter.FlopCounterMode`.
- :func:`step_seconds`: the same steps timed (process CPU time, one thread), for show.
- :func:`cross_attention_step`: one decoder step of cross-attention with the encoder's
  keys and values projected once per source sentence, as a decoder caches them.
- :func:`int8_cache`: a cache quantised to 8 bits per entry, and what it does to the
  next token's logits.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from qkv import complexity
from qkv.attention import MultiHeadAttention, scaled_dot_product_attention
from qkv.experiments import Claim, claims, experiment
from qkv.gpt import GPT, GPTConfig
from qkv.kvcache import KVCache, decode_step_seconds

__all__ = [
    "CLAIMS",
    "count_flops",
    "POSITIONS",
    "cross_attention_kv",
    "cross_attention_step",
    "int8_cache",
    "quantise_int8",
    "step_flops",
    "step_seconds",
    "timing_model",
]

POSITIONS = (16, 64, 128, 256, 384, 511)
TIMING_CONFIG = GPTConfig(vocab_size=101, n_positions=512, n_embd=128, n_layer=4, n_head=4)


def timing_model(seed: int = 0) -> tuple[GPT, Tensor]:
    """The chapter's larger GPT-2 (width 128, 4 layers, 512 positions), eval mode, and
    ``(1, 512)`` random token ids."""
    torch.manual_seed(seed)
    model = GPT(TIMING_CONFIG).eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, TIMING_CONFIG.vocab_size, (1, 512), generator=g)
    return model, ids


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of ``fn()`` (no gradients), counted by ``FlopCounterMode``.

    Attention runs on the math backend of ``F.scaled_dot_product_attention``, whose two
    products are matrix products the counter sees (a fused CPU kernel it may not).
    Used in: Q23.
    """
    with sdpa_kernel(SDPBackend.MATH):
        return complexity.count_flops(fn)["total"]


@experiment
def step_flops(seed: int, positions: tuple[int, ...] = POSITIONS) -> dict[str, list[int]]:
    """FLOPs of generating the token at each position, with and without the cache.

    With the cache: one forward of token ``t`` given the cache of tokens ``0 .. t - 1``
    (built first, not counted); without: one forward of tokens ``0 .. t``. Matrix
    products and attention are counted (``FlopCounterMode``); element-wise work is not.
    Returns ``{"cache": [...], "no cache": [...]}``. Used in: Q23.
    """
    model, ids = timing_model(seed)
    out: dict[str, list[int]] = {"cache": [], "no cache": []}
    for t in positions:
        with torch.no_grad():
            _, cache = model(ids[:, :t])
        out["cache"].append(count_flops(partial(model, ids[:, t : t + 1], cache)))
        out["no cache"].append(count_flops(partial(model, ids[:, : t + 1])))
    return out


@experiment
def step_seconds(
    seed: int, positions: tuple[int, ...] = POSITIONS, repeats: int = 7
) -> dict[str, list[float]]:
    """Median process CPU time of the steps of :func:`step_flops` (one torch thread).

    Shown, never asserted as such: a time depends on the machine and its load.
    Used in: Q23.
    """
    model, ids = timing_model(seed)
    with torch.no_grad():
        return decode_step_seconds(model, ids, list(positions), repeats=repeats)


def cross_attention_kv(attn: MultiHeadAttention, memory: Tensor) -> tuple[Tensor, Tensor]:
    """Project the encoder output once: keys and values ``(B, h, m, d_k)`` for every step.

    ``memory: (B, m, d_model)``. A decoder computes this once per source sentence and
    reuses it at every generated token (the cross-attention cache). Used in: Q23.
    """
    B, m, _ = memory.shape
    k = attn.w_k(memory).view(B, m, attn.n_kv_heads, attn.d_k).transpose(1, 2)
    v = attn.w_v(memory).view(B, m, attn.n_kv_heads, attn.d_k).transpose(1, 2)
    if attn.n_kv_heads != attn.n_heads:
        group = attn.n_heads // attn.n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return k, v


def cross_attention_step(
    attn: MultiHeadAttention, x_t: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor | None = None
) -> Tensor:
    """One step of cross-attention from the new target token ``x_t: (B, 1, d_model)``.

    ``kv`` comes from :func:`cross_attention_kv`; only the query is projected here.
    ``mask``: the source padding mask as for ``attn`` (``(B, 1, 1, m)``, True = real).
    Returns ``(B, 1, d_model)``, equal to ``attn(x_t, memory, memory, mask)[0]`` in eval
    mode. Used in: Q23.
    """
    B = x_t.shape[0]
    q = attn.w_q(x_t).view(B, 1, attn.n_heads, attn.d_k).transpose(1, 2)  # (B, h, 1, d_k)
    out = scaled_dot_product_attention(q, kv[0], kv[1], mask)  # (B, h, 1, d_k)
    return attn.w_o(out.transpose(1, 2).reshape(B, 1, attn.d_model))


def quantise_int8(x: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric 8-bit quantisation per vector: ``x: (..., d)`` -> int8, scale ``(..., 1)``.

    ``x ≈ q * scale`` with ``scale = max|x| / 127`` over the last axis (one scale per token
    and head for a cache ``(B, h, m, d_k)``).
    """
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127
    return torch.round(x / scale).to(torch.int8), scale


@experiment
def int8_cache(seed: int, prompt_len: int = 40) -> dict[str, float]:
    """Cache a prompt in float32 and in int8 (per-vector scales); compare the next logits.

    A random GPT-2 (vocabulary 101, width 48, 3 layers, 4 heads) reads ``prompt_len``
    random tokens; the next token's logits are computed from the float32 cache and from
    its int8 round trip. Returns ``bytes_ratio`` (int8 entries plus float32 scales over
    float32 entries), ``max_logit_error`` relative to the logits' standard deviation, and
    ``same_argmax`` (1.0 when every sequence's most likely next token is unchanged).
    Used in: Q23.
    """
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=101, n_positions=64, n_embd=48, n_layer=3, n_head=4)).eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 101, (3, prompt_len + 1), generator=g)
    with torch.no_grad():
        _, cache = model(ids[:, :prompt_len])
        quantised = [quantise_int8(t) for t in (*cache.keys, *cache.values)]
        restored = [q.float() * scale for q, scale in quantised]
        n_layers = len(cache.keys)
        cache8 = KVCache(tuple(restored[:n_layers]), tuple(restored[n_layers:]), cache.owner)
        exact = model(ids[:, prompt_len:], cache)[0][:, -1]  # (B, V)
        approx = model(ids[:, prompt_len:], cache8)[0][:, -1]
    int8_bytes = sum(q.numel() + 4 * scale.numel() for q, scale in quantised)
    return {
        "bytes_ratio": int8_bytes / cache.nbytes(),
        "max_logit_error": float((approx - exact).abs().max() / exact.std()),
        "same_argmax": float((approx.argmax(-1) == exact.argmax(-1)).all()),
    }


CLAIMS = claims(
    Claim(
        "q23-int8-cache-logits",
        "int8 KV cache (per-vector scales): largest next-token logit error / logit std",
        lambda seed: int8_cache(seed)["max_logit_error"],
        "<",
        0.01,
    ),
)
