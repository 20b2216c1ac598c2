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
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), state)


def test_xor_documents_put_the_two_bits_in_different_windows():
    from qkv.experiments.q20_long_text import XOR_STRIDE, XOR_WINDOW, xor_documents
    from qkv.longtext import sliding_windows
    from qkv.tasks import N_SPECIAL

    ids, labels = xor_documents(200, generator=torch.Generator().manual_seed(0))
    bits = ids < N_SPECIAL + 2  # the two bit tokens; noise ids start at N_SPECIAL + 2
    assert (bits.sum(1) == 2).all()
    first, last = (ids[:, :2] - N_SPECIAL).clamp(0, 1), (ids[:, -2:] - N_SPECIAL).clamp(0, 1)
    expected = (first * bits[:, :2]).sum(1) ^ (last * bits[:, -2:]).sum(1)
    assert torch.equal(labels, expected)
    windows, _ = sliding_windows(bits.long(), XOR_WINDOW, XOR_STRIDE)  # (B, W, window)
    assert windows.sum(-1).max() == 1  # no window holds both bits


def test_small_encoder_pools_window_logits():
    from qkv.experiments.q20_long_text import SmallEncoder

    torch.manual_seed(0)
    ids = torch.randint(0, 20, (3, 16))
    assert SmallEncoder(16)(ids).shape == (3, 2)
    assert SmallEncoder(16, window=8, how="max")(ids).shape == (3, 2)
