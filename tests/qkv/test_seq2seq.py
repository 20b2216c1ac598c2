"""Tests for qkv.seq2seq: shapes, source masking, the two decoding paths, and learning.

Tolerances: float32 comparisons of the same computation on a padded and an
unpadded batch ``atol=1e-5`` (different GRU kernels and summation orders).
"""

import pytest
import torch
import torch.nn.functional as F

from qkv.data import BOS_ID, DIGIT_VOCAB_SIZE, EOS_ID, PAD_ID, digit_seq2seq
from qkv.seq2seq import Seq2Seq, Seq2SeqConfig

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
V, D_EMB, D_HIDDEN = 17, 11, 13  # odd sizes, so a swapped axis fails loudly
ATOL = 1e-5


def make_model(attention: bool, *, seed: int = 0, device: str = "cpu", **kw) -> Seq2Seq:
    torch.manual_seed(seed)
    config = Seq2SeqConfig(V, d_embedding=D_EMB, d_hidden=D_HIDDEN, attention=attention, **kw)
    return Seq2Seq(config).to(device).eval()


def make_batch(device: str = "cpu", *, seed: int = 0, lengths=(5, 2, 7)):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    m = int(lengths.max())
    src = torch.randint(3, V, (len(lengths), m), generator=g)
    src[torch.arange(m) >= lengths[:, None]] = PAD_ID
    tgt_in = torch.randint(3, V, (len(lengths), 6), generator=g)
    tgt_in[:, 0] = BOS_ID
    return src.to(device), lengths.to(device), tgt_in.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attention", [True, False])
def test_shapes(attention: bool, device: str) -> None:
    model = make_model(attention, device=device)
    src, lengths, tgt_in = make_batch(device)
    logits, weights = model(src, lengths, tgt_in)
    assert logits.shape == (3, 6, V) and logits.device.type == device
    tokens, greedy_weights = model.greedy_decode(src, lengths, max_steps=4)
    assert tokens.shape == (3, 4) and tokens.dtype == torch.long
    if attention:
        assert weights.shape == (3, 6, 7) and greedy_weights.shape == (3, 4, 7)
    else:
        assert weights is None and greedy_weights is None


@pytest.mark.parametrize("device", DEVICES)
def test_attention_never_looks_at_padded_source_positions(device: str) -> None:
    model = make_model(True, device=device)
    src, lengths, tgt_in = make_batch(device)
    _, weights = model(src, lengths, tgt_in)  # (B, n, m)
    real = torch.arange(src.shape[1], device=device) < lengths[:, None]  # (B, m)
    assert (weights.masked_select(~real[:, None, :]) == 0).all()
    sums = weights.sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=ATOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attention", [True, False])
def test_padded_batch_equals_each_source_alone(attention: bool, device: str) -> None:
    """The decisive masking test: padding (with garbage in it) changes nothing."""
    model = make_model(attention, device=device)
    src, lengths, tgt_in = make_batch(device)
    garbage = src.clone()
    garbage[src == PAD_ID] = 9  # a real token id where padding should be
    logits, weights = model(garbage, lengths, tgt_in)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_weights = model(src[b : b + 1, :n], lengths[b : b + 1], tgt_in[b : b + 1])
        assert torch.allclose(logits[b], alone[0], atol=ATOL)
        if attention:
            assert torch.allclose(weights[b, :, :n], alone_weights[0], atol=ATOL)


@pytest.mark.parametrize("device", DEVICES)
def test_summary_is_forward_state_at_the_last_token_and_backward_state_at_the_first(
    device: str,
) -> None:
    model = make_model(False, device=device)
    src, lengths, _ = make_batch(device)
    states, summary = model.encoder(src, lengths)  # (B, m, 2 d_hidden), (B, 2 d_hidden)
    rows = torch.arange(len(lengths), device=device)
    forward_last = states[rows, lengths - 1, :D_HIDDEN]
    backward_first = states[:, 0, D_HIDDEN:]
    assert torch.allclose(summary, torch.cat((forward_last, backward_first), -1), atol=ATOL)
    padded = torch.arange(src.shape[1], device=device) >= lengths[:, None]
    assert (states[padded] == 0).all()


