"""Q20's experiment: a window classifier and the long-text remedies around it."""

from __future__ import annotations

import pytest
import torch

from qkv.experiments.q20_long_text import (
    STRATEGIES,
    WindowClassifier,
    predict,
    train_window_classifier,
    window_logits,
)
from qkv.tasks import long_documents


def test_window_classifier_reads_a_window_and_refuses_longer_inputs():
    model = WindowClassifier(8).eval()
    assert model(torch.full((3, 8), 9)).shape == (3, 2)
    with pytest.raises(ValueError, match="positions"):
        model(torch.full((1, 9), 9))  # [CLS] + 9 tokens > the table's 9 rows


def test_window_logits_cover_the_document_and_predict_knows_every_strategy():
    torch.manual_seed(0)
    model = WindowClassifier(8).eval()
    docs = long_documents(4, 40, position="middle", generator=1)
    assert window_logits(model, docs.input_ids).shape == (4, 9, 2)  # starts 0, 4, ..., 32
    for strategy in STRATEGIES:
        assert predict(model, docs.input_ids, strategy).shape == (4,)
    with pytest.raises(ValueError, match="strategy"):
        predict(model, docs.input_ids, "middle")


def test_training_is_reproducible_and_leaves_the_callers_state_alone():
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    a = train_window_classifier(3, window=8, steps=3)
    b = train_window_classifier(3, window=8, steps=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))  # fmt: skip
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), state)
