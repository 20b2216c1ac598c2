"""qkv.experiments.q08_padding_mask: the wrong answers, measured against brute-force loops."""

import math

import pytest
import torch

from qkv.attention import MultiHeadAttention
from qkv.experiments.q08_padding_mask import (
    CLAIMS,
    LENGTHS,
    L,
    padded_batch,
    torch_layer,
    wrong_answers,
)
from qkv.masks import key_mask, padding_mask


def test_the_batch_is_seeded_and_leaves_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    x, mha = padded_batch(4)
    assert torch.equal(torch.get_rng_state(), before)
    x2, mha2 = padded_batch(4)
    assert torch.equal(x, x2) and torch.equal(mha.w_q.weight, mha2.w_q.weight)
    assert not torch.equal(padded_batch(5)[0], x) and x.shape == (len(LENGTHS), L, 12)
    assert torch.equal(torch_layer(4).in_proj_weight, torch_layer(4).in_proj_weight)


def test_measures_match_a_loop_over_the_keys() -> None:
    x, mha = padded_batch(2)
    got = wrong_answers(2)
    n, d = LENGTHS[1], x.shape[-1]
    sums, shares = [], []
    for i in range(n):  # the real queries of the length-3 sequence, one softmax at a time
        scores = [float(x[1, i] @ x[1, j]) / math.sqrt(d) for j in range(L)]
        exps = [math.exp(s - max(scores)) for s in scores]
        sums.append(sum(exps[:n]) / sum(exps))  # weights left after zeroing padded keys
        shares.append(sum(exps[n:]) / sum(exps))  # a real query's weight on padding
    assert got["after_softmax_row_sum"] == pytest.approx(max(sums), rel=1e-5)
    assert got["query_mask_share"] == pytest.approx(min(shares), rel=1e-4)
    with torch.no_grad():
        out, _ = mha(x, mask=key_mask(padding_mask(torch.tensor(LENGTHS), L)))
        naive = max(
            float((out[b].mean(0) - mha(x[b : b + 1, :k])[0][0].mean(0)).abs().max())
            for b, k in enumerate(LENGTHS)
        )
    assert got["naive_pooling_error"] == pytest.approx(naive, rel=1e-5)


def test_the_inverted_mask_gives_no_error_so_the_unconverted_one_is_the_bug() -> None:
    x, _ = padded_batch(0)
    pad = padding_mask(torch.tensor(LENGTHS), L)
    theirs = torch_layer(0)
    ours = MultiHeadAttention.from_torch(theirs).eval()
    with torch.no_grad():
        right, _ = theirs(x, x, x, key_padding_mask=~pad)
        mine, _ = ours(x, mask=key_mask(pad))
    assert (right - mine)[pad].abs().max() < 1e-5
    assert wrong_answers(0)["unconverted_error"] > 0.05


def test_the_claims_hold_for_the_chapters_seed() -> None:
    for claim in CLAIMS.values():
        claim.check(claim.measure(claim.chapter_seed))


@pytest.mark.parametrize("call", [lambda: padded_batch(-1), lambda: torch_layer(-1)])
def test_a_negative_seed_is_refused(call) -> None:
    with pytest.raises(ValueError, match="seed must be >= 0"):
        call()
