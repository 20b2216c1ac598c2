"""qkv.llama against Hugging Face's LlamaForCausalLM (tiny random configs, nothing downloaded).

Tolerances: float32 ``atol=1e-5``. Float64 ``atol=2e-6``, not tighter, because Hugging Face's
Llama computes RMSNorm and the RoPE angles in float32 even in a float64 model
(``LlamaRMSNorm.forward`` casts to float32; ``LlamaRotaryEmbedding`` keeps float32 frequencies);
qkv's float64 model stays in float64 throughout.
"""

import dataclasses
import math
import types

import pytest
import torch

import qkv
from qkv.attention import MultiHeadAttention
from qkv.gpt import greedy_generate
from qkv.kvcache import kv_cache_bytes
from qkv.llama import Llama, LlamaConfig, llama_config, llama_from_hf_state_dict
from qkv.positions import check_rope_scaling, rope_frequencies, rotary_angles
from qkv.tying import count_parameters

from .reference import (
    check_cached_pass,
    check_left_padding,
    hf_greedy,
    left_padded,
    perturbed,
    random_ids,
)

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

V, D, H, H_KV, D_FF, N_LAYER, MAX_POS = 97, 36, 6, 2, 37, 2, 16  # odd sizes, all different
B, N = 3, 7
TOL = {torch.float32: 1e-5, torch.float64: 2e-6}
VARIANTS = {  # name -> LlamaConfig fields that differ from the tiny default (GQA, 3 heads a group)
    "GQA": {},
    "MQA": {"num_key_value_heads": 1},
    "MHA": {"num_key_value_heads": H},
    "tied": {"tie_word_embeddings": True},
    "head_dim": {"head_dim": 10, "num_attention_heads": 4, "num_key_value_heads": 4},
}


def hf_llama(dtype=torch.float32, attn_implementation="eager", rope=None, **fields):
    """A randomly initialised LlamaForCausalLM in eval mode, every parameter perturbed.

    Hugging Face initialises RMSNorm gains to 1: random values make a gain loaded into the
    wrong place visible. ``rope``: the ``rope_parameters`` (transformers 5's name).
    """
    sizes = dict(
        vocab_size=V,
        hidden_size=D,
        intermediate_size=D_FF,
        num_hidden_layers=N_LAYER,
        num_attention_heads=H,
        num_key_value_heads=H_KV,
        max_position_embeddings=MAX_POS,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=None,
    )
    config = transformers.LlamaConfig(
        **(sizes | fields),
        rope_parameters={"rope_theta": 100.0, **(rope or {})},
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    return perturbed(transformers.LlamaForCausalLM(config)).to(dtype)


def ours_from(theirs) -> Llama:
    return llama_from_hf_state_dict(theirs.state_dict(), LlamaConfig.from_hf(theirs.config))


def ids(*shape: int, seed: int = 1) -> torch.Tensor:
    return random_ids(*shape, vocab_size=V, seed=seed)


def test_llama_is_lazily_importable_and_config_matches_hugging_face_defaults():
    assert qkv.llama.Llama is Llama
    ours, theirs = LlamaConfig(), transformers.LlamaConfig()
    for field in dataclasses.fields(LlamaConfig):
        if field.name not in ("rope_theta", "rope_scaling"):
            assert getattr(ours, field.name) == getattr(theirs, field.name), field.name
    assert theirs.rope_parameters == {"rope_type": "default", "rope_theta": ours.rope_theta}
    assert LlamaConfig.from_hf(theirs) == ours and ours.rope_scaling is None
    # transformers 4 kept rope_theta and rope_scaling as attributes: read those too
    old = types.SimpleNamespace(
        **dataclasses.asdict(ours)
        | {"rope_theta": 5e5, "rope_scaling": {"type": "linear", "factor": 2}}
    )
    assert LlamaConfig.from_hf(old).rope_scaling == {"rope_type": "linear", "factor": 2.0}
    assert LlamaConfig.from_hf(old).rope_theta == 5e5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_equal_hugging_face(variant, dtype, device):
    theirs = hf_llama(dtype, **VARIANTS[variant]).to(device)
    ours = ours_from(theirs)
    assert not ours.training and ours.lm_head.weight.dtype == dtype
    assert (ours.lm_head.weight is ours.embed_tokens.weight) == (variant == "tied")
    assert count_parameters(ours) == theirs.num_parameters()
    x = ids(B, 2 * MAX_POS + 3).to(device)  # RoPE has no table: past max_position_embeddings too
    with torch.no_grad():
        logits, cache = ours(x)
        expected = theirs(x).logits
    assert logits.shape == (B, x.shape[1], V) and logits.dtype == dtype
    torch.testing.assert_close(logits, expected, atol=TOL[dtype], rtol=0)


def test_logits_equal_hugging_face_sdpa_attention():
    theirs = hf_llama(attn_implementation="sdpa")
    x = ids(B, N)
    with torch.no_grad():
        torch.testing.assert_close(ours_from(theirs)(x)[0], theirs(x).logits, atol=1e-5, rtol=0)


def test_step_by_step_logits_with_the_cache_equal_the_full_forward(device):
    model = ours_from(hf_llama(torch.float64)).to(device)
    x = ids(B, 2 * MAX_POS).to(device)
    with torch.no_grad():
        full, _ = model(x)
        steps, cache = [], None
        for chunk in x.split([5, 1, 3, *[1] * (x.shape[1] - 9)], dim=1):  # prompt, then steps
            logits, cache = model(chunk, cache)
            steps.append(logits)
    assert cache.length == x.shape[1]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-10, rtol=0)


