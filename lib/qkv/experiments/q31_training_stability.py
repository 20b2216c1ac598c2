"""Q31 (training stability): attention logits that grow at a high learning rate, and two fixes.

A small Pre-LN Transformer language model (:class:`qkv.stack.TransformerStack`,
2 layers, width 64, 4 heads) learns the book's Markov language for ``STEPS`` steps
of AdamW with no warm-up, a small-scale proxy in the spirit of Wortsman et al. (2023).

- ``qk_norm``: each head's query and key pass through a LayerNorm after their
  projections (Dehghani et al. 2023), so their dot product cannot grow with the
  weights; swapped in with :func:`add_qk_norm`, the rest of the model unchanged.
- ``z_loss``: PaLM's auxiliary loss ``z_loss * log(Z)^2`` on the output softmax's
  normaliser ``Z`` (Chowdhery et al. 2022, §5, with ``1e-4``), which keeps ``log Z``
  near 0; the proxy uses ``Z_LOSS = 1e-2`` so that 120 steps show the effect.

:func:`train_proxy` returns the largest attention logit ``q·k / sqrt(d_k)`` over
every layer, head and pair of a held-out batch after training, the final loss and
the mean ``|log Z|``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.attention import MultiHeadAttention
from qkv.experiments import Claim, claims, experiment
from qkv.layers import TransformerEncoderLayer
from qkv.markov import MarkovLanguage
from qkv.stack import TransformerStack

D_MODEL, N_HEADS, N_LAYERS, LENGTH, BATCH, STEPS = 64, 4, 2, 32, 32, 120
HIGH_LR = 3e-2  # where plain attention's logits run away
Z_LOSS = 1e-2  # PaLM uses 1e-4 over a far longer run; the toy needs more to show it in 120 steps


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
    loss: float  # held-out next-token loss (nats)
    log_z: float  # mean |log Z| of the output softmax on held-out data


@experiment
def train_proxy(seed: int, lr: float, *, qk_norm: bool = False, z_loss: float = 0.0) -> ProxyRun:
    """Train the proxy at learning rate ``lr``; see the module docstring.

    Used in: Q31.
    """
    g = torch.Generator().manual_seed(seed)
    language = MarkovLanguage(32, seed=seed)
    torch.manual_seed(seed)  # the initialisation
    model = TransformerStack(
        language.vocab_size, D_MODEL, N_HEADS, 4 * D_MODEL, N_LAYERS, norm_first=True
    )
    if qk_norm:
        add_qk_norm(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(STEPS):
        ids = language.sample(BATCH, LENGTH + 1, generator=g)
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        if z_loss:
            loss = loss + z_loss * torch.logsumexp(logits, dim=-1).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out = language.sample(64, LENGTH + 1, generator=g)
    with torch.no_grad():
        logits = model(held_out[:, :-1])
        held_out_loss = F.cross_entropy(logits.flatten(0, 1), held_out[:, 1:].flatten()).item()
        log_z = torch.logsumexp(logits, dim=-1).abs().mean().item()
    return ProxyRun(max_attention_logit(model, held_out[:, :-1]), held_out_loss, log_z)


_FIVE = tuple(range(5))
CLAIMS = claims(
    Claim(
        "q31-logits-grow",
        f"no QK-norm, lr {HIGH_LR:g}: largest attention logit after training",
        lambda seed: train_proxy(seed, HIGH_LR).max_logit,
        ">",
        20.0,
        seeds=_FIVE,
    ),
    Claim(
        "q31-qk-norm-bounds",
        f"QK-norm, lr {HIGH_LR:g}: largest attention logit after training",
        lambda seed: train_proxy(seed, HIGH_LR, qk_norm=True).max_logit,
        "<",
        10.0,
        seeds=_FIVE,
    ),
    Claim(
        "q31-log-z-drifts",
        f"QK-norm, no z-loss, lr {HIGH_LR:g}: mean |log Z| of the outputs",
        lambda seed: train_proxy(seed, HIGH_LR, qk_norm=True).log_z,
        ">",
        3.0,
        seeds=_FIVE,
    ),
    Claim(
        "q31-z-loss-log-z",
        f"QK-norm and z-loss, lr {HIGH_LR:g}: mean |log Z| of the outputs",
        lambda seed: train_proxy(seed, HIGH_LR, qk_norm=True, z_loss=Z_LOSS).log_z,
        "<",
        1.0,
        seeds=_FIVE,
    ),
)
