"""qkv.experiments.q24_original_training_recipe: the label-smoothing runs."""

from __future__ import annotations

import pytest

from qkv.experiments.q24_original_training_recipe import label_smoothing_experiment


def test_smoothing_lowers_confidence_of_an_overfitting_model():
    plain = label_smoothing_experiment(0, 0.0, n_train=16, steps=60)
    smoothed = label_smoothing_experiment(0, 0.1, n_train=16, steps=60)
    assert set(plain) == {"confidence", "accuracy", "ece", "nll", "train_loss"}
    assert smoothed["confidence"] < plain["confidence"]
    assert label_smoothing_experiment(0, 0.0, n_train=16, steps=60) == pytest.approx(plain)
