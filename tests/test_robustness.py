"""The robustness page (appendix/robustness.md) covers every claim, and every margin holds.

``benchmarks/robustness.py`` reruns each chapter's seed-dependent experiment over
many seeds (by hand: minutes). These tests only read what it wrote: each claim has
its values, each value satisfies the margin the chapter asserts (so the chapter's
assert would hold for every seed listed), the page matches the data, and each
chapter with a claim links its section of the page.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from .book import ROOT, cell_text, chapter_paths

_spec = importlib.util.spec_from_file_location("robustness", ROOT / "benchmarks" / "robustness.py")
robustness = importlib.util.module_from_spec(_spec)
sys.modules["robustness"] = robustness  # dataclasses look their module up there
_spec.loader.exec_module(robustness)

RESULTS = (
    json.loads(robustness.JSON_PATH.read_text(encoding="utf-8"))
    if robustness.JSON_PATH.exists()
    else {}
)
CLAIMS = robustness.CLAIMS


def test_claim_ids_are_unique():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids)), f"duplicate claim ids: {ids}"


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_claim_was_measured_as_declared(claim):
    record = RESULTS.get(claim.id)
    assert record is not None, f"{claim.id}: run `python benchmarks/robustness.py {claim.number}`"
    declared = claim.declaration()
    stale = {k: (record.get(k), v) for k, v in declared.items() if record.get(k) != v}
    assert not stale, f"{claim.id}: the JSON was made for another declaration (rerun): {stale}"
    assert claim.chapter_seed in claim.seeds, (
        f"{claim.id}: the chapter's seed is not among the seeds"
    )
    assert len(record["values"]) == len(claim.seeds)


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_margin_holds_for_every_seed(claim):
    record = RESULTS[claim.id]
    failing = {
        seed: value
        for seed, value in zip(record["seeds"], record["values"], strict=True)
        if not robustness.holds(claim.op, value, claim.margin)
    }
    assert not failing, (
        f"{claim.id}: the chapter asserts value {claim.op} {claim.margin}, "
        f"which fails for seeds {failing}"
    )


def test_page_is_generated_from_the_data():
    assert robustness.PAGE_PATH.read_text(encoding="utf-8") == robustness.page(RESULTS), (
        "appendix/robustness.md is out of date: run `python benchmarks/robustness.py`"
    )


def test_no_stale_records():
    assert set(RESULTS) <= {c.id for c in CLAIMS}, "records without a claim: rerun the script"


@pytest.mark.parametrize("number", sorted({c.number for c in CLAIMS}))
def test_chapter_links_its_robustness_rows(number):
    paths = [p for p in chapter_paths() if p.name.startswith(number + "_")]
    assert len(paths) == 1, f"no chapter {number}"
    cells = json.loads(paths[0].read_text(encoding="utf-8"))["cells"]
    markdown = "\n".join(cell_text(c) for c in cells if c["cell_type"] == "markdown")
    assert f"robustness-{number}" in markdown, (
        f"{paths[0].name} has seed-dependent claims: link them with {{ref}}`robustness-{number}`"
    )
