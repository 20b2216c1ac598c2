"""Q31 (training stability): attention logits that grow at a high learning rate, and two fixes.

A small Pre-LN Transformer language model (:class:`qkv.stack.TransformerStack`,
2 layers, width 32, 4 heads) learns the book's Markov language for ``STEPS`` steps
of AdamW at a constant learning rate with no warm-up, a small-scale proxy in the
spirit of Wortsman et al. (2023). Every run of one seed starts from the same
initial weights and sees the same batches, so runs differ only in what is varied:

- ``lr``: :func:`lr_sweep` trains at each of ``LEARNING_RATES`` (log-spaced, from
  where the proxy trains well to where plain attention breaks down), with and
  without QK-norm; :func:`lr_sensitivity` summarises a sweep as Wortsman et al.'s
  LR sensitivity (§2.2: the mean, over the learning rates, of how far each final
  loss, capped at the loss at initialisation, lies above the best one).
- ``qk_norm``: each head's query and key pass through a LayerNorm after their
  projections (Dehghani et al. 2023), so their dot product cannot grow with the
  weights; swapped in with :func:`add_qk_norm`, the rest of the model unchanged.
- ``z_loss``: PaLM's auxiliary loss ``z_loss * log(Z)^2`` on the output softmax's
  normaliser ``Z`` (Chowdhery et al. 2022, §5, with ``1e-4``), which keeps ``log Z``
  near 0; the proxy uses ``Z_LOSS`` (far larger) so that ``STEPS`` steps show the effect.

:func:`train_proxy` returns the largest attention logit ``q·k / sqrt(d_k)`` over
every layer, head and pair of a held-out batch after training, the held-out loss
before and after training, and the mean ``|log Z|``. It is cached: the sweep, the
chapter and the claims share its runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.attention import MultiHeadAttention
from qkv.experiments import Claim, claims, experiment
from qkv.layers import TransformerEncoderLayer
from qkv.markov import MarkovLanguage
from qkv.stack import TransformerStack

D_MODEL, N_HEADS, N_LAYERS, LENGTH, BATCH, STEPS = 32, 4, 2, 16, 16, 100
LEARNING_RATES = (1e-2, 3e-2, 1e-1, 3e-1)  # Wortsman et al. §2.2 sweep seven, 3e-4 to 3e-1
HIGH_LR = 1e-1  # where plain attention's logits run away and its loss suffers
Z_LOSS = 1e-1  # PaLM uses 1e-4 over a far longer run; the toy needs more to show it in 100 steps


class HeadNorm(nn.Module):
    """LayerNorm over each head's ``d_k`` features of a ``(..., h * d_k)`` projection."""

    def __init__(self, n_heads: int, d_k: int) -> None:
        super().__init__()
        self.n_heads, self.norm = n_heads, nn.LayerNorm(d_k)

    def forward(self, x: Tensor) -> Tensor:
        heads = x.unflatten(-1, (self.n_heads, -1))  # (..., h, d_k)
        return self.norm(heads).flatten(-2)


def _attentions(model: TransformerStack) -> list[MultiHeadAttention]:
    """Every layer's self-attention (a ModuleList's items are typed Module: cast them)."""
    return [cast(TransformerEncoderLayer, layer).self_attn for layer in model.layers]


def add_qk_norm(model: TransformerStack) -> TransformerStack:
    """Follow every layer's W_Q and W_K by a per-head LayerNorm (QK-norm), in place."""
    for attn in _attentions(model):
        q_norm, k_norm = HeadNorm(attn.n_heads, attn.d_k), HeadNorm(attn.n_kv_heads, attn.d_k)
        # a Sequential where MultiHeadAttention declares an nn.Linear: it is called the same way
        attn.w_q = nn.Sequential(attn.w_q, q_norm)  # type: ignore[assignment]
        attn.w_k = nn.Sequential(attn.w_k, k_norm)  # type: ignore[assignment]
    return model


