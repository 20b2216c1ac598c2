"""Q7 (chapters/attention/q07_attention_variants): the classic score functions side by side.

For a query ``q`` and a key ``k`` of width ``d``:

- additive (Bahdanau et al. 2015): ``w . tanh(W_q q + W_k k)``, a one-hidden-layer MLP;
- dot (Luong et al. 2015): ``q . k``;
- general (Luong et al. 2015): ``q^T W k``;
- scaled dot (Vaswani et al. 2017, Eq. 1): ``q . k / sqrt(d)``.

:func:`compare_scores` draws random queries, keys and weights from a seed and
returns every score matrix and its softmax, so that a chapter can compare how
sharp each one is and a robustness run can repeat the comparison over seeds.
``CLAIMS`` holds the chapter's seed-dependent claims.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from qkv.attention import additive_attention, scaled_dot_product_attention
from qkv.chunked import chunked_attention
from qkv.experiments import Claim, claims, experiment
from qkv.masks import causal_mask, to_additive
from qkv.positions import alibi_bias, apply_rotary, sinusoidal_positions

__all__ = [
    "compare_scores",
    "mean_max_weight",
    "dot_score_std",
    "rope_shift",
    "alibi_distances",
    "alibi_margin",
    "linear_vs_softmax",
    "mla_absorption",
]


@experiment
def compare_scores(
    seed: int, *, n: int = 6, m: int = 9, d: int = 64, d_hidden: int = 32
) -> dict[str, dict[str, torch.Tensor]]:
    """The four classic scores of ``n`` random queries against ``m`` random keys.

    Queries and keys have unit-variance entries; the additive score's ``W_q, W_k``
    ``(d_hidden, d)`` and the general score's ``W`` ``(d, d)`` are scaled by
    ``1/sqrt(d)`` so their outputs have unit variance too, and ``w`` is
    ``(d_hidden,)`` standard normal. Everything comes from a generator seeded
    with ``seed``; the global random state is not touched.

    Returns:
        Three dicts under ``"inputs"`` (``q`` of shape ``(n, d)``, ``k`` of
        shape ``(m, d)``, then ``w_q``, ``w_k``, ``w``, ``W``), ``"scores"``
        (``additive``, ``dot``, ``general`` and ``scaled dot``, each ``(n, m)``)
        and ``"weights"`` (the same keys, each ``(n, m)``, softmax over the keys).
    Used in: Q7.
    """
    if min(n, m, d, d_hidden) < 1:
        raise ValueError(f"need n, m, d, d_hidden >= 1, got {n}, {m}, {d}, {d_hidden}")
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(n, d, generator=gen), torch.randn(m, d, generator=gen)
    w_q, w_k = torch.randn(2, d_hidden, d, generator=gen) / math.sqrt(d)
    w = torch.randn(d_hidden, generator=gen)
    W = torch.randn(d, d, generator=gen) / math.sqrt(d)
    hidden = torch.tanh((q @ w_q.T)[:, None] + (k @ w_k.T)[None])  # (n, m, d_hidden)
    scores = {
        "additive": hidden @ w,  # (n, m, d_hidden) -> (n, m)
        "dot": q @ k.T,
        "general": q @ W @ k.T,
        "scaled dot": q @ k.T / math.sqrt(d),
    }
    _, additive_weights = additive_attention(q, k, k, w_q, w_k, w)  # qkv's Bahdanau attention
    weights = {"additive": additive_weights}
    weights |= {name: s.softmax(-1) for name, s in scores.items() if name != "additive"}
    inputs = {"q": q, "k": k, "w_q": w_q, "w_k": w_k, "w": w, "W": W}
    return {"inputs": inputs, "scores": scores, "weights": weights}


@experiment
def mean_max_weight(seed: int, score: str) -> float:
    """Mean over queries of the largest attention weight of ``score`` in
    :func:`compare_scores` (1 = one-hot, ``1/m`` = uniform)."""
    weights = compare_scores(seed)["weights"]
    if score not in weights:
        raise ValueError(f"score must be one of {sorted(weights)}, got {score!r}")
    return weights[score].amax(-1).mean().item()


@experiment
def dot_score_std(seed: int) -> float:
    """Standard deviation of the unscaled dot scores of :func:`compare_scores`
    (``d = 64``: about ``sqrt(d) = 8`` for unit-variance queries and keys)."""
    return compare_scores(seed)["scores"]["dot"].std().item()


@experiment
def rope_shift(seed: int, *, d_k: int = 16, shifts: tuple[int, ...] = (0, 1, 50, 10_000)) -> dict:
    """One query at position 3 and one key at position 10, both shifted by ``shifts``.

    The query and key (and, for the absolute score, ``W_q, W_k (d_k, d_k)``) are drawn
    from ``seed``. Returns ``"rope"`` and ``"absolute"``: the scores at each shift, with
    RoPE (:func:`qkv.positions.apply_rotary`) and with sinusoidal positions added to the
    input; ``"rope_range"``, ``"absolute_range"``: max - min over the shifts; and
    ``"offset_change"``: how much the RoPE score moves when the key goes to position 11.
    Used in: Q7.
    """
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 1, d_k, generator=gen)  # (1, d_k) each: one token
    w_q, w_k = torch.randn(2, d_k, d_k, generator=gen) / math.sqrt(d_k)
    pe = sinusoidal_positions(max(shifts) + 20, d_k)

    def rope_score(i: int, j: int) -> float:
        return (apply_rotary(q, torch.tensor([i])) @ apply_rotary(k, torch.tensor([j])).T).item()

    def absolute_score(i: int, j: int) -> float:
        return ((q + pe[i]) @ w_q @ w_k.T @ (k + pe[j]).T).item()

    rope = [rope_score(3 + s, 10 + s) for s in shifts]
    absolute = [absolute_score(3 + s, 10 + s) for s in shifts]
    return {
        "rope": rope,
        "absolute": absolute,
        "rope_range": max(rope) - min(rope),
        "absolute_range": max(absolute) - min(absolute),
        "offset_change": abs(rope_score(3, 10) - rope_score(3, 11)),
    }


@experiment
def alibi_distances(seed: int, *, n_heads: int = 8, L: int = 16, d_k: int = 16) -> dict:
    """Mean distance attended per ALiBi head, with the same random q, k, v in every head.

    Causal attention over ``L`` tokens; the bias is :func:`qkv.positions.alibi_bias` plus
    the causal mask. Returns ``"alibi"`` ``(h,)``: tokens back, averaged over queries, per
    head (steepest slope first); ``"plain"``: the same without ALiBi; ``"weights"``: the
    ALiBi weights ``(1, h, L, L)``. Used in: Q7.
    """
    gen = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(3, 1, 1, L, d_k, generator=gen).expand(3, 1, n_heads, L, d_k)
    causal = causal_mask(L)
    bias = alibi_bias(n_heads, L)[None] + to_additive(causal)  # (1, h, L, L)
    _, w_alibi = scaled_dot_product_attention(q, k, v, bias, return_weights=True)
    _, w_plain = scaled_dot_product_attention(q, k, v, to_additive(causal), return_weights=True)
    distance = (torch.arange(L)[:, None] - torch.arange(L)[None, :]).abs().float()  # (L, L)
    return {
        "alibi": (w_alibi[0] * distance).sum(-1).mean(-1),
        "plain": (w_plain[0, 0] * distance).sum(-1).mean().item(),
        "weights": w_alibi,
    }


def alibi_margin(seed: int) -> float:
    """Smallest of: the steps between successive heads' mean distances, and the gap
    between plain attention's distance and the farthest ALiBi head (> 0: ordered by
    slope, all nearer than without ALiBi)."""
    result = alibi_distances(seed)
    mean = result["alibi"]
    return min(mean.diff().min().item(), result["plain"] - mean.max().item())


@experiment
def linear_vs_softmax(seed: int, *, n: int = 512, d_k: int = 16) -> dict[str, float]:
    """Linear attention (phi = elu + 1) against softmax attention on random q, k, v.

    ``(B, h, n, d_k) = (2, 4, n, d_k)`` drawn from ``seed``. Returns ``"chunked"``: max
    difference of :func:`qkv.attention.chunked_attention` (blocks of 64) from full
    attention; ``"regrouped"``: max difference of linear attention from its quadratic
    form; ``"linear_vs_softmax"``: max difference of linear from softmax attention.
    Used in: Q7.
    """
    gen = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(3, 2, 4, n, d_k, generator=gen)
    full = scaled_dot_product_attention(q, k, v)
    chunked = chunked_attention(q, k, v, chunk_size=64)
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    similarity = phi_q @ phi_k.transpose(-2, -1)  # (B, h, n, n): what linear attention avoids
    quadratic = similarity @ v / similarity.sum(-1, keepdim=True)
    linear = phi_q @ (phi_k.transpose(-2, -1) @ v) / (phi_q @ phi_k.sum(-2).unsqueeze(-1))
    return {
        "chunked": (chunked - full).abs().max().item(),
        "regrouped": (linear - quadratic).abs().max().item(),
        "linear_vs_softmax": (linear - full).abs().max().item(),
    }


@experiment
def mla_absorption(
    seed: int,
    *,
    L: int = 6,
    d_in: int = 32,
    n_h: int = 4,
    d_h: int = 8,
    d_c: int = 12,
    d_r: int = 4,
    L_fit: int = 48,
) -> dict[str, float]:
    """A tiny causal MLA layer (float64, no query compression), and what RoPE would break.

    ``explicit``: every head's keys and values recomputed from the latent
    ``c^KV = x W^DKV``; ``absorbed``: as at inference, from the cache ``[c^KV; k^R]``
    only, with ``W^UK`` moved into the query and ``W^UV`` after the weighted sum.
    Then, on ``L_fit > d_c`` further tokens, the content scores of the last query
    against every key, ``q_i . k^C_j`` per head, without and with RoPE on both: reading
    them off the cache needs one vector ``a`` per query and head with
    ``a . c^KV_j = score_j`` for every key ``j``, whatever computed ``a`` from the query.
    The best such ``a`` (least squares over the ``L_fit`` keys) is exact without RoPE
    (``a = W^UK^T q``) and leaves a residual with it.
    Returns ``"cached"`` and ``"explicit_numbers"`` (numbers per token),
    ``"absorbed_error"`` (max difference, explicit vs from the cache), and
    ``"fit_plain_error"``, ``"fit_rope_error"`` (relative residual of the best ``a``,
    ``|C a - s| / |s|`` over all heads).
    Used in: Q7.
    """
    if L_fit <= d_c:
        raise ValueError(f"L_fit must exceed d_c (more keys than unknowns), got {L_fit} <= {d_c}")
    gen = torch.Generator().manual_seed(seed)

    def weight(rows: int, cols: int) -> Tensor:
        return torch.randn(rows, cols, generator=gen, dtype=torch.float64) / math.sqrt(rows)

    def split_heads(t: Tensor) -> Tensor:
        return t.unflatten(-1, (n_h, -1)).transpose(0, 1)  # (L, n_h * w) -> (n_h, L, w)

    w_dkv, w_kr = weight(d_in, d_c), weight(d_in, d_r)  # their outputs are cached
    w_uk, w_uv = weight(d_c, n_h * d_h), weight(d_c, n_h * d_h)  # up-projections
    w_qc, w_qr = weight(d_in, n_h * d_h), weight(d_in, n_h * d_r)
    tokens = torch.randn(L, d_in, generator=gen, dtype=torch.float64)  # (L, d_model)
    pos, allowed = torch.arange(L), causal_mask(L)
    c_kv = tokens @ w_dkv  # (L, d_c): the latent
    k_rope = apply_rotary((tokens @ w_kr)[None], pos)  # (1, L, d_r): one RoPE key, all heads
    q_c, q_rope = split_heads(tokens @ w_qc), apply_rotary(split_heads(tokens @ w_qr), pos)

    def attend(scores: Tensor, values: Tensor) -> Tensor:
        weights = (scores / math.sqrt(d_h + d_r)).masked_fill(~allowed, -math.inf).softmax(-1)
        return weights @ values  # (n_h, L, L) @ (n_h or 1, L, w)

    k_c, v_c = split_heads(c_kv @ w_uk), split_heads(c_kv @ w_uv)  # (n_h, L, d_h) each
    explicit = attend(q_c @ k_c.mT + q_rope @ k_rope.mT, v_c)
    w_uk_heads = w_uk.unflatten(1, (n_h, d_h)).permute(1, 2, 0)  # (n_h, d_h, d_c)
    w_uv_heads = w_uv.unflatten(1, (n_h, d_h)).transpose(0, 1)  # (n_h, d_c, d_h)
    q_latent = q_c @ w_uk_heads  # (n_h, L, d_c): W_UK absorbed into the query
    absorbed = attend(q_latent @ c_kv.T + q_rope @ k_rope.mT, c_kv) @ w_uv_heads

    # Can any query-side vector a read the content scores off the cached latents?
    tokens_fit = torch.randn(L_fit, d_in, generator=gen, dtype=torch.float64)
    c_fit = tokens_fit @ w_dkv  # (L_fit, d_c): what the cache holds
    q_last, k_fit = split_heads(tokens_fit[-1:] @ w_qc), split_heads(c_fit @ w_uk)
    pos_fit = torch.arange(L_fit)
    plain = (q_last @ k_fit.mT)[:, 0]  # (n_h, L_fit): q . k^C_j, the last query vs every key
    rope = (apply_rotary(q_last, pos_fit[-1:]) @ apply_rotary(k_fit, pos_fit).mT)[:, 0]

    def best_fit_error(scores: Tensor) -> float:
        a = torch.linalg.lstsq(c_fit, scores.T).solution  # (d_c, n_h): the best a per head
        return ((c_fit @ a - scores.T).norm() / scores.norm()).item()

    return {
        "cached": c_kv.shape[-1] + k_rope.shape[-1],
        "explicit_numbers": 2 * n_h * d_h,
        "absorbed_error": (explicit - absorbed).abs().max().item(),
        "fit_plain_error": best_fit_error(plain),
        "fit_rope_error": best_fit_error(rope),
    }


# How sharp the unscaled and the scaled dot product are (6 queries, 9 keys, d = 64).
CLAIMS = claims(
    Claim(
        "q07-dot-nearly-one-hot",
        "unscaled dot product: mean largest attention weight",
        lambda seed: mean_max_weight(seed, "dot"),
        ">",
        0.6,
        tuple(range(20)),
    ),
    Claim(
        "q07-scaled-dot-spread-out",
        "scaled dot product: mean largest attention weight",
        lambda seed: mean_max_weight(seed, "scaled dot"),
        "<",
        0.45,
        tuple(range(20)),
    ),
    Claim(
        "q07-dot-std-sqrt-d",
        "unscaled dot product, d = 64: |std of the scores / sqrt(d) − 1|",
        lambda seed: abs(dot_score_std(seed) / 8 - 1),
        "<",
        0.3,
        tuple(range(20)),
    ),
    Claim(
        "q07-rope-relative",
        "RoPE: largest change of q·k when both positions shift by 0, 1, 50, 10000",
        lambda seed: rope_shift(seed)["rope_range"],
        "<",
        1e-3,
        tuple(range(20)),
    ),
    Claim(
        "q07-absolute-shift",
        "sinusoidal positions added to the input: largest change of the score under the shifts",
        lambda seed: rope_shift(seed)["absolute_range"],
        ">",
        0.1,
        tuple(range(20)),
    ),
    Claim(
        "q07-rope-offset",
        "RoPE: change of q·k when the key moves from position 10 to 11",
        lambda seed: rope_shift(seed)["offset_change"],
        ">",
        1e-3,
        tuple(range(20)),
    ),
    Claim(
        "q07-alibi-ordered",
        "ALiBi, same q, k in 8 heads: smallest step in mean distance between heads (or to plain)",
        alibi_margin,
        ">",
        0.0,
        tuple(range(20)),
    ),
    Claim(
        "q07-mla-rope-breaks-absorption",
        "MLA with RoPE on the recomputed keys: relative residual of the best query-side vector "
        "over the cached latents (48 keys)",
        lambda seed: mla_absorption(seed)["fit_rope_error"],
        ">",
        0.1,
        tuple(range(20)),
    ),
    Claim(
        "q07-linear-differs",
        "linear attention (elu + 1) vs softmax attention: largest output difference",
        lambda seed: linear_vs_softmax(seed)["linear_vs_softmax"],
        ">",
        0.1,
        tuple(range(20)),
    ),
)
