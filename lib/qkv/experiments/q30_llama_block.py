"""Q30 (the LLaMA block): what changed since GPT-2, and what a tiny model can show of it.

- :func:`swiglu_hidden_size`: Meta's rule for LLaMA's feed-forward width, ``2/3 * 4d``
  rounded up to a multiple of ``multiple_of`` (``FeedForward`` in Meta's ``model.py``);
- :func:`ffn_counts`: parameters and counted FLOPs of a GELU FFN of width ``4d`` and of
  :class:`qkv.llama.SwiGLU` of width ``8d/3``: the same budget;
- :func:`norm_seconds`: CPU time of ``torch.nn.LayerNorm`` and ``torch.nn.RMSNorm``;
- :func:`lm_losses`: a GPT-2-style and a LLaMA-style decoder of (nearly) equal size
  trained with the same budget on the book's Markov language
  (:class:`qkv.markov.MarkovLanguage`), against the lowest loss any model can reach,
  which the chain's transition matrix gives exactly.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from qkv import norms as norms_module
from qkv.complexity import best_seconds, count_flops
from qkv.experiments import Claim, claims, experiment
from qkv.gpt import GPT, GPTConfig
from qkv.llama import Llama, LlamaConfig, SwiGLU
from qkv.markov import MarkovLanguage
from qkv.train import TrainConfig, train
from qkv.tying import count_parameters

__all__ = [
    "swiglu_hidden_size",
    "gelu_ffn",
    "ffn_counts",
    "norm_seconds",
    "LANGUAGE",
    "VOCAB_SIZE",
    "LENGTH",
    "STEPS",
    "models",
    "optimal_loss",
    "lm_losses",
    "CLAIMS",
]


def swiglu_hidden_size(d_model: int, multiple_of: int = 256) -> int:
    """LLaMA's FFN width: ``int(2/3 * 4 d_model)`` rounded up to a multiple of ``multiple_of``.

    Meta's ``FeedForward`` (LLaMA 1 and 2 code) computes ``hidden_dim = int(2 * 4d / 3)``
    then ``multiple_of * ceil(hidden_dim / multiple_of)``; larger models also multiply
    by ``ffn_dim_multiplier`` before rounding (not modelled here).
    Used in: Q30.
    """
    hidden = int(2 * 4 * d_model / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


def gelu_ffn(d_model: int, d_ff: int, bias: bool = True) -> nn.Sequential:
    """The 2017/GPT-2 feed-forward network ``W_2 GELU(W_1 x)`` of width ``d_ff``."""
    return nn.Sequential(
        nn.Linear(d_model, d_ff, bias=bias), nn.GELU(), nn.Linear(d_ff, d_model, bias=bias)
    )


def ffn_counts(d_model: int, tokens: int = 8) -> dict[str, tuple[int, int]]:
    """``{name: (parameters, FLOPs for `tokens` tokens)}`` of three feed-forward networks.

    "GELU, 4d, no bias", "SwiGLU, 8d/3" and "SwiGLU, 4d" (the width a careless swap keeps).
    ``d_model`` must be a multiple of 3 so that ``8 d / 3`` is whole.
    Used in: Q30.
    """
    if d_model % 3:
        raise ValueError(f"d_model must be a multiple of 3 for 8d/3 to be whole, got {d_model}")
    x = torch.randn(tokens, d_model)
    nets = {
        "GELU, 4d, no bias": gelu_ffn(d_model, 4 * d_model, bias=False),
        "SwiGLU, 8d/3": SwiGLU(d_model, 8 * d_model // 3),
        "SwiGLU, 4d": SwiGLU(d_model, 4 * d_model),
    }
    return {
        name: (count_parameters(net), count_flops(functools.partial(net, x))["total"])
        for name, net in nets.items()
    }


@experiment
def norm_seconds(tokens: int = 4096, d_model: int = 1024, repeats: int = 5) -> dict[str, float]:
    """CPU seconds (best of ``repeats``) of PyTorch's norms and of :mod:`qkv.norms`' own.

    The written-out pair computes each statistic with the same elementary operations, so
    their difference is the work RMSNorm drops (the mean and its subtraction, the bias).
    Used in: Q30.
    """
    x = torch.randn(tokens, d_model)
    norms = {
        "torch LayerNorm": nn.LayerNorm(d_model),
        "torch RMSNorm": nn.RMSNorm(d_model, eps=1e-6),
        "written out, LayerNorm": norms_module.LayerNorm(d_model),
        "written out, RMSNorm": norms_module.RMSNorm(d_model),
    }
    with torch.no_grad():
        return {
            name: best_seconds(functools.partial(n, x), repeats, clock="cpu")
            for name, n in norms.items()
        }


LANGUAGE = dict(n_words=48, branching=3)  # MarkovLanguage sizes; the chain's seed is the run's
VOCAB_SIZE = MarkovLanguage(**LANGUAGE).vocab_size  # the words and the special ids
LENGTH, BATCH, STEPS, LR = 16, 32, 80, 6e-3
D_MODEL, N_LAYER, N_HEAD = 48, 2, 4


def models(vocab_size: int) -> dict[str, nn.Module]:
    """A GPT-2-style and a LLaMA-style decoder of nearly equal size (both tie the output layer).

    GPT-2: learned positions, LayerNorm, GELU MLP of ``4d``, biases. LLaMA: RoPE, RMSNorm,
    SwiGLU of ``8d/3``, no biases. The caller seeds the initialisation.
    Used in: Q30.
    """
    gpt = GPT(
        GPTConfig(
            vocab_size=vocab_size,
            n_positions=LENGTH,
            n_embd=D_MODEL,
            n_layer=N_LAYER,
            n_head=N_HEAD,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )
    llama = Llama(
        LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=D_MODEL,
            intermediate_size=8 * D_MODEL // 3,
            num_hidden_layers=N_LAYER,
            num_attention_heads=N_HEAD,
            tie_word_embeddings=True,
        )
    )
    return {"GPT-2-style": gpt, "LLaMA-style": llama}


def optimal_loss(language: MarkovLanguage, length: int = LENGTH) -> float:
    """The lowest mean next-token loss (nats) on sequences of ``length`` words from the chain.

    The first word is uniform; position ``t + 1`` costs the entropy of the transition row
    of word ``t``, averaged over the distribution of word ``t``: ``p_t = p_0 T^t``.
    """
    T = language.transition.double()
    row_entropy = -(T * torch.log(T.clamp_min(1e-300))).sum(dim=1)  # (n_words,)
    p = torch.full((language.n_words,), 1 / language.n_words, dtype=torch.float64)
    total = 0.0
    for _ in range(length - 1):
        total += float(p @ row_entropy)
        p = p @ T
    return total / (length - 1)


def _lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits, _ = model(ids[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


@experiment
def lm_losses(seed: int) -> dict[str, float]:
    """Held-out next-token loss minus the optimum, for both decoders, after ``STEPS`` steps.

    Same chain (fixed by ``seed``), same batches, same optimiser (AdamW, ``LR``), same
    steps. Returns ``{"GPT-2-style": gap, "LLaMA-style": gap, "optimum": nats}``.
    Used in: Q30.
    """
    language = MarkovLanguage(**LANGUAGE, seed=seed)
    held_out = language.sample(256, LENGTH, generator=10_000 + seed)
    result = {}
    for name in ("GPT-2-style", "LLaMA-style"):
        torch.manual_seed(seed)  # the initialisation
        model = models(language.vocab_size)[name]
        config = TrainConfig(steps=STEPS, lr=LR, seed=seed, device="cpu", log_every=STEPS)
        train(model, lambda step, g: language.sample(BATCH, LENGTH, generator=g), _lm_loss, config)
        with torch.no_grad():
            result[name] = _lm_loss(model.eval(), held_out).item()
    best = optimal_loss(language)
    return {name: loss - best for name, loss in result.items()} | {"optimum": best}


@functools.cache
def _cached(seed: int) -> dict[str, float]:
    return lm_losses(seed)


SEEDS = tuple(range(8))
CLAIMS = claims(
    Claim(
        id="q30-both-learn",
        text="both decoders end within 0.25 nats of the lowest possible loss",
        measure=lambda seed: max(_cached(seed)["GPT-2-style"], _cached(seed)["LLaMA-style"]),
        op="<",
        margin=0.25,
        seeds=SEEDS,
    ),
    Claim(
        id="q30-llama-ahead",
        text="after the same short budget the LLaMA-style decoder's loss is lower by > 0.01 nats",
        measure=lambda seed: _cached(seed)["GPT-2-style"] - _cached(seed)["LLaMA-style"],
        op=">",
        margin=0.01,
        seeds=SEEDS,
    ),
)
