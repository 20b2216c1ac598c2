"""qkv.experiments.q09_attention_vs_fully_connected: the two token mixers against explicit
references, and the Jacobian mixing matrix against a brute-force finite-difference loop."""

import pytest
import torch
import torch.nn.functional as F

from qkv.experiments.q09_attention_vs_fully_connected import (
    AttentionTokenMixer,
    FCTokenMixer,
    jacobian_mixing_matrix,
    mixing_change,
    sharpening,
    toy_mixers,
)


def test_fc_mixer_matches_an_explicit_weighted_sum(device):
    mixer = FCTokenMixer(5).to(device)
    x = torch.randn(3, 5, 7, device=device)
    y, m = mixer(x)
    w, b = mixer.linear.weight, mixer.linear.bias
    expected = torch.stack([sum(w[i, j] * x[:, j] for j in range(5)) + b[i] for i in range(5)], 1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    assert m.shape == (3, 5, 5) and torch.equal(m[1], w)


def test_attention_mixer_matches_torch(device):
    mixer = AttentionTokenMixer(6).to(device)
    x = torch.randn(2, 9, 6, device=device)
    y, m = mixer(x)
    expected = F.scaled_dot_product_attention(x @ mixer.w_q, x @ mixer.w_k, x)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, m @ x, rtol=1e-5, atol=1e-5)


def test_jacobian_mixing_matrix_matches_finite_differences():
    torch.manual_seed(0)
    mixer = AttentionTokenMixer(4).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    eps = 1e-6
    expected = torch.zeros(5, 5, dtype=torch.float64)
    with torch.no_grad():
        for j in range(5):
            for a in range(4):
                step = torch.zeros_like(x)
                step[j, a] = eps
                dy = (mixer((x + step)[None])[0][0] - mixer((x - step)[None])[0][0]) / (2 * eps)
                expected[:, j] += dy[:, a] / 4  # d y_{i, a} / d x_{j, a}, averaged over a
    torch.testing.assert_close(jacobian_mixing_matrix(mixer, x), expected, rtol=1e-6, atol=1e-8)


def test_jacobian_of_the_fc_mixer_is_its_weight(device):
    mixer = FCTokenMixer(6).to(device)
    x = torch.randn(6, 3, device=device)
    torch.testing.assert_close(jacobian_mixing_matrix(mixer, x), mixer.linear.weight)


def test_toy_mixers_are_seeded_and_device_independent(device):
    a, b = toy_mixers(seed=2, device=device), toy_mixers(seed=2)
    assert torch.equal(a.x1.cpu(), b.x1) and torch.equal(a.attention.w_q.cpu(), b.attention.w_q)
    assert not torch.equal(toy_mixers(seed=3).x1, b.x1) and a.x1.shape == (1, 7, 12)


def test_experiments():
    change = mixing_change(1, L=5, d=6)
    assert change["FC"] < 1e-6 and change["attention"] > 1e-3
    assert sharpening(1, L=5, d=6) > 0 and sharpening(1, factor=1.0, L=5, d=6) == 0.0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: FCTokenMixer(0), ValueError, "L must be >= 1"),
        (lambda: FCTokenMixer(4)(torch.zeros(1, 5, 3)), ValueError, r"x must be \(B, L=4, d\)"),
        (lambda: AttentionTokenMixer(3)(torch.zeros(1, 5, 4)), ValueError, r"d=3"),
        (lambda: jacobian_mixing_matrix(FCTokenMixer(2), torch.zeros(1, 2, 3)), ValueError, "one"),
        (lambda: toy_mixers(seed=-1), ValueError, "seed must be >= 0"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
