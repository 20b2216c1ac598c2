"""qkv.stack: the experiments' Transformer stack, its position schemes, masks and helpers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qkv.layers import TransformerEncoderLayer
from qkv.masks import causal_mask, to_additive
from qkv.positions import alibi_bias, apply_rotary, rope_frequencies, sinusoidal_positions
from qkv.stack import POSITION_SCHEMES, TransformerStack, layer_gradient_norms, next_token_loss


def _model(device, **kw) -> TransformerStack:
    """Pre-LN, GELU, 4 d_model FFN, PyTorch's init: the experiments' tiny configuration."""
    torch.manual_seed(0)
    kw = {"max_len": 9, "n_outputs": 5, "activation": "gelu", "init": "default", **kw}
    d_model, n_heads, n_layers = kw.pop("d_model", 12), kw.pop("n_heads", 3), kw.pop("n_layers", 2)
    model = TransformerStack(11, d_model, n_heads, 4 * d_model, n_layers, norm_first=True, **kw)
    return model.to(device).eval()


# ------------------------------------------------ the Post-LN / Pre-LN stack of Q19, Q22, Q31


class _FrozenStack(nn.Module):
    """A frozen copy of the stack Q19, Q22, Q24 and Q31 stored their robustness data with
    (qkv.stability.TransformerStack before it became qkv.stack.TransformerStack)."""

    def __init__(self, V, d_model, n_heads, d_ff, n_layers, *, norm_first, max_len=64, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(V, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                d_model, n_heads, d_ff, dropout, norm_first=norm_first, activation="relu"
            )
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.output = nn.Linear(d_model, V)
        for name, p in self.named_parameters():
            if p.dim() == 2 and not name.startswith(("embed", "pos")):
                nn.init.xavier_uniform_(p)

    def forward(self, ids):
        L = ids.shape[1]
        x = self.dropout(self.embed(ids) + self.pos(torch.arange(L, device=ids.device)))
        mask = causal_mask(L, device=ids.device)[None, None]
        for layer in self.layers:
            x = layer(x, mask)
        return self.output(self.final_norm(x))


@pytest.mark.parametrize(
    ("norm_first", "dropout", "dtype"),
    [(False, 0.0, torch.float64), (True, 0.0, torch.float32), (False, 0.1, torch.float32)],
)
def test_bit_identical_to_the_stack_of_the_stored_robustness_data(norm_first, dropout, dtype):
    """Same seed -> the same parameters, outputs and gradients, bit for bit (Q19's
    float64 first step, Q22's and Q31's Pre-LN, dropout in training mode)."""
    sizes = (23, 16, 4, 64, 3)
    torch.manual_seed(5)
    old = _FrozenStack(*sizes, norm_first=norm_first, dropout=dropout).to(dtype)
    torch.manual_seed(5)
    new = TransformerStack(*sizes, norm_first=norm_first, dropout=dropout).to(dtype)
    assert list(old.state_dict()) == list(new.state_dict())
    assert all(
        torch.equal(a, b)
        for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True)
    )
    ids = torch.randint(0, 23, (4, 10))
    torch.manual_seed(6)
    loss_old = next_token_loss(old, ids)
    torch.manual_seed(6)
    loss_new = next_token_loss(new, ids)
    assert torch.equal(loss_old, loss_new)
    loss_old.backward()
    loss_new.backward()
    assert all(
        torch.equal(a.grad, b.grad) for a, b in zip(old.parameters(), new.parameters(), strict=True)
    )


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


def test_init_xavier_or_pytorch_default():
    """Xavier's bound sqrt(6 / (d + d)) exceeds PyTorch's 1 / sqrt(d) for a square W_q."""
    d = 12
    torch.manual_seed(3)
    xavier = TransformerStack(11, d, 3, 20, 1, norm_first=True)
    torch.manual_seed(3)
    default = TransformerStack(11, d, 3, 20, 1, norm_first=True, init="default")
    w_x, w_d = xavier.layers[0].self_attn.w_q.weight, default.layers[0].self_attn.w_q.weight
    assert w_d.abs().max() <= 1 / math.sqrt(d) < w_x.abs().max() <= math.sqrt(6 / (2 * d))
    assert torch.equal(xavier.embed.weight, default.embed.weight)  # embeddings left alone


def test_activation_and_outputs():
    model = _model("cpu", n_outputs=4)
    assert isinstance(model.layers[0].ffn.activation, nn.GELU)
    assert model(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 3, 4)
    relu = TransformerStack(11, 8, 2, 16, 1, norm_first=False)
    assert isinstance(relu.layers[0].ffn.activation, nn.ReLU)
    assert relu(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 3, 11)


# ------------------------------------------------------------- position schemes and masks


@pytest.mark.parametrize("position", POSITION_SCHEMES)
def test_shapes_and_causality(position, device) -> None:
    model = _model(device, position=position, n_heads=2)  # d_k = 6, even for rope
    ids = torch.randint(0, 11, (3, 7), device=device)
    out = model(ids)
    assert out.shape == (3, 7, 5)
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11  # change the future of position 4
    with torch.no_grad():
        assert torch.allclose(model(changed)[:, :5], out[:, :5], atol=1e-5)
        assert not torch.allclose(model(changed)[:, 5:], out[:, 5:], atol=1e-3)


def test_without_positions_a_bidirectional_model_is_permutation_equivariant(device) -> None:
    model = _model(device, position="none", causal=False)
    ids = torch.randint(0, 11, (2, 7), device=device)
    perm = torch.randperm(7)
    with torch.no_grad():
        assert torch.allclose(model(ids[:, perm]), model(ids)[:, perm], atol=1e-5)
        sinusoidal = _model(device, position="sinusoidal", causal=False)
        assert not torch.allclose(sinusoidal(ids[:, perm]), sinusoidal(ids)[:, perm], atol=1e-3)


def test_a_window_limits_what_a_position_sees(device) -> None:
    model = _model(device, position="none", causal=False, window=1, n_layers=1)
    ids = torch.randint(0, 11, (2, 9), device=device)
    changed = ids.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 11  # one layer, window 1: reaches positions 0 and 1
    with torch.no_grad():
        out, out2 = model(ids), model(changed)
    assert torch.allclose(out[:, 2:], out2[:, 2:], atol=1e-6)
    assert not torch.allclose(out[:, 1], out2[:, 1], atol=1e-4)


def test_the_alibi_mask_is_qkv_positions_bias_plus_the_causal_mask(device) -> None:
    model = _model(device, position="alibi", n_heads=3)
    expected = alibi_bias(3, 6, device=device) + to_additive(causal_mask(6, device=device))
    assert torch.equal(model.attention_mask(6, device), expected[None])
    assert _model(device, position="alibi", causal=False).attention_mask(6, device).shape == (
        1,
        3,
        6,
        6,
    )
    assert _model(device, position="none", causal=False).attention_mask(6, device) is None


def test_rope_scores_do_not_depend_on_the_absolute_start(device) -> None:
    """A RoPE model without a causal mask or any other position: all-equal tokens give
    every position the same neighbourhood up to a shift, so the middle of a long
    constant sequence matches itself shifted by one."""
    model = _model(device, position="rope", n_heads=2, causal=False, window=2, n_layers=1)
    ids = torch.full((1, 9), 4, device=device)
    with torch.no_grad():
        out = model(ids)[0]
    assert torch.allclose(out[3], out[4], atol=1e-5) and torch.allclose(out[4], out[5], atol=1e-5)
    learned = _model(device, position="learned", causal=False, window=2, n_layers=1)
    with torch.no_grad():
        assert not torch.allclose(learned(ids)[0, 3], learned(ids)[0, 4], atol=1e-3)


def test_sequences_longer_than_max_len(device) -> None:
    ids = torch.randint(0, 11, (2, 20), device=device)
    for position in ("sinusoidal", "rope", "alibi", "none"):
        assert _model(device, position=position, n_heads=2)(ids).shape == (2, 20, 5)
    with pytest.raises(ValueError, match="max_len 9: the learned position table"):
        _model(device, position="learned")(ids)


def _reference(model, ids, *, rotate=None, bias=None):
    """One Pre-LN layer written out with torch's scaled_dot_product_attention."""
    layer, (B, L) = model.layers[0], ids.shape
    h, d = model.n_heads, model.d_model
    x = model.embed(ids)
    if model.position == "learned":
        x = x + model.pos.weight[:L]
    if model.position == "sinusoidal":
        x = x + sinusoidal_positions(L, d, device=ids.device)
    a, y = layer.self_attn, layer.norm1(x)
    q, k, v = (w(y).view(B, L, h, d // h).transpose(1, 2) for w in (a.w_q, a.w_k, a.w_v))
    if rotate is not None:
        q, k = rotate(q), rotate(k)
    if bias is None:
        bias = torch.zeros(h, L, L, device=ids.device)
    bias = bias + to_additive(causal_mask(L, device=ids.device))
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])
    x = x + a.w_o(attended.transpose(1, 2).reshape(B, L, d))
    x = x + layer.ffn(layer.norm2(x))
    return model.output(model.final_norm(x))


