"""Seed spreads of every seed-dependent claim in the book -> ``appendix/robustness.md``.

A chapter runs its experiment with one seed and checks a claim. This script is only a
runner: the claims and the experiments they measure live in the chapters' modules,
``qkv.experiments.qNN_<stem>`` (``CLAIMS``), and the chapter calls the very same
functions and the same declared margin. The script reruns each claim over its seeds
and stores the values in ``lib/qkv/experiments/robustness/qNN.json`` (package data:
chapters glue their seed ranges from it), then writes the page from those files. Run
by hand (minutes; the test suite does not rerun it)::

    python benchmarks/robustness.py              # every claim
    python benchmarks/robustness.py q03 q06      # only these chapters; the rest is kept
    python benchmarks/robustness.py --page       # only rewrite the page from the data

``tests/test_robustness.py`` checks that every claim has its values, that every value
satisfies its margin, that each chapter checks each of its claims, and that the page is
up to date.

To add a claim: write the experiment in the chapter's ``qkv.experiments`` module as a
function of ``seed`` decorated with ``@experiment``, add a ``Claim`` to its ``CLAIMS``,
call it in the chapter with ``CLAIMS["qNN-..."].check(value)``, run
``python benchmarks/robustness.py qNN``, and link the chapter to
``{ref}`robustness-qNN```.
"""

# ruff: noqa: E501  (LEGACY claims keep their one-line layout until they move, issue 16)
from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # qkv without installing

import torch  # noqa: E402

import qkv  # noqa: E402
from qkv.experiments import ROBUSTNESS_DIR, Claim, modules  # noqa: E402

PAGE_PATH = ROOT / "appendix" / "robustness.md"


def legacy_claim(
    id: str,
    chapter: str,
    text: str,
    measure: Callable[[int], float],
    op: str,
    margin: float,
    seeds: tuple[int, ...] = tuple(range(10)),
    chapter_seed: int = 0,
) -> Claim:
    """A claim still declared here; ``chapter`` must match the id's number."""
    if not chapter.startswith(id.split("-", 1)[0] + "_"):
        raise ValueError(f"{id}: chapter {chapter} does not match the id")
    return Claim(id, text, measure, op, margin, tuple(seeds), chapter_seed)


@functools.cache
def _markov_final_loss(seed: int, norm_first: bool, warmup_steps: int) -> float:
    """Q19/Q22: final training loss of :func:`qkv.stability.train_markov_lm` (lr 1e-2)."""
    from qkv.stability import final_loss, train_markov_lm

    return final_loss(train_markov_lm(seed, norm_first=norm_first, warmup_steps=warmup_steps)[1])


@functools.cache
def _smoothing(seed: int, epsilon: float, n_train: int | None) -> dict[str, float]:
    """Q24: :func:`qkv.label_smoothing.label_smoothing_experiment`."""
    from qkv.label_smoothing import label_smoothing_experiment

    return label_smoothing_experiment(seed, epsilon, n_train=n_train)


@functools.cache
def _gradient_norms(seed: int, norm_first: bool) -> tuple[float, ...]:
    """Q22: :func:`qkv.stability.gradient_norms_at_init` (12 layers), bottom layer first."""
    from qkv.stability import gradient_norms_at_init

    return tuple(gradient_norms_at_init(seed, norm_first=norm_first))


def _gradient_growth(seed: int) -> float:
    """Q22: (last / first layer gradient norm) of Post-LN divided by that of Pre-LN."""
    post, pre = _gradient_norms(seed, False), _gradient_norms(seed, True)
    return (post[-1] / post[0]) / (pre[-1] / pre[0])


def _last_layer_gradient_ratio(seed: int) -> float:
    """Q22: last-layer gradient norm, Post-LN over Pre-LN."""
    return _gradient_norms(seed, False)[-1] / _gradient_norms(seed, True)[-1]


def _post_minus_pre_ln(seed: int) -> float:
    """Q19/Q22: final loss of Post-LN minus Pre-LN, both without warm-up at lr 1e-2."""
    return _markov_final_loss(seed, False, 0) - _markov_final_loss(seed, True, 0)


_FIVE = tuple(range(5))

