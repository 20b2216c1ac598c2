"""The Q14 checker: the decoder self-attention mask, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q14_encoder_decoder_masks import check_decoder_self_mask


def causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()  # (n, n): key j <= query i


def padding(lengths: torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n) < lengths[:, None]  # (B, n): True = real token


def reference(lengths: torch.Tensor, n: int) -> torch.Tensor:
    return (causal(n) & padding(lengths, n)[:, None, :])[:, None]  # (B, 1, n, n)


def test_the_reference_passes() -> None:
    verdict = check_decoder_self_mask(reference)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # causal only: the target padding is forgotten
        (lambda lengths, n: causal(n).expand(len(lengths), 1, n, n), "lengths="),
        # padding only: the decoder sees the future
        (lambda lengths, n: padding(lengths, n)[:, None, None, :].expand(-1, 1, n, n), "lengths="),
        # padding applied to the queries instead of the keys
        (lambda lengths, n: (causal(n) & padding(lengths, n)[:, :, None])[:, None], "lengths="),
        # padded length taken as max(lengths): wrong shape when no sequence fills n
        (lambda lengths, n: reference(lengths, int(lengths.max())), "expected shape"),
        # the diagonal excluded: a token may not see itself
        (lambda lengths, n: reference(lengths, n) & ~torch.eye(n, dtype=torch.bool), "lengths="),
    ],
)
def test_wrong_masks_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_decoder_self_mask(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_the_untouched_stub_is_not_attempted() -> None:
    def stub(lengths, n):
        raise NotImplementedError

    assert check_decoder_self_mask(stub).status == "not attempted"
