"""The Q23 checker: one cached decoding step, right and wrong."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qkv.exercises.q23_kv_cache import check_cached_attention_step


def reference(x_t, w_q, w_k, w_v, past_k, past_v):
    q = x_t @ w_q  # (B, 1, d_k): used once, never cached
    k_cache = torch.cat([past_k, x_t @ w_k], dim=1)  # (B, t + 1, d_k)
    v_cache = torch.cat([past_v, x_t @ w_v], dim=1)
    out = F.scaled_dot_product_attention(q, k_cache, v_cache)  # the newest query sees everything
    return out, k_cache, v_cache


def attend_before_appending(x_t, w_q, w_k, w_v, past_k, past_v):
    """Attends over the past only (and crashes or averages nothing at t = 0)."""
    q = x_t @ w_q
    out = F.scaled_dot_product_attention(q, past_k, past_v) if past_k.shape[1] else 0 * q
    return out, torch.cat([past_k, x_t @ w_k], 1), torch.cat([past_v, x_t @ w_v], 1)


def top_left_causal(x_t, w_q, w_k, w_v, past_k, past_v):
    """is_causal=True with one query aligns the mask to the first key: sees key 0 only."""
    q = x_t @ w_q
    k, v = torch.cat([past_k, x_t @ w_k], 1), torch.cat([past_v, x_t @ w_v], 1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True), k, v


def caches_the_query(x_t, w_q, w_k, w_v, past_k, past_v):
    """Stores q in the key cache: scores become q_t . q_j."""
    q = x_t @ w_q
    k, v = torch.cat([past_k, q], 1), torch.cat([past_v, x_t @ w_v], 1)
    return F.scaled_dot_product_attention(q, k, v), k, v


def appends_in_place(x_t, w_q, w_k, w_v, past_k, past_v):
    """Right answer, but writes into the caller's cache first."""
    past_k.mul_(1.0).add_(0.5)  # a careless in-place edit of the old cache
    return reference(x_t, w_q, w_k, w_v, past_k - 0.5, past_v)


def unscaled(x_t, w_q, w_k, w_v, past_k, past_v):
    out, k, v = reference(x_t, w_q, w_k, w_v, past_k, past_v)
    q = x_t @ w_q
    return F.scaled_dot_product_attention(q, k, v, scale=1.0), k, v


def test_the_reference_passes() -> None:
    verdict = check_cached_attention_step(reference)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (attend_before_appending, "output vs the full causal forward"),
        (top_left_causal, "output vs the full causal forward"),
        (caches_the_query, "the key cache after appending"),
        (appends_in_place, "in place"),  # run_checks names the argument
        (unscaled, "output vs the full causal forward"),
        (lambda *args: reference(*args)[0], "return a tuple"),
    ],
)
def test_wrong_steps_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_cached_attention_step(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_the_untouched_stub_is_not_attempted() -> None:
    def stub(x_t, w_q, w_k, w_v, past_k, past_v):
        raise NotImplementedError

    assert check_cached_attention_step(stub).status == "not attempted"
