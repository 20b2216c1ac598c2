"""The Q6 checker: copies and wrong ties -> failed, sharing -> passed."""

from __future__ import annotations

import pytest

from qkv.exercises.q06_keys_equal_values import check_tie_keys_and_values


def share_the_module(mha):
    mha.w_v = mha.w_k
    return mha


def share_the_other_way(mha):
    mha.w_k = mha.w_v  # also a valid tie: both start as the old W_V
    return mha


def copy_the_weights(mha):
    mha.w_v.load_state_dict(mha.w_k.state_dict())  # equal today, apart after one step
    return mha


def share_the_weight_only(mha):
    mha.w_v.weight = mha.w_k.weight  # the biases still differ
    return mha


def tie_the_query(mha):
    mha.w_v = mha.w_q
    return mha


def forget_to_return(mha):
    mha.w_v = mha.w_k


@pytest.mark.parametrize("solution", [share_the_module, share_the_other_way])
def test_sharing_one_projection_passes(solution) -> None:
    verdict = check_tie_keys_and_values(solution)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (copy_the_weights, "do not copy the weights"),
        (share_the_weight_only, "values V = X W_V against keys K = X W_K: at index"),
        (tie_the_query, "values V = X W_V against keys K = X W_K: at index"),
        (forget_to_return, "return the tied module, got NoneType"),
    ],
)
def test_wrong_ties_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_tie_keys_and_values(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail
