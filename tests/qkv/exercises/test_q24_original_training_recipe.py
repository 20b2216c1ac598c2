"""The Q24 checker: the label-smoothed loss, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q24_original_training_recipe import check_label_smoothed_loss


def reference(logits, target, epsilon):
    keep = target != -100
    log_p = logits[keep].log_softmax(dim=-1)
    nll = -log_p.gather(1, target[keep][:, None]).squeeze(1)
    return ((1 - epsilon) * nll - epsilon * log_p.mean(dim=-1)).mean()


def test_reference_passes():
    verdict = check_label_smoothed_loss(reference)
    assert verdict.passed, verdict


def _over_v_minus_one(logits, target, epsilon):  # epsilon spread over the V - 1 wrong classes
    keep = target != -100
    log_p = logits[keep].log_softmax(dim=-1)
    q = torch.full_like(log_p, epsilon / (logits.shape[1] - 1))
    q.scatter_(1, target[keep][:, None], 1 - epsilon)
    return -(q * log_p).sum(-1).mean()


def _log_of_softmax(logits, target, epsilon):  # overflows to -inf for large logits
    return reference(logits.softmax(-1).log(), target, epsilon)


def _ignores_nothing(logits, target, epsilon):
    return reference(logits, target.clamp(min=0), epsilon)


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (_over_v_minus_one, "V=11"),
        (_log_of_softmax, "NaN or infinity"),
        (_ignores_nothing, "-100"),
        (lambda logits, target, eps: reference(logits, target, eps) * len(target), "at index"),
        (lambda logits, target, eps: reference(logits, target, 0.0), "epsilon=0.1"),
    ],
)
def test_wrong_losses_fail_with_a_counter_example(wrong, expected):
    verdict = check_label_smoothed_loss(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_untouched_stub_is_not_attempted():
    def stub(logits, target, epsilon):
        raise NotImplementedError

    assert check_label_smoothed_loss(stub).status == "not attempted"
