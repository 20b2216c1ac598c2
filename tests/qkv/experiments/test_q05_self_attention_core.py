"""qkv.experiments.q05_self_attention_core: the reach and gradient experiments are seeded
and measure what they say."""

import torch

from qkv.experiments.q05_self_attention_core import (
    attention_reach,
    gradient_summary,
    query_gradients,
    rnn_reach,
)


def test_query_gradients_match_a_finite_difference() -> None:
    d_k, m = 8, 5
    norms = query_gradients(3, d_k, n_queries=4, n_keys=m)
    assert set(norms) == {"unscaled", "scaled"} and norms["scaled"].shape == (4,)
    g = torch.Generator().manual_seed(3)  # redraw the same tensors, in float64
    q = torch.randn(4, 1, d_k, generator=g).double()
    k, v = torch.randn(2, 4, m, d_k, generator=g).double()
    readout = torch.randn(4, 1, d_k, generator=g).double()
    eps, scale = 1e-6, d_k**-0.5

    def loss(query: torch.Tensor) -> torch.Tensor:  # per query: (4,)
        weights = (query @ k.mT * scale).softmax(dim=-1)
        return (weights @ v * readout).sum(dim=(1, 2))

    grad = torch.zeros_like(q)
    for i in range(d_k):  # central differences, one coordinate at a time
        step = torch.zeros_like(q)
        step[..., i] = eps
        grad[..., i] = ((loss(q + step) - loss(q - step)) / (2 * eps))[:, None]
    torch.testing.assert_close(
        norms["scaled"].double(), grad.norm(dim=-1).flatten(), rtol=1e-4, atol=1e-6
    )
    summary = gradient_summary(norms)
    assert summary["median ratio"] > 0 and summary["mean ratio"] > 0


def test_reach_is_seeded_and_leaves_the_callers_state_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = attention_reach(2), attention_reach(2)
    assert torch.equal(a, b) and a.shape == (24,) and (a > 0).all()
    reach = rnn_reach(2, length=6, width=4)
    assert reach["default"].shape == (6,) and 0 < reach["spectral_radius"]
    assert torch.equal(torch.random.get_rng_state(), state)
