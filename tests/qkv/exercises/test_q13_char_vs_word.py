"""The Q13 checker: BERT's greedy WordPiece split, right and wrong."""

from __future__ import annotations

import pytest

from qkv.exercises import check_wordpiece_split


def reference(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def shortest_first(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(start + 1, len(word) + 1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def no_prefix(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            if word[start:end] in vocab or "##" + word[start:end] in vocab:
                piece = word[start:end] if word[start:end] in vocab else "##" + word[start:end]
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def unk_only_the_bad_piece(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            pieces.append("[UNK]")
            start += 1
            continue
        pieces.append(piece)
        start = end
    return pieces


def right_to_left(word, vocab):
    pieces, end = [], len(word)
    while end > 0:
        for start in range(0, end):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.insert(0, piece)
        end = start
    return pieces


def test_reference_passes() -> None:
    verdict = check_wordpiece_split(reference)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    "wrong", [shortest_first, no_prefix, unk_only_the_bad_piece, right_to_left, lambda w, v: [w]]
)
def test_wrong_splits_fail(wrong) -> None:
    verdict = check_wordpiece_split(wrong)
    assert verdict.status == "failed" and "counter-example" in verdict.detail, verdict


def test_stub_is_not_attempted_and_wrong_type_fails() -> None:
    def stub(word, vocab):
        raise NotImplementedError

    assert check_wordpiece_split(stub).status == "not attempted"
    verdict = check_wordpiece_split(lambda w, v: tuple(reference(w, v)))
    assert verdict.status == "failed" and "list of str" in verdict.detail, verdict


def strips_the_prefix(word, vocab):
    """Matches against the vocabulary without '##' and adds the prefix back afterwards."""
    bare = {piece.removeprefix("##") for piece in vocab}
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start and word[start:end] not in bare:
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(word[start:end] if start == 0 else "##" + word[start:end])
        start = end
    return pieces


def test_a_split_that_strips_the_prefix_from_the_vocabulary_fails() -> None:
    verdict = check_wordpiece_split(strips_the_prefix)
    assert verdict.status == "failed" and "not in the vocabulary" in verdict.detail, verdict
