"""Q17 (bert/q17_cls_token): [CLS] + pooler against mean pooling, on one budget.

BERT puts ``[CLS]`` first in every input; its final hidden state, passed through the
pooler ``tanh(W h_[CLS] + b)``, is the sequence representation that the
next-sentence and classification heads read (Devlin et al. 2019, §3). The
alternative is to average the real tokens' final states
(:func:`qkv.masks.masked_mean`). :class:`SequenceClassifier` puts a linear layer on
either; :func:`train_pooling` trains it from scratch on
:func:`qkv.tasks.sequence_classification` as a function of the seed,
:func:`cls_attention` reads where ``[CLS]`` looks in the last layer, and
:func:`probe_pooled` asks how much of each pooled vector varies between sequences
and whether a linear classifier fitted to convergence can read the label from it.

The chapter's numbers: :func:`runs` (both poolings, fine-tuned and frozen),
:func:`attention_by_token` and :func:`probes`, each on CPU under one torch thread
(:func:`qkv.experiments.experiment`), so the page prints the same numbers whatever
the reader's thread count; ``CLAIMS`` holds their margins.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.bert import Bert, BertConfig
from qkv.experiments import Claim, claims, experiment
from qkv.masks import key_mask, masked_mean
from qkv.tasks import CLS_ID, N_SPECIAL, ClassificationBatch, sequence_classification
from qkv.train import History, TrainConfig, train

__all__ = [
    "POOLINGS",
    "SETTINGS",
    "SequenceClassifier",
    "PoolingRun",
    "train_pooling",
    "accuracy",
    "cls_attention",
    "cls_attention_by_token",
    "Probe",
    "probe_pooled",
    "runs",
    "attention_by_token",
    "probes",
    "CLAIMS",
]

#: The two ways to turn ``(B, L, H)`` token states into ``(B, H)``.
POOLINGS = ("cls", "mean")


class SequenceClassifier(nn.Module):
    """A :class:`qkv.bert.Bert` encoder and a linear classifier over one pooled vector.

    ``pooling="cls"``: BERT's recipe (``BertForSequenceClassification``): the
    pooler output ``tanh(W h_[CLS] + b)``. ``pooling="mean"``: the average of the
    real tokens' final states (padding excluded, ``[CLS]`` included); the pooler
    is then unused.

    ``forward(input_ids (B, L), attention_mask (B, L) bool, True = real token)``
    -> logits ``(B, n_classes)``.
    """

    def __init__(self, config: BertConfig, n_classes: int = 2, pooling: str = "cls") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        check_int("n_classes", n_classes, 2)
        self.pooling = pooling
        self.bert = Bert(config)
        self.classifier = nn.Linear(config.hidden_size, n_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden, pooled = self.bert(input_ids, attention_mask=attention_mask.long())
        if self.pooling == "mean":
            pooled = masked_mean(hidden, attention_mask.bool())  # (B, L, H) -> (B, H)
        return self.classifier(pooled)


def _loss(model: nn.Module, batch: ClassificationBatch) -> Tensor:
    return F.cross_entropy(model(batch.input_ids, batch.attention_mask), batch.labels)


class PoolingRun(NamedTuple):
    """A trained :class:`SequenceClassifier`, its history and its held-out accuracy."""

    model: SequenceClassifier
    history: History
    accuracy: float


@experiment
def train_pooling(
    pooling: str,
    *,
    rule: str = "majority",
    seed: int = 0,
    steps: int = 60,
    batch_size: int = 64,
    max_len: int = 12,
    n_words: int = 8,
    hidden_size: int = 32,
    num_layers: int = 1,
    lr: float = 3e-3,
    freeze_encoder: bool = False,
    device: str | torch.device | None = "cpu",
) -> PoolingRun:
    """Train a tiny :class:`SequenceClassifier` with ``pooling`` on a synthetic task.

    Batches of ``batch_size`` fresh sequences from
    :func:`qkv.tasks.sequence_classification` (``rule``, lengths 4 to ``max_len``
    words after ``[CLS]``, padded); the same budget (``steps`` AdamW updates at
    ``lr``) for both poolings; the initialisation and the batches come from
    ``seed``. Accuracy is measured on 1024 held-out sequences drawn with seed
    ``10_000 + seed``. With ``freeze_encoder`` only the linear classifier is
    trained, on the features of the randomly initialised encoder (a linear probe:
    which pooled vector carries the answer *before* the encoder is trained?).
    Runs on CPU unless ``device`` says otherwise (CPU, one thread: the same numbers
    on every machine of one CPU type).
    """
    check_int("seed", seed, 0)
    check_int("max_len", max_len, 4)
    config = BertConfig(
        vocab_size=6 + n_words,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_len + 1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SequenceClassifier(config, 2, pooling)

    def batch_fn(step: int, gen: torch.Generator) -> ClassificationBatch:
        return sequence_classification(
            batch_size, min_len=4, max_len=max_len, n_words=n_words, rule=rule, generator=gen
        )

    optimizer = None
    if freeze_encoder:
        model.bert.requires_grad_(False)
        optimizer = torch.optim.AdamW(model.classifier.parameters(), lr=lr, weight_decay=0.0)
    config_ = TrainConfig(steps=steps, lr=lr, seed=seed, log_every=10, device=device)
    history = train(model, batch_fn, _loss, config_, optimizer=optimizer)
    held_out = sequence_classification(
        1024, min_len=4, max_len=max_len, n_words=n_words, rule=rule, generator=10_000 + seed
    )
    return PoolingRun(model, history, accuracy(model, held_out))


def accuracy(model: SequenceClassifier, batch: ClassificationBatch) -> float:
    """Fraction of ``batch`` that ``model`` classifies correctly (eval mode, no gradients)."""
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(batch.input_ids.to(dev), batch.attention_mask.to(dev))
    model.train(was_training)
    return (logits.argmax(-1).cpu() == batch.labels).float().mean().item()


@experiment
def cls_attention(model: SequenceClassifier, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Attention weights of the ``[CLS]`` query in the last layer, averaged over heads.

    ``input_ids, attention_mask: (B, L)`` (True = real token) -> ``(B, L)``, each row
    summing to 1 over the real tokens (padding gets 0).
    Used in: Q17.
    """
    bert = model.bert
    dev = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(dev), attention_mask.to(dev).bool()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = bert.embeddings(input_ids, torch.zeros_like(input_ids))
        mask = key_mask(attention_mask)  # (B, L) -> (B, 1, 1, L)
        for layer in bert.layers:
            x, weights = layer(x, mask, need_weights=True)  # weights (B, h, L, L)
    model.train(was_training)
    return weights[:, :, 0, :].mean(dim=1).cpu()  # the [CLS] query, mean over heads


