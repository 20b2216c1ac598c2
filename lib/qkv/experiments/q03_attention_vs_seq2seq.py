"""Q3, Attention vs the classic Seq2Seq model (chapters/attention/q03_attention_vs_seq2seq).

Two GRU encoder-decoders (:class:`qkv.seq2seq.Seq2Seq`) that differ only in the
context vector, one fixed ``c`` or Bahdanau attention's ``c_i``, are trained on the
digit-string task of :func:`qkv.tasks.digit_seq2seq` (copy or reverse 1 to 12 digits)
with the same budget and seed (:func:`train_digit_model`), then decoded greedily on
held-out strings (:func:`digit_accuracy`); :func:`reversal_alignment` reads the
attention model's weights against the reversal's anti-diagonal. :func:`digit_run`
does all of it for one model as a function of the seed, so the chapter and
``benchmarks/robustness.py`` run the same experiment; :func:`digit_runs` measures one
training after several budgets (the chapter's 100- and 400-step classic models).
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

import qkv
from qkv.experiments import Claim, claims, experiment
from qkv.seq2seq import Seq2Seq, Seq2SeqConfig
from qkv.tasks import DIGIT_VOCAB_SIZE, Seq2SeqBatch, digit_seq2seq
from qkv.train import History, TrainConfig, train

__all__ = [
    "MAX_LEN",
    "STEPS",
    "digit_loss",
    "train_digit_model",
    "digit_accuracy",
    "reversal_alignment",
    "DigitRun",
    "digit_run",
    "digit_runs",
    "CLAIMS",
]

MAX_LEN = 12  # sources have 1 to 12 digits
STEPS = 100  # the chapter's budget: 100 AdamW steps of 128 strings
NARROW = 8  # d_hidden of the narrow models: c holds 2 * 8 = 16 numbers
NARROW_STEPS = 400  # the narrow classic model gets four times the budget in the chapter
SEEDS, LONG_SEEDS = tuple(range(5)), (0, 1, 2)


def digit_loss(model: Seq2Seq, batch: Seq2SeqBatch) -> Tensor:
    """Teacher-forced cross-entropy per real target token of a :class:`qkv.tasks.Seq2SeqBatch`.

    The decoder reads ``tgt[:, :-1]`` (``BOS`` first) and predicts ``tgt[:, 1:]``;
    padding is ignored.
    """
    src, tgt, lengths = batch
    logits, _ = model(src, lengths, tgt[:, :-1])  # (B, n, V)
    return F.cross_entropy(
        logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=model.config.pad_id
    )


@experiment
def train_digit_model(
    *,
    attention: bool,
    task: str = "reverse",
    steps: int = STEPS,
    seed: int = 0,
    max_len: int = MAX_LEN,
    d_hidden: int = 32,
    device: str | torch.device | None = None,
) -> tuple[Seq2Seq, History]:
    """Train a :class:`qkv.seq2seq.Seq2Seq` on random digit strings of 1 to ``max_len`` digits.

    ``seed`` fixes the initialisation and the training batches: ``steps`` updates of
    AdamW (lr 0.01, gradients clipped to norm 1) on 128 fresh strings each, with
    teacher forcing (:func:`digit_loss`). ``task`` is ``"reverse"`` or ``"copy"``
    (:func:`qkv.tasks.digit_seq2seq`); embeddings have width 16, GRU states
    ``d_hidden`` (the fixed vector ``c`` has ``2 * d_hidden`` numbers). It runs on one
    torch thread and leaves the caller's random state alone (:func:`qkv.experiments.experiment`).

    Returns:
        the trained model (on ``device``, default :func:`qkv.device`) and its
        :class:`qkv.train.History` (loss every 10 steps).
    """
    [(model, history)] = _train_through((steps,), attention, task, seed, max_len, d_hidden, device)
    return model, history


def _train_through(
    budgets: tuple[int, ...],
    attention: bool,
    task: str,
    seed: int,
    max_len: int,
    d_hidden: int,
    device: str | torch.device | None,
) -> Iterator[tuple[Seq2Seq, History]]:
    """Train one model and yield it (the same object) and its history at each budget.

    The run goes on from one budget to the next with the same AdamW state and the same
    stream of batches, at a constant learning rate, so the model yielded at 100 steps is
    the one a 100-step run ends with, and the one at 400 the one a 400-step run ends with.
    """
    if not budgets or any(b <= a for a, b in itertools.pairwise((0, *budgets))):
        raise ValueError(f"budgets must be increasing step counts >= 1, got {budgets}")
    torch.manual_seed(seed)  # the initialisation (restored on exit by @experiment)
    config = Seq2SeqConfig(DIGIT_VOCAB_SIZE, d_embedding=16, d_hidden=d_hidden, attention=attention)
    model = Seq2Seq(config).to(qkv.device() if device is None else torch.device(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    stream = torch.Generator().manual_seed(seed)  # the batches, continued across budgets

    def batch_fn(step: int, generator: torch.Generator) -> Seq2SeqBatch:
        # `stream` rather than `train`'s own generator (seeded alike), which restarts each call
        return digit_seq2seq(128, min_len=1, max_len=max_len, task=task, generator=stream)

    history, done = History(), 0
    for steps in budgets:
        train_config = TrainConfig(
            steps=steps - done, lr=1e-2, grad_clip=1.0, log_every=10, seed=seed, device=device
        )
        part = train(model, batch_fn, digit_loss, train_config, optimizer=optimizer)
        history = _joined(history, part, done)
        done = steps
        yield model, history


def _joined(history: History, part: History, offset: int) -> History:
    """``history`` followed by ``part``, whose steps and seconds start after ``history``'s."""
    seconds = history.seconds[-1] if history.seconds else 0.0
    return History(
        step=history.step + [offset + step for step in part.step],
        loss=history.loss + part.loss,
        grad_norm=history.grad_norm + part.grad_norm,
        lr=history.lr + part.lr,
        seconds=history.seconds + [seconds + t for t in part.seconds],
        diverged=part.diverged,
    )


