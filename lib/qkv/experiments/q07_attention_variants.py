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

from qkv.attention import additive_attention
from qkv.experiments import Claim, claims, experiment

__all__ = ["compare_scores", "mean_max_weight", "CLAIMS"]


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
)
