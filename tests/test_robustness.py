"""The robustness page covers every claim, every margin holds, and the chapters use the claims.

Each chapter's seed-dependent claims are declared once, in ``CLAIMS`` of its module
``qkv.experiments.qNN_<stem>``; ``benchmarks/robustness.py`` reruns them over many
seeds (by hand: minutes) and stores the values in ``lib/qkv/experiments/robustness/``.
These tests only read what it wrote: each claim has its values, each value satisfies
the margin the claim declares (so the chapter's check would hold for every seed
listed), the page matches the data, and each chapter checks each of its claims through
the declaration itself (``CLAIMS["id"].check(value)``), never through a copied number.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest

from .book import ROOT, cell_text, chapter_paths

_spec = importlib.util.spec_from_file_location("robustness", ROOT / "benchmarks" / "robustness.py")
robustness = importlib.util.module_from_spec(_spec)
sys.modules["robustness"] = robustness
_spec.loader.exec_module(robustness)

BY_CHAPTER = robustness.all_claims()
CLAIMS = [claim for claims in BY_CHAPTER.values() for claim in claims]


def _chapter(number: str):
    paths = [p for p in chapter_paths() if p.name.startswith(number + "_")]
    assert len(paths) == 1, f"no chapter {number}"
    return paths[0]


def _cells(number: str, kind: str) -> str:
    cells = json.loads(_chapter(number).read_text(encoding="utf-8"))["cells"]
    return "\n".join(cell_text(c) for c in cells if c["cell_type"] == kind)


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_claim_was_measured_as_declared(claim):
    record = robustness.read(claim.number).get(claim.id)
    assert record is not None, f"{claim.id}: run `python benchmarks/robustness.py {claim.number}`"
    stale = {k: (record.get(k), v) for k, v in claim.declaration().items() if record.get(k) != v}
    assert not stale, f"{claim.id}: the values were made for another declaration (rerun): {stale}"
    assert len(record["values"]) == len(claim.seeds)


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_margin_holds_for_every_seed(claim):
    record = robustness.read(claim.number)[claim.id]
    failing = {
        seed: value
        for seed, value in zip(record["seeds"], record["values"], strict=True)
        if not claim.holds(value)
    }
    assert not failing, (
        f"{claim.id}: the claim is value {claim.op} {claim.margin}, which fails for seeds {failing}"
    )


def test_page_is_generated_from_the_data():
    assert robustness.PAGE_PATH.read_text(encoding="utf-8") == robustness.page(BY_CHAPTER), (
        "appendix/robustness.md is out of date: run `python benchmarks/robustness.py --page`"
    )


@pytest.mark.parametrize("number", sorted(BY_CHAPTER))
def test_no_stale_records(number):
    declared = {c.id for c in BY_CHAPTER[number]}
    assert set(robustness.read(number)) <= declared, "records without a claim: rerun the script"


@pytest.mark.parametrize("number", sorted(BY_CHAPTER))
def test_chapter_links_its_robustness_rows(number):
    assert f"robustness-{number}" in _cells(number, "markdown"), (
        f"{_chapter(number).name} has seed-dependent claims: link them with "
        f"{{ref}}`robustness-{number}`"
    )


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_chapter_checks_the_declared_claim(claim):
    """The chapter asserts through the declaration: ``CLAIMS["id"].check(...)``."""
    code = _cells(claim.number, "code")
    stem = _chapter(claim.number).stem
    assert re.search(rf"qkv\.experiments\b.*\b{stem}\b|experiments\.{stem}\b", code), (
        f"{stem} never imports qkv.experiments.{stem}"
    )
    assert re.search(rf"CLAIMS\[\s*[\"']{re.escape(claim.id)}[\"']\s*\]\s*\.check\(", code), (
        f"{stem} does not check {claim.id} with CLAIMS[{claim.id!r}].check(value)"
    )


def test_the_runner_declares_no_claim_of_its_own():
    """One source per claim: benchmarks/robustness.py only runs the modules' claims."""
    source = (ROOT / "benchmarks" / "robustness.py").read_text(encoding="utf-8")
    assert "Claim(" not in source, "declare claims in the chapter's qkv.experiments module"