@experiment
def digit_accuracy(
    model: Seq2Seq, *, task: str = "reverse", max_len: int = MAX_LEN, n_strings: int = 200
) -> list[float]:
    """Fraction of target digits right under greedy decoding, per source length.

    For each length ``L = 1 .. max_len``, ``n_strings`` held-out strings (the same
    digits for both tasks and every call: seed ``10_000 + L``) are decoded
    greedily for ``L + 1`` steps, each step fed the model's own previous output.

    Returns:
        ``max_len`` accuracies, entry ``L - 1`` for length ``L``.
    """
    device = next(model.parameters()).device
    accuracy = []
    for length in range(1, max_len + 1):
        batch = digit_seq2seq(
            n_strings, min_len=length, max_len=length, task=task, generator=10_000 + length
        )
        src, tgt, n = (t.to(device) for t in batch)
        tokens, _ = model.eval().greedy_decode(src, n, max_steps=length + 1)
        accuracy.append((tokens[:, :length] == tgt[:, 1 : length + 1]).float().mean().item())
    return accuracy


@experiment
def reversal_alignment(
    model: Seq2Seq, *, length: int = MAX_LEN, n_strings: int = 200
) -> tuple[Tensor, float, float]:
    """How closely an attention model's weights follow the reversal's anti-diagonal.

    The model reads ``n_strings`` held-out strings of ``length`` digits (the same as
    :func:`digit_accuracy`'s) with teacher forcing, so that row ``i`` of the weights
    belongs to output digit ``i``; output ``i`` should read source position
    ``length - 1 - i`` (the mirrored digit).

    Returns:
        the weights ``(n_strings, length + 1, length)`` (the last row is the ``EOS``
        step), the mean weight on the mirrored digit, and the share of output digits
        whose largest weight is on it.
    Used in: Q3.
    """
    if model.decoder.attention is None:
        raise ValueError("reversal_alignment needs a model built with attention=True")
    device = next(model.parameters()).device
    batch = digit_seq2seq(n_strings, min_len=length, max_len=length, generator=10_000 + length)
    src, tgt, n = (t.to(device) for t in batch)
    with torch.no_grad():
        _, weights = model.eval()(src, n, tgt[:, :-1])  # (B, length + 1, length)
    steps = torch.arange(length, device=device)
    mirror = length - 1 - steps  # output i reads source length - 1 - i
    alpha = weights[:, :length]  # (B, length, length): drop the EOS step
    on_mirror = alpha[:, steps, mirror]  # (B, length)
    argmax_rate = (alpha.argmax(-1) == mirror).float().mean().item()
    return weights, on_mirror.mean().item(), argmax_rate


class DigitRun(NamedTuple):
    """One trained model and what the chapter measures on it."""

    model: Seq2Seq
    history: History
    accuracy: list[float]  # digits right per source length 1 .. MAX_LEN

    @property
    def short(self) -> float:
        """Mean accuracy at 1 to 3 digits."""
        return sum(self.accuracy[:3]) / 3

    @property
    def long(self) -> float:
        """Mean accuracy at the three longest lengths (10 to 12 digits)."""
        return sum(self.accuracy[-3:]) / 3


@experiment
def digit_run(
    seed: int,
    *,
    attention: bool,
    task: str = "reverse",
    steps: int = STEPS,
    d_hidden: int = 32,
    device: str | torch.device | None = None,
) -> DigitRun:
    """Train one model (:func:`train_digit_model`) and measure its accuracy per length.

    Used in: Q3.
    """
    [run] = digit_runs(
        seed, attention=attention, task=task, budgets=(steps,), d_hidden=d_hidden, device=device
    )
    return run


@experiment
def digit_runs(
    seed: int,
    *,
    attention: bool,
    task: str = "reverse",
    budgets: tuple[int, ...] = (STEPS, NARROW_STEPS),
    d_hidden: int = 32,
    device: str | torch.device | None = None,
) -> tuple[DigitRun, ...]:
    """:func:`digit_run` for each of ``budgets`` (increasing step counts), from one training.

    The run to 400 steps passes through the run to 100 (same seed, batches and AdamW
    state, constant learning rate), so it is measured on the way instead of trained
    twice; each :class:`DigitRun` holds its own copy of the model.

    Used in: Q3.
    """
    runs = []
    trained = _train_through(budgets, attention, task, seed, MAX_LEN, d_hidden, device)
    for model, history in trained:
        accuracy = digit_accuracy(model, task=task)
        runs.append(DigitRun(copy.deepcopy(model), history, accuracy))
    return tuple(runs)