@pytest.mark.parametrize("position", ["rope", "alibi", "sinusoidal", "learned"])
def test_forward_matches_a_reference_built_on_torch_sdpa(position, device) -> None:
    model = _model(device, position=position, n_heads=2, n_layers=1)
    ids = torch.randint(0, 11, (3, 7), device=device)
    with torch.no_grad():
        rotate = apply_rotary if position == "rope" else None  # positions 0..L-1, base 10000
        bias = alibi_bias(2, 7, device=device) if position == "alibi" else None
        expected = _reference(model, ids, rotate=rotate, bias=bias)
        torch.testing.assert_close(model(ids), expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------- RoPE and its rescaling


def test_rope_rotates_q_and_k_as_qkv_positions_apply_rotary(device) -> None:
    """The layers' rotate is apply_rotary (positions 0..L-1) with the stack's rope_theta."""
    model = _model(device, position="rope", n_heads=2, rope_theta=500.0)
    t = torch.randn(3, 2, 7, 6, device=device)
    torch.testing.assert_close(model.rotary(7, device)(t), apply_rotary(t, base=500.0))
    ids = torch.randint(0, 11, (3, 7), device=device)
    model.layers = model.layers[:1]
    with torch.no_grad():
        expected = _reference(model, ids, rotate=lambda t: apply_rotary(t, base=500.0))
        torch.testing.assert_close(model(ids), expected, atol=1e-5, rtol=1e-5)


def test_linear_scaling_is_position_interpolation(device) -> None:
    """rope_type "linear" with factor s turns position p as plain RoPE turns p / s."""
    model = _model(device, position="rope", n_heads=2)
    model.rope_scaling = {"rope_type": "linear", "factor": 4.0}
    t = torch.randn(2, 2, 9, 6, device=device)
    positions = torch.arange(9, device=device) / 4.0
    torch.testing.assert_close(model.rotary(9, device)(t), apply_rotary(t, positions))
    model.rope_scaling = None  # back to plain RoPE
    torch.testing.assert_close(model.rotary(9, device)(t), apply_rotary(t))


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
        {"rope_type": "yarn", "factor": 3.0},  # from max_len
        {"rope_type": "dynamic", "factor": 2.0},
    ],
)
def test_rope_scaling_uses_rope_frequencies_and_yarns_attention_factor(scaling, device) -> None:
    """The stack's frequencies are qkv.positions.rope_frequencies' (tested against Hugging
    Face's ROPE_INIT_FUNCTIONS in test_positions.py), with max_len as the trained length."""
    model = _model(device, position="rope", n_heads=1, d_model=16, rope_scaling=scaling)
    L = 40
    inv_freq, factor = rope_frequencies(
        16, scaling=scaling, max_position_embeddings=9, seq_len=L, device=device
    )
    if scaling["rope_type"] == "yarn":
        assert factor == pytest.approx(0.1 * math.log(scaling["factor"]) + 1)
    t = torch.randn(2, 1, L, 16, device=device)
    expected = apply_rotary(t, inv_freq=inv_freq) * factor
    torch.testing.assert_close(model.rotary(L, device)(t), expected)
    plain = apply_rotary(t)
    assert not torch.allclose(model.rotary(L, device)(t), plain, atol=1e-3)


