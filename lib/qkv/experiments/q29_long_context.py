"""Q29 (long context): which RoPE pairs leave their trained range, and what each rescaling does.

The tables are computed from published configurations (:func:`qkv.llama.llama_config`)
and :func:`qkv.positions.rope_frequencies`, whose rescalings equal Hugging Face's
(``tests/qkv/test_llama.py``); the trained evidence reuses Q21's toy
(``qkv.experiments.q21_positional_encodings``): a one-layer RoPE model trained to copy the
previous token on 16-token sequences, then run at 32 and 64 tokens.

- :func:`wavelengths`: per configuration, how many rotation pairs complete less than
  one turn over the training length (their angles beyond it were never seen).
- :func:`extension_table`: for a context ``factor`` times the training length, how
  many pairs reach angles never seen in training, and how far apart two neighbouring
  tokens are in the fastest pair, under plain RoPE, PI, "NTK-aware" (dynamic) scaling
  and YaRN.
- :func:`toy_frequencies`: the same rescalings on the toy's four rotation pairs.
- :func:`extension_methods`: the toy, trained once per seed, extended by each method
  without and with a short fine-tune; the functions after it are its claimed numbers.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from qkv._checks import check_int
from qkv.experiments import Claim, claims, experiment
from qkv.experiments import q21_positional_encodings as q21
from qkv.kvcache import kv_cache_bytes
from qkv.llama import llama_config
from qkv.positions import rope_frequencies
from qkv.stack import TransformerStack
from qkv.train import TrainConfig, train

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
        if scaling is not None:  # Hugging Face's "dynamic" multiplies its own factor into
            # the length ratio: factor 1 at factor x the length gives the NTK-aware base
            # b * factor^(d / (d - 2)) (YaRN Eq. 16); factor 4 there would mean 13.
            dynamic = scaling["rope_type"] == "dynamic"
            scaling = {**scaling, "factor": 1.0 if dynamic else factor}
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


# ---------------------------------------------------------------- the trained toy
TRAIN_LEN = q21.TRAIN_LEN  # Q21's toy is trained on 16 tokens ...
#: The lengths the trained toy is run at, 2 and 4 times its training length.
LONG_LENS = (2 * TRAIN_LEN, 4 * TRAIN_LEN)
#: The fine-tuning at 4x records accuracy after this many AdamW steps (lr 3e-3, batch 32).
FINE_TUNE_STEPS = (5, 10, 20, 30)
ROPE_BASE = 10000.0
#: The methods compared without and with fine-tuning.
METHODS = ("plain RoPE", "PI", "NTK-aware", "YaRN")
#: The variants compared without fine-tuning only, YaRN's two parts taken apart.
ABLATIONS = ("YaRN without temperature", "by-parts, ramp of Eq. 18")


def toy_rope(method: str, factor: float, d_k: int) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, rope_scaling)`` that extend a RoPE model trained on ``TRAIN_LEN`` tokens
    to ``factor`` times that, for ``method`` in :data:`METHODS` or :data:`ABLATIONS`.

    - "plain RoPE": unchanged (positions past the trained length extrapolate);
    - "PI": Chen et al. 2023, every frequency divided by ``factor`` (``rope_type`` "linear");
    - "NTK-aware": the base raised to ``b * s^(d/(d-2))`` (Peng et al. 2023 Eq. 16), which
      keeps the fastest pair and slows the slowest by ``s``;
    - "YaRN": ``rope_type`` "yarn" with Peng et al.'s defaults (beta_fast 32, beta_slow 1;
      the authors' code's ramp, linear in the pair index) and the attention factor
      ``0.1 ln s + 1`` on q and k (Eq. 22);
    - "YaRN without temperature": the same frequencies, attention factor 1;
    - "by-parts, ramp of Eq. 18": the ramp as the paper's text writes it, linear in the
      number of turns ``r = L / lambda`` between alpha 1 and beta 32 (Eq. 17-20), which is
      ``rope_type`` "llama3" with ``low_freq_factor`` 1 and ``high_freq_factor`` 32; no
      temperature.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    check_int("d_k", d_k, 4)
    yarn = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": TRAIN_LEN}
    if method == "plain RoPE":
        return ROPE_BASE, None
    if method == "PI":
        return ROPE_BASE, {"rope_type": "linear", "factor": factor}
    if method == "NTK-aware":
        return ROPE_BASE * factor ** (d_k / (d_k - 2)), None
    if method == "YaRN":
        return ROPE_BASE, yarn
    if method == "YaRN without temperature":
        return ROPE_BASE, {**yarn, "attention_factor": 1.0}
    if method == "by-parts, ramp of Eq. 18":
        ramp = {"low_freq_factor": 1.0, "high_freq_factor": 32.0}
        return ROPE_BASE, {
            "rope_type": "llama3",
            "factor": factor,
            "original_max_position_embeddings": TRAIN_LEN,
            **ramp,
        }
    raise ValueError(f"method must be one of {METHODS + ABLATIONS}, got {method!r}")


def toy_frequencies(factor: float = 4.0, d_k: int = 8) -> dict[str, list[float]]:
    """The rescalings of :func:`toy_rope` on the toy's head: which pairs each one slows.

    Returns ``{"turns over 16 tokens": [...], method: [...], ...}``, ``d_k / 2`` values
    each: first how many turns each pair makes over the training length, then per method
    each pair's frequency divided by the trained one (1: kept, ``1 / factor``: interpolated
    as PI does). YaRN's temperature is not a frequency: see :func:`toy_rope`.

    Used in: Q29.
    """
    trained, _ = rope_frequencies(d_k, base=ROPE_BASE)
    table = {f"turns over {TRAIN_LEN} tokens": (TRAIN_LEN * trained / (2 * math.pi)).tolist()}
    for method in METHODS[1:] + ABLATIONS[1:]:
        base, scaling = toy_rope(method, factor, d_k)
        inv_freq, _ = rope_frequencies(
            d_k, base=base, scaling=scaling, max_position_embeddings=TRAIN_LEN
        )
        table[method] = (inv_freq / trained).tolist()
    return table


@dataclass(frozen=True)
class ExtensionRun:
    """What :func:`extension_methods` measured (copy accuracy on held-out sequences).

    Attributes:
        zero_shot: ``method -> {length: accuracy}`` with no fine-tuning, for every method of
            :data:`METHODS` and :data:`ABLATIONS`, at the lengths of :data:`LONG_LENS`
            (each run with its own factor ``length / TRAIN_LEN``).
        fine_tuned: ``method -> {steps: accuracy at 4x}`` for :data:`METHODS`, after each
            count of :data:`FINE_TUNE_STEPS` fine-tuning steps at 4x (0: not fine-tuned).
    """

    zero_shot: dict[str, dict[int, float]]
    fine_tuned: dict[str, dict[int, float]]


def _rescaled(model: TransformerStack, method: str, factor: float) -> TransformerStack:
    """A copy of the trained ``model`` whose RoPE is extended by ``method`` (eval mode)."""
    if not isinstance(model, TransformerStack) or model.position != "rope":
        raise TypeError(f"expected a RoPE qkv.stack.TransformerStack, got {type(model).__name__}")
    model = copy.deepcopy(model)
    model.rope_theta, model.rope_scaling = toy_rope(method, factor, model.d_model // model.n_heads)
    return model.eval()


@experiment
@functools.lru_cache(maxsize=16)
def extension_methods(seed: int = 0) -> ExtensionRun:
    """Extend Q21's RoPE toy (trained on 16 tokens) to 32 and 64 tokens by each method.

    The trained model is Q21's (``length_generalization``'s RoPE model for ``seed``). Each
    method of :data:`METHODS` and :data:`ABLATIONS` rescales a copy of it
    (:func:`toy_rope`, factor ``length / 16``) and is scored on 64 held-out sequences per
    length. Then each method of :data:`METHODS` fine-tunes its copy at 64 tokens (factor 4)
    with AdamW (lr 3e-3, batches of 32, the same batches for every method), and is scored
    at 64 tokens after each count of :data:`FINE_TUNE_STEPS`. Cached per seed.

    Used in: Q29 (also ``benchmarks/robustness.py``).
    """
    check_int("seed", seed, 0)
    trained = q21._trained_model("rope", seed, TRAIN_LEN, 1, 10, q21.STEPS, None)
    device = next(trained.parameters()).device
    test_g = torch.Generator().manual_seed(40_000 + seed)
    tests = {}
    for n in LONG_LENS:
        batch = q21.offset_copy(64, n, generator=test_g)
        tests[n] = q21.CopyBatch(batch.inputs.to(device), batch.targets.to(device))
    zero_shot = {
        method: {
            n: q21._accuracy(_rescaled(trained, method, n / TRAIN_LEN), tests[n]) for n in tests
        }
        for method in METHODS + ABLATIONS
    }
    long_len = LONG_LENS[-1]

    def batches(step: int, g: torch.Generator) -> q21.CopyBatch:
        return q21.offset_copy(32, long_len, generator=g)

    fine_tuned = {}
    for method in METHODS:
        model = _rescaled(trained, method, long_len / TRAIN_LEN).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        curve, done = {0: zero_shot[method][long_len]}, 0
        for steps in FINE_TUNE_STEPS:  # one optimizer throughout, fresh batches per stretch
            config = TrainConfig(steps=steps - done, seed=1000 * (seed + 1) + steps, device=device)
            train(model, batches, q21._copy_loss, config, optimizer=optimizer)
            curve[steps], done = q21._accuracy(model.eval(), tests[long_len]), steps
            model.train()
        fine_tuned[method] = curve
    return ExtensionRun(zero_shot, fine_tuned)


@experiment
def yarn_zero_shot_gain(seed: int) -> float:
    """No fine-tuning, 4x: copy accuracy with YaRN minus plain RoPE.

    Used in: Q29.
    """
    zero_shot = extension_methods(seed=seed).zero_shot
    return zero_shot["YaRN"][LONG_LENS[-1]] - zero_shot["plain RoPE"][LONG_LENS[-1]]


@experiment
def pi_zero_shot_loss_at_2x(seed: int) -> float:
    """No fine-tuning, 2x: copy accuracy with plain RoPE minus PI (what PI loses).

    Used in: Q29.
    """
    zero_shot = extension_methods(seed=seed).zero_shot
    return zero_shot["plain RoPE"][LONG_LENS[0]] - zero_shot["PI"][LONG_LENS[0]]


@experiment
def yarn_vs_pi_after_5_steps(seed: int) -> float:
    """4x, after 5 fine-tuning steps: copy accuracy with YaRN minus PI.

    Used in: Q29.
    """
    fine_tuned = extension_methods(seed=seed).fine_tuned
    return fine_tuned["YaRN"][5] - fine_tuned["PI"][5]


@experiment
def yarn_vs_ntk_zero_shot(seed: int) -> float:
    """No fine-tuning, 4x: how far apart the copy accuracies with YaRN and NTK-aware scaling
    are (absolute difference).

    Used in: Q29.
    """
    zero_shot = extension_methods(seed=seed).zero_shot
    return abs(zero_shot["YaRN"][LONG_LENS[-1]] - zero_shot["NTK-aware"][LONG_LENS[-1]])


@experiment
def temperature_effect(seed: int) -> float:
    """No fine-tuning, 4x: how much YaRN's temperature changes the copy accuracy (absolute
    difference between YaRN with and without it).

    Used in: Q29.
    """
    zero_shot = extension_methods(seed=seed).zero_shot
    n = LONG_LENS[-1]
    return abs(zero_shot["YaRN"][n] - zero_shot["YaRN without temperature"][n])


@experiment
def ramp_gap(seed: int) -> float:
    """No fine-tuning, 4x, no temperature: copy accuracy with the code's ramp (linear in the
    pair index) minus the ramp of the paper's Eq. 18 (linear in the number of turns).

    Used in: Q29.
    """
    zero_shot = extension_methods(seed=seed).zero_shot
    n = LONG_LENS[-1]
    return zero_shot["YaRN without temperature"][n] - zero_shot["by-parts, ramp of Eq. 18"][n]


_SEEDS = tuple(range(10))
_TOY = "Q21's RoPE toy trained on 16 tokens"
CLAIMS = claims(
    Claim(
        "q29-yarn-zero-shot",
        f"{_TOY}, no fine-tuning, 64 tokens: copy accuracy with YaRN minus plain RoPE",
        yarn_zero_shot_gain,
        ">",
        0.15,
        seeds=_SEEDS,
    ),
    Claim(
        "q29-pi-zero-shot-2x",
        f"{_TOY}, no fine-tuning, 32 tokens: copy accuracy with plain RoPE minus with PI",
        pi_zero_shot_loss_at_2x,
        ">",
        0.25,
        seeds=_SEEDS,
    ),
    Claim(
        "q29-yarn-fewer-steps",
        f"{_TOY}, 64 tokens after 5 fine-tuning steps: copy accuracy with YaRN minus PI",
        yarn_vs_pi_after_5_steps,
        ">",
        0.4,
        seeds=_SEEDS,
    ),
    Claim(
        "q29-yarn-vs-ntk",
        f"{_TOY}, no fine-tuning, 64 tokens: absolute difference of the copy accuracies with "
        "YaRN and with NTK-aware scaling (the toy does not separate them)",
        yarn_vs_ntk_zero_shot,
        "<",
        0.1,
        seeds=_SEEDS,
    ),
    Claim(
        "q29-temperature",
        f"{_TOY}, no fine-tuning, 64 tokens: absolute difference of the copy accuracies of "
        "YaRN with and without its temperature (the toy barely needs it)",
        temperature_effect,
        "<",
        0.05,
        seeds=_SEEDS,
    ),
    Claim(
        "q29-ramp",
        f"{_TOY}, no fine-tuning, 64 tokens, no temperature: copy accuracy with YaRN's ramp as "
        "coded (linear in the pair index) minus the ramp of the paper's Eq. 18",
        ramp_gap,
        ">",
        0.4,
        seeds=_SEEDS,
    ),
)
