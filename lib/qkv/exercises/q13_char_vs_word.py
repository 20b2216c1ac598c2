"""Checker for the Q13 exercise: BERT's greedy longest-match-first WordPiece split of one word."""

from __future__ import annotations

from collections.abc import Callable

from qkv.vocab import SPECIAL_TOKENS
from qkv.wordpiece import WordPieceTokenizer

from .core import Case, Mismatch, Verdict, run_checks

__all__ = ["check_wordpiece_split"]

_VOCAB = [
    "un",
    "##aff",
    "##able",
    "##a",
    "a",
    "aff",
    "able",
    "##ff",
    "##f",
    "##u",
    "##n",
    "play",
    "##ing",
    "##in",
    "##g",
    "p",
    "##l",
    "##ay",
    "ing",
    "注",
    "##意",
    "##意力",
    "意",
]

# (case name, word, vocabulary): each one catches a different wrong algorithm
_CASES = [
    ("the textbook example", "unaffable", _VOCAB),
    ("longest match first, not shortest", "playing", _VOCAB),
    # Without "##ing", a split that strips "##" from the vocabulary and adds it back
    # emits "##ing", which is not a piece: it must find "##in" + "##g" instead.
    ("'ing' exists but not as a continuation", "pinging", ["p", "ing", "##in", "##g"]),
    ("'##ing' exists but cannot start a word", "ingp", ["##ing", "i", "##n", "##g", "##p"]),
    ("a character with no piece: the whole word is [UNK]", "playingz", _VOCAB),
    ("no piece for the first character", "xable", _VOCAB),
    ("one character", "a", _VOCAB),
    ("the empty word", "", _VOCAB),
    ("repeated pieces", "aaaa", _VOCAB),
    ("left-to-right greed differs from right-to-left", "abc", ["a", "ab", "##bc", "##c"]),
    ("greedy can dead-end: still [UNK]", "abcd", ["a", "abc", "##b", "##cd"]),
    ("Chinese characters with ## pieces", "注意力", _VOCAB),
]


def _case(name: str, word: str, vocab: list[str]) -> Case:
    def run(fn: Callable) -> None:
        expected = WordPieceTokenizer([*SPECIAL_TOKENS, *vocab]).split_word(word)
        got = fn(word, set(vocab))
        if not isinstance(got, list) or not all(isinstance(p, str) for p in got):
            raise Mismatch(f"{name}: expected a list of str, got {got!r}")
        strangers = [p for p in got if p not in vocab and p != "[UNK]"]
        if strangers:
            raise Mismatch(
                f"{name}: {strangers} not in the vocabulary {vocab}: a word-initial piece and "
                f"its '##' continuation are different entries"
            )
        if got != expected:
            raise Mismatch(f"{name}: split of {word!r} should be {expected}, got {got}")

    return Case(name, run)


def check_wordpiece_split(fn: Callable[[str, set[str]], list[str]]) -> Verdict:
    """Check the reader's ``wordpiece_split(word, vocab)`` from Q13.

    ``fn`` gets one word and a set of pieces (``##`` marks a piece that continues
    a word) and must return BERT's split: from the left, the longest piece in the
    vocabulary, ``##``-prefixed after the first; ``["[UNK]"]`` for the whole word
    if some position cannot be matched; ``[]`` for the empty word. Cases include
    shortest-match and right-to-left traps, a piece that exists only at word
    start and one that exists only as a continuation (a split that strips ``##``
    from the vocabulary fails them), a dead end after a greedy choice and an unknown character.

    Used in: Q13.
    """
    return run_checks("wordpiece_split", fn, [_case(*c) for c in _CASES])
