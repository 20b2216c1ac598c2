"""qkv.norms: the teaching LayerNorm and RMSNorm equal PyTorch's modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qkv.norms import LayerNorm, RMSNorm


@pytest.mark.parametrize("shape", [(3, 7, 37), (5, 37), (37,), (2, 1, 1, 37)])
def test_layer_norm_equals_torch(shape, device):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(*shape, generator=g) * 3 + 5).to(device)  # far from mean 0, variance 1
    ours, theirs = LayerNorm(37, eps=1e-5).to(device), nn.LayerNorm(37, eps=1e-5).to(device)
    with torch.no_grad():  # a non-trivial gain and bias, copied to both
        theirs.weight.copy_(torch.randn(37, generator=g).to(device))
        theirs.bias.copy_(torch.randn(37, generator=g).to(device))
    ours.load_state_dict(theirs.state_dict())
    before = x.clone()
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    assert torch.equal(x, before)


@pytest.mark.skipif(not hasattr(nn, "RMSNorm"), reason="torch.nn.RMSNorm needs torch >= 2.4")
@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_rms_norm_equals_torch(eps, device):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 7, 37, generator=g) + 2).to(device)
    ours, theirs = RMSNorm(37, eps=eps).to(device), nn.RMSNorm(37, eps=eps).to(device)
    with torch.no_grad():
        theirs.weight.copy_(torch.randn(37, generator=g).to(device))
    ours.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_rms_norm_does_not_centre_and_layer_norm_does():
    x = torch.randn(4, 9) + 10.0
    assert LayerNorm(9)(x).mean(-1).abs().max() < 1e-5
    assert (RMSNorm(9)(x).mean(-1) > 0.9).all()  # a shifted token stays shifted


def test_gradients_flow_to_the_gain_and_bias():
    norm = LayerNorm(5)
    norm(torch.randn(2, 5)).pow(2).sum().backward()
    assert norm.weight.grad is not None and norm.bias.grad is not None


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
def test_bad_input_is_named(cls):
    norm = cls(8)
    with pytest.raises(ValueError, match=r"d_model=8"):
        norm(torch.randn(3, 7))
    with pytest.raises(TypeError, match="floating-point"):
        norm(torch.ones(3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="d_model must be >= 1"):
        cls(0)
    with pytest.raises(ValueError, match="eps must be"):
        cls(8, eps=-1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("ours", "theirs"), [(LayerNorm, nn.LayerNorm), (RMSNorm, nn.RMSNorm)])
def test_half_precision_normalises_in_float32_like_torch(dtype, ours, theirs):
    # |x| up to 2000: in float16, x^2 passes 65504 once |x| > 256 and overflows
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)) * 1000
    mine = ours(64).to(dtype)(x.to(dtype))
    ref = theirs(64, eps=mine_eps(ours)).to(dtype)(x.to(dtype))
    exact = theirs(64, eps=mine_eps(ours))(x)  # float32
    assert mine.dtype == dtype and torch.isfinite(mine).all()
    error, torch_error = ((y.float() - exact).abs().max().item() for y in (mine, ref))
    assert error <= 2 * torch_error + 1e-2, (error, torch_error)


def mine_eps(cls):
    return cls(1).eps


def test_eps_accepts_numpy_scalars():
    import numpy as np

    assert LayerNorm(4, eps=np.float32(1e-5)).eps == pytest.approx(1e-5)
    assert RMSNorm(4, eps=np.float64(1e-6)).eps == 1e-6
