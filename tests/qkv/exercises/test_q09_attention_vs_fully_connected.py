"""The Q9 checker: a layer's token-mixing matrix from its Jacobian."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises.q09_attention_vs_fully_connected import check_token_mixing_matrix


def with_autograd(layer, x):
    jacobian = torch.autograd.functional.jacobian(layer, x, vectorize=True)  # (L, d, L, d)
    return jacobian.permute(0, 2, 1, 3).flatten(2).norm(dim=-1)  # (L, L)


def with_torch_func(layer, x):
    jacobian = torch.func.jacrev(layer)(x)  # (L, d, L, d)
    return torch.linalg.matrix_norm(jacobian.transpose(1, 2))  # Frobenius over the (d, d) blocks


def transposed(layer, x):  # inputs as rows: dy_j/dx_i
    return with_autograd(layer, x).T


def signed_sum(layer, x):  # sums the block instead of taking its norm: entries cancel
    jacobian = torch.autograd.functional.jacobian(layer, x, vectorize=True)
    return jacobian.sum(dim=(1, 3))


def block_trace(layer, x):  # only the diagonal of each block
    jacobian = torch.autograd.functional.jacobian(layer, x, vectorize=True)  # (L, d, L, d)
    return jacobian.diagonal(dim1=1, dim2=3).abs().sum(-1)


@pytest.mark.parametrize("solution", [with_autograd, with_torch_func])
def test_correct_solutions_pass(solution) -> None:
    verdict = check_token_mixing_matrix(solution)
    assert verdict.passed, verdict
    assert "All 12 checks" in verdict.detail


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (transposed, "FC token mixer"),  # the first case already has a non-symmetric matrix
        (signed_sum, "expected"),
        (block_trace, "expected"),
        (lambda layer, x: with_autograd(layer, x).float(), "expected dtype torch.float64"),
        (lambda layer, x: with_autograd(layer, x)[:-1], "expected shape"),
    ],
)
def test_wrong_answers_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_token_mixing_matrix(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail


def test_the_causal_case_catches_a_transpose_of_attention_only() -> None:
    def transposed_unless_linear(layer, x):
        m = with_autograd(layer, x)
        linear = torch.allclose(layer(2 * x), 2 * layer(x))  # the FC mixer: leave it right
        return m if linear else m.T

    verdict = check_token_mixing_matrix(transposed_unless_linear)
    assert verdict.status == "failed" and "self-attention" in verdict.detail
