"""What readers take away: the cheat sheet page and the Anki flash-card deck.

A Sphinx extension of the book (``_config.yml`` loads it), so that every build
makes both from the chapters alone and nothing is written twice:

- at ``config-inited`` it writes ``appendix/cheatsheet.md`` (git-ignored): every
  question of ``_toc.yml`` with its English and Chinese 30-second answers and a link
  to its chapter;
- at ``build-finished`` it writes ``qkv-flashcards.apkg`` into the site: one card per
  chapter (front: the question in English and Chinese; back: both 30-second answers
  and the chapter's URL) and one card per quiz question (back: the correct option(s)
  and their feedback).

Each note's GUID is derived from the question it shows (chapter stem, quiz question
number), and the collection's timestamp is fixed, so two builds of the same book
give the same note ids, and a reader who re-imports the deck after an update gets
the cards updated, not duplicated. Math is written with Anki's MathJax delimiters
``\\(...\\)`` and ``\\[...\\]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

EN_TITLE = "The 30-second answer"
ZH_TITLE = "30 秒回答（中文）"
CHEATSHEET = "appendix/cheatsheet"  # docname of the generated page
DECK_FILE = "qkv-flashcards.apkg"
# Fixed ids (random numbers drawn once): Anki identifies the deck and note types by them.
DECK_ID = 1_734_112_913
CHAPTER_MODEL_ID = 1_591_238_007
QUIZ_MODEL_ID = 1_903_665_241
# Fixed collection timestamp (2026-01-01): note and card ids come from it, in book order.
TIMESTAMP = 1_767_225_600.0


@dataclass(frozen=True)
class Chapter:
    """One question of the book, read from its notebook."""

    stem: str  # "q08_padding_mask"
    docname: str  # "chapters/attention/q08_padding_mask"
    part: str  # the part's caption in _toc.yml
    title: str  # the English question
    title_zh: str  # the Chinese wording
    answer: str  # the English 30-second answer (MyST Markdown)
    answer_zh: str | None  # the Chinese one, None while a chapter lacks it

    @property
    def number(self) -> int:
        return int(self.stem[1:3])


def _cell_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def admonition(markdown: str, title: str) -> str | None:
    """The body of the ``:::{admonition} <title>`` block in ``markdown``, or None."""
    pattern = (
        r"^(:{3,})\{admonition\}[ \t]+" + re.escape(title) + r"[ \t]*\n"
        r"((?:[ \t]*:[\w-]+:[^\n]*\n)*)"  # options such as ":class: tip"
        r"(.*?)^\1[ \t]*$"
    )
    found = re.search(pattern, markdown, flags=re.MULTILINE | re.DOTALL)
    return found.group(3).strip() if found else None


def read_chapter(root: Path, docname: str, part: str) -> Chapter:
    """Read a chapter's titles and 30-second answers from its notebook."""
    path = root / f"{docname}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    markdown = [_cell_text(c) for c in cells if c["cell_type"] == "markdown"]
    lines = [ln.strip() for ln in markdown[0].splitlines() if ln.strip()]
    text = "\n\n".join(markdown)
    answer = admonition(text, EN_TITLE)
    if answer is None:
        raise ValueError(f"{path}: no ':::{{admonition}} {EN_TITLE}' block")
    return Chapter(
        stem=path.stem,
        docname=docname,
        part=part,
        title=lines[0].removeprefix("# ").strip(),
        title_zh=lines[1].strip("*").strip(),
        answer=answer,
        answer_zh=admonition(text, ZH_TITLE),
    )


def chapters(root: Path) -> list[Chapter]:
    """Every chapter listed in ``_toc.yml``, in book order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    return [
        read_chapter(root, entry["file"], part["caption"])
        for part in toc["parts"]
        for entry in part["chapters"]
        if entry["file"].startswith("chapters/")
    ]


def quiz(root: Path, stem: str) -> list[dict]:
    """The chapter's quiz questions (``lib/qkv/quizzes/<stem>.json``), or []."""
    path = root / "lib" / "qkv" / "quizzes" / f"{stem}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def site_url(root: Path) -> str:
    """The published site's address, derived from the one repository URL in _config.yml.

    ``https://github.com/OWNER/REPO`` is published by GitHub Pages at
    ``https://OWNER.github.io/REPO/``; ``html.baseurl`` in _config.yml overrides it.
    """
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    base = (config.get("html") or {}).get("baseurl")
    if base:
        return base.rstrip("/") + "/"
    url = config["repository"]["url"].rstrip("/")
    owner, repo = url.removeprefix("https://github.com/").split("/")[:2]
    return f"https://{owner.lower()}.github.io/{repo}/"


# --- the cheat sheet ---------------------------------------------------------------

_FOOTCITE = re.compile(r"\s*\{footcite(?:t|p)?\}`[^`]*`")


