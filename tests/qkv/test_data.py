"""Tests for qkv.data: the corpus, and that every synthetic task's labels follow from its inputs."""

from importlib import resources

import numpy as np
import pytest
import torch

from qkv.data import (
    BOS_ID,
    CLS_ID,
    DIGIT_VOCAB_SIZE,
    EOS_ID,
    N_SPECIAL,
    PAD_ID,
    MarkovLanguage,
    associative_recall,
    digit_seq2seq,
    load_corpus,
    long_documents,
    sequence_classification,
)


def assert_padding_only_at_the_end(ids: torch.Tensor, lengths: torch.Tensor) -> None:
    real = torch.arange(ids.shape[1]) < lengths[:, None]
    assert (ids[real] != PAD_ID).all() and (ids[~real] == PAD_ID).all()


# --- corpus -------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_corpus_splits_are_disjoint_non_empty_and_parallel(lang):
    train, test = load_corpus(lang, "train"), load_corpus(lang, "test")
    assert len(train) > 250 and len(test) > 60
    assert not set(train) & set(test)
    assert all(line.strip() == line and line for line in train + test)
    assert len(train) == len(load_corpus("en", "train"))  # line i says the same in en and zh


def test_corpus_is_small_package_data():
    files = list(resources.files("qkv").joinpath("corpus").iterdir())
    txt = [f for f in files if f.name.endswith(".txt")]
    assert len(txt) == 4 and sum(len(f.read_bytes()) for f in txt) < 200_000


# --- generators and determinism -----------------------------------------------

TASKS = {
    "seq2seq": lambda g: digit_seq2seq(5, min_len=2, max_len=9, generator=g),
    "recall": lambda g: associative_recall(5, 4, n_keys=9, n_values=7, generator=g),
    "markov": lambda g: (MarkovLanguage(13).sample(5, 11, generator=g),),
    "majority": lambda g: sequence_classification(
        5, min_len=3, max_len=11, n_words=9, rule="majority", generator=g
    ),
    "pair": lambda g: sequence_classification(
        5, min_len=3, max_len=11, n_words=9, rule="pair", generator=g
    ),
    "longdoc": lambda g: long_documents(5, 37, position="random", generator=g),
}


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_batch_and_a_generator_moves_on(task):
    make = TASKS[task]
    first, again, other = make(3), make(3), make(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    g = torch.Generator().manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(first, make(g), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, make(g), strict=True))
    assert all(t.device.type == "cpu" and t.dtype in (torch.long, torch.bool) for t in first)


def test_batches_move_to_any_device(device):
    batch = digit_seq2seq(3, min_len=1, max_len=4, generator=0)
    moved = [t.to(device) for t in batch]
    assert all(torch.equal(a, b.cpu()) for a, b in zip(batch, moved, strict=True))


# --- Q3: digit reversal / copy ------------------------------------------------


@pytest.mark.parametrize("task", ["reverse", "copy"])
def test_digit_seq2seq_targets_are_the_reversed_or_copied_source(task):
    src, tgt, lengths = digit_seq2seq(64, min_len=2, max_len=9, task=task, generator=0)
    assert src.shape == (64, 9) and tgt.shape == (64, 11) and lengths.shape == (64,)
    assert lengths.min() >= 2 and lengths.max() <= 9 and len(set(lengths.tolist())) > 4
    assert_padding_only_at_the_end(src, lengths)
    assert_padding_only_at_the_end(tgt, lengths + 2)
    assert src.max() < DIGIT_VOCAB_SIZE and src[src != PAD_ID].min() >= N_SPECIAL
    for row in range(64):
        digits = src[row, : lengths[row]].tolist()
        body = digits[::-1] if task == "reverse" else digits
        assert tgt[row, : lengths[row] + 2].tolist() == [BOS_ID, *body, EOS_ID]


# --- Q6: associative recall ---------------------------------------------------


def test_associative_recall_target_is_the_value_after_the_queried_key():
    n_keys, n_values, n_pairs = 9, 7, 5
    inputs, target, query_pair = associative_recall(
        200, n_pairs, n_keys=n_keys, n_values=n_values, generator=0
    )
    assert inputs.shape == (200, 2 * n_pairs + 1) and target.shape == query_pair.shape == (200,)
    keys, values = inputs[:, 0:-1:2], inputs[:, 1:-1:2]
    assert ((keys >= N_SPECIAL) & (keys < N_SPECIAL + n_keys)).all()
    assert ((values >= N_SPECIAL + n_keys) & (values < N_SPECIAL + n_keys + n_values)).all()
    for row in range(200):
        pairs = inputs[row, :-1].tolist()
        lookup = dict(zip(pairs[0::2], pairs[1::2], strict=True))
        assert len(lookup) == n_pairs  # keys are distinct
        assert lookup[int(inputs[row, -1])] == int(target[row])
        assert pairs[2 * int(query_pair[row])] == int(inputs[row, -1])
    assert set(query_pair.tolist()) == set(range(n_pairs))