def test_the_cache_holds_the_kv_heads_only_as_hugging_face_does():
    theirs = hf_llama(torch.float64)
    model = ours_from(theirs)
    x = ids(B, N)
    with torch.no_grad():
        _, cache = model(x)
        hf_cache = theirs(x, use_cache=True).cache
    d_k = D // H
    assert cache.keys[0].shape == cache.values[0].shape == (B, H_KV, N, d_k)  # GQA: 2 heads, not 6
    assert cache.nbytes() == kv_cache_bytes(
        N_LAYER, H_KV, d_k, N, bytes_per_element=8, batch_size=B
    )  # Q23's formula
    for layer in range(N_LAYER):  # Hugging Face's rotated keys, features in its pair order
        hf_keys = hf_cache.layers[layer].keys  # (B, H_KV, N, d_k), pairs (i, i + d_k / 2)
        hf_keys = hf_keys.unflatten(-1, (2, d_k // 2)).transpose(-1, -2).flatten(-2)
        torch.testing.assert_close(cache.keys[layer], hf_keys, atol=2e-6, rtol=0)
        torch.testing.assert_close(
            cache.values[layer], hf_cache.layers[layer].values, atol=2e-6, rtol=0
        )


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_equals_hugging_face_generate(use_cache):
    theirs = hf_llama()
    ours = ours_from(theirs)
    prompt = ids(B, 4, seed=3)
    steps = 2 * MAX_POS  # RoPE has no table of positions: generate past max_position_embeddings
    expected, expected_logits = hf_greedy(theirs, prompt, steps, pad_token_id=0)
    got, logits = greedy_generate(ours, prompt, steps, use_cache=use_cache, return_logits=True)
    assert torch.equal(got, expected)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    none, no_logits = greedy_generate(ours, prompt, 0, return_logits=True)
    assert torch.equal(none, prompt) and no_logits.shape == (B, 0, V)


def test_left_padding_with_position_ids_equals_hugging_face_and_each_prompt_alone(device):
    # float32: in float64, transformers 5.24's eager Llama returns NaN logits for the real
    # tokens of a left-padded row (its padded queries see no key; their NaN reaches the values)
    theirs = hf_llama().to(device)
    ours = ours_from(theirs)
    lengths = [7, 4, 1]
    out = check_left_padding(ours.to(device), theirs, lengths, N)
    for b, n in enumerate(lengths):
        # without position ids a row's tokens all sit N - n places later: RoPE's scores depend
        # on j - i only, so this changes nothing but rounding (GPT's learned table would)
        torch.testing.assert_close(
            out["ours_shifted"][b, N - n :], out["alone"][b], atol=1e-5, rtol=0
        )
    # positions that are not a shift of 0 .. n - 1 do change the logits, as in Hugging Face
    x = ids(B, N).to(device)
    scattered = torch.randint(0, 3 * MAX_POS, x.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = ours(x, position_ids=scattered.to(device))[0]
        expected = theirs(x, position_ids=scattered.to(device)).logits
        plain = ours(x)[0]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(logits[:, 1:], plain[:, 1:], atol=1e-3)


def test_left_padded_logits_with_the_cache_equal_the_full_pass_with_position_ids(device):
    model = ours_from(hf_llama(torch.float64)).to(device)
    check_cached_pass(model, [5, 1, 3, *[1] * (2 * MAX_POS - 9)], atol=1e-10)


@pytest.mark.parametrize("rope", [None, {"rope_type": "dynamic", "factor": 2.0}])
@pytest.mark.parametrize("use_cache", [True, False])
def test_left_padded_generation_equals_hugging_face_generate_and_each_prompt_alone(use_cache, rope):
    theirs = hf_llama(rope=rope)
    ours = ours_from(theirs)
    # every row padded: the longest position + 1 (which "dynamic" scaling follows) is not the
    # sequence length
    lengths, steps = [6, 4, 1], 2 * MAX_POS  # past max_position_embeddings
    x, mask = left_padded(lengths, N, vocab_size=V)
    expected, expected_logits = hf_greedy(
        theirs, x, steps, mask, pad_token_id=0, use_cache=use_cache
    )
    got, logits = greedy_generate(
        ours, x, steps, attention_mask=mask, use_cache=use_cache, return_logits=True
    )
    assert torch.equal(got, expected)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    if rope is None:  # "dynamic" frequencies follow the batch's longest row, not each row's
        for b, n in enumerate(lengths):  # each row gets the tokens of its prompt alone
            alone = greedy_generate(ours, x[b : b + 1, N - n :], steps, use_cache=use_cache)
            assert torch.equal(got[b, N:], alone[0, n:])


# ---------------------------------------------------------------- RoPE scaling

SCALINGS = {
    "linear": {"rope_type": "linear", "factor": 2.5},
    "dynamic": {"rope_type": "dynamic", "factor": 3.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096},
    "yarn, no truncation, own betas": {
        "rope_type": "yarn",
        "factor": 8.0,
        "beta_fast": 16.0,
        "beta_slow": 2.0,
        "truncate": False,
        "original_max_position_embeddings": 2048,
    },
    "yarn, mscale ratio": {
        "rope_type": "yarn",
        "factor": 40.0,
        "mscale": 0.707,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
    },
    "llama3": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
}


@pytest.mark.parametrize("name", SCALINGS)
def test_rope_frequencies_equal_hugging_face(name):
    scaling = SCALINGS[name]
    length = int(scaling["factor"] * scaling.get("original_max_position_embeddings", 4096))
    config = transformers.LlamaConfig(
        hidden_size=4096,
        num_attention_heads=32,
        max_position_embeddings=length,
        rope_parameters={**scaling, "rope_theta": 10000.0},
    )
    for seq_len in (None, 3 * length):  # "dynamic" grows its base past max_position_embeddings
        kwargs = {} if seq_len is None else {"seq_len": seq_len}
        expected, factor = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](config, None, **kwargs)
        inv_freq, attention_factor = rope_frequencies(
            128, scaling=scaling, max_position_embeddings=length, seq_len=seq_len
        )
        assert inv_freq.shape == (64,) and inv_freq.dtype == torch.float64
        torch.testing.assert_close(inv_freq.float(), expected, atol=0, rtol=1e-6)
        assert attention_factor == pytest.approx(factor, rel=1e-12)
    plain, _ = rope_frequencies(128)
    assert not torch.allclose(inv_freq, plain)  # every rescaling changes some frequency


def test_rope_scalings_do_what_the_papers_say():
    plain, _ = rope_frequencies(128)
    linear, _ = rope_frequencies(128, scaling=SCALINGS["linear"])
    torch.testing.assert_close(linear, plain / 2.5)  # Position Interpolation: every theta / s
    yarn, factor = rope_frequencies(128, scaling=SCALINGS["yarn"])
    wavelength_turns = 4096 * plain / (2 * math.pi)  # turns of each pair over the trained length
    assert torch.equal(yarn[wavelength_turns > 32], plain[wavelength_turns > 32])  # fast: kept
    slow = wavelength_turns < 1
    torch.testing.assert_close(yarn[slow], plain[slow] / 4.0)  # slow: interpolated
    assert factor == pytest.approx(0.1 * math.log(4.0) + 1)  # sqrt(1/t), YaRN
    same, _ = rope_frequencies(
        128, scaling=SCALINGS["dynamic"], max_position_embeddings=4096, seq_len=4096
    )
    assert torch.equal(same, plain)  # dynamic changes nothing up to the trained length
    longer, _ = rope_frequencies(
        128, scaling=SCALINGS["dynamic"], max_position_embeddings=4096, seq_len=8192
    )
    assert longer[0] == plain[0] and longer[-1] == pytest.approx(plain[-1] / (3 * 2 - 2))
    llama3, factor = rope_frequencies(128, scaling=SCALINGS["llama3"])
    wavelength = 2 * math.pi / plain  # Llama 3.1: short wavelengths kept, long ones / 8
    assert torch.equal(llama3[wavelength < 8192 / 4], plain[wavelength < 8192 / 4])
    torch.testing.assert_close(llama3[wavelength > 8192], plain[wavelength > 8192] / 8)
    middle = (wavelength > 8192 / 4) & (wavelength < 8192)
    assert middle.any() and factor == 1.0
    assert ((llama3[middle] < plain[middle]) & (llama3[middle] > plain[middle] / 8)).all()


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "linear", "factor": 2.0},
        {"rope_type": "dynamic", "factor": 2.0},
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": MAX_POS // 4},
        {
            "rope_type": "llama3",
            "factor": 4.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 2 * MAX_POS,
        },
    ],  # one pair kept, two blended, three /4
    ids=["linear", "dynamic", "yarn", "llama3"],
)
def test_scaled_logits_equal_hugging_face_beyond_the_trained_length(rope):
    theirs = hf_llama(torch.float64, rope=rope, num_attention_heads=3, num_key_value_heads=1)
    ours = ours_from(theirs)  # head_dim 12: six frequencies, so YaRN's ramp has a middle
    assert ours.config.rope_scaling["rope_type"] == rope["rope_type"]
    x = ids(B, 3 * MAX_POS)
    with torch.no_grad():  # a fresh Hugging Face model: its "dynamic" frequencies keep state
        expected = theirs(x).logits
        logits, _ = ours(x)
        plain = llama_from_hf_state_dict(
            theirs.state_dict(), dataclasses.replace(ours.config, rope_scaling=None)
        )(x)[0]
    torch.testing.assert_close(logits, expected, atol=2e-6, rtol=0)
    assert not torch.allclose(logits, plain, atol=1e-3)  # the scaling is not ignored


