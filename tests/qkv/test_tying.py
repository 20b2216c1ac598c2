"""Tests for qkv.tying: shared storage, parameter count, gradient of the tied matrix."""

import copy

import pytest
import torch
from torch import nn

from qkv.tying import count_parameters, tie

V, D = 99, 36


class TinyLM(nn.Module):
    """Embedding -> one nonlinear layer -> output projection (tied or not)."""

    def __init__(self, tied: bool):
        super().__init__()
        self.embedding = nn.Embedding(V, D)
        self.hidden = nn.Linear(D, D)
        self.head = nn.Linear(D, V)
        if tied:
            tie(self.embedding, self.head)

    def forward(self, ids):
        # (B, L) -> (B, L, d_model) -> (B, L, V)
        return self.head(torch.tanh(self.hidden(self.embedding(ids))))


def test_tie_shares_storage():
    model = TinyLM(tied=True)
    assert model.head.weight is model.embedding.weight
    assert model.head.weight.data_ptr() == model.embedding.weight.data_ptr()
    # a change through one use is seen by the other
    with torch.no_grad():
        model.embedding.weight[3, 5] = 7.0
    assert model.head.weight[3, 5].item() == 7.0
    assert tie(nn.Embedding(5, 3), lin := nn.Linear(3, 5)) is lin


def test_parameter_saving_is_v_times_d():
    torch.manual_seed(0)
    untied, tied = count_parameters(TinyLM(False)), count_parameters(TinyLM(True))
    assert untied - tied == V * D
    # against a count by hand: embedding V*D, hidden D*D + D, head V*D + V
    assert untied == V * D + D * D + D + V * D + V


def test_count_parameters_dedupes_views_and_filters_trainable():
    shared = nn.Parameter(torch.zeros(4, 5))
    a, b = nn.Module(), nn.Module()
    a.w = shared
    b.w = nn.Parameter(shared.data)  # another Parameter object, same memory
    parent = nn.ModuleList([a, b])
    assert count_parameters(parent) == 20
    frozen = nn.Linear(3, 2)
    frozen.bias.requires_grad_(False)
    assert count_parameters(frozen) == 8
    assert count_parameters(frozen, trainable_only=True) == 6


def test_count_parameters_on_meta_device():
    with torch.device("meta"):
        untied, tied = TinyLM(False), TinyLM(True)
    assert count_parameters(untied) - count_parameters(tied) == V * D


@pytest.mark.parametrize("seed", [0, 1])
def test_tied_gradient_is_sum_of_both_uses(device, seed):
    torch.manual_seed(seed)
    untied = TinyLM(tied=False).to(device)
    with torch.no_grad():
        untied.head.weight.copy_(untied.embedding.weight)
    tied = copy.deepcopy(untied)
    tie(tied.embedding, tied.head)
    ids = torch.randint(V, (3, 7), generator=torch.Generator().manual_seed(seed)).to(device)
    targets = torch.roll(ids, -1, dims=1)

    for model in (untied, tied):
        logits = model(ids)
        nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)).backward()

    # both forward passes computed the same function, so the losses' gradients agree
    expected = untied.embedding.weight.grad + untied.head.weight.grad
    assert untied.embedding.weight.grad.abs().sum() > 0
    assert untied.head.weight.grad.abs().sum() > 0
    torch.testing.assert_close(tied.head.weight.grad, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("embedding", "linear", "error", "match"),
    [
        (nn.Embedding(V, D), nn.Linear(V, D), ValueError, r"nn.Linear\(36, 99\)"),
        (nn.Embedding(V, D), nn.Linear(D, V + 1), ValueError, r"got \(100, 36\)"),
        (nn.Linear(D, V), nn.Linear(D, V), TypeError, "embedding must be an nn.Embedding"),
        (nn.Embedding(V, D), nn.Embedding(V, D), TypeError, "linear must be an nn.Linear"),
    ],
)
def test_tie_bad_input(embedding, linear, error, match):
    with pytest.raises(error, match=match):
        tie(embedding, linear)


def test_count_parameters_bad_input():
    with pytest.raises(TypeError, match="module must be an nn.Module"):
        count_parameters(torch.zeros(3))
