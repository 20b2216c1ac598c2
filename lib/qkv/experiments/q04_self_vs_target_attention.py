"""Q4, Self-attention vs target-attention (chapters/attention/q04_self_vs_target_attention).

Target attention as in the Deep Interest Network (DIN; Zhou et al. 2018).

A toy shop: a :class:`Catalogue` of categories (``C`` centres of equal norm in
``d`` dimensions; an item is its centre plus noise), users whose behaviour
sequences mix categories (:func:`user_batch`), DIN's :class:`ActivationUnit`
``a(e_j, e_t)`` that scores each behaviour against the candidate, and a click
model (:class:`InterestCTR`) that pools the behaviours with the unit's raw
weights (DIN, Eq. 3: the weights do not sum to 1, so their sum keeps the
*intensity* of interest) or with a softmax. :func:`train_interest_models` is the
chapter's seeded experiment: both poolings trained on a task where intensity is
the signal; :func:`interest_run` adds the probes the chapter's claims read.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_generator
from qkv.experiments import Claim, claims, experiment
from qkv.masks import padding_mask
from qkv.train import TrainConfig, train

__all__ = [
    "Catalogue",
    "make_catalogue",
    "ActivationUnit",
    "InterestCTR",
    "UserBatch",
    "user_batch",
    "train_interest_models",
    "probe_intensity",
    "InterestRun",
    "interest_run",
    "matching_weights",
    "smallest_increase",
    "CLAIMS",
]

N_CATEGORIES, D = 6, 8  # the toy catalogue: six categories in 8 dimensions
KS = tuple(range(1, 9))  # probe users with 1 to 8 matching behaviours
SEEDS = tuple(range(10))


class Catalogue(NamedTuple):
    """``centres (C, d)``: one centre per category, all of norm ``sqrt(d)``; ``noise``:
    the standard deviation of an item around its centre."""

    centres: Tensor
    noise: float = 0.3

    def items(self, category: Tensor, generator: torch.Generator) -> Tensor:
        """Item embeddings for category ids ``(...)`` -> ``(..., d)``: centre plus noise."""
        d = self.centres.shape[1]
        noise = torch.randn(*category.shape, d, generator=generator)
        return self.centres[category] + self.noise * noise


def make_catalogue(
    n_categories: int = 6, d: int = 8, *, generator: torch.Generator | int
) -> Catalogue:
    """Random category centres of equal norm ``sqrt(d)`` (equal norms keep a dot-product
    score from favouring long vectors of another category).

    Used in: Q4.
    """
    generator = check_generator(generator)  # or an int seed (numpy integers too)
    centres = F.normalize(torch.randn(n_categories, d, generator=generator), dim=-1) * d**0.5
    return Catalogue(centres)


class ActivationUnit(nn.Module):
    """DIN's unit ``a(e_j, e_t) = MLP([e_j, e_t, e_j - e_t, e_j * e_t])`` (the inputs of the
    authors' released code), one hidden layer with PReLU.

    Used in: Q4.
    """

    def __init__(self, d: int, hidden: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4 * d, hidden), nn.PReLU(), nn.Linear(hidden, 1))

    def forward(self, candidate: Tensor, behaviours: Tensor) -> Tensor:
        """Scores ``(B, n)`` of behaviours ``(B, n, d)`` against candidates ``(B, d)``."""
        e_t = candidate[:, None].expand_as(behaviours)  # (B, d) -> (B, n, d)
        pairs = torch.cat([behaviours, e_t, behaviours - e_t, behaviours * e_t], dim=-1)
        return self.mlp(pairs).squeeze(-1)  # (B, n, 4d) -> (B, n)


class InterestCTR(nn.Module):
    """Pool the behaviours with the unit's weights, then predict a click from
    ``[u, e_t, u * e_t]``. ``softmax=False`` is DIN (raw weights, padding weighs 0);
    ``softmax=True`` normalises the weights over the real behaviours.

    Used in: Q4.
    """

    def __init__(self, d: int, softmax: bool) -> None:
        super().__init__()
        self.unit, self.softmax = ActivationUnit(d), softmax
        self.head = nn.Sequential(nn.Linear(3 * d, 16), nn.ReLU(), nn.Linear(16, 1))

    def pool(self, candidate: Tensor, behaviours: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """User vectors ``(B, d)`` and weights ``(B, n)``; ``lengths (B,)`` real behaviours."""
        real = padding_mask(lengths, behaviours.shape[1]).to(behaviours.device)  # (B, n)
        scores = self.unit(candidate, behaviours)
        if self.softmax:  # ordinary attention: the weights sum to 1
            weights = scores.masked_fill(~real, float("-inf")).softmax(-1)
        else:  # DIN, Eq. (3): raw weights
            weights = scores * real
        return (weights[..., None] * behaviours).sum(1), weights

    def forward(self, candidate: Tensor, behaviours: Tensor, lengths: Tensor) -> Tensor:
        """Click logits ``(B,)``."""
        u, _ = self.pool(candidate, behaviours, lengths)
        return self.head(torch.cat([u, candidate, u * candidate], dim=-1)).squeeze(-1)


class UserBatch(NamedTuple):
    """One batch of :func:`user_batch`: ``candidate (B, d)``, ``behaviours (B, max_len, d)``
    (slots after ``lengths (B,)`` hold filler items that the padding mask hides),
    ``clicked (B,)`` float labels and ``k (B,)``, the number of matching behaviours."""

    candidate: Tensor
    behaviours: Tensor
    lengths: Tensor
    clicked: Tensor
    k: Tensor


def user_batch(
    catalogue: Catalogue, size: int, generator: torch.Generator, max_len: int = 12
) -> UserBatch:
    """Users with 4 to ``max_len`` behaviours, ``k`` of them (0 to 6) in the candidate's
    category at random real positions; the user clicks exactly when ``k >= 3``. The
    history length varies, so the *share* of matching behaviours does not tell ``k``.
    """
    n_categories = catalogue.centres.shape[0]
    lengths = torch.randint(4, max_len + 1, (size,), generator=generator)
    target = torch.randint(0, n_categories, (size,), generator=generator)
    k = torch.minimum(torch.randint(0, 7, (size,), generator=generator), lengths)
    real = padding_mask(lengths, max_len)  # (B, max_len)
    noise = torch.rand(size, max_len, generator=generator).masked_fill(~real, 2.0)
    rank = noise.argsort(-1).argsort(-1)  # a random order of the real slots first
    shift = torch.randint(1, n_categories, (size, max_len), generator=generator)
    other = (target[:, None] + shift) % n_categories  # any other category
    category = torch.where(rank < k[:, None], target[:, None], other)  # k real slots match
    candidate, behaviours = catalogue.items(target, generator), catalogue.items(category, generator)
    return UserBatch(candidate, behaviours, lengths, (k >= 3).float(), k)


def _click_loss(model: InterestCTR, batch: UserBatch) -> Tensor:
    logits = model(batch.candidate, batch.behaviours, batch.lengths)
    return F.binary_cross_entropy_with_logits(logits, batch.clicked)


@experiment
def train_interest_models(
    catalogue: Catalogue,
    seed: int,
    *,
    steps: int = 200,
    device: str | torch.device | None = None,
) -> tuple[dict[str, InterestCTR], dict[str, float]]:
    """Train the DIN pooling and the softmax pooling on :func:`user_batch` clicks.

    Both start from the same seed (initialisation and batches): ``steps`` AdamW updates
    (lr 0.01) on 128 users each. Accuracy is measured on 2000 held-out users (seed 99).

    Returns:
        ``{"DIN (no softmax)": model, "softmax": model}`` and their held-out accuracies.
    """
    d = catalogue.centres.shape[1]
    test = user_batch(catalogue, 2000, torch.Generator().manual_seed(99))
    models, accuracy = {}, {}
    for name, softmax in [("DIN (no softmax)", False), ("softmax", True)]:
        torch.manual_seed(seed)  # the initialisation
        model = InterestCTR(d, softmax)
        config = TrainConfig(steps=steps, lr=1e-2, seed=seed, log_every=50, device=device)
        train(model, lambda step, gen: user_batch(catalogue, 128, gen), _click_loss, config)
        dev = next(model.parameters()).device
        with torch.no_grad():
            clicks = model(test.candidate.to(dev), test.behaviours.to(dev), test.lengths.to(dev))
        correct = (clicks > 0).float() == test.clicked.to(dev)
        models[name], accuracy[name] = model, correct.float().mean().item()
    return models, accuracy


@experiment
def probe_intensity(
    model: InterestCTR, catalogue: Catalogue, ks: list[int], *, seed: int, category: int = 0
) -> tuple[list[float], list[float]]:
    """Sum of the pooling weights and norm of the user vector for probe users.

    Probe user ``k`` has ``k`` behaviours, all in ``category`` (seeded items), and the
    candidate is that category's centre. DIN's raw weights should sum to more as ``k``
    grows; softmax weights always sum to 1.

    Returns:
        the sums of the weights and the norms of the user vectors, one per ``k``.
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    candidate = catalogue.centres[category : category + 1].to(device)  # (1, d)
    totals, norms = [], []
    with torch.no_grad():
        for k in ks:
            history = catalogue.items(torch.full((1, k), category), generator).to(device)
            u, w = model.pool(candidate, history, torch.tensor([k]))
            totals.append(w.sum().item())  # interest intensity: the sum of the weights
            norms.append(u.norm().item())
    return totals, norms