# Claims not yet moved to their chapter's qkv.experiments module (issue 16).
LEGACY: list[Claim] = [
    legacy_claim(
        "q19-warmup-rescues-post-ln",
        "q19_warmup",
        "6-layer Post-LN at lr 1e-2: final loss without warm-up minus with 30 warm-up steps (nats)",
        lambda seed: _markov_final_loss(seed, False, 0) - _markov_final_loss(seed, False, 30),
        ">",
        0.3,
        seeds=_FIVE,
    ),
    legacy_claim(
        "q19-pre-ln-needs-no-warmup",
        "q19_warmup",
        "lr 1e-2, no warm-up: final loss of Post-LN minus Pre-LN (nats)",
        _post_minus_pre_ln,
        ">",
        0.8,
        seeds=_FIVE,
    ),
    legacy_claim(
        "q22-gradient-growth",
        "q22_residual_layernorm",
        "12 layers at init: last/first layer gradient norm, Post-LN over Pre-LN",
        _gradient_growth,
        ">",
        2.0,
    ),
    legacy_claim(
        "q22-last-layer-gradient",
        "q22_residual_layernorm",
        "12 layers at init: last layer's gradient norm, Post-LN over Pre-LN",
        _last_layer_gradient_ratio,
        ">",
        2.0,
    ),
    legacy_claim(
        "q22-pre-ln-high-lr",
        "q22_residual_layernorm",
        "lr 1e-2, no warm-up: final loss of Post-LN minus Pre-LN (nats)",
        _post_minus_pre_ln,
        ">",
        0.8,
        seeds=_FIVE,
    ),
    legacy_claim(
        "q24-smoothing-ece",
        "q24_original_training_recipe",
        "16 training sequences: held-out ECE without smoothing minus with eps = 0.1",
        lambda seed: _smoothing(seed, 0.0, 16)["ece"] - _smoothing(seed, 0.1, 16)["ece"],
        ">",
        0.1,
        seeds=_FIVE,
    ),
    legacy_claim(
        "q24-smoothing-confidence",
        "q24_original_training_recipe",
        "16 training sequences: mean confidence without smoothing minus with eps = 0.1",
        lambda seed: (
            _smoothing(seed, 0.0, 16)["confidence"] - _smoothing(seed, 0.1, 16)["confidence"]
        ),
        ">",
        0.1,
        seeds=_FIVE,
    ),
    legacy_claim(
        "q24-smoothing-nll",
        "q24_original_training_recipe",
        "fresh data every step: held-out NLL with eps = 0.1 minus without (nats)",
        lambda seed: _smoothing(seed, 0.1, None)["nll"] - _smoothing(seed, 0.0, None)["nll"],
        ">",
        0.05,
        seeds=_FIVE,
    ),
    legacy_claim(
        "q24-smoothing-nll-overfit",
        "q24_original_training_recipe",
        "16 training sequences: held-out NLL without smoothing minus with eps = 0.1 (nats)",
        lambda seed: _smoothing(seed, 0.0, 16)["nll"] - _smoothing(seed, 0.1, 16)["nll"],
        ">",
        0.3,
        seeds=_FIVE,
    ),
]

LEGACY += [  # Q5: how much of position 0 reaches the last output of a tanh RNN (L = 24)
    legacy_claim(
        id="q05-rnn-default-init",
        chapter="q05_self_attention_core",
        text="tanh RNN, PyTorch's default init: influence of position 0 / position 23",
        measure=lambda seed: qkv.complexity.rnn_reach_ratio(seed, "default"),
        op="<",
        margin=1e-5,
    ),
    legacy_claim(
        id="q05-rnn-orthogonal-more",
        chapter="q05_self_attention_core",
        text="tanh RNN, orthogonal W_hh: influence of position 0 / position 23 (more reach)",
        measure=lambda seed: qkv.complexity.rnn_reach_ratio(seed, "orthogonal"),
        op=">",
        margin=1e-5,
    ),
    legacy_claim(
        id="q05-rnn-orthogonal-still-decays",
        chapter="q05_self_attention_core",
        text="tanh RNN, orthogonal W_hh: influence of position 0 / position 23 (still decays)",
        measure=lambda seed: qkv.complexity.rnn_reach_ratio(seed, "orthogonal"),
        op="<",
        margin=1e-2,
    ),
]

LEGACY += [  # Q7: how sharp the unscaled and the scaled dot product are (6 queries, 9 keys, d = 64)
    legacy_claim(
        id="q07-dot-nearly-one-hot",
        chapter="q07_attention_variants",
        text="unscaled dot product: mean largest attention weight",
        measure=lambda seed: qkv.scoring.mean_max_weight(seed, "dot"),
        op=">",
        margin=0.6,
        seeds=tuple(range(20)),
    ),
    legacy_claim(
        id="q07-scaled-dot-spread-out",
        chapter="q07_attention_variants",
        text="scaled dot product: mean largest attention weight",
        measure=lambda seed: qkv.scoring.mean_max_weight(seed, "scaled dot"),
        op="<",
        margin=0.45,
        seeds=tuple(range(20)),
    ),
]


