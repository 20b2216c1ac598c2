"""Q25 (transformer/q25_weaknesses): with little data, a model built to look locally wins.

The task, :func:`window_sum`, labels every position of a binary sequence with the
number of ones in the window ``x[i-1], x[i], x[i+1]`` (0 to 3). Three models of
similar size are trained on the same fixed set of ``n_train`` sequences for the
same number of steps:

- :class:`ConvTagger`: two width-3 convolutions, locality built in (LeCun et al. 1998);
- full attention: a Pre-LN :class:`~qkv.stack.TransformerStack`, bidirectional,
  with sinusoidal positions: it must *learn* which keys are neighbours;
- windowed attention: the same Transformer with ``window=1`` (each query sees its
  two neighbours only), locality built into the mask.

:func:`locality_experiment` measures held-out accuracy over training-set sizes;
:func:`small_data_gap`, :func:`small_data_window_gap` and :func:`gap_narrows` are the
claimed numbers, declared in ``CLAIMS``.

A second task measures the missing recurrence: :func:`prefix_parity` tags each bit
with the parity of all bits so far, a running state that a recurrent network carries
in one unit and a fixed-depth Transformer must recompute from the whole prefix at
every position (Hahn 2020). :func:`state_tracking` trains a small GRU and a larger
causal Transformer on 16 bits and tests them on 16 and 64.

Used in: Q25 (also ``benchmarks/robustness.py``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.experiments import Claim, claims, experiment
from qkv.stack import TransformerStack
from qkv.train import TrainConfig, train

__all__ = [
    "TagBatch",
    "window_sum",
    "ConvTagger",
    "LOCALITY_MODELS",
    "BUDGETS",
    "locality_experiment",
    "small_data_gap",
    "small_data_window_gap",
    "gap_narrows",
    "prefix_parity",
    "GRUTagger",
    "PARITY_MODELS",
    "state_tracking",
    "parity_gap",
    "transformer_parity_long",
    "gru_parity_long",
    "CLAIMS",
]

BUDGETS = (8, 32, 512)  # training sequences
#: Sequence lengths of :func:`state_tracking`: trained on the first, tested on both.
PARITY_LENS = (16, 64)
#: The models compared by :func:`state_tracking`.
PARITY_MODELS = ("GRU", "Transformer")

#: The models compared by :func:`locality_experiment`, in the order of its result.
LOCALITY_MODELS = ("convolution", "full attention", "windowed attention")


class TagBatch(NamedTuple):
    """``inputs (B, L)`` bits and ``labels (B, L)`` window sums in ``0 .. 3``."""

    inputs: Tensor
    labels: Tensor


def window_sum(batch_size: int, length: int, *, generator: torch.Generator) -> TagBatch:
    """Random bits; the label of position ``i`` is ``x[i-1] + x[i] + x[i+1]`` (0 outside)."""
    check_int("batch_size", batch_size, 1)
    check_int("length", length, 1)
    inputs = torch.randint(0, 2, (batch_size, length), generator=generator)
    padded = F.pad(inputs, (1, 1))  # (B, L + 2), zeros at both ends
    labels = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]  # (B, L)
    return TagBatch(inputs, labels)


class ConvTagger(nn.Module):
    """Embedding, two ``kernel_size``-wide 1-D convolutions with GELU, a per-token head.

    ``ids: (B, L) -> (B, L, n_outputs)``; position ``i`` sees ``x[i-2 .. i+2]`` for
    kernel size 3.
    """

    def __init__(
        self, vocab_size: int, n_outputs: int, *, d_model: int = 32, kernel_size: int = 3
    ) -> None:
        super().__init__()
        check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the length, got {kernel_size}")
        self.embed = nn.Embedding(vocab_size, d_model)
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(d_model, d_model, kernel_size, padding=pad)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size, padding=pad)
        self.head = nn.Linear(d_model, n_outputs)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embed(ids).transpose(1, 2)  # (B, L, d_model) -> (B, d_model, L)
        x = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return self.head(x.transpose(1, 2))  # (B, d_model, L) -> (B, L, n_outputs)


def _tiny(vocab_size: int, n_outputs: int, *, n_heads: int, n_layers: int, **kw) -> nn.Module:
    """A Pre-LN tagger: ``d_model = 32``, GELU FFN of ``4 d_model``, PyTorch's initialisation."""
    return TransformerStack(
        vocab_size,
        32,
        n_heads,
        4 * 32,
        n_layers,
        norm_first=True,
        n_outputs=n_outputs,
        activation="gelu",
        init="default",
        **kw,
    )


