"""qkv.experiments.q12_scaling_sqrt_dk against independent references (torch's attention,
autograd, nn.LayerNorm, closed-form softmax gradients), with small odd sizes."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qkv.experiments.q12_scaling_sqrt_dk import (
    folding_gaps,
    init_logit_variance,
    logit_gradient,
    qk_norm_entropy,
    query_gradient,
    random_queries_keys,
    score_variance,
    softmax_sharpness,
)

SIZES = {"B": 3, "n": 5, "m": 7}


def test_draws_are_seeded_per_width_and_device_independent(device):
    q, k = random_queries_keys(12, seed=4, device=device, **SIZES)
    assert q.shape == (3, 5, 12) and k.shape == (3, 7, 12) and q.device.type == device.type
    q_cpu, k_cpu = random_queries_keys(12, seed=4, **SIZES)
    assert torch.equal(q.cpu(), q_cpu) and torch.equal(k.cpu(), k_cpu)
    assert not torch.equal(random_queries_keys(12, seed=5, **SIZES)[0], q_cpu)
    assert not torch.equal(random_queries_keys(13, seed=4, **SIZES)[0][..., :12], q_cpu)


def test_score_variance_matches_numpy_style_reference():
    q, k = random_queries_keys(9, seed=1, B=1, n=11, m=11)
    scores = torch.einsum("id,jd->ij", q[0].double(), k[0].double())
    expected = ((scores - scores.mean()) ** 2).sum() / (scores.numel() - 1)
    assert score_variance(9, seed=1, n=11) == pytest.approx(expected.item(), rel=1e-5)


def test_score_variance_is_about_d_k():
    assert score_variance(37, seed=0) == pytest.approx(37, rel=0.15)


def test_softmax_sharpness_matches_torch(device):
    q, k = random_queries_keys(10, seed=2, device=device, **SIZES)
    p = torch.softmax(0.3 * q @ k.transpose(-2, -1), dim=-1)
    peak, entropy = softmax_sharpness(10, 0.3, seed=2, device=device, **SIZES)
    assert peak == pytest.approx(p.amax(-1).mean().item(), rel=1e-5)
    assert entropy == pytest.approx((-(p * p.log()).sum(-1)).mean().item(), rel=1e-5)
    _, uniform = softmax_sharpness(10, 0.0, seed=2, device=device, **SIZES)
    assert uniform == pytest.approx(math.log(7), rel=1e-5)


def test_logit_gradient_matches_closed_form(device):
    scale = 0.7
    norm, bound = logit_gradient(6, scale, seed=3, device=device, **SIZES)
    q, k = random_queries_keys(6, seed=3, device=device, **SIZES)
    p = torch.softmax(scale * q @ k.transpose(-2, -1), dim=-1)
    upstream = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(3 * 100_003 + 6 + 1))
    upstream = upstream.to(device)
    ds = p * (upstream - (p * upstream).sum(-1, keepdim=True))  # (diag(p) - p p^T) dL/dp
    torch.testing.assert_close(norm, ds.norm(dim=-1), rtol=1e-4, atol=1e-6)
    assert norm.shape == bound.shape == (3, 5) and (norm <= bound + 1e-6).all()


def test_query_gradient_matches_torch_attention(device):
    norm = query_gradient(8, 0.5, seed=5, d_v=3, device=device, **SIZES)
    q, k = random_queries_keys(8, seed=5, device=device, **SIZES)
    gen = torch.Generator().manual_seed(5 * 100_003 + 8 + 2)
    v = torch.randn(3, 7, 3, generator=gen).to(device)
    upstream = torch.randn(3, 5, 3, generator=gen).to(device)
    q.requires_grad_()
    F.scaled_dot_product_attention(q, k, v, scale=0.5).backward(upstream)
    torch.testing.assert_close(norm, q.grad.norm(dim=-1), rtol=1e-4, atol=1e-6)


def test_qk_norm_entropy_matches_layer_norm_module(device):
    gain = 1.7
    ln = nn.LayerNorm(10, bias=False).to(device)
    with torch.no_grad():
        ln.weight.fill_(gain)
    q, k = random_queries_keys(10, seed=6, device=device, **SIZES)
    p = torch.softmax(ln(2.5 * q) @ ln(2.5 * k).transpose(-2, -1) / math.sqrt(10), dim=-1)
    expected = (-(p * p.log()).sum(-1)).mean().item()
    got = qk_norm_entropy(2.5, gain=gain, d_k=10, seed=6, device=device, **SIZES)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_qk_norm_removes_growth_and_the_gain_sharpens():
    plain = [qk_norm_entropy(g, seed=0).item() for g in (1, 3)]
    normed = [qk_norm_entropy(g, gain=1, seed=0).item() for g in (1, 3)]
    assert plain[1] < plain[0] - 1 and normed[0] == pytest.approx(normed[1], abs=1e-4)
    assert qk_norm_entropy(1, gain=3, seed=0).item() < normed[0] - 1
    growth = torch.tensor(1.0, requires_grad=True)
    gain = torch.tensor(1.0, requires_grad=True)
    d_growth, d_gain = torch.autograd.grad(
        qk_norm_entropy(growth, gain=gain, seed=0), (growth, gain)
    )
    assert abs(d_growth.item()) < 1e-3 and d_gain.item() < 0


def test_folding_gaps():
    gaps = folding_gaps(seed=0, d_model=11, d_k=5, B=2, L=3)
    assert gaps["folded"] < 1e-5 and gaps["dropped"] > 1e-3
    assert gaps["grad_ratio"] == pytest.approx(math.sqrt(5), rel=1e-4) and gaps["grad_error"] < 1e-5


def test_init_logit_variance_equals_folded_init():
    plain = init_logit_variance(13**-0.5, 13**-0.5, seed=2, d_model=13, d_k=9, n_tokens=50)
    t5 = init_logit_variance((13 * 9) ** -0.5, 13**-0.5, seed=2, d_model=13, d_k=9, n_tokens=50)
    assert t5 == pytest.approx(plain / 9, rel=1e-4)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: random_queries_keys(0, seed=0), ValueError, "d_k must be >= 1"),
        (lambda: random_queries_keys(4, seed=-1), ValueError, "seed must be >= 0"),
        (lambda: random_queries_keys(4.0, seed=0), TypeError, "d_k must be an int"),
        (lambda: folding_gaps(seed=0, L=0), ValueError, "L must be >= 1"),
        (lambda: init_logit_variance(1.0, 1.0, seed=0, d_k=0), ValueError, "d_k must be >= 1"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
