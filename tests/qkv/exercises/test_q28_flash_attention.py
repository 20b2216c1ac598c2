"""The Q28 checker: merging partial attention results, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q28_flash_attention import check_merge_partials


def reference(o1, l1, o2, l2):
    lse = torch.logaddexp(l1, l2)
    return torch.exp(l1 - lse)[:, None] * o1 + torch.exp(l2 - lse)[:, None] * o2, lse


def test_the_reference_passes() -> None:
    verdict = check_merge_partials(reference)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # plain average of the two outputs: ignores how much weight each chunk holds
        (lambda o1, l1, o2, l2: ((o1 + o2) / 2, torch.logaddexp(l1, l2)), "output"),
        # each output weighted by the other chunk's share
        (lambda o1, l1, o2, l2: reference(o2, l1, o1, l2), "output"),
        # the running max instead of the log-sum-exp as the merged statistic
        (lambda o1, l1, o2, l2: (reference(o1, l1, o2, l2)[0], torch.maximum(l1, l2)), "lse"),
        # weights exp(lse) not normalised
        (
            lambda o1, l1, o2, l2: (
                torch.exp(l1)[:, None] * o1 + torch.exp(l2)[:, None] * o2,
                torch.logaddexp(l1, l2),
            ),
            "output",
        ),
        # only the output returned
        (lambda o1, l1, o2, l2: reference(o1, l1, o2, l2)[0], "pair"),
    ],
)
def test_wrong_merges_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_merge_partials(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_the_untouched_stub_is_not_attempted() -> None:
    def stub(o1, l1, o2, l2):
        raise NotImplementedError

    assert check_merge_partials(stub).status == "not attempted"
