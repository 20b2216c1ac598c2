"""qkv.wordpiece against Hugging Face's BERT tokenizers and a from-scratch trainer."""

from __future__ import annotations

from collections import Counter

import pytest
import transformers
from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer

from qkv.data import load_corpus
from qkv.vocab import SPECIAL_TOKENS, UNK
from qkv.wordpiece import PREFIX, WordPieceTokenizer, basic_tokenize, is_cjk

ODD_TEXTS = [
    "Héllo   wörld!! $x^2$ naïve café,done",
    "你好，世界。BERT把中文切成字",
    "tabs\tand\nnew lines\u00a0too",
    "",
    "a",
    "x" * 120,
]


def _hf(wp: WordPieceTokenizer) -> transformers.BertTokenizer:
    return transformers.BertTokenizer(
        vocab={t: i for i, t in enumerate(wp.vocab)},
        do_lower_case=wp.lowercase,
        tokenize_chinese_chars=wp.split_cjk,
    )


@pytest.mark.parametrize(
    ("lang", "vocab_size", "options"),
    [
        ("en", 311, {"lowercase": True}),
        ("en", 203, {}),
        ("zh", 1117, {"split_cjk": False}),
        ("zh", 900, {"split_cjk": True}),
    ],
)
def test_encoding_equals_hugging_face_bert_tokenizer(lang, vocab_size, options) -> None:
    wp = WordPieceTokenizer.train(load_corpus(lang, "train"), vocab_size, **options)
    hf = _hf(wp)
    for text in load_corpus(lang, "test") + ODD_TEXTS:
        assert wp.tokenize(text) == hf.tokenize(text), text
        assert wp.encode(text) == hf(text, add_special_tokens=False)["input_ids"], text


@pytest.mark.parametrize("lowercase", [False, True])
@pytest.mark.parametrize("split_cjk", [False, True])
def test_basic_tokenize_equals_bert_basic_tokenizer(lowercase, split_cjk) -> None:
    reference = BasicTokenizer(do_lower_case=lowercase, tokenize_chinese_chars=split_cjk)
    for text in load_corpus("en", "test")[:20] + load_corpus("zh", "test")[:20] + ODD_TEXTS:
        got = basic_tokenize(text, lowercase=lowercase, split_cjk=split_cjk)
        assert got == reference.tokenize(text), text


def _merge_everywhere(split: dict, pair: tuple[str, str]) -> None:
    for w, pieces in split.items():
        out, i = [], 0
        while i < len(pieces):
            if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == pair:
                out.append(pieces[i] + pieces[i + 1].removeprefix(PREFIX))
                i += 2
            else:
                out.append(pieces[i])
                i += 1
        split[w] = out


@pytest.mark.parametrize(("lang", "vocab_size"), [("en", 181), ("zh", 880)])
def test_each_merge_has_the_best_score_when_recounted_from_scratch(lang, vocab_size) -> None:
    texts = load_corpus(lang, "train")[:60]
    wp = WordPieceTokenizer.train(texts, vocab_size, split_cjk=False)
    assert wp.merges
    words = Counter(w for t in texts for w in basic_tokenize(t, split_cjk=False))
    split = {w: [w[0]] + [PREFIX + c for c in w[1:]] for w in words}
    for step, (a, b) in enumerate(wp.merges):
        # recount pairs and symbols over every word: slow, obviously right
        pairs, symbols = Counter(), Counter()
        for w, pieces in split.items():
            for s in pieces:
                symbols[s] += words[w]
            for pair in zip(pieces, pieces[1:], strict=False):
                pairs[pair] += words[w]
        scores = {p: pairs[p] / (symbols[p[0]] * symbols[p[1]]) for p in pairs}
        assert scores[a, b] == pytest.approx(max(scores.values())), step
        _merge_everywhere(split, (a, b))  # ties may break either way: follow wp's choice
    pieces = {s for p in split.values() for s in p}
    assert pieces <= set(wp.vocab)


def test_merges_differ_from_bpe_and_pieces_are_prefixed() -> None:
    from qkv.bpe import BPETokenizer

    texts = [t.lower() for t in load_corpus("en", "train")]
    wp = WordPieceTokenizer.train(texts, 151)
    bpe = BPETokenizer.train(texts, 151)
    assert wp.merges[:5] != [(a.strip(), b) for a, b in bpe.merges[:5]]
    assert all(t.startswith(PREFIX) or PREFIX not in t for t in wp.vocab)
    assert wp.vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert wp.vocab_size == 151