@pytest.mark.parametrize("use_cache", [True, False])
def test_dynamic_scaling_generation_equals_hugging_face_with_and_without_the_cache(use_cache):
    theirs = hf_llama(rope={"rope_type": "dynamic", "factor": 2.0})
    ours = ours_from(theirs)
    prompt = ids(B, MAX_POS - 4, seed=4)
    expected, expected_logits = hf_greedy(theirs, prompt, 12, pad_token_id=0, use_cache=use_cache)
    got, logits = greedy_generate(ours, prompt, 12, use_cache=use_cache, return_logits=True)
    assert torch.equal(got, expected)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    # Past max_position_embeddings the cache no longer equals the full pass: its keys keep the
    # frequencies of the step that rotated them, while a full pass re-rotates every key.
    _, other = greedy_generate(ours, prompt, 12, use_cache=not use_cache, return_logits=True)
    within = MAX_POS - prompt.shape[1] + 1  # steps whose sequence fits in 16 positions
    torch.testing.assert_close(other[:, :within], logits[:, :within], atol=1e-5, rtol=0)
    assert not torch.allclose(other[:, within:], logits[:, within:], atol=1e-4)


# ---------------------------------------------------------------- counting on meta


def test_llama_2_7b_counted_on_the_meta_device_equals_hugging_face_and_the_formula():
    config = llama_config("Llama-2-7B")
    with torch.device("meta"):
        ours = Llama(config)
        theirs = transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                **{
                    f.name: getattr(config, f.name)
                    for f in dataclasses.fields(config)
                    if f.name not in ("rope_theta", "rope_scaling")
                }
            )
        )
    assert all(p.is_meta for p in ours.parameters())  # nothing allocated
    d, V_, L, d_ff = config.hidden_size, config.vocab_size, config.num_hidden_layers, 11008
    per_layer = 4 * d * d + 3 * d * d_ff + 2 * d  # W_q,k,v,o (no GQA) + SwiGLU + 2 RMSNorm gains
    assert count_parameters(ours) == theirs.num_parameters() == 2 * V_ * d + L * per_layer + d
    assert count_parameters(ours) == 6_738_415_616


