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


# Claims not yet moved to their chapter's qkv.experiments module (issue 16).
LEGACY: list[Claim] = []


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


# Q16: the masked-LM experiments of qkv.mlm, as in the chapter.
Q16 = "q16_mask_rate"
Q16_SEEDS = tuple(range(6))


@functools.cache
def _q16_run(rate: float, hide: str, steps: int, seed: int):
    from qkv.mlm import train_masked_lm

    return train_masked_lm(rate, hide=hide, steps=steps, seed=seed, device="cpu")


def _q16_gap(high: float, low: float) -> Callable[[int], float]:
    return lambda seed: (
        _q16_run(high, "input", 150, seed).accuracy - _q16_run(low, "input", 150, seed).accuracy
    )


def _q16_above_bayes(seed: int) -> float:
    return max(
        _q16_run(r, "input", 150, seed).accuracy - _q16_run(r, "input", 150, seed).bayes_accuracy
        for r in (0.05, 0.15, 0.4, 0.8)
    )


def _q16_leak(key: str) -> Callable[[int], float]:
    def measure(seed: int) -> float:
        run = _q16_run(0.15, "attention", 40, seed)
        if key == "accuracy":
            return run.accuracy - run.bayes_accuracy
        return run.bayes_loss - run.loss

    return measure


LEGACY += [
    legacy_claim("q16-leak-accuracy", Q16, "hidden by attention mask, 40 steps: accuracy − Bayes accuracy",
          _q16_leak("accuracy"), ">", 0.03, Q16_SEEDS),
    legacy_claim("q16-leak-loss", Q16, "hidden by attention mask: Bayes loss − model loss (nats)",
          _q16_leak("loss"), ">", 0.05, Q16_SEEDS),
    legacy_claim("q16-40-vs-5", Q16, "150 steps: accuracy at 40% − accuracy at 5%",
          _q16_gap(0.4, 0.05), ">", 0.3, Q16_SEEDS),
    legacy_claim("q16-15-vs-5", Q16, "150 steps: accuracy at 15% − accuracy at 5%",
          _q16_gap(0.15, 0.05), ">", 0.15, Q16_SEEDS),
    legacy_claim("q16-40-vs-15", Q16, "150 steps: accuracy at 40% − accuracy at 15%",
          _q16_gap(0.4, 0.15), ">", 0.0, Q16_SEEDS),
    legacy_claim("q16-40-vs-80", Q16, "150 steps: accuracy at 40% − accuracy at 80%",
          _q16_gap(0.4, 0.8), ">", 0.05, Q16_SEEDS),
    legacy_claim("q16-below-bayes", Q16, "input hiding: largest accuracy − Bayes accuracy over the rates",
          _q16_above_bayes, "<", 0.02, Q16_SEEDS),
]  # fmt: skip


# Q17: [CLS] vs mean pooling with qkv.pooling, as in the chapter.
Q17 = "q17_cls_token"
Q17_SEEDS = tuple(range(8))


@functools.cache
def _q17_run(pooling: str, frozen: bool, seed: int):
    from qkv.pooling import train_pooling

    if frozen:
        return train_pooling(pooling, seed=seed, steps=100, lr=3e-2, freeze_encoder=True,
                             device="cpu")  # fmt: skip
    return train_pooling(pooling, seed=seed, device="cpu")


def _q17_accuracy(pooling: str, frozen: bool) -> Callable[[int], float]:
    return lambda seed: _q17_run(pooling, frozen, seed).accuracy


def _q17_attention_ratio(frozen: bool) -> Callable[[int], float]:
    from qkv.data import sequence_classification
    from qkv.pooling import cls_attention_by_token

    def measure(seed: int) -> float:
        held_out = sequence_classification(512, min_len=4, max_len=12, n_words=8,
                                           generator=20_000 + seed)  # fmt: skip
        looks = cls_attention_by_token(_q17_run("cls", frozen, seed).model, held_out)
        ratio = looks["A or B"] / looks["distractor"]
        return abs(ratio - 1) if frozen else ratio

    return measure


