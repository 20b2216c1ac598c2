"""The prose says what the code printed, and the 30-second answers fit 30 seconds.

1. A number a chapter measures is glued into its prose (``{glue:text}`name```) or
   generated from the robustness data, never typed. A test cannot know where a typed
   number came from, so the rule is about its form: outside code, math and glue, a
   sentence that quotes a number with two or more significant digits (``0.83``,
   ``2.3×``, ``99.9%``) or a percentage that is not a multiple of 5 (``87%``) must
   cite its source in the same sentence (a ``{cite}`` role: a paper's figure). Round
   design constants (``15%``, ``0.1``, ``1e-2``) pass; a measured number does not.
2. The 30-second answers can be said in 30 seconds: at most 90 English words and 160
   Chinese characters, without glue (the flash cards and the cheat sheet cannot
   resolve it) and without the book's measured numbers (rule 1).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .book import cell_text, chapter_paths

EN_TITLE, ZH_TITLE = "The 30-second answer", "30 秒回答（中文）"
EN_MAX_WORDS, ZH_MAX_CHARS = 90, 160
ADMONITION = re.compile(
    r"^(?P<fence>:{3,})\{admonition\}[ \t]*(?P<title>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.M | re.S,
)
HIDDEN = [  # code blocks, display and inline math, inline code (glue roles included)
    re.compile(r"```.*?```", re.S),
    re.compile(r"\$\$.*?\$\$", re.S),
    re.compile(r"\$[^$\n]+\$"),
    re.compile(r"\{[\w:-]+\}`[^`\n]*`"),
    re.compile(r"`[^`\n]*`"),
]
# A decimal, percentage or multiple, not part of a name, a section/table/equation/figure
# number, a version or a date.
NUMBER = re.compile(
    r"(?<![\w.§/-])(?<!Table )(?<!Tables )(?<!Fig\. )(?<!Figure )(?<!Eq\. )(?<!Section )"
    r"(?<!Sec\. )(?<!Appendix )(?<!step )(?<!version )(?<!torch )(?<!Python )"
    r"(?P<digits>\d+(?:\.\d+)?)(?P<unit>\s?%|\s?×)?(?![\w.]*\d)"
)
CITATION = re.compile(r"\{(?:foot)?cite(?::\w+)?\}`")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(*])|(?<=[。！？；])")


def _significant(digits: str) -> int:
    return len(digits.replace(".", "").lstrip("0").rstrip("0") if "." in digits else digits)


def typed_measurements(sentence: str) -> list[str]:
    """The numbers in ``sentence`` that look measured (see the module docstring)."""
    if CITATION.search(sentence):
        return []
    for pattern in HIDDEN:
        sentence = pattern.sub(" ", sentence)
    found = []
    for m in NUMBER.finditer(sentence):
        digits, unit = m["digits"], (m["unit"] or "").strip()
        if unit == "%":
            measured = "." in digits or float(digits) % 5 != 0
        elif "." in digits:
            measured = _significant(digits) >= 2
        else:
            measured = False
        if measured:
            found.append(m.group(0).strip())
    return found


def sentences(markdown: str) -> list[str]:
    """``markdown`` split into paragraphs, then sentences, with line breaks folded."""
    out = []
    for block in HIDDEN[0].split(markdown):  # code blocks never hold one sentence across
        for para in re.split(r"\n\s*\n", block):
            if para.lstrip().startswith(("|", "#")):  # a table row or heading stands alone
                out.extend(" ".join(line.split()) for line in para.splitlines())
                continue
            out.extend(s for s in SENTENCE_END.split(" ".join(para.split())) if s)
    return out


def _markdown(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join(cell_text(c) for c in cells if c["cell_type"] == "markdown")


def answers(markdown: str) -> dict[str, str]:
    """The bodies of the English and Chinese 30-second answer admonitions."""
    return {
        m["title"].strip(): m["body"]
        for m in ADMONITION.finditer(markdown)
        if m["title"].strip() in (EN_TITLE, ZH_TITLE)
    }


def test_the_rule_catches_typed_measurements_and_spares_cited_figures():
    assert typed_measurements("Q3 prints accuracy 0.83 on long strings.") == ["0.83"]
    assert typed_measurements("The share lies between 65–87% over seeds.") == ["87%"]
    assert typed_measurements("Mean pooling gets 99.9%, and it is 2.3× faster.") == [
        "99.9%",
        "2.3×",
    ]
    assert typed_measurements("The loss falls to 0.96 nats with warm-up.") == ["0.96"]
    assert typed_measurements("Base reaches 28.4 BLEU {cite}`vaswani2017attention`.") == []
    assert typed_measurements("It masks 15% of tokens with dropout 0.1 and lr 1e-2.") == []
    assert typed_measurements("See §3.3 and Table 2 of the paper, version 2.13.") == []
    assert typed_measurements("The gap is {glue:text}`q03-gap` here, `x = 0.25`.") == []
    assert typed_measurements("$p = 0.37$ in math is not prose.") == []


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.stem)
def test_prose_glues_what_it_measured(path: Path) -> None:
    typed = [
        f"{numbers} in: {sentence[:140]}"
        for sentence in sentences(_markdown(path))
        if (numbers := typed_measurements(sentence))
    ]
    assert not typed, (
        f"{path.name}: numbers typed into the prose; glue them from the cell that "
        "computes them ({glue:text}), take ranges from the claim's spread(), or cite "
        "the paper in the same sentence:\n" + "\n".join(typed)
    )


def english_words(text: str) -> int:
    """Words as a strict counter sees them: the larger of the whitespace-separated tokens
    and the runs of letters or digits (``Q/K/V`` is three, ``don't`` two), with inline
    math as one word. Counters disagree on formulas and slashes; the stricter one rules.
    """
    text = HIDDEN[2].sub("x", text)
    return max(len(text.split()), len(re.findall(r"[A-Za-z0-9]+", text)))


def test_the_word_count_takes_the_stricter_reading():
    assert english_words("Q/K/V attention") == 4
    assert english_words("softmax of $QK^T/\\sqrt{d_k}$ rows") == 4
    assert english_words("a - b") == 3


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.stem)
def test_thirty_second_answers_fit_thirty_seconds(path: Path) -> None:
    found = answers(_markdown(path))
    assert set(found) == {EN_TITLE, ZH_TITLE}, f"{path.name}: both answers are required"
    english, chinese = found[EN_TITLE], found[ZH_TITLE]
    words = english_words(english)
    # Chinese characters, plus each Latin word or number (KV cache, softmax) as one more
    hanzi = len(re.findall(r"[\u4e00-\u9fff]", chinese)) + len(
        re.findall(r"[A-Za-z0-9][A-Za-z0-9_.²·/+-]*", HIDDEN[2].sub("x", chinese))
    )
    assert words <= EN_MAX_WORDS, f"{path.name}: English answer has {words} words (max 90)"
    assert hanzi <= ZH_MAX_CHARS, f"{path.name}: Chinese answer has {hanzi} characters (max 160)"
    for title, body in found.items():
        assert "{glue" not in body, f"{path.name}: {title} must not glue (cards cannot)"
        toy = [n for s in sentences(body) for n in typed_measurements(s)]
        assert not toy, f"{path.name}: {title} recites measured numbers {toy}"
