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

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # qkv without installing


import qkv  # noqa: E402
from qkv.experiments import ROBUSTNESS_DIR, Claim, modules  # noqa: E402

PAGE_PATH = ROOT / "appendix" / "robustness.md"


def all_claims() -> dict[str, list[Claim]]:
    """Chapter number -> its claims, from the chapters' experiment modules."""
    found: dict[str, list[Claim]] = {}
    for module in modules():
        number = module.__name__.rsplit(".", 1)[1].split("_", 1)[0]
        for claim in module.CLAIMS.values():
            if claim.number != number:
                raise ValueError(f"{claim.id} is declared in {module.__name__}")
            found.setdefault(number, []).append(claim)
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
            text = r["text"].replace("|", "\\|")  # a bare | would split the table cell
            lines.append(
                f"| {text} (`{claim.id}`) | {r['op']} {_fmt(r['margin'])} | {seeds} | "
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
