"""The vocabulary every qkv tokenizer shares: special tokens first, and the id <-> token map.

Every tokenizer maps text to a list of token ids and back. They share one
vocabulary layout: the special tokens :data:`SPECIAL_TOKENS` come first, then
the learned tokens, most frequent first.

:data:`SPECIAL_TOKENS` is the book's one table of special tokens; the
synthetic tasks of :mod:`qkv.tasks` take their ids from it too, so ``[CLS]`` is
3 everywhere:

=============  ===  ==================================================
``[PAD]``      0    padding, always after the real tokens
``[BOS]``      1    beginning of a (target) sequence
``[EOS]``      2    end of a (target) sequence
``[CLS]``      3    classification token, first in the input
``[SEP]``      4    separator between two segments
``[MASK]``     5    the masked-LM token
``[UNK]``      6    a token outside the vocabulary (text only: a task's
                    own tokens start here, since a task has no unknown token)
=============  ===  ==================================================

``V`` (``vocab_size``) counts both. :class:`Tokenizer` holds that vocabulary and does the lookups
(``encode``/``decode``); subclasses decide how text is split into tokens:
characters and words in :mod:`qkv.tokenization`, subwords in :mod:`qkv.bpe`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from qkv._checks import check_int

__all__ = ["SPECIAL_TOKENS", "PAD", "BOS", "EOS", "CLS", "SEP", "MASK", "UNK", "Tokenizer"]

PAD, BOS, EOS, CLS, SEP, MASK, UNK = "[PAD]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"
#: The special tokens, ids 0 to 6 in every vocabulary here (BERT's names where BERT has them).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, CLS, SEP, MASK, UNK)


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
            got = vocab[: len(SPECIAL_TOKENS)]
            raise ValueError(f"vocab must start with {SPECIAL_TOKENS}, got {got}")
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
    min_freq = check_int("min_freq", min_freq, 1)
    # ties broken alphabetically so that training is deterministic
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    tokens = [t for t, c in ranked if c >= min_freq and t not in SPECIAL_TOKENS]
    if max_size is not None:
        max_size = check_int("max_size", max_size)
        if max_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"max_size must be > {len(SPECIAL_TOKENS)}, got {max_size}")
        tokens = tokens[: max_size - len(SPECIAL_TOKENS)]
    return list(SPECIAL_TOKENS) + tokens