def cls_attention_by_token(
    model: SequenceClassifier, batch: ClassificationBatch
) -> dict[str, float]:
    """Mean last-layer ``[CLS]`` attention weight per token, by kind of token.

    Kinds of :func:`qkv.tasks.sequence_classification`: ``"[CLS]"`` itself, the
    two label-carrying words ``"A or B"``, and the ``"distractor"`` words (padding
    gets no weight and is left out). Uniform attention gives every kind the same value.
    """
    weights = cls_attention(model, batch.input_ids, batch.attention_mask)  # (B, L)
    ids = batch.input_ids
    kinds = {
        "[CLS]": ids == CLS_ID,
        "A or B": (ids == N_SPECIAL) | (ids == N_SPECIAL + 1),
        "distractor": ids >= N_SPECIAL + 2,
    }
    return {name: (weights[where].sum() / where.sum()).item() for name, where in kinds.items()}


class Probe(NamedTuple):
    """What one pooled vector holds: see :func:`probe_pooled`."""

    accuracy: float  # held-out accuracy of a linear probe fitted on standardised features
    varying_share: float  # share of the vectors' squared norm that varies between sequences
    cosine: float  # mean cosine similarity between the vectors of two different sequences


def _fit_linear_probe(x: Tensor, y: Tensor, seed: int) -> nn.Linear:
    """A linear classifier fitted to convergence on ``x (N, H)``, labels ``y (N,)`` (L-BFGS)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = nn.Linear(x.shape[1], int(y.max()) + 1).to(x.dtype)
    lbfgs = torch.optim.LBFGS(probe.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        lbfgs.zero_grad()
        loss = F.cross_entropy(probe(x), y) + 1e-4 * probe.weight.square().sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    return probe.requires_grad_(False)


@experiment
def probe_pooled(
    model: SequenceClassifier,
    *,
    rule: str = "majority",
    seed: int = 0,
    n_train: int = 2048,
    n_test: int = 1024,
    max_len: int = 12,
    n_words: int = 8,
) -> dict[str, Probe]:
    """Probe the ``[CLS]`` + pooler vector and the mean-pooled vector of ``model``'s encoder.

    For each pooling (``"cls"``, ``"mean"``), the ``(N, H)`` pooled vectors of
    ``n_train`` and ``n_test`` fresh sequences (drawn with seeds ``30_000 + seed``
    and ``40_000 + seed``) are standardised with the training mean and standard
    deviation of each feature, and a linear classifier is fitted on them to
    convergence (full-batch L-BFGS): its held-out accuracy says whether the label is
    *linearly present* in the vector, whatever its scale. ``varying_share`` is
    ``E|x - mean(x)|^2 / E|x|^2`` over the test vectors (0: every sequence gets the
    same vector) and ``cosine`` the mean cosine similarity between the vectors of
    two different test sequences. The model is not modified.
    """
    dev = next(model.parameters()).device

    def pooled(n: int, generator: int) -> tuple[dict[str, Tensor], Tensor]:
        batch = sequence_classification(
            n, min_len=4, max_len=max_len, n_words=n_words, rule=rule, generator=generator
        )
        ids, real = batch.input_ids.to(dev), batch.attention_mask.to(dev).bool()
        with torch.no_grad():
            hidden, cls = model.bert(ids, attention_mask=real.long())  # (N, L, H), (N, H)
        features = {"cls": cls, "mean": masked_mean(hidden, real)}
        return {k: v.double().cpu() for k, v in features.items()}, batch.labels

    was_training = model.training
    model.eval()
    train_x, train_y = pooled(n_train, 30_000 + seed)
    test_x, test_y = pooled(n_test, 40_000 + seed)
    model.train(was_training)
    result = {}
    for name in POOLINGS:
        x, xt = train_x[name], test_x[name]
        mu, sd = x.mean(0), x.std(0).clamp(min=1e-12)
        x, z = (x - mu) / sd, (xt - mu) / sd
        acc = (_fit_linear_probe(x, train_y, seed)(z).argmax(-1) == test_y).double().mean().item()
        share = ((xt - xt.mean(0)).square().sum(-1).mean() / xt.square().sum(-1).mean()).item()
        unit = F.normalize(xt, dim=-1)
        cos = unit @ unit.T  # (N, N)
        off_diagonal = (cos.sum() - cos.diagonal().sum()) / (len(cos) * (len(cos) - 1))
        result[name] = Probe(acc, share, off_diagonal.item())
    return result


# --- the chapter's experiments -----------------------------------------------------

SETTINGS = ("fine-tuned", "frozen")
FINE_TUNED = {"steps": 100}  # the whole encoder, from scratch
FROZEN = {"steps": 100, "lr": 3e-2, "freeze_encoder": True}  # a quick linear probe
SEEDS = tuple(range(8))


@functools.cache
def _run(setting: str, pooling: str, seed: int) -> PoolingRun:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    kwargs = FROZEN if setting == "frozen" else FINE_TUNED
    return train_pooling(pooling, seed=seed, device="cpu", **kwargs)


@experiment
def runs(seed: int = 0) -> dict[tuple[str, str], PoolingRun]:
    """``{(setting, pooling): run}``: each pooling fine-tuned and frozen (probe), 100 steps.

    Used in: Q17.
    """
    return {(s, p): _run(s, p, seed) for s in SETTINGS for p in POOLINGS}


@experiment
def attention_by_token(seed: int = 0) -> dict[str, dict[str, float]]:
    """``{setting: {kind: weight}}``: the [CLS] model's last-layer [CLS] attention per token.

    On 512 held-out sequences drawn with seed ``20_000 + seed``; see
    :func:`cls_attention_by_token`.
    Used in: Q17.
    """
    held_out = sequence_classification(
        512, min_len=4, max_len=12, n_words=8, generator=20_000 + seed
    )
    return {s: cls_attention_by_token(_run(s, "cls", seed).model, held_out) for s in SETTINGS}


def _ratio(seed: int, setting: str) -> float:
    looks = attention_by_token(seed)[setting]
    return looks["A or B"] / looks["distractor"]


@experiment
def probes(seed: int = 0) -> dict[str, Probe]:
    """:func:`probe_pooled` on the frozen, untrained encoder of the [CLS] run.

    Used in: Q17.
    """
    return probe_pooled(_run("frozen", "cls", seed).model, seed=seed)


def _accuracy(setting: str, pooling: str):
    return lambda seed: runs(seed)[setting, pooling].accuracy


CLAIMS = claims(
    Claim(
        "q17-finetuned-cls",
        "fine-tuned, 100 steps: accuracy with [CLS] + pooler",
        _accuracy("fine-tuned", "cls"),
        ">",
        0.95,
        SEEDS,
    ),
    Claim(
        "q17-finetuned-mean",
        "fine-tuned, 100 steps: accuracy with mean pooling",
        _accuracy("fine-tuned", "mean"),
        ">",
        0.95,
        SEEDS,
    ),
    Claim(
        "q17-frozen-cls",
        "frozen random encoder: linear-probe accuracy on [CLS]",
        _accuracy("frozen", "cls"),
        "<",
        0.6,
        SEEDS,
    ),
    Claim(
        "q17-frozen-mean",
        "frozen random encoder: linear-probe accuracy on the mean",
        _accuracy("frozen", "mean"),
        ">",
        0.9,
        SEEDS,
    ),
    Claim(
        "q17-attention-trained",
        "fine-tuned: [CLS] weight per A/B token ÷ per distractor",
        lambda s: _ratio(s, "fine-tuned"),
        ">",
        1.3,
        SEEDS,
    ),
    Claim(
        "q17-attention-untrained",
        "untrained: |weight ratio A/B ÷ distractor − 1|",
        lambda s: abs(_ratio(s, "frozen") - 1),
        "<",
        0.2,
        SEEDS,
    ),
    Claim(
        "q17-frozen-cls-fitted",
        "frozen random encoder: probe fitted on standardised [CLS] features, accuracy",
        lambda s: probes(s)["cls"].accuracy,
        ">",
        0.95,
        SEEDS,
    ),
    Claim(
        "q17-frozen-cls-varying",
        "frozen random encoder: share of the [CLS] vector that varies between sequences",
        lambda s: probes(s)["cls"].varying_share,
        "<",
        1e-3,
        SEEDS,
    ),
    Claim(
        "q17-frozen-mean-varying",
        "frozen random encoder: share of the mean-pooled vector that varies",
        lambda s: probes(s)["mean"].varying_share,
        ">",
        0.05,
        SEEDS,
    ),
)
