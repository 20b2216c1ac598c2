"""qkv.experiments.q07_attention_variants: every score against a brute-force loop."""

import math

import pytest
import torch

from qkv.experiments.q07_attention_variants import compare_scores, mean_max_weight


def test_scores_match_a_loop_over_pairs():
    out = compare_scores(3, n=5, m=7, d=6, d_hidden=4)
    x = out["inputs"]
    q, k, w_q, w_k, w, W = (x[name] for name in ("q", "k", "w_q", "w_k", "w", "W"))
    for i in range(5):
        for j in range(7):
            expected = {
                "additive": w @ torch.tanh(w_q @ q[i] + w_k @ k[j]),
                "dot": q[i] @ k[j],
                "general": q[i] @ W @ k[j],
                "scaled dot": q[i] @ k[j] / math.sqrt(6),
            }
            for name, value in expected.items():
                assert torch.allclose(out["scores"][name][i, j], value, atol=1e-5), name


def test_weights_are_the_softmax_of_the_scores():
    out = compare_scores(0, n=4, m=3, d=8, d_hidden=5)
    for name, s in out["scores"].items():
        assert torch.allclose(out["weights"][name], s.softmax(-1), atol=1e-6), name


def test_seeded_and_leaves_global_state_alone():
    before = torch.get_rng_state()
    a, b = compare_scores(7), compare_scores(7)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a["scores"]["dot"], b["scores"]["dot"])
    assert not torch.equal(a["scores"]["dot"], compare_scores(8)["scores"]["dot"])


def test_mean_max_weight_bounds_and_errors():
    for name in ("additive", "dot", "general", "scaled dot"):
        assert 1 / 9 <= mean_max_weight(1, name) <= 1
    with pytest.raises(ValueError, match="score must be one of"):
        mean_max_weight(0, "cosine")
    with pytest.raises(ValueError, match="d_hidden >= 1"):
        compare_scores(0, d=0)


def test_the_chapters_experiments_are_seeded_and_measure_what_they_say():
    from qkv.experiments.q07_attention_variants import (
        alibi_distances,
        dot_score_std,
        linear_vs_softmax,
        mla_absorption,
        rope_shift,
    )

    assert dot_score_std(3) == dot_score_std(3) and 4 < dot_score_std(3) < 12
    shifted = rope_shift(1, d_k=8, shifts=(0, 5))
    assert shifted["rope_range"] < 1e-4 < shifted["absolute_range"]
    alibi = alibi_distances(2, n_heads=4, L=8, d_k=8)
    assert alibi["alibi"].shape == (4,) and (alibi["alibi"].diff() > 0).all()
    assert torch.allclose(alibi["weights"].sum(-1), torch.ones(1, 4, 8))
    compared = linear_vs_softmax(0, n=64, d_k=8)
    assert compared["chunked"] < 1e-5 and compared["regrouped"] < 1e-4
    assert compared["linear_vs_softmax"] > 1e-2
    mla = mla_absorption(0, L=4, d_in=8, n_h=2, d_h=4, d_c=6, d_r=2, L_fit=20)
    assert mla["cached"] == 8 and mla["explicit_numbers"] == 16
    assert mla["absorbed_error"] < 1e-12 and mla["fit_plain_error"] < 1e-10
    assert mla["fit_rope_error"] > 0.1
    with pytest.raises(ValueError, match="L_fit must exceed d_c"):
        mla_absorption(0, d_c=12, L_fit=12)
