"""Seeded synthetic tasks with inputs and labels, and the special-id table they share.

Every task is a function of a :class:`torch.Generator` (or an int seed): the
same seed gives the same batch on every machine. Tensors are made on the CPU,
batch first; the caller moves them with ``.to(device)``. All of them, and
:class:`qkv.markov.MarkovLanguage`, are importable from :mod:`qkv.data` too.

All tasks take their special ids from the book's one table,
:data:`qkv.vocab.SPECIAL_TOKENS` (the tokenizers use it too); a task's own
tokens start at :data:`N_SPECIAL`, where a text vocabulary has ``[UNK]``:

=============  ===  ==========================================
``PAD_ID``     0    padding, always after the real tokens
``BOS_ID``     1    beginning of a target sequence
``EOS_ID``     2    end of a target sequence
``CLS_ID``     3    classification token, first in the input
``SEP_ID``     4    separator (unused by the tasks here)
``MASK_ID``    5    the masked-LM ``[MASK]`` token
=============  ===  ==========================================

- :func:`digit_seq2seq`: reverse or copy a digit string (encoder-decoder);
- :func:`associative_recall`: key-value pairs, then a key to look up;
- :func:`sequence_classification`: a label that needs the whole sequence, read at ``[CLS]``;
- :func:`long_documents`: one evidence token, placed where asked, in a long document.
"""

from __future__ import annotations

from numbers import Integral
from typing import NamedTuple

import torch

from qkv._checks import check_generator, check_int
from qkv._checks import check_positive_ints as _check_positive
from qkv.vocab import BOS, CLS, EOS, MASK, PAD, SEP, SPECIAL_TOKENS

__all__ = [
    "PAD_ID",
    "BOS_ID",
    "EOS_ID",
    "CLS_ID",
    "SEP_ID",
    "MASK_ID",
    "SPECIAL_IDS",
    "N_SPECIAL",
    "DIGIT_VOCAB_SIZE",
    "Seq2SeqBatch",
    "digit_seq2seq",
    "RecallBatch",
    "associative_recall",
    "ClassificationBatch",
    "sequence_classification",
    "LongDocBatch",
    "long_documents",
]

PAD_ID, BOS_ID, EOS_ID, CLS_ID, SEP_ID, MASK_ID = (
    SPECIAL_TOKENS.index(token) for token in (PAD, BOS, EOS, CLS, SEP, MASK)
)
SPECIAL_IDS: tuple[int, ...] = (PAD_ID, BOS_ID, EOS_ID, CLS_ID, SEP_ID, MASK_ID)
#: The first id of a task's own tokens (the number of special ids).
N_SPECIAL = len(SPECIAL_IDS)
assert SPECIAL_TOKENS[N_SPECIAL] == "[UNK]"  # the one token of the table that tasks never use
#: ``V`` of :func:`digit_seq2seq`: digit ``d`` has id ``N_SPECIAL + d``.
DIGIT_VOCAB_SIZE = N_SPECIAL + 10


def _random_lengths(
    batch_size: int, min_len: int, max_len: int, g: torch.Generator
) -> torch.Tensor:
    """``(B,)`` lengths uniform in ``[min_len, max_len]``."""
    _check_positive(batch_size=batch_size, min_len=min_len, max_len=max_len)
    if min_len > max_len:
        raise ValueError(f"min_len must be <= max_len, got {min_len} > {max_len}")
    return torch.randint(min_len, max_len + 1, (batch_size,), generator=g)


class Seq2SeqBatch(NamedTuple):
    """``src (B, m)``, ``tgt (B, m + 2)`` and ``lengths (B,)`` of :func:`digit_seq2seq`."""

    src: torch.Tensor
    tgt: torch.Tensor
    lengths: torch.Tensor


def digit_seq2seq(
    batch_size: int,
    *,
    min_len: int,
    max_len: int,
    task: str = "reverse",
    generator: torch.Generator | int,
) -> Seq2SeqBatch:
    """Random digit strings and their reversal (or copy), for an encoder-decoder.

    Returns a :class:`Seq2SeqBatch`:

    - ``src``: ``(B, max_len)`` digit ids (``N_SPECIAL + d``), then ``PAD_ID``;
    - ``tgt``: ``(B, max_len + 2)``: ``BOS_ID``, the reversed (or copied) digits,
      ``EOS_ID``, then ``PAD_ID``; teacher forcing feeds ``tgt[:, :-1]`` and
      predicts ``tgt[:, 1:]``;
    - ``lengths``: ``(B,)`` number of digits, uniform in ``[min_len, max_len]``;
      ``tgt`` has ``lengths + 2`` real tokens.

    Vocabulary: :data:`DIGIT_VOCAB_SIZE`.
    Used in: Q3 (chapters/attention/q03_attention_vs_seq2seq).
    """
    if task not in ("reverse", "copy"):
        raise ValueError(f"task must be 'reverse' or 'copy', got {task!r}")
    g = check_generator(generator)
    lengths = _random_lengths(batch_size, min_len, max_len, g)
    digits = torch.randint(0, 10, (batch_size, max_len), generator=g) + N_SPECIAL
    position = torch.arange(max_len)
    real = position < lengths[:, None]  # (B, max_len)
    src = torch.where(real, digits, PAD_ID)
    if task == "reverse":
        # output j is input lengths - 1 - j; clamp keeps the padded gathers in range
        source_index = (lengths[:, None] - 1 - position).clamp(min=0)  # (B, max_len)
        out = torch.where(real, src.gather(1, source_index), PAD_ID)
    else:
        out = src
    tgt = torch.full((batch_size, max_len + 2), PAD_ID, dtype=torch.long)
    tgt[:, 0] = BOS_ID
    tgt[:, 1:-1] = out
    tgt[torch.arange(batch_size), lengths + 1] = EOS_ID
    return Seq2SeqBatch(src, tgt, lengths)


