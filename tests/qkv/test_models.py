"""Tests for qkv.models and qkv.bert: against torch's Transformer layers and Hugging Face BERT."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import qkv.bert
import qkv.models
from qkv.attention import MultiHeadAttention
from qkv.bert import (
    Bert,
    BertConfig,
    bert_from_hf_state_dict,
    bert_parameter_breakdown,
    bert_parameter_count,
)
from qkv.layers import PositionwiseFeedForward, TransformerDecoderLayer, TransformerEncoderLayer
from qkv.masks import causal_mask, key_mask, padding_mask
from qkv.models import EncoderDecoder
from qkv.positions import sinusoidal_positions

# tiny odd sizes, all different, so that a swapped dimension fails loudly
V, D, H, FF, B, L = 99, 36, 4, 37, 3, 7
TOL = dict(atol=1e-5, rtol=0)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def count(module):
    return sum(p.numel() for p in module.parameters())


# --- positions and the feed-forward network -----------------------------------


@pytest.mark.parametrize("d_model", [36, 7])
def test_sinusoidal_positions_follow_the_formula(d_model, device):
    pe = sinusoidal_positions(11, d_model, device=device)
    assert pe.shape == (11, d_model) and pe.dtype == torch.float32 and pe.device == device
    for pos in (0, 1, 10):
        for j in range(d_model):
            angle = pos / 10000 ** ((j - j % 2) / d_model)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert abs(pe[pos, j].item() - expected) < 1e-6


def test_sinusoidal_position_shift_is_a_rotation():
    """PE[pos + k] is a fixed linear (rotation) function of PE[pos] (Vaswani 2017 §3.5)."""
    pe = sinusoidal_positions(20, 36, dtype=torch.float64)
    sin, cos = pe[:, 0::2], pe[:, 1::2]  # (20, 18) each
    k = 3
    shifted_sin = sin[:-k] * cos[k] + cos[:-k] * sin[k]  # sin(a + b) from the table alone
    assert torch.allclose(shifted_sin, sin[k:], atol=1e-12)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_feed_forward_is_the_two_layer_formula(activation):
    ffn = PositionwiseFeedForward(D, FF, activation)
    x = torch.randn(B, L, D, generator=seeded())
    hidden = x @ ffn.linear1.weight.T + ffn.linear1.bias  # (B, L, FF)
    act = torch.nn.functional.gelu if activation == "gelu" else torch.relu
    expected = act(hidden) @ ffn.linear2.weight.T + ffn.linear2.bias
    torch.testing.assert_close(ffn(x), expected)
    if activation == "gelu":  # the exact erf form, not the tanh approximation
        z = torch.linspace(-3, 3, 7)
        torch.testing.assert_close(ffn.activation(z), z * 0.5 * (1 + torch.erf(z / math.sqrt(2))))


# --- layers against torch.nn.TransformerEncoderLayer / DecoderLayer -----------


def randomise_norms(module):
    """LayerNorm starts at 1 and 0; random values make a swapped norm fail the comparison."""
    g = seeded(7)
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            with torch.no_grad():
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))


def copy_attention(ours, theirs):
    ours.load_state_dict(MultiHeadAttention.from_torch(theirs).state_dict())


def copy_common(ours, theirs, norms):
    ours.ffn.linear1.load_state_dict(theirs.linear1.state_dict())
    ours.ffn.linear2.load_state_dict(theirs.linear2.state_dict())
    for name in norms:
        getattr(ours, name).load_state_dict(getattr(theirs, name).state_dict())


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_encoder_layer_matches_torch(norm_first, activation, device):
    torch.manual_seed(0)
    kw = dict(dropout=0.1, activation=activation, norm_first=norm_first)
    theirs = nn.TransformerEncoderLayer(D, H, FF, batch_first=True, **kw)
    randomise_norms(theirs)
    ours = TransformerEncoderLayer(D, H, FF, **kw)
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_common(ours, theirs, ["norm1", "norm2"])
    theirs, ours = theirs.to(device).eval(), ours.to(device).eval()
    x = torch.randn(B, L, D, generator=seeded(1)).to(device)
    pad = padding_mask(torch.tensor([7, 4, 2]), L).to(device)
    expected = theirs(x, src_key_padding_mask=~pad)
    got = ours(x, key_mask(pad))
    torch.testing.assert_close(got[pad], expected[pad], **TOL)  # real positions
    torch.testing.assert_close(ours(x), theirs(x), **TOL)  # and with no padding at all


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_passes_rotate_to_its_self_attention(norm_first):
    """The layer's ``rotate`` reaches its attention: the same as calling it by hand."""
    torch.manual_seed(3)
    layer = TransformerEncoderLayer(D, H, FF, norm_first=norm_first).eval()
    x = torch.randn(B, L, D, generator=seeded(2))

    def rotate(t):
        return t.flip(-2)  # any function of q and k: here their positions reversed

    attended = layer.self_attn(layer.norm1(x) if norm_first else x, rotate=rotate)[0]
    if norm_first:
        x1 = x + attended
        expected = x1 + layer.ffn(layer.norm2(x1))
    else:
        x1 = layer.norm1(x + attended)
        expected = layer.norm2(x1 + layer.ffn(x1))
    torch.testing.assert_close(layer(x, rotate=rotate), expected, **TOL)
    assert not torch.allclose(layer(x, rotate=rotate), layer(x), **TOL)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first, device):
    torch.manual_seed(0)
    kw = dict(dropout=0.1, activation="gelu", norm_first=norm_first)
    theirs = nn.TransformerDecoderLayer(D, H, FF, batch_first=True, **kw)
    randomise_norms(theirs)
    ours = TransformerDecoderLayer(D, H, FF, **kw)
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_attention(ours.cross_attn, theirs.multihead_attn)
    copy_common(ours, theirs, ["norm1", "norm2", "norm3"])
    theirs, ours = theirs.to(device).eval(), ours.to(device).eval()
    n, m = 5, L
    x = torch.randn(B, n, D, generator=seeded(1)).to(device)
    memory = torch.randn(B, m, D, generator=seeded(2)).to(device)
    tgt_pad = padding_mask(torch.tensor([5, 3, 4]), n).to(device)
    src_pad = padding_mask(torch.tensor([7, 2, 5]), m).to(device)
    expected = theirs(
        x,
        memory,
        tgt_mask=~causal_mask(n, device=device),  # torch: True = NOT allowed
        tgt_key_padding_mask=~tgt_pad,
        memory_key_padding_mask=~src_pad,
    )
    got = ours(x, memory, key_mask(tgt_pad), key_mask(src_pad))
    torch.testing.assert_close(got[tgt_pad], expected[tgt_pad], **TOL)


