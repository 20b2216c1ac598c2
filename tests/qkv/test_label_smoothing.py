"""qkv.label_smoothing: ECE against a brute-force loop, the calibration metrics."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.label_smoothing import calibration, expected_calibration_error
from qkv.stack import TransformerStack


def brute_force_ece(confidence, correct, n_bins):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [
            i for i, c in enumerate(confidence.tolist()) if (lo < c <= hi) or (b == 0 and c == 0)
        ]
        if members:
            acc = sum(bool(correct[i]) for i in members) / len(members)
            conf = sum(confidence[i].item() for i in members) / len(members)
            total += len(members) / len(confidence) * abs(acc - conf)
    return total


@pytest.mark.parametrize("n_bins", [1, 7, 15])
def test_ece_equals_a_loop(n_bins):
    g = torch.Generator().manual_seed(0)
    confidence = torch.rand(301, generator=g)
    confidence[:3] = torch.tensor([0.0, 1.0, 3 / 7])  # the edges: 0, 1 and a bin boundary
    correct = torch.rand(301, generator=g) < confidence
    got = expected_calibration_error(confidence, correct, n_bins)
    assert got == pytest.approx(brute_force_ece(confidence, correct, n_bins), abs=1e-9)


def test_ece_of_always_right_at_confidence_one_is_zero_and_of_overconfidence_is_the_gap():
    ones = torch.ones(10)
    assert expected_calibration_error(ones, torch.ones(10, dtype=torch.bool)) == 0.0
    correct = torch.arange(10) < 6  # 60% right at confidence 0.9
    assert expected_calibration_error(0.9 * ones, correct) == pytest.approx(0.3)


def test_ece_bad_input():
    with pytest.raises(ValueError, match=r"\(N,\)"):
        expected_calibration_error(torch.rand(3), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error(torch.tensor([1.5]), torch.ones(1, dtype=torch.bool))


def test_calibration_metrics_agree_with_a_direct_computation(device):
    torch.manual_seed(0)
    model = TransformerStack(17, 8, 2, 16, 1, norm_first=False).to(device).train()
    ids = torch.randint(0, 17, (5, 9), device=device)
    got = calibration(model, ids)
    assert model.training  # mode restored
    logits = model.eval()(ids[:, :-1]).flatten(0, 1)
    p = logits.softmax(-1)
    target = ids[:, 1:].flatten()
    assert got["confidence"] == pytest.approx(p.max(-1).values.mean().item(), rel=1e-5)
    assert got["accuracy"] == pytest.approx((p.argmax(-1) == target).float().mean().item())
    nll = -p[torch.arange(len(target)), target].log().mean().item()
    assert got["nll"] == pytest.approx(nll, rel=1e-4)
    assert 0 <= got["ece"] <= 1 and math.isfinite(got["ece"])
