"""WordPiece (Schuster & Nakajima 2012; Wu et al. 2016; BERT): subwords merged by likelihood gain.

Training is BPE's loop with a different choice of pair. BPE (:mod:`qkv.bpe`)
merges the most *frequent* adjacent pair; WordPiece merges the pair that most
increases the likelihood of the training text under a unigram model of the
symbols. Google never released its trainer; the rule used here (and in Hugging
Face's reconstruction) ranks pairs by

.. math::

    \\mathrm{score}(a, b) = \\frac{\\mathrm{count}(ab)}{\\mathrm{count}(a)\\,\\mathrm{count}(b)},

so a pair whose parts rarely occur apart wins over a pair of two common symbols.
A symbol that continues a word carries BERT's ``##`` prefix (``"playing"`` ->
``play ##ing``). Encoding does not replay merges: BERT's ``WordpieceTokenizer``
splits each word greedily, longest vocabulary match first from the left, and a
word with any part that cannot be matched becomes a single ``[UNK]``. Words come
from :func:`basic_tokenize`, which follows BERT's ``BasicTokenizer``: split on
whitespace and punctuation, optional lower-casing with accents stripped, and a
token per CJK character (so Chinese BERT is character-level).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable

from qkv._checks import check_int
from qkv.bpe import index_pairs, reindex_word
from qkv.vocab import UNK, Tokenizer, _check_texts, _vocab_by_frequency

__all__ = ["PREFIX", "is_cjk", "basic_tokenize", "WordPieceTokenizer"]

#: Marks a piece that continues a word (BERT's continuation prefix).
PREFIX = "##"

# The CJK Unified Ideographs blocks that BERT's BasicTokenizer._is_chinese_char lists.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_cjk(char: str) -> bool:
    """True if ``char`` is a CJK ideograph (the blocks BERT's BasicTokenizer splits off)."""
    return any(lo <= ord(char) <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(char: str) -> bool:
    # as BERT: every non-alphanumeric ASCII symbol ("$", "^", "`" too) and Unicode P* classes
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_control(char: str) -> bool:
    # BERT's _clean_text removes NUL, U+FFFD and control characters, *before* it looks for
    # whitespace: \x0b, \x0c, \x1c-\x1f and \x85 are controls (Cc) that str.isspace()
    # also accepts, so they join their neighbours. \t, \n, \r count as whitespace. The
    # categories are Hugging Face's BertTokenizer's (every "C*"); Google's original
    # tokenization.py removes only Cc and Cf, keeping private-use and unassigned characters.
    if char in "\t\n\r":
        return False
    return char in "\x00\ufffd" or unicodedata.category(char).startswith("C")


def basic_tokenize(text: str, *, lowercase: bool = False, split_cjk: bool = True) -> list[str]:
    """Split ``text`` into words as BERT's ``BasicTokenizer`` does, before WordPiece.

    Whitespace separates words; each punctuation character is a word of its own;
    with ``split_cjk`` every CJK character is a word of its own (Chinese BERT);
    with ``lowercase`` words are lower-cased and accents stripped (``uncased``).
    Control characters are dropped first, as in BERT's ``_clean_text``: a control that
    Python counts as whitespace (vertical tab U+000B, next line U+0085) joins its neighbours.
    Used in: Q13.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    words: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            words.append("".join(current))
            current.clear()

    if lowercase:
        text = "".join(
            c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn"
        )
    for char in text:
        if _is_control(char):
            continue  # removed before the whitespace test: "a\x0bb" is one word, "ab"
        elif char.isspace():  # BERT's _clean_text maps whitespace to " ", then str.split()
            flush()
        elif _is_punctuation(char) or (split_cjk and is_cjk(char)):
            flush()
            words.append(char)
        else:
            current.append(char)
    flush()
    return words


def _initial_symbols(word: str) -> tuple[str, ...]:
    return (word[0], *(PREFIX + c for c in word[1:]))


def _join(left: str, right: str) -> str:
    return left + right.removeprefix(PREFIX)


class WordPieceTokenizer(Tokenizer):
    """WordPiece: likelihood-scored merges to train, greedy longest match to encode.

    Args:
        vocab: special tokens, then word-initial and ``##`` continuation pieces.
        lowercase: lower-case and strip accents before splitting (``bert-base-uncased``).
        split_cjk: make every CJK character a word of its own (as BERT does).
        max_chars_per_word: longer words become ``[UNK]`` (BERT: 100).

    Used in: Q13.
    """

    def __init__(
        self,
        vocab: Iterable[str],
        *,
        lowercase: bool = False,
        split_cjk: bool = True,
        max_chars_per_word: int = 100,
    ):
        super().__init__(list(vocab))
        self.lowercase = lowercase
        self.split_cjk = split_cjk
        self.max_chars_per_word = check_int("max_chars_per_word", max_chars_per_word, 1)
        self.merges: list[tuple[str, str]] = []

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        lowercase: bool = False,
        split_cjk: bool = True,
    ) -> WordPieceTokenizer:
        """Learn pieces on ``texts`` until there are ``vocab_size`` tokens (or no pair is left).

        Each word starts as its characters (``p ##l ##a ##y``); every step merges
        the adjacent pair with the largest ``count(ab) / (count(a) count(b))``,
        counts weighted by word frequency (ties: the pair counted first). The
        merges, in order, are kept in ``merges`` for inspection; encoding uses
        only the vocabulary.

        Args:
            texts: training text.
            vocab_size: ``V`` wanted, special tokens and initial symbols included.
        """
        vocab_size = check_int("vocab_size", vocab_size, 1)
        texts = _check_texts(texts)
        words_of = (basic_tokenize(t, lowercase=lowercase, split_cjk=split_cjk) for t in texts)
        word_counts = Counter(w for words in words_of for w in words)
        words = [_initial_symbols(w) for w in word_counts]
        freqs = list(word_counts.values())
        symbol_counts: Counter = Counter()
        for w, f in zip(words, freqs, strict=True):
            for s in w:
                symbol_counts[s] += f
        vocab = _vocab_by_frequency(symbol_counts, 1, None)
        if vocab_size < len(vocab):
            raise ValueError(
                f"vocab_size must be >= {len(vocab)} (specials + initial symbols), got {vocab_size}"
            )
        pair_counts, words_with = index_pairs(words, freqs)

        merges, known = [], set(vocab)
        while len(vocab) < vocab_size and pair_counts:
            # the likelihood gain of merging (a, b); max keeps the first of equal scores
            best = max(
                pair_counts,
                key=lambda p: pair_counts[p] / (symbol_counts[p[0]] * symbol_counts[p[1]]),
            )
            merges.append(best)
            new_symbol = _join(*best)
            if new_symbol not in known:
                vocab.append(new_symbol)
                known.add(new_symbol)
            for i in words_with.pop(best):
                old, new = words[i], _merge(words[i], best)
                reindex_word(pair_counts, words_with, i, old, new, freqs[i])
                for s in old:
                    symbol_counts[s] -= freqs[i]
                for s in new:
                    symbol_counts[s] += freqs[i]
                words[i] = new
        tokenizer = cls(vocab, lowercase=lowercase, split_cjk=split_cjk)
        tokenizer.merges = merges
        return tokenizer

    def split_word(self, word: str) -> list[str]:
        """Greedy longest-match-first split of one word (BERT's ``WordpieceTokenizer``).

        From the left, take the longest prefix in the vocabulary (``##``-prefixed
        after the first piece), then continue after it. If some position has no
        match, or the word is longer than ``max_chars_per_word``, the whole word
        is ``["[UNK]"]``.
        """
        if len(word) > self.max_chars_per_word:
            return [UNK]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else PREFIX + word[start:end]
                if piece in self.token_to_id:
                    break
            else:
                return [UNK]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        words = basic_tokenize(text, lowercase=self.lowercase, split_cjk=self.split_cjk)
        return [piece for word in words for piece in self.split_word(word)]

    def detokenize(self, tokens: list[str]) -> str:
        """Join pieces: ``##`` pieces glue to the previous one, words get a space (lossy)."""
        return " ".join(tokens).replace(" " + PREFIX, "")


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace every non-overlapping occurrence of ``pair`` in ``symbols``, left to right."""
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(_join(symbols[i], symbols[i + 1]))
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)
