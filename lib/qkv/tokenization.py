"""Character, word and subword (BPE) tokenizers, small enough to read in one sitting.

Every tokenizer maps text to a list of token ids and back. They share one
vocabulary layout: the special tokens :data:`SPECIAL_TOKENS` come first
(``[PAD]`` = 0, ``[UNK]`` = 1, ``[CLS]`` = 2, ``[SEP]`` = 3, ``[MASK]`` = 4),
then the learned tokens, most frequent first. ``V`` (``vocab_size``) counts
both.

- :class:`CharTokenizer`: one token per character (Chinese BERT's choice).
- :class:`WordTokenizer`: English words by a regular expression, Chinese words
  by the jieba segmenter; unseen words become ``[UNK]``.
- :class:`BPETokenizer`: byte-pair encoding (Sennrich et al. 2016, Alg. 1) on
  characters; an unseen word falls back to smaller pieces, down to characters.

:func:`word_spans` and :func:`word_ids` map a Chinese sentence's characters to
jieba words, the grouping that whole-word masking needs (Cui et al. 2019).
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise

import torch

from qkv._checks import check_int

__all__ = [
    "SPECIAL_TOKENS",
    "PAD",
    "UNK",
    "CLS",
    "SEP",
    "MASK",
    "PRETOKENIZE_PATTERN",
    "Tokenizer",
    "CharTokenizer",
    "WordTokenizer",
    "BPETokenizer",
    "pretokenize",
    "word_spans",
    "word_ids",
]

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
#: The special tokens, ids 0 to 4 in every vocabulary here (BERT's names).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)

#: How :func:`pretokenize` splits text into words: a word keeps the single space
#: before it (as in GPT-2, Radford et al. 2019), so concatenating the pieces gives
#: the text back and BPE decoding is lossless. Every character is matched, since
#: ``\w``, ``\s`` and ``[^\w\s]`` cover everything.
PRETOKENIZE_PATTERN = r" ?\w+| ?[^\w\s]+|\s+(?!\S)|\s+"
_PRETOKENIZE = re.compile(PRETOKENIZE_PATTERN)
_ENGLISH_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" (?=[.,!?;:)'])")


def _check_texts(texts: Iterable[str]) -> list[str]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a non-empty iterable of str")
    return texts


class Tokenizer:
    """Base class: a vocabulary (``id -> token``) and the rules that split and join text.

    Subclasses implement :meth:`tokenize` (text -> tokens) and :meth:`detokenize`
    (tokens -> text). Tokens not in the vocabulary are encoded as ``[UNK]``.
    """

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocab must start with {SPECIAL_TOKENS}, got {vocab[:5]}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab has duplicate tokens")
        self.vocab: list[str] = vocab
        self.token_to_id: dict[str, int] = {token: i for i, token in enumerate(vocab)}

    @property
    def vocab_size(self) -> int:
        """``V``: the number of tokens, special tokens included."""
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return self.token_to_id[PAD]

    @property
    def unk_id(self) -> int:
        return self.token_to_id[UNK]

    @property
    def special_ids(self) -> list[int]:
        """Ids of :data:`SPECIAL_TOKENS` (what an MLM masker must never mask)."""
        return [self.token_to_id[t] for t in SPECIAL_TOKENS]

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens (strings), before the vocabulary lookup."""
        raise NotImplementedError

    def detokenize(self, tokens: list[str]) -> str:
        """Join tokens back into text."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Return the ids of ``text``'s tokens, ``[UNK]`` for tokens out of the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        return [self.token_to_id.get(token, self.unk_id) for token in self.tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Return the text of ``ids`` (special tokens are written out, e.g. ``[UNK]``).

        ``ids``: a list of ints (NumPy integers too) or a 1-D integer tensor; a float
        such as ``5.9``, a bool or a string is a ``TypeError``, never rounded to an id.
        """
        if isinstance(ids, torch.Tensor):
            if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
                raise TypeError(f"ids must be an integer tensor, got dtype {ids.dtype}")
            if ids.dim() != 1:
                raise ValueError(f"ids must be 1-D (one sequence), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise TypeError(f"ids must be a sequence of int token ids, got {ids!r}")
        tokens = []
        for i in ids:
            i = check_int("token id", i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id must be in [0, {self.vocab_size}), got {i}")
            tokens.append(self.vocab[i])
        return self.detokenize(tokens)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def _vocab_by_frequency(counts: Counter, min_freq: int, max_size: int | None) -> list[str]:
    """Special tokens, then tokens seen >= ``min_freq`` times, most frequent first."""
    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}")
    # ties broken alphabetically so that training is deterministic
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    tokens = [t for t, c in ranked if c >= min_freq and t not in SPECIAL_TOKENS]
    if max_size is not None:
        if max_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"max_size must be > {len(SPECIAL_TOKENS)}, got {max_size}")
        tokens = tokens[: max_size - len(SPECIAL_TOKENS)]
    return list(SPECIAL_TOKENS) + tokens


class CharTokenizer(Tokenizer):
    """One token per character; lossless for every character seen in training."""

    @classmethod
    def train(
        cls, texts: Iterable[str], *, min_freq: int = 1, max_size: int | None = None
    ) -> CharTokenizer:
        """Build the vocabulary from the characters of ``texts`` (spaces included)."""
        counts = Counter(ch for text in _check_texts(texts) for ch in text)
        return cls(_vocab_by_frequency(counts, min_freq, max_size))

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens)


