"""Tests for qkv.tokenization: round trips, unseen text, BPE against Hugging Face ``tokenizers``."""

import logging
import time
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
import torch

from qkv import tokenization
from qkv.data import load_corpus
from qkv.tokenization import (
    PRETOKENIZE_PATTERN,
    SPECIAL_TOKENS,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    pretokenize,
    word_ids,
    word_spans,
)

LANGS = ["en", "zh"]
# BPE vocabulary sizes: a few hundred merges on top of the characters of each corpus
BPE_VOCAB = {"en": 400, "zh": 1200}


@pytest.fixture(scope="module", params=LANGS)
def corpus(request):
    """``(lang, train sentences, test sentences)``."""
    lang = request.param
    return lang, load_corpus(lang, "train"), load_corpus(lang, "test")


@pytest.fixture(scope="module")
def bpe(corpus):
    lang, train, _ = corpus
    return BPETokenizer.train(train, BPE_VOCAB[lang])


def seen_characters_only(sentences, train):
    alphabet = set("".join(train))
    return [s for s in sentences if set(s) <= alphabet]


def test_special_tokens_come_first_in_every_tokenizer(corpus):
    lang, train, _ = corpus
    for tok in (
        CharTokenizer.train(train),
        WordTokenizer.train(train, lang=lang),
        BPETokenizer.train(train, BPE_VOCAB[lang]),
    ):
        assert tuple(tok.vocab[: len(SPECIAL_TOKENS)]) == SPECIAL_TOKENS
        assert (tok.pad_id, tok.unk_id) == (0, 6)
        assert tok.special_ids == [0, 1, 2, 3, 4, 5, 6]
        assert tok.vocab_size == len(set(tok.vocab))


def test_char_round_trip_and_unknown_characters(corpus):
    _, train, test = corpus
    tok = CharTokenizer.train(train)
    assert tok.vocab_size == len(SPECIAL_TOKENS) + len(set("".join(train)))
    for sentence in train + seen_characters_only(test, train):
        ids = tok.encode(sentence)
        assert len(ids) == len(sentence) and tok.decode(ids) == sentence
    assert tok.encode("\u263a") == [tok.unk_id]  # a character absent from the corpus


def test_char_vocabulary_is_ordered_by_frequency_and_cut_by_min_freq():
    tok = CharTokenizer.train(["abcab", "ba"], min_freq=2)
    assert tok.vocab[len(SPECIAL_TOKENS) :] == ["a", "b"]  # a: 3, b: 3 (ties by letter); c: 1
    assert tok.encode("abc") == [7, 8, tok.unk_id]
    assert CharTokenizer.train(["aab"], max_size=8).vocab[-1] == "a"


def test_word_tokenizer_english_words_punctuation_and_unknown_words():
    tok = WordTokenizer.train(["Don't stop, please. It is 2017!"], lang="en")
    assert tok.tokenize("Don't stop, please.") == ["Don't", "stop", ",", "please", "."]
    ids = tok.encode("please stop the model.")
    assert ids[2] == tok.unk_id and ids.count(tok.unk_id) == 2  # "the", "model" unseen
    assert tok.decode(ids) == "please stop [UNK] [UNK]."
    lower = WordTokenizer.train(["Please"], lang="en", lowercase=True)
    assert lower.encode("PLEASE please") == [7, 7]


def test_word_tokenizer_chinese_uses_jieba_words():
    tok = WordTokenizer.train(["注意力机制很有用。"], lang="zh")
    assert tok.tokenize("注意力机制很有用。") == ["注意力", "机制", "很", "有用", "。"]
    ids = tok.encode("注意力模型很有用")  # 模型 was never seen
    assert tok.decode(ids) == "注意力[UNK]很有用"


def test_word_level_has_more_oov_than_characters_on_held_out_text(corpus):
    lang, train, test = corpus
    words, chars = WordTokenizer.train(train, lang=lang), CharTokenizer.train(train)

    def oov_rate(tok):
        ids = [i for sentence in test for i in tok.encode(sentence)]
        return ids.count(tok.unk_id) / len(ids)

    assert oov_rate(words) > 0.05 and oov_rate(words) > 3 * oov_rate(chars)


