"""The quiz files are valid, and a malformed one fails with a message naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qkv import quiz


def good_question() -> dict:
    return {
        "question": "Which axis does the softmax of attention run over?",
        "type": "multiple_choice",
        "answers": [
            {"answer": "The key axis", "correct": True, "feedback": "Each row sums to 1."},
            {"answer": "The query axis", "correct": False, "feedback": "Columns would sum to 1."},
        ],
    }


@pytest.mark.parametrize("chapter", quiz.available())
def test_every_shipped_quiz_is_valid(chapter: str) -> None:
    questions = quiz.load(chapter)
    assert len(questions) >= 3, f"{chapter}: a chapter quiz needs at least three questions"


def test_a_valid_quiz_is_returned_unchanged() -> None:
    questions = [good_question()]
    assert quiz.validate(questions) is questions


BROKEN = {
    "no correct option": (
        lambda q: [a.update(correct=False) for a in q["answers"]],
        "question 1: expected at least one option with 'correct': true",
    ),
    "missing feedback": (
        lambda q: q["answers"][1].pop("feedback"),
        "question 1, option 2: expected a non-empty 'feedback'",
    ),
    "two correct in multiple_choice": (
        lambda q: q["answers"][1].update(correct=True),
        "exactly one correct option for 'multiple_choice', got 2",
    ),
    "unknown type": (lambda q: q.update(type="essay"), "'type' in"),
    "one option only": (lambda q: q["answers"].pop(), "at least two options"),
    "correct as a string": (
        lambda q: q["answers"][0].update(correct="yes"),
        "option 1: expected 'correct' true or false, got 'yes'",
    ),
    "empty question": (lambda q: q.update(question=" "), "non-empty 'question' text"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_malformed_quiz_file_fails_naming_the_file(tmp_path: Path, name: str) -> None:
    break_it, message = BROKEN[name]
    question = good_question()
    break_it(question)
    path = tmp_path / "q99_broken.json"
    path.write_text(json.dumps([question]), encoding="utf-8")
    with pytest.raises(ValueError, match="q99_broken.json") as err:
        quiz.load_file(path)
    assert message in str(err.value)


def test_invalid_json_and_empty_quizzes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "q97.json"
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(ValueError, match=r"q97.json: not valid JSON"):
        quiz.load_file(path)
    with pytest.raises(ValueError, match="non-empty list of questions"):
        quiz.validate([], source="empty.json")


def test_unknown_chapter_is_named() -> None:
    with pytest.raises(ValueError, match="no quiz for chapter 'q00_missing'"):
        quiz.load("q00_missing")


def test_show_renders_javascript(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.setattr("jupyterquiz.dynamic.display.display", lambda *o, **kw: shown.extend(o))
    for chapter in quiz.available():
        shown.clear()
        quiz.show(chapter)
        script = "".join(getattr(o, "data", "") or "" for o in shown)
        assert json.dumps(quiz.load(chapter)) in script, f"{chapter}: questions not embedded"


def _single_answer_questions() -> list[tuple[str, int, dict]]:
    return [
        (chapter, i, q)
        for chapter in quiz.available()
        for i, q in enumerate(quiz.load(chapter), start=1)
        if q["type"] == "multiple_choice"
    ]


def test_the_correct_option_is_rarely_the_longest() -> None:
    """A reader must not be able to pass by picking the longest (most hedged) option.

    Book-wide, the correct option may be the longest (ties included) in at most 40%
    of the single-answer questions; by chance, with four options, it would be ~25%.
    """
    questions = _single_answer_questions()
    longest = [
        f"{chapter} question {i}"
        for chapter, i, q in questions
        if max(len(a["answer"]) for a in q["answers"])
        == max(len(a["answer"]) for a in q["answers"] if a["correct"])
    ]
    share = len(longest) / len(questions)
    print(f"correct option is the longest in {len(longest)} of {len(questions)} questions")
    assert share <= 0.4, (
        f"the correct option is the longest in {len(longest)} of {len(questions)} single-answer "
        f"questions ({share:.0%} > 40%): rewrite the options to similar lengths: {longest}"
    )


def test_options_are_shuffled_in_the_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    """qkv.quiz.show asks jupyterquiz to shuffle the options on every display."""
    calls = []
    import jupyterquiz

    monkeypatch.setattr(jupyterquiz, "display_quiz", lambda *a, **kw: calls.append(kw))
    quiz.show(quiz.available()[0])
    assert calls and calls[0].get("shuffle_answers") is True
    rendered = []
    monkeypatch.undo()
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: rendered.extend(objs))
    monkeypatch.setattr("jupyterquiz.dynamic.display.display", lambda *o, **kw: rendered.extend(o))
    quiz.show(quiz.available()[0])
    html = "".join(str(getattr(o, "data", "") or "") for o in rendered)
    assert 'data-shuffleanswers="True"' in html, "jupyterquiz did not receive shuffle_answers"