def test_decoder_layer_is_causal_and_the_encoder_layer_is_not():
    torch.manual_seed(0)
    decoder, encoder = TransformerDecoderLayer(D, H, FF).eval(), TransformerEncoderLayer(D, H, FF)
    x, memory = torch.randn(B, L, D, generator=seeded(1)), torch.randn(B, 5, D, generator=seeded(2))
    changed = x.clone()
    changed[:, 4:] += 1.0  # change the future from position 4 on
    before, after = decoder(x, memory), decoder(changed, memory)
    torch.testing.assert_close(before[:, :4], after[:, :4], atol=1e-6, rtol=0)
    assert (before[:, 4:] - after[:, 4:]).abs().max() > 1e-2
    assert (encoder(x)[:, :4] - encoder(changed)[:, :4]).abs().max() > 1e-2  # bidirectional


def test_encoder_layer_returns_attention_weights_that_ignore_padding():
    layer = TransformerEncoderLayer(D, H, FF).eval()
    x = torch.randn(B, L, D, generator=seeded())
    pad = padding_mask(torch.tensor([7, 4, 2]), L)
    out, weights = layer(x, key_mask(pad), need_weights=True)
    assert out.shape == (B, L, D) and weights.shape == (B, H, L, L)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, L))
    assert (weights[1, :, :, 4:] == 0).all() and (weights[2, :, :, 2:] == 0).all()
    torch.testing.assert_close(out, layer(x, key_mask(pad)))


