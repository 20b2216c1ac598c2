"""The Q5 checker: plausible wrong self-attentions fail, the reference passes."""

from __future__ import annotations

import math

import pytest

from qkv.exercises.q05_self_attention_core import check_self_attention


def reference(x, w_q, w_k, w_v):
    q, k, v = x @ w_q, x @ w_k, x @ w_v  # (..., L, d_k), (..., L, d_k), (..., L, d_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(w_q.shape[-1])
    return scores.softmax(dim=-1) @ v


def scaled_by_d_model(x, w_q, w_k, w_v):
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    return (q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1])).softmax(dim=-1) @ v


def softmax_over_queries(x, w_q, w_k, w_v):
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-2) @ v


def linear_layout(x, w_q, w_k, w_v):
    return reference(x, w_q.T, w_k.T, w_v.T)  # nn.Linear's (out, in) layout: x @ w.T


def transposed_when_square(x, w_q, w_k, w_v):
    # the nn.Linear layout mix-up in code that only ever ran with square weights
    square = w_q.shape[0] == w_q.shape[1] == w_v.shape[1]
    return reference(x, w_q.T, w_k.T, w_v.T) if square else reference(x, w_q, w_k, w_v)


def forgot_w_v(x, w_q, w_k, w_v):
    q, k = x @ w_q, x @ w_k
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1) @ x


def in_place(x, w_q, w_k, w_v):
    w_q /= math.sqrt(w_q.shape[-1])  # folds the scale into the caller's matrix
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    return (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v


def test_reference_passes() -> None:
    verdict = check_self_attention(reference)
    assert verdict.passed, verdict
    assert "All 4 checks" in verdict.detail


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (scaled_by_d_model, "(one sequence): x (7, 12), d_k=5, d_v=3: at index"),
        (softmax_over_queries, "(one sequence): x (7, 12), d_k=5, d_v=3: at index"),
        (linear_layout, "Case 'one sequence' raised RuntimeError"),
        (transposed_when_square, "(square weights, d_model = d_k = d_v): x (2, 6, 8)"),
        (forgot_w_v, "expected shape (7, 3), got (7, 12)"),
        (in_place, "changed its input `w_q` in place"),
    ],
)
def test_wrong_self_attentions_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_self_attention(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail
