"""The Q10 checker: splitting heads, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q10_multi_head_dimensions import check_split_heads


def reference(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, L, d_model = x.shape
    return x.view(B, L, n_heads, d_model // n_heads).transpose(1, 2)


def test_reference_and_an_equivalent_form_pass() -> None:
    assert check_split_heads(reference).passed
    unflatten = lambda x, h: x.unflatten(-1, (h, -1)).permute(0, 2, 1, 3)  # noqa: E731
    verdict = check_split_heads(unflatten)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # right shape, wrong values: the classic reshape bug
        (lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), "at index"),
        # heads take every h-th feature instead of a contiguous block
        (lambda x, h: x.view(*x.shape[:2], -1, h).permute(0, 3, 1, 2), "at index"),
        # forgot the transpose: (B, L, h, d_k)
        (lambda x, h: x.view(*x.shape[:2], h, -1), "expected shape"),
    ],
)
def test_wrong_splits_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_split_heads(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_the_attention_case_catches_a_split_that_only_fails_inside_the_layer() -> None:
    def split_then_scale(x: torch.Tensor, h: int) -> torch.Tensor:
        out = reference(x, h)
        return out * 1.5 if x.shape == (2, 9, 20) else out  # wrong only for the layer's size

    verdict = check_split_heads(split_then_scale)
    assert verdict.status == "failed" and "inside MultiHeadAttention" in verdict.detail, verdict
