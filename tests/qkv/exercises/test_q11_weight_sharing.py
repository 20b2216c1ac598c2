"""The Q11 checker: the gradient of a tied embedding matrix, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises import check_tied_gradient


def reference(ids, grad_embedded, hidden, grad_logits):
    return (grad_logits.T @ hidden).index_add(0, ids, grad_embedded)


def test_reference_passes() -> None:
    verdict = check_tied_gradient(reference)
    assert verdict.passed, verdict


def test_untouched_stub_is_not_attempted() -> None:
    def stub(ids, grad_embedded, hidden, grad_logits):
        raise NotImplementedError

    assert check_tied_gradient(stub).status == "not attempted"


def _assignment(ids, grad_embedded, hidden, grad_logits):
    grad = grad_logits.T @ hidden
    grad[ids] += grad_embedded  # repeated ids: only one of the additions survives
    return grad


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # only the output layer's use
        (lambda ids, ge, h, gl: gl.T @ h, "at index"),
        # only the embedding's use
        (lambda ids, ge, h, gl: torch.zeros_like(gl.T @ h).index_add(0, ids, ge), "at index"),
        # indexed assignment loses repeated ids
        (_assignment, "repeated ids"),
        # the mean of the two uses instead of the sum
        (lambda ids, ge, h, gl: reference(ids, ge, h, gl) / 2, "at index"),
        # transposed: (d_model, V)
        (lambda ids, ge, h, gl: h.T @ gl, "expected shape"),
    ],
)
def test_wrong_gradients_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_tied_gradient(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail
