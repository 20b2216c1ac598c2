"""qkv.gpt against Hugging Face's GPT2LMHeadModel (tiny random config, nothing downloaded)."""

import dataclasses

import pytest
import torch

import qkv
from qkv.gpt import GPT, GPTConfig, KVCache, gpt_from_hf_state_dict, greedy_generate
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

V, D, H, N_LAYER, N_POS = 97, 36, 4, 3, 23  # odd sizes, all different
B, N = 3, 7
TINY = GPTConfig(vocab_size=V, n_positions=N_POS, n_embd=D, n_layer=N_LAYER, n_head=H)


def hf_gpt2(attn_implementation: str = "eager"):
    """A randomly initialised GPT2LMHeadModel in eval mode, every parameter perturbed.

    Hugging Face initialises biases to 0 and LayerNorms to (1, 0): random values make
    a bias or norm loaded into the wrong place visible.
    """
    config = transformers.GPT2Config(
        vocab_size=V,
        n_positions=N_POS,
        n_embd=D,
        n_layer=N_LAYER,
        n_head=H,
        bos_token_id=V - 1,
        eos_token_id=V - 1,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    return perturbed(transformers.GPT2LMHeadModel(config))


def ids(*shape: int, seed: int = 1) -> torch.Tensor:
    return random_ids(*shape, vocab_size=V, seed=seed)


def test_gpt_is_lazily_importable_and_config_matches_hugging_face_defaults():
    assert qkv.gpt.GPT is GPT
    ours, theirs = GPTConfig(), transformers.GPT2Config()
    for field in dataclasses.fields(GPTConfig):
        assert getattr(ours, field.name) == getattr(theirs, field.name), field.name
    assert ours.d_ff == 4 * ours.n_embd


def test_gpt2_small_has_124m_parameters():
    with torch.device("meta"):
        model = GPT(GPTConfig())
    assert count_parameters(model) == 124_439_808  # GPT-2 small, tied output layer
    assert model.lm_head.weight is model.wte.weight


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_logits_equal_hugging_face(attn_implementation, device):
    theirs = hf_gpt2(attn_implementation).to(device)
    ours = gpt_from_hf_state_dict(theirs.state_dict(), TINY)
    assert not ours.training and ours.wte.weight.device.type == device.type
    x = ids(B, N).to(device)
    with torch.no_grad():
        expected = theirs(x).logits
        logits, cache = ours(x)
    assert logits.shape == (B, N, V) and cache.length == N
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    full = ids(B, N_POS, seed=2).to(device)  # every position, up to n_positions
    with torch.no_grad():
        torch.testing.assert_close(ours(full)[0], theirs(full).logits, atol=1e-5, rtol=0)


def test_logits_equal_hugging_face_with_a_padding_mask(device):
    theirs = hf_gpt2().to(device)
    ours = gpt_from_hf_state_dict(theirs.state_dict(), TINY)
    lengths = torch.tensor([7, 4, 1])
    mask = (torch.arange(N) < lengths[:, None]).long().to(device)  # right padding, 1 = real
    x = ids(B, N).to(device)
    with torch.no_grad():
        expected = theirs(x, attention_mask=mask).logits
        logits, _ = ours(x, attention_mask=mask)
        unmasked, _ = ours(x)
    real = mask.bool()
    torch.testing.assert_close(logits[real], expected[real], atol=1e-5, rtol=0)
    for b, n in enumerate(lengths.tolist()):  # the real tokens equal the unpadded run
        with torch.no_grad():
            alone = ours(x[b : b + 1, :n])[0][0]
        torch.testing.assert_close(logits[b, :n], alone, atol=1e-5, rtol=0)
    # right padding cannot change real tokens under a causal mask; a padded middle key can
    mask[0, 2] = 0
    with torch.no_grad():
        holed = ours(x, attention_mask=mask)[0]
        expected = theirs(x, attention_mask=mask).logits
    torch.testing.assert_close(holed[0, 3:], expected[0, 3:], atol=1e-5, rtol=0)
    assert not torch.allclose(holed[0, 3:], unmasked[0, 3:], atol=1e-3)


def test_left_padding_needs_position_ids_to_match_each_prompt_alone(device):
    """Q23's follow-up: with left padding and no position ids the logits equal
    GPT2LMHeadModel's without position ids, but the real tokens sit at shifted positions;
    with Hugging Face's position ids (cumsum of the mask - 1) both equal each prompt alone."""
    theirs = hf_gpt2().to(device)
    ours = gpt_from_hf_state_dict(theirs.state_dict(), TINY)
    lengths = [7, 4, 1]
    out = check_left_padding(ours.to(device), theirs, lengths, N)
    for b, n in enumerate(lengths):
        if n < N:  # a padded row: without position ids its tokens sit n - N places later
            assert not torch.allclose(out["ours_shifted"][b, N - n :], out["alone"][b], atol=1e-2)


def test_left_padded_logits_with_the_cache_equal_the_full_pass_with_position_ids(device):
    model = gpt_from_hf_state_dict(hf_gpt2().state_dict(), TINY).to(device)
    check_cached_pass(model, [5, 1, 3, 1, 1, 1], atol=1e-5)


@pytest.mark.parametrize("use_cache", [True, False])
def test_left_padded_generation_equals_hugging_face_generate_and_each_prompt_alone(
    use_cache, device
):
    theirs = hf_gpt2().to(device)
    ours = gpt_from_hf_state_dict(theirs.state_dict(), TINY)
    lengths, steps = [7, 4, 1], 12
    x, mask = (t.to(device) for t in left_padded(lengths, N, vocab_size=V))
    expected, expected_logits = hf_greedy(theirs, x, steps, mask, pad_token_id=V - 1)
    before = mask.clone()
    got, logits = greedy_generate(
        ours, x, steps, attention_mask=mask, use_cache=use_cache, return_logits=True
    )
    assert torch.equal(got, expected)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    assert torch.equal(mask, before)  # the caller's mask is untouched
    for b, n in enumerate(lengths):  # each row gets the tokens of its prompt alone
        alone = greedy_generate(ours, x[b : b + 1, N - n :], steps)
        assert torch.equal(got[b, N:], alone[0, n:])
    # an all-ones mask is the unpadded path
    full = greedy_generate(ours, x, steps, attention_mask=torch.ones_like(x), use_cache=use_cache)
    assert torch.equal(full, greedy_generate(ours, x, steps, use_cache=use_cache))


def test_step_by_step_logits_with_the_cache_equal_the_full_forward(device):
    model = gpt_from_hf_state_dict(hf_gpt2().state_dict(), TINY).to(device)
    x = ids(B, N_POS).to(device)
    with torch.no_grad():
        full, _ = model(x)
        steps, cache = [], None
        for chunk in x.split([5, 1, 1, 3, *[1] * (N_POS - 10)], dim=1):  # prompt, then steps
            logits, new_cache = model(chunk, cache)
            assert cache is None or cache.length + chunk.shape[1] == new_cache.length
            steps.append(logits)
            cache = new_cache
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_the_cache_holds_keys_and_values_only(device):
    theirs = hf_gpt2().to(device)
    model = gpt_from_hf_state_dict(theirs.state_dict(), TINY)
    x = ids(B, N).to(device)
    with torch.no_grad():
        _, cache = model(x)
        hf_cache = theirs(x, use_cache=True).past_key_values
    assert {f.name for f in dataclasses.fields(KVCache)} == {"keys", "values", "owner"}
    assert len(cache.keys) == len(cache.values) == N_LAYER
    for layer in range(N_LAYER):  # the same tensors Hugging Face caches: k and v, never q
        theirs_layer = hf_cache.layers[layer]
        torch.testing.assert_close(cache.keys[layer], theirs_layer.keys, atol=1e-5, rtol=0)
        torch.testing.assert_close(cache.values[layer], theirs_layer.values, atol=1e-5, rtol=0)
    d_k = D // H
    assert cache.keys[0].shape == (B, H, N, d_k)
    assert cache.nbytes() == 2 * N_LAYER * B * H * N * d_k * 4  # float32
    qkv_bytes = sum(t.numel() * t.element_size() for t in (*cache.keys, *cache.values))
    assert cache.nbytes() == qkv_bytes


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_equals_hugging_face_generate(use_cache, device):
    theirs = hf_gpt2().to(device)
    ours = gpt_from_hf_state_dict(theirs.state_dict(), TINY)
    prompt = ids(B, 4, seed=3).to(device)
    expected, expected_logits = hf_greedy(theirs, prompt, 12, pad_token_id=V - 1)
    before = prompt.clone()
    got, logits = greedy_generate(ours, prompt, 12, use_cache=use_cache, return_logits=True)
    assert torch.equal(got, expected)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    assert torch.equal(prompt, before)  # the caller's tensor is untouched
    assert torch.equal(greedy_generate(ours, prompt, 12, use_cache=not use_cache), got)
    none, no_logits = greedy_generate(ours, prompt, 0, return_logits=True)
    assert torch.equal(none, prompt) and none is not prompt and no_logits.shape == (B, 0, V)


def test_an_old_cache_stays_valid_after_a_step():
    model = GPT(TINY).eval()
    x = ids(2, 6)
    with torch.no_grad():
        _, cache = model(x[:, :5])
        a, _ = model(x[:, 5:], cache)
        b, _ = model(x[:, 5:], cache)  # the same cache again: it was not extended in place
    assert cache.length == 5
    torch.testing.assert_close(a, b)


def test_bad_input_raises_clear_errors():
    model = GPT(TINY).eval()
    other = GPT(TINY).eval()
    with torch.no_grad():
        _, cache = model(ids(2, 20))
        _, foreign = other(ids(2, 3))
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 97\)"):
        model(torch.tensor([[1, 97]]))
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 97\)"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(TypeError, match="integer tensor of token ids"):
        model(torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"input_ids must be \(B, n\) with n >= 1, got \(2,\)"):
        model(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"input_ids must be \(B, n\) with n >= 1, got \(2, 0\)"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids has length 24 > the maximum of 23 positions"):
        model(ids(1, 24))
    with pytest.raises(ValueError, match=r"cache length 20 \+ 4 new tokens = 24 exceeds n_pos"):
        model(ids(2, 4), cache)
    with pytest.raises(ValueError, match="cache holds a batch of 2 sequences, input_ids 3"):
        model(ids(3, 1), cache)
    with pytest.raises(ValueError, match="cache was made by another model"):
        model(ids(2, 1), foreign)
    with pytest.raises(TypeError, match="cache must be a KVCache"):
        model(ids(2, 1), (cache.keys, cache.values))
    with pytest.raises(ValueError, match=r"attention_mask must be \(B, m0 \+ n\) = \(2, 21\)"):
        model(ids(2, 1), cache, attention_mask=torch.ones(2, 1))
    with pytest.raises(ValueError, match="only 0 and 1"):
        model(ids(2, 3), attention_mask=torch.full((2, 3), 2))
    with pytest.raises(ValueError, match=r"4 prompt tokens \+ max_new_tokens=20 = 24 exceeds"):
        greedy_generate(model, ids(1, 4), 20)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        greedy_generate(model, ids(1, 4), -1)
    with pytest.raises(TypeError, match="model must be a qkv.gpt.GPT"):
        greedy_generate(hf_gpt2(), ids(1, 4), 2)
    with pytest.raises(TypeError, match="input_ids must be an integer tensor of token ids"):
        greedy_generate(model, torch.ones(1, 4), 0)  # a float prompt was returned as is
    with pytest.raises(TypeError, match="token ids, got list"):
        greedy_generate(model, [[1, 2]], 2)
    # position ids: an integer (B, n) tensor of positions in [0, n_positions)
    x = ids(2, 3)
    with pytest.raises(
        TypeError, match=r"position_ids must be an integer tensor \(B, n\), got torch"
    ):
        model(x, position_ids=torch.zeros(2, 3))
    with pytest.raises(TypeError, match="position_ids must be an integer tensor"):
        model(x, position_ids=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="position_ids must be an integer tensor"):
        model(x, position_ids=[[0, 1, 2], [0, 1, 2]])
    with pytest.raises(
        ValueError, match=r"position_ids must be \(B, n\) = \(2, 3\) like input_ids, got \(3,\)"
    ):
        model(x, position_ids=torch.arange(3))
    with pytest.raises(ValueError, match=r"= \(2, 1\) like input_ids, got \(2, 21\)"):
        model(ids(2, 1), cache, position_ids=torch.arange(21).expand(2, -1))
    with pytest.raises(ValueError, match="position_ids must be >= 0, got a minimum of -1"):
        model(x, position_ids=torch.tensor([[0, 1, 2], [-1, 0, 1]]))
    with pytest.raises(ValueError, match=r"position_ids must be < n_positions=23 \(the learned"):
        model(x, position_ids=torch.tensor([[0, 1, 2], [21, 22, 23]]))
    # greedy_generate: the mask of a left-padded prompt, (B, n) of 0 and 1
    with pytest.raises(ValueError, match="attention_mask must end in 1 in every row: pad on the l"):
        greedy_generate(model, x, 2, attention_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]))
    with pytest.raises(ValueError, match=r"attention_mask must be \(B, m0 \+ n\) = \(2, 3\)"):
        greedy_generate(model, x, 2, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        greedy_generate(model, x, 2, attention_mask=torch.full((2, 3), 2))


def test_a_cache_from_a_deleted_model_is_refused_by_a_model_that_reuses_its_id(monkeypatch):
    # CPython gives a freed object's id to a later object; simulate that deterministically:
    # every object gets the same id, as a new model would after the old one is deleted.
    import qkv.gpt

    monkeypatch.setattr(qkv.gpt, "id", lambda obj: 1234, raising=False)
    model = GPT(TINY).eval()
    with torch.no_grad():
        _, cache = model(ids(1, 3))
    del model
    with pytest.raises(ValueError, match="cache was made by another model"):
        GPT(TINY).eval()(ids(1, 1), cache)


def test_bad_config_and_state_dict_raise_clear_errors():
    with pytest.raises(ValueError, match="n_embd=36 is not a multiple of n_head=5"):
        GPTConfig(vocab_size=V, n_embd=36, n_head=5)
    with pytest.raises(ValueError, match=r"attn_pdrop must be in \[0, 1\]"):
        GPTConfig(attn_pdrop=1.5)
    with pytest.raises(ValueError, match="vocab_size must be >= 1, got 0"):
        GPTConfig(vocab_size=0)
    with pytest.raises(TypeError, match="config must be a GPTConfig"):
        GPT(transformers.GPT2Config())
    state = dict(hf_gpt2().state_dict())
    state.pop("transformer.h.2.mlp.c_fc.bias")
    with pytest.raises(ValueError, match=r"missing \['h.2.mlp.c_fc.bias'\], unexpected \[\]"):
        gpt_from_hf_state_dict(state, TINY)
    smaller = dataclasses.replace(TINY, n_embd=40)
    with pytest.raises(ValueError, match=r"wte.weight has shape \(97, 36\), expected \(97, 40\)"):
        gpt_from_hf_state_dict(hf_gpt2().state_dict(), smaller)


def test_dropout_is_active_in_training_mode_only():
    model = GPT(dataclasses.replace(TINY, resid_pdrop=0.5, embd_pdrop=0.5, attn_pdrop=0.5))
    x = ids(2, 6)
    torch.manual_seed(0)
    a, b = model(x)[0], model(x)[0]
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0])
