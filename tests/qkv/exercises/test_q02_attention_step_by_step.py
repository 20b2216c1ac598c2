"""The Q2 checker: plausible wrong attentions fail, the reference passes."""

from __future__ import annotations

import math

import pytest

from qkv.exercises.q02_attention_step_by_step import check_attention


def reference(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


def softmax_over_queries(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e9)
    return scores.softmax(dim=-2) @ v


def unscaled(q, k, v, mask=None):
    return reference(q * math.sqrt(q.shape[-1]), k, v, mask)


def ignores_the_mask(q, k, v, mask=None):
    return reference(q, k, v)


def inverted_mask(q, k, v, mask=None):
    return reference(q, k, v, None if mask is None else ~mask)


def weights_after_softmax(q, k, v, mask=None):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
    return (weights if mask is None else weights * mask) @ v


def in_place(q, k, v, mask=None):
    q /= math.sqrt(q.shape[-1])  # scales the caller's tensor
    return reference(q * math.sqrt(q.shape[-1]), k, v, mask)


def test_reference_passes() -> None:
    verdict = check_attention(reference)
    assert verdict.passed, verdict
    assert "All 7 checks" in verdict.detail


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (softmax_over_queries, "one head, no mask"),
        (unscaled, "one head, no mask"),
        (ignores_the_mask, "mask (n, m) shared by every batch and head"),
        (inverted_mask, "mask (n, m) shared"),
        (weights_after_softmax, "mask (n, m) shared"),
        (in_place, "changed its input `q` in place"),
        (lambda q, k, v, mask=None: v, "expected shape (5, 6), got (7, 6)"),
    ],
)
def test_wrong_attentions_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_attention(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail
    assert (
        "expected" in verdict.detail or "raised" in verdict.detail or "in place" in verdict.detail
    )


def test_a_crash_is_reported_as_a_failure() -> None:
    verdict = check_attention(lambda q, k, v, mask=None: q @ k @ v)  # forgot the transpose
    assert verdict.status == "failed" and "raised RuntimeError" in verdict.detail


def test_a_mask_that_only_works_without_broadcasting_fails() -> None:
    def no_broadcast(q, k, v, mask=None):
        if mask is not None and mask.shape != (*q.shape[:-1], k.shape[-2]):
            raise ValueError("mask must be (..., n, m)")
        return reference(q, k, v, mask)

    verdict = check_attention(no_broadcast)
    assert verdict.status == "failed" and "mask (n, m) shared" in verdict.detail