def _make(name: str) -> nn.Module:
    if name == "convolution":
        return ConvTagger(2, 4)
    window = 1 if name == "windowed attention" else None
    return _tiny(2, 4, n_heads=2, n_layers=1, position="sinusoidal", causal=False, window=window)


def _tag_loss(model: nn.Module, batch: TagBatch) -> Tensor:
    return F.cross_entropy(model(batch.inputs).flatten(0, 1), batch.labels.flatten())


@experiment
@functools.lru_cache(maxsize=8)
def locality_experiment(
    seed: int = 0,
    *,
    budgets: tuple[int, ...] = BUDGETS,
    length: int = 24,
    steps: int = 200,
    device: str | torch.device | None = None,
) -> dict[str, list[float]]:
    """Held-out accuracy of each model of ``LOCALITY_MODELS`` for each training-set size.

    For each ``n_train`` in ``budgets``: draw ``n_train`` sequences of ``length`` bits
    (seeded by ``seed``), train each model (initialised with ``seed``) for ``steps``
    AdamW updates (lr 3e-3) on mini-batches of ``min(n_train, 32)`` drawn from that
    fixed set, and score per-token accuracy on 512 fresh sequences. Every model sees
    the same data and the same number of updates. Cached per arguments.

    Returns:
        ``{model name: [accuracy for each budget]}``.

    Used in: Q25 (also ``benchmarks/robustness.py``).
    """
    check_int("seed", seed, 0)
    for n_train in budgets:
        check_int("n_train", n_train, 1)
    config = TrainConfig(steps=steps, lr=3e-3, seed=seed, device=device)
    test = window_sum(512, length, generator=torch.Generator().manual_seed(10_000 + seed))
    result: dict[str, list[float]] = {name: [] for name in LOCALITY_MODELS}
    for n_train in budgets:
        data = window_sum(n_train, length, generator=torch.Generator().manual_seed(seed))

        def batches(step: int, g: torch.Generator, data: TagBatch = data) -> TagBatch:
            rows = torch.randint(0, len(data.inputs), (min(len(data.inputs), 32),), generator=g)
            return TagBatch(data.inputs[rows], data.labels[rows])

        for name in LOCALITY_MODELS:
            torch.manual_seed(seed)
            model = _make(name)
            train(model, batches, _tag_loss, config)
            model.eval()
            on = next(model.parameters()).device
            with torch.no_grad():
                predicted = model(test.inputs.to(on)).argmax(dim=-1).cpu()
            result[name].append((predicted == test.labels).float().mean().item())
    return result


@experiment
def small_data_gap(seed: int) -> float:
    """With 8 training sequences: accuracy of the convolution minus full attention.

    Used in: Q25.
    """
    result = locality_experiment(seed=seed)
    return result["convolution"][0] - result["full attention"][0]


@experiment
def small_data_window_gap(seed: int) -> float:
    """With 8 training sequences: windowed attention minus full attention.

    Used in: Q25.
    """
    result = locality_experiment(seed=seed)
    return result["windowed attention"][0] - result["full attention"][0]


@experiment
def gap_narrows(seed: int) -> float:
    """Convolution minus full attention: the gap with 512 sequences minus the gap with 8.

    Used in: Q25.
    """
    result = locality_experiment(seed=seed)
    gaps = [c - a for c, a in zip(result["convolution"], result["full attention"], strict=True)]
    return gaps[-1] - gaps[0]


def prefix_parity(batch_size: int, length: int, *, generator: torch.Generator) -> TagBatch:
    """Random bits; the label of position ``i`` is ``x[0] xor ... xor x[i]`` (0 or 1)."""
    check_int("batch_size", batch_size, 1)
    check_int("length", length, 1)
    inputs = torch.randint(0, 2, (batch_size, length), generator=generator)
    return TagBatch(inputs, inputs.cumsum(dim=1) % 2)


