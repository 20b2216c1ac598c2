"""Tying the projections of one attention layer: ``W_K = W_V`` and ``W_Q = W_K``.

Classic attention reads the same encoder states as keys and values (``k = v``); a
Transformer layer computes ``K = X W_K`` and ``V = X W_V`` with two matrices. This
module ties them by module surgery (one ``nn.Linear`` under two names, so the
parameters are shared, not copied) and holds the two seeded experiments of Q6:

- :func:`diagonal_max_rates`: with ``W_Q = W_K`` the scores ``X W (X W)^T`` form a Gram
  matrix, and a token's largest weight tends to be on itself;
- :func:`train_recall`: one attention layer trained on associative recall
  (:func:`qkv.tasks.associative_recall`), untied or with a tie, same budget.

Used in: Q6 (chapters/attention/q06_keys_equal_values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.attention import MultiHeadAttention
from qkv.data import N_SPECIAL, PAD_ID, RecallBatch, associative_recall
from qkv.train import History, TrainConfig, train

__all__ = [
    "TIES",
    "tie_projections",
    "diagonal_max_rate",
    "diagonal_max_rates",
    "Recall",
    "train_recall",
]

#: The three variants compared in Q6.
TIES = ("untied", "W_K = W_V", "W_Q = W_K")


def tie_projections(mha: MultiHeadAttention, tie: str) -> MultiHeadAttention:
    """Tie two projections of ``mha`` in place and return it.

    ``"W_K = W_V"`` computes the values with the key projection, ``"W_Q = W_K"`` the keys
    with the query projection (bias included); ``"untied"`` changes nothing.
    Used in: Q6.
    """
    if tie not in TIES:
        raise ValueError(f"tie must be one of {TIES}, got {tie!r}")
    if tie == "W_K = W_V":
        mha.w_v = mha.w_k
    elif tie == "W_Q = W_K":
        mha.w_k = mha.w_q
    return mha


def diagonal_max_rate(mha: MultiHeadAttention, x: Tensor) -> float:
    """Share of (sequence, head, token) rows of self-attention over ``x (B, n, d_model)``
    whose largest weight is on the token itself."""
    with torch.no_grad():
        _, weights = mha(x, need_weights=True)  # (B, h, n, n)
    diagonal = torch.arange(x.shape[1], device=x.device)
    return (weights.argmax(-1) == diagonal).float().mean().item()


def diagonal_max_rates(
    seed: int, *, d_model: int = 32, heads: tuple[int, ...] = (1, 4, 8), n: int = 16
) -> dict[int, tuple[float, float]]:
    """:func:`diagonal_max_rate` of an untied and a ``W_Q = W_K`` layer at initialisation.

    200 sequences of ``n`` random tokens; for each head count, two freshly initialised
    :class:`qkv.attention.MultiHeadAttention` layers of width ``d_model``, the second
    tied. ``seed`` fixes the tokens and the initialisation.

    Returns:
        ``{d_k: (untied rate, tied rate)}`` with ``d_k = d_model // heads``.
    Used in: Q6.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(200, n, d_model, generator=g)  # (B, n, d_model)
    torch.manual_seed(seed)  # the initialisation
    rates = {}
    for h in heads:
        untied, tied = MultiHeadAttention(d_model, h), MultiHeadAttention(d_model, h)
        tie_projections(tied, "W_Q = W_K")
        rates[d_model // h] = (diagonal_max_rate(untied, x), diagonal_max_rate(tied, x))
    return rates


class Recall(nn.Module):
    """Token + previous-token embeddings, one single-head attention read-out, a classifier.

    The position of value ``v_j`` then carries both ``v_j`` (the content) and "preceded
    by ``k_j``" (the address); the last position (the query key) is the only query.
    ``tie`` is one of ``TIES``. Used in: Q6.
    """

    def __init__(self, vocab_size: int, tie: str, d_model: int = 12) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.previous = nn.Embedding(vocab_size, d_model)
        self.attention = tie_projections(MultiHeadAttention(d_model, n_heads=1), tie)
        self.readout = nn.Linear(d_model, vocab_size)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, V)`` for the queried value, and the weights ``(B, 1, 1, L)``."""
        before = F.pad(ids[:, :-1], (1, 0), value=PAD_ID)  # (B, L): the token to the left
        x = self.token(ids) + self.previous(before)  # (B, L, d_model)
        out, weights = self.attention(x[:, -1:], x, need_weights=True)  # query: the last
        return self.readout(out[:, 0]), weights  # (B, 1, d_model) -> (B, V)


def train_recall(
    tie: str,
    *,
    seed: int = 0,
    steps: int = 500,
    d_model: int = 12,
    n_pairs: int = 8,
    n_symbols: int = 24,
    device: str | torch.device | None = None,
) -> History:
    """Train a :class:`Recall` model on associative recall; return its history.

    ``n_pairs`` key-value pairs per row, ``n_symbols`` possible keys and values; AdamW
    (lr 3e-3) on ``steps`` batches of 128 rows; ``seed`` fixes the initialisation and
    the batches. Every 25 steps the history records, on 2000 held-out rows (seed
    12345), ``"accuracy"`` and ``"self_weight"`` (the query's weight on itself).
    Used in: Q6.
    """
    vocab_size = N_SPECIAL + 2 * n_symbols

    def batch_fn(step: int, generator: torch.Generator) -> RecallBatch:
        return associative_recall(
            128, n_pairs, n_keys=n_symbols, n_values=n_symbols, generator=generator
        )

    def loss_fn(model: Recall, batch: RecallBatch) -> Tensor:
        return F.cross_entropy(model(batch.inputs)[0], batch.target)

    def metric_fn(model: Recall, batch: RecallBatch) -> dict[str, Tensor]:
        logits, weights = model(batch.inputs)  # weights (B, 1, 1, L)
        accuracy = (logits.argmax(-1) == batch.target).float().mean()
        return {"accuracy": accuracy, "self_weight": weights[:, 0, 0, -1].mean()}

    held_out = associative_recall(
        2000, n_pairs, n_keys=n_symbols, n_values=n_symbols, generator=12345
    )
    torch.manual_seed(seed)  # the initialisation
    model = Recall(vocab_size, tie, d_model)
    config = TrainConfig(steps=steps, lr=3e-3, log_every=25, seed=seed, device=device)
    return train(model, batch_fn, loss_fn, config, metric_fn=metric_fn, eval_batch=held_out)