def cheatsheet_markdown(book: list[Chapter]) -> str:
    """The cheat sheet page: every question, both 30-second answers, a link to the chapter."""
    lines = [
        "# Cheat sheet: every 30-second answer",
        "",
        "*速查表：每道题的 30 秒回答*",
        "",
        "Every question of the book with the answer to give in the first thirty seconds,",
        "in English and in Chinese. Each title links to the chapter with the evidence.",
        "The same cards, and one per quiz question, are in the Anki deck",
        f'<a href="../{DECK_FILE}" download>{DECK_FILE}</a>',
        "(generated with this page on every build; Anki imports it with *File → Import*).",
        "",
        "本页由各章节自动生成；同样的内容（以及每一道自测题）也做成了 Anki 卡片组。",
        "",
    ]
    part = None
    for ch in book:
        if ch.part != part:
            part = ch.part
            lines += [f"## {part}", ""]
        lines += [
            f"### Q{ch.number}. {{doc}}`{ch.title} </{ch.docname}>`",
            "",
            f"*{ch.title_zh}*",
            "",
            ":::{admonition} " + EN_TITLE,
            ":class: tip",
            _FOOTCITE.sub("", ch.answer),
            ":::",
            "",
        ]
        if ch.answer_zh:
            lines += [
                ":::{admonition} " + ZH_TITLE,
                ":class: tip",
                _FOOTCITE.sub("", ch.answer_zh),
                ":::",
                "",
            ]
    return "\n".join(lines)


# --- the flash cards -----------------------------------------------------------------


def to_html(markdown: str) -> str:
    """MyST Markdown of an answer -> HTML for Anki, math in Anki's MathJax delimiters."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    def math(content: str, options: dict) -> str:
        escaped = content.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f"\\[{escaped}\\]" if options.get("display_mode") else f"\\({escaped}\\)"

    text = _FOOTCITE.sub("", markdown)
    text = re.sub(r"\{(?:doc|ref)\}`([^`<]*?)\s*<[^`]*>`", r"\1", text)  # {doc}`text <target>`
    text = re.sub(r"\{\w+\}`([^`]*)`", r"\1", text)  # any other role: keep its text
    md = MarkdownIt("commonmark").enable("table").use(dollarmath_plugin, renderer=math)
    return md.render(text).strip()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_deck(book: list[Chapter], quizzes: dict[str, list[dict]], url: str):
    """The Anki deck: a note per chapter and a note per quiz question."""
    import genanki

    style = ".card { font-family: sans-serif; font-size: 18px; text-align: left; }"
    chapter_model = genanki.Model(
        CHAPTER_MODEL_ID,
        "qkv question",
        fields=[{"name": n} for n in ("Question", "QuestionZh", "Answer", "AnswerZh", "Link")],
        templates=[
            {
                "name": "30-second answer",
                "qfmt": "<h3>{{Question}}</h3><p><i>{{QuestionZh}}</i></p>",
                "afmt": "{{FrontSide}}<hr id=answer><div>{{Answer}}</div><hr>"
                "<div>{{AnswerZh}}</div><p><a href='{{Link}}'>{{Link}}</a></p>",
            }
        ],
        css=style,
    )
    quiz_model = genanki.Model(
        QUIZ_MODEL_ID,
        "qkv quiz question",
        fields=[{"name": n} for n in ("Question", "Options", "Correct", "Chapter")],
        templates=[
            {
                "name": "quiz",
                "qfmt": "<p>{{Question}}</p>{{Options}}<p><small>{{Chapter}}</small></p>",
                "afmt": "{{FrontSide}}<hr id=answer>{{Correct}}",
            }
        ],
        css=style,
    )
    deck = genanki.Deck(DECK_ID, "qkv — Transformer interview questions")
    for ch in book:
        link = f"{url}{ch.docname}.html"
        deck.add_note(
            genanki.Note(
                chapter_model,
                fields=[
                    _escape(f"Q{ch.number}. {ch.title}"),
                    _escape(ch.title_zh),
                    to_html(ch.answer),
                    to_html(ch.answer_zh) if ch.answer_zh else "",
                    link,
                ],
                guid=genanki.guid_for("qkv", ch.stem),
                tags=["qkv", ch.stem],
            )
        )
        for i, question in enumerate(quizzes.get(ch.stem, []), start=1):
            options = "".join(f"<li>{to_html(a['answer'])}</li>" for a in question["answers"])
            kind = "several may be right" if question["type"] == "many_choice" else "one is right"
            correct = "".join(
                f"<p><b>{to_html(a['answer'])}</b></p><p>{to_html(a['feedback'])}</p>"
                for a in question["answers"]
                if a["correct"]
            )
            deck.add_note(
                genanki.Note(
                    quiz_model,
                    fields=[
                        to_html(question["question"]),
                        f"<ol type=A>{options}</ol><p><i>({kind})</i></p>",
                        correct,
                        _escape(f"Q{ch.number}. {ch.title} · quiz {i}"),
                    ],
                    guid=genanki.guid_for("qkv", ch.stem, "quiz", i),
                    tags=["qkv", ch.stem, "quiz"],
                )
            )
    return genanki.Package(deck)


def write_deck(root: Path, path: Path) -> int:
    """Write the deck for the book at ``root`` to ``path``; return the number of notes."""
    book = chapters(root)
    quizzes = {ch.stem: quiz(root, ch.stem) for ch in book}
    package = build_deck(book, quizzes, site_url(root))
    package.write_to_file(str(path), timestamp=TIMESTAMP)
    return len(package.decks[0].notes)


# --- Sphinx hooks ------------------------------------------------------------------------


def _write_cheatsheet(app, config) -> None:
    root = Path(app.srcdir)
    page = root / f"{CHEATSHEET}.md"
    text = cheatsheet_markdown(chapters(root))
    if not page.exists() or page.read_text(encoding="utf-8") != text:
        page.write_text(text, encoding="utf-8")  # unchanged text keeps the page cached


def _write_deck(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        write_deck(Path(app.srcdir), Path(app.outdir) / DECK_FILE)


def setup(app):
    app.connect("config-inited", _write_cheatsheet, priority=100)
    app.connect("build-finished", _write_deck)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
