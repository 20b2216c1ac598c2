"""Q25 experiments: the window-sum task, the convolutional tagger and the experiment."""

from __future__ import annotations

import pytest
import torch

from qkv.experiments.q25_weaknesses import (
    LOCALITY_MODELS,
    ConvTagger,
    locality_experiment,
    window_sum,
)


def test_window_sum_against_a_loop() -> None:
    batch = window_sum(4, 7, generator=torch.Generator().manual_seed(0))
    x = batch.inputs.tolist()
    for b in range(4):
        for i in range(7):
            window = [x[b][j] for j in (i - 1, i, i + 1) if 0 <= j < 7]
            assert batch.labels[b, i] == sum(window)


def test_conv_tagger_sees_two_neighbours_each_side(device) -> None:
    torch.manual_seed(0)
    model = ConvTagger(2, 4, d_model=8).to(device)
    ids = torch.randint(0, 2, (1, 9), device=device)
    changed = ids.clone()
    changed[0, 0] = 1 - changed[0, 0]
    with torch.no_grad():
        out, out2 = model(ids), model(changed)
    assert out.shape == (1, 9, 4)
    assert torch.allclose(out[0, 3:], out2[0, 3:]) and not torch.allclose(out[0, 2], out2[0, 2])


def test_conv_tagger_needs_an_odd_kernel() -> None:
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ConvTagger(2, 4, kernel_size=4)


def test_experiment_reports_every_model_and_budget() -> None:
    result = locality_experiment(0, budgets=(2, 4), length=6, steps=2, device="cpu")
    assert list(result) == list(LOCALITY_MODELS)
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in result.values())
    with pytest.raises(ValueError, match="n_train must be >= 1"):
        locality_experiment(0, budgets=(0,), steps=1)
