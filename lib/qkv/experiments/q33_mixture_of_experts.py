"""Q33 (mixture of experts): exact routing, active FLOPs, and what the balancing loss prevents.

- :func:`routed_by_loop`: the MoE output computed token by token, expert by expert, as
  an independent check of :class:`qkv.moe.MoEFeedForward`'s batched dispatch.
- :func:`flops_per_token`: FLOPs PyTorch counts for the MoE layer, a dense FFN the
  size of one expert, and a dense FFN as wide as all experts together.
- :func:`largest_expert_share`: a small MoE layer (8 experts, top-1) learns a fixed
  random function of inputs that share a common direction, as real hidden states
  do. Without the balancing loss the router sends most tokens to a few experts;
  with it (``alpha = 0.1``) the load stays near uniform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.complexity import count_flops
from qkv.experiments import Claim, claims, experiment
from qkv.moe import MoEFeedForward, load_balancing_loss

D_MODEL, D_FF, N_EXPERTS = 16, 16, 8
STEPS, BATCH, LR = 150, 128, 1e-2
OFFSET = 2.0  # norm scale of the direction every input shares


def routed_by_loop(layer: MoEFeedForward, x: Tensor) -> Tensor:
    """``x: (T, d_model)`` through ``layer``, one token and one chosen expert at a time.

    Used in: Q33.
    """
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        logits = layer.router(x[t])  # (E,)
        top, chosen = logits.topk(layer.top_k)
        weights = top.softmax(dim=-1) if layer.renormalize else logits.softmax(-1)[chosen]
        for w, e in zip(weights, chosen.tolist(), strict=True):
            out[t] += w * layer.experts[e](x[t])
    return out


def flops_per_token(tokens: int = 64, top_k: int = 2) -> dict[str, float]:
    """Counted FLOPs per token: the MoE layer, one expert's dense FFN, all experts' width.

    Used in: Q33.
    """
    x = torch.randn(tokens, D_MODEL)
    moe = MoEFeedForward(D_MODEL, D_FF, N_EXPERTS, top_k)
    one_expert = nn.Sequential(nn.Linear(D_MODEL, D_FF), nn.GELU(), nn.Linear(D_FF, D_MODEL))
    every_expert = nn.Sequential(
        nn.Linear(D_MODEL, N_EXPERTS * D_FF), nn.GELU(), nn.Linear(N_EXPERTS * D_FF, D_MODEL)
    )
    router = moe.router
    return {
        "MoE layer": count_flops(lambda: moe(x))["total"] / tokens,
        "router alone": count_flops(lambda: router(x))["total"] / tokens,
        "dense FFN, one expert's size": count_flops(lambda: one_expert(x))["total"] / tokens,
        "dense FFN, all experts' size": count_flops(lambda: every_expert(x))["total"] / tokens,
    }


@experiment
def largest_expert_share(seed: int, alpha: float) -> float:
    """Train a top-1 MoE layer with balancing weight ``alpha``; the largest expert's load after.

    The load is measured on 2,048 held-out inputs; uniform routing gives ``1 / 8``.
    Used in: Q33.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the initialisation
    teacher = nn.Sequential(nn.Linear(D_MODEL, 64), nn.Tanh(), nn.Linear(64, D_MODEL))
    shared = OFFSET * torch.randn(D_MODEL, generator=g)  # a direction every input shares
    layer = MoEFeedForward(D_MODEL, D_FF, N_EXPERTS, top_k=1, renormalize=False)
    optimizer = torch.optim.Adam(layer.parameters(), lr=LR)
    for _ in range(STEPS):
        x = torch.randn(BATCH, D_MODEL, generator=g) + shared
        with torch.no_grad():
            target = teacher(x)
        out, routing = layer(x)
        loss = F.mse_loss(out, target) + alpha * load_balancing_loss(routing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        _, routing = layer(torch.randn(2048, D_MODEL, generator=g) + shared)
    return routing.load().max().item()


CLAIMS = claims(
    Claim(
        "q33-collapse-without-balancing",
        "top-1 MoE, 8 experts, no balancing loss: largest expert's share of tokens",
        lambda seed: largest_expert_share(seed, 0.0),
        ">",
        0.3,
    ),
    Claim(
        "q33-balanced-with-balancing",
        "top-1 MoE, 8 experts, balancing loss weight 0.1: largest expert's share of tokens",
        lambda seed: largest_expert_share(seed, 0.1),
        "<",
        0.25,
    ),
)
