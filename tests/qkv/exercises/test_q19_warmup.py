"""The Q19 checker: one Adam update, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q19_warmup import check_adam_step


def reference(param, grad, m, v, step, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v


def test_reference_passes():
    verdict = check_adam_step(reference)
    assert verdict.passed, verdict


def _no_bias_correction(param, grad, m, v, step, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    return param - lr * m / (v.sqrt() + eps), m, v


def _eps_inside(param, grad, m, v, step, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
    return param - lr * m_hat / (v_hat + eps).sqrt(), m, v


def _in_place(param, grad, m, v, step, lr, beta1, beta2, eps):
    m.mul_(beta1).add_((1 - beta1) * grad)
    v.mul_(beta2).add_((1 - beta2) * grad * grad)
    return reference(param, grad, m * 0, v * 0, 1, lr, beta1, beta2, eps)[0], m, v


def _sign_descent(param, grad, m, v, step, lr, beta1, beta2, eps):  # right only at step 1
    return param - lr * torch.sign(grad), m, v


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (_no_bias_correction, "update at step 1"),
        (_eps_inside, "update at step 1"),
        (_in_place, "in place"),
        (_sign_descent, "size 1e-09"),
        (lambda *a: a[0], "tuple"),
    ],
)
def test_wrong_updates_fail_with_a_counter_example(wrong, expected):
    verdict = check_adam_step(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_untouched_stub_is_not_attempted():
    def stub(param, grad, m, v, step, lr, beta1, beta2, eps):
        raise NotImplementedError

    assert check_adam_step(stub).status == "not attempted"
