"""qkv.experiments.q10_multi_head_dimensions: the neighbour task against a brute-force loop,
and the seeded run."""

import pytest
import torch

from qkv.attention import MultiHeadAttention
from qkv.experiments.q10_multi_head_dimensions import (
    neighbour_batch,
    neighbour_mse,
    train_neighbour_heads,
)


def test_neighbour_batch_matches_a_loop():
    L, V = 7, 5
    x, target = neighbour_batch(3, torch.Generator().manual_seed(0), L=L, V=V)
    assert x.shape == (3, L, V + L) and target.shape == (3, L, 2 * V)
    for b in range(3):
        content = x[b, :, :V].argmax(-1)
        for t in range(L):
            assert torch.equal(x[b, t, V:], torch.eye(L)[t])  # one-hot position
            assert target[b, t, :V].argmax() == content[(t - 1) % L]
            assert target[b, t, V:].argmax() == content[(t + 1) % L]
    assert torch.equal(x.sum(-1), torch.full((3, L), 2.0)) and torch.equal(
        target.sum(-1), torch.full((3, L), 2.0)
    )


def test_neighbour_mse_is_the_mean_squared_error():
    x, target = neighbour_batch(4, torch.Generator().manual_seed(1), L=5, V=5)
    layer = MultiHeadAttention(10, 2)
    with torch.no_grad():
        expected = ((layer(x)[0] - target) ** 2).mean()
        assert neighbour_mse(layer, (x, target)).item() == pytest.approx(expected.item(), rel=1e-6)


def test_train_neighbour_heads_is_seeded(device):
    first = train_neighbour_heads(2, seed=3, steps=4, L=5, device=device)
    again = train_neighbour_heads(2, seed=3, steps=4, L=5, device=device)
    other = train_neighbour_heads(2, seed=4, steps=4, L=5, device=device)
    assert first.history.loss == again.history.loss and first.held_out_mse == again.held_out_mse
    assert first.history.loss != other.history.loss
    assert first.model.n_heads == 2 and first.model.d_model == 10


def test_two_heads_beat_one_head():
    one = train_neighbour_heads(1, seed=0, steps=150, L=5).held_out_mse
    two = train_neighbour_heads(2, seed=0, steps=150, L=5).held_out_mse
    assert two < one / 5


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: neighbour_batch(0, torch.Generator()), ValueError, "size must be >= 1"),
        (lambda: neighbour_batch(2, 0), TypeError, "generator must be a torch.Generator"),
        (lambda: train_neighbour_heads(0), ValueError, "n_heads must be >= 1"),
        (lambda: train_neighbour_heads(1, L=1), ValueError, "L must be >= 2"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_neighbour_weights_reads_the_attention_on_each_neighbour():
    from qkv.experiments.q10_multi_head_dimensions import neighbour_weights

    run = train_neighbour_heads(2, seed=1, steps=3, L=5, device="cpu")
    w = neighbour_weights(run, seed=1)
    assert w["left"].shape == w["right"].shape == w["left_std"].shape == (2,)
    assert ((w["left"] + w["right"]) <= 1 + 1e-6).all() and (w["left_std"] >= 0).all()
    x, target = neighbour_batch(512, torch.Generator().manual_seed(10_001), L=5, V=5)
    with torch.no_grad():
        _, weights = run.model(x, need_weights=True)
    left_loop = sum(weights[b, 0, t, (t - 1) % 5] for b in range(512) for t in range(5)) / 2560
    assert abs(left_loop.item() - w["left"][0].item()) < 1e-5