def test_pretokenize_is_lossless_and_matches_hugging_face_split():
    tokenizers = pytest.importorskip("tokenizers")
    split = tokenizers.pre_tokenizers.Split(
        tokenizers.Regex(PRETOKENIZE_PATTERN), behavior="isolated"
    )
    texts = ["Hello,  world!\n\nA  b", " leading space", "a_b 2017 x--y", "注意力，很有用。ok"]
    texts += load_corpus("en", "test")[:20] + load_corpus("zh", "test")[:20]
    for text in texts:
        assert "".join(pretokenize(text)) == text
        assert pretokenize(text) == [piece for piece, _ in split.pre_tokenize_str(text)]
    assert pretokenize("It is  late.") == ["It", " is", " ", " late", "."]


def test_bpe_round_trip_on_seen_and_unseen_text(corpus, bpe):
    _, train, test = corpus
    unseen = seen_characters_only(test, train)
    assert len(unseen) > 5  # enough held-out sentences to mean something
    for sentence in train + unseen:
        assert bpe.decode(bpe.encode(sentence)) == sentence
    assert bpe.unk_id not in [i for sentence in unseen for i in bpe.encode(sentence)]
    assert bpe.encode("\u263a") == [bpe.unk_id]


def test_bpe_falls_back_to_smaller_pieces_for_an_unseen_word():
    tok = BPETokenizer.train(load_corpus("en", "train"), 400)
    word = " transformerishness"
    assert word not in "".join(load_corpus("en", "train"))
    pieces = tok.tokenize(word)
    assert 1 < len(pieces) < len(word) and "".join(pieces) == word
    assert tok.unk_id not in tok.encode(word)
    # with no merges at all, every word is spelled in characters
    chars_only = BPETokenizer.train(["abc abc"], len(SPECIAL_TOKENS) + 4)
    assert chars_only.merges == [] and chars_only.tokenize("cab ba") == list("cab ba")


def test_bpe_vocabulary_size_and_that_every_merge_was_the_most_frequent_pair(corpus, bpe):
    lang, train, _ = corpus
    assert bpe.vocab_size == BPE_VOCAB[lang]
    # replay the merges with a naive full recount: each must have been a most frequent pair
    words = Counter(tuple(w) for s in train for w in pretokenize(s))
    for merge in bpe.merges[:60]:
        counts = Counter()
        for word, freq in words.items():
            for pair in pairwise(word):
                counts[pair] += freq
        assert counts[merge] == max(counts.values()), merge
        merged = Counter()
        for word, freq in words.items():
            symbols, i = [], 0
            while i < len(word):
                if word[i : i + 2] == merge:
                    symbols.append(word[i] + word[i + 1])
                    i += 2
                else:
                    symbols.append(word[i])
                    i += 1
            merged[tuple(symbols)] += freq
        words = merged


def test_bpe_training_is_deterministic_and_fast(corpus):
    lang, train, _ = corpus
    start = time.perf_counter()
    first = BPETokenizer.train(train, BPE_VOCAB[lang])
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"training took {elapsed:.2f} s"  # about 0.05 s on a 2-core CPU
    again = BPETokenizer.train(train, BPE_VOCAB[lang])
    assert first.vocab == again.vocab and first.merges == again.merges


def test_bpe_compresses_like_hugging_face_bpe(corpus, bpe):
    """Same algorithm, same pre-tokenisation, same vocabulary size: similar lengths.

    Both tokenizers are greedy BPE (merge the most frequent pair) trained on the
    same words, so their merges differ only where ties are broken differently;
    the mean number of tokens per sentence must then agree closely. Measured:
    within 0.3 % (en) and 1 % (zh); the tolerance is 3 %.
    """
    tokenizers = pytest.importorskip("tokenizers")
    lang, train, test = corpus
    hf = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.Split(
        tokenizers.Regex(PRETOKENIZE_PATTERN), behavior="isolated"
    )
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=BPE_VOCAB[lang], special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    hf.train_from_iterator(train, trainer)
    assert hf.get_vocab_size() == bpe.vocab_size
    for sentences in (test, train):
        ours = sum(len(bpe.encode(s)) for s in sentences) / len(sentences)
        theirs = sum(len(hf.encode(s).ids) for s in sentences) / len(sentences)
        assert abs(ours / theirs - 1) < 0.03, (ours, theirs)
    assert ours < 0.8 * sum(map(len, train)) / len(train)  # and BPE does compress


def test_word_spans_and_word_ids_cover_the_text():
    text = "我们 用 注意力机制。"
    spans = word_spans(text)
    assert [text[s:e] for s, e in spans] == ["我们", "用", "注意力", "机制", "。"]
    assert word_ids(text) == [0, 0, None, 1, None, 2, 2, 2, 3, 3, 4]
    for sentence in load_corpus("zh", "test"):
        ids = word_ids(sentence)
        assert None not in ids and ids == sorted(ids)  # contiguous words, in order
        assert ids[-1] + 1 == len(word_spans(sentence))


