"""Q13 (bert/q13_char_vs_word): characters, words and subwords on the book's corpus.

- :func:`measure`: vocabulary size, tokens per sentence, ``[UNK]`` rates, the share
  of characters lost inside ``[UNK]`` and the mean $n^2$ of one tokenizer on texts.
- :func:`initial_counts`: the pair and symbol counts that BPE's and WordPiece's
  first merges are chosen from.
- :func:`masking`: character masking (:func:`qkv.mlm.mask_tokens`) against
  whole-word masking on one held-out Chinese sentence, over many draws: how often a
  masked character still has a visible character of its own word (the seed-dependent
  claims of the chapter).
- :func:`bert_mlm_parameters`: Hugging Face's ``BertForMaskedLM`` counted on the
  ``meta`` device for a vocabulary size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from qkv.data import load_corpus
from qkv.experiments import Claim, claims, experiment
from qkv.mlm import IGNORE_INDEX, mask_tokens
from qkv.tokenization import CharTokenizer, word_ids
from qkv.wordpiece import WordPieceTokenizer, basic_tokenize

__all__ = [
    "lost_to_unk",
    "measure",
    "initial_counts",
    "Masking",
    "masking",
    "bert_mlm_parameters",
    "MASK_RATE",
    "CLAIMS",
]

MASK_RATE = 0.15
DRAWS = 4000  # maskings of the sentence per scheme
SENTENCE = 7  # index of the held-out Chinese sentence (it holds 笔记本电脑)


def lost_to_unk(tokenizer: Any, text: str) -> int:
    """How many characters of ``text`` end up inside an ``[UNK]`` token.

    For a :class:`qkv.wordpiece.WordPieceTokenizer`, BERT's rule: a word with an
    unknown part becomes one ``[UNK]``, so all its characters are lost.
    """
    if isinstance(tokenizer, WordPieceTokenizer):
        words = basic_tokenize(text, split_cjk=tokenizer.split_cjk)
        return sum(len(w) for w in words if tokenizer.split_word(w) == ["[UNK]"])
    return sum(len(t) for t in tokenizer.tokenize(text) if t not in tokenizer.token_to_id)


def measure(tokenizer: Any, texts: Sequence[str]) -> dict[str, float]:
    """``{"V", "length", "unk", "lost", "n2"}`` of ``tokenizer`` on ``texts``.

    ``length``: mean tokens per text; ``unk``: share of tokens that are ``[UNK]``;
    ``lost``: share of non-space characters inside an ``[UNK]``; ``n2``: mean squared
    length (the attention scores per text, up to a constant).
    Used in: Q13.
    """
    if not texts:
        raise ValueError("texts must not be empty")
    ids = [tokenizer.encode(text) for text in texts]
    n_tokens = sum(map(len, ids))
    n_chars = sum(len(text.replace(" ", "")) for text in texts)
    return {
        "V": tokenizer.vocab_size,
        "length": n_tokens / len(texts),
        "unk": sum(i == tokenizer.unk_id for seq in ids for i in seq) / n_tokens,
        "lost": sum(lost_to_unk(tokenizer, text) for text in texts) / n_chars,
        "n2": sum(len(seq) ** 2 for seq in ids) / len(texts),
    }


def initial_counts(words: Counter) -> tuple[Counter, Counter]:
    """Pair and symbol counts of ``words`` (tuples of symbols), each weighted by its count.

    Used in: Q13.
    """
    pairs: Counter = Counter()
    symbols: Counter = Counter()
    for word, f in words.items():
        for s in word:
            symbols[s] += f
        for pair in zip(word, word[1:], strict=False):
            pairs[pair] += f
    return pairs, symbols


class Masking(NamedTuple):
    """Character against whole-word masking of one sentence, ``draws`` times each.

    ``by_character`` and ``by_word``: bool ``(draws, n)``, True = masked;
    ``word_of``: ``(n,)`` jieba word index of each character; ``leak``: per scheme,
    the share of masked characters whose word still shows an unmasked character.
    """

    sentence: str
    word_of: Tensor
    by_character: Tensor
    by_word: Tensor
    leak: dict[str, float]


def _leaked(chosen: Tensor, word_of: Tensor) -> float:
    n_words = int(word_of.max()) + 1
    per_word = torch.zeros(len(chosen), n_words).index_add_(1, word_of, chosen.float())
    partial = (per_word > 0) & (per_word < torch.bincount(word_of))  # (draws, n_words)
    return (chosen & partial[:, word_of]).sum().item() / chosen.sum().item()


@experiment
def masking(seed: int = 0, *, draws: int = DRAWS, sentence: int = SENTENCE) -> Masking:
    """Mask one held-out Chinese sentence ``draws`` times at 15%, by character and by word.

    By character: :func:`qkv.mlm.mask_tokens` on one token per character (each
    chosen independently, all chosen ones replaced by ``[MASK]``). By word: each
    jieba word chosen with probability 0.15, all its characters together. The
    character vocabulary is trained on the Chinese training sentences; a generator
    seeded with ``seed`` draws both schemes.
    Used in: Q13.
    """
    text = load_corpus("zh", "test")[sentence]
    chars = CharTokenizer.train(load_corpus("zh", "train"))
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor(chars.encode(text))  # (n,) one token per character
    word_of = torch.tensor(word_ids(text))  # (n,) index of each character's jieba word
    n_words = int(word_of.max()) + 1
    _, labels = mask_tokens(
        ids.expand(draws, -1),
        vocab_size=chars.vocab_size,
        mask_id=chars.token_to_id["[MASK]"],
        special_ids=chars.special_ids,
        rate=MASK_RATE,
        split=(1.0, 0.0, 0.0),
        generator=g,
    )
    by_character = labels != IGNORE_INDEX
    by_word = (torch.rand(draws, n_words, generator=g) < MASK_RATE)[:, word_of]  # one draw a word
    leak = {
        "character": _leaked(by_character, word_of),
        "whole word": _leaked(by_word, word_of),
    }
    return Masking(text, word_of, by_character, by_word, leak)


def bert_mlm_parameters(vocab_size: int, *, tie: bool = True) -> int:
    """Parameters of Hugging Face's BERT-base ``BertForMaskedLM`` with ``vocab_size`` tokens.

    Built on the ``meta`` device (shapes only, no memory); ``tie`` ties the output
    layer to the token embedding, as BERT does.
    Used in: Q13.
    """
    import transformers

    with torch.device("meta"):
        model = transformers.BertForMaskedLM(
            transformers.BertConfig(vocab_size=vocab_size, tie_word_embeddings=tie)
        )
    return sum(p.numel() for p in model.parameters())


def _rates(scheme: str) -> Callable[[int], float]:
    return lambda seed: abs(getattr(masking(seed), scheme).float().mean().item() - MASK_RATE)


SEEDS = tuple(range(10))
CLAIMS = claims(
    Claim(
        "q13-character-masking-leak",
        "character masking: share of masked characters with a visible word-mate",
        lambda s: masking(s).leak["character"],
        ">",
        0.5,
        SEEDS,
    ),
    Claim(
        "q13-character-mask-rate",
        "character masking: |share masked − 0.15|",
        _rates("by_character"),
        "<",
        0.01,
        SEEDS,
    ),
    Claim(
        "q13-word-mask-rate",
        "whole-word masking: |share of characters masked − 0.15|",
        _rates("by_word"),
        "<",
        0.03,
        SEEDS,
    ),
)
