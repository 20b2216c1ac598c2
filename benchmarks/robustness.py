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
import functools
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

# Every claim of the book, in chapter order. The ``measure`` functions live in qkv.
CLAIMS: list[Claim] = [
    Claim(
        "q19-warmup-rescues-post-ln",
        "q19_warmup",
        "6-layer Post-LN at lr 1e-2: final loss without warm-up minus with 30 warm-up steps (nats)",
        lambda seed: _markov_final_loss(seed, False, 0) - _markov_final_loss(seed, False, 30),
        ">",
        0.3,
        seeds=_FIVE,
    ),
    Claim(
        "q19-pre-ln-needs-no-warmup",
        "q19_warmup",
        "lr 1e-2, no warm-up: final loss of Post-LN minus Pre-LN (nats)",
        _post_minus_pre_ln,
        ">",
        0.8,
        seeds=_FIVE,
    ),
    Claim(
        "q22-gradient-growth",
        "q22_residual_layernorm",
        "12 layers at init: last/first layer gradient norm, Post-LN over Pre-LN",
        _gradient_growth,
        ">",
        2.0,
    ),
    Claim(
        "q22-last-layer-gradient",
        "q22_residual_layernorm",
        "12 layers at init: last layer's gradient norm, Post-LN over Pre-LN",
        _last_layer_gradient_ratio,
        ">",
        2.0,
    ),
    Claim(
        "q22-pre-ln-high-lr",
        "q22_residual_layernorm",
        "lr 1e-2, no warm-up: final loss of Post-LN minus Pre-LN (nats)",
        _post_minus_pre_ln,
        ">",
        0.8,
        seeds=_FIVE,
    ),
    Claim(
        "q24-smoothing-ece",
        "q24_original_training_recipe",
        "16 training sequences: held-out ECE without smoothing minus with eps = 0.1",
        lambda seed: _smoothing(seed, 0.0, 16)["ece"] - _smoothing(seed, 0.1, 16)["ece"],
        ">",
        0.1,
        seeds=_FIVE,
    ),
    Claim(
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
    Claim(
        "q24-smoothing-nll",
        "q24_original_training_recipe",
        "fresh data every step: held-out NLL with eps = 0.1 minus without (nats)",
        lambda seed: _smoothing(seed, 0.1, None)["nll"] - _smoothing(seed, 0.0, None)["nll"],
        ">",
        0.05,
        seeds=_FIVE,
    ),
]


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
    results = json.loads(JSON_PATH.read_text(encoding="utf-8")) if JSON_PATH.exists() else {}
    known = {c.id for c in CLAIMS}
    results = {k: v for k, v in results.items() if k in known}  # drop removed claims
    for claim in CLAIMS:
        if args.chapters and claim.number not in args.chapters:
            continue
        start = time.perf_counter()
        results[claim.id] = run(claim)
        values = results[claim.id]["values"]
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
    order = {c.id: i for i, c in enumerate(CLAIMS)}
    results = dict(sorted(results.items(), key=lambda kv: order[kv[0]]))
    JSON_PATH.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    PAGE_PATH.write_text(page(results), encoding="utf-8")
    print(f"wrote {JSON_PATH.relative_to(ROOT)} and {PAGE_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
