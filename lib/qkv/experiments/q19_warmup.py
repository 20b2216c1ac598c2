"""Q19 (bert/q19_warmup): what warm-up does for Adam and for a Post-LN Transformer.

- :func:`first_step`: the size of the first update of ``torch.optim.Adam``, of SGD and
  of BERT's released optimiser (:func:`bert_adam_step`: no bias correction, decoupled
  weight decay), per parameter entry, relative to the learning rate.
- :func:`train_markov_lm`: train a :class:`qkv.stack.TransformerStack` language model
  on :func:`markov_language` with the Transformer's Adam (beta2 = 0.98, eps = 1e-9;
  Vaswani et al. 2017 §5.3), a linear warm-up of ``warmup_steps`` then a constant rate;
  optionally with label smoothing and a small fixed training set. Q22 (Post-LN vs
  Pre-LN) and Q24 (label smoothing) train with this same function, so the chapters
  compare the same runs.
- :func:`warmup_run`: the chapter's three runs at lr 1e-2 (Post-LN with and without
  warm-up, Pre-LN without), and their claims.
- :func:`entropy_floors`: the two reference losses of the language, what a model that
  knows only word frequencies gets, and what the best possible model gets.
"""

from __future__ import annotations

import functools
import math
from typing import cast

import torch
from torch import Tensor

from qkv._checks import check_int
from qkv.experiments import Claim, claims, experiment
from qkv.markov import MarkovLanguage
from qkv.stack import TransformerStack, next_token_loss
from qkv.train import History, TrainConfig, train
from qkv.warmup import lambda_lr, linear_warmup_constant

__all__ = [
    "CLAIMS",
    "LR",
    "WARMUP_STEPS",
    "bert_adam_step",
    "entropy_floors",
    "final_loss",
    "first_step",
    "markov_language",
    "train_markov_lm",
    "warmup_run",
]

LR = 1e-2  # high for this model: Post-LN without warm-up stalls at it
WARMUP_STEPS = 60  # the first half of 120 steps
RUNS = {  # the chapter's three runs: label -> (norm_first, warmup_steps)
    "Post-LN, no warm-up": (False, 0),
    f"Post-LN, {WARMUP_STEPS} warm-up steps": (False, WARMUP_STEPS),
    "Pre-LN, no warm-up": (True, 0),
}


def markov_language() -> MarkovLanguage:
    """The language every run here learns: 20 words, 3 successors each (fixed chain)."""
    return MarkovLanguage(20, branching=3, seed=0)


def train_markov_lm(
    seed: int,
    *,
    norm_first: bool,
    warmup_steps: int = 0,
    lr: float = LR,
    steps: int = 120,
    n_layers: int = 6,
    d_model: int = 32,
    label_smoothing: float = 0.0,
    n_train: int | None = None,
    batch_size: int = 32,
    length: int = 17,
) -> tuple[TransformerStack, History]:
    """Train a :class:`~qkv.stack.TransformerStack` language model on :func:`markov_language`.

    Adam with the Transformer's ``betas=(0.9, 0.98)``, ``eps=1e-9`` (Vaswani et
    al. 2017 §5.3), learning rate ``lr`` reached by a linear warm-up over
    ``warmup_steps`` (0 = none) and then held constant, so that only the
    warm-up differs between runs. ``n_heads = 4``, ``d_ff = 4 * d_model``.
    Call it inside :func:`qkv.reproducible` (or an :func:`~qkv.experiments.experiment`)
    for numbers that do not depend on the thread count.

    Args:
        seed: fixes the initialisation, the data and the dropout masks.
        norm_first: Pre-LN when True, Post-LN when False.
        label_smoothing: epsilon of the training loss (Q24).
        n_train: train on this many fixed sequences (full batch every step);
            ``None`` = a fresh batch of ``batch_size`` sequences every step.
        length: tokens per sequence (``length - 1`` predictions).
    Returns:
        the trained model and its :class:`~qkv.train.History` (every step logged).
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


@experiment
def warmup_run(seed: int, label: str) -> History:
    """One of the chapter's runs (a key of ``RUNS``), 6 layers at lr 1e-2 for 120 steps.

    Used in: Q19, Q22.
    """
    if label not in RUNS:
        raise ValueError(f"label must be one of {sorted(RUNS)}, got {label!r}")
    norm_first, warmup_steps = RUNS[label]
    return train_markov_lm(seed, norm_first=norm_first, warmup_steps=warmup_steps)[1]


@functools.cache
def _final(seed: int, label: str) -> float:
    return final_loss(warmup_run(seed, label))


def warmup_gain(seed: int) -> float:
    """Post-LN: final loss without warm-up minus with it (nats)."""
    with_warmup = f"Post-LN, {WARMUP_STEPS} warm-up steps"
    return _final(seed, "Post-LN, no warm-up") - _final(seed, with_warmup)


def pre_ln_gain(seed: int) -> float:
    """No warm-up: final loss of Post-LN minus Pre-LN (nats)."""
    return _final(seed, "Post-LN, no warm-up") - _final(seed, "Pre-LN, no warm-up")


def entropy_floors() -> dict[str, float]:
    """Two reference losses (nats per token) of :func:`markov_language`'s next-token task.

    ``unigram``: the entropy of the next word's marginal distribution, the loss of a
    model that knows how often each word occurs but ignores the context; ``bayes``:
    the conditional entropy H(next | previous) under the chain's stationary mix of
    previous words as the training data has it, the loss of the true chain (no model
    can do better on average). Both are computed exactly from the transition matrix,
    averaged over positions 1..16 of a sequence whose first word is uniform (the
    training sequences of :func:`train_markov_lm`).  Used in: Q19, Q22.
    """
    lang = markov_language()
    p = torch.full((lang.n_words,), 1.0 / lang.n_words, dtype=torch.float64)
    transition = lang.transition.double()
    marginal = torch.zeros_like(p)
    conditional = 0.0
    row_entropy = -(transition * transition.clamp_min(1e-300).log()).sum(dim=1)  # (n_words,)
    for _ in range(16):  # predictions 1..16 of a 17-token sequence
        conditional += float(p @ row_entropy)
        p = p @ transition
        marginal += p
    marginal /= 16
    unigram = -float((marginal * marginal.clamp_min(1e-300).log()).sum())
    return {"unigram": unigram, "bayes": conditional / 16}


def bert_adam_step(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    lr: float,
    *,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 0.01,
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of BERT's released ``AdamWeightDecayOptimizer``: ``(param, m, v)`` new.

    As in ``optimization.py`` of google-research/bert: the moments are updated as in
    Adam but **not** bias-corrected, ``update = m / (sqrt(v) + eps)``; the weight decay
    is added to the update outside the adaptive step (decoupled, as in AdamW),
    ``update += weight_decay * param``; then ``param -= lr * update``. (BERT leaves
    LayerNorm weights and biases out of the decay: pass ``weight_decay=0`` for them.)
    """
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    update = m / (v.sqrt() + eps) + weight_decay * param
    return param - lr * update, m, v