class RecallBatch(NamedTuple):
    """Outputs of :func:`associative_recall`: ``inputs``, ``target``, ``query_pair``."""

    inputs: torch.Tensor
    target: torch.Tensor
    query_pair: torch.Tensor


def associative_recall(
    batch_size: int,
    n_pairs: int,
    *,
    n_keys: int,
    n_values: int,
    generator: torch.Generator | int,
) -> RecallBatch:
    """Key-value pairs followed by one of the keys; the target is that key's value.

    A row reads ``k_1 v_1 k_2 v_2 ... k_P v_P q`` with ``P = n_pairs`` distinct
    keys and ``q = k_{query_pair}``. Key ``i`` has id ``N_SPECIAL + i``, value
    ``j`` has id ``N_SPECIAL + n_keys + j``; the vocabulary has
    ``N_SPECIAL + n_keys + n_values`` ids.

    Returns a :class:`RecallBatch`: ``inputs (B, 2 * n_pairs + 1)`` token ids,
    ``target (B,)`` the queried value's token id, and ``query_pair (B,)`` the
    index in ``[0, P)`` of the queried pair.

    Used in: Q6 (chapters/attention/q06_keys_equal_values).
    """
    _check_positive(batch_size=batch_size, n_pairs=n_pairs, n_keys=n_keys, n_values=n_values)
    if n_pairs > n_keys:
        raise ValueError(f"n_pairs must be <= n_keys (keys are distinct), got {n_pairs} > {n_keys}")
    g = check_generator(generator)
    # a random permutation per row, cut to P: distinct keys in each row
    keys = torch.rand(batch_size, n_keys, generator=g).argsort(dim=1)[:, :n_pairs] + N_SPECIAL
    values = torch.randint(0, n_values, (batch_size, n_pairs), generator=g) + N_SPECIAL + n_keys
    pairs = torch.stack((keys, values), dim=2).reshape(
        batch_size, 2 * n_pairs
    )  # (B, P, 2) -> (B, 2P)
    query_pair = torch.randint(0, n_pairs, (batch_size,), generator=g)
    rows = torch.arange(batch_size)
    inputs = torch.cat((pairs, keys[rows, query_pair][:, None]), dim=1)
    return RecallBatch(inputs, values[rows, query_pair], query_pair)


