"""qkv.explanation: other weights with the same output; weight vs contribution."""

import pytest
import torch

from qkv.explanation import (
    same_output_experiment,
    same_output_weights,
    top_weight_is_not_top_contributor,
)


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
