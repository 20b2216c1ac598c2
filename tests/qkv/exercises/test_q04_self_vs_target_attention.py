"""The Q4 checker: target attention pooling, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q04_self_vs_target_attention import check_target_attention


def reference(candidate, behaviours, lengths, *, scale=True, mask=True):
    scores = (behaviours @ candidate[:, :, None]).squeeze(-1)  # (B, n, d) @ (B, d, 1) -> (B, n)
    if scale:
        scores = scores / candidate.shape[-1] ** 0.5
    if mask:
        real = torch.arange(behaviours.shape[1]) < lengths[:, None]  # (B, n)
        scores = scores.masked_fill(~real, float("-inf"))
    weights = scores.softmax(-1)  # over the behaviours
    return (weights[:, :, None] * behaviours).sum(1)  # (B, d)


def mean_pooling(candidate, behaviours, lengths):
    real = (torch.arange(behaviours.shape[1]) < lengths[:, None]).float()
    return (behaviours * real[..., None]).sum(1) / lengths[:, None]


def test_reference_passes() -> None:
    verdict = check_target_attention(reference)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (lambda c, b, n: reference(c, b, n, mask=False), "expected"),  # attends to padding
        (lambda c, b, n: reference(c, b, n, scale=False), "expected"),  # no 1/sqrt(d)
        (mean_pooling, "expected"),  # ignores the candidate (and would miss the last case)
        (lambda c, b, n: reference(c, b, n)[:, None], "expected shape"),  # (B, 1, d)
    ],
)
def test_wrong_poolings_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_target_attention(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_a_candidate_free_pooling_is_named_as_such() -> None:
    def mean_pooling_right_on_random_data(candidate, behaviours, lengths):
        if behaviours.shape == (2, 6, 5):  # only the last case can tell
            return mean_pooling(candidate, behaviours, lengths)
        return reference(candidate, behaviours, lengths)

    verdict = check_target_attention(mean_pooling_right_on_random_data)
    assert verdict.status == "failed" and "same for two different candidates" in verdict.detail