# --- Q16: the Markov language -------------------------------------------------


def test_markov_language_transition_matrix_is_sparse_and_fixed_by_the_seed():
    lang = MarkovLanguage(17, branching=3, seed=5)
    assert lang.vocab_size == N_SPECIAL + 17
    assert torch.allclose(lang.transition.sum(dim=1), torch.ones(17))
    assert ((lang.transition > 0).sum(dim=1) == 3).all()
    assert torch.equal(lang.transition, MarkovLanguage(17, branching=3, seed=5).transition)
    assert not torch.equal(lang.transition, MarkovLanguage(17, branching=3, seed=6).transition)


def test_markov_samples_follow_the_chain():
    lang = MarkovLanguage(7, branching=2, seed=0)
    words = lang.sample(4000, 9, generator=1) - N_SPECIAL
    assert words.shape == (4000, 9) and words.min() >= 0 and words.max() < 7
    left, right = words[:, :-1].flatten(), words[:, 1:].flatten()
    assert (lang.transition[left, right] > 0).all()  # only allowed transitions occur
    counts = torch.zeros(7, 7).index_put_((left, right), torch.ones(left.numel()), accumulate=True)
    empirical = counts / counts.sum(dim=1, keepdim=True)
    assert (empirical - lang.transition).abs().max() < 0.03  # ~4500 transitions per row


def test_context_on_both_sides_helps_predict_a_masked_word():
    lang = MarkovLanguage(23, branching=4, seed=0)
    words = lang.sample(3000, 3, generator=0)
    left, middle, right = words[:, 0], words[:, 1] - N_SPECIAL, words[:, 2]
    posterior = lang.masked_posterior(left, right)
    assert torch.allclose(posterior.sum(dim=-1), torch.ones(3000))
    both_sides = (posterior.argmax(dim=-1) == middle).float().mean()
    left_only = (lang.transition[left - N_SPECIAL].argmax(dim=-1) == middle).float().mean()
    assert both_sides > left_only + 0.1, (both_sides, left_only)
    # a (left, right) pair no word links gives zeros, not NaN
    t = lang.transition
    unlinked = [(a, b) for a in range(23) for b in range(23) if (t[a] * t[:, b]).sum() == 0]
    a, b = unlinked[0]
    p = lang.masked_posterior(torch.tensor(a + N_SPECIAL), torch.tensor(b + N_SPECIAL))
    assert torch.equal(p, torch.zeros(23))


# --- Q17: sequence classification ---------------------------------------------


def test_majority_labels_follow_from_the_counts():
    batch = sequence_classification(
        3000, min_len=1, max_len=13, n_words=9, rule="majority", generator=0
    )
    ids, mask, labels, lengths = batch
    assert ids.shape == mask.shape == (3000, 14) and labels.shape == lengths.shape == (3000,)
    assert (ids[:, 0] == CLS_ID).all() and torch.equal(mask, ids != PAD_ID)
    assert_padding_only_at_the_end(ids, lengths)
    count_a, count_b = (ids == N_SPECIAL).sum(1), (ids == N_SPECIAL + 1).sum(1)
    assert (count_a != count_b).all()
    assert torch.equal(labels, (count_a > count_b).long())
    assert 0.45 < labels.float().mean() < 0.55
    marked = count_a + count_b
    assert marked.min() == 1 and (marked == lengths - 1).any()  # from one marker to all


def test_pair_labels_follow_from_word_order_and_bags_of_words_match():
    ids, mask, labels, lengths = sequence_classification(
        3000, min_len=3, max_len=10, n_words=8, rule="pair", generator=0
    )
    assert (ids[:, 0] == CLS_ID).all() and torch.equal(mask, ids != PAD_ID)
    assert_padding_only_at_the_end(ids, lengths)
    a, b = N_SPECIAL, N_SPECIAL + 1
    assert ((ids == a).sum(1) == 1).all() and ((ids == b).sum(1) == 1).all()
    bigram = ((ids[:, :-1] == a) & (ids[:, 1:] == b)).any(dim=1)
    assert torch.equal(labels, bigram.long())
    assert 0.45 < labels.float().mean() < 0.55
    # negatives place B before A too, not only after it
    a_pos, b_pos = (ids == a).long().argmax(1), (ids == b).long().argmax(1)
    assert (b_pos[labels == 0] < a_pos[labels == 0]).any()


# --- Q20: long documents ------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "low", "high"),
    [("start", 0, 10), ("middle", 45, 55), ("end", 90, 100), ("random", 0, 100), (42, 42, 43)],
)
def test_long_document_evidence_sits_where_asked_and_fixes_the_label(position, low, high):
    n_classes, n_noise = 3, 40
    ids, labels, where = long_documents(
        2000, 100, position=position, n_classes=n_classes, n_noise=n_noise, generator=0
    )
    assert ids.shape == (2000, 100) and labels.shape == where.shape == (2000,)
    assert where.min() >= low and where.max() < high
    if high - low > 1:
        assert len(set(where.tolist())) == high - low  # the whole region is used
    is_evidence = ids < N_SPECIAL + n_classes
    assert (is_evidence.sum(dim=1) == 1).all()  # exactly one evidence token
    assert torch.equal(is_evidence.long().argmax(dim=1), where)
    assert torch.equal(ids[torch.arange(2000), where] - N_SPECIAL, labels)
    assert ids.min() >= N_SPECIAL and ids.max() < N_SPECIAL + n_classes + n_noise
    assert set(labels.tolist()) == set(range(n_classes))


