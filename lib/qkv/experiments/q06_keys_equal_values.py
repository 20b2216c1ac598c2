"""Q6 (chapters/attention/q06_keys_equal_values): keys equal values, and other ties.

Classic attention reads the same encoder states as keys and values (``k = v``); a
Transformer layer computes ``K = X W_K`` and ``V = X W_V`` with two matrices. This
module ties them by module surgery (one ``nn.Linear`` under two names, so the
parameters are shared, not copied) and holds the seeded experiments of Q6:

- :func:`diagonal_max_rates`: with ``W_Q = W_K`` the scores ``X W (X W)^T`` form a Gram
  matrix, and a token's largest weight tends to be on itself;
- :func:`train_recall`: one attention layer trained on associative recall
  (:func:`qkv.tasks.associative_recall`), untied or with a tie, same budget, with one
  full-width head (:func:`recall`) or three heads of ``d_k = 4`` (:func:`recall_narrow`).

The chapter writes row vectors, ``K = X W_K``; ``nn.Linear`` stores the transposed
weights (``(out, in)``), so formulas in the code read in the transposed order.

``CLAIMS`` holds the chapter's seed-dependent claims; ``benchmarks/robustness.py``
reruns them over their seeds.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.attention import MultiHeadAttention
from qkv.experiments import Claim, claims, experiment
from qkv.tasks import N_SPECIAL, PAD_ID, RecallBatch, associative_recall
from qkv.train import History, TrainConfig, train

__all__ = [
    "TIES",
    "tie_projections",
    "diagonal_max_rate",
    "diagonal_max_rates",
    "Recall",
    "train_recall",
    "tied_equivalent",
    "tie_gap",
    "reparametrisation_gap",
    "absorption_error",
    "recall",
    "recall_narrow",
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


@experiment
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
    """Token + previous-token embeddings, one attention read-out, a classifier.

    The position of value ``v_j`` then carries both ``v_j`` (the content) and "preceded
    by ``k_j``" (the address); the last position (the query key) is the only query.
    ``tie`` is one of ``TIES``; ``n_heads`` heads of ``d_k = d_model / n_heads``.
    Used in: Q6.
    """

    def __init__(self, vocab_size: int, tie: str, d_model: int = 12, n_heads: int = 1) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.previous = nn.Embedding(vocab_size, d_model)
        self.attention = tie_projections(MultiHeadAttention(d_model, n_heads), tie)
        self.readout = nn.Linear(d_model, vocab_size)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, V)`` for the queried value, and the weights ``(B, h, 1, L)``."""
        before = F.pad(ids[:, :-1], (1, 0), value=PAD_ID)  # (B, L): the token to the left
        x = self.token(ids) + self.previous(before)  # (B, L, d_model)
        out, weights = self.attention(x[:, -1:], x, need_weights=True)  # query: the last
        return self.readout(out[:, 0]), weights  # (B, 1, d_model) -> (B, V)