# --- the encoder-decoder ------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_decoder_shapes_causality_and_padding(norm_first, device):
    torch.manual_seed(0)
    model = EncoderDecoder(V, 41, D, H, FF, n_layers=2, max_len=23, norm_first=norm_first)
    model = model.to(device).eval()
    src = torch.randint(0, V, (B, L), generator=seeded(1)).to(device)
    tgt = torch.randint(0, 41, (B, 5), generator=seeded(2)).to(device)
    src_pad = padding_mask(torch.tensor([7, 3, 5]), L).to(device)
    logits = model(src, tgt, src_pad)
    assert logits.shape == (B, 5, 41) and torch.isfinite(logits).all()
    assert model.encode(src, src_pad).shape == (B, L, D)
    # changing target tokens from position 3 on leaves logits 0..2 unchanged
    later = tgt.clone()
    later[:, 3:] = (later[:, 3:] + 1) % 41
    changed = model(src, later, src_pad)
    torch.testing.assert_close(changed[:, :3], logits[:, :3], atol=1e-5, rtol=0)
    assert (changed[:, 3:] - logits[:, 3:]).abs().max() > 1e-3
    # changing padded source tokens changes nothing; changing a real one does
    noise = src.clone()
    noise[~src_pad] = (noise[~src_pad] + 1) % V
    torch.testing.assert_close(model(noise, tgt, src_pad), logits, atol=1e-5, rtol=0)
    noise[1, 0] = (noise[1, 0] + 1) % V
    assert (model(noise, tgt, src_pad)[1] - logits[1]).abs().max() > 1e-3


def test_encoder_decoder_output_tying_shares_one_tensor():
    untied = EncoderDecoder(V, 41, D, H, FF, n_layers=1)
    tied = EncoderDecoder(V, 41, D, H, FF, n_layers=1, tie_output=True)
    assert tied.output.weight is tied.tgt_embed.weight
    assert count(untied) - count(tied) == 41 * D  # parameters() lists a shared tensor once