def test_rope_attributes_are_checked_when_set() -> None:
    model = _model("cpu", position="rope", n_heads=2)
    with pytest.raises(ValueError, match="rope_type"):
        model.rope_scaling = {"rope_type": "ntk", "factor": 2.0}
    with pytest.raises(TypeError, match="rope_scaling must be a dict"):
        model.rope_scaling = 2.0
    with pytest.raises(ValueError, match="rope_theta must be a finite number > 1"):
        model.rope_theta = 0.5
    model.rope_theta = 20000
    assert model.rope_theta == 20000.0 and model.rope_scaling is None


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"position": "relative"}, ValueError, "position must be one of"),
        ({"d_model": 10, "n_heads": 3}, ValueError, "not a multiple"),
        ({"position": "rope", "d_model": 12, "n_heads": 4}, ValueError, "must be even"),
        ({"window": -1}, ValueError, "window must be >= 0"),
        ({"n_layers": 0}, ValueError, "n_layers must be >= 1"),
        ({"n_outputs": 0}, ValueError, "n_outputs must be >= 1"),
        ({"init": "kaiming"}, ValueError, "init must be one of"),
        ({"activation": "tanh"}, ValueError, "activation must be"),
        ({"dropout": 1.5}, ValueError, "dropout"),
        ({"rope_theta": 500.0}, ValueError, "need position='rope'"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, ValueError, "need position"),
        (
            {"position": "rope", "n_heads": 2, "rope_scaling": {"factor": 2}},
            ValueError,
            "rope_type",
        ),
    ],
)
def test_bad_configurations(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        _model("cpu", **kwargs)


def test_bad_ids(device) -> None:
    model = _model(device)
    with pytest.raises(TypeError, match="integer tensor"):
        model(torch.zeros(2, 3, device=device))
    with pytest.raises(TypeError, match="integer tensor"):
        model([[1, 2]])
    with pytest.raises(ValueError, match=r"integer tensor \(B, L\), got \(3,\)"):
        model(torch.zeros(3, dtype=torch.long, device=device))
