"""Q29 (long context): which RoPE pairs leave their trained range, and what each rescaling does.

Everything here is computed from published configurations (:func:`qkv.llama.llama_config`)
and :func:`qkv.positions.rope_frequencies`, whose rescalings equal Hugging Face's
(``tests/qkv/test_llama.py``); the trained-model evidence is Q21's experiment
(``qkv.experiments.q21_positional_encodings``), which this chapter quotes.

- :func:`wavelengths`: per configuration, how many rotation pairs complete less than
  one turn over the training length (their angles beyond it were never seen).
- :func:`extension_table`: for a context ``factor`` times the training length, how
  many pairs reach angles never seen in training, and how far apart two neighbouring
  tokens are in the fastest pair, under plain RoPE, PI, "NTK-aware" (dynamic) scaling
  and YaRN.
"""

from __future__ import annotations

import math

from qkv.experiments import claims
from qkv.kvcache import kv_cache_bytes
from qkv.llama import llama_config
from qkv.positions import rope_frequencies

CONFIGS = ("Llama-2-7B", "Llama-3-8B")
# name: rope_scaling dict for a context `factor` times the training length
SCALINGS: dict[str, dict[str, object] | None] = {
    "plain RoPE": None,
    "PI (linear)": {"rope_type": "linear"},
    "NTK-aware (dynamic)": {"rope_type": "dynamic"},
    "YaRN": {"rope_type": "yarn"},
}


def _head(name: str) -> tuple[int, float, int]:
    config = llama_config(name)
    d_head = config.hidden_size // config.num_attention_heads
    return d_head, config.rope_theta, config.max_position_embeddings


def wavelengths(name: str) -> dict[str, float]:
    """Pairs of ``name``'s head whose wavelength ``2 pi / theta_i`` exceeds the training length.

    Used in: Q29.
    """
    d_head, base, length = _head(name)
    inv_freq, _ = rope_frequencies(d_head, base=base)
    wave = 2 * math.pi / inv_freq
    return {
        "pairs": d_head // 2,
        "base": base,
        "training length": length,
        "pairs under one turn": int((wave > length).sum()),
        "longest wavelength": float(wave.max()),
    }


def extension_table(name: str, factor: float = 4.0) -> dict[str, dict[str, float]]:
    """Per rescaling: pairs that reach unseen angles at ``factor`` times the trained length,
    the fastest pair's angle between neighbouring tokens, and YaRN's attention factor.

    A pair "reaches unseen angles" when its largest angle over the long context goes past
    the angle training would have given position ``length`` and, in training, it never
    completed a turn (a pair that did has already seen every angle).
    Used in: Q29.
    """
    d_head, base, length = _head(name)
    trained, _ = rope_frequencies(d_head, base=base)
    trained_max = (length - 1) * trained  # the largest angle each pair saw
    long_len = int(factor * length)
    table = {}
    for label, scaling in SCALINGS.items():
        scaling = None if scaling is None else {**scaling, "factor": factor}
        inv_freq, attention = rope_frequencies(
            d_head, base=base, scaling=scaling, max_position_embeddings=length, seq_len=long_len
        )
        reached = (long_len - 1) * inv_freq
        # beyond the angle of position `length`, the first one training never reached
        unseen = (trained_max < 2 * math.pi) & (reached > length * trained)
        table[label] = {
            "pairs reaching unseen angles": int(unseen.sum()),
            "fastest pair, radians per token": float(inv_freq[0]),
            "attention factor": attention,
        }
    return table


def kv_cache_gib(name: str, tokens: int) -> float:
    """GiB of a 16-bit KV cache for one sequence of ``tokens`` tokens (Q23's formula).

    Used in: Q29.
    """
    config = llama_config(name)
    d_head = config.hidden_size // config.num_attention_heads
    size = kv_cache_bytes(config.num_hidden_layers, config.num_key_value_heads, d_head, tokens)
    return size / 2**30


CLAIMS = claims()  # computed from configurations; the trained evidence is Q21's claims
