"""The Q17 checker: mean pooling over real tokens, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises import check_mean_pooling


def mean_pool(hidden, attention_mask):
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (lambda h, m: h.mean(dim=1), "tolerance"),  # padding included
        (lambda h, m: h[:, 0], "tolerance"),  # the first token: [CLS] pooling
        (lambda h, m: (h * m[..., None]).sum(1) / h.shape[1], "tolerance"),  # divides by L
        (lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True), "NaN"),  # 0 / 0
        (
            lambda h, m: ((h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)).float(),
            "dtype",
        ),
    ],
)
def test_wrong_poolings_fail(wrong, expected) -> None:
    verdict = check_mean_pooling(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_assuming_right_padding_fails() -> None:
    def first_n(hidden, attention_mask):  # averages the first mask.sum() positions
        n = attention_mask.sum(1).tolist()
        return torch.stack([hidden[b, :k].sum(0) / max(k, 1) for b, k in enumerate(n)])

    verdict = check_mean_pooling(first_n)
    assert verdict.status == "failed" and "left padding" in verdict.detail, verdict


def test_reference_passes_and_stub_is_not_attempted() -> None:
    assert check_mean_pooling(mean_pool).passed

    def stub(hidden, attention_mask):
        raise NotImplementedError

    assert check_mean_pooling(stub).status == "not attempted"
