"""qkv.tiny_transformer: masks, position schemes and errors of the experiments' model."""

from __future__ import annotations

import pytest
import torch

from qkv.masks import causal_mask, to_additive
from qkv.positions import alibi_bias
from qkv.tiny_transformer import POSITION_SCHEMES, TinyTransformer


def _model(device, **kw) -> TinyTransformer:
    torch.manual_seed(0)
    kw = {"d_model": 12, "n_heads": 3, "n_layers": 2, "max_len": 9, **kw}
    return TinyTransformer(11, 5, **kw).to(device).eval()


@pytest.mark.parametrize("position", POSITION_SCHEMES)
def test_shapes_and_causality(position, device) -> None:
    if position == "rope":
        model = _model(device, position=position, d_model=12, n_heads=2)  # d_k = 6, even
    else:
        model = _model(device, position=position)
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
    assert torch.equal(model._mask(6, torch.device(device)), expected[None])


def test_rope_scores_do_not_depend_on_the_absolute_start(device) -> None:
    """A RoPE model without a causal mask or any other position: all-equal tokens give
    every position the same neighbourhood up to a shift, so the middle of a long
    constant sequence matches itself shifted by one."""
    model = _model(device, position="rope", n_heads=2, causal=False, window=2, n_layers=1)
    ids = torch.full((1, 9), 4, device=device)
    with torch.no_grad():
        out = model(ids)[0]
    assert torch.allclose(out[3], out[4], atol=1e-5) and torch.allclose(out[4], out[5], atol=1e-5)


def test_sequences_longer_than_max_len(device) -> None:
    ids = torch.randint(0, 11, (2, 20), device=device)
    for position in ("sinusoidal", "alibi", "none"):
        assert _model(device, position=position)(ids).shape == (2, 20, 5)
    with pytest.raises(ValueError, match="longer than the learned position table"):
        _model(device, position="learned")(ids)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"position": "relative"}, ValueError, "position must be one of"),
        ({"d_model": 10, "n_heads": 3}, ValueError, "not a multiple"),
        ({"position": "rope", "d_model": 12, "n_heads": 4}, ValueError, "must be even"),
        ({"window": -1}, ValueError, "window must be >= 0"),
        ({"n_layers": 0}, ValueError, "n_layers must be >= 1"),
    ],
)
def test_bad_configurations(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        TinyTransformer(11, 5, **kwargs)


def test_bad_ids(device) -> None:
    with pytest.raises(TypeError, match="integer tensor"):
        _model(device)(torch.zeros(2, 3, device=device))


@pytest.mark.parametrize("position", ["rope", "alibi", "sinusoidal", "learned"])
def test_forward_matches_a_reference_built_on_torch_sdpa(position, device) -> None:
    """One layer written out with torch's scaled_dot_product_attention as the reference."""
    import torch.nn.functional as F

    from qkv.positions import apply_rotary, sinusoidal_positions

    model = _model(device, position=position, n_heads=2, n_layers=1)
    ids = torch.randint(0, 11, (3, 7), device=device)
    block, L = model.blocks[0], ids.shape[1]
    with torch.no_grad():
        x = model.embed(ids)
        if position == "learned":
            x = x + model.pos_embed.weight[:L]
        if position == "sinusoidal":
            x = x + sinusoidal_positions(L, 12, device=device)
        q, k, v = block.qkv(block.norm1(x)).split(12, dim=-1)
        q, k, v = (t.view(3, L, 2, 6).transpose(1, 2) for t in (q, k, v))  # (B, h, L, d_k)
        if position == "rope":
            q, k = apply_rotary(q), apply_rotary(k)
        bias = torch.zeros(2, L, L, device=device)
        if position == "alibi":
            bias = alibi_bias(2, L, device=device)
        bias = bias + to_additive(causal_mask(L, device=device))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])
        x = x + block.out(attended.transpose(1, 2).reshape(3, L, 12))
        x = x + block.ffn(block.norm2(x))
        expected = model.head(model.norm(x))
        assert torch.allclose(model(ids), expected, atol=1e-5)
