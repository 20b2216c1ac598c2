"""Notebook hygiene: every chapter follows the skeleton of conventions.md.

Each rule is a function returning the problems it finds in one notebook, so a
failure names the file and what is wrong with it. (The notebooks themselves
are executed by nbval; see the Makefile's test target.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from qkv import quiz

from .book import (
    ROOT,
    cell_text,
    chapter_extras,
    chapter_paths,
    install_cell_source,
    repository_url,
    toc_files,
)

SECTIONS = [
    "The 30-second answer",
    "Deep dive",
    "Evidence",
    "What common answers get wrong",
    "Follow-up questions",
    "Self-quiz",
    "References",
]
# Pages that _ext/takeaways.py writes at build time (git-ignored, so absent before a build).
GENERATED_PAGES = {"appendix/cheatsheet", "appendix/drill"}
CJK = re.compile(r"[\u4e00-\u9fff]")
ADMONITION = re.compile(
    r"^:::\{admonition\}[ \t]*(?P<title>[^\n]*)\n(?P<body>.*?)^:::[ \t]*$", re.M | re.S
)
CHINESE_TITLE = "30 秒回答（中文）"


def chinese_answer_problems(markdown: str) -> list[str]:
    """The Chinese 30-second answer: an admonition titled exactly ``30 秒回答（中文）``
    right after the English one (only blank lines between), with Chinese text in it."""
    found = list(ADMONITION.finditer(markdown))
    english = [m for m in found if m["title"].strip() == "The 30-second answer"]
    if len(english) != 1:
        return ["exactly one admonition titled 'The 30-second answer' is required"]
    after = [m for m in found if m.start() > english[0].end()]
    nxt = after[0] if after else None
    if nxt is None or nxt["title"].strip() != CHINESE_TITLE:
        return [f"the English 30-second answer must be followed by an admonition '{CHINESE_TITLE}'"]
    if markdown[english[0].end() : nxt.start()].strip():
        return [f"nothing may stand between the English answer and '{CHINESE_TITLE}'"]
    if len(CJK.findall(nxt["body"])) < 20:
        return [f"'{CHINESE_TITLE}' must hold the answer in Chinese"]
    return []


def problems(path: Path) -> list[str]:
    """Every way the notebook at ``path`` departs from the chapter skeleton."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        return [f"{path}: not valid JSON ({err})"]
    cells = nb.get("cells", [])
    code = [cell_text(c) for c in cells if c.get("cell_type") == "code"]
    markdown = [cell_text(c) for c in cells if c.get("cell_type") == "markdown"]
    all_code, all_md = "\n".join(code), "\n".join(markdown)
    found: list[str] = []

    for i, c in enumerate(cells):
        if c.get("cell_type") == "code" and (c.get("outputs") or c.get("execution_count")):
            found.append(f"cell {i} has stored outputs or an execution count (clear them)")
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        found.append("kernelspec must be 'python3'")

    first = cells[0] if cells else {}
    if not (
        first.get("cell_type") == "code"
        and "remove-cell" in first.get("metadata", {}).get("tags", [])
        and cell_text(first) == install_cell_source(repository_url(), chapter_extras(path))
    ):
        found.append(
            "the first cell must be the guarded Colab install of qkv from the repository URL "
            "in _config.yml and of the chapter's pinned extras (tests/book.py: "
            "install_cell_source; `python -m tools.install_cells` rewrites it), tagged remove-cell"
        )

    title_lines = [ln.strip() for ln in (markdown[0] if markdown else "").splitlines()]
    title_lines = [ln for ln in title_lines if ln]
    if not (
        len(title_lines) >= 2
        and title_lines[0].startswith("# ")
        and title_lines[1].startswith("*")
        and CJK.search(title_lines[1])
    ):
        found.append("the first markdown cell must be '# English title' then '*中文标题*'")
    elif not title_lines[0].startswith(f"# Q{int(path.stem[1:3])} · "):
        found.append(
            f"the title must start with the question's number: '# Q{int(path.stem[1:3])} · ...'"
        )

    headings = re.findall(r"^## +(.+?)\s*$", all_md, flags=re.MULTILINE)
    positions = [headings.index(s) if s in headings else -1 for s in SECTIONS]
    if -1 in positions or positions != sorted(positions):
        found.append(f"level-2 sections must include, in order: {SECTIONS}; found {headings}")
    if "{admonition}" not in all_md and "{tip}" not in all_md and "{note}" not in all_md:
        found.append("the 30-second answer must be an admonition")
    found += chinese_answer_problems(all_md)

    if not re.search(r"^\s*(import qkv|from qkv)", all_code, flags=re.MULTILINE):
        found.append("no cell imports qkv")
    if not re.search(r"^\s*assert\b", all_code, flags=re.MULTILINE):
        found.append("no cell asserts anything")

    quiz_cells = [c for c in cells if f'quiz.show("{path.stem}")' in cell_text(c)]
    if not quiz_cells:
        found.append(f'no cell calls qkv.quiz.show("{path.stem}")')
    elif any("remove-input" not in c.get("metadata", {}).get("tags", []) for c in quiz_cells):
        found.append("the quiz cell must be tagged remove-input")
    if path.stem not in quiz.available():
        found.append(f"no quiz file lib/qkv/quizzes/{path.stem}.json")
    elif len(quiz.load(path.stem)) < 3:
        found.append("the quiz needs at least three questions")

    if not re.search(r"exercises\.check_\w+\(|\bcheck_\w+\(", all_code):
        found.append("no coding exercise calls a checker from qkv.exercises")
    if "{solution-start}" not in all_md or "{exercise-start}" not in all_md:
        found.append("the exercise and its collapsed solution use sphinx-exercise's gated form")
    if "{footcite" not in all_md or "{footbibliography}" not in all_md:
        found.append("cite papers with {footcite} and list them with {footbibliography}")
    return [f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {p}" for p in found]


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.stem)
def test_chapter_follows_the_skeleton(path: Path) -> None:
    found = problems(path)
    assert not found, "\n".join(found)


