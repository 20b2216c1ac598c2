"""Q12 (chapters/transformer/q12_scaling_sqrt_dk): softmax saturation, what 1/sqrt(d_k) prevents.

Each experiment draws unit-variance queries and keys, as at initialisation (the
assumption of footnote 4 of Vaswani et al. 2017), multiplies the scores by a scale
``c`` (``1``, ``d_k ** -0.5`` or ``1 / d_k``), and measures what the softmax does:
its largest weight and entropy, the gradient it lets through to the logits and to
the queries. :func:`qk_norm_entropy` adds QK-norm (LayerNorm on q and k with a gain,
Dehghani et al. 2023). Every function draws from its own CPU generator seeded with
``seed`` and the width, then moves the tensors to ``device``: one seed gives the same
draws on every device, and ``benchmarks/robustness.py`` reruns the chapter's
claims (``CLAIMS``) over many seeds. Shapes: ``B`` sequences, ``n`` queries, ``m`` keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from qkv._checks import check_int
from qkv.attention import attention_entropy, scaled_dot_product_attention
from qkv.experiments import Claim, claims, experiment

__all__ = [
    "random_queries_keys",
    "score_variance",
    "softmax_sharpness",
    "logit_gradient",
    "query_gradient",
    "qk_norm_entropy",
    "folding_gaps",
    "init_logit_variance",
]


def random_queries_keys(
    d_k: int,
    *,
    seed: int,
    B: int = 16,
    n: int = 64,
    m: int = 64,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Queries ``(B, n, d_k)`` and keys ``(B, m, d_k)`` with i.i.d. N(0, 1) components.

    Drawn on the CPU from a generator seeded with ``(seed, d_k)``, so different widths
    get independent draws and every device gets the same numbers.
    """
    for name, value in (("d_k", d_k), ("B", B), ("n", n), ("m", m)):
        check_int(name, value, 1)
    check_int("seed", seed, 0)
    gen = torch.Generator().manual_seed(seed * 100_003 + d_k)
    q = torch.randn(B, n, d_k, generator=gen)
    k = torch.randn(B, m, d_k, generator=gen)
    return q.to(device), k.to(device)


@experiment
def score_variance(
    d_k: int, *, seed: int, n: int = 512, device: str | torch.device | None = None
) -> float:
    """Sample variance of the ``n * n`` dot products ``q·k`` of unit-variance vectors.

    Footnote 4 of Vaswani et al. predicts ``d_k``.
    Used in: Q12.
    """
    q, k = random_queries_keys(d_k, seed=seed, B=1, n=n, m=n, device=device)
    scores = q[0] @ k[0].T  # (n, d_k) @ (d_k, n) -> (n, n)
    return scores.var().item()


@experiment
def softmax_sharpness(
    d_k: int, scale: float, *, seed: int, device: str | torch.device | None = None, **sizes: int
) -> tuple[float, float]:
    """Mean largest weight and mean entropy (nats) of ``softmax(scale * q k^T)``.

    Uniform attention over ``m`` keys gives ``(1/m, log m)``; one-hot gives ``(1, 0)``.
    ``sizes`` (``B``, ``n``, ``m``) go to :func:`random_queries_keys`.
    Used in: Q12.
    """
    q, k = random_queries_keys(d_k, seed=seed, device=device, **sizes)
    _, p = scaled_dot_product_attention(q, k, k, scale=scale, return_weights=True)  # (B, n, m)
    return p.amax(dim=-1).mean().item(), attention_entropy(p).mean().item()


@experiment
def logit_gradient(
    d_k: int, scale: float, *, seed: int, device: str | torch.device | None = None, **sizes: int
) -> tuple[Tensor, Tensor]:
    """Gradient norm reaching each query's logits through the softmax, and its bound.

    A random upstream gradient ``dL/dp`` ``(B, n, m)`` is sent back through
    ``p = softmax(s)``, ``s = scale * q k^T``. Returns ``(norm, bound)``, both
    ``(B, n)``: ``||dL/ds||`` per query and the trace bound
    ``(1 - sum_i p_i^2) ||dL/dp||`` that it can never exceed.
    Used in: Q12.
    """
    q, k = random_queries_keys(d_k, seed=seed, device=device, **sizes)
    gen = torch.Generator().manual_seed(seed * 100_003 + d_k + 1)
    upstream = torch.randn(q.shape[0], q.shape[1], k.shape[1], generator=gen).to(q.device)
    s = (scale * q @ k.transpose(-2, -1)).requires_grad_()  # (B, n, m)
    p = torch.softmax(s, dim=-1)
    p.backward(upstream)
    assert s.grad is not None  # s is a leaf that requires grad, and backward() ran
    bound = (1 - p.detach().pow(2).sum(-1)) * upstream.norm(dim=-1)
    return s.grad.norm(dim=-1), bound


