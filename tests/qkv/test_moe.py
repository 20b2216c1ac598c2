"""qkv.moe: routing against a loop, capacity, the balancing loss, and clear errors."""

from __future__ import annotations

import pytest
import torch

from qkv.moe import MoEFeedForward, Routing, load_balancing_loss


def _loop(layer: MoEFeedForward, x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        logits = layer.router(x[t])
        top, chosen = logits.topk(layer.top_k)
        weights = top.softmax(-1) if layer.renormalize else logits.softmax(-1)[chosen]
        for w, e in zip(weights, chosen.tolist(), strict=True):
            out[t] += w * layer.experts[e](x[t])
    return out


@pytest.mark.parametrize(("top_k", "renormalize"), [(1, False), (1, True), (2, True), (3, False)])
def test_dispatch_equals_a_loop_over_tokens(top_k, renormalize) -> None:
    torch.manual_seed(0)
    layer = MoEFeedForward(6, 10, 4, top_k, renormalize=renormalize).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    with torch.no_grad():
        out, routing = layer(x)
        expected = _loop(layer, x.reshape(-1, 6)).reshape(x.shape)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert routing.experts.shape == (18, top_k) and not routing.dropped.any()


def test_capacity_drops_the_late_tokens_of_a_full_expert() -> None:
    torch.manual_seed(0)
    layer = MoEFeedForward(4, 8, 2, top_k=1, capacity_factor=0.5)
    with torch.no_grad():
        layer.router.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))
        x = torch.zeros(8, 4)
        x[:, 0] = 1.0  # every token prefers expert 0; capacity = ceil(0.5 * 8 / 2) = 2
        out, routing = layer(x)
    assert routing.dropped[:, 0].tolist() == [False, False] + [True] * 6
    assert (out[2:] == 0).all() and (out[:2] != 0).any()


def test_balancing_loss_is_one_when_uniform_and_e_when_collapsed() -> None:
    probs = torch.full((8, 4), 0.25)
    uniform = Routing(probs, torch.arange(8)[:, None] % 4, probs[:, :1], torch.zeros(8, 1).bool())
    collapsed_probs = torch.eye(4)[[0] * 8]
    collapsed = Routing(
        collapsed_probs,
        torch.zeros(8, 1, dtype=torch.long),
        torch.ones(8, 1),
        torch.zeros(8, 1).bool(),
    )
    assert load_balancing_loss(uniform).item() == pytest.approx(1.0)
    assert load_balancing_loss(collapsed).item() == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 5}, "top_k must be at most"),
        ({"top_k": 0}, "top_k"),
        ({"capacity_factor": 0.0}, "capacity_factor"),
        ({"capacity_factor": -1.0}, "capacity_factor"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        MoEFeedForward(4, 8, 4, **kwargs)


def test_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match=r"d_model=4"):
        MoEFeedForward(4, 8, 2)(torch.randn(3, 5))