def _q01_claims() -> list[Claim]:
    from qkv.explanation import same_output_experiment, top_weight_is_not_top_contributor
    from qkv.kernel_regression import bandwidth_errors

    def mse_ratio(seed: int) -> float:
        errors = bandwidth_errors(seed)
        return errors[1.0] / errors[0.3]

    chapter, seeds = "q01_what_is_attention", tuple(range(20))
    return [
        legacy_claim(
            "q01-oversmoothing",
            chapter,
            "Nadaraya–Watson: MSE to f with σ = 1 over MSE with σ = 0.3",
            mse_ratio,
            ">",
            3.0,
            seeds,
        ),
        legacy_claim(
            "q01-same-output-distance",
            chapter,
            "total variation distance between two weight vectors with the same output",
            lambda seed: same_output_experiment(seed).distance,
            ">",
            0.3,
            seeds,
        ),
        legacy_claim(
            "q01-top-weight-not-top-contributor",
            chapter,
            "share of queries whose top-weighted key is not the top contributor α_i‖v_i‖",
            top_weight_is_not_top_contributor,
            ">",
            0.3,
            seeds,
        ),
    ]


LEGACY += _q01_claims()


def _q03_claims() -> list[Claim]:
    from functools import cache

    from qkv.seq2seq import digit_accuracy, reversal_alignment, train_digit_model

    @cache
    def run(
        seed: int, attention: bool, task: str, steps: int, d_hidden: int = 32
    ) -> tuple[float, float, float]:
        """(accuracy at 10-12 digits, mirror weight, mirror argmax rate) of one trained model."""
        model, _ = train_digit_model(
            attention=attention, task=task, steps=steps, seed=seed, d_hidden=d_hidden, device="cpu"
        )
        long = sum(digit_accuracy(model, task=task)[-3:]) / 3
        if not attention:
            return long, float("nan"), float("nan")
        _, on_mirror, argmax_rate = reversal_alignment(model)
        return long, on_mirror, argmax_rate

    chapter, seeds, long_seeds = "q03_attention_vs_seq2seq", tuple(range(5)), (0, 1, 2)
    return [
        legacy_claim(
            "q03-classic-degrades",
            chapter,
            "classic model, reversal, 100 steps: digit accuracy at 10–12 digits",
            lambda seed: run(seed, False, "reverse", 100)[0],
            "<",
            0.6,
            seeds,
        ),
        legacy_claim(
            "q03-copy-as-hard-as-reverse",
            chapter,
            "classic model, 100 steps: copy vs reverse, absolute difference at 10–12 digits",
            lambda seed: abs(
                run(seed, False, "copy", 100)[0] - run(seed, False, "reverse", 100)[0]
            ),
            "<",
            0.1,
            seeds,
        ),
        legacy_claim(
            "q03-attention-gap",
            chapter,
            "reversal, 100 steps: attention − classic accuracy at 10–12 digits",
            lambda seed: run(seed, True, "reverse", 100)[0] - run(seed, False, "reverse", 100)[0],
            ">",
            0.4,
            seeds,
        ),
        legacy_claim(
            "q03-mirror-weight",
            chapter,
            "attention model, 12-digit reversal: mean weight on the mirrored digit",
            lambda seed: run(seed, True, "reverse", 100)[1],
            ">",
            0.3,
            seeds,
        ),
        legacy_claim(
            "q03-mirror-argmax",
            chapter,
            "attention model, 12-digit reversal: share of steps whose top weight is the mirror",
            lambda seed: run(seed, True, "reverse", 100)[2],
            ">",
            0.5,
            seeds,
        ),
        legacy_claim(
            "q03-classic-400-steps",
            chapter,
            "classic model, reversal, 400 steps (page only): accuracy at 10–12 digits",
            lambda seed: run(seed, False, "reverse", 400)[0],
            ">",
            0.4,
            long_seeds,
        ),
        legacy_claim(
            "q03-classic-1500-steps",
            chapter,
            "classic model, reversal, 1500 steps (page only): accuracy at 10–12 digits",
            lambda seed: run(seed, False, "reverse", 1500)[0],
            ">",
            0.6,
            long_seeds,
        ),
        legacy_claim(
            "q03-gap-1500-steps",
            chapter,
            "reversal, 1500 steps each (page only): attention − classic at 10–12 digits",
            lambda seed: run(seed, True, "reverse", 1500)[0] - run(seed, False, "reverse", 1500)[0],
            ">",
            0.1,
            long_seeds,
        ),
        legacy_claim(
            "q03-narrow-classic-1500-steps",
            chapter,
            "d_hidden = 8 (c: 16 numbers), classic, reversal, 1500 steps (page only): "
            "accuracy at 10–12 digits",
            lambda seed: run(seed, False, "reverse", 1500, 8)[0],
            "<",
            0.5,
            long_seeds,
        ),
        legacy_claim(
            "q03-narrow-gap-1500-steps",
            chapter,
            "d_hidden = 8, reversal, 1500 steps each (page only): "
            "attention − classic at 10–12 digits",
            lambda seed: (
                run(seed, True, "reverse", 1500, 8)[0] - run(seed, False, "reverse", 1500, 8)[0]
            ),
            ">",
            0.4,
            long_seeds,
        ),
    ]


