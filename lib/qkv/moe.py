"""Mixture of experts: a router sends each token to ``top_k`` of ``n_experts`` feed-forward blocks.

A dense Transformer runs one feed-forward network (FFN) on every token. A
mixture-of-experts (MoE) layer holds ``n_experts`` FFNs and a linear router; each
token goes to the ``top_k`` experts with the largest router scores, and their
outputs are summed with the router's weights (Shazeer et al. 2017; Switch
Transformer: ``top_k = 1``, Fedus et al. 2022; Mixtral: ``top_k = 2``, weights
``softmax(TopK(x W_g))``, Jiang et al. 2024). Compute per token follows the
``top_k`` active experts; memory holds all of them.

- :class:`MoEFeedForward`: the layer, with an optional capacity per expert (tokens
  over it are dropped, as in the Switch Transformer), returning the routing it used.
- :func:`load_balancing_loss`: the Switch Transformer's auxiliary loss
  ``n_experts * sum_i f_i * P_i``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int

__all__ = ["MoEFeedForward", "Routing", "load_balancing_loss"]


@dataclass(frozen=True)
class Routing:
    """How a batch of ``T`` tokens was routed.

    ``probs (T, E)``: the router's softmax over all experts; ``experts (T, k)``: the
    chosen experts, best first; ``weights (T, k)``: the weights their outputs got
    (zero where the token was dropped); ``dropped (T, k)``: over the expert's capacity.
    Used in: Q33.
    """

    probs: Tensor
    experts: Tensor
    weights: Tensor
    dropped: Tensor

    def load(self) -> Tensor:
        """``(E,)``: the share of the ``T * k`` assignments each expert received."""
        counts = torch.bincount(self.experts.flatten(), minlength=self.probs.shape[-1])
        return counts.float() / self.experts.numel()


class MoEFeedForward(nn.Module):
    """``n_experts`` GELU feed-forward blocks ``d_model -> d_ff -> d_model`` and a router.

    Args:
        d_model: token width.
        d_ff: hidden width of each expert.
        n_experts: ``E``.
        top_k: experts per token (``1 <= top_k <= E``).
        renormalize: weights are the softmax over the ``top_k`` chosen logits
            (Mixtral); otherwise the router's probabilities themselves (Switch).
        capacity_factor: if given, each expert takes at most
            ``ceil(capacity_factor * T * top_k / E)`` tokens per batch, in token order;
            the rest are dropped (their weight is zero: only the residual carries them).

    ``forward(x: (..., d_model))`` returns ``(out (..., d_model), Routing)``.
    Used in: Q33.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        n_experts: int,
        top_k: int = 2,
        *,
        renormalize: bool = True,
        capacity_factor: float | None = None,
    ) -> None:
        super().__init__()
        d_model, d_ff = check_int("d_model", d_model, 1), check_int("d_ff", d_ff, 1)
        self.n_experts = check_int("n_experts", n_experts, 1)
        self.top_k = check_int("top_k", top_k, 1)
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k must be at most n_experts = {n_experts}, got {top_k}")
        if capacity_factor is not None and not capacity_factor > 0:
            raise ValueError(f"capacity_factor must be positive or None, got {capacity_factor}")
        self.renormalize, self.capacity_factor = renormalize, capacity_factor
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
            for _ in range(n_experts)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Routing]:
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[-1] != self.router.in_features:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (..., d_model={self.router.in_features}), got {got}")
        tokens = x.reshape(-1, x.shape[-1])  # (T, d_model)
        logits = self.router(tokens)  # (T, E)
        probs = logits.softmax(dim=-1)
        top_logits, experts = logits.topk(self.top_k, dim=-1)  # (T, k), best first
        weights = top_logits.softmax(dim=-1) if self.renormalize else probs.gather(-1, experts)
        dropped = self._over_capacity(experts)
        weights = weights.masked_fill(dropped, 0.0)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token, slot = (experts == e).nonzero(as_tuple=True)  # who chose expert e, and how
            if token.numel():  # only the chosen tokens pass through expert e
                out.index_add_(0, token, weights[token, slot, None] * expert(tokens[token]))
        return out.reshape(x.shape), Routing(probs, experts, weights, dropped)

    def _over_capacity(self, experts: Tensor) -> Tensor:
        """``(T, k)`` bool: assignments over their expert's capacity (first come, first served)."""
        if self.capacity_factor is None:
            return torch.zeros_like(experts, dtype=torch.bool)
        T = experts.shape[0]
        capacity = math.ceil(self.capacity_factor * T * self.top_k / self.n_experts)
        one_hot = F.one_hot(experts.T.reshape(-1), self.n_experts)  # slot-major order: (k T, E)
        position = (one_hot.cumsum(dim=0) * one_hot).sum(dim=-1)  # 1-based place in its queue
        return (position > capacity).reshape(self.top_k, T).T


def load_balancing_loss(routing: Routing) -> Tensor:
    """The Switch Transformer's auxiliary loss ``E * sum_i f_i * P_i`` (Fedus et al. §2.2).

    ``f_i`` is the share of assignments that went to expert ``i`` (not differentiable),
    ``P_i`` the mean router probability of expert ``i`` (differentiable, so the gradient
    lowers the probability of overloaded experts). Equals 1 for perfectly uniform
    routing and ``E`` when every token goes to one expert with probability 1; the
    training loss adds it times a small ``alpha`` (``1e-2`` in the paper).
    Used in: Q33.
    """
    return routing.probs.shape[-1] * (routing.load() * routing.probs.mean(dim=0)).sum()
