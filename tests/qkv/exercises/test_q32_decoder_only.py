"""The Q32 checker: the prefix-LM mask, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q32_decoder_only import check_prefix_lm_mask


def causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()  # (n, n): key j <= query i


def reference(n: int, prefix: int) -> torch.Tensor:
    return causal(n) | (torch.arange(n) < prefix)  # prefix keys open to every query


def test_the_reference_passes() -> None:
    verdict = check_prefix_lm_mask(reference)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # causal only: the prefix is not bidirectional
        (lambda n, prefix: causal(n), "prefix="),
        # prefix queries opened instead of prefix keys: the prefix sees the targets
        (lambda n, prefix: causal(n) | (torch.arange(n) < prefix)[:, None], "prefix="),
        # off by one: the first target token is treated as part of the prefix
        (lambda n, prefix: causal(n) | (torch.arange(n) <= prefix), "prefix="),
        # bidirectional everywhere: an encoder, the targets see their future
        (lambda n, prefix: torch.ones(n, n, dtype=torch.bool), "prefix="),
        # prefix block only, targets cannot see the prefix
        (
            lambda n, prefix: (
                causal(n) & ~((torch.arange(n) >= prefix)[:, None] & (torch.arange(n) < prefix))
                | ((torch.arange(n) < prefix)[:, None] & (torch.arange(n) < prefix))
            ),
            "prefix=",
        ),
        # 0/1 integers instead of booleans
        (lambda n, prefix: reference(n, prefix).int(), "dtype"),
    ],
)
def test_wrong_masks_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_prefix_lm_mask(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_the_untouched_stub_is_not_attempted() -> None:
    def stub(n, prefix):
        raise NotImplementedError

    assert check_prefix_lm_mask(stub).status == "not attempted"