def test_only_the_attention_decoder_reads_the_encoder_states() -> None:
    """The classic decoder sees the source through the summary alone: the bottleneck."""
    src, lengths, tgt_in = make_batch()
    for attention in (False, True):
        model = make_model(attention)
        states, summary = model.encoder(src, lengths)
        s0 = torch.tanh(model.decoder.init_state(summary))
        mask = torch.arange(src.shape[1]) < lengths[:, None]
        logits = [
            model.decoder.step(tgt_in[:, 0], s0, h, summary, mask)[0]
            for h in (states, torch.randn_like(states))
        ]
        assert torch.equal(logits[0], logits[1]) != attention


@pytest.mark.parametrize("attention", [True, False])
def test_greedy_decoding_is_deterministic_and_matches_teacher_forcing(attention: bool) -> None:
    model = make_model(attention, seed=3)
    src, lengths, _ = make_batch(seed=1)
    tokens, weights = model.greedy_decode(src, lengths, max_steps=5)
    again, weights_again = model.greedy_decode(src, lengths, max_steps=5)
    assert torch.equal(tokens, again)
    assert weights is None or torch.equal(weights, weights_again)
    # Feeding the greedy tokens back with teacher forcing must reproduce them (two paths agree).
    # A model without EOS in the first steps keeps every row alive; force that with a bias.
    with torch.no_grad():
        model.decoder.out.bias[EOS_ID] = -100.0
    tokens, weights = model.greedy_decode(src, lengths, max_steps=5)
    tgt_in = torch.cat((torch.full((3, 1), BOS_ID), tokens[:, :-1]), dim=1)
    logits, forced_weights = model(src, lengths, tgt_in)
    assert torch.equal(logits.argmax(-1), tokens)
    if attention:
        assert torch.allclose(forced_weights, weights, atol=ATOL)


def test_greedy_decoding_pads_after_the_end_of_sequence() -> None:
    model = make_model(True)
    with torch.no_grad():
        model.decoder.out.bias[EOS_ID] = 100.0  # the first token is EOS, whatever the input
    src, lengths, _ = make_batch()
    tokens, _ = model.greedy_decode(src, lengths, max_steps=4)
    assert (tokens[:, 0] == EOS_ID).all() and (tokens[:, 1:] == PAD_ID).all()


@pytest.mark.parametrize("attention", [True, False])
def test_a_tiny_model_learns_to_reverse_eight_strings(attention: bool) -> None:
    """Overfit one small batch; fails if gradients do not reach the parts that matter."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(DIGIT_VOCAB_SIZE, d_embedding=8, d_hidden=24, attention=attention)
    model = Seq2Seq(config)
    batch = digit_seq2seq(8, min_len=2, max_len=5, generator=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(60):
        logits, _ = model(batch.src, batch.lengths, batch.tgt[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt[:, 1:].flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient: {unused}"
    tokens, _ = model.eval().greedy_decode(batch.src, batch.lengths, max_steps=6)
    assert torch.equal(tokens, batch.tgt[:, 1:]), (tokens, batch.tgt[:, 1:])


def test_config_rejects_bad_sizes_and_ids() -> None:
    with pytest.raises(ValueError, match="d_hidden must be >= 1, got 0"):
        Seq2SeqConfig(V, d_hidden=0)
    with pytest.raises(ValueError, match=r"eos_id must be an id in \[0, 17\), got 17"):
        Seq2SeqConfig(V, eos_id=17)
    with pytest.raises(TypeError, match="config must be a Seq2SeqConfig, got dict"):
        Seq2Seq({"vocab_size": V})


def test_bad_inputs_are_named() -> None:
    model = make_model(True)
    src, lengths, tgt_in = make_batch()
    with pytest.raises(
        TypeError, match="src must be a tensor of torch.long token ids, got torch.fl"
    ):
        model(src.float(), lengths, tgt_in)
    with pytest.raises(ValueError, match=r"src must be \(B, length >= 1\), got \(3, 7, 1\)"):
        model(src[..., None], lengths, tgt_in)
    with pytest.raises(TypeError, match="lengths must be an integer tensor, got list"):
        model(src, [5, 2, 7], tgt_in)
    with pytest.raises(ValueError, match=r"src ids must lie in \[0, 17\)"):
        model(src + V, lengths, tgt_in)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, m=7\], got \[5, 0, 7\]"):
        model(src, torch.tensor([5, 0, 7]), tgt_in)
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\), got \(2,\)"):
        model(src, lengths[:2], tgt_in)
    with pytest.raises(ValueError, match=r"tgt_in must be \(3, length >= 1\), got \(2, 6\)"):
        model(src, lengths, tgt_in[:2])
    with pytest.raises(ValueError, match="max_steps must be >= 1, got 0"):
        model.greedy_decode(src, lengths, max_steps=0)
