"""The Q22 checker: LayerNorm by hand, right and wrong."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qkv.exercises.q22_residual_layernorm import check_layer_norm


def reference(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def test_reference_and_torch_pass():
    assert check_layer_norm(reference).passed
    verdict = check_layer_norm(lambda x, w, b, eps: F.layer_norm(x, x.shape[-1:], w, b, eps))
    assert verdict.passed, verdict


def _unbiased(x, w, b, eps):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * w + b


def _eps_outside(x, w, b, eps):
    std = x.var(-1, unbiased=False, keepdim=True).sqrt()
    return (x - x.mean(-1, keepdim=True)) / (std + eps) * w + b


def _first_axis(x, w, b, eps):  # normalises each feature over the tokens: BatchNorm's axis
    mean, var = x.mean(0, keepdim=True), x.var(0, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _in_place(x, w, b, eps):
    x -= x.mean(-1, keepdim=True)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w + b


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (_unbiased, "at index"),
        (_eps_outside, "a large eps"),
        (_first_axis, "at index"),
        (lambda x, w, b, eps: F.layer_norm(x, x.shape[-1:], eps=eps), "at index"),  # no gain/bias
        (_in_place, "in place"),
        (lambda x, w, b, eps: reference(x, w, b, eps).float(), "dtype"),
    ],
)
def test_wrong_layer_norms_fail_with_a_counter_example(wrong, expected):
    verdict = check_layer_norm(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_untouched_stub_is_not_attempted():
    def stub(x, weight, bias, eps):
        raise NotImplementedError

    assert check_layer_norm(stub).status == "not attempted"