LEGACY += _q03_claims()


def _q04_claims() -> list[Claim]:
    from functools import cache

    from qkv.din import make_catalogue, probe_intensity, train_interest_models

    @cache
    def run(seed: int) -> tuple[float, float, float, float]:
        """(accuracy gap, DIN norm growth, softmax norm spread, smallest DIN increment)."""
        catalogue = make_catalogue(6, d=8, generator=seed)
        models, accuracy = train_interest_models(catalogue, seed, device="cpu")
        ks = list(range(1, 9))
        din_total, din_norm = probe_intensity(models["DIN (no softmax)"], catalogue, ks, seed=seed)
        _, soft_norm = probe_intensity(models["softmax"], catalogue, ks, seed=seed)
        magnitude = [abs(t) for t in din_total]
        return (
            accuracy["DIN (no softmax)"] - accuracy["softmax"],
            din_norm[-1] / din_norm[0],
            max(soft_norm) / min(soft_norm),
            min(b - a for a, b in zip(magnitude, magnitude[1:], strict=False)),
        )

    chapter, seeds = "q04_self_vs_target_attention", tuple(range(10))
    return [
        legacy_claim(
            "q04-din-beats-softmax",
            chapter,
            "held-out click accuracy, DIN pooling − softmax pooling",
            lambda seed: run(seed)[0],
            ">",
            0.03,
            seeds,
        ),
        legacy_claim(
            "q04-din-norm-grows",
            chapter,
            "DIN: norm of the user vector with 8 matching behaviours over 1",
            lambda seed: run(seed)[1],
            ">",
            4.0,
            seeds,
        ),
        legacy_claim(
            "q04-softmax-norm-flat",
            chapter,
            "softmax: largest over smallest user-vector norm, 1 to 8 matching behaviours",
            lambda seed: run(seed)[2],
            "<",
            1.4,
            seeds,
        ),
        legacy_claim(
            "q04-din-intensity-increases",
            chapter,
            "DIN: smallest increase of |sum of weights| from k to k + 1 matching behaviours",
            lambda seed: run(seed)[3],
            ">",
            0.0,
            seeds,
        ),
    ]


LEGACY += _q04_claims()


def _q06_claims() -> list[Claim]:
    from functools import cache

    from qkv.shared_projections import TIES, diagonal_max_rates, train_recall

    @cache
    def recall(seed: int, steps: int = 500, d_model: int = 12) -> dict[str, tuple[float, float]]:
        """{tie: (final held-out accuracy, final self weight)} for the three variants."""
        out = {}
        for tie in TIES:
            history = train_recall(tie, seed=seed, steps=steps, d_model=d_model, device="cpu")
            out[tie] = (history.metrics["accuracy"][-1], history.metrics["self_weight"][-1])
        return out

    chapter, seeds, recall_seeds, long_seeds = (
        "q06_keys_equal_values",
        tuple(range(10)),
        tuple(range(8)),
        (0, 1, 2),
    )
    return [
        legacy_claim(
            "q06-diagonal-untied",
            chapter,
            "untied layers: largest share of rows whose max is the diagonal (d_k = 32, 8, 4)",
            lambda seed: max(u for u, _ in diagonal_max_rates(seed).values()),
            "<",
            0.15,
            seeds,
        ),
        legacy_claim(
            "q06-diagonal-tied",
            chapter,
            "W_Q = W_K: smallest share of rows whose max is the diagonal (d_k = 32, 8, 4)",
            lambda seed: min(t for _, t in diagonal_max_rates(seed).values()),
            ">",
            0.4,
            seeds,
        ),
        legacy_claim(
            "q06-diagonal-tied-wide",
            chapter,
            "W_Q = W_K, d_k = 32: share of rows whose max is the diagonal",
            lambda seed: diagonal_max_rates(seed)[32][1],
            ">",
            0.95,
            seeds,
        ),
        legacy_claim(
            "q06-recall-untied",
            chapter,
            "associative recall, 500 steps: untied accuracy",
            lambda seed: recall(seed)["untied"][0],
            ">",
            0.95,
            recall_seeds,
        ),
        legacy_claim(
            "q06-recall-kv-tied",
            chapter,
            "associative recall, 500 steps: W_K = W_V accuracy",
            lambda seed: recall(seed)["W_K = W_V"][0],
            ">",
            0.5,
            recall_seeds,
        ),
        legacy_claim(
            "q06-recall-kv-tied-slower",
            chapter,
            "associative recall, 500 steps: untied − W_K = W_V accuracy",
            lambda seed: recall(seed)["untied"][0] - recall(seed)["W_K = W_V"][0],
            ">",
            0.03,
            recall_seeds,
        ),
        legacy_claim(
            "q06-recall-qk-tied",
            chapter,
            "associative recall, 500 steps: W_Q = W_K accuracy",
            lambda seed: recall(seed)["W_Q = W_K"][0],
            ">",
            0.1,
            recall_seeds,
        ),
        legacy_claim(
            "q06-self-weight-qk-tied",
            chapter,
            "W_Q = W_K: the query's weight on itself after 500 steps",
            lambda seed: recall(seed)["W_Q = W_K"][1],
            ">",
            0.01,
            recall_seeds,
        ),
        legacy_claim(
            "q06-self-weight-untied",
            chapter,
            "untied: the query's weight on itself after 500 steps",
            lambda seed: recall(seed)["untied"][1],
            "<",
            0.005,
            recall_seeds,
        ),
        legacy_claim(
            "q06-recall-1500-steps",
            chapter,
            "1500 steps (page only): lowest accuracy of the three variants",
            lambda seed: min(a for a, _ in recall(seed, 1500).values()),
            ">",
            0.95,
            long_seeds,
        ),
        legacy_claim(
            "q06-recall-wide",
            chapter,
            "d_model = d_k = 24, 500 steps (page only): lowest accuracy of the three variants",
            lambda seed: min(a for a, _ in recall(seed, 500, 24).values()),
            ">",
            0.95,
            long_seeds,
        ),
    ]