# --- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: load_corpus("fr"), ValueError, "'en' or 'zh', got 'fr'"),
        (lambda: load_corpus("en", "dev"), ValueError, "'train' or 'test', got 'dev'"),
        (lambda: TASKS["seq2seq"](1.5), TypeError, r"torch.Generator or an int seed >= 0, got 1.5"),
        (lambda: TASKS["seq2seq"](-1), ValueError, r"seed\) must be >= 0, got -1"),
        (
            lambda: digit_seq2seq(2, min_len=3, max_len=9, task="sort", generator=0),
            ValueError,
            "'reverse' or 'copy', got 'sort'",
        ),
        (
            lambda: digit_seq2seq(2, min_len=5, max_len=4, generator=0),
            ValueError,
            "min_len must be <= max_len, got 5 > 4",
        ),
        (
            lambda: digit_seq2seq(0, min_len=1, max_len=4, generator=0),
            ValueError,
            "batch_size must be >= 1, got 0",
        ),
        (
            lambda: associative_recall(2, 5, n_keys=4, n_values=3, generator=0),
            ValueError,
            "n_pairs must be <= n_keys",
        ),
        (lambda: MarkovLanguage(3, branching=4), ValueError, "branching must be <= n_words"),
        (
            lambda: MarkovLanguage(5).masked_posterior(torch.tensor([2]), torch.tensor([7])),
            ValueError,
            r"word ids in \[6, 11\)",
        ),
        (
            lambda: sequence_classification(
                2, min_len=2, max_len=5, n_words=9, rule="xor", generator=0
            ),
            ValueError,
            "'majority' or 'pair', got 'xor'",
        ),
        (
            lambda: sequence_classification(2, min_len=2, max_len=5, n_words=2, generator=0),
            ValueError,
            "n_words must be >= 3",
        ),
        (
            lambda: sequence_classification(
                2, min_len=2, max_len=5, n_words=5, rule="pair", generator=0
            ),
            ValueError,
            "min_len >= 3, got 2",
        ),
        (
            lambda: long_documents(2, 50, position="centre", generator=0),
            ValueError,
            "'start', 'middle', 'end', 'random' or an int, got 'centre'",
        ),
        (
            lambda: long_documents(2, 50, position=50, generator=0),
            ValueError,
            r"position must be in \[0, 50\), got 50",
        ),
        (lambda: long_documents(2, 50, n_classes=1, generator=0), ValueError, "n_classes"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA generator")
def test_a_cuda_generator_is_refused():
    with pytest.raises(ValueError, match="CPU generator"):
        TASKS["seq2seq"](torch.Generator(device="cuda"))


def test_numpy_integers_are_ints_and_floats_are_not():
    batch = digit_seq2seq(np.int64(3), min_len=np.int32(1), max_len=4, generator=np.int64(0))
    assert torch.equal(batch.src, digit_seq2seq(3, min_len=1, max_len=4, generator=0).src)
    with pytest.raises(TypeError, match="batch_size must be an int, got float 3.0"):
        digit_seq2seq(3.0, min_len=1, max_len=4, generator=0)
    with pytest.raises(ValueError, match="n_classes must be >= 2, got 1"):
        long_documents(2, 10, n_classes=1, generator=0)


def test_moved_names_stay_valid_under_qkv_data():
    import qkv.data
    import qkv.markov
    import qkv.tasks

    assert qkv.data.MarkovLanguage is qkv.markov.MarkovLanguage
    for name in qkv.tasks.__all__:
        assert getattr(qkv.data, name) is getattr(qkv.tasks, name), name


def test_numpy_integer_seeds_are_seeds():
    from qkv.experiments.q01_what_is_attention import noisy_sine
    from qkv.experiments.q04_self_vs_target_attention import make_catalogue
    from qkv.experiments.q16_mask_rate import isolated_mask_batch

    catalogue = make_catalogue(generator=np.int64(3))
    assert torch.equal(catalogue.centres, make_catalogue(generator=3).centres)
    assert torch.equal(noisy_sine(generator=np.int32(3)).y_train, noisy_sine(generator=3).y_train)
    language = MarkovLanguage(n_words=8, seed=0)
    words, _ = isolated_mask_batch(language, 4, 6, generator=np.int64(5))
    assert torch.equal(words, isolated_mask_batch(language, 4, 6, generator=5)[0])
    with pytest.raises(TypeError, match="int seed >= 0, got True"):
        make_catalogue(generator=True)