@experiment
def query_gradient(
    d_k: int,
    scale: float,
    *,
    seed: int,
    d_v: int = 64,
    device: str | torch.device | None = None,
    **sizes: int,
) -> Tensor:
    """Gradient norm ``||dL/dq||`` per query ``(B, n)`` through qkv's attention.

    Values ``(B, m, d_v)`` and the upstream gradient on the output ``(B, n, d_v)`` are
    random; what reaches the query is ``scale * sum_j (dL/ds_j) k_j``.
    Used in: Q12.
    """
    q, k = random_queries_keys(d_k, seed=seed, device=device, **sizes)
    gen = torch.Generator().manual_seed(seed * 100_003 + d_k + 2)
    v = torch.randn(k.shape[0], k.shape[1], d_v, generator=gen).to(q.device)
    upstream = torch.randn(q.shape[0], q.shape[1], d_v, generator=gen).to(q.device)
    q.requires_grad_()
    scaled_dot_product_attention(q, k, v, scale=scale).backward(upstream)
    assert q.grad is not None  # q is a leaf that requires grad, and backward() ran
    return q.grad.norm(dim=-1)


@experiment
def qk_norm_entropy(
    growth: float | Tensor,
    *,
    seed: int,
    gain: float | Tensor | None = None,
    d_k: int = 64,
    device: str | torch.device | None = None,
    **sizes: int,
) -> Tensor:
    """Mean attention entropy (nats, a 0-d tensor) when q and k are multiplied by ``growth``.

    ``gain=None``: plain scaled attention, ``softmax(q k^T / sqrt(d_k))``, whose logits
    grow like ``growth**2``. ``gain=g``: QK-norm first, ``LN(q) = g * (q - mean) / std``
    over the ``d_k`` components (LayerNorm with gain ``g``, no bias, as in Dehghani et
    al. 2023), so the growth cancels and ``g`` sets the logits' size instead.
    ``growth`` and ``gain`` may be tensors that require grad: the result is
    differentiable in both.
    Used in: Q12.
    """
    q, k = random_queries_keys(d_k, seed=seed, device=device, **sizes)
    q, k = growth * q, growth * k
    if gain is not None:
        weight = gain * torch.ones(d_k, device=q.device)  # one gain per component
        q, k = F.layer_norm(q, (d_k,), weight), F.layer_norm(k, (d_k,), weight)
    _, p = scaled_dot_product_attention(q, k, k, return_weights=True)  # (B, n, m)
    return attention_entropy(p).mean()