@experiment
def matching_weights(
    model: InterestCTR, catalogue: Catalogue, *, seed: int, category: int = 0, n_each: int = 4
) -> tuple[Tensor, Tensor]:
    """The unit's weights for a mixed probe history: ``n_each`` behaviours in ``category``
    and ``n_each`` in other categories (seeded items), the candidate being that
    category's centre.

    Returns:
        the weights of the matching behaviours ``(n_each,)`` and of the others ``(n_each,)``.
    """
    generator = torch.Generator().manual_seed(seed)
    n_categories = catalogue.centres.shape[0]
    others = [(category + 1 + i) % n_categories for i in range(n_each)]
    history = torch.tensor([[category] * n_each + others])  # (1, 2 * n_each)
    device = next(model.parameters()).device
    items = catalogue.items(history, generator).to(device)
    candidate = catalogue.centres[category : category + 1].to(device)  # (1, d)
    with torch.no_grad():
        _, w = model.pool(candidate, items, torch.tensor([2 * n_each]))  # (1, 2 * n_each)
    return w[0, :n_each].cpu(), w[0, n_each:].cpu()


class InterestRun(NamedTuple):
    """Both trained poolings of one seed and the probes the chapter reads."""

    models: dict[str, InterestCTR]
    accuracy: dict[str, float]  # held-out click accuracy per pooling
    total: dict[str, list[float]]  # sum of the weights for probe users k in KS
    norm: dict[str, list[float]]  # norm of the user vector for the same users
    matching: Tensor  # DIN's weights on 4 matching behaviours of a mixed history
    other: Tensor  # ... and on its 4 behaviours of other categories

    @property
    def selectivity(self) -> float:
        """For DIN, the mean absolute weight on matching behaviours over that on the others."""
        return (self.matching.abs().mean() / self.other.abs().mean()).item()

    @property
    def sign_agreement(self) -> float:
        """For DIN, the share of the matching behaviours whose weight has their majority sign."""
        signs = self.matching.sign()
        return max((signs > 0).float().mean().item(), (signs < 0).float().mean().item())

    @property
    def gap(self) -> float:
        """Held-out accuracy, DIN pooling minus softmax pooling."""
        return self.accuracy["DIN (no softmax)"] - self.accuracy["softmax"]


