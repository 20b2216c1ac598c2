"""The Q1 checker: Nadaraya–Watson regression as attention."""

from __future__ import annotations

import pytest
import torch

from qkv.attention import scaled_dot_product_attention
from qkv.exercises.q01_what_is_attention import check_nadaraya_watson


def as_attention(x_query, x_train, y_train, bandwidth):
    """The chapter's solution: one call of scaled dot-product attention."""
    q = torch.cat([x_query, torch.ones_like(x_query[:, :1])], dim=-1)  # (n, d + 1)
    k = torch.cat([x_train, -(x_train**2).sum(-1, keepdim=True) / 2], dim=-1)  # (m, d + 1)
    return scaled_dot_product_attention(q, k, y_train, scale=bandwidth**-2)


def with_softmax(x_query, x_train, y_train, bandwidth):
    squared = ((x_query[:, None, :] - x_train[None, :, :]) ** 2).sum(-1)  # (n, m)
    return torch.softmax(-squared / (2 * bandwidth**2), dim=-1) @ y_train


def kernel_ratio(x_query, x_train, y_train, bandwidth):
    """The textbook formula written out: exp underflows to 0 far from the data, then 0/0."""
    squared = ((x_query[:, None, :] - x_train[None, :, :]) ** 2).sum(-1)
    kernel = torch.exp(-squared / (2 * bandwidth**2))
    return kernel @ y_train / kernel.sum(-1, keepdim=True)


def no_factor_two(x_query, x_train, y_train, bandwidth):
    squared = ((x_query[:, None, :] - x_train[None, :, :]) ** 2).sum(-1)
    return torch.softmax(-squared / bandwidth**2, dim=-1) @ y_train


def plain_dot_product(x_query, x_train, y_train, bandwidth):
    """Forgets the -|x_i|^2 / 2 term of the keys: not a distance any more."""
    return scaled_dot_product_attention(x_query, x_train, y_train, scale=bandwidth**-2)


def softmax_over_queries(x_query, x_train, y_train, bandwidth):
    squared = ((x_query[:, None, :] - x_train[None, :, :]) ** 2).sum(-1)
    return torch.softmax(-squared / (2 * bandwidth**2), dim=0) @ y_train


@pytest.mark.parametrize("solution", [as_attention, with_softmax])
def test_correct_solutions_pass(solution) -> None:
    verdict = check_nadaraya_watson(solution)
    assert verdict.passed, verdict
    assert "All 5 checks" in verdict.detail


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (kernel_ratio, "contains NaN"),  # right on benign inputs, 0/0 far from the data
        (no_factor_two, "expected"),
        (plain_dot_product, "expected"),
        (softmax_over_queries, "expected"),
        (lambda xq, xt, yt, s: with_softmax(xq, xt, yt, s)[:, 0], "expected shape"),
        (lambda xq, xt, yt, s: with_softmax(xq, xt, yt, s).double(), "expected dtype"),
    ],
)
def test_wrong_answers_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_nadaraya_watson(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail


def test_the_kernel_ratio_passes_every_case_but_the_far_query() -> None:
    verdict = check_nadaraya_watson(kernel_ratio)
    assert "a query +10 on every axis" in verdict.detail and "far from the data" in verdict.detail
