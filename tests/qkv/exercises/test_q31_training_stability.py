"""The Q31 checker: soft-capping, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q31_training_stability import check_soft_cap


def test_the_reference_passes() -> None:
    verdict = check_soft_cap(lambda logits, cap: cap * torch.tanh(logits / cap))
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # a hard clamp: bounded, but flat beyond the cap
        (lambda logits, cap: logits.clamp(-cap, cap), "cap"),
        # tanh without the scaling back: squashes every logit into (-1, 1)
        (lambda logits, cap: torch.tanh(logits / cap), "cap"),
        # scale forgotten inside: tanh(x) * cap distorts small logits
        (lambda logits, cap: cap * torch.tanh(logits), "cap"),
        # logits divided by the cap: shrinks, does not cap
        (lambda logits, cap: logits / cap, "cap"),
    ],
)
def test_wrong_caps_fail(wrong, expected) -> None:
    verdict = check_soft_cap(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_the_untouched_stub_is_not_attempted() -> None:
    def stub(logits, cap):
        raise NotImplementedError

    assert check_soft_cap(stub).status == "not attempted"