# A line break between two Chinese characters (or full-width punctuation) shows as a
# stray space in the browser and on the cheat sheet, unlike one beside a Latin word.
CJK_OR_FULLWIDTH = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]"
CJK_LINE_BREAK = re.compile(rf"({CJK_OR_FULLWIDTH})[*`]*[ \t]*\n[ \t]*[*`]*({CJK_OR_FULLWIDTH})")


def chinese_line_breaks(markdown: str) -> list[str]:
    """Each line break inside a Chinese sentence of the Chinese 30-second answer."""
    found = [m for m in ADMONITION.finditer(markdown) if m["title"].strip() == CHINESE_TITLE]
    body = found[0]["body"] if found else ""
    return [f"'{m[1]}⏎{m[2]}'" for m in CJK_LINE_BREAK.finditer(body)]


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.stem)
def test_no_line_break_inside_a_chinese_sentence(path: Path) -> None:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    markdown = "\n\n".join(cell_text(c) for c in cells if c["cell_type"] == "markdown")
    breaks = chinese_line_breaks(markdown)
    assert not breaks, (
        f"{path.name}: the Chinese 30-second answer breaks lines inside sentences, which "
        f"shows as stray spaces; keep each Chinese sentence on one line: {', '.join(breaks)}"
    )


def test_the_chinese_line_break_check_catches_what_it_should() -> None:
    def box(body: str) -> str:
        return f":::{{admonition}} {CHINESE_TITLE}\n:class: tip\n{body}\n:::\n"

    assert chinese_line_breaks(box("注意力是一种\n查找。")) == ["'种⏎查'"]
    assert chinese_line_breaks(box("权重**非负**\n**且和为一**。")) == ["'负⏎且'"]
    assert chinese_line_breaks(box("用 causal mask\n取交集。")) == []
    assert chinese_line_breaks(box("注意力是一种查找。\nBERT 只有 encoder。")) == []


def test_each_part_runs_in_question_order() -> None:
    """Parts keep their order by topic; within a part, chapters run Q1, Q2, ..."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    for part in toc["parts"]:
        numbers = [
            int(m.group(1))
            for entry in part["chapters"]
            if (m := re.search(r"/q(\d+)_", entry["file"]))
        ]
        assert numbers == sorted(numbers), f"{part['caption']}: chapters in order {numbers}"


def test_every_chapter_is_in_the_toc_and_every_entry_exists() -> None:
    listed = set(toc_files())
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix() for p in chapter_paths()}
    assert on_disk - listed == set(), f"chapters missing from _toc.yml: {on_disk - listed}"
    for entry in listed - GENERATED_PAGES:
        candidates = [ROOT / f"{entry}{suffix}" for suffix in (".ipynb", ".md")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists {entry}, which does not exist"


def test_every_quiz_belongs_to_a_chapter() -> None:
    stems = {p.stem for p in chapter_paths()}
    orphans = set(quiz.available()) - stems
    assert not orphans, f"quiz files without a chapter: {orphans}"


def test_a_notebook_with_outputs_is_reported_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "q99_bad.ipynb"
    cell = {"cell_type": "code", "source": "1 + 1", "metadata": {}}
    cell |= {"outputs": [{"output_type": "execute_result"}], "execution_count": 1}
    bad.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4}))
    found = problems(bad)
    assert any("q99_bad.ipynb: cell 0 has stored outputs" in p for p in found), found


def test_a_notebook_that_is_not_json_is_reported_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "q98_broken.ipynb"
    bad.write_text("{ not json")
    assert problems(bad)[0].startswith(f"{bad}: not valid JSON")


def test_the_chinese_answer_check_catches_what_it_should() -> None:
    english = ":::{admonition} The 30-second answer\n:class: tip\nAttention is a lookup.\n:::\n"
    chinese = (
        f":::{{admonition}} {CHINESE_TITLE}\n:class: tip\n"
        "Attention 本质上是一种可微的、按内容寻址的查找，权重由输入算出，非负且和为一。\n:::\n"
    )
    assert chinese_answer_problems(english + "\n" + chinese) == []
    assert "followed by" in chinese_answer_problems(english)[0]
    assert "nothing may stand" in chinese_answer_problems(english + "Some text.\n\n" + chinese)[0]
    untranslated = chinese.replace(chinese.split("\n")[2], "Attention is a lookup.")
    assert "in Chinese" in chinese_answer_problems(english + untranslated)[0]
    renamed = chinese.replace(CHINESE_TITLE, "30 秒回答")
    assert "followed by" in chinese_answer_problems(english + renamed)[0]
