"""qkv.experiments.q01_what_is_attention: Nadaraya–Watson as attention equals the kernel
formula; other weights with the same output; weight vs contribution."""

import pytest
import torch

from qkv.experiments.q01_what_is_attention import (
    SIGMAS,
    bandwidth_errors,
    nadaraya_watson,
    noisy_sine,
    same_output_experiment,
    same_output_weights,
    top_weight_is_not_top_contributor,
)


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
    assert a == b and a != c and set(a) == set(SIGMAS)
    data = noisy_sine(9, 11, generator=4)
    assert data.x_train.shape == (9,) and data.truth.shape == (11,)
    assert torch.all(data.x_train[1:] >= data.x_train[:-1])  # sorted keys


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_output_weights_give_the_same_output(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(7, 2, generator=g)  # m = 7 > d_v + 1 = 3
    alpha = torch.softmax(torch.randn(7, generator=g), dim=0)
    other = same_output_weights(alpha, values)
    torch.testing.assert_close(other @ values, alpha @ values, atol=1e-5, rtol=0)
    assert (other > 0).all() and torch.isclose(other.sum(), torch.tensor(1.0))
    assert (other - alpha).abs().sum() > 0.1


def test_same_output_weights_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="need more keys than d_v"):
        same_output_weights(torch.full((3,), 1 / 3), torch.randn(3, 2))
    with pytest.raises(ValueError, match=r"expected alpha \(m,\) and values \(m, d_v\)"):
        same_output_weights(torch.full((5,), 0.2), torch.randn(4, 2))


def test_same_output_experiment_is_seeded() -> None:
    a, b = same_output_experiment(3), same_output_experiment(3)
    assert torch.equal(a.other, b.other) and 0 < a.distance <= 1
    torch.testing.assert_close(a.other @ a.values, a.output, atol=1e-5, rtol=0)


def test_top_weight_share_matches_a_brute_force_count() -> None:
    seed, n, m, d = 5, 40, 6, 3
    share = top_weight_is_not_top_contributor(seed, n_queries=n, m=m, d=d)
    g = torch.Generator().manual_seed(seed)  # redraw the same tensors
    q, k = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g)
    v = torch.randn(m, d, generator=g) * torch.exp(torch.randn(m, 1, generator=g))
    differ = 0
    for i in range(n):  # one query at a time, softmax written out
        scores = [float(q[i] @ k[j]) / d**0.5 for j in range(m)]
        weights = torch.softmax(torch.tensor(scores), 0)
        contributions = [float(weights[j] * v[j].norm()) for j in range(m)]
        differ += int(weights.argmax()) != max(range(m), key=contributions.__getitem__)
    assert share == pytest.approx(differ / n)