LEGACY += _q06_claims()
# Q9: the two toy mixers of qkv.mixing, as in the chapter (L = 7, d = 12).
Q09 = "q09_attention_vs_fully_connected"
Q09_SEEDS = tuple(range(20))


def _q09_change(name: str) -> Callable[[int], float]:
    from qkv.mixing import mixing_change

    return lambda seed: mixing_change(seed, L=7, d=12)[name]


def _q09_sharpening(seed: int) -> float:
    from qkv.mixing import sharpening

    return sharpening(seed, factor=3.0, L=7, d=12)


LEGACY += [
    legacy_claim("q09-fc-change", Q09, "FC mixer: largest change of the Jacobian mixing matrix, x1 vs x2",
          _q09_change("FC"), "<", 1e-6, Q09_SEEDS),
    legacy_claim("q09-attention-change", Q09, "attention: largest change of the Jacobian mixing matrix",
          _q09_change("attention"), ">", 0.1, Q09_SEEDS),
    legacy_claim("q09-sharpening", Q09, "attention: drop of the mean row entropy at 3× input (nats)",
          _q09_sharpening, ">", 0.5, Q09_SEEDS),
]  # fmt: skip


# Q10: the neighbour task of qkv.heads, trained as in the chapter.
Q10 = "q10_multi_head_dimensions"


def _q10_held_out_mse(n_heads: int) -> Callable[[int], float]:
    from qkv.heads import train_neighbour_heads

    return lambda seed: train_neighbour_heads(n_heads, seed=seed, device="cpu").held_out_mse


LEGACY += [
    legacy_claim("q10-two-heads", Q10, "two heads (d_k = 8), 250 steps: held-out MSE",
          _q10_held_out_mse(2), "<", 0.005),
    legacy_claim("q10-one-head", Q10, "one head (d_k = 16), 250 steps: held-out MSE",
          _q10_held_out_mse(1), ">", 0.03),
]  # fmt: skip


# Q12: the experiments of qkv.saturation, with the chapter's sizes.
Q12 = "q12_scaling_sqrt_dk"
Q12_D_K = (16, 32, 64, 128, 256, 512, 1024)
Q12_SIZES = {"B": 16, "n": 64, "m": 64}
Q12_SEEDS = tuple(range(40))


def _q12_worst_variance(seed: int) -> float:
    from qkv.saturation import score_variance

    return max(abs(score_variance(d_k, seed=seed) / d_k - 1) for d_k in Q12_D_K)


def _q12_sharpness(d_k: int, scale: float, which: int) -> Callable[[int], float]:
    from qkv.saturation import softmax_sharpness

    return lambda seed: softmax_sharpness(d_k, scale, seed=seed, **Q12_SIZES)[which]


def _q12_width_spread(seed: int) -> float:
    from qkv.saturation import softmax_sharpness

    peaks = [softmax_sharpness(d, d**-0.5, seed=seed, **Q12_SIZES)[0] for d in Q12_D_K]
    return max(peaks) / min(peaks)


def _q12_logit_grad_ratio(d_k: int) -> Callable[[int], float]:
    from qkv.saturation import logit_gradient

    def ratio(seed: int) -> float:
        scaled = logit_gradient(d_k, d_k**-0.5, seed=seed, **Q12_SIZES)[0].median()
        return (scaled / logit_gradient(d_k, 1.0, seed=seed, **Q12_SIZES)[0].median()).item()

    return ratio


