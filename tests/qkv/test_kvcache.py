"""qkv.kvcache: the cache-size formula against real caches, and the step timer."""

import pytest
import torch

from qkv.gpt import GPT, GPTConfig
from qkv.kvcache import decode_step_seconds, kv_cache_bytes

TINY = GPTConfig(vocab_size=97, n_positions=23, n_embd=36, n_layer=3, n_head=4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_formula_equals_the_bytes_a_real_cache_holds(dtype, device):
    model = GPT(TINY).to(device=device, dtype=dtype).eval()
    ids = torch.randint(0, 97, (5, 11), device=device)
    with torch.no_grad():
        _, cache = model(ids)
    held = sum(t.untyped_storage().nbytes() for t in (*cache.keys, *cache.values))
    expected = kv_cache_bytes(3, 4, 9, 11, bytes_per_element=dtype.itemsize, batch_size=5)
    assert cache.nbytes() == held == expected


def test_formula_equals_hugging_faces_cache():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=97, n_positions=23, n_embd=36, n_layer=3, n_head=4)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        cache = model(torch.randint(0, 97, (2, 7)), use_cache=True).past_key_values
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    held = sum(t.numel() * t.element_size() for t in tensors)
    assert held == kv_cache_bytes(3, 4, 9, 7, bytes_per_element=4, batch_size=2)


def test_formula_rejects_bad_sizes():
    assert kv_cache_bytes(1, 1, 1, 0) == 0
    with pytest.raises(ValueError, match="n_kv_heads must be >= 1"):
        kv_cache_bytes(2, 0, 64, 10)
    with pytest.raises(TypeError, match="tokens must be an int"):
        kv_cache_bytes(2, 2, 64, 10.0)


def test_decode_step_seconds_times_every_position():
    model = GPT(TINY).eval()
    ids = torch.randint(0, 97, (1, 20))
    seconds = decode_step_seconds(model, ids, [1, 10, 19], repeats=2)
    assert set(seconds) == {"cache", "no cache"}
    assert all(len(v) == 3 and all(s >= 0 for s in v) for v in seconds.values())
    with pytest.raises(ValueError, match=r"positions must lie in \[1, 19\]"):
        decode_step_seconds(model, ids, [0, 5])
    with pytest.raises(ValueError, match=r"positions must lie in \[1, 19\]"):
        decode_step_seconds(model, ids, [20])
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        decode_step_seconds(model, ids, [5], repeats=0)
