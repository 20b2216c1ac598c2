"""Character and word tokenizers, and the re-exports that make ``qkv.tokenization`` one entry point.

- :class:`CharTokenizer`: one token per character (Chinese BERT's choice).
- :class:`WordTokenizer`: English words by a regular expression, Chinese words
  by the jieba segmenter; unseen words become ``[UNK]``.
- :class:`qkv.bpe.BPETokenizer`: byte-pair encoding (Sennrich
  et al. 2016, Alg. 1) on characters; an unseen word falls back to smaller pieces,
  down to characters.

All share the vocabulary layout of :mod:`qkv.vocab` (special tokens first:
``[PAD]`` = 0, ``[UNK]`` = 1, ``[CLS]`` = 2, ``[SEP]`` = 3, ``[MASK]`` = 4);
:data:`qkv.vocab.SPECIAL_TOKENS`, :class:`qkv.vocab.Tokenizer`, :class:`qkv.bpe.BPETokenizer` and
:func:`qkv.bpe.pretokenize` are importable from here too.

:func:`word_spans` and :func:`word_ids` map a Chinese sentence's characters to
jieba words, the grouping that whole-word masking needs (Cui et al. 2019).
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence

# Re-exported so that `qkv.tokenization.<name>` keeps working (`X as X` marks a re-export).
# They stay out of __all__, so the API page documents each name once, in its own module.
from qkv.bpe import PRETOKENIZE_PATTERN as PRETOKENIZE_PATTERN
from qkv.bpe import BPETokenizer as BPETokenizer
from qkv.bpe import pretokenize as pretokenize
from qkv.vocab import CLS as CLS
from qkv.vocab import MASK as MASK
from qkv.vocab import PAD as PAD
from qkv.vocab import SEP as SEP
from qkv.vocab import SPECIAL_TOKENS as SPECIAL_TOKENS
from qkv.vocab import UNK as UNK
from qkv.vocab import Tokenizer, _check_texts, _vocab_by_frequency

__all__ = ["CharTokenizer", "WordTokenizer", "word_spans", "word_ids"]

_ENGLISH_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" (?=[.,!?;:)'])")


class CharTokenizer(Tokenizer):
    """One token per character; lossless for every character seen in training.

    Used in: Q13.
    """

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
    Used in: Q13.
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


def word_spans(text: str) -> list[tuple[int, int]]:
    """Return the ``(start, end)`` character offsets of jieba's words in ``text``.

    ``text[start:end]`` is one word; whitespace is skipped. Whole-word masking
    (Cui et al. 2019, BERT-wwm) masks all characters of a span together while
    the model still sees one token per character.
    Used in: Q13.
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