def _q12_exact_zeros(scale: float) -> Callable[[int], float]:
    from qkv.saturation import logit_gradient

    return lambda seed: (logit_gradient(1024, scale, seed=seed, **Q12_SIZES)[0] == 0).sum().item()


def _q12_query_grad_ratio(d_k: int) -> Callable[[int], float]:
    from qkv.saturation import query_gradient

    def ratio(seed: int) -> float:
        scaled = query_gradient(d_k, d_k**-0.5, seed=seed, **Q12_SIZES).median()
        return (scaled / query_gradient(d_k, 1.0, seed=seed, **Q12_SIZES).median()).item()

    return ratio


def _q12_folding(key: str) -> Callable[[int], float]:
    from qkv.saturation import folding_gaps

    return lambda seed: folding_gaps(seed=seed, d_model=36, d_k=12)[key]


def _q12_init_variance(t5: bool) -> Callable[[int], float]:
    from qkv.saturation import init_logit_variance

    d_model, d_k = 512, 64
    w_q_std = (d_model * d_k) ** -0.5 if t5 else d_model**-0.5
    target = 1.0 if t5 else d_k
    return lambda seed: abs(init_logit_variance(w_q_std, d_model**-0.5, seed=seed) / target - 1)


def _q12_qk_norm(kind: str) -> Callable[[int], float]:
    from qkv.saturation import qk_norm_entropy

    def measure(seed: int) -> float:
        if kind == "plain":
            return qk_norm_entropy(4, seed=seed).item()
        if kind == "gain":
            return (
                qk_norm_entropy(1, gain=1, seed=seed) - qk_norm_entropy(1, gain=4, seed=seed)
            ).item()
        growth = torch.tensor(1.0, requires_grad=True)
        gain = torch.tensor(1.0, requires_grad=True)
        d_growth, d_gain = torch.autograd.grad(
            qk_norm_entropy(growth, gain=gain, seed=seed), (growth, gain)
        )
        return abs(d_growth.item()) if kind == "d_growth" else d_gain.item()

    return measure


LEGACY += [
    legacy_claim("q12-variance", Q12, "largest deviation of Var(q·k)/d_k from 1, d_k = 16…1024",
          _q12_worst_variance, "<", 0.1, Q12_SEEDS),
    legacy_claim("q12-unscaled-peak", Q12, "unscaled: mean largest weight at d_k = 512",
          _q12_sharpness(512, 1.0, 0), ">", 0.8, Q12_SEEDS),
    legacy_claim("q12-scaled-peak", Q12, "1/√d_k: mean largest weight at d_k = 512",
          _q12_sharpness(512, 512**-0.5, 0), "<", 0.3, Q12_SEEDS),
    legacy_claim("q12-scaled-width-spread", Q12, "1/√d_k: max / min of the mean largest weight over d_k",
          _q12_width_spread, "<", 1.2, Q12_SEEDS),
    legacy_claim("q12-inverse-dk-entropy", Q12, "1/d_k: entropy at d_k = 512 (log 64 = 4.159 nats)",
          _q12_sharpness(512, 1 / 512, 1), ">", 0.99 * math.log(64), Q12_SEEDS),
    legacy_claim("q12-logit-grad-512", Q12, "median ‖∂L/∂s‖, scaled / unscaled, d_k = 512",
          _q12_logit_grad_ratio(512), ">", 30, Q12_SEEDS),
    legacy_claim("q12-logit-grad-1024", Q12, "median ‖∂L/∂s‖, scaled / unscaled, d_k = 1024",
          _q12_logit_grad_ratio(1024), ">", 300, Q12_SEEDS),
    legacy_claim("q12-zeros-unscaled", Q12, "unscaled, d_k = 1024: queries (of 1024) with ∂L/∂s = 0",
          _q12_exact_zeros(1.0), ">", 0, Q12_SEEDS),
    legacy_claim("q12-zeros-scaled", Q12, "1/√d_k, d_k = 1024: queries (of 1024) with ∂L/∂s = 0",
          _q12_exact_zeros(1024**-0.5), "<=", 0, Q12_SEEDS),
    legacy_claim("q12-query-grad-16", Q12, "median ‖∂L/∂q‖, scaled / unscaled, d_k = 16",
          _q12_query_grad_ratio(16), "<", 0.5, Q12_SEEDS),
    legacy_claim("q12-query-grad-1024", Q12, "median ‖∂L/∂q‖, scaled / unscaled, d_k = 1024",
          _q12_query_grad_ratio(1024), ">", 5, Q12_SEEDS),
    legacy_claim("q12-folded", Q12, "largest change of the output when the factor is folded into W_Q",
          _q12_folding("folded"), "<", 1e-5, Q12_SEEDS),
    legacy_claim("q12-dropped", Q12, "largest change of the output when the factor is dropped",
          _q12_folding("dropped"), ">", 0.1, Q12_SEEDS),
    legacy_claim("q12-folded-grad", Q12, "relative error of grad folded = √d_k · grad scaled",
          _q12_folding("grad_error"), "<", 1e-5, Q12_SEEDS),
    legacy_claim("q12-init-equal", Q12, "equal inits: deviation of Var(logits)/d_k from 1 (d_k = 64)",
          _q12_init_variance(t5=False), "<", 0.15, Q12_SEEDS),
    legacy_claim("q12-init-t5", Q12, "T5's init: deviation of Var(logits) from 1 (d_k = 64)",
          _q12_init_variance(t5=True), "<", 0.15, Q12_SEEDS),
    legacy_claim("q12-grown-plain", Q12, "plain scaled attention, q and k grown ×4: entropy (nats)",
          _q12_qk_norm("plain"), "<", 0.5, Q12_SEEDS),
    legacy_claim("q12-qk-norm-gain", Q12, "QK-norm: entropy at gain 1 − entropy at gain 4 (nats)",
          _q12_qk_norm("gain"), ">", 2, Q12_SEEDS),
    legacy_claim("q12-qk-norm-d-growth", Q12, "QK-norm: size of ∂H/∂growth (nats)",
          _q12_qk_norm("d_growth"), "<", 1e-3, Q12_SEEDS),
    legacy_claim("q12-qk-norm-d-gain", Q12, "QK-norm: ∂H/∂gain at gain 1 (nats)",
          _q12_qk_norm("d_gain"), "<", -1, Q12_SEEDS),
]  # fmt: skip