def _q17_probe(pooling: str, field: str) -> Callable[[int], float]:
    from qkv.pooling import probe_pooled

    return lambda seed: getattr(probe_pooled(_q17_run("cls", True, seed).model, seed=seed)[pooling],
                                field)  # fmt: skip


LEGACY += [
    legacy_claim("q17-finetuned-cls", Q17, "fine-tuned, 60 steps: accuracy with [CLS] + pooler",
          _q17_accuracy("cls", False), ">", 0.95, Q17_SEEDS),
    legacy_claim("q17-finetuned-mean", Q17, "fine-tuned, 60 steps: accuracy with mean pooling",
          _q17_accuracy("mean", False), ">", 0.95, Q17_SEEDS),
    legacy_claim("q17-frozen-cls", Q17, "frozen random encoder: linear-probe accuracy on [CLS]",
          _q17_accuracy("cls", True), "<", 0.6, Q17_SEEDS),
    legacy_claim("q17-frozen-mean", Q17, "frozen random encoder: linear-probe accuracy on the mean",
          _q17_accuracy("mean", True), ">", 0.9, Q17_SEEDS),
    legacy_claim("q17-attention-trained", Q17, "fine-tuned: [CLS] weight per A/B token ÷ per distractor",
          _q17_attention_ratio(False), ">", 1.3, Q17_SEEDS),
    legacy_claim("q17-attention-untrained", Q17, "untrained: |weight ratio A/B ÷ distractor − 1|",
          _q17_attention_ratio(True), "<", 0.2, Q17_SEEDS),
    legacy_claim("q17-frozen-cls-fitted", Q17,
          "frozen random encoder: probe fitted on standardised [CLS] features, accuracy",
          _q17_probe("cls", "accuracy"), ">", 0.95, Q17_SEEDS),
    legacy_claim("q17-frozen-cls-varying", Q17,
          "frozen random encoder: share of the [CLS] vector that varies between sequences",
          _q17_probe("cls", "varying_share"), "<", 1e-3, Q17_SEEDS),
    legacy_claim("q17-frozen-mean-varying", Q17,
          "frozen random encoder: share of the mean-pooled vector that varies",
          _q17_probe("mean", "varying_share"), ">", 0.05, Q17_SEEDS),
]  # fmt: skip


# Q20: qkv.longtext_task, one trained window classifier per seed, every remedy evaluated.
Q20 = "q20_long_text"


@functools.cache
def _q20_results(seed: int) -> dict:
    from qkv.longtext_task import compare

    return compare(seed, device="cpu")


def _q20(key: str) -> Callable[[int], float]:
    positions = ("start", "middle", "end")
    windows = [(s, p) for s in ("windows (mean)", "windows (max)") for p in positions]
    picks = {
        "windows": lambda r: min(r[k] for k in windows),
        "head-end": lambda r: r[("head", "end")],
        "tail-start": lambda r: r[("tail", "start")],
        "head+tail-middle": lambda r: r[("head+tail", "middle")],
        "kept": lambda r: min(r[("head", "start")], r[("tail", "end")], r[("head+tail", "end")]),
    }
    return lambda seed: picks[key](_q20_results(seed))


LEGACY += [
    legacy_claim("q20-windows", Q20, "sliding windows (mean or max): lowest accuracy over positions",
          _q20("windows"), ">", 0.95),
    legacy_claim("q20-kept", Q20, "truncation with the evidence kept: lowest accuracy",
          _q20("kept"), ">", 0.95),
    legacy_claim("q20-head-end", Q20, "head truncation, evidence at the end: accuracy",
          _q20("head-end"), "<", 0.65),
    legacy_claim("q20-tail-start", Q20, "tail truncation, evidence at the start: accuracy",
          _q20("tail-start"), "<", 0.65),
    legacy_claim("q20-head-tail-middle", Q20, "head+tail truncation, evidence in the middle: accuracy",
          _q20("head+tail-middle"), "<", 0.65),
]  # fmt: skip


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
