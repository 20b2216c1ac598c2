"""Byte-pair encoding (Sennrich et al. 2016, Algorithm 1): subword tokens learned by merging.

Words come from :func:`pretokenize`, which keeps each word's leading space, so
``decode(encode(text)) == text`` for every text made of characters seen in
training. An unseen word is split into the largest pieces the learned merges
build, at worst into characters. The character and word tokenizers, which BPE
sits between, are in :mod:`qkv.tokenization` (which also re-exports this module's
names); the shared vocabulary layout is in :mod:`qkv.vocab`.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise

from qkv._checks import check_int
from qkv.vocab import Tokenizer, _check_texts, _vocab_by_frequency

__all__ = ["PRETOKENIZE_PATTERN", "pretokenize", "BPETokenizer"]

#: How :func:`pretokenize` splits text into words: a word keeps the single space
#: before it (as in GPT-2, Radford et al. 2019), so concatenating the pieces gives
#: the text back and BPE decoding is lossless. Every character is matched, since
#: ``\w``, ``\s`` and ``[^\w\s]`` cover everything.
PRETOKENIZE_PATTERN = r" ?\w+| ?[^\w\s]+|\s+(?!\S)|\s+"
_PRETOKENIZE = re.compile(PRETOKENIZE_PATTERN)


def pretokenize(text: str) -> list[str]:
    """Split ``text`` into the words BPE works inside, each with its leading space.

    ``"".join(pretokenize(text)) == text`` for every text. Pattern:
    :data:`PRETOKENIZE_PATTERN`.
    Used in: Q13.
    """
    return _PRETOKENIZE.findall(text)


def _merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace every non-overlapping occurrence of ``pair`` in ``symbols``, left to right."""
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


Pair = tuple[str, str]


def index_pairs(
    words: list[tuple[str, ...]], freqs: list[int]
) -> tuple[Counter, defaultdict[Pair, set[int]]]:
    """Count adjacent symbol pairs over ``words`` (weighted by ``freqs``) and index them.

    Returns ``pair -> total frequency`` and ``pair -> indices of the words that
    contain it``, so that each merge revisits only the words it changes (shared by
    BPE here and WordPiece in :mod:`qkv.wordpiece`).
    """
    pair_counts: Counter = Counter()
    words_with: defaultdict[Pair, set[int]] = defaultdict(set)
    for i, w in enumerate(words):
        for pair in pairwise(w):
            pair_counts[pair] += freqs[i]
            words_with[pair].add(i)
    return pair_counts, words_with


def reindex_word(
    pair_counts: Counter,
    words_with: defaultdict[Pair, set[int]],
    i: int,
    old: tuple[str, ...],
    new: tuple[str, ...],
    freq: int,
) -> None:
    """Update the index of :func:`index_pairs` after word ``i`` changed from ``old`` to ``new``."""
    for pair in pairwise(old):
        pair_counts[pair] -= freq
        if pair_counts[pair] == 0:
            del pair_counts[pair]
    for pair in pairwise(new):
        pair_counts[pair] += freq
        words_with[pair].add(i)


class BPETokenizer(Tokenizer):
    """Byte-pair encoding on characters (Sennrich et al. 2016, Algorithm 1).

    Training starts from single characters and repeatedly merges the most
    frequent adjacent pair of symbols inside words into a new symbol, until the
    vocabulary has ``vocab_size`` tokens. Encoding replays the merges in the
    order they were learned. A word never seen in training is split into the
    largest pieces the merges build, and at worst into characters; only a
    character never seen in training becomes ``[UNK]``. Words come from
    :func:`pretokenize` and keep their leading space, so ``decode(encode(t)) == t``.

    Args:
        vocab: special tokens, then the characters, then one token per merge.
        merges: the learned merges ``(left, right)``, in order.
    Used in: Q13.
    """

    def __init__(self, vocab: Sequence[str], merges: Sequence[tuple[str, str]]):
        super().__init__(vocab)
        self.merges: list[tuple[str, str]] = [(left, right) for left, right in merges]
        for rank, (left, right) in enumerate(self.merges):
            # a merge must build a token of the vocabulary: otherwise encoding would
            # silently turn every word that contains it into [UNK]
            if left + right not in self.token_to_id:
                raise ValueError(
                    f"merge {rank} ({left!r}, {right!r}) builds {left + right!r}, "
                    "which is not in vocab: every merge result must be a token"
                )
        # a lower rank was learned earlier and is applied first
        self.merge_rank: dict[tuple[str, str], int] = {m: r for r, m in enumerate(self.merges)}

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn merges on ``texts`` until there are ``vocab_size`` tokens (or no pair is left).

        Args:
            texts: training text.
            vocab_size: ``V`` wanted, special tokens and characters included; must
                be at least the number of special tokens plus distinct characters.
        """
        vocab_size = check_int("vocab_size", vocab_size, 1)  # 300.0 is refused
        texts = _check_texts(texts)
        word_counts = Counter(w for text in texts for w in pretokenize(text))
        words = [tuple(w) for w in word_counts]  # each word as a tuple of symbols
        freqs = list(word_counts.values())
        vocab = _vocab_by_frequency(Counter(ch for text in texts for ch in text), 1, None)
        if vocab_size < len(vocab):
            raise ValueError(
                f"vocab_size must be >= {len(vocab)} (specials + characters), got {vocab_size}"
            )

        pair_counts, words_with = index_pairs(words, freqs)

        merges, known = [], set(vocab)
        while len(vocab) < vocab_size and pair_counts:
            # the most frequent pair (ties: the one counted first, so training is deterministic)
            ((best, _),) = pair_counts.most_common(1)
            merges.append(best)
            if best[0] + best[1] not in known:  # two merge paths can build one string
                vocab.append(best[0] + best[1])
                known.add(vocab[-1])
            for i in words_with.pop(best):
                new = _merge_pair(words[i], best)
                reindex_word(pair_counts, words_with, i, words[i], new, freqs[i])
                words[i] = new
        return cls(vocab, merges)

    def _split_word(self, word: str) -> tuple[str, ...]:
        symbols = tuple(word)
        while len(symbols) > 1:
            # the earliest-learned merge present in the word goes first
            pair = min(pairwise(symbols), key=lambda p: self.merge_rank.get(p, len(self.merges)))
            if pair not in self.merge_rank:
                break
            symbols = _merge_pair(symbols, pair)
        return symbols

    def tokenize(self, text: str) -> list[str]:
        return [piece for word in pretokenize(text) for piece in self._split_word(word)]

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens)