@experiment
def first_step(seed: int, optimizer: str, loss_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """``|Δθ| / lr`` of every parameter entry after one update, and the gradient.

    A 2-layer Post-LN :class:`~qkv.stack.TransformerStack` (float64, so that tiny
    SGD steps are not rounded away) on 16 sequences of :func:`markov_language`, loss
    multiplied by ``loss_scale``, learning rate 1e-3. ``optimizer``: ``"Adam"``
    (``torch.optim.Adam``, BERT's betas, bias-corrected), ``"SGD"``, or ``"BERT"``
    (:func:`bert_adam_step`, weight decay 0.01 on matrices only, as BERT's code).
    Returns ``(ratio, grad)``, both flat over all parameters. Used in: Q19.
    """
    lr = 1e-3
    lang = markov_language()
    ids = lang.sample(16, 17, generator=seed)
    torch.manual_seed(seed)
    model = TransformerStack(lang.vocab_size, 32, 4, 128, 2, norm_first=False).double()
    params = list(model.named_parameters())
    before = torch.cat([p.detach().flatten() for _, p in params]).clone()
    (loss_scale * next_token_loss(model, ids)).backward()
    # torch types .grad as Optional; backward() gave every parameter of this model one
    grads = [cast(Tensor, p.grad) for _, p in params]
    grad = torch.cat([g.flatten() for g in grads])
    if optimizer in ("Adam", "SGD"):
        opt: torch.optim.Optimizer = (
            torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
            if optimizer == "Adam"
            else torch.optim.SGD(model.parameters(), lr=lr)
        )
        opt.step()
    elif optimizer == "BERT":
        with torch.no_grad():
            for (name, p), g in zip(params, grads, strict=True):
                decay = 0.0 if p.dim() < 2 or "norm" in name else 0.01  # LN and biases excluded
                zeros = torch.zeros_like(p)
                p.copy_(bert_adam_step(p, g, zeros, zeros, lr, weight_decay=decay)[0])
    else:
        raise ValueError(f"optimizer must be 'Adam', 'SGD' or 'BERT', got {optimizer!r}")
    after = torch.cat([p.detach().flatten() for _, p in params])
    return (after - before).abs() / lr, grad


CLAIMS = claims(
    Claim(
        "q19-warmup-rescues-post-ln",
        "6-layer Post-LN at lr 1e-2: final loss without warm-up minus with 60 warm-up steps (nats)",
        warmup_gain,
        ">",
        0.3,
        seeds=tuple(range(5)),
    ),
    Claim(
        "q19-pre-ln-needs-no-warmup",
        "lr 1e-2, no warm-up: final loss of Post-LN minus Pre-LN (nats)",
        pre_ln_gain,
        ">",
        0.8,
        seeds=tuple(range(5)),
    ),
    Claim(
        "q19-post-ln-stalls-at-unigram",
        "lr 1e-2, no warm-up: |final loss of Post-LN minus the word-frequency entropy| (nats)",
        lambda seed: abs(_final(seed, "Post-LN, no warm-up") - entropy_floors()["unigram"]),
        "<",
        0.1,
        seeds=tuple(range(5)),
    ),
)

# The bias-correction factor of Adam's first step that BERT's optimiser lacks.
BERT_FIRST_STEP = (1 - 0.9) / math.sqrt(1 - 0.999)  # about 3.16 times the learning rate
