"""Tests for qkv.experiments.q17_cls_token: [CLS] + pooler vs mean pooling, checked by hand."""

from __future__ import annotations

import pytest
import torch

from qkv.bert import BertConfig, bert_from_hf_state_dict
from qkv.experiments.q17_cls_token import (
    SequenceClassifier,
    cls_attention,
    cls_attention_by_token,
    train_pooling,
)
from qkv.masks import masked_mean
from qkv.tasks import sequence_classification

CONFIG = BertConfig(
    vocab_size=29,
    hidden_size=12,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=19,
    max_position_embeddings=13,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def _batch(n=5, seed=0):
    return sequence_classification(n, min_len=4, max_len=12, n_words=23, generator=seed)


def test_cls_pooling_matches_hugging_face_sequence_classification():
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.BertConfig(
        vocab_size=29,
        hidden_size=12,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=19,
        max_position_embeddings=13,
        hidden_act="gelu",
        num_labels=3,
    )
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification(hf_config).eval()
    ours = SequenceClassifier(CONFIG, n_classes=3, pooling="cls").eval()
    ours.bert = bert_from_hf_state_dict(hf.bert.state_dict(), CONFIG)
    ours.classifier.load_state_dict(hf.classifier.state_dict())
    batch = _batch()
    with torch.no_grad():
        expected = hf(batch.input_ids, attention_mask=batch.attention_mask.long()).logits
        got = ours(batch.input_ids, batch.attention_mask)
    assert torch.allclose(got, expected, atol=1e-5)


def test_mean_pooling_averages_real_tokens_only():
    model = SequenceClassifier(CONFIG, pooling="mean").eval()
    batch = _batch(seed=1)
    with torch.no_grad():
        hidden, _ = model.bert(batch.input_ids, attention_mask=batch.attention_mask.long())
        expected = model.classifier(masked_mean(hidden, batch.attention_mask))
        got = model(batch.input_ids, batch.attention_mask)
        # padding tokens' states must not matter: change the padded ids
        changed = batch.input_ids.masked_fill(~batch.attention_mask, 7)
        again = model(changed, batch.attention_mask)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got, again, atol=1e-6)


def test_cls_attention_is_a_distribution_over_real_tokens():
    model = SequenceClassifier(CONFIG).eval()
    batch = _batch(seed=2)
    weights = cls_attention(model, batch.input_ids, batch.attention_mask)
    assert weights.shape == batch.input_ids.shape
    assert torch.allclose(weights.sum(-1), torch.ones(len(weights)), atol=1e-6)
    assert (weights[~batch.attention_mask] == 0).all()
    by_token = cls_attention_by_token(model, batch)
    assert set(by_token) == {"[CLS]", "A or B", "distractor"}


def test_train_pooling_learns_and_frozen_cls_does_not(device):
    trained = train_pooling("cls", steps=40, device=device)
    assert trained.accuracy > 0.9
    frozen = train_pooling("cls", steps=20, lr=3e-2, freeze_encoder=True, device=device)
    assert frozen.accuracy < 0.7
    assert all(not p.requires_grad for p in frozen.model.bert.parameters())


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(CONFIG, pooling="max")
    with pytest.raises(ValueError, match="n_classes"):
        SequenceClassifier(CONFIG, n_classes=1)


def test_probe_pooled_statistics_match_a_brute_force_recount():
    from qkv.experiments.q17_cls_token import probe_pooled

    torch.manual_seed(3)
    model = SequenceClassifier(CONFIG).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probes = probe_pooled(model, seed=2, n_train=256, n_test=40, n_words=23)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    test = sequence_classification(40, min_len=4, max_len=12, n_words=23, generator=40_002)
    with torch.no_grad():
        hidden, cls = model.bert(test.input_ids, attention_mask=test.attention_mask.long())
    for name, x in (("cls", cls), ("mean", masked_mean(hidden, test.attention_mask))):
        x = x.double()
        cosines = [
            torch.nn.functional.cosine_similarity(x[i], x[j], dim=0).item()
            for i in range(40)
            for j in range(40)
            if i != j
        ]
        centred = sum((row - x.mean(0)).square().sum().item() for row in x)
        assert probes[name].cosine == pytest.approx(sum(cosines) / len(cosines), abs=1e-9)
        assert probes[name].varying_share == pytest.approx(
            centred / x.square().sum().item(), rel=1e-9
        )
        assert 0.0 <= probes[name].accuracy <= 1.0


def test_probe_reads_a_label_that_a_short_probe_misses():
    """The untrained [CLS] vector barely varies, yet a fitted probe reads the label from it."""
    from qkv.experiments.q17_cls_token import probe_pooled

    run = train_pooling("cls", seed=0, steps=100, lr=3e-2, freeze_encoder=True)
    probes = probe_pooled(run.model, seed=0)
    assert run.accuracy < 0.6 < 0.95 < probes["cls"].accuracy
    assert probes["cls"].varying_share < 1e-3 < probes["mean"].varying_share