# Q26: the bag-of-words probe of qkv.sentence_pairs on NSP and SOP pairs.
Q26 = "q26_bert_inputs_and_pretraining_tasks"


def _q26_bag_of_words(task: str) -> Callable[[int], float]:
    from qkv.sentence_pairs import bag_of_words_accuracy

    return lambda seed: bag_of_words_accuracy(task, seed)


LEGACY += [
    legacy_claim("q26-nsp-bag-of-words", Q26, "bag of words on NSP: held-out accuracy",
          _q26_bag_of_words("nsp"), ">", 0.7),
    legacy_claim("q26-sop-bag-of-words", Q26, "bag of words on SOP: held-out accuracy",
          _q26_bag_of_words("sop"), "<", 0.6),
]  # fmt: skip


# Q21 and Q25: qkv.length_generalization and qkv.inductive_bias, as in the chapters.
def _q21(seed: int) -> dict[str, list[float]]:
    from qkv.length_generalization import length_generalization

    return length_generalization(seed).accuracy


def _q25(seed: int) -> dict[str, list[float]]:
    from qkv.inductive_bias import locality_experiment

    return locality_experiment(seed)


LEGACY += [
    legacy_claim(
        "q21-positions-needed",
        "q21_positional_encodings",
        "offset copy at the training length (16): accuracy of the worst model with positions "
        "(learned, sinusoidal, RoPE) minus that of the model without positions",
        lambda s: (
            min(_q21(s)[k][0] for k in ("learned", "sinusoidal", "rope")) - _q21(s)["none"][0]
        ),
        ">",
        0.4,
        seeds=tuple(range(5)),
    ),
    legacy_claim(
        "q21-sinusoidal-at-4x",
        "q21_positional_encodings",
        "sinusoidal model trained on 16 tokens: copy accuracy at 64 tokens",
        lambda s: _q21(s)["sinusoidal"][2],
        "<",
        0.6,
        seeds=tuple(range(5)),
    ),
    legacy_claim(
        "q21-rope-vs-sinusoidal-at-2x",
        "q21_positional_encodings",
        "copy accuracy at 32 tokens (trained on 16): RoPE minus sinusoidal",
        lambda s: _q21(s)["rope"][1] - _q21(s)["sinusoidal"][1],
        ">",
        0.2,
        seeds=tuple(range(5)),
    ),
    legacy_claim(
        "q25-small-data-gap",
        "q25_weaknesses",
        "window-sum tagging with 8 training sequences: accuracy of the convolution minus "
        "that of full attention",
        lambda s: _q25(s)["convolution"][0] - _q25(s)["full attention"][0],
        ">",
        0.2,
        seeds=tuple(range(5)),
    ),
    legacy_claim(
        "q25-small-data-window-gap",
        "q25_weaknesses",
        "same, windowed attention (window 1) minus full attention",
        lambda s: _q25(s)["windowed attention"][0] - _q25(s)["full attention"][0],
        ">",
        0.2,
        seeds=tuple(range(5)),
    ),
    legacy_claim(
        "q25-gap-narrows",
        "q25_weaknesses",
        "convolution minus full attention: the gap with 512 sequences minus the gap with 8",
        lambda s: (
            (_q25(s)["convolution"][2] - _q25(s)["full attention"][2])
            - (_q25(s)["convolution"][0] - _q25(s)["full attention"][0])
        ),
        "<",
        0.0,
        seeds=tuple(range(5)),
    ),
]