def test_jieba_is_silent_and_leaves_its_logger_as_it_was(caplog):
    # jieba logs "Building prefix dict ..." at DEBUG level to stderr by default
    with caplog.at_level(logging.DEBUG, logger="jieba"):
        tokenization._jieba_segmenter.cache_clear()  # force a fresh dictionary load
        assert word_spans("注意力机制") == [(0, 3), (3, 5)]
        assert caplog.records == []
        assert logging.getLogger("jieba").level == logging.DEBUG


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: CharTokenizer.train([]), TypeError, "non-empty iterable of str"),
        (lambda: CharTokenizer.train([1, 2]), TypeError, "non-empty iterable of str"),
        (lambda: CharTokenizer.train(["ab"], min_freq=0), ValueError, "min_freq must be >= 1"),
        (lambda: CharTokenizer.train(["ab"], max_size=7), ValueError, "max_size must be > 7"),
        (lambda: CharTokenizer(["a", "b"]), ValueError, "vocab must start with"),
        (lambda: CharTokenizer([*SPECIAL_TOKENS, "a", "a"]), ValueError, "duplicate"),
        (lambda: CharTokenizer.train(["ab"]).encode(3), TypeError, "text must be str, got int"),
        (lambda: CharTokenizer.train(["ab"]).decode([9]), ValueError, r"in \[0, 9\), got 9"),
        (lambda: WordTokenizer.train(["ab"], lang="fr"), ValueError, "'en' or 'zh', got 'fr'"),
        (lambda: BPETokenizer.train(["abc"], 9), ValueError, "vocab_size must be >= 10"),
        (lambda: word_spans(None), TypeError, "text must be str, got NoneType"),
        # ids are ints: never truncate 5.9 to 5 or read "5" or True as an id
        (lambda: CharTokenizer.train(["ab"]).decode([5.9]), TypeError, "int, got float 5.9"),
        (lambda: CharTokenizer.train(["ab"]).decode(["5"]), TypeError, "int, got str '5'"),
        (lambda: CharTokenizer.train(["ab"]).decode([True]), TypeError, "int, got bool True"),
        (lambda: CharTokenizer.train(["ab"]).decode(5), TypeError, "sequence of int token ids"),
        (
            lambda: CharTokenizer.train(["ab"]).decode(torch.tensor([5.0])),
            TypeError,
            "integer tensor, got dtype torch.float32",
        ),
        # a merge that builds a token outside the vocabulary would encode as [UNK]
        (
            lambda: BPETokenizer([*SPECIAL_TOKENS, "a", "b"], [("a", "b")]),
            ValueError,
            r"merge 0 \('a', 'b'\) builds 'ab', which is not in vocab",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_decode_accepts_numpy_integers_and_integer_tensors():
    tokenizer = CharTokenizer.train(["abba"])
    ids = tokenizer.encode("ab")
    assert tokenizer.decode(np.array(ids)) == "ab"
    assert tokenizer.decode(torch.tensor(ids)) == "ab"
    assert tokenizer.decode([np.int32(i) for i in ids]) == "ab"


def test_bpe_built_from_its_own_merges_stays_lossless():
    tokenizer = BPETokenizer.train(["low lower lowest"], 20)
    rebuilt = BPETokenizer(tokenizer.vocab, tokenizer.merges)
    text = "lowest low"
    assert rebuilt.unk_id not in rebuilt.encode(text)
    assert rebuilt.decode(rebuilt.encode(text)) == text


def test_moved_names_stay_valid_under_qkv_tokenization():
    import qkv.bpe
    import qkv.vocab

    for module in (qkv.bpe, qkv.vocab):
        for name in module.__all__:
            assert getattr(tokenization, name) is getattr(module, name), name


def test_one_special_token_table_for_tokenizers_and_tasks():
    from qkv import tasks

    tok = CharTokenizer.train(["ab"])
    task_ids = {
        "[PAD]": tasks.PAD_ID,
        "[BOS]": tasks.BOS_ID,
        "[EOS]": tasks.EOS_ID,
        "[CLS]": tasks.CLS_ID,
        "[SEP]": tasks.SEP_ID,
        "[MASK]": tasks.MASK_ID,
    }
    for token, task_id in task_ids.items():
        assert tok.token_to_id[token] == task_id, token
    assert tok.token_to_id["[UNK]"] == tasks.N_SPECIAL  # where a task's own tokens start
