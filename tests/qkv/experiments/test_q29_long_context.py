"""The rescalings that Q29's toy comparison rests on, against independent references."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from qkv.experiments import q29_long_context as q29
from qkv.positions import rope_frequencies
from qkv.stack import TransformerStack

D_K = 8  # the toy's head width: four rotation pairs


def _frequencies(method: str, factor: float) -> tuple[torch.Tensor, float]:
    base, scaling = q29.toy_rope(method, factor, D_K)
    return rope_frequencies(D_K, base=base, scaling=scaling, max_position_embeddings=q29.TRAIN_LEN)


@pytest.mark.parametrize("factor", [2.0, 4.0])
def test_the_toys_yarn_is_hugging_faces(factor: float) -> None:
    _, scaling = q29.toy_rope("YaRN", factor, D_K)
    config = transformers.LlamaConfig(
        hidden_size=4 * D_K,
        num_attention_heads=4,
        max_position_embeddings=q29.TRAIN_LEN,
        rope_parameters={"rope_theta": q29.ROPE_BASE, **scaling},
    )
    theirs, their_factor = ROPE_INIT_FUNCTIONS["yarn"](config, None)
    ours, our_factor = _frequencies("YaRN", factor)
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-6, atol=0)
    assert our_factor == pytest.approx(0.1 * math.log(factor) + 1)  # Peng et al. Eq. 22
    assert our_factor == pytest.approx(their_factor)
    assert _frequencies("YaRN without temperature", factor)[1] == 1.0


@pytest.mark.parametrize("factor", [2.0, 4.0])
def test_the_eq18_variant_is_the_papers_ramp_in_the_number_of_turns(factor: float) -> None:
    """Peng et al. Eq. 17-20 written out: r = L / lambda, gamma linear in r from 1 to 32."""
    theta = q29.ROPE_BASE ** -(torch.arange(0, D_K, 2, dtype=torch.float64) / D_K)
    r = q29.TRAIN_LEN / (2 * math.pi / theta)
    gamma = ((r - 1) / (32 - 1)).clamp(0, 1)
    expected = (1 - gamma) * theta / factor + gamma * theta
    ours, attention_factor = _frequencies("by-parts, ramp of Eq. 18", factor)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=0)
    assert attention_factor == 1.0


def test_ntk_aware_keeps_the_fastest_pair_and_slows_the_slowest_by_the_factor() -> None:
    plain, _ = _frequencies("plain RoPE", 4.0)
    ntk, _ = _frequencies("NTK-aware", 4.0)
    assert ntk[0] == plain[0]
    assert ntk[-1] == pytest.approx(plain[-1] / 4.0)  # Peng et al. Appendix A.1
    pi, _ = _frequencies("PI", 4.0)
    torch.testing.assert_close(pi, plain / 4.0)


def test_the_toy_table_shows_which_pairs_each_method_keeps() -> None:
    table = q29.toy_frequencies(factor=4.0, d_k=D_K)
    assert table["YaRN"] == [1.0, 0.25, 0.25, 0.25]  # pair 0 kept, the rest as PI
    assert table["PI"] == [0.25] * 4
    assert 0.25 < table["by-parts, ramp of Eq. 18"][0] < 0.3


def test_a_rescaled_copy_leaves_the_trained_model_alone() -> None:
    torch.manual_seed(0)
    model = TransformerStack(10, 32, 4, 64, 1, norm_first=True, max_len=16, position="rope")
    copy = q29._rescaled(model, "YaRN", 4.0)
    assert model.rope_scaling is None and copy.rope_scaling["rope_type"] == "yarn"
    ids = torch.randint(0, 10, (2, 64))
    assert not torch.allclose(model(ids), copy(ids))


def test_errors() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        q29.toy_rope("ALiBi", 4.0, D_K)
    with pytest.raises(ValueError, match="factor must be >= 1"):
        q29.toy_rope("PI", 0.5, D_K)
    learned = TransformerStack(10, 32, 4, 64, 1, norm_first=True, position="learned")
    with pytest.raises(TypeError, match="RoPE"):
        q29._rescaled(learned, "PI", 2.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        q29.extension_methods(seed=1.5)