def test_encoder_decoder_trains_on_a_tiny_copy_task():
    torch.manual_seed(0)
    model = EncoderDecoder(12, 12, 32, 4, 64, n_layers=1, max_len=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    src = torch.randint(3, 12, (64, 6), generator=seeded(3))
    tgt = torch.cat([torch.ones(64, 1, dtype=torch.long), src], dim=1)  # BOS = 1, then copy
    losses = []
    for _ in range(60):
        logits = model(src, tgt[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 12), tgt[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]


# --- BERT ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_config():
    """A Hugging Face config with TINY's sizes."""
    transformers = pytest.importorskip("transformers")
    return transformers.BertConfig(
        vocab_size=V,
        hidden_size=D,
        num_hidden_layers=2,
        num_attention_heads=H,
        intermediate_size=FF,
        max_position_embeddings=23,
        type_vocab_size=3,
    )


TINY = BertConfig(V, D, 2, H, FF, max_position_embeddings=23, type_vocab_size=3)


def hf_bert(hf_config, attn_implementation="eager"):
    """A randomly initialised ``transformers.BertModel`` (nothing is downloaded), in eval mode."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(**hf_config.to_dict(), attn_implementation=attn_implementation)
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    assert model.config._attn_implementation == attn_implementation
    randomise_norms(model)
    return model.eval()


def test_bert_config_has_hugging_face_fields_and_defaults(hf_config):
    transformers = pytest.importorskip("transformers")
    ours, theirs = BertConfig(), transformers.BertConfig()
    for field in BertConfig.__dataclass_fields__:
        assert getattr(ours, field) == getattr(theirs, field), field
    assert BertConfig.base() == BertConfig()


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_bert_reproduces_hugging_face_outputs(hf_config, attn_implementation, device):
    theirs = hf_bert(hf_config, attn_implementation).to(device)
    ours = bert_from_hf_state_dict(theirs.state_dict(), TINY)
    assert not ours.training and next(ours.parameters()).device == device
    ids = torch.randint(0, V, (B, L), generator=seeded(1)).to(device)
    types = torch.randint(0, 3, (B, L), generator=seeded(2)).to(device)
    attention_mask = padding_mask(torch.tensor([7, 4, 2]), L).long().to(device)
    with torch.no_grad():
        expected = theirs(input_ids=ids, token_type_ids=types, attention_mask=attention_mask)
        sequence, pooled = ours(ids, types, attention_mask)
    real = attention_mask.bool()
    assert sequence.shape == (B, L, D) and pooled.shape == (B, D)
    torch.testing.assert_close(sequence[real], expected.last_hidden_state[real], **TOL)
    torch.testing.assert_close(pooled, expected.pooler_output, **TOL)
    with torch.no_grad():  # defaults: token type 0, no padding
        torch.testing.assert_close(ours(ids)[0], theirs(input_ids=ids).last_hidden_state, **TOL)


def test_bert_parameter_count_of_bert_base():
    config = BertConfig.base()
    analytic = bert_parameter_count(config)
    assert analytic == count(Bert(config)) == 109_482_240
    assert abs(analytic / 110e6 - 1) < 0.01
    parts = bert_parameter_breakdown(config)
    assert parts["embeddings"] + 12 * parts["per_layer"] + parts["pooler"] == analytic
    assert parts["per_layer"] == 7_087_872
    assert abs(bert_parameter_count(BertConfig.large()) / 340e6 - 1) < 0.02  # 335,141,888


def test_bert_parameter_count_matches_hugging_face_for_a_tiny_config(hf_config):
    assert bert_parameter_count(TINY) == count(Bert(TINY)) == count(hf_bert(hf_config))


def test_bert_is_bidirectional_and_ignores_padding():
    torch.manual_seed(0)
    model = Bert(TINY).eval()
    ids = torch.randint(0, V, (B, L), generator=seeded(1))
    attention_mask = padding_mask(torch.tensor([7, 4, 2]), L)
    sequence, _ = model(ids, attention_mask=attention_mask)
    later = ids.clone()
    later[0, 6] = (later[0, 6] + 1) % V  # a later token changes the first position's output
    assert (
        model(later, attention_mask=attention_mask)[0][0, 0] - sequence[0, 0]
    ).abs().max() > 1e-4
    padded = ids.clone()
    padded[1, 4:] = 0  # padding content is invisible to real tokens
    torch.testing.assert_close(
        model(padded, attention_mask=attention_mask)[0][1, :4], sequence[1, :4]
    )


def test_bert_from_state_dict_lists_missing_and_unexpected_keys(hf_config):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    pretraining = transformers.BertForPreTraining(hf_config).state_dict()  # "bert." + heads
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['cls\.predictions"):
        bert_from_hf_state_dict(pretraining, TINY)
    state = dict(hf_bert(hf_config).state_dict())
    state.pop("encoder.layer.1.output.dense.bias")
    with pytest.raises(ValueError, match=r"missing \['encoder.layer.1.output.dense.bias'\]"):
        bert_from_hf_state_dict(state, TINY)
    bigger = BertConfig(V, D, 3, H, FF, max_position_embeddings=23, type_vocab_size=3)
    with pytest.raises(ValueError, match=r"missing \['encoder.layer.2.attention.output"):
        bert_from_hf_state_dict(hf_bert(hf_config).state_dict(), bigger)
    wider = BertConfig(V, D, 2, H, 38, max_position_embeddings=23, type_vocab_size=3)
    with pytest.raises(ValueError, match=r"intermediate.dense.weight has shape \(37, 36\)"):
        bert_from_hf_state_dict(hf_bert(hf_config).state_dict(), wider)


def test_moved_names_stay_valid_under_qkv_models():
    import qkv.layers
    import qkv.positions

    assert qkv.models.sinusoidal_positions is qkv.positions.sinusoidal_positions
    assert qkv.models.TransformerEncoderLayer is qkv.layers.TransformerEncoderLayer
    assert qkv.models.TransformerDecoderLayer is qkv.layers.TransformerDecoderLayer
    assert qkv.models.PositionwiseFeedForward is qkv.layers.PositionwiseFeedForward


def test_bert_is_reexported_by_models_in_either_import_order():
    assert qkv.models.Bert is qkv.bert.Bert and qkv.models.BertConfig is qkv.bert.BertConfig
    with pytest.raises(AttributeError, match="has no attribute 'Bart'"):
        qkv.models.Bart  # noqa: B018
    lib = str(Path(__file__).resolve().parents[2] / "lib")
    code = "import qkv.bert, qkv.models; assert qkv.models.Bert is qkv.bert.Bert"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": lib})


# --- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: BertConfig(hidden_size=10, num_attention_heads=3),
            ValueError,
            "hidden_size 10 is not a multiple of num_attention_heads 3",
        ),
        (lambda: BertConfig(num_hidden_layers=0), ValueError, "num_hidden_layers must be >= 1"),
        (lambda: BertConfig(hidden_dropout_prob=1.5), ValueError, r"hidden_dropout_prob .*1.5"),
        (lambda: BertConfig(layer_norm_eps=0.0), ValueError, "layer_norm_eps must be > 0"),
        (lambda: Bert(TINY)(torch.full((2, 5), V)), ValueError, r"input_ids must be in \[0, 99\)"),
        (
            lambda: Bert(TINY)(torch.zeros(2, 24, dtype=torch.long)),
            ValueError,
            "length 24 > the maximum of 23 positions",
        ),
        (lambda: Bert(TINY)(torch.zeros(2, 5)), TypeError, "integer tensor of token ids"),
        (lambda: Bert(TINY)(torch.zeros(5, dtype=torch.long)), ValueError, r"\(B, L\), got"),
        (
            lambda: Bert(TINY)(torch.zeros(2, 0, dtype=torch.long)),
            ValueError,
            r"input_ids must hold at least one token per sequence, got shape \(B, 0\)",
        ),
        (lambda: TransformerEncoderLayer(D, H, FF, True), TypeError, "dropout must be a number"),
        (lambda: PositionwiseFeedForward(D, 37.0), TypeError, "d_ff must be an int, got float"),
        (
            lambda: Bert(TINY)(torch.zeros(2, 5, dtype=torch.long), torch.full((2, 5), 3)),
            ValueError,
            r"token_type_ids must be in \[0, 3\)",
        ),
        (
            lambda: Bert(TINY)(
                torch.zeros(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4)
            ),
            ValueError,
            r"attention_mask must have the shape of input_ids \(2, 5\), got \(2, 4\)",
        ),
        (
            lambda: Bert(TINY)(
                torch.zeros(2, 5, dtype=torch.long), attention_mask=torch.full((2, 5), 2)
            ),
            ValueError,
            "only 0 and 1",
        ),
        (lambda: Bert({"hidden_size": 36}), TypeError, "config must be a BertConfig, got dict"),
        (lambda: TransformerEncoderLayer(D, 5, FF), ValueError, "not a multiple of n_heads=5"),
        (lambda: TransformerEncoderLayer(D, H, FF, 1.5), ValueError, r"dropout must be in \[0, 1"),
        (lambda: PositionwiseFeedForward(D, FF, "swish"), ValueError, "'gelu' or 'relu', got 'sw"),
        (lambda: PositionwiseFeedForward(D, 0), ValueError, "d_ff must be >= 1, got 0"),
        (lambda: EncoderDecoder(V, V, D, H, FF, n_layers=0), ValueError, "n_layers must be >= 1"),
        (
            lambda: EncoderDecoder(V, V, D, H, FF, 1, max_len=4)(
                torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long)
            ),
            ValueError,
            "src has length 5 > the maximum of 4",
        ),
        (lambda: sinusoidal_positions(0, 4), ValueError, "max_len must be >= 1, got 0"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
