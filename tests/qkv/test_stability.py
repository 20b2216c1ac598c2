"""qkv.stability: the Post-LN / Pre-LN stack and its per-layer gradient norms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qkv.layers import TransformerEncoderLayer
from qkv.stability import TransformerStack, layer_gradient_norms, next_token_loss


@pytest.mark.parametrize("norm_first", [False, True])
def test_stack_equals_a_loop_over_torch_layers(norm_first, device):
    """The stack is embeddings -> layers -> (final LN) -> output, as torch computes it."""
    torch.manual_seed(0)
    V, d, h, ff, n_layers, L = 23, 12, 3, 19, 3, 7
    model = TransformerStack(V, d, h, ff, n_layers, norm_first=norm_first).to(device).eval()
    ids = torch.randint(0, V, (2, L), device=device)
    torch_layers = []
    for layer in model.layers:
        ref = nn.TransformerEncoderLayer(
            d, h, ff, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first
        ).to(device)
        a, f = layer.self_attn, layer.ffn
        with torch.no_grad():
            ref.self_attn.in_proj_weight.copy_(
                torch.cat([a.w_q.weight, a.w_k.weight, a.w_v.weight])
            )
            ref.self_attn.in_proj_bias.copy_(torch.cat([a.w_q.bias, a.w_k.bias, a.w_v.bias]))
            ref.self_attn.out_proj.load_state_dict(a.w_o.state_dict())
            ref.linear1.load_state_dict(f.linear1.state_dict())
            ref.linear2.load_state_dict(f.linear2.state_dict())
            ref.norm1.load_state_dict(layer.norm1.state_dict())
            ref.norm2.load_state_dict(layer.norm2.state_dict())
        torch_layers.append(ref.eval())
    x = model.embed(ids) + model.pos(torch.arange(L, device=device))
    causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=device), 1)  # True = blocked
    for ref in torch_layers:
        x = ref(x, src_mask=causal)
    expected = model.output(model.final_norm(x))
    torch.testing.assert_close(model(ids), expected, atol=1e-5, rtol=1e-5)
    assert isinstance(model.final_norm, nn.LayerNorm) == norm_first


def test_stack_is_causal_and_uses_the_library_layer():
    torch.manual_seed(1)
    model = TransformerStack(11, 8, 2, 16, 2, norm_first=False).eval()
    assert all(isinstance(layer, TransformerEncoderLayer) for layer in model.layers)
    ids = torch.randint(0, 11, (3, 9))
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    torch.testing.assert_close(model(ids)[:, :5], model(changed)[:, :5])


def test_layer_gradient_norms_match_backward_and_leave_grad_alone():
    torch.manual_seed(2)
    model = TransformerStack(13, 8, 2, 16, 3, norm_first=True)
    ids = torch.randint(0, 13, (4, 6))
    norms = layer_gradient_norms(model, ids)
    assert all(p.grad is None for p in model.parameters())
    next_token_loss(model, ids).backward()
    for layer, norm in zip(model.layers, norms, strict=True):
        total = torch.sqrt(sum(p.grad.pow(2).sum() for p in layer.parameters()))
        assert norm == pytest.approx(total.item(), rel=1e-5)


def test_bad_input_is_named():
    model = TransformerStack(11, 8, 2, 16, 1, norm_first=False, max_len=5)
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.randn(2, 3))
    with pytest.raises(ValueError, match="max_len 5"):
        model(torch.zeros(2, 6, dtype=torch.long))