def test_training_text_never_becomes_unk_and_detokenize_rejoins_words() -> None:
    texts = load_corpus("en", "train")
    wp = WordPieceTokenizer.train(texts, 97)
    for text in texts[:50]:
        tokens = wp.tokenize(text)
        assert UNK not in tokens
        assert wp.detokenize(tokens) == " ".join(basic_tokenize(text))


def test_a_word_with_an_unknown_character_is_one_unk() -> None:
    wp = WordPieceTokenizer([*SPECIAL_TOKENS, "un", "##aff", "##able", "##a", "a"])
    assert wp.split_word("unaffable") == ["un", "##aff", "##able"]
    assert wp.split_word("unaffablez") == [UNK]  # BERT: the whole word, not one piece
    assert wp.split_word("aaa") == ["a", "##a", "##a"]
    assert wp.split_word("") == []
    assert WordPieceTokenizer(wp.vocab, max_chars_per_word=4).split_word("unaffable") == [UNK]


def test_cjk_and_bad_input() -> None:
    assert is_cjk("字") and not is_cjk("a") and not is_cjk("。")
    assert basic_tokenize("中文BERT") == ["中", "文", "BERT"]
    assert basic_tokenize("中文BERT", split_cjk=False) == ["中文BERT"]
    with pytest.raises(TypeError, match="text must be str"):
        basic_tokenize(3)
    with pytest.raises(ValueError, match="vocab_size must be >="):
        WordPieceTokenizer.train(["hello world"], 8)
    with pytest.raises(ValueError, match="vocab must start with"):
        WordPieceTokenizer(["a", "b"])


def test_a_smaller_vocabulary_is_a_prefix_of_a_larger_one() -> None:
    # the chapter (Q13) relies on this to sweep V with one training run
    texts = load_corpus("en", "train")
    small, large = WordPieceTokenizer.train(texts, 150), WordPieceTokenizer.train(texts, 400)
    assert large.vocab[:150] == small.vocab


# Control characters that str.isspace() accepts, other controls, format characters,
# Unicode spaces and line separators, private use, U+FFFD, accents, CJK, punctuation.
_ADVERSARIAL = [chr(c) for c in [*range(0x21), *range(0x7F, 0xA1)]] + list(
    "\u00ad\u200b\u200d\u2028\u2029\u3000\u2009\ufeff\ue000\ufffd\u0301\u061c\U000e0001"
    "aZé中,.!$^`-İß¿x"
)


def _fast_words(hf: transformers.BertTokenizer, text: str) -> list[str]:
    backend = hf.backend_tokenizer  # the Rust BertNormalizer and BertPreTokenizer
    normalized = backend.normalizer.normalize_str(text)
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]


@pytest.mark.parametrize("lowercase", [False, True])
def test_basic_tokenize_equals_both_hugging_face_tokenizers_on_adversarial_text(lowercase):
    import random
    import unicodedata

    legacy = BasicTokenizer(do_lower_case=lowercase)
    fast = transformers.BertTokenizer(vocab={"[UNK]": 0, "a": 1}, do_lower_case=lowercase)
    rng = random.Random(0)
    texts = [f"a{c}b" for c in _ADVERSARIAL] + [
        "".join(rng.choices(_ADVERSARIAL, k=rng.randint(0, 12))) for _ in range(400)
    ]
    for text in texts:
        ours = basic_tokenize(text, lowercase=lowercase)
        assert ours == _fast_words(fast, text), ascii(text)
        # the Python tokenizer alone applies NFC first (Google's BERT does not): "Z\u0301" -> "Ź"
        if lowercase or unicodedata.normalize("NFC", text) == text:
            assert ours == legacy.tokenize(text), ascii(text)
    assert basic_tokenize("a\x0bb\x85c\x1fd") == ["abcd"]  # controls first, then whitespace


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-1, ValueError), (2.5, TypeError)])
def test_max_chars_per_word_must_be_a_positive_int(value, error) -> None:
    with pytest.raises(error, match="max_chars_per_word must be"):
        WordPieceTokenizer([*SPECIAL_TOKENS, "a"], max_chars_per_word=value)


def test_vocab_size_must_be_an_int() -> None:
    from qkv.bpe import BPETokenizer

    texts = load_corpus("en", "train")[:20]
    for train in (BPETokenizer.train, WordPieceTokenizer.train):
        with pytest.raises(TypeError, match="vocab_size must be an int, got float 300.0"):
            train(texts, 300.0)
