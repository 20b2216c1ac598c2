"""The Q33 checker: the load-balancing loss, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q33_mixture_of_experts import check_load_balancing_loss


def share(experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    return torch.bincount(experts.flatten(), minlength=n_experts).float() / experts.numel()


def reference(probs, experts):
    n_experts = probs.shape[-1]
    return n_experts * (share(experts, n_experts) * probs.mean(dim=0)).sum()


def test_the_reference_passes() -> None:
    verdict = check_load_balancing_loss(reference)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # the factor E forgotten
        (lambda probs, experts: reference(probs, experts) / probs.shape[-1], "tokens"),
        # f counted per token, not per assignment: wrong for top-2
        (
            lambda probs, experts: (
                probs.shape[-1]
                * (
                    torch.bincount(experts.flatten(), minlength=probs.shape[-1]).float()
                    / experts.shape[0]
                    * probs.mean(0)
                ).sum()
            ),
            "top-2",
        ),
        # P used in place of f: E * sum P_i^2, no dispatch information
        (lambda probs, experts: probs.shape[-1] * (probs.mean(0) ** 2).sum(), "tokens"),
        # f only: not differentiable in the router probabilities
        (
            lambda probs, experts: (
                probs.shape[-1] * (share(experts, probs.shape[-1]) ** 2).sum() + 0 * probs.sum()
            ),
            "tokens",
        ),
        # only each token's first choice counted: wrong for top-2
        (lambda probs, experts: reference(probs, experts[:, :1]), "top-2"),
    ],
)
def test_wrong_losses_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_load_balancing_loss(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_the_untouched_stub_is_not_attempted() -> None:
    def stub(probs, experts):
        raise NotImplementedError

    assert check_load_balancing_loss(stub).status == "not attempted"
