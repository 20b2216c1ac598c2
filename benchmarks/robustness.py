"""Seed spreads of every seed-dependent claim in the book -> ``appendix/robustness.md``.

A chapter runs its experiment with one seed and asserts a margin. This script reruns
the *same* experiment (a function in ``qkv``, never a copy) over many seeds, and
records each value, so that a reader can check that the margin holds for every seed
tried. Run by hand (minutes; the test suite does not rerun it)::

    python benchmarks/robustness.py              # every claim
    python benchmarks/robustness.py q03 q06      # only these chapters; the rest is kept

The values go to ``appendix/robustness.json``; the page ``appendix/robustness.md`` is
written from that file. ``tests/test_robustness.py`` checks that every claim below has
its values, that every value satisfies the margin the chapter asserts, and that the
page is up to date.

To add a claim: write the experiment as a function of ``seed`` in the ``qkv`` module
where its concept lives, call it in the chapter with one seed and assert the margin,
add a :class:`Claim` here, run ``python benchmarks/robustness.py qNN``, and link the
chapter to ``{ref}`robustness-qNN```.
"""

from __future__ import annotations

import argparse
import json
import operator
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # qkv without installing

import torch  # noqa: E402

import qkv  # noqa: E402

JSON_PATH = ROOT / "appendix" / "robustness.json"
PAGE_PATH = ROOT / "appendix" / "robustness.md"
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Claim:
    """One seed-dependent claim: the chapter asserts ``measure(seed) <op> margin``."""

    id: str  # unique, e.g. "q03-attention-gap"
    chapter: str  # the notebook's stem, e.g. "q03_attention_vs_seq2seq"
    text: str  # the claim in words, as the chapter states it
    measure: Callable[[int], float]  # seed -> the number the chapter asserts on
    op: str  # ">", ">=", "<" or "<="
    margin: float  # the chapter's asserted bound
    seeds: tuple[int, ...] = field(default_factory=lambda: tuple(range(10)))
    chapter_seed: int = 0  # the seed the chapter itself runs

    @property
    def number(self) -> str:
        """``"q03"`` for chapter ``q03_attention_vs_seq2seq``."""
        return self.chapter.split("_", 1)[0]


def holds(op: str, value: float, margin: float) -> bool:
    """Does ``value <op> margin`` hold?"""
    return OPS[op](value, margin)


# Every claim of the book, in chapter order. The ``measure`` functions live in qkv.
CLAIMS: list[Claim] = []


def _q01_claims() -> list[Claim]:
    from qkv.explanation import same_output_experiment, top_weight_is_not_top_contributor
    from qkv.kernel_regression import bandwidth_errors

    def mse_ratio(seed: int) -> float:
        errors = bandwidth_errors(seed)
        return errors[1.0] / errors[0.3]

    chapter, seeds = "q01_what_is_attention", tuple(range(20))
    return [
        Claim(
            "q01-oversmoothing",
            chapter,
            "Nadaraya–Watson: MSE to f with σ = 1 over MSE with σ = 0.3",
            mse_ratio,
            ">",
            3.0,
            seeds,
        ),
        Claim(
            "q01-same-output-distance",
            chapter,
            "total variation distance between two weight vectors with the same output",
            lambda seed: same_output_experiment(seed).distance,
            ">",
            0.3,
            seeds,
        ),
        Claim(
            "q01-top-weight-not-top-contributor",
            chapter,
            "share of queries whose top-weighted key is not the top contributor α_i‖v_i‖",
            top_weight_is_not_top_contributor,
            ">",
            0.3,
            seeds,
        ),
    ]