class GRUTagger(nn.Module):
    """Embedding, one GRU layer (Cho et al. 2014), a per-token head: ``(B, L) -> (B, L, V_out)``."""

    def __init__(self, vocab_size: int, n_outputs: int, *, hidden: int = 16) -> None:
        super().__init__()
        check_int("hidden", hidden, 1)
        self.embed = nn.Embedding(vocab_size, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.gru(self.embed(ids))[0])  # (B, L, hidden) -> (B, L, n_outputs)


def _make_parity_model(name: str) -> nn.Module:
    if name == "GRU":
        return GRUTagger(2, 2, hidden=16)
    return _tiny(2, 2, n_heads=4, n_layers=2, position="rope", causal=True)


@experiment
@functools.lru_cache(maxsize=8)
def state_tracking(seed: int = 0, *, steps: int = 200) -> dict[str, list[float]]:
    """Prefix parity: per-bit accuracy of a GRU and a causal Transformer, trained on 16 bits.

    The GRU has 16 units (about 1,700 parameters); the Transformer has 2 layers,
    ``d_model = 32``, 4 heads and RoPE (about 25,000). Both train for ``steps`` AdamW
    updates (lr 3e-3) on fresh batches of 32 sequences of 16 bits, then are scored on
    256 held-out sequences of each length in ``PARITY_LENS``. Chance is 0.5.

    Returns:
        ``{model name: [accuracy at each length]}``, models as in ``PARITY_MODELS``.

    Used in: Q25 (also ``benchmarks/robustness.py``).
    """
    check_int("seed", seed, 0)
    config = TrainConfig(steps=steps, lr=3e-3, seed=seed)
    eval_g = torch.Generator().manual_seed(10_000 + seed)
    tests = [prefix_parity(256, n, generator=eval_g) for n in PARITY_LENS]
    result: dict[str, list[float]] = {}
    for name in PARITY_MODELS:
        torch.manual_seed(seed)
        model = _make_parity_model(name)

        def batches(step: int, g: torch.Generator) -> TagBatch:
            return prefix_parity(32, PARITY_LENS[0], generator=g)

        train(model, batches, _tag_loss, config)
        model.eval()
        on = next(model.parameters()).device
        with torch.no_grad():
            result[name] = [
                (model(t.inputs.to(on)).argmax(-1).cpu() == t.labels).float().mean().item()
                for t in tests
            ]
    return result


@experiment
def parity_gap(seed: int) -> float:
    """Prefix parity at the training length (16 bits): GRU accuracy minus Transformer's.

    Used in: Q25.
    """
    result = state_tracking(seed=seed)
    return result["GRU"][0] - result["Transformer"][0]


@experiment
def transformer_parity_long(seed: int) -> float:
    """Prefix parity at 64 bits (trained on 16): the Transformer's accuracy.

    Used in: Q25.
    """
    return state_tracking(seed=seed)["Transformer"][1]


@experiment
def gru_parity_long(seed: int) -> float:
    """Prefix parity at 64 bits (trained on 16): the GRU's accuracy.

    Used in: Q25.
    """
    return state_tracking(seed=seed)["GRU"][1]


_FIVE = tuple(range(5))
CLAIMS = claims(
    Claim(
        "q25-small-data-gap",
        "window-sum tagging with 8 training sequences: accuracy of the convolution minus "
        "that of full attention",
        small_data_gap,
        ">",
        0.2,
        seeds=_FIVE,
    ),
    Claim(
        "q25-small-data-window-gap",
        "same, windowed attention (window 1) minus full attention",
        small_data_window_gap,
        ">",
        0.2,
        seeds=_FIVE,
    ),
    Claim(
        "q25-gap-narrows",
        "convolution minus full attention: the gap with 512 sequences minus the gap with 8",
        gap_narrows,
        "<",
        0.0,
        seeds=_FIVE,
    ),
    Claim(
        "q25-parity-gap",
        "prefix parity at the training length (16 bits): GRU accuracy minus that of a "
        "2-layer Transformer",
        parity_gap,
        ">",
        0.2,
        seeds=_FIVE,
    ),
    Claim(
        "q25-parity-transformer-64",
        "prefix parity at 64 bits, trained on 16: Transformer accuracy (chance 0.5)",
        transformer_parity_long,
        "<",
        0.6,
        seeds=_FIVE,
    ),
    Claim(
        "q25-parity-gru-64",
        "prefix parity at 64 bits, trained on 16: GRU accuracy",
        gru_parity_long,
        ">",
        0.95,
        seeds=_FIVE,
    ),
)