@pytest.mark.parametrize("name", ["Llama-3-8B", "Llama-2-70B", "Llama-3-70B"])
def test_gqa_configurations_counted_on_meta_equal_the_formula(name):
    c = llama_config(name)
    with torch.device("meta"):
        model = Llama(c)
    d, d_kv = c.hidden_size, c.num_key_value_heads * c.head_dim
    per_layer = 2 * d * d + 2 * d * d_kv + 3 * d * c.intermediate_size + 2 * d
    assert count_parameters(model) == 2 * c.vocab_size * d + c.num_hidden_layers * per_layer + d


# ---------------------------------------------------------------- errors


def test_multi_head_attention_takes_a_head_width_of_its_own():
    mha = MultiHeadAttention(36, 5, n_kv_heads=1, d_k=8)  # 36 is not a multiple of 5: fine
    assert mha.w_q.weight.shape == (40, 36) and mha.w_k.weight.shape == (8, 36)
    assert mha(torch.randn(2, 3, 36))[0].shape == (2, 3, 36)
    with pytest.raises(ValueError, match="d_k must be"):
        MultiHeadAttention(36, 6, d_k=0)


def test_bad_config_raises_clear_errors():
    tiny = dict(vocab_size=V, hidden_size=D, intermediate_size=D_FF, num_attention_heads=H)
    with pytest.raises(ValueError, match="num_attention_heads=6 is not a multiple of num_key_v"):
        LlamaConfig(**tiny, num_key_value_heads=4)
    with pytest.raises(ValueError, match="hidden_size=36 is not a multiple of num_attention_he"):
        LlamaConfig(**tiny | {"num_attention_heads": 5})
    with pytest.raises(ValueError, match="head_dim must be even"):
        LlamaConfig(**tiny, head_dim=7)
    with pytest.raises(ValueError, match="rms_norm_eps must be a finite number > 0"):
        LlamaConfig(**tiny, rms_norm_eps=0.0)
    with pytest.raises(TypeError, match="tie_word_embeddings must be a bool"):
        LlamaConfig(**tiny, tie_word_embeddings=1)
    with pytest.raises(ValueError, match=r"rope_type'\] must be one of \['dynamic', 'linear', "):
        LlamaConfig(**tiny, rope_scaling={"rope_type": "longrope", "factor": 8.0})
    with pytest.raises(ValueError, match=r"'llama3' takes \['factor', 'high_freq_factor', 'low"):
        LlamaConfig(**tiny, rope_scaling={"rope_type": "llama3", "factor": 8.0})
    with pytest.raises(ValueError, match=r"high_freq_factor'\] must be > low_freq_factor, got 1"):
        LlamaConfig(
            **tiny,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1,
                "high_freq_factor": 1,
            },
        )
    with pytest.raises(ValueError, match=r"optionally \[\]; got keys \['beta_fast', 'factor'\]"):
        LlamaConfig(**tiny, rope_scaling={"rope_type": "linear", "factor": 2.0, "beta_fast": 3})
    with pytest.raises(ValueError, match=r"takes \['factor'\]"):
        LlamaConfig(**tiny, rope_scaling={"rope_type": "dynamic"})
    with pytest.raises(ValueError, match=r"rope_scaling\['factor'\] must be a finite number >= 1"):
        LlamaConfig(**tiny, rope_scaling={"rope_type": "linear", "factor": 0.5})
    with pytest.raises(TypeError, match="rope_scaling must be a dict or None, got str"):
        check_rope_scaling("linear")
    assert check_rope_scaling({"rope_type": "default"}) is None
    with pytest.raises(ValueError, match="hidden_act must be 'silu'"):
        LlamaConfig.from_hf(transformers.LlamaConfig(attention_bias=True))
    with pytest.raises(ValueError, match="name must be one of"):
        llama_config("Llama-4")
    with pytest.raises(TypeError, match="config must be a qkv.llama.LlamaConfig"):
        Llama(transformers.LlamaConfig())