CLAIMS += _q01_claims()


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
        Claim(
            "q03-classic-degrades",
            chapter,
            "classic model, reversal, 100 steps: digit accuracy at 10–12 digits",
            lambda seed: run(seed, False, "reverse", 100)[0],
            "<",
            0.6,
            seeds,
        ),
        Claim(
            "q03-copy-as-hard-as-reverse",
            chapter,
            "classic model, 100 steps: |copy − reverse| accuracy at 10–12 digits",
            lambda seed: abs(
                run(seed, False, "copy", 100)[0] - run(seed, False, "reverse", 100)[0]
            ),
            "<",
            0.1,
            seeds,
        ),
        Claim(
            "q03-attention-gap",
            chapter,
            "reversal, 100 steps: attention − classic accuracy at 10–12 digits",
            lambda seed: run(seed, True, "reverse", 100)[0] - run(seed, False, "reverse", 100)[0],
            ">",
            0.4,
            seeds,
        ),
        Claim(
            "q03-mirror-weight",
            chapter,
            "attention model, 12-digit reversal: mean weight on the mirrored digit",
            lambda seed: run(seed, True, "reverse", 100)[1],
            ">",
            0.3,
            seeds,
        ),
        Claim(
            "q03-mirror-argmax",
            chapter,
            "attention model, 12-digit reversal: share of steps whose top weight is the mirror",
            lambda seed: run(seed, True, "reverse", 100)[2],
            ">",
            0.5,
            seeds,
        ),
        Claim(
            "q03-classic-400-steps",
            chapter,
            "classic model, reversal, 400 steps (page only): accuracy at 10–12 digits",
            lambda seed: run(seed, False, "reverse", 400)[0],
            ">",
            0.4,
            long_seeds,
        ),
        Claim(
            "q03-classic-1500-steps",
            chapter,
            "classic model, reversal, 1500 steps (page only): accuracy at 10–12 digits",
            lambda seed: run(seed, False, "reverse", 1500)[0],
            ">",
            0.6,
            long_seeds,
        ),
        Claim(
            "q03-gap-1500-steps",
            chapter,
            "reversal, 1500 steps each (page only): attention − classic at 10–12 digits",
            lambda seed: run(seed, True, "reverse", 1500)[0] - run(seed, False, "reverse", 1500)[0],
            ">",
            0.1,
            long_seeds,
        ),
        Claim(
            "q03-narrow-classic-1500-steps",
            chapter,
            "d_hidden = 8 (c: 16 numbers), classic, reversal, 1500 steps (page only): "
            "accuracy at 10–12 digits",
            lambda seed: run(seed, False, "reverse", 1500, 8)[0],
            "<",
            0.5,
            long_seeds,
        ),
        Claim(
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


CLAIMS += _q03_claims()


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
        Claim(
            "q04-din-beats-softmax",
            chapter,
            "held-out click accuracy, DIN pooling − softmax pooling",
            lambda seed: run(seed)[0],
            ">",
            0.03,
            seeds,
        ),
        Claim(
            "q04-din-norm-grows",
            chapter,
            "DIN: norm of the user vector with 8 matching behaviours over 1",
            lambda seed: run(seed)[1],
            ">",
            4.0,
            seeds,
        ),
        Claim(
            "q04-softmax-norm-flat",
            chapter,
            "softmax: largest over smallest user-vector norm, 1 to 8 matching behaviours",
            lambda seed: run(seed)[2],
            "<",
            1.4,
            seeds,
        ),
        Claim(
            "q04-din-intensity-increases",
            chapter,
            "DIN: smallest increase of |sum of weights| from k to k + 1 matching behaviours",
            lambda seed: run(seed)[3],
            ">",
            0.0,
            seeds,
        ),
    ]


CLAIMS += _q04_claims()


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
        Claim(
            "q06-diagonal-untied",
            chapter,
            "untied layers: largest share of rows whose max is the diagonal (d_k = 32, 8, 4)",
            lambda seed: max(u for u, _ in diagonal_max_rates(seed).values()),
            "<",
            0.15,
            seeds,
        ),
        Claim(
            "q06-diagonal-tied",
            chapter,
            "W_Q = W_K: smallest share of rows whose max is the diagonal (d_k = 32, 8, 4)",
            lambda seed: min(t for _, t in diagonal_max_rates(seed).values()),
            ">",
            0.4,
            seeds,
        ),
        Claim(
            "q06-diagonal-tied-wide",
            chapter,
            "W_Q = W_K, d_k = 32: share of rows whose max is the diagonal",
            lambda seed: diagonal_max_rates(seed)[32][1],
            ">",
            0.95,
            seeds,
        ),
        Claim(
            "q06-recall-untied",
            chapter,
            "associative recall, 500 steps: untied accuracy",
            lambda seed: recall(seed)["untied"][0],
            ">",
            0.95,
            recall_seeds,
        ),
        Claim(
            "q06-recall-kv-tied",
            chapter,
            "associative recall, 500 steps: W_K = W_V accuracy",
            lambda seed: recall(seed)["W_K = W_V"][0],
            ">",
            0.5,
            recall_seeds,
        ),
        Claim(
            "q06-recall-kv-tied-slower",
            chapter,
            "associative recall, 500 steps: untied − W_K = W_V accuracy",
            lambda seed: recall(seed)["untied"][0] - recall(seed)["W_K = W_V"][0],
            ">",
            0.03,
            recall_seeds,
        ),
        Claim(
            "q06-recall-qk-tied",
            chapter,
            "associative recall, 500 steps: W_Q = W_K accuracy",
            lambda seed: recall(seed)["W_Q = W_K"][0],
            ">",
            0.1,
            recall_seeds,
        ),
        Claim(
            "q06-self-weight-qk-tied",
            chapter,
            "W_Q = W_K: the query's weight on itself after 500 steps",
            lambda seed: recall(seed)["W_Q = W_K"][1],
            ">",
            0.01,
            recall_seeds,
        ),
        Claim(
            "q06-self-weight-untied",
            chapter,
            "untied: the query's weight on itself after 500 steps",
            lambda seed: recall(seed)["untied"][1],
            "<",
            0.005,
            recall_seeds,
        ),
        Claim(
            "q06-recall-1500-steps",
            chapter,
            "1500 steps (page only): lowest accuracy of the three variants",
            lambda seed: min(a for a, _ in recall(seed, 1500).values()),
            ">",
            0.95,
            long_seeds,
        ),
        Claim(
            "q06-recall-wide",
            chapter,
            "d_model = d_k = 24, 500 steps (page only): lowest accuracy of the three variants",
            lambda seed: min(a for a, _ in recall(seed, 500, 24).values()),
            ">",
            0.95,
            long_seeds,
        ),
    ]