@functools.cache
def _jieba_segmenter():
    """A private, initialised jieba segmenter (built once, on first use).

    jieba logs "Building prefix dict ..." at DEBUG level to stderr; its own logger
    is raised to WARNING only while the dictionary loads, then restored.
    """
    import jieba

    logger = logging.getLogger("jieba")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        segmenter = jieba.Tokenizer()
        segmenter.initialize()
    finally:
        logger.setLevel(level)
    return segmenter


def _jieba_words(text: str) -> list[str]:
    # HMM=False: words come from jieba's dictionary only, a fixed, reproducible rule
    return _jieba_segmenter().lcut(text, HMM=False)


class WordTokenizer(Tokenizer):
    """One token per word: English by a regular expression, Chinese by jieba.

    English words are runs of letters/digits (with an inner apostrophe, "don't");
    each punctuation mark is a word. Chinese text is segmented by jieba's
    dictionary. Whitespace is dropped, so decoding is not lossless; a word not
    seen in training becomes ``[UNK]`` (the out-of-vocabulary problem).

    Args:
        vocab: special tokens then words.
        lang: ``"en"`` or ``"zh"``.
        lowercase: fold English words to lower case before lookup.
    """

    def __init__(self, vocab: Sequence[str], *, lang: str = "en", lowercase: bool = False):
        if lang not in ("en", "zh"):
            raise ValueError(f"lang must be 'en' or 'zh', got {lang!r}")
        super().__init__(vocab)
        self.lang = lang
        self.lowercase = lowercase

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        lang: str = "en",
        lowercase: bool = False,
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> WordTokenizer:
        """Build the vocabulary from the words of ``texts``."""
        unfitted = cls(SPECIAL_TOKENS, lang=lang, lowercase=lowercase)
        counts = Counter(w for text in _check_texts(texts) for w in unfitted.tokenize(text))
        return cls(_vocab_by_frequency(counts, min_freq, max_size), lang=lang, lowercase=lowercase)

    def tokenize(self, text: str) -> list[str]:
        if self.lang == "zh":
            return [w for w in _jieba_words(text) if not w.isspace()]
        words = _ENGLISH_WORD.findall(text)
        return [w.lower() for w in words] if self.lowercase else words

    def detokenize(self, tokens: list[str]) -> str:
        if self.lang == "zh":
            return "".join(tokens)
        return _SPACE_BEFORE_PUNCTUATION.sub("", " ".join(tokens))


def pretokenize(text: str) -> list[str]:
    """Split ``text`` into the words BPE works inside, each with its leading space.

    ``"".join(pretokenize(text)) == text`` for every text. Pattern:
    :data:`PRETOKENIZE_PATTERN`.
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
    """

    def __init__(self, vocab: Sequence[str], merges: Sequence[tuple[str, str]]):
        super().__init__(vocab)
        self.merges: list[tuple[str, str]] = [tuple(m) for m in merges]
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
        texts = _check_texts(texts)
        word_counts = Counter(w for text in texts for w in pretokenize(text))
        words = [tuple(w) for w in word_counts]  # each word as a tuple of symbols
        freqs = list(word_counts.values())
        vocab = _vocab_by_frequency(Counter(ch for text in texts for ch in text), 1, None)
        if vocab_size < len(vocab):
            raise ValueError(
                f"vocab_size must be >= {len(vocab)} (specials + characters), got {vocab_size}"
            )

        # pair -> total frequency, and pair -> indices of the words containing it,
        # so that each merge revisits only the words it changes
        pair_counts: Counter = Counter()
        words_with: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
        for i, w in enumerate(words):
            for pair in pairwise(w):
                pair_counts[pair] += freqs[i]
                words_with[pair].add(i)

        merges, known = [], set(vocab)
        while len(vocab) < vocab_size and pair_counts:
            # the most frequent pair (ties: the one counted first, so training is deterministic)
            ((best, _),) = pair_counts.most_common(1)
            merges.append(best)
            if best[0] + best[1] not in known:  # two merge paths can build one string
                vocab.append(best[0] + best[1])
                known.add(vocab[-1])
            for i in words_with.pop(best):
                old, new = words[i], _merge_pair(words[i], best)
                for pair in pairwise(old):
                    pair_counts[pair] -= freqs[i]
                    if pair_counts[pair] == 0:
                        del pair_counts[pair]
                for pair in pairwise(new):
                    pair_counts[pair] += freqs[i]
                    words_with[pair].add(i)
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


def word_spans(text: str) -> list[tuple[int, int]]:
    """Return the ``(start, end)`` character offsets of jieba's words in ``text``.

    ``text[start:end]`` is one word; whitespace is skipped. Whole-word masking
    (Cui et al. 2019, BERT-wwm) masks all characters of a span together while
    the model still sees one token per character.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    spans, start = [], 0
    for word in _jieba_words(text):
        if not word.isspace():
            spans.append((start, start + len(word)))
        start += len(word)
    return spans


def word_ids(text: str) -> list[int | None]:
    """For each character of ``text``, the index of its jieba word (``None`` for whitespace).

    Example: ``word_ids("注意力机制")`` -> ``[0, 0, 0, 1, 1]`` (注意力 | 机制).
    """
    ids: list[int | None] = [None] * len(text)
    for index, (start, end) in enumerate(word_spans(text)):
        ids[start:end] = [index] * (end - start)
    return ids
