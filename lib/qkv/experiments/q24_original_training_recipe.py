"""Q24 (transformer/q24_original_training_recipe): what label smoothing does to a model.

- :func:`label_smoothing_experiment`: train the same small language model with and
  without label smoothing (:func:`qkv.experiments.q19_warmup.train_markov_lm`, the
  training function of Q19 and Q22) and measure its calibration on fresh text
  (:func:`qkv.label_smoothing.calibration`).
- :func:`smoothing_results`: the chapter's four runs (two regimes × two epsilons).
"""

from __future__ import annotations

import functools

from qkv.experiments import Claim, claims, experiment
from qkv.experiments.q19_warmup import markov_language, train_markov_lm
from qkv.label_smoothing import calibration

__all__ = ["CLAIMS", "REGIMES", "label_smoothing_experiment", "smoothing_results"]

REGIMES = {"16 sequences": 16, "fresh data": None}  # regime -> n_train
EPSILONS = (0.0, 0.1)


@experiment
def label_smoothing_experiment(
    seed: int, epsilon: float, *, n_train: int | None, steps: int = 150
) -> dict[str, float]:
    """Train a 1-layer Post-LN language model with label smoothing ``epsilon``; measure it.

    ``n_train=16`` gives a small fixed training set that the model memorises
    (the over-confident regime); ``n_train=None`` gives a fresh batch every step
    (no over-fitting). Learning rate 3e-3 after a 20-step warm-up. The
    measurements (:func:`qkv.label_smoothing.calibration`: confidence, accuracy,
    ECE, NLL) are on 512 fresh sequences of the same language, never seen in
    training; ``train_loss`` is the last training loss.
    """
    model, history = train_markov_lm(
        seed,
        norm_first=False,
        warmup_steps=20,
        lr=3e-3,
        steps=steps,
        n_layers=1,
        label_smoothing=epsilon,
        n_train=n_train,
        length=33,
    )
    held_out = markov_language().sample(512, 33, generator=10_000 + seed)
    device = next(model.parameters()).device
    return calibration(model, held_out.to(device)) | {"train_loss": history.loss[-1]}


@functools.cache
def smoothing_results(seed: int) -> dict[tuple[str, float], dict[str, float]]:
    """``{(regime, epsilon): measurements}`` for the chapter's four runs."""
    return {
        (regime, eps): label_smoothing_experiment(seed, eps, n_train=n_train)
        for regime, n_train in REGIMES.items()
        for eps in EPSILONS
    }


def _gap(seed: int, regime: str, key: str, smoothed_minus_plain: bool) -> float:
    r = smoothing_results(seed)
    plain, smoothed = r[regime, 0.0][key], r[regime, 0.1][key]
    return smoothed - plain if smoothed_minus_plain else plain - smoothed


CLAIMS = claims(
    Claim(
        "q24-smoothing-ece",
        "16 training sequences: held-out ECE without smoothing minus with eps = 0.1",
        lambda seed: _gap(seed, "16 sequences", "ece", False),
        ">",
        0.1,
        seeds=tuple(range(5)),
    ),
    Claim(
        "q24-smoothing-confidence",
        "16 training sequences: mean confidence without smoothing minus with eps = 0.1",
        lambda seed: _gap(seed, "16 sequences", "confidence", False),
        ">",
        0.1,
        seeds=tuple(range(5)),
    ),
    Claim(
        "q24-smoothing-nll",
        "fresh data every step: held-out NLL with eps = 0.1 minus without (nats)",
        lambda seed: _gap(seed, "fresh data", "nll", True),
        ">",
        0.05,
        seeds=tuple(range(5)),
    ),
    Claim(
        "q24-smoothing-nll-overfit",
        "16 training sequences: held-out NLL without smoothing minus with eps = 0.1 (nats)",
        lambda seed: _gap(seed, "16 sequences", "nll", False),
        ">",
        0.3,
        seeds=tuple(range(5)),
    ),
)