def all_claims() -> dict[str, list[Claim]]:
    """Chapter number -> its claims, from the experiment modules (and ``LEGACY``)."""
    found: dict[str, list[Claim]] = {}
    for module in modules():
        number = module.__name__.rsplit(".", 1)[1].split("_", 1)[0]
        for claim in module.CLAIMS.values():
            if claim.number != number:
                raise ValueError(f"{claim.id} is declared in {module.__name__}")
            found.setdefault(number, []).append(claim)
    for claim in LEGACY:
        found.setdefault(claim.number, []).append(claim)
    ids = [c.id for cs in found.values() for c in cs]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate claim ids: {sorted(i for i in ids if ids.count(i) > 1)}")
    return dict(sorted(found.items()))


def run(claim: Claim) -> dict:
    """Measure ``claim`` over its seeds; the record stored in the JSON file."""
    values = []
    for seed in claim.seeds:
        with qkv.reproducible(seed):
            values.append(float(claim.measure(seed)))
    return {**claim.declaration(), "values": values}


def read(number: str) -> dict[str, dict]:
    """The stored records of chapter ``number`` (claim id -> record)."""
    path = ROBUSTNESS_DIR / f"{number}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def page(claims: dict[str, list[Claim]]) -> str:
    """The Markdown page for every chapter's stored records, in chapter order."""
    lines = [
        "# Robustness: every seed-dependent claim over many seeds",
        "",
        "Each chapter runs its experiments with one fixed seed and checks a claim. The",
        "table below reruns the same code (the chapter's module in `qkv.experiments`) over",
        "several seeds, so you can check that the claimed margin holds for every seed tried,",
        "and see how far the chapter's own seed sits from the rest. Every run uses one torch",
        "thread, as the chapters do, so the chapter's column is the number its page prints on",
        "a CPU. Regenerate it with `python benchmarks/robustness.py` (minutes on a laptop",
        "CPU); the test suite checks that every value listed satisfies its margin.",
        "",
    ]
    for number, chapter_claims in claims.items():
        records = read(number)
        chapter = _chapter(number)
        lines += [
            f"({'robustness-' + number})=",
            f"## Q{int(number[1:])}: {{doc}}`../chapters/{chapter.parent.name}/{chapter.stem}`",
            "",
            "| claim | asserted | seeds | min | median | max | chapter's seed |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for claim in chapter_claims:
            r = records.get(claim.id)
            if r is None:
                raise LookupError(f"{claim.id}: no values; run the script for {number}")
            values = r["values"]
            own = values[r["seeds"].index(r["chapter_seed"])]
            seeds = f"{r['seeds'][0]}–{r['seeds'][-1]} ({len(r['seeds'])})"
            lines.append(
                f"| {r['text']} (`{claim.id}`) | {r['op']} {_fmt(r['margin'])} | {seeds} | "
                f"{_fmt(min(values))} | {_fmt(statistics.median(values))} | "
                f"{_fmt(max(values))} | {_fmt(own)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _chapter(number: str) -> Path:
    """The notebook of chapter ``number`` (e.g. ``q03``)."""
    matches = list((ROOT / "chapters").glob(f"*/{number}_*.ipynb"))
    if len(matches) != 1:
        raise FileNotFoundError(f"no single notebook chapters/*/{number}_*.ipynb")
    return matches[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "chapters", nargs="*", help="chapter numbers to rerun, e.g. q03 (default: all)"
    )
    parser.add_argument("--page", action="store_true", help="only rewrite the page")
    args = parser.parse_args(argv)
    claims = all_claims()
    for number, chapter_claims in claims.items():
        if args.page or (args.chapters and number not in args.chapters):
            continue
        fresh = {}
        for claim in chapter_claims:
            start = time.perf_counter()
            fresh[claim.id] = record = run(claim)
            values = record["values"]
            bad = [s for s, v in zip(claim.seeds, values, strict=True) if not claim.holds(v)]
            print(
                f"{claim.id}: min {min(values):.4g} median {statistics.median(values):.4g} "
                f"max {max(values):.4g} ({time.perf_counter() - start:.0f} s)"
                + (f"  MARGIN FAILS for seeds {bad}" if bad else "")
            )
        path = ROBUSTNESS_DIR / f"{number}.json"
        path.write_text(json.dumps(fresh, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    for stale in set(p.stem for p in ROBUSTNESS_DIR.glob("q*.json")) - set(claims):
        (ROBUSTNESS_DIR / f"{stale}.json").unlink()
    PAGE_PATH.write_text(page(claims), encoding="utf-8")
    print(f"wrote {PAGE_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