def test_bad_rope_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="rope_type 'dynamic' needs max_position_embeddings"):
        rope_frequencies(8, scaling={"rope_type": "dynamic", "factor": 2.0})
    with pytest.raises(ValueError, match="d_k must be a positive even int"):
        rope_frequencies(7)
    with pytest.raises(ValueError, match=r"inv_freq must be a tensor of shape \(d_k / 2,\) = \(4"):
        rotary_angles(torch.arange(3), 8, inv_freq=torch.ones(3))


def test_bad_input_and_state_dict_raise_clear_errors():
    theirs = hf_llama()
    model, other = ours_from(theirs), ours_from(theirs)
    with torch.no_grad():
        _, cache = model(ids(2, 5))
        _, foreign = other(ids(2, 3))
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 97\)"):
        model(torch.tensor([[1, 97]]))
    with pytest.raises(TypeError, match="integer tensor of token ids"):
        model(torch.ones(1, 3))
    with pytest.raises(ValueError, match="cache holds a batch of 2 sequences, input_ids 3"):
        model(ids(3, 1), cache)
    with pytest.raises(ValueError, match="cache was made by another model"):
        model(ids(2, 1), foreign)
    with pytest.raises(TypeError, match="cache must be a KVCache from Llama.forward"):
        model(ids(2, 1), (cache.keys, cache.values))
    with pytest.raises(TypeError, match="model must be a qkv.gpt.GPT or a qkv.llama.Llama"):
        greedy_generate(theirs, ids(1, 4), 2)
    x = ids(2, 3)
    with pytest.raises(TypeError, match=r"position_ids must be an integer tensor \(B, n\)"):
        model(x, position_ids=torch.zeros(2, 3))
    with pytest.raises(
        ValueError, match=r"position_ids must be \(B, n\) = \(2, 3\) like input_ids"
    ):
        model(x, position_ids=torch.arange(3)[None])
    with pytest.raises(ValueError, match="position_ids must be >= 0, got a minimum of -2"):
        model(x, position_ids=torch.tensor([[0, 1, 2], [-2, -1, 0]]))
    with pytest.raises(ValueError, match=r"attention_mask must be \(B, m0 \+ n\) = \(2, 6\)"):
        model(ids(2, 1), cache, attention_mask=torch.ones(2, 1))
    with pytest.raises(ValueError, match="attention_mask must end in 1 in every row"):
        greedy_generate(model, x, 2, attention_mask=torch.tensor([[0, 1, 1], [1, 1, 0]]))
    far = torch.tensor([[1000, 1001, 1002]] * 2)  # RoPE has no table: any position >= 0 turns
    with torch.no_grad():
        assert torch.isfinite(model(x, position_ids=far)[0]).all()
    state = dict(theirs.state_dict())
    state.pop("model.layers.1.mlp.up_proj.weight")
    with pytest.raises(ValueError, match=r"missing \['layers.1.mlp.up_proj.weight'\], unexp"):
        llama_from_hf_state_dict(state, LlamaConfig.from_hf(theirs.config))
    wider = dataclasses.replace(LlamaConfig.from_hf(theirs.config), intermediate_size=40)
    with pytest.raises(ValueError, match=r"layers.0.mlp.gate_proj.weight has shape \(37, 36\), ex"):
        llama_from_hf_state_dict(theirs.state_dict(), wider)
