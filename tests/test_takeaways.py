"""What readers take away: the Colab install cell, the cheat sheet and the Anki deck.

The cheat sheet and the deck are made by the book's Sphinx extension
(``_ext/takeaways.py``) on every build; the built deck itself is checked in
``tests/test_site.py``. Here: the pieces, without a build.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qkv import quiz

from .book import ROOT, chapter_extras, chapter_paths, install_cell_source, repository_url

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
    launch = (ROOT / "_config.yml").read_text(encoding="utf-8")
    assert launch.count(repository_url()) == 1, "the repository URL is set in one place"
    for path in chapter_paths():
        source = install_cell_source(repository_url(), chapter_extras(path))
        assert f'QKV_REPOSITORY = "{repository_url()}"' in source
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
        assert "".join(first["source"]) == source, f"{path.name}: stale install cell"


def test_install_cell_installs_qkv_with_its_quizzes(tmp_path):
    """The cell's pip command, pointed at this repository, installs qkv and its package data."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    target = tmp_path / "site"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(target),
        f"qkv @ git+file://{ROOT}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    shipped = sorted(p.stem for p in (target / "qkv" / "quizzes").glob("*.json"))
    committed = subprocess.run(
        ["git", "ls-files", "lib/qkv/quizzes"], capture_output=True, text=True, cwd=ROOT
    ).stdout.split()
    assert shipped == sorted(Path(p).stem for p in committed)
    assert (target / "qkv" / "corpus").is_dir(), "the corpus is package data too"


def test_install_cell_stops_and_says_what_to_do(monkeypatch):
    """When pip fails, the cell stops the notebook (SystemExit: Jupyter's "Run all" halts
    there, without a long traceback) and tells the reader what to do."""
    source = install_cell_source("file:///nonexistent/qkv-fork", ["transformers==5.24.0"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as stop:
        exec(compile(source, "install-cell", "exec"), {})
    message = str(stop.value)
    assert "Could not install" in message and "run this cell again" in message
    assert '%pip install "qkv @ git+file:///nonexistent/qkv-fork" "transformers==5.24.0"' in (
        message
    )


# --- the cheat sheet and the cards ------------------------------------------------------


def test_card_back_is_the_30_second_answer_and_fits_a_card(tmp_path):
    """The back of a question card holds the 30-second answers, and the English one
    stays within CARD_WORDS (110) words: a card, not a page."""
    path = tmp_path / "deck.apkg"
    takeaways.write_deck(ROOT, path)
    answers = {takeaways._escape(ch.label): ch for ch in takeaways.chapters(ROOT)}
    too_long, seen = {}, 0
    for _, _, fields in deck_notes(path):
        ch = answers.get(fields[0])
        if ch is None:
            continue  # a quiz card
        seen += 1
        assert fields[2] == takeaways.to_html(ch.answer), ch.stem
        words = len(re.sub(r"<[^>]+>", " ", fields[2]).split())
        if words > takeaways.CARD_WORDS:
            too_long[ch.stem] = words
    assert seen == len(answers)
    assert not too_long, f"English 30-second answers over {takeaways.CARD_WORDS} words: {too_long}"


def test_question_card_template_shows_only_the_answers():
    deck = takeaways.build_deck(takeaways.chapters(ROOT)[:1], {}, "https://example.org/")
    template = deck.decks[0].notes[0].model.templates[0]["afmt"]
    back = template.split("<hr id=answer>", 1)[1]
    assert set(re.findall(r"\{\{[#/]?(\w+)\}\}", back)) == {"Answer", "AnswerZh"}, back


def test_quiz_options_are_shuffled_reproducibly(tmp_path):
    """Options leave the source order (where the right one is often B), the same way on
    every build; a card names the correct option by its new letter."""
    first, second = tmp_path / "a.apkg", tmp_path / "b.apkg"
    takeaways.write_deck(ROOT, first)
    takeaways.write_deck(ROOT, second)
    notes, again = deck_notes(first), deck_notes(second)
    assert [f for _, _, f in notes] == [f for _, _, f in again], "the shuffle is not stable"
    letters, moved, total = [], 0, 0
    for ch in takeaways.chapters(ROOT):
        for i, question in enumerate(quiz.load(ch.stem), start=1):
            shuffled = takeaways.shuffled_answers(question, ch.stem, i)
            assert sorted(map(json.dumps, shuffled)) == sorted(map(json.dumps, question["answers"]))
            total += 1
            moved += shuffled != question["answers"]
            if question["type"] == "multiple_choice":
                letters.append(next(k for k, a in enumerate(shuffled) if a["correct"]))
    assert moved > total * 0.6, f"only {moved} of {total} questions shuffled"
    top = max(letters.count(k) for k in set(letters))
    assert top < len(letters) * 0.4, f"one letter is right on {top} of {len(letters)} cards"


def test_titles_carry_their_number():
    assert takeaways.split_title("# Q14 · Encoder masks", "x") == (14, "Encoder masks")
    with pytest.raises(ValueError, match=r"x: expected a title '# Q<number> · <question>'"):
        takeaways.split_title("# Encoder masks", "x")
    for ch in takeaways.chapters(ROOT):
        assert ch.number == int(ch.stem[1:3]) and not ch.title.startswith("Q"), ch.stem


def test_question_index_lists_every_question_in_both_languages():
    book = takeaways.chapters(ROOT)
    index = takeaways.question_index_markdown(book)
    for ch in book:
        assert f"{{doc}}`{ch.label} </{ch.docname}>`" in index and ch.title_zh in index
    assert index.count("{doc}") == len(book)


def test_drill_page_holds_every_question_with_its_follow_ups():
    book = takeaways.chapters(ROOT)
    page = takeaways.drill_markdown(book)
    assert page.count("{container} drill-card ") == len(book)
    for ch in book:
        assert f":name: drill-{ch.stem}" in page and f"</{ch.docname}>" in page
        assert ch.follow_ups and ch.follow_ups.split("\n")[0] in page, ch.stem
    assert "{footcite" not in page, "citations need the chapter's bibliography"
    assert "nosearch: true" in page, "search should find the chapters, not the drill"


def test_relative_doc_links_become_absolute():
    text = "see {doc}`Q20 <../bert/q20_long_text>` and {doc}`/intro`"
    fixed = takeaways.absolute_doc_refs(text, "chapters/transformer/q21_x")
    assert fixed == "see {doc}`Q20 </chapters/bert/q20_long_text>` and {doc}`/intro`"


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
        assert f"{{doc}}`{ch.label} </{ch.docname}>`" in page
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