@experiment
def interest_run(seed: int, *, device: str | torch.device | None = None) -> InterestRun:
    """The chapter's experiment for one seed: catalogue, both poolings trained
    (:func:`train_interest_models`), and probe users with ``k`` in ``KS`` matching
    behaviours (:func:`probe_intensity`).

    Used in: Q4.
    """
    catalogue = make_catalogue(N_CATEGORIES, d=D, generator=seed)
    models, accuracy = train_interest_models(catalogue, seed, device=device)
    total, norm = {}, {}
    for name, model in models.items():
        total[name], norm[name] = probe_intensity(model, catalogue, list(KS), seed=seed)
    matching, other = matching_weights(models["DIN (no softmax)"], catalogue, seed=seed)
    return InterestRun(models, accuracy, total, norm, matching, other)


@functools.cache
def _run(seed: int) -> InterestRun:
    return interest_run(seed, device="cpu")


def smallest_increase(totals: list[float]) -> float:
    """Smallest increase of ``|sum of weights|`` from one probe user to the next (``k`` to
    ``k + 1`` matching behaviours): positive when the intensity grows at every step.

    Used in: Q4.
    """
    magnitude = [abs(t) for t in totals]
    return min(b - a for a, b in zip(magnitude, magnitude[1:], strict=False))


CLAIMS = claims(
    Claim(
        "q04-din-beats-softmax",
        "held-out click accuracy, DIN pooling − softmax pooling",
        lambda seed: _run(seed).gap,
        ">",
        0.03,
        SEEDS,
    ),
    Claim(
        "q04-din-norm-grows",
        "DIN: norm of the user vector with 8 matching behaviours over 1",
        lambda seed: (
            _run(seed).norm["DIN (no softmax)"][-1] / _run(seed).norm["DIN (no softmax)"][0]
        ),
        ">",
        4.0,
        SEEDS,
    ),
    Claim(
        "q04-softmax-norm-flat",
        "softmax: largest over smallest user-vector norm, 1 to 8 matching behaviours",
        lambda seed: max(_run(seed).norm["softmax"]) / min(_run(seed).norm["softmax"]),
        "<",
        1.4,
        SEEDS,
    ),
    Claim(
        "q04-din-intensity-increases",
        "DIN: smallest increase of |sum of weights| from k to k + 1 matching behaviours",
        lambda seed: smallest_increase(_run(seed).total["DIN (no softmax)"]),
        ">",
        0.0,
        SEEDS,
    ),
    Claim(
        "q04-din-weight-selective",
        "DIN, mixed history: mean |weight| of matching behaviours over that of the others",
        lambda seed: _run(seed).selectivity,
        ">",
        1.5,
        SEEDS,
    ),
    Claim(
        "q04-din-weight-sign",
        "DIN, mixed history: share of matching behaviours whose weight has the majority sign",
        lambda seed: _run(seed).sign_agreement,
        ">=",
        1.0,
        SEEDS,
    ),
)
