"""A Post-LN or Pre-LN Transformer language model, for studying training stability.

- :class:`TransformerStack`: embeddings, ``n_layers`` of
  :class:`qkv.layers.TransformerEncoderLayer` (Post-LN or Pre-LN, ``norm_first``),
  a final LayerNorm for Pre-LN, and the output layer; causal by default, so it
  is a language model. Xavier-initialised like the original Transformer.
- :func:`next_token_loss`: its mean next-token cross-entropy.
- :func:`layer_gradient_norms`: the gradient norm of each layer's parameters
  (Xiong et al. 2020, Fig. 3, measures this at initialisation).

The training runs built on it are chapter experiments:
:mod:`qkv.experiments.q19_warmup` (warm-up, and the training function Q22 and
Q24 reuse), :mod:`qkv.experiments.q22_residual_layernorm` (gradient norms at
initialisation) and :mod:`qkv.experiments.q24_original_training_recipe`
(label smoothing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.layers import TransformerEncoderLayer
from qkv.masks import causal_mask

__all__ = ["TransformerStack", "next_token_loss", "layer_gradient_norms"]


class TransformerStack(nn.Module):
    """A stack of Post-LN or Pre-LN Transformer layers with embeddings and an output layer.

    ``x_0 = embed(ids) + pos``; then ``n_layers`` of
    :class:`~qkv.layers.TransformerEncoderLayer` (ReLU FFN, as in Vaswani et
    al. 2017), Post-LN ``x = LN(x + F(x))`` or Pre-LN ``x = x + F(LN(x))``;
    Pre-LN adds a final LayerNorm (the residual stream is never normalised
    otherwise); then a linear layer to ``V`` logits. With ``causal`` every
    position sees only itself and the past. Every weight matrix except the
    embeddings is Xavier-uniform (Glorot & Bengio 2010), the initialisation of
    the original Transformer's code and of Xiong et al. 2020's analysis.

    ``forward(ids: (B, L)) -> logits (B, L, V)``.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        *,
        norm_first: bool,
        causal: bool = True,
        max_len: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 1)
        check_int("n_layers", n_layers, 1)
        self.max_len = check_int("max_len", max_len, 1)
        self.norm_first, self.causal = bool(norm_first), bool(causal)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)  # learned positions (BERT, GPT-2)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                d_model, n_heads, d_ff, dropout, norm_first=norm_first, activation="relu"
            )
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.output = nn.Linear(d_model, vocab_size)
        for name, p in self.named_parameters():
            if p.dim() == 2 and not name.startswith(("embed", "pos")):
                nn.init.xavier_uniform_(p)

    def forward(self, ids: Tensor) -> Tensor:
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.is_floating_point():
            got = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"ids must be an integer tensor (B, L), got {got}")
        L = ids.shape[1]
        if L > self.max_len:
            raise ValueError(f"sequence length {L} > max_len {self.max_len}")
        positions = torch.arange(L, device=ids.device)
        x = self.dropout(self.embed(ids) + self.pos(positions))  # (B, L, d_model)
        mask = causal_mask(L, device=ids.device)[None, None] if self.causal else None  # (1,1,L,L)
        for layer in self.layers:
            x = layer(x, mask)
        return self.output(self.final_norm(x))  # (B, L, V)


def next_token_loss(model: nn.Module, ids: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy of predicting ``ids[:, 1:]`` from ``ids[:, :-1]`` (nats per token).

    ``label_smoothing`` is PyTorch's ``cross_entropy(label_smoothing=...)``.
    """
    logits = model(ids[:, :-1])  # (B, L - 1, V)
    return F.cross_entropy(
        logits.flatten(0, 1), ids[:, 1:].flatten(), label_smoothing=label_smoothing
    )


def layer_gradient_norms(model: TransformerStack, ids: Tensor) -> list[float]:
    """The L2 norm of the gradient of :func:`next_token_loss` w.r.t. each layer's parameters.

    One number per layer of ``model.layers``, bottom (input side) first. Uses
    :func:`torch.autograd.grad`, so the parameters' ``.grad`` are left alone.
    """
    params = [list(layer.parameters()) for layer in model.layers]
    grads = torch.autograd.grad(next_token_loss(model, ids), [p for ps in params for p in ps])
    norms, i = [], 0
    for ps in params:
        norms.append(math.sqrt(sum(float(g.pow(2).sum()) for g in grads[i : i + len(ps)])))
        i += len(ps)
    return norms