class ClassificationBatch(NamedTuple):
    """Outputs of :func:`sequence_classification`, each ``(B, 1 + max_len)`` or ``(B,)``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor


def sequence_classification(
    batch_size: int,
    *,
    min_len: int,
    max_len: int,
    n_words: int,
    rule: str = "majority",
    generator: torch.Generator | int,
) -> ClassificationBatch:
    """Sequences whose label needs the whole sequence, with ``[CLS]`` first and padding last.

    Word ``A`` is id ``N_SPECIAL``, word ``B`` is ``N_SPECIAL + 1``; the other
    ``n_words - 2`` words are distractors. Rules (labels balanced in expectation):

    - ``"majority"``: an odd number of ``A``/``B`` words among distractors;
      label 1 when ``A`` occurs more often than ``B`` (counting over the sequence).
    - ``"pair"``: exactly one ``A`` and one ``B``; label 1 when ``B`` comes right
      after ``A``. Bags of words are equal in both classes, so a classifier
      needs word order (``min_len >= 3``).

    Returns a :class:`ClassificationBatch`:

    - ``input_ids``: ``(B, 1 + max_len)``: ``CLS_ID``, the words, then ``PAD_ID``;
    - ``attention_mask``: ``(B, 1 + max_len)`` bool, True = real token ([CLS] included);
    - ``labels``: ``(B,)`` 0 or 1;
    - ``lengths``: ``(B,)`` real tokens, [CLS] included.

    Vocabulary: ``N_SPECIAL + n_words``.
    Used in: Q17.
    """
    if rule not in ("majority", "pair"):
        raise ValueError(f"rule must be 'majority' or 'pair', got {rule!r}")
    if n_words < 3:
        raise ValueError(f"n_words must be >= 3 (A, B and a distractor), got {n_words}")
    if rule == "pair" and min_len < 3:
        raise ValueError(f"rule 'pair' needs min_len >= 3, got {min_len}")
    g = check_generator(generator)
    lengths = _random_lengths(batch_size, min_len, max_len, g)
    real = torch.arange(max_len) < lengths[:, None]  # (B, max_len)
    labels = torch.randint(0, 2, (batch_size,), generator=g)
    word_a, word_b = N_SPECIAL, N_SPECIAL + 1
    words = torch.randint(2, n_words, (batch_size, max_len), generator=g) + N_SPECIAL
    rows = torch.arange(batch_size)
    if rule == "majority":
        # an odd number of marked positions (so no ties), fewer than half of them minority
        n_marked = 2 * (torch.rand(batch_size, generator=g) * ((lengths + 1) // 2)).long() + 1
        n_minority = (torch.rand(batch_size, generator=g) * ((n_marked + 1) // 2)).long()
        n_majority = (n_marked - n_minority)[:, None]  # (B, 1)
        # visit real positions in a random order (padding last): rank of each position
        shuffled = torch.rand(batch_size, max_len, generator=g).masked_fill(~real, 2.0)
        rank = shuffled.argsort(dim=1).argsort(dim=1)  # (B, max_len)
        majority = torch.where(labels == 1, word_a, word_b)[:, None]  # (B, 1)
        minority = torch.where(labels == 1, word_b, word_a)[:, None]
        words = torch.where(rank < n_majority, majority, words)
        is_minority = (rank >= n_majority) & (rank < n_marked[:, None])
        words = torch.where(is_minority, minority, words)
    else:
        a_pos = (torch.rand(batch_size, generator=g) * (lengths - 1)).long()  # in [0, len - 2]
        # negatives: B anywhere but at a_pos or a_pos + 1, uniformly
        other = (torch.rand(batch_size, generator=g) * (lengths - 2)).long()
        other = torch.where(other >= a_pos, other + 2, other)
        b_pos = torch.where(labels == 1, a_pos + 1, other)
        words[rows, a_pos] = word_a
        words[rows, b_pos] = word_b
    words = torch.where(real, words, PAD_ID)
    input_ids = torch.cat((torch.full((batch_size, 1), CLS_ID), words), dim=1)
    attention_mask = torch.cat((torch.ones(batch_size, 1, dtype=torch.bool), real), dim=1)
    return ClassificationBatch(input_ids, attention_mask, labels, lengths + 1)


class LongDocBatch(NamedTuple):
    """``input_ids (B, L)``, ``labels (B,)``, ``evidence_position (B,)``: :func:`long_documents`."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    evidence_position: torch.Tensor


def long_documents(
    batch_size: int,
    length: int,
    *,
    position: str | int = "end",
    n_classes: int = 2,
    n_noise: int = 50,
    generator: torch.Generator | int,
) -> LongDocBatch:
    """Long noise documents with one evidence token, placed where asked, that fixes the label.

    Evidence token ``c`` (id ``N_SPECIAL + c``) gives label ``c``; noise tokens
    have ids ``N_SPECIAL + n_classes + j``, ``j < n_noise``, and never carry the
    label. A model that does not see the evidence position can only guess.

    Args:
        batch_size: ``B``.
        length: ``L``, tokens per document.
        position: where the evidence sits: ``"start"`` (first tenth of the
            document), ``"middle"`` (the tenth around ``length // 2``),
            ``"end"`` (last tenth), ``"random"`` (anywhere), or an int index.
        n_classes: number of labels (and of evidence tokens).
        n_noise: size of the noise vocabulary.
        generator: a CPU :class:`torch.Generator` or an int seed.

    Returns a :class:`LongDocBatch`: ``input_ids (B, L)`` (no padding, no [CLS]:
    truncation and sliding windows add their own), ``labels (B,)`` in
    ``[0, n_classes)`` and ``evidence_position (B,)``.

    Vocabulary: ``N_SPECIAL + n_classes + n_noise``.
    """
    _check_positive(batch_size=batch_size, length=length, n_noise=n_noise)
    n_classes = check_int("n_classes", n_classes, 2)
    tenth = max(1, length // 10)
    regions = {
        "start": (0, tenth),
        "middle": (length // 2 - tenth // 2, length // 2 - tenth // 2 + tenth),
        "end": (length - tenth, length),
        "random": (0, length),
    }
    if isinstance(position, Integral) and not isinstance(position, bool):
        position = int(position)
        if not 0 <= position < length:
            raise ValueError(f"position must be in [0, {length}), got {position}")
        low, high = position, position + 1
    elif position in regions:
        low, high = regions[position]
    else:
        raise ValueError(
            f"position must be 'start', 'middle', 'end', 'random' or an int, got {position!r}"
        )
    g = check_generator(generator)
    input_ids = torch.randint(0, n_noise, (batch_size, length), generator=g) + N_SPECIAL + n_classes
    labels = torch.randint(0, n_classes, (batch_size,), generator=g)
    evidence_position = torch.randint(low, high, (batch_size,), generator=g)
    input_ids[torch.arange(batch_size), evidence_position] = labels + N_SPECIAL
    return LongDocBatch(input_ids, labels, evidence_position)