CLAIMS += _q06_claims()


def run(claim: Claim) -> dict:
    """Measure ``claim`` over its seeds; the record stored in the JSON file."""
    values = []
    for seed in claim.seeds:
        qkv.seed_everything(seed)
        with torch.random.fork_rng():
            values.append(float(claim.measure(seed)))
    return {
        "chapter": claim.chapter,
        "text": claim.text,
        "op": claim.op,
        "margin": claim.margin,
        "seeds": list(claim.seeds),
        "chapter_seed": claim.chapter_seed,
        "values": values,
    }


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def page(results: dict[str, dict]) -> str:
    """The Markdown page for ``results`` (claim id -> record), grouped by chapter."""
    lines = [
        "# Robustness: every seed-dependent claim over many seeds",
        "",
        "Each chapter runs its experiments with one fixed seed and asserts a margin. The",
        "table below reruns the same code (a function in `qkv`) over several seeds, so you can",
        "check that the asserted margin holds for every seed tried, and see how far the",
        "chapter's own seed sits from the rest. Regenerate it with",
        "`python benchmarks/robustness.py` (minutes on a laptop CPU); the test suite checks",
        "that every value listed satisfies its margin.",
        "",
    ]
    by_chapter: dict[str, list[tuple[str, dict]]] = {}
    for claim_id, record in results.items():
        by_chapter.setdefault(record["chapter"], []).append((claim_id, record))
    for chapter in sorted(by_chapter):
        number = chapter.split("_", 1)[0]
        lines += [
            f"({'robustness-' + number})=",
            f"## {number.upper()}: {{doc}}`{chapter} <../chapters/{_part(chapter)}/{chapter}>`",
            "",
            "| claim | asserted | seeds | min | median | max | chapter's seed |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for claim_id, r in by_chapter[chapter]:
            values = r["values"]
            own = (
                values[r["seeds"].index(r["chapter_seed"])]
                if r["chapter_seed"] in r["seeds"]
                else float("nan")
            )
            seeds = f"{r['seeds'][0]}–{r['seeds'][-1]} ({len(r['seeds'])})"
            lines.append(
                f"| {r['text']} (`{claim_id}`) | {r['op']} {_fmt(r['margin'])} | {seeds} | "
                f"{_fmt(min(values))} | {_fmt(statistics.median(values))} | "
                f"{_fmt(max(values))} | {_fmt(own)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _part(chapter: str) -> str:
    """The chapter's folder under chapters/ (attention, transformer or bert)."""
    matches = list((ROOT / "chapters").glob(f"*/{chapter}.ipynb"))
    if len(matches) != 1:
        raise FileNotFoundError(f"no single notebook chapters/*/{chapter}.ipynb")
    return matches[0].parent.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "chapters", nargs="*", help="chapter numbers to rerun, e.g. q03 (default: all)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    fresh: dict[str, dict] = {}
    for claim in CLAIMS:
        if args.chapters and claim.number not in args.chapters:
            continue
        start = time.perf_counter()
        fresh[claim.id] = run(claim)
        values = fresh[claim.id]["values"]
        bad = [
            s
            for s, v in zip(claim.seeds, values, strict=True)
            if not holds(claim.op, v, claim.margin)
        ]
        print(
            f"{claim.id}: min {min(values):.4g} median {statistics.median(values):.4g} "
            f"max {max(values):.4g} ({time.perf_counter() - start:.0f} s)"
            + (f"  MARGIN FAILS for seeds {bad}" if bad else "")
        )
    # Read the stored records only now, so that runs for other chapters that finished
    # meanwhile are kept.
    results = json.loads(JSON_PATH.read_text(encoding="utf-8")) if JSON_PATH.exists() else {}
    order = {c.id: i for i, c in enumerate(CLAIMS)}
    results = {k: v for k, v in {**results, **fresh}.items() if k in order}  # drop removed
    results = dict(sorted(results.items(), key=lambda kv: order[kv[0]]))
    JSON_PATH.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    PAGE_PATH.write_text(page(results), encoding="utf-8")
    print(f"wrote {JSON_PATH.relative_to(ROOT)} and {PAGE_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
