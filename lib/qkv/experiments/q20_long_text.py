"""Q20 (bert/q20_long_text): a short-window classifier applied to long documents.

A tiny BERT classifier is trained on windows of ``window`` tokens that each hold
one evidence token (:func:`qkv.tasks.long_documents`). It is then applied to
documents several times longer, with the evidence at the start, in the middle
or at the end, through the remedies of :mod:`qkv.longtext`: head truncation,
tail truncation, head+tail truncation, and sliding windows whose logits are
pooled. A remedy works exactly when the evidence survives it.

:func:`spread_evidence` is the case that toy cannot show: the label is the XOR of
two evidence tokens that no window holds together (:func:`xor_documents`). A small
encoder that attends over the whole document learns it; the same encoder applied
to windows, its window logits pooled by mean or max and trained end to end, cannot:
a sum or a maximum of per-window scores gets at most three of the four bit
combinations right (75%), whatever the windows learn. :func:`compare` runs
on the CPU with one torch thread (:func:`qkv.experiments.experiment`); ``CLAIMS``
holds the chapter's margins.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from qkv.bert import Bert, BertConfig
from qkv.experiments import Claim, claims, experiment
from qkv.longtext import aggregate, sliding_windows, truncate
from qkv.stack import TransformerStack
from qkv.tasks import CLS_ID, N_SPECIAL, long_documents
from qkv.train import TrainConfig, train

__all__ = [
    "WindowClassifier",
    "train_window_classifier",
    "predict",
    "window_logits",
    "STRATEGIES",
    "compare",
    "POSITIONS",
    "xor_documents",
    "SmallEncoder",
    "spread_evidence",
    "XOR_STEPS",
    "CLAIMS",
]

N_CLASSES, N_NOISE = 2, 50
VOCAB_SIZE = N_SPECIAL + N_CLASSES + N_NOISE
#: The remedies compared, truncations then sliding windows with pooling.
STRATEGIES = ("head", "tail", "head+tail", "windows (mean)", "windows (max)")
#: The tenth of the document that holds the evidence (first, middle or last).
POSITIONS = ("start", "middle", "end")


class WindowClassifier(nn.Module):
    """A tiny BERT that reads ``[CLS] + window`` and classifies from the pooled [CLS] vector.

    ``ids: (B, window)`` -> logits ``(B, 2)``.
    """

    def __init__(self, window: int) -> None:
        super().__init__()
        config = BertConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=window + 1,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.window = window
        self.bert = Bert(config)
        self.head = nn.Linear(32, N_CLASSES)

    def forward(self, ids: Tensor) -> Tensor:
        cls = torch.full_like(ids[:, :1], CLS_ID)
        _, pooled = self.bert(torch.cat([cls, ids], dim=1))  # (B, 1 + window) -> (B, 32)
        return self.head(pooled)


@experiment
def train_window_classifier(
    seed: int, *, window: int = 32, steps: int = 120, device: str | torch.device | None = "cpu"
) -> WindowClassifier:
    """Train a :class:`WindowClassifier` on windows with or without the evidence.

    Batches of 64 windows of ``window`` tokens from :func:`qkv.tasks.long_documents`
    (``position="random"``); in half of them the evidence token is replaced by
    noise and the target is 50/50, so that a window without evidence abstains.
    AdamW at lr 3e-3, ``steps`` steps, seeded by ``seed``.
    """
    torch.manual_seed(seed)
    model = WindowClassifier(window)

    def batch_fn(step: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        docs = long_documents(64, window, position="random", generator=g)
        ids, target = docs.input_ids.clone(), nn.functional.one_hot(docs.labels, N_CLASSES).float()
        # half the windows lose their evidence (a noise token takes its place) and must
        # then say "no idea", 50/50: a long document's windows mostly hold no evidence
        blank = torch.rand(64, generator=g) < 0.5
        noise = N_SPECIAL + N_CLASSES + torch.randint(0, N_NOISE, (64,), generator=g)
        rows = torch.arange(64)[blank]
        ids[rows, docs.evidence_position[blank]] = noise[blank]
        target[blank] = 1.0 / N_CLASSES
        return ids, target

    def loss_fn(m: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        ids, target = batch
        return nn.functional.cross_entropy(m(ids), target)  # probabilities as targets

    train(model, batch_fn, loss_fn, TrainConfig(steps=steps, lr=3e-3, seed=seed, device=device))
    return model.eval()


def predict(model: WindowClassifier, ids: Tensor, strategy: str) -> Tensor:
    """Labels ``(B,)`` for long documents ``ids: (B, L)`` under one of ``STRATEGIES``.

    Truncations keep ``model.window`` tokens (head+tail: a quarter from the head,
    the rest from the tail, as Sun et al. 2019 keep 128 + 382 of 510); windows
    have stride ``window // 2`` and their logits are pooled by mean or max.
    """
    w = model.window
    with torch.no_grad():
        if strategy in ("head", "tail", "head+tail"):
            head = w // 4 if strategy == "head+tail" else None
            kept = torch.stack([truncate(doc, w, strategy, head=head) for doc in ids])  # (B, w)
            return model(kept).argmax(-1)
        if strategy in ("windows (mean)", "windows (max)"):
            how = "mean" if strategy == "windows (mean)" else "max"
            return aggregate(window_logits(model, ids), how, dim=1).argmax(-1)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def window_logits(model: WindowClassifier, ids: Tensor) -> Tensor:
    """Logits ``(B, W, 2)`` of every window (stride ``window // 2``) of ``ids: (B, L)``."""
    w = model.window
    windows, _ = sliding_windows(ids, w, w // 2)  # (B, L) -> (B, W, w)
    B, W, _ = windows.shape
    with torch.no_grad():
        return model(windows.reshape(B * W, w)).reshape(B, W, -1)  # (B * W, 2) -> (B, W, 2)


@experiment
def compare(
    seed: int = 0,
    *,
    length: int = 256,
    n_docs: int = 200,
    device: str | torch.device | None = "cpu",
) -> dict[tuple[str, str], float]:
    """Accuracy of every strategy with the evidence at the start, middle and end.

    Returns ``{(strategy, position): accuracy}`` on ``n_docs`` held-out documents
    of ``length`` tokens per position (drawn from a generator seeded apart from
    the training batches). Cached: the chapter and its claims share one run per seed.
    Used in: Q20.
    """
    return dict(_compare(seed, length, n_docs, str(device)))


@functools.cache
def _compare(seed: int, length: int, n_docs: int, device: str) -> tuple:
    model = train_window_classifier(seed, device=device)
    model_device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(10_000 + seed)
    results = {}
    for position in POSITIONS:
        docs = long_documents(n_docs, length, position=position, generator=generator)
        ids, labels = docs.input_ids.to(model_device), docs.labels.to(model_device)
        logits = window_logits(model, ids)  # computed once for both poolings
        for strategy in STRATEGIES:
            if strategy.startswith("windows"):
                how = "mean" if strategy == "windows (mean)" else "max"
                predicted = aggregate(logits, how, dim=1).argmax(-1)
            else:
                predicted = predict(model, ids, strategy)
            results[(strategy, position)] = (predicted == labels).float().mean().item()
    return tuple(results.items())


XOR_LENGTH, XOR_WINDOW, XOR_STRIDE = 16, 8, 4  # documents, windows and their stride
XOR_REGION = 2  # the first bit sits in the first 2 positions, the second in the last 2
#: Training steps of each :func:`spread_evidence` encoder (after 80, seed 0's
#: full-attention encoder is still at chance).
XOR_STEPS = 100


def xor_documents(batch_size: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``ids (B, 16)`` and ``labels (B,)``: two bit tokens far apart, label = their XOR.

    Token ``N_SPECIAL + b`` carries bit ``b``; one sits in the first
    ``XOR_REGION`` positions, the other in the last; every other token is noise
    (ids from ``N_SPECIAL + 2``). No window of ``XOR_WINDOW`` tokens holds both.
    """
    g = generator
    ids = torch.randint(0, N_NOISE, (batch_size, XOR_LENGTH), generator=g) + N_SPECIAL + 2
    bits = torch.randint(0, 2, (batch_size, 2), generator=g)
    first = torch.randint(0, XOR_REGION, (batch_size,), generator=g)
    last = torch.randint(XOR_LENGTH - XOR_REGION, XOR_LENGTH, (batch_size,), generator=g)
    rows = torch.arange(batch_size)
    ids[rows, first] = N_SPECIAL + bits[:, 0]
    ids[rows, last] = N_SPECIAL + bits[:, 1]
    return ids, bits[:, 0] ^ bits[:, 1]


class SmallEncoder(nn.Module):
    """A bidirectional two-layer Pre-LN :class:`~qkv.stack.TransformerStack`, mean-pooled.

    ``ids: (B, length)`` -> logits ``(B, 2)``: the stack's per-token logits averaged
    over the tokens (the head is linear, so that is the head of the mean vector). With
    ``window`` set, the encoder reads each sliding window of ``window`` tokens (stride
    ``XOR_STRIDE``) on its own and the window logits are pooled by ``how`` (``"mean"``
    or ``"max"``): no attention crosses a window boundary.
    """

    def __init__(self, length: int, *, window: int | None = None, how: str = "mean") -> None:
        super().__init__()
        self.window, self.how = window, how
        self.stack = TransformerStack(
            VOCAB_SIZE,
            32,
            4,
            2 * 32,
            2,
            norm_first=True,
            causal=False,
            max_len=window or length,
            activation="gelu",
            n_outputs=N_CLASSES,
            init="default",
        )

    def _encode(self, ids: Tensor) -> Tensor:
        return self.stack(ids).mean(1)  # (B, L, 2) -> (B, 2)

    def forward(self, ids: Tensor) -> Tensor:
        if self.window is None:
            return self._encode(ids)
        windows, _ = sliding_windows(ids, self.window, XOR_STRIDE)  # (B, W, window)
        B, W, w = windows.shape
        logits = self._encode(windows.reshape(B * W, w)).reshape(B, W, -1)
        return aggregate(logits, self.how, dim=1)


@experiment
def spread_evidence(seed: int = 0, *, steps: int = XOR_STEPS) -> dict[str, float]:
    """Held-out accuracy on :func:`xor_documents`: full attention against pooled windows.

    Three :class:`SmallEncoder` s, each trained from the same seed for ``steps`` AdamW
    updates (lr 3e-3, batches of 64) on the document label: one over the whole
    document, two over windows of ``XOR_WINDOW`` with mean or max pooling of
    the window logits. Scored on 1000 held-out documents (seed ``10_000 + seed``).
    Used in: Q20.
    """
    models = {
        "full attention": lambda: SmallEncoder(XOR_LENGTH),
        "windows (mean)": lambda: SmallEncoder(XOR_LENGTH, window=XOR_WINDOW, how="mean"),
        "windows (max)": lambda: SmallEncoder(XOR_LENGTH, window=XOR_WINDOW, how="max"),
    }
    held_out = xor_documents(1000, generator=torch.Generator().manual_seed(10_000 + seed))
    result = {}
    for name, build in models.items():
        torch.manual_seed(seed)
        model = build()
        train(
            model,
            lambda step, g: xor_documents(64, generator=g),
            lambda m, batch: nn.functional.cross_entropy(m(batch[0]), batch[1]),
            TrainConfig(steps=steps, lr=3e-3, seed=seed, device="cpu"),
        )
        model.eval()
        with torch.no_grad():
            predicted = model(held_out[0]).argmax(-1)
        result[name] = (predicted == held_out[1]).float().mean().item()
    return result


@functools.cache
def _spread(seed: int) -> tuple:
    return tuple(spread_evidence(seed).items())


_WINDOWS = [(s, p) for s in ("windows (mean)", "windows (max)") for p in POSITIONS]


def _pick(key: str):
    picks = {
        "windows": lambda r: min(r[k] for k in _WINDOWS),
        "head-end": lambda r: r[("head", "end")],
        "tail-start": lambda r: r[("tail", "start")],
        "head+tail-middle": lambda r: r[("head+tail", "middle")],
        "kept": lambda r: min(r[("head", "start")], r[("tail", "end")], r[("head+tail", "end")]),
    }
    return lambda seed: picks[key](compare(seed))


CLAIMS = claims(
    Claim(
        "q20-windows",
        "sliding windows (mean or max): lowest accuracy over positions",
        _pick("windows"),
        ">",
        0.95,
    ),
    Claim(
        "q20-kept", "truncation with the evidence kept: lowest accuracy", _pick("kept"), ">", 0.95
    ),
    Claim(
        "q20-head-end",
        "head truncation, evidence at the end: accuracy",
        _pick("head-end"),
        "<",
        0.65,
    ),
    Claim(
        "q20-tail-start",
        "tail truncation, evidence at the start: accuracy",
        _pick("tail-start"),
        "<",
        0.65,
    ),
    Claim(
        "q20-head-tail-middle",
        "head+tail truncation, evidence in the middle: accuracy",
        _pick("head+tail-middle"),
        "<",
        0.65,
    ),
    Claim(
        "q20-spread-full",
        "XOR of two distant tokens: accuracy with full attention",
        lambda s: dict(_spread(s))["full attention"],
        ">",
        0.95,
        tuple(range(10)),
    ),
    Claim(
        "q20-spread-windows",
        "XOR of two distant tokens: best accuracy of pooled windows",
        lambda s: max(v for k, v in _spread(s) if k != "full attention"),
        "<",
        0.8,
        tuple(range(10)),
    ),
)
