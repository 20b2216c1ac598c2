"""Why Post-LN Transformers need warm-up and Pre-LN ones do not: a small test bed.

- :class:`TransformerStack`: embeddings, ``n_layers`` of
  :class:`qkv.layers.TransformerEncoderLayer` (Post-LN or Pre-LN, ``norm_first``),
  a final LayerNorm for Pre-LN, and the output layer; causal by default, so it
  is a language model. Xavier-initialised like the original Transformer.
- :func:`layer_gradient_norms` and :func:`gradient_norms_at_init`: the gradient
  norm of each layer's parameters at initialisation (Xiong et al. 2020, Fig. 3).
- :func:`train_markov_lm`: train the stack on :class:`qkv.markov.MarkovLanguage`
  with the Transformer's Adam (beta2 = 0.98, eps = 1e-9; Vaswani et al. 2017
  §5.3), a linear warm-up of ``warmup_steps`` then a constant rate; optionally
  with label smoothing and a small fixed training set (Q24).

One function, :func:`train_markov_lm`, serves Q19 (warm-up), Q22 (Post-LN vs
Pre-LN) and Q24 (label smoothing), so the chapters compare the same runs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.data import MarkovLanguage
from qkv.masks import causal_mask
from qkv.models import TransformerEncoderLayer
from qkv.train import History, TrainConfig, train
from qkv.warmup import lambda_lr, linear_warmup_constant

__all__ = [
    "TransformerStack",
    "next_token_loss",
    "layer_gradient_norms",
    "gradient_norms_at_init",
    "markov_language",
    "train_markov_lm",
    "final_loss",
]


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

    Used in: Q19.
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
    Used in: Q19.
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


def markov_language() -> MarkovLanguage:
    """The language every run here learns: 20 words, 3 successors each (fixed chain).

    Used in: Q19.
    """
    return MarkovLanguage(20, branching=3, seed=0)


def gradient_norms_at_init(
    seed: int, *, norm_first: bool, n_layers: int = 12, d_model: int = 64
) -> list[float]:
    """Per-layer gradient norms of a freshly initialised stack on one batch (64 × 32 tokens).

    ``seed`` fixes the initialisation and the batch. Used in: Q22.
    """
    torch.manual_seed(seed)
    lang = markov_language()
    model = TransformerStack(
        lang.vocab_size, d_model, 4, 4 * d_model, n_layers, norm_first=norm_first
    )
    return layer_gradient_norms(model, lang.sample(64, 33, generator=seed))


def train_markov_lm(
    seed: int,
    *,
    norm_first: bool,
    warmup_steps: int = 0,
    lr: float = 1e-2,
    steps: int = 120,
    n_layers: int = 6,
    d_model: int = 32,
    label_smoothing: float = 0.0,
    n_train: int | None = None,
    batch_size: int = 32,
    length: int = 17,
) -> tuple[TransformerStack, History]:
    """Train a :class:`TransformerStack` language model on :func:`markov_language`.

    Adam with the Transformer's ``betas=(0.9, 0.98)``, ``eps=1e-9`` (Vaswani et
    al. 2017 §5.3), learning rate ``lr`` reached by a linear warm-up over
    ``warmup_steps`` (0 = none) and then held constant, so that only the
    warm-up differs between runs. ``n_heads = 4``, ``d_ff = 4 * d_model``.

    Args:
        seed: fixes the initialisation, the data and the dropout masks.
        norm_first: Pre-LN when True, Post-LN when False.
        label_smoothing: epsilon of the training loss (Q24).
        n_train: train on this many fixed sequences (full batch every step);
            ``None`` = a fresh batch of ``batch_size`` sequences every step.
        length: tokens per sequence (``length - 1`` predictions).
    Returns:
        the trained model and its :class:`~qkv.train.History` (every step logged).
    Used in: Q19, Q22.
    """
    steps = check_int("steps", steps, 1)
    lang = markov_language()
    torch.manual_seed(seed)
    model = TransformerStack(
        lang.vocab_size, d_model, 4, 4 * d_model, n_layers, norm_first=norm_first
    )
    if n_train is None:  # every step a new batch, drawn up front in one go
        pool = lang.sample(steps * batch_size, length, generator=seed).view(steps, batch_size, -1)
    else:
        pool = lang.sample(check_int("n_train", n_train, 1), length, generator=seed)[None]
    optimizer = torch.optim.Adam(
        model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9, foreach=True
    )
    scheduler = lambda_lr(optimizer, linear_warmup_constant, warmup_steps=warmup_steps)
    history = train(
        model,
        lambda step, generator: pool[step % len(pool)],
        lambda m, ids: next_token_loss(m, ids, label_smoothing),
        TrainConfig(steps=steps, seed=seed),
        optimizer=optimizer,
        scheduler=scheduler,
    )
    return model, history


def final_loss(history: History, last: int = 20) -> float:
    """Mean training loss over the last ``last`` logged steps (one batch is noisy).

    Used in: Q19, Q22.
    """
    losses = history.loss[-check_int("last", last, 1) :]
    return sum(losses) / len(losses)