@experiment
def folding_gaps(
    *,
    seed: int,
    d_model: int = 36,
    d_k: int = 12,
    B: int = 3,
    L: int = 7,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Scaled attention vs the same with ``1/sqrt(d_k)`` folded into ``W_Q``, or dropped.

    With random ``x`` ``(B, L, d_model)`` and projections ``(d_model, d_k)``, compares
    ``out`` (scale ``1/sqrt(d_k)``) with ``folded`` (``W_Q / sqrt(d_k)``, scale 1) and
    ``dropped`` (``W_Q``, scale 1), and the gradients w.r.t. the two query matrices
    under a random upstream gradient. Returns ``{"folded": max|out - folded|,
    "dropped": max|out - dropped|, "grad_ratio": |grad folded| / |grad scaled|,
    "grad_error": ||grad folded - sqrt(d_k) grad scaled|| / ||grad folded||}``.
    Used in: Q12.
    """
    for name, value in (("d_model", d_model), ("d_k", d_k), ("B", B), ("L", L)):
        check_int(name, value, 1)
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    x = torch.randn(B, L, d_model, generator=gen).to(device)
    w_q, w_k, w_v = (
        torch.randn(d_model, d_k, generator=gen).to(x.device) / d_model**0.5 for _ in range(3)
    )
    upstream = torch.randn(B, L, d_k, generator=gen).to(x.device)
    w_q_scaled = w_q.clone().requires_grad_()  # used with scale 1/sqrt(d_k)
    w_q_folded = (w_q / d_k**0.5).requires_grad_()  # used with scale 1
    out = scaled_dot_product_attention(x @ w_q_scaled, x @ w_k, x @ w_v)
    folded = scaled_dot_product_attention(x @ w_q_folded, x @ w_k, x @ w_v, scale=1.0)
    dropped = scaled_dot_product_attention(x @ w_q, x @ w_k, x @ w_v, scale=1.0)
    out.backward(upstream)
    folded.backward(upstream)
    g_scaled, g_folded = w_q_scaled.grad, w_q_folded.grad
    return {
        "folded": (out - folded).abs().max().item(),
        "dropped": (out - dropped).abs().max().item(),
        "grad_ratio": (g_folded.norm() / g_scaled.norm()).item(),
        "grad_error": ((g_folded - d_k**0.5 * g_scaled).norm() / g_folded.norm()).item(),
    }


@experiment
def init_logit_variance(
    w_q_std: float,
    w_k_std: float,
    *,
    seed: int,
    d_model: int = 512,
    d_k: int = 64,
    n_tokens: int = 1024,
    device: str | torch.device | None = None,
) -> float:
    """Variance of the unscaled logits ``(x W_Q)(x W_K)^T`` at initialisation.

    ``x`` is ``(n_tokens, d_model)`` with unit-variance components (as after
    LayerNorm); ``W_Q, W_K`` are ``(d_model, d_k)`` with N(0, std^2) entries. Equal
    stds ``1/sqrt(d_model)`` give about ``d_k``; T5's ``W_Q`` std
    ``1/sqrt(d_model * d_k)`` gives about 1.
    Used in: Q12.
    """
    for name, value in (("d_model", d_model), ("d_k", d_k), ("n_tokens", n_tokens)):
        check_int(name, value, 1)
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    x = torch.randn(n_tokens, d_model, generator=gen)
    w_q = torch.randn(d_model, d_k, generator=gen) * w_q_std
    w_k = torch.randn(d_model, d_k, generator=gen) * w_k_std
    x, w_q, w_k = x.to(device), w_q.to(device), w_k.to(device)
    return ((x @ w_q) @ (x @ w_k).T).var().item()  # (n, d_k) @ (d_k, n) -> (n, n)


class _Sizes(TypedDict):  # the keys of `**sizes`: a type checker then knows none is `device`
    B: int
    n: int
    m: int


# The chapter's sizes, and the claims its cells check.
D_K = (16, 32, 64, 128, 256, 512, 1024)
SIZES: _Sizes = {"B": 16, "n": 64, "m": 64}
_SEEDS = tuple(range(40))


def _worst_variance(seed: int) -> float:
    return max(abs(score_variance(d_k, seed=seed) / d_k - 1) for d_k in D_K)


def _sharpness(d_k: int, scale: float, which: int) -> Callable[[int], float]:
    return lambda seed: softmax_sharpness(d_k, scale, seed=seed, **SIZES)[which]


def _width_spread(seed: int) -> float:
    peaks = [softmax_sharpness(d, d**-0.5, seed=seed, **SIZES)[0] for d in D_K]
    return max(peaks) / min(peaks)


def _logit_grad_ratio(d_k: int) -> Callable[[int], float]:
    def ratio(seed: int) -> float:
        scaled = logit_gradient(d_k, d_k**-0.5, seed=seed, **SIZES)[0].median()
        return (scaled / logit_gradient(d_k, 1.0, seed=seed, **SIZES)[0].median()).item()

    return ratio


def _exact_zeros(scale: float) -> Callable[[int], float]:
    return lambda seed: (logit_gradient(1024, scale, seed=seed, **SIZES)[0] == 0).sum().item()


def _query_grad_ratio(d_k: int) -> Callable[[int], float]:
    def ratio(seed: int) -> float:
        scaled = query_gradient(d_k, d_k**-0.5, seed=seed, **SIZES).median()
        return (scaled / query_gradient(d_k, 1.0, seed=seed, **SIZES).median()).item()

    return ratio


def _folding(key: str) -> Callable[[int], float]:
    return lambda seed: folding_gaps(seed=seed, d_model=36, d_k=12)[key]


def _init_variance(t5: bool) -> Callable[[int], float]:
    d_model, d_k = 512, 64
    w_q_std = (d_model * d_k) ** -0.5 if t5 else d_model**-0.5
    target = 1.0 if t5 else d_k
    return lambda seed: abs(init_logit_variance(w_q_std, d_model**-0.5, seed=seed) / target - 1)


def _qk_norm(kind: str) -> Callable[[int], float]:
    def measure(seed: int) -> float:
        if kind == "plain":
            return qk_norm_entropy(4, seed=seed).item()
        if kind == "gain":
            return (
                qk_norm_entropy(1, gain=1, seed=seed) - qk_norm_entropy(1, gain=4, seed=seed)
            ).item()
        growth = torch.tensor(1.0, requires_grad=True)
        gain = torch.tensor(1.0, requires_grad=True)
        d_growth, d_gain = torch.autograd.grad(
            qk_norm_entropy(growth, gain=gain, seed=seed), (growth, gain)
        )
        return abs(d_growth.item()) if kind == "d_growth" else d_gain.item()

    return measure


CLAIMS = claims(
    Claim(
        "q12-variance",
        "largest deviation of Var(q·k)/d_k from 1, d_k = 16…1024",
        _worst_variance,
        "<",
        0.1,
        _SEEDS,
    ),
    Claim(
        "q12-unscaled-peak",
        "unscaled: mean largest weight at d_k = 512",
        _sharpness(512, 1.0, 0),
        ">",
        0.8,
        _SEEDS,
    ),
    Claim(
        "q12-scaled-peak",
        "1/√d_k: mean largest weight at d_k = 512",
        _sharpness(512, 512**-0.5, 0),
        "<",
        0.3,
        _SEEDS,
    ),
    Claim(
        "q12-scaled-width-spread",
        "1/√d_k: max / min of the mean largest weight over d_k",
        _width_spread,
        "<",
        1.2,
        _SEEDS,
    ),
    Claim(
        "q12-inverse-dk-entropy",
        "1/d_k: entropy at d_k = 512 (log 64 = 4.159 nats)",
        _sharpness(512, 1 / 512, 1),
        ">",
        0.99 * math.log(64),
        _SEEDS,
    ),
    Claim(
        "q12-logit-grad-512",
        "median ‖∂L/∂s‖, scaled / unscaled, d_k = 512",
        _logit_grad_ratio(512),
        ">",
        30,
        _SEEDS,
    ),
    Claim(
        "q12-logit-grad-1024",
        "median ‖∂L/∂s‖, scaled / unscaled, d_k = 1024",
        _logit_grad_ratio(1024),
        ">",
        300,
        _SEEDS,
    ),
    Claim(
        "q12-zeros-unscaled",
        "unscaled, d_k = 1024: queries (of 1024) with ∂L/∂s = 0",
        _exact_zeros(1.0),
        ">",
        0,
        _SEEDS,
    ),
    Claim(
        "q12-zeros-scaled",
        "1/√d_k, d_k = 1024: queries (of 1024) with ∂L/∂s = 0",
        _exact_zeros(1024**-0.5),
        "<=",
        0,
        _SEEDS,
    ),
    Claim(
        "q12-query-grad-16",
        "median ‖∂L/∂q‖, scaled / unscaled, d_k = 16",
        _query_grad_ratio(16),
        "<",
        0.5,
        _SEEDS,
    ),
    Claim(
        "q12-query-grad-1024",
        "median ‖∂L/∂q‖, scaled / unscaled, d_k = 1024",
        _query_grad_ratio(1024),
        ">",
        5,
        _SEEDS,
    ),
    Claim(
        "q12-folded",
        "largest change of the output when the factor is folded into W_Q",
        _folding("folded"),
        "<",
        1e-5,
        _SEEDS,
    ),
    Claim(
        "q12-dropped",
        "largest change of the output when the factor is dropped",
        _folding("dropped"),
        ">",
        0.1,
        _SEEDS,
    ),
    Claim(
        "q12-folded-grad",
        "relative error of grad folded = √d_k · grad scaled",
        _folding("grad_error"),
        "<",
        1e-5,
        _SEEDS,
    ),
    Claim(
        "q12-init-equal",
        "equal inits: deviation of Var(logits)/d_k from 1 (d_k = 64)",
        _init_variance(t5=False),
        "<",
        0.15,
        _SEEDS,
    ),
    Claim(
        "q12-init-t5",
        "T5's init: deviation of Var(logits) from 1 (d_k = 64)",
        _init_variance(t5=True),
        "<",
        0.15,
        _SEEDS,
    ),
    Claim(
        "q12-grown-plain",
        "plain scaled attention, q and k grown ×4: entropy (nats)",
        _qk_norm("plain"),
        "<",
        0.5,
        _SEEDS,
    ),
    Claim(
        "q12-qk-norm-gain",
        "QK-norm: entropy at gain 1 − entropy at gain 4 (nats)",
        _qk_norm("gain"),
        ">",
        2,
        _SEEDS,
    ),
    Claim(
        "q12-qk-norm-d-growth",
        "QK-norm: size of ∂H/∂growth (nats)",
        _qk_norm("d_growth"),
        "<",
        1e-3,
        _SEEDS,
    ),
    Claim(
        "q12-qk-norm-d-gain",
        "QK-norm: ∂H/∂gain at gain 1 (nats)",
        _qk_norm("d_gain"),
        "<",
        -1,
        _SEEDS,
    ),
)
