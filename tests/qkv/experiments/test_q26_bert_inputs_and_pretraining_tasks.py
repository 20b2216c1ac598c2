"""Q26 experiments: linked documents, NSP and SOP pairs, the bag-of-words probe."""

from __future__ import annotations

import pytest
import torch

from qkv.experiments.q26_bert_inputs_and_pretraining_tasks import (
    BagOfWordsPairClassifier,
    PairBatch,
    link_rule_accuracy,
    linked_documents,
    nsp_pairs,
    sop_pairs,
)


def corpus(n_docs: int = 50, seed: int = 0):
    return linked_documents(n_docs, generator=torch.Generator().manual_seed(seed))


def test_documents_are_linked_and_on_one_topic() -> None:
    c = corpus()
    docs = c.documents
    assert docs.shape == (50, 6, 8) and docs.dtype == torch.long
    assert torch.equal(docs[:, 1:, 0], docs[:, :-1, -1])  # each sentence starts with the last word
    assert int(docs.max()) < c.vocab_size == 16 + 8 * 24
    content = docs[docs >= 16]
    topics = (docs.clamp(min=16) - 16) // 24  # function words map to topic 0; mask them out
    for d in range(len(docs)):
        words = topics[d][docs[d] >= 16]
        assert len(words.unique()) == 1, "one topic per document"
    assert len(content) > 0


def test_nsp_pairs_keep_true_successors_and_draw_random_negatives() -> None:
    c = corpus()
    pairs = nsp_pairs(c.documents, generator=torch.Generator().manual_seed(1))
    first, second = c.documents[:, :-1].reshape(-1, 8), c.documents[:, 1:].reshape(-1, 8)
    assert torch.equal(pairs.first, first)
    positive = pairs.label == 1
    assert torch.equal(pairs.second[positive], second[positive])
    assert not torch.equal(pairs.second[~positive], second[~positive])
    assert 0.4 < positive.float().mean() < 0.6


def test_sop_pairs_are_the_same_sentences_swapped() -> None:
    c = corpus()
    pairs = sop_pairs(c.documents, generator=torch.Generator().manual_seed(1))
    first, second = c.documents[:, :-1].reshape(-1, 8), c.documents[:, 1:].reshape(-1, 8)
    swapped = pairs.label == 0
    assert torch.equal(pairs.first[swapped], second[swapped])
    assert torch.equal(pairs.second[swapped], first[swapped])
    assert torch.equal(pairs.first[~swapped], first[~swapped])


def test_the_link_rule_solves_both_tasks() -> None:
    c = corpus(200)
    g = torch.Generator().manual_seed(2)
    assert link_rule_accuracy(nsp_pairs(c.documents, generator=g)) > 0.95
    assert link_rule_accuracy(sop_pairs(c.documents, generator=g)) > 0.95


def test_bag_model_ignores_word_order_inside_a_sentence() -> None:
    model = BagOfWordsPairClassifier(30)
    a = torch.randint(0, 30, (5, 7), generator=torch.Generator().manual_seed(3))
    b = torch.randint(0, 30, (5, 7), generator=torch.Generator().manual_seed(4))
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(model(a, b), model(a[:, perm], b[:, perm.flip(0)]), atol=1e-6)
        assert not torch.allclose(model(a, b), model(b, a), atol=1e-3)  # but knows first vs second


def test_bag_counts_words() -> None:
    model = BagOfWordsPairClassifier(5)
    counts = model.bag(torch.tensor([[0, 0, 4]]))
    assert counts.tolist() == [[2.0, 0.0, 0.0, 0.0, 1.0]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_docs": 0}, "n_docs"),
        ({"n_docs": 3, "length": 2}, "length must be an int >= 3"),
        ({"n_docs": 3, "topic_share": 1.5}, "topic_share"),
    ],
)
def test_bad_corpus_arguments_are_named(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        linked_documents(**kwargs, generator=torch.Generator())


def test_pairs_need_two_sentences_per_document() -> None:
    with pytest.raises(ValueError, match="sentences_per_doc >= 2"):
        nsp_pairs(torch.zeros(3, 1, 8, dtype=torch.long), generator=torch.Generator())
    assert isinstance(sop_pairs(corpus().documents, generator=torch.Generator()), PairBatch)


def test_boundary_model_reads_only_the_words_at_the_boundary() -> None:
    from qkv.experiments.q26_bert_inputs_and_pretraining_tasks import (
        BoundaryPairClassifier,
        boundary_accuracy,
    )

    torch.manual_seed(0)
    model = BoundaryPairClassifier(20)
    a, b = torch.randint(0, 20, (5, 8)), torch.randint(0, 20, (5, 8))
    changed_a, changed_b = a.clone(), b.clone()
    changed_a[:, :-1] = (a[:, :-1] + 1) % 20  # every word but A's last
    changed_b[:, 1:] = (b[:, 1:] + 1) % 20  # every word but B's first
    with torch.no_grad():
        assert model(a, b).shape == (5,)
        assert torch.equal(model(a, b), model(changed_a, changed_b))
        assert not torch.equal(model(a, b), model(b, a))  # order matters
    with pytest.raises(ValueError, match="task must be"):
        boundary_accuracy("mlm", 0)