@experiment
def train_recall(
    tie: str,
    *,
    seed: int = 0,
    steps: int = 500,
    d_model: int = 12,
    n_heads: int = 1,
    n_pairs: int = 8,
    n_symbols: int = 24,
    device: str | torch.device | None = None,
) -> tuple[History, Recall]:
    """Train a :class:`Recall` model on associative recall; return its history and the model.

    ``n_pairs`` key-value pairs per row, ``n_symbols`` possible keys and values; AdamW
    (lr 3e-3) on ``steps`` batches of 128 rows; ``seed`` fixes the initialisation and
    the batches. Every 25 steps the history records, on 2000 held-out rows (seed
    12345), ``"accuracy"`` and ``"self_weight"`` (the query's weight on itself, mean
    over heads).
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
        logits, weights = model(batch.inputs)  # weights (B, h, 1, L)
        accuracy = (logits.argmax(-1) == batch.target).float().mean()
        return {"accuracy": accuracy, "self_weight": weights[:, :, 0, -1].mean()}

    held_out = associative_recall(
        2000, n_pairs, n_keys=n_symbols, n_values=n_symbols, generator=12345
    )
    torch.manual_seed(seed)  # the initialisation
    model = Recall(vocab_size, tie, d_model, n_heads)
    config = TrainConfig(steps=steps, lr=3e-3, log_every=25, seed=seed, device=device)
    history = train(model, batch_fn, loss_fn, config, metric_fn=metric_fn, eval_batch=held_out)
    return history, model


def tied_equivalent(model: Recall) -> Recall:
    """A ``W_K = W_V`` copy of an untied one-head :class:`Recall` that computes the same logits.

    At ``d_k = d_model`` the key projection ``W_K`` is (generically) invertible, so the
    values ``V = X W_V^T + b_V`` are an affine function of the keys:
    ``V = (K - b_K) M^T + b_V`` with ``M = W_V W_K^{-1}``. The attention weights sum to
    one, so the constant passes through the weighted sum, and ``W_O`` absorbs the rest:
    ``W_O' = W_O M``, ``b_O' = b_O + W_O (b_V - M b_K)``. (These are ``nn.Linear``'s
    ``(out, in)`` weights; in the chapter's row-vector convention, ``K = X W_K``, the same
    map reads ``W_O' = W_K^{-1} W_V W_O``.) The copy reads its values with ``W_K``; the
    embeddings, ``W_Q`` and the classifier are copied unchanged.
    Raises ``ValueError`` for several heads (then ``d_k < d_model`` and no such ``M``
    exists in general).
    """
    att = model.attention
    if att.n_heads != 1 or att.w_v is att.w_k or att.w_k is att.w_q:
        raise ValueError("tied_equivalent needs an untied one-head Recall (d_k = d_model)")
    d_model = att.d_model
    vocab_size = model.token.num_embeddings
    tied = Recall(vocab_size, "W_K = W_V", d_model)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("attention.w_v")}
    with torch.no_grad():
        w_k, b_k = att.w_k.weight.double(), att.w_k.bias.double()  # (d, d), (d,)
        w_v, b_v = att.w_v.weight.double(), att.w_v.bias.double()
        w_o, b_o = att.w_o.weight.double(), att.w_o.bias.double()
        m = torch.linalg.solve(w_k, w_v, left=False)  # M = W_V W_K^{-1}
        state["attention.w_o.weight"] = (w_o @ m).to(att.w_o.weight.dtype)
        state["attention.w_o.bias"] = (b_o + w_o @ (b_v - m @ b_k)).to(att.w_o.bias.dtype)
    tied.load_state_dict(state, strict=False)
    return tied.to(att.w_o.weight.device)


def tie_gap(model: Recall, *, n_pairs: int = 8, n_symbols: int = 24) -> dict[str, float]:
    """Compare an untied one-head :class:`Recall` with its :func:`tied_equivalent`.

    On the 2000 held-out rows of :func:`train_recall`: ``"logit_gap"``, the largest
    absolute difference of their logits, and the two accuracies (``"untied"``,
    ``"tied"``). Used in: Q6.
    """
    held_out = associative_recall(
        2000, n_pairs, n_keys=n_symbols, n_values=n_symbols, generator=12345
    )
    inputs = held_out.inputs.to(model.token.weight.device)
    target = held_out.target.to(inputs.device)
    model.eval()
    with torch.no_grad():
        logits, tied_logits = model(inputs)[0], tied_equivalent(model).eval()(inputs)[0]
    return {
        "logit_gap": (logits - tied_logits).abs().max().item(),
        "untied": (logits.argmax(-1) == target).float().mean().item(),
        "tied": (tied_logits.argmax(-1) == target).float().mean().item(),
    }


@experiment
def reparametrisation_gap(seed: int) -> float:
    """:func:`tie_gap`'s ``"logit_gap"`` for the untied model of :func:`train_recall`
    (seed ``seed``, 500 steps, ``d_model = d_k = 12``, CPU)."""
    _, model = train_recall("untied", seed=seed, steps=500, device="cpu")
    return tie_gap(model)["logit_gap"]


@experiment
def absorption_error(seed: int, *, d_model: int = 12, n_heads: int = 1, n: int = 17) -> float:
    """How well ``W_O`` absorbs a ``W_K = W_V`` tie in a random layer: relative error.

    A freshly initialised untied :class:`qkv.attention.MultiHeadAttention` (``n_heads``
    heads of ``d_k = d_model / n_heads``) runs on 64 random sequences of ``n`` tokens.
    The tied layer keeps its ``W_Q`` and ``W_K`` (so the same attention weights), reads
    its values with ``W_K``, and gets the best output map ``W_O'`` and bias by least
    squares over all outputs. Returns ``|out_tied - out| / |out|`` (Frobenius norms):
    rounding error when ``d_k = d_model`` (the tie is a change of basis), large when
    ``d_k < d_model`` (each head's value must then live in its key's ``d_k``-dimensional
    subspace). Used in: Q6.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the initialisation
    mha = MultiHeadAttention(d_model, n_heads).double()
    x = torch.randn(64, n, d_model, generator=g, dtype=torch.float64)  # (B, n, d_model)
    with torch.no_grad():
        out, weights = mha(x, need_weights=True)  # weights (B, h, n, n)
        keys = mha.w_k(x).view(64, n, n_heads, mha.d_k).transpose(1, 2)  # (B, h, n, d_k)
        read = (weights @ keys).transpose(1, 2).reshape(64 * n, d_model)  # tied heads' reads
        features = torch.cat([read, torch.ones(64 * n, 1, dtype=read.dtype)], dim=1)
        target = out.reshape(64 * n, d_model)
        fit = torch.linalg.lstsq(features, target).solution  # (d_model + 1, d_model)
        error = (features @ fit - target).norm() / target.norm()
    return error.item()


@functools.cache
def recall(seed: int, steps: int = 500, d_model: int = 12) -> dict[str, tuple[float, float]]:
    """``{tie: (final held-out accuracy, final self weight)}`` of :func:`train_recall`
    for the three variants of ``TIES`` (on the CPU; cached, it backs several claims)."""
    out = {}
    for tie in TIES:
        history, _ = train_recall(tie, seed=seed, steps=steps, d_model=d_model, device="cpu")
        out[tie] = (history.metrics["accuracy"][-1], history.metrics["self_weight"][-1])
    return out


@functools.cache
def recall_narrow(seed: int, steps: int = 500) -> dict[str, float]:
    """``{tie: final held-out accuracy}`` of :func:`train_recall` with three heads of
    ``d_k = 4`` (``d_model = 12``), untied and ``W_K = W_V`` (on the CPU; cached, it
    backs two claims)."""
    return {
        tie: train_recall(tie, seed=seed, steps=steps, n_heads=3, device="cpu")[0].metrics[
            "accuracy"
        ][-1]
        for tie in TIES[:2]
    }


def _tie_cost(accuracies: dict[str, float]) -> float:
    return accuracies["untied"] - accuracies["W_K = W_V"]


_DIAGONAL_SEEDS, _RECALL_SEEDS = tuple(range(10)), tuple(range(8))

CLAIMS = claims(
    Claim(
        "q06-diagonal-untied",
        "untied layers: largest share of rows whose max is the diagonal (d_k = 32, 8, 4)",
        lambda seed: max(u for u, _ in diagonal_max_rates(seed).values()),
        "<",
        0.15,
        _DIAGONAL_SEEDS,
    ),
    Claim(
        "q06-diagonal-tied",
        "W_Q = W_K: smallest share of rows whose max is the diagonal (d_k = 32, 8, 4)",
        lambda seed: min(t for _, t in diagonal_max_rates(seed).values()),
        ">",
        0.4,
        _DIAGONAL_SEEDS,
    ),
    Claim(
        "q06-diagonal-tied-wide",
        "W_Q = W_K, d_k = 32: share of rows whose max is the diagonal",
        lambda seed: diagonal_max_rates(seed)[32][1],
        ">",
        0.95,
        _DIAGONAL_SEEDS,
    ),
    Claim(
        "q06-recall-untied",
        "associative recall, 500 steps: untied accuracy",
        lambda seed: recall(seed)["untied"][0],
        ">",
        0.95,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-recall-kv-tied",
        "associative recall, 500 steps: W_K = W_V accuracy",
        lambda seed: recall(seed)["W_K = W_V"][0],
        ">",
        0.5,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-recall-kv-tied-slower",
        "associative recall, 500 steps: untied − W_K = W_V accuracy",
        lambda seed: recall(seed)["untied"][0] - recall(seed)["W_K = W_V"][0],
        ">",
        0.03,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-recall-qk-tied",
        "associative recall, 500 steps: W_Q = W_K accuracy",
        lambda seed: recall(seed)["W_Q = W_K"][0],
        ">",
        0.1,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-self-weight-qk-tied",
        "W_Q = W_K: the query's weight on itself after 500 steps",
        lambda seed: recall(seed)["W_Q = W_K"][1],
        ">",
        0.01,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-self-weight-untied",
        "untied: the query's weight on itself after 500 steps",
        lambda seed: recall(seed)["untied"][1],
        "<",
        0.005,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-recall-qk-tied-slowest",
        "associative recall, 500 steps: lower of the untied and W_K = W_V accuracies − W_Q = W_K",
        lambda seed: (
            min(recall(seed)["untied"][0], recall(seed)["W_K = W_V"][0])
            - recall(seed)["W_Q = W_K"][0]
        ),
        ">",
        0.05,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-recall-narrow-kv-cost",
        "associative recall, 500 steps, three heads of d_k = 4: untied − W_K = W_V accuracy",
        lambda seed: _tie_cost(recall_narrow(seed)),
        ">",
        0.2,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-recall-narrow-costs-more",
        "W_K = W_V accuracy cost (untied − tied), three heads of d_k = 4 minus one head of 12",
        lambda seed: (
            _tie_cost(recall_narrow(seed))
            - _tie_cost({tie: acc for tie, (acc, _) in recall(seed).items()})
        ),
        ">",
        0.15,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-tie-is-reparametrisation",
        "d_k = d_model: largest logit change, trained untied layer rewritten with W_K = W_V",
        reparametrisation_gap,
        "<",
        0.01,
        _RECALL_SEEDS,
    ),
    Claim(
        "q06-absorbed-at-full-width",
        "one head, d_k = d_model = 12: relative error of the best W_O after tying W_K = W_V",
        lambda seed: absorption_error(seed, n_heads=1),
        "<",
        1e-6,
        _DIAGONAL_SEEDS,
    ),
    Claim(
        "q06-not-absorbed-narrow",
        "three heads, d_k = 4 < d_model = 12: relative error of the best W_O after tying W_K = W_V",
        lambda seed: absorption_error(seed, n_heads=3),
        ">",
        0.1,
        _DIAGONAL_SEEDS,
    ),
)