@functools.cache
def _measured(
    seed: int, attention: bool, task: str, steps: int, d_hidden: int = 32
) -> tuple[float, float, float, float]:
    """(accuracy at 10-12 digits, at 1-3 digits, mirror weight, mirror argmax rate) of one
    run on the CPU."""
    run = digit_run(seed, attention=attention, task=task, steps=steps, d_hidden=d_hidden)
    if not attention:
        return run.long, run.short, float("nan"), float("nan")
    _, on_mirror, argmax_rate = reversal_alignment(run.model)
    return run.long, run.short, on_mirror, argmax_rate


def _long(seed: int, attention: bool, task: str, steps: int, d_hidden: int = 32) -> float:
    return _measured(seed, attention, task, steps, d_hidden)[0]


CLAIMS = claims(
    Claim(
        "q03-short-strings-solved",
        "100 steps, all three models: lowest accuracy at 1–3 digits",
        lambda seed: min(
            _measured(seed, attention, task, STEPS)[1]
            for attention, task in [(False, "reverse"), (False, "copy"), (True, "reverse")]
        ),
        ">",
        0.95,
        SEEDS,
    ),
    Claim(
        "q03-classic-degrades",
        "classic model, reversal, 100 steps: digit accuracy at 10–12 digits",
        lambda seed: _long(seed, False, "reverse", 100),
        "<",
        0.6,
        SEEDS,
    ),
    Claim(
        "q03-copy-as-hard-as-reverse",
        "classic model, 100 steps: copy vs reverse, absolute difference at 10–12 digits",
        lambda seed: abs(_long(seed, False, "copy", 100) - _long(seed, False, "reverse", 100)),
        "<",
        0.03,
        SEEDS,
    ),
    Claim(
        "q03-attention-gap",
        "reversal, 100 steps: attention − classic accuracy at 10–12 digits",
        lambda seed: _long(seed, True, "reverse", 100) - _long(seed, False, "reverse", 100),
        ">",
        0.4,
        SEEDS,
    ),
    Claim(
        "q03-mirror-weight",
        "attention model, 12-digit reversal: mean weight on the mirrored digit",
        lambda seed: _measured(seed, True, "reverse", 100)[2],
        ">",
        0.3,
        SEEDS,
    ),
    Claim(
        "q03-mirror-argmax",
        "attention model, 12-digit reversal: share of steps whose top weight is the mirror",
        lambda seed: _measured(seed, True, "reverse", 100)[3],
        ">",
        0.5,
        SEEDS,
    ),
    Claim(
        "q03-narrow-classic-400-steps",
        "d_hidden = 8 (c: 16 numbers), classic, reversal, 400 steps: accuracy at 10–12 digits",
        lambda seed: _long(seed, False, "reverse", NARROW_STEPS, NARROW),
        "<",
        0.4,
        SEEDS,
    ),
    Claim(
        "q03-width-gap-400-steps",
        "classic, reversal, 400 steps: d_hidden = 32 − d_hidden = 8, accuracy at 10–12 digits",
        lambda seed: (
            _long(seed, False, "reverse", NARROW_STEPS)
            - _long(seed, False, "reverse", NARROW_STEPS, NARROW)
        ),
        ">",
        0.15,
        SEEDS,
    ),
    Claim(
        "q03-classic-400-steps",
        "classic model, reversal, 400 steps (page only): accuracy at 10–12 digits",
        lambda seed: _long(seed, False, "reverse", 400),
        ">",
        0.4,
        LONG_SEEDS,
    ),
    Claim(
        "q03-classic-1500-steps",
        "classic model, reversal, 1500 steps (page only): accuracy at 10–12 digits",
        lambda seed: _long(seed, False, "reverse", 1500),
        ">",
        0.6,
        LONG_SEEDS,
    ),
    Claim(
        "q03-gap-1500-steps",
        "reversal, 1500 steps each (page only): attention − classic at 10–12 digits",
        lambda seed: _long(seed, True, "reverse", 1500) - _long(seed, False, "reverse", 1500),
        ">",
        0.1,
        LONG_SEEDS,
    ),
    Claim(
        "q03-narrow-classic-1500-steps",
        "d_hidden = 8 (c: 16 numbers), classic, reversal, 1500 steps (page only): "
        "accuracy at 10–12 digits",
        lambda seed: _long(seed, False, "reverse", 1500, NARROW),
        "<",
        0.5,
        LONG_SEEDS,
    ),
    Claim(
        "q03-narrow-gap-1500-steps",
        "d_hidden = 8, reversal, 1500 steps each (page only): attention − classic at 10–12 digits",
        lambda seed: (
            _long(seed, True, "reverse", 1500, NARROW) - _long(seed, False, "reverse", 1500, NARROW)
        ),
        ">",
        0.4,
        LONG_SEEDS,
    ),
)
