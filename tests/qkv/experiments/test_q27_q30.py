"""The helpers of the Q27 and Q30 experiment modules that the chapters' assertions rest on."""

from __future__ import annotations

import pytest
import torch

from qkv.experiments import q27_compute_and_memory as q27
from qkv.experiments import q30_llama_block as q30
from qkv.llama import Llama, LlamaConfig, llama_config
from qkv.markov import MarkovLanguage
from qkv.tasks import N_SPECIAL


def test_the_optimum_equals_the_true_chains_loss_on_samples() -> None:
    language = MarkovLanguage(**q30.LANGUAGE, seed=3)
    words = language.sample(4000, q30.LENGTH, generator=0) - N_SPECIAL
    probs = language.transition[words[:, :-1], words[:, 1:]]  # (B, L - 1)
    empirical = -torch.log(probs.double()).mean().item()  # the chain itself as the model
    assert abs(empirical - q30.optimal_loss(language)) < 0.01


def test_swiglu_width_follows_metas_rounding() -> None:
    assert q30.swiglu_hidden_size(4096) == llama_config("Llama-2-7B").intermediate_size
    assert q30.swiglu_hidden_size(4096, multiple_of=1) == 10922  # int(2/3 * 4 * 4096)
    assert q30.swiglu_hidden_size(48, multiple_of=1) == 128  # 8d/3 exactly
    with pytest.raises(ValueError, match="multiple of 3"):
        q30.ffn_counts(50)


def test_tokens_that_fit_beside_the_weights() -> None:
    c = LlamaConfig(
        vocab_size=10,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    weights = q27.llama_parameters(c)["total"] * 2
    per_token = 2 * 2 * 1 * 4 * 2  # K and V, layers, K/V heads, d_k, bytes
    assert q27.tokens_that_fit(weights + 10 * per_token + 3, c) == 10
    assert q27.tokens_that_fit(weights - 1, c) == 0  # the weights alone do not fit
    assert q27.tokens_that_fit(weights + 10 * per_token, c, reserve=per_token) == 9


def test_decoding_one_sequence_does_about_one_flop_per_byte_in_bf16() -> None:
    c = llama_config("Llama-2-7B")
    assert 0.9 < q27.intensity(c, 1, 1) < 1.1  # 2 FLOPs per 2-byte weight
    assert q27.intensity(c, 1, 2048) > 1000  # prefill reuses each weight for every token
    # A huge batch amortises the weights, never the caches: per sequence, the FLOPs of one
    # token over the bytes of its own cache (attention alone: one FLOP per cached byte).
    m, L, hd = 4097, c.num_hidden_layers, c.num_attention_heads * c.head_dim
    ceiling = (2 * q27.matmul_weights(c) + 4 * L * m * hd) / (2 * 2 * L * hd * m)
    assert q27.intensity(c, 10**6, 1, past=4096) == pytest.approx(ceiling, rel=1e-3)


def test_counted_flops_see_the_attention_products() -> None:
    torch.manual_seed(0)
    c = LlamaConfig(
        vocab_size=11,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    counted = q27.counted_flops(Llama(c).eval(), torch.zeros(1, 5, dtype=torch.long))
    assert counted["attention"] == q27.forward_flops(c, 1, 5)["attention"] > 0
