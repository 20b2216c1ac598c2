"""Q26 (bert/q26_bert_inputs_and_pretraining_tasks): next-sentence and sentence-order pairs.

BERT's next-sentence prediction (NSP; Devlin et al. 2019, §3.1) pairs a sentence
with its true successor half of the time and with a random sentence of the corpus
otherwise. ALBERT's sentence-order prediction (SOP; Lan et al. 2020, §3.1) pairs two
consecutive sentences in their order or swapped. This module builds both from
synthetic documents and measures how far a model with no notion of word order gets
on each: random negatives usually come from another topic, so NSP is largely a
topic test, while the swapped pairs of SOP contain exactly the same words.

The documents are *linked*: every sentence starts with the word that ended the
sentence before it, so the order is recoverable from the two sentences alone (by
a model that knows which word comes first and last), but not from their bags of
words. :func:`bag_of_words_accuracy` is the claimed number (``CLAIMS``).

Used in: Q26 (also ``benchmarks/robustness.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.experiments import Claim, claims, experiment

__all__ = [
    "PairBatch",
    "LinkedCorpus",
    "linked_documents",
    "nsp_pairs",
    "sop_pairs",
    "BagOfWordsPairClassifier",
    "link_rule_accuracy",
    "bag_of_words_accuracy",
    "BoundaryPairClassifier",
    "boundary_accuracy",
    "sop_order_gain",
    "CLAIMS",
]


class PairBatch(NamedTuple):
    """Sentence pairs ``first, second: (N, L)`` word ids and ``label: (N,)`` (1 = positive)."""

    first: Tensor
    second: Tensor
    label: Tensor


class LinkedCorpus(NamedTuple):
    """``documents: (n_docs, sentences_per_doc, L)`` word ids and the vocabulary size ``V``."""

    documents: Tensor
    vocab_size: int


def linked_documents(
    n_docs: int,
    *,
    n_topics: int = 8,
    words_per_topic: int = 24,
    n_function_words: int = 16,
    sentences_per_doc: int = 6,
    length: int = 8,
    topic_share: float = 0.4,
    generator: torch.Generator,
) -> LinkedCorpus:
    """Synthetic documents, each on one topic, whose sentences are chained by a word.

    Ids ``0 .. n_function_words - 1`` are function words shared by every topic;
    topic ``t`` owns the next ``words_per_topic`` ids. A sentence of ``length``
    words draws each inner word from its document's topic with probability
    ``topic_share`` (else a function word); its last word is a topic word, and the
    next sentence starts with that same word.

    Returns:
        :class:`LinkedCorpus` with ``documents (n_docs, sentences_per_doc, length)``.
    Used in: Q26.
    """
    sizes = {
        "n_docs": n_docs,
        "n_topics": n_topics,
        "words_per_topic": words_per_topic,
        "n_function_words": n_function_words,
        "sentences_per_doc": sentences_per_doc,
    }
    for name, value in sizes.items():
        check_int(name, value, 1)
    if not isinstance(length, int) or length < 3:
        raise ValueError(f"length must be an int >= 3 (link in, words, link out), got {length!r}")
    if not 0.0 <= topic_share <= 1.0:
        raise ValueError(f"topic_share must be in [0, 1], got {topic_share}")
    shape = (n_docs, sentences_per_doc, length)
    topic = torch.randint(0, n_topics, (n_docs, 1, 1), generator=generator)
    topic_words = n_function_words + topic * words_per_topic  # first id of each doc's topic
    content = topic_words + torch.randint(0, words_per_topic, shape, generator=generator)
    function = torch.randint(0, n_function_words, shape, generator=generator)
    use_topic = torch.rand(shape, generator=generator) < topic_share
    docs = torch.where(use_topic, content, function)
    docs[:, :, -1] = content[:, :, -1]  # each sentence ends with a topic word ...
    docs[:, 1:, 0] = docs[:, :-1, -1]  # ... which starts the next sentence
    return LinkedCorpus(docs, n_function_words + n_topics * words_per_topic)


def _consecutive(documents: Tensor) -> tuple[Tensor, Tensor]:
    """Every pair of consecutive sentences: ``(N, L)`` firsts and seconds."""
    if documents.dim() != 3 or documents.shape[1] < 2:
        raise ValueError(
            f"documents must be (n_docs, sentences_per_doc >= 2, L), got {tuple(documents.shape)}"
        )
    L = documents.shape[-1]
    return documents[:, :-1].reshape(-1, L), documents[:, 1:].reshape(-1, L)


def nsp_pairs(documents: Tensor, *, generator: torch.Generator) -> PairBatch:
    """Next-sentence prediction pairs, as in BERT: half true successors, half random sentences.

    For each pair of consecutive sentences ``(A, B)``: label 1 keeps ``B``; label 0
    replaces it by a sentence drawn uniformly from the whole corpus (BERT's
    "random sentence from the corpus", which may even be on the same topic).
    Used in: Q26.
    """
    first, second = _consecutive(documents)
    every_sentence = documents.reshape(-1, documents.shape[-1])
    label = torch.randint(0, 2, (len(first),), generator=generator)
    pick = torch.randint(0, len(every_sentence), (len(first),), generator=generator)
    random_pick = every_sentence[pick]
    second = torch.where(label[:, None].bool(), second, random_pick)
    return PairBatch(first, second, label)


def sop_pairs(documents: Tensor, *, generator: torch.Generator) -> PairBatch:
    """Sentence-order prediction pairs, as in ALBERT: consecutive sentences, in order or swapped.

    Used in: Q26.
    """
    first, second = _consecutive(documents)
    label = torch.randint(0, 2, (len(first),), generator=generator)
    keep = label[:, None].bool()
    return PairBatch(torch.where(keep, first, second), torch.where(keep, second, first), label)


class BagOfWordsPairClassifier(nn.Module):
    """Classify a sentence pair from the two bags of words: no notion of word order.

    Each sentence becomes its vector of word counts ``c_A, c_B: (N, V)``; the logit
    is a bilinear term ``(c_A E_A) · (c_B E_B)`` (do the two bags share a topic?)
    plus a linear term in each bag. The model knows which sentence is first, but
    not where a word sits inside it.
    """

    def __init__(self, vocab_size: int, d: int = 16) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 1)
        check_int("d", d, 1)
        self.vocab_size = vocab_size
        self.embed_first = nn.Linear(vocab_size, d, bias=False)  # E_A
        self.embed_second = nn.Linear(vocab_size, d, bias=False)  # E_B
        self.linear = nn.Linear(2 * vocab_size, 1)

    def bag(self, ids: Tensor) -> Tensor:
        """``(N, L)`` word ids -> ``(N, V)`` counts."""
        counts = torch.zeros(len(ids), self.vocab_size, device=ids.device)
        return counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=counts.dtype))

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        a, b = self.bag(first), self.bag(second)  # (N, V) each
        bilinear = (self.embed_first(a) * self.embed_second(b)).sum(-1)  # (N,)
        return bilinear + self.linear(torch.cat([a, b], dim=-1)).squeeze(-1)


def link_rule_accuracy(pairs: PairBatch) -> float:
    """Accuracy of the order-aware rule "A's last word starts B" (predict 1 iff it does).

    Used in: Q26.
    """
    predicted = pairs.first[:, -1] == pairs.second[:, 0]
    return (predicted == pairs.label.bool()).float().mean().item()


@experiment
def bag_of_words_accuracy(task: str, seed: int, *, steps: int = 300) -> float:
    """Train :class:`BagOfWordsPairClassifier` on NSP or SOP pairs; return held-out accuracy.

    400 training documents and 200 held-out documents (6 sentences each, so
    2,000 and 1,000 pairs), full-batch AdamW (lr 0.02) for ``steps`` steps with
    :func:`qkv.train.train`.
    Used in: Q26.
    """
    return _trained_accuracy(BagOfWordsPairClassifier, task, seed, steps)


def _trained_accuracy(model_class: type[nn.Module], task: str, seed: int, steps: int) -> float:
    """600 linked documents, 400 to train and 200 to test; held-out pair accuracy."""
    from qkv.train import TrainConfig, evaluate, train

    if task not in ("nsp", "sop"):
        raise ValueError(f"task must be 'nsp' or 'sop', got {task!r}")
    make_pairs = nsp_pairs if task == "nsp" else sop_pairs
    generator = torch.Generator().manual_seed(seed)
    corpus = linked_documents(600, generator=generator)
    train_pairs = make_pairs(corpus.documents[:400], generator=generator)
    test_pairs = make_pairs(corpus.documents[400:], generator=generator)
    torch.manual_seed(seed)
    model = model_class(corpus.vocab_size)

    def loss_fn(m: nn.Module, batch: PairBatch) -> Tensor:
        logits = m(batch.first, batch.second)
        return nn.functional.binary_cross_entropy_with_logits(logits, batch.label.float())

    def accuracy(m: nn.Module, batch: PairBatch) -> dict[str, Tensor]:
        predicted = m(batch.first, batch.second) > 0
        return {"accuracy": (predicted == batch.label.bool()).float().mean()}

    config = TrainConfig(steps=steps, lr=0.02, seed=seed, weight_decay=1e-3, log_every=steps)
    train(model, lambda step, g: train_pairs, loss_fn, config)
    return evaluate(model, test_pairs, accuracy)["accuracy"]


class BoundaryPairClassifier(nn.Module):
    """Classify a sentence pair from the words at its boundary: order-aware, learned.

    The logit is ``E_last[A[-1]] · E_first[B[0]] + b``: a bilinear score of the last
    word of the first sentence and the first word of the second, with two learned
    embedding tables. It knows where the boundary is, so it can learn that the
    linked documents repeat a word across it, and it can also fail to.
    """

    def __init__(self, vocab_size: int, d: int = 16) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 1)
        check_int("d", d, 1)
        self.last = nn.Embedding(vocab_size, d)  # E_last
        self.first = nn.Embedding(vocab_size, d)  # E_first
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        score = (self.last(first[:, -1]) * self.first(second[:, 0])).sum(-1)  # (N,)
        return score + self.bias


@experiment
def boundary_accuracy(task: str, seed: int, *, steps: int = 300) -> float:
    """Train :class:`BoundaryPairClassifier` on NSP or SOP pairs; return held-out accuracy.

    The same documents, pairs and training as :func:`bag_of_words_accuracy`.
    Used in: Q26.
    """
    return _trained_accuracy(BoundaryPairClassifier, task, seed, steps)


@experiment
def sop_order_gain(seed: int) -> float:
    """SOP held-out accuracy: the boundary model minus the bag-of-words model.

    The chapter checks the claim on the two accuracies it has already measured;
    ``benchmarks/robustness.py`` calls this.
    """
    return boundary_accuracy("sop", seed) - bag_of_words_accuracy("sop", seed)


CLAIMS = claims(
    Claim(
        "q26-nsp-bag-of-words",
        "bag of words on NSP: held-out accuracy",
        lambda seed: bag_of_words_accuracy("nsp", seed),
        ">",
        0.7,
    ),
    Claim(
        "q26-sop-bag-of-words",
        "bag of words on SOP: held-out accuracy",
        lambda seed: bag_of_words_accuracy("sop", seed),
        "<",
        0.6,
    ),
    Claim(
        "q26-sop-order-gain",
        "SOP held-out accuracy: a learned order-aware (boundary) model minus the bag of words",
        sop_order_gain,
        ">",
        0.15,
    ),
)
