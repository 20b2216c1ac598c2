"""The Q3 checker: wrong contexts -> failed, reference -> passed."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q03_attention_vs_seq2seq import check_context_vector


def reference(s_prev, states, mask, w_q, w_k, w):
    scores = torch.tanh((s_prev @ w_q.T)[:, None] + states @ w_k.T) @ w  # (B, m)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return (weights[:, None] @ states)[:, 0], weights


def no_mask(s_prev, states, mask, w_q, w_k, w):
    weights = (torch.tanh((s_prev @ w_q.T)[:, None] + states @ w_k.T) @ w).softmax(dim=-1)
    return (weights[:, None] @ states)[:, 0], weights


def mask_after_softmax(s_prev, states, mask, w_q, w_k, w):
    _, weights = no_mask(s_prev, states, mask, w_q, w_k, w)
    weights = weights * mask  # rows no longer sum to 1
    return (weights[:, None] @ states)[:, 0], weights


def dot_product(s_prev, states, mask, w_q, w_k, w):
    scores = ((s_prev @ w_q.T)[:, None] * (states @ w_k.T)).sum(-1)  # a different score
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return (weights[:, None] @ states)[:, 0], weights


def test_reference_passes() -> None:
    verdict = check_context_vector(reference)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (no_mask, "weights alpha_ij (lengths=[3, 7, 1]): at index"),
        (mask_after_softmax, "weights alpha_ij (lengths=[3, 7, 1]): at index"),
        (dot_product, "weights alpha_ij (lengths=[4, 4]): at index"),
        (lambda *args: reference(*args)[0], "expected a pair (context, weights), got Tensor"),
    ],
)
def test_wrong_answers_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_context_vector(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail
