"""What readers take away: the cheat sheet page and the Anki flash-card deck.

A Sphinx extension of the book (``_config.yml`` loads it), so that every build
makes both from the chapters alone and nothing is written twice:

- at ``config-inited`` it writes ``appendix/cheatsheet.md`` (git-ignored): every
  question of ``_toc.yml`` with its English and Chinese 30-second answers and a link
  to its chapter;
- at the same moment it writes ``appendix/drill.md`` (git-ignored), the mock-interview
  drill: one hidden card per question (both wordings, both 30-second answers, the
  chapter's follow-up questions with their folded answers, a link to the chapter),
  which ``_static/drill.js`` deals at random in the browser, offline;
- the directive ``{question-index}`` (used by ``intro.md``) writes the numbered,
  bilingual index of every question, linked to its chapter;
- at ``build-finished`` it writes ``qkv-flashcards.apkg`` into the site: one card per
  chapter (front: the question in English and Chinese; back: the 30-second answers,
  nothing else) and one card per quiz question (options shuffled reproducibly; back:
  the correct option(s) and their feedback).

Chapter titles start with their number, ``# Q14 · Encoder masks vs decoder masks``;
``Chapter.title`` is the question without it.

Each note's GUID is derived from the question it shows (chapter stem, quiz question
number), and the collection's timestamp is fixed, so two builds of the same book
give the same note ids, and a reader who re-imports the deck after an update gets
the cards updated, not duplicated. Math is written with Anki's MathJax delimiters
``\\(...\\)`` and ``\\[...\\]``.
"""

from __future__ import annotations

import json
import posixpath
import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

EN_TITLE = "The 30-second answer"
ZH_TITLE = "30 秒回答（中文）"
CHEATSHEET = "appendix/cheatsheet"  # docname of the generated page
DRILL = "appendix/drill"  # docname of the generated mock-interview page
FOLLOW_UPS = "Follow-up questions"  # the chapter section the drill copies
# "# Q14 · Encoder masks vs decoder masks": the number, a middle dot, the question.
NUMBERED_TITLE = re.compile(r"^Q(?P<number>\d+) · (?P<title>\S.*)$")
DECK_FILE = "qkv-flashcards.apkg"
CARD_WORDS = 110  # at most this many English words on the back of a question card
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
    number: int  # 14, from the title "Q14 · ..."
    title: str  # the English question, without its number
    title_zh: str  # the Chinese wording
    answer: str  # the English 30-second answer (MyST Markdown)
    answer_zh: str | None  # the Chinese one, None while a chapter lacks it
    follow_ups: str = ""  # the body of the "Follow-up questions" section (MyST Markdown)

    @property
    def label(self) -> str:
        """The question as titles show it: ``Q14 · Encoder masks vs decoder masks``."""
        return f"Q{self.number} · {self.title}"


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


def section(markdown: str, heading: str) -> str:
    """The body of the level-2 section ``## <heading>`` (up to the next one), or ""."""
    pattern = r"^## +" + re.escape(heading) + r"[ \t]*\n(.*?)(?=^## |\Z)"
    found = re.search(pattern, markdown, flags=re.MULTILINE | re.DOTALL)
    return found.group(1).strip() if found else ""


def split_title(line: str, source: str = "<title>") -> tuple[int, str]:
    """``"Q14 · Encoder masks"`` -> ``(14, "Encoder masks")``; ValueError naming ``source``."""
    found = NUMBERED_TITLE.match(line.removeprefix("# ").strip())
    if not found:
        raise ValueError(f"{source}: expected a title '# Q<number> · <question>', got {line!r}")
    return int(found["number"]), found["title"].strip()


_DOC_ROLE = re.compile(r"\{doc\}`(?P<text>[^`<]*?)(?:\s*<(?P<target>[^`>]*)>)?`")


def absolute_doc_refs(markdown: str, docname: str) -> str:
    """Make ``{doc}`` targets written relative to ``docname`` absolute (``</chapters/...>``),
    so that the text still links correctly on another page (cheat sheet, drill)."""

    def fix(found: re.Match) -> str:
        text, target = found["text"], found["target"]
        if target is None:  # {doc}`target`
            text, target = "", text
        if not target.startswith("/"):
            target = "/" + posixpath.normpath(posixpath.join(posixpath.dirname(docname), target))
        return f"{{doc}}`{text} <{target}>`" if text.strip() else f"{{doc}}`{target}`"

    return _DOC_ROLE.sub(fix, markdown)


_GLUE_TEXT = re.compile(r"\{glue:text\}`(?P<key>[^`:]+)(?P<fmt>:[^`]*)?`")


def glue_from(markdown: str, docname: str, page: str) -> str:
    """Point ``{glue:text}`` roles of chapter ``docname`` at that chapter's notebook, so that
    its text keeps its numbers on another page ``page`` (myst-nb's ``path::key`` form)."""
    notebook = posixpath.relpath(f"{docname}.ipynb", posixpath.dirname(page))

    def fix(found: re.Match) -> str:
        # myst-nb reads the text after the last colon as the format: give one ("s" for the
        # book's glued text) so that the key keeps its own name
        return f"{{glue:text}}`{notebook}::{found['key']}{found['fmt'] or ':s'}`"

    return _GLUE_TEXT.sub(fix, markdown)


def read_chapter(root: Path, docname: str, part: str) -> Chapter:
    """Read a chapter's titles, 30-second answers and follow-ups from its notebook."""
    path = root / f"{docname}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    markdown = [_cell_text(c) for c in cells if c["cell_type"] == "markdown"]
    lines = [ln.strip() for ln in markdown[0].splitlines() if ln.strip()]
    text = "\n\n".join(markdown)
    answer = admonition(text, EN_TITLE)
    if answer is None:
        raise ValueError(f"{path}: no ':::{{admonition}} {EN_TITLE}' block")
    number, title = split_title(lines[0], str(path))
    answer_zh = admonition(text, ZH_TITLE)
    return Chapter(
        stem=path.stem,
        docname=docname,
        part=part,
        number=number,
        title=title,
        title_zh=lines[1].strip("*").strip(),
        answer=absolute_doc_refs(answer, docname),
        answer_zh=absolute_doc_refs(answer_zh, docname) if answer_zh else None,
        follow_ups=absolute_doc_refs(section(text, FOLLOW_UPS), docname),
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
            f"### {{doc}}`{ch.label} </{ch.docname}>`",
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


# --- the question index (intro) ---------------------------------------------------------


def question_index_markdown(book: list[Chapter]) -> str:
    """Every question, numbered, in English and Chinese, linked to its chapter, by part."""
    lines: list[str] = []
    part = None
    for ch in book:
        if ch.part != part:
            part = ch.part
            lines += ["", f"**{part}**", ""]
        lines.append(f"- {{doc}}`{ch.label} </{ch.docname}>`  \\\n  {ch.title_zh}")
    return "\n".join(lines).strip() + "\n"


# --- the mock-interview drill ------------------------------------------------------------

DRILL_CONTROLS = """<div id="drill-app" class="drill-app" hidden>
<div class="drill-controls">
<label>Questions <select id="drill-part">
<option value="all">All questions</option>
{part_options}
<option value="shaky">Only the ones I marked shaky</option>
</select></label>
<label>Language <select id="drill-lang">
<option value="en">English</option>
<option value="zh">中文</option>
</select></label>
<button type="button" id="drill-deal" class="btn btn-primary">Deal a question</button>
</div>
<p id="drill-status" class="drill-status" aria-live="polite"></p>
<div id="drill-stage" class="drill-stage" hidden>
<p class="drill-timer-line"><span id="drill-timer" class="drill-timer" role="timer">30</span>
<span class="drill-timer-unit">s</span></p>
<div class="drill-buttons">
<button type="button" id="drill-reveal" class="btn btn-secondary">Reveal the answers</button>
<label class="drill-shaky-label"><input type="checkbox" id="drill-shaky">
I was shaky on this one</label>
</div>
</div>
</div>
<noscript><p>The drill needs JavaScript; the {cheatsheet} lists the same answers.</p></noscript>"""


def drill_markdown(book: list[Chapter]) -> str:
    """The drill page: controls (``_static/drill.js`` drives them) and one hidden card per
    question, with both wordings, both answers, the follow-ups and the chapter's link."""
    parts = list(dict.fromkeys(ch.part for ch in book))
    part_options = "\n".join(
        f'<option value="part-{i}">{_escape(part)}</option>' for i, part in enumerate(parts, 1)
    )
    controls = DRILL_CONTROLS.format(
        part_options=part_options, cheatsheet='<a href="cheatsheet.html">cheat sheet</a>'
    )
    lines = [
        "---",
        "nosearch: true",  # the chapters themselves are what search should find
        "---",
        "",
        "# Mock interview: answer aloud in 30 seconds",
        "",
        "*模拟面试：30 秒内说出答案*",
        "",
        "Deal a question, answer it aloud before the timer runs out, then reveal the",
        "30-second answers and the interviewer's follow-up questions (click one to see",
        "its answer). Mark the questions you were shaky on: this browser remembers them,",
        "and *Only the ones I marked shaky* deals those again. Nothing leaves this page.",
        "",
        "随机抽一道题，在 30 秒内大声回答，再对照 30 秒回答和追问。"
        "标记为“不熟”的题目保存在本机浏览器中，可以只练这些题。",
        "",
        "```{raw} html",
        controls,
        "```",
        "",
    ]
    for ch in book:
        part = parts.index(ch.part) + 1
        # A blank line after each opening fence: content starting with ':' would
        # otherwise be read as the container's options.
        answers = [
            "````{container} drill-answer drill-answer-en",
            "",
            ":::{admonition} " + EN_TITLE,
            ":class: tip",
            _FOOTCITE.sub("", ch.answer),
            ":::",
            "````",
            "",
        ]
        if ch.answer_zh:
            answers += [
                "````{container} drill-answer drill-answer-zh",
                "",
                ":::{admonition} " + ZH_TITLE,
                ":class: tip",
                _FOOTCITE.sub("", ch.answer_zh),
                ":::",
                "````",
                "",
            ]
        follow_ups = glue_from(_FOOTCITE.sub("", ch.follow_ups), ch.docname, DRILL)
        if follow_ups:
            answers += [
                "````{container} drill-follow-ups",
                "",
                "**Follow-up questions** (追问): what the interviewer asks next.",
                "",
                follow_ups,
                "````",
                "",
            ]
        lines += [
            f"``````{{container}} drill-card drill-part-{part}",
            f":name: drill-{ch.stem}",
            "",
            "````{container} drill-question drill-question-en",
            "",
            f"**{_escape(ch.label)}**",
            "````",
            "",
            "````{container} drill-question drill-question-zh",
            "",
            f"**Q{ch.number} · {_escape(ch.title_zh)}**",
            "````",
            "",
            "`````{container} drill-answers",
            "",
            *answers,
            f"Read the chapter: {{doc}}`{ch.label} </{ch.docname}>`",
            "`````",
            "``````",
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


def shuffled_answers(question: dict, stem: str, number: int) -> list[dict]:
    """The question's options in an order drawn from its identity (chapter, number): the
    same on every build, so the deck is reproducible, and not the source order, in which
    the correct option is often the second."""
    answers = list(question["answers"])
    random.Random(f"qkv:{stem}:quiz:{number}").shuffle(answers)
    return answers


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
                # the back is the 30-second answer and nothing else (the link stays a field)
                "afmt": "{{FrontSide}}<hr id=answer><div>{{Answer}}</div>"
                "{{#AnswerZh}}<hr><div>{{AnswerZh}}</div>{{/AnswerZh}}",
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
                    _escape(ch.label),
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
            shuffled = shuffled_answers(question, ch.stem, i)
            options = "".join(f"<li>{to_html(a['answer'])}</li>" for a in shuffled)
            kind = "several may be right" if question["type"] == "many_choice" else "one is right"
            correct = "".join(
                f"<p><b>{'ABCDEFGH'[k]}.</b> {to_html(a['answer'])}</p>"
                f"<p>{to_html(a['feedback'])}</p>"
                for k, a in enumerate(shuffled)
                if a["correct"]
            )
            deck.add_note(
                genanki.Note(
                    quiz_model,
                    fields=[
                        to_html(question["question"]),
                        f"<ol type=A>{options}</ol><p><i>({kind})</i></p>",
                        correct,
                        _escape(f"{ch.label} · quiz {i}"),
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


def _write_page(root: Path, docname: str, text: str) -> None:
    page = root / f"{docname}.md"
    if not page.exists() or page.read_text(encoding="utf-8") != text:
        page.write_text(text, encoding="utf-8")  # unchanged text keeps the page cached


def _write_pages(app, config) -> None:
    root = Path(app.srcdir)
    book = chapters(root)
    _write_page(root, CHEATSHEET, cheatsheet_markdown(book))
    _write_page(root, DRILL, drill_markdown(book))


def _write_deck(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        write_deck(Path(app.srcdir), Path(app.outdir) / DECK_FILE)


def _question_index_directive():
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class QuestionIndex(SphinxDirective):
        """``{question-index}``: the numbered list of every question, made from the chapters."""

        has_content = False

        def run(self) -> list:
            root = Path(self.env.srcdir)
            self.env.note_dependency(str(root / "_toc.yml"))
            book = chapters(root)
            for ch in book:  # a retitled chapter rebuilds the page that holds the index
                self.env.note_dependency(str(root / f"{ch.docname}.ipynb"))
            box = nodes.container(classes=["question-index"])
            text = question_index_markdown(book).splitlines()
            self.state.nested_parse(StringList(text, source="question-index"), 0, box)
            return [box]

    return QuestionIndex


def setup(app):
    app.connect("config-inited", _write_pages, priority=100)
    app.connect("build-finished", _write_deck)
    app.add_directive("question-index", _question_index_directive())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