def max_attention_logit(model: TransformerStack, ids: Tensor) -> float:
    """The largest ``|q·k| / sqrt(d_k)`` of any layer, head and (query, key) pair on ``ids``."""
    inputs: list[Tensor] = []
    attentions = _attentions(model)
    hooks = [
        attn.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
        for attn in attentions
    ]
    try:
        with torch.no_grad():
            model(ids)
            largest = 0.0
            for attn, x in zip(attentions, inputs, strict=True):
                q = attn.w_q(x).unflatten(-1, (attn.n_heads, -1)).transpose(1, 2)  # (B, h, L, d_k)
                k = attn.w_k(x).unflatten(-1, (attn.n_kv_heads, -1)).transpose(1, 2)
                scores = q @ k.transpose(-1, -2) / math.sqrt(attn.d_k)  # (B, h, L, L)
                largest = max(largest, scores.abs().max().item())
    finally:
        for hook in hooks:
            hook.remove()
    return largest


class ProxyRun(NamedTuple):
    max_logit: float  # largest attention logit after training
    loss: float  # held-out next-token loss after training (nats)
    log_z: float  # mean |log Z| of the output softmax on held-out data
    initial_loss: float  # held-out loss at initialisation (nats)


def _held_out_loss(model: nn.Module, ids: Tensor) -> tuple[float, Tensor]:
    """Next-token loss of ``model`` on ``ids: (B, L + 1)`` and its logits ``(B, L, V)``."""
    with torch.no_grad():
        logits = model(ids[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).item(), logits


def train_proxy(seed: int, lr: float, *, qk_norm: bool = False, z_loss: float = 0.0) -> ProxyRun:
    """Train the proxy at learning rate ``lr``; see the module docstring.

    Cached: the same arguments return the same run without training again.
    Used in: Q31.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive float, got {lr!r}")
    if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)) or z_loss < 0:
        raise ValueError(f"z_loss must be a float >= 0, got {z_loss!r}")
    return _train_proxy(int(seed), float(lr), bool(qk_norm), float(z_loss))


@functools.cache
@experiment
def _train_proxy(seed: int, lr: float, qk_norm: bool, z_loss: float) -> ProxyRun:
    g = torch.Generator().manual_seed(seed)
    language = MarkovLanguage(32, seed=seed)
    batches = language.sample(STEPS * BATCH, LENGTH + 1, generator=g).view(STEPS, BATCH, -1)
    held_out = language.sample(64, LENGTH + 1, generator=g)  # (64, L + 1)
    torch.manual_seed(seed)  # the initialisation
    model = TransformerStack(
        language.vocab_size, D_MODEL, N_HEADS, 4 * D_MODEL, N_LAYERS, norm_first=True
    )
    if qk_norm:
        add_qk_norm(model)
    initial_loss, _ = _held_out_loss(model, held_out)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=True)
    for ids in batches:  # (B, L + 1)
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        if z_loss:
            loss = loss + z_loss * torch.logsumexp(logits, dim=-1).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out_loss, logits = _held_out_loss(model, held_out)
    log_z = torch.logsumexp(logits, dim=-1).abs().mean().item()
    return ProxyRun(
        max_attention_logit(model, held_out[:, :-1]), held_out_loss, log_z, initial_loss
    )


def lr_sweep(seed: int) -> dict[str, tuple[ProxyRun, ...]]:
    """``{"plain": runs, "QK-norm": runs}``: one :func:`train_proxy` run per learning rate
    of ``LEARNING_RATES``, without and with QK-norm.

    Used in: Q31.
    """
    return {
        name: tuple(train_proxy(seed, lr, qk_norm=qk_norm) for lr in LEARNING_RATES)
        for name, qk_norm in (("plain", False), ("QK-norm", True))
    }


def lr_sensitivity(losses: Sequence[float], initial_loss: float) -> float:
    """Wortsman et al.'s LR sensitivity (2023, §2.2) of one sweep's final losses.

    ``E_lr[min(loss(lr), initial_loss) - best]`` with ``best = min_lr loss(lr)``: the
    mean excess of each learning rate's final loss over the best one, each loss capped
    at the loss at initialisation, so that a run that diverged (an infinite or NaN
    loss included) counts as one that learnt nothing. ``losses``: one final loss per
    learning rate of an evenly log-spaced sweep; 0 when every rate does equally well.
    """
    if not isinstance(losses, Sequence) or isinstance(losses, str) or not losses:
        raise ValueError(f"losses must be a non-empty sequence of floats, got {losses!r}")
    if not math.isfinite(initial_loss):
        raise ValueError(f"initial_loss must be a finite float, got {initial_loss!r}")
    capped = [min(float(v), initial_loss) if math.isfinite(v) else initial_loss for v in losses]
    best = min(capped)
    return sum(v - best for v in capped) / len(capped)


def sweep_sensitivity(seed: int, name: str) -> float:
    """:func:`lr_sensitivity` of :func:`lr_sweep`'s ``name`` (``"plain"`` or ``"QK-norm"``).

    Used in: Q31.
    """
    runs = lr_sweep(seed)[name]
    return lr_sensitivity([r.loss for r in runs], runs[0].initial_loss)


def top_lr_loss_gap(seed: int) -> float:
    """Held-out loss without QK-norm minus with it, at the sweep's largest learning rate.

    Used in: Q31.
    """
    sweep = lr_sweep(seed)
    return sweep["plain"][-1].loss - sweep["QK-norm"][-1].loss


def best_loss_gap(seed: int) -> float:
    """``|best plain loss - best QK-norm loss|``, each the best over the sweep's rates.

    Used in: Q31.
    """
    sweep = lr_sweep(seed)
    return abs(min(r.loss for r in sweep["plain"]) - min(r.loss for r in sweep["QK-norm"]))


_SEEDS = tuple(range(10))
_RANGE = f"{LEARNING_RATES[0]:g}–{LEARNING_RATES[-1]:g}"
CLAIMS = claims(
    Claim(
        "q31-logits-grow",
        f"no QK-norm, lr {HIGH_LR:g}: largest attention logit after training",
        lambda seed: train_proxy(seed, HIGH_LR).max_logit,
        ">",
        1000.0,
        seeds=_SEEDS,
    ),
    Claim(
        "q31-qk-norm-bounds",
        f"QK-norm, lr {HIGH_LR:g}: largest attention logit after training",
        lambda seed: train_proxy(seed, HIGH_LR, qk_norm=True).max_logit,
        "<",
        50.0,
        seeds=_SEEDS,
    ),
    Claim(
        "q31-top-lr-loss-gap",
        f"lr {LEARNING_RATES[-1]:g}: held-out loss without QK-norm minus with it (nats)",
        top_lr_loss_gap,
        ">",
        0.3,
        seeds=_SEEDS,
    ),
    Claim(
        "q31-lr-sensitivity-gap",
        f"LR sensitivity (Wortsman et al. §2.2) over lr {_RANGE}, without QK-norm minus with "
        "it (nats)",
        lambda seed: sweep_sensitivity(seed, "plain") - sweep_sensitivity(seed, "QK-norm"),
        ">",
        0.15,
        seeds=_SEEDS,
    ),
    Claim(
        "q31-same-best-loss",
        f"best held-out loss over lr {_RANGE}: absolute difference, plain vs QK-norm (nats)",
        best_loss_gap,
        "<",
        0.05,
        seeds=_SEEDS,
    ),
    Claim(
        "q31-log-z-drifts",
        f"QK-norm, no z-loss, lr {HIGH_LR:g}: mean absolute log Z of the outputs",
        lambda seed: train_proxy(seed, HIGH_LR, qk_norm=True).log_z,
        ">",
        3.0,
        seeds=_SEEDS,
    ),
    Claim(
        "q31-z-loss-log-z",
        f"QK-norm and z-loss, lr {HIGH_LR:g}: mean absolute log Z of the outputs",
        lambda seed: train_proxy(seed, HIGH_LR, qk_norm=True, z_loss=Z_LOSS).log_z,
        "<",
        1.0,
        seeds=_SEEDS,
    ),
)
