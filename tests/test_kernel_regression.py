"""qkv.kernel_regression: Nadaraya–Watson as attention equals the kernel formula."""

import pytest
import torch

from qkv.kernel_regression import bandwidth_errors, nadaraya_watson, noisy_sine


@pytest.mark.parametrize("sigma", [0.2, 0.7, 1.9])
def test_attention_form_equals_the_kernel_formula(sigma: float) -> None:
    g = torch.Generator().manual_seed(3)
    x_train, y_train = torch.rand(13, generator=g) * 5, torch.randn(13, generator=g)
    x_query = torch.rand(7, generator=g) * 5
    pred, weights = nadaraya_watson(x_query, x_train, y_train, sigma)
    diff = x_query.double()[:, None] - x_train.double()[None, :]  # (7, 13)
    kernel = torch.exp(-(diff**2) / (2 * sigma**2))
    reference = (kernel @ y_train.double()) / kernel.sum(1)  # brute-force kernel ratio
    assert pred.shape == (7,) and weights.shape == (7, 13)
    torch.testing.assert_close(pred.double(), reference, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(7))


def test_bad_inputs_are_named() -> None:
    x = torch.rand(5)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        nadaraya_watson(x, x, x, 0.0)
    with pytest.raises(ValueError, match=r"expected x_query \(n,\), x_train \(m,\)"):
        nadaraya_watson(x, x, torch.rand(4), 1.0)


def test_the_experiment_is_a_function_of_the_seed() -> None:
    a, b, c = bandwidth_errors(4), bandwidth_errors(4), bandwidth_errors(5)
    assert a == b and a != c and set(a) == {0.1, 0.3, 1.0}
    data = noisy_sine(9, 11, generator=4)
    assert data.x_train.shape == (9,) and data.truth.shape == (11,)
    assert torch.all(data.x_train[1:] >= data.x_train[:-1])  # sorted keys
