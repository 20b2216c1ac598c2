"""What readers take away: the Colab install cell, the cheat sheet and the Anki deck.

The cheat sheet and the deck are made by the book's Sphinx extension
(``_ext/takeaways.py``) on every build; the built deck itself is checked in
``tests/test_site.py``. Here: the pieces, without a build.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qkv import quiz

from .book import ROOT, chapter_paths, install_cell_source, repository_url

_spec = importlib.util.spec_from_file_location("takeaways", ROOT / "_ext" / "takeaways.py")
takeaways = importlib.util.module_from_spec(_spec)
sys.modules["takeaways"] = takeaways  # dataclasses look their module up there
_spec.loader.exec_module(takeaways)


def deck_notes(path: Path) -> list[tuple[int, str, list[str]]]:
    """(note id, guid, fields) of every note in an .apkg (a zip holding an SQLite collection)."""
    with zipfile.ZipFile(path) as apkg:
        collection = path.with_suffix(".anki2")
        collection.write_bytes(apkg.read("collection.anki2"))
    with sqlite3.connect(collection) as db:
        rows = db.execute("SELECT id, guid, flds FROM notes ORDER BY id").fetchall()
    return [(note_id, guid, fields.split("\x1f")) for note_id, guid, fields in rows]


# --- the Colab install cell -----------------------------------------------------------


def test_install_cell_names_the_configured_repository():
    source = install_cell_source(repository_url())
    assert f'QKV_REPOSITORY = "{repository_url()}"' in source
    launch = (ROOT / "_config.yml").read_text(encoding="utf-8")
    assert launch.count(repository_url()) == 1, "the repository URL is set in one place"
    for path in chapter_paths():
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
        assert "".join(first["source"]) == source, f"{path.name}: stale install cell"


def test_install_cell_installs_qkv_with_its_quizzes(tmp_path):
    """The cell's pip command, pointed at this repository, installs qkv and its package data."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    target = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
           str(target), f"qkv @ git+file://{ROOT}"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    shipped = sorted(p.stem for p in (target / "qkv" / "quizzes").glob("*.json"))
    committed = subprocess.run(
        ["git", "ls-files", "lib/qkv/quizzes"], capture_output=True, text=True, cwd=ROOT
    ).stdout.split()
    assert shipped == sorted(Path(p).stem for p in committed)
    assert (target / "qkv" / "corpus").is_dir(), "the corpus is package data too"


def test_install_cell_fails_with_a_clear_message(monkeypatch):
    source = install_cell_source("file:///nonexistent/qkv-fork")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"Could not install qkv from file:///nonexistent"):
        exec(compile(source, "install-cell", "exec"), {})


# --- the cheat sheet and the cards ------------------------------------------------------


def test_admonition_body_is_extracted():
    text = ":::{admonition} The 30-second answer\n:class: tip\nSay $x$.\n\nTwo.\n:::\n\nafter"
    assert takeaways.admonition(text, "The 30-second answer") == "Say $x$.\n\nTwo."
    assert takeaways.admonition(text, "30 秒回答（中文）") is None


def test_every_chapter_gives_its_titles_and_answers():
    book = takeaways.chapters(ROOT)
    assert [c.stem for c in book] == [c.stem for c in book if c.docname.startswith("chapters/")]
    assert {c.stem for c in book} == {p.stem for p in chapter_paths()}
    for ch in book:
        assert ch.title and ch.title_zh and len(ch.answer) > 100, ch.stem


def test_cheatsheet_lists_every_question_with_a_link():
    book = takeaways.chapters(ROOT)
    page = takeaways.cheatsheet_markdown(book)
    for ch in book:
        assert f"{{doc}}`{ch.title} </{ch.docname}>`" in page
        assert ch.title_zh in page
    assert "{footcite" not in page, "citations need the chapter's bibliography"


def test_math_uses_anki_delimiters():
    html = takeaways.to_html("Scale by $\\sqrt{d_k}$:\n\n$$a < b$$\n\nsee {doc}`Q5 <../q05>`")
    assert "\\(\\sqrt{d_k}\\)" in html
    assert "\\[a &lt; b\\]" in html
    assert "$" not in html and "{doc}" not in html and "Q5" in html


def test_deck_has_a_note_per_chapter_and_per_quiz_question(tmp_path):
    first, second = tmp_path / "a.apkg", tmp_path / "b.apkg"
    n_notes = takeaways.write_deck(ROOT, first)
    takeaways.write_deck(ROOT, second)
    n_questions = sum(len(quiz.load(p.stem)) for p in chapter_paths())
    notes = deck_notes(first)
    assert n_notes == len(notes) == len(chapter_paths()) + n_questions
    assert [(i, g) for i, g, _ in notes] == [(i, g) for i, g, _ in deck_notes(second)]
    assert len({g for _, g, _ in notes}) == len(notes), "GUIDs must be unique"
