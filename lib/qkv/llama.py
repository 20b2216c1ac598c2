"""A decoder-only Transformer with the LLaMA architecture, equal to Hugging Face's LlamaForCausalLM.

What LLaMA (Touvron et al. 2023a, §2.2; Llama 2, 2023b) changes in GPT's decoder
(:mod:`qkv.gpt`), each block still ``x + Attn(Norm(x))`` then ``x + MLP(Norm(x))``:

- RMSNorm (Zhang & Sennrich 2019) instead of LayerNorm, before each sub-layer and at the end;
- a SwiGLU MLP (Shazeer 2020): ``W_down(silu(W_gate x) * W_up x)``, three matrices of
  ``d_model x intermediate_size`` (about ``2/3 * 4 d_model`` wide, §2.2) instead of two of
  ``d_model x 4 d_model``;
- rotary position embeddings (RoPE, Su et al. 2021) on q and k in every layer, no position
  table: no length is refused, though quality past the trained length is another matter;
- grouped-query attention (Ainslie et al. 2023; in Llama 2's 34B and 70B, and Llama 3):
  ``num_key_value_heads`` K/V heads, each shared by a group of query heads, so the cache
  holds ``num_key_value_heads`` heads;
- no biases (Hugging Face's ``attention_bias`` and ``mlp_bias`` are False for these models),
  and an output layer apart from the embedding (``tie_word_embeddings=False`` in Llama 2, 3).

The attention, the cache and the generation loop are :mod:`qkv.gpt`'s
(``qkv.gpt.CausalSelfAttention``, :class:`~qkv.kvcache.KVCache`,
:func:`~qkv.gpt.greedy_generate`); RoPE and its rescalings are :mod:`qkv.positions`',
RMSNorm is :mod:`qkv.norms`'. Names follow Hugging Face's ``LlamaConfig``: ``hidden_size`` is
``d_model``, ``num_attention_heads`` is ``h``, ``head_dim`` is ``d_k``, ``vocab_size`` is ``V``.

One layout differs from Hugging Face's: qkv rotates neighbouring features ``(2i, 2i + 1)``
of q and k, as RoFormer and Meta's own LLaMA code; Hugging Face rotates ``(i, i + d_k/2)``.
:func:`llama_from_hf_state_dict` reorders the rows of W_q and W_k to match, which leaves
every attention score, hence the logits, unchanged (cached keys are reordered the same way).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.gpt import CausalSelfAttention, Decoder
from qkv.kvcache import KVCache
from qkv.masks import causal_mask
from qkv.norms import RMSNorm
from qkv.positions import apply_rotary, check_rope_scaling, rope_frequencies
from qkv.tying import tie

__all__ = ["LlamaConfig", "Llama", "SwiGLU", "llama_config", "llama_from_hf_state_dict"]


@dataclass
class LlamaConfig:
    """LLaMA's sizes, with Hugging Face's ``LlamaConfig`` field names and defaults (LLaMA-7B).

    ``num_key_value_heads`` defaults to ``num_attention_heads`` (no GQA) and ``head_dim`` to
    ``hidden_size // num_attention_heads``. ``rope_scaling`` is None or a dict such as
    ``{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}``
    (:func:`qkv.positions.rope_frequencies`). ``max_position_embeddings`` bounds nothing: it
    is the trained length that "dynamic" scaling starts from.
    Used in: Q27, Q30.
    """

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    # None (the default) is replaced by __post_init__, so both are ints on every instance
    num_key_value_heads: int = None  # type: ignore[assignment]
    head_dim: int = None  # type: ignore[assignment]
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
        ):
            check_int(name, getattr(self, name), 1)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size={self.hidden_size} is not a multiple of "
                    f"num_attention_heads={self.num_attention_heads}: give head_dim"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        check_int("num_key_value_heads", self.num_key_value_heads, 1)
        if check_int("head_dim", self.head_dim, 2) % 2:
            raise ValueError(f"head_dim must be even (RoPE turns pairs), got {self.head_dim}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        for name, low in (("rms_norm_eps", 0.0), ("rope_theta", 1.0)):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > low):
                raise ValueError(f"{name} must be a finite number > {low:g}, got {value!r}")
        if not isinstance(self.tie_word_embeddings, bool):
            raise TypeError(f"tie_word_embeddings must be a bool, got {self.tie_word_embeddings!r}")
        self.rope_scaling = check_rope_scaling(self.rope_scaling)

    @classmethod
    def from_hf(cls, hf_config: Any) -> LlamaConfig:
        """The config of a ``transformers.LlamaConfig``, read from any transformers version.

        transformers 5 keeps ``rope_theta`` and the scaling in ``rope_parameters``; earlier
        versions have ``rope_theta`` and ``rope_scaling`` attributes.

        Raises:
            ValueError: a feature qkv's Llama does not have (biases, another activation,
                partial rotary embeddings, a ``rope_type`` other than linear, dynamic, yarn,
                llama3).
        """
        names = {f.name for f in fields(cls)} | {
            "hidden_act",
            "attention_bias",
            "mlp_bias",
            "rope_parameters",
        }
        hf: dict[str, Any] = {name: getattr(hf_config, name, None) for name in names}
        if hf["hidden_act"] not in (None, "silu") or hf["attention_bias"] or hf["mlp_bias"]:
            raise ValueError(
                "qkv's Llama has SiLU and no biases: hidden_act must be 'silu', "
                "attention_bias and mlp_bias False"
            )
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        rope_theta = rope.pop("rope_theta", hf.get("rope_theta") or 10000.0)
        if rope.pop("partial_rotary_factor", 1.0) != 1.0:
            raise ValueError("partial_rotary_factor != 1 is not supported: RoPE turns all of d_k")
        known = {f.name for f in fields(cls)} - {"rope_theta", "rope_scaling"}
        sizes = {name: hf[name] for name in known if hf[name] is not None}
        return cls(**sizes, rope_theta=rope_theta, rope_scaling=rope or None)


# Published configurations, to count on the meta device (never to run here). Values are those
# of each model's config.json on the Hugging Face Hub (meta-llama/Llama-2-7b-hf,
# Llama-2-70b-hf, Meta-Llama-3-8B, Meta-Llama-3-70B), read from public copies of those files.
_PUBLISHED: dict[str, dict[str, Any]] = {
    "Llama-2-7B": dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
    "Llama-2-70B": dict(
        vocab_size=32000,
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
    "Llama-3-8B": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
    ),
    "Llama-3-70B": dict(
        vocab_size=128256,
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
    ),
}


def llama_config(name: str) -> LlamaConfig:
    """A new :class:`LlamaConfig` of a published model, to build on the meta device and count.

    ``name`` is ``"Llama-2-7B"``, ``"Llama-2-70B"``, ``"Llama-3-8B"`` or ``"Llama-3-70B"``::

        with torch.device("meta"):
            model = Llama(llama_config("Llama-2-7B"))

    Used in: Q27, Q30.
    """
    if name not in _PUBLISHED:
        raise ValueError(f"name must be one of {sorted(_PUBLISHED)}, got {name!r}")
    return LlamaConfig(**_PUBLISHED[name])


class SwiGLU(nn.Module):
    """LLaMA's MLP (Shazeer 2020): ``down_proj(silu(gate_proj(x)) * up_proj(x))``, no biases.

    ``x: (..., d_model) -> (..., d_model)`` through width ``intermediate_size``.
    """

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """A LLaMA block: ``x + Attn(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        d_model, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = RMSNorm(d_model, eps=eps)
        self.self_attn = CausalSelfAttention(
            d_model,
            config.num_attention_heads,
            n_kv_heads=config.num_key_value_heads,
            bias=False,
            d_k=config.head_dim,
        )
        self.post_attention_layernorm = RMSNorm(d_model, eps=eps)
        self.mlp = SwiGLU(d_model, config.intermediate_size)

    def forward(
        self,
        x: Tensor,
        past: tuple[Tensor, Tensor] | None,
        mask: Tensor | None,
        rotate: Callable[[Tensor], Tensor],
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x: (B, n, d_model)`` -> same shape, and the keys and values to cache."""
        attended, kv = self.self_attn(self.input_layernorm(x), past, mask, rotate)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class Llama(Decoder):
    """LLaMA: token embedding, ``num_hidden_layers`` RMSNorm/SwiGLU/RoPE/GQA blocks, RMSNorm, head.

    Weights start as Hugging Face's: normal with standard deviation ``initializer_range``,
    RMSNorm gains 1. Build it under ``torch.device("meta")`` to count a large configuration
    without allocating it (:func:`llama_config`).
    Used in: Q27.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"config must be a qkv.llama.LlamaConfig, got {type(config).__name__}")
        self.config = config
        self.vocab_size, self.n_layers, self.max_len = (
            config.vocab_size,
            config.num_hidden_layers,
            None,
        )  # RoPE: no table of positions to run out of
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            tie(self.embed_tokens, self.lm_head)
        for p in self.parameters():  # a tied weight comes once
            if p.dim() > 1:
                nn.init.normal_(p, std=config.initializer_range)  # RMSNorm gains stay 1

    def rope(self, seq_len: int, device: torch.device | str | None = None) -> tuple[Tensor, float]:
        """``(inv_freq (head_dim / 2,), attention_factor)`` for a sequence of ``seq_len`` tokens.

        Only "dynamic" scaling depends on ``seq_len`` (:func:`qkv.positions.rope_frequencies`).
        """
        c = self.config
        return rope_frequencies(
            c.head_dim,
            base=c.rope_theta,
            scaling=c.rope_scaling,
            max_position_embeddings=c.max_position_embeddings,
            seq_len=seq_len,
            device=device,
        )

    def forward(
        self,
        input_ids: Tensor,
        cache: KVCache | None = None,
        *,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> tuple[Tensor, KVCache]:
        """Logits for ``input_ids (B, n)``, continuing the sequence held by ``cache``.

        Args:
            input_ids: ``(B, n)`` token ids in ``[0, vocab_size)``; with a cache of length
                ``m0`` they sit at positions ``m0 .. m0 + n - 1``.
            cache: the :class:`~qkv.kvcache.KVCache` this model returned for the earlier
                tokens, or None. It holds keys already rotated (and, for "yarn", scaled), as
                Hugging Face's does: with "dynamic" scaling past ``max_position_embeddings``
                the cached keys keep the frequencies of the call that made them.
            attention_mask: optional ``(B, m0 + n)`` of 0/1 (1 = real token) over past and
                new tokens, as in Hugging Face: padding keys are hidden from every query.
            position_ids: optional integer ``(B, n)`` positions ``>= 0`` of the new tokens,
                the angles RoPE turns each row's q and k by, as Hugging Face's
                ``position_ids`` (for left padding: ``attention_mask.cumsum(-1) - 1``, clamped
                at 0, as :func:`qkv.gpt.greedy_generate` does). "dynamic" scaling then follows
                the largest position + 1, as in Hugging Face.

        Returns:
            ``logits (B, n, V)`` and the new cache: keys and values
            ``(B, num_key_value_heads, m0 + n, head_dim)`` per layer.
        """
        B, n = self._check_input_ids(input_ids)
        m0 = self._check_cache(cache, B, n)
        m, device = m0 + n, input_ids.device
        mask = None if n == 1 else causal_mask(n, m, device=device)[None, None]  # (1, 1, n, m)
        pad = self._padding_mask(attention_mask, B, m)  # (B, 1, 1, m) or None
        if pad is not None:
            mask = pad if mask is None else mask & pad  # (B, 1, n, m)
        positions = self._positions(position_ids, B, n, m0, device)  # (1 or B, n)
        # "dynamic" frequencies follow the largest position of this call, as in Hugging Face
        # (max(position_ids) + 1; m without position ids)
        seq_len = m if position_ids is None else int(positions.max()) + 1
        inv_freq, attention_factor = self.rope(seq_len, device=device)
        positions = positions[:, None]  # (1 or B, n) -> (1 or B, 1, n): the same for every head

        def rotate(t: Tensor) -> Tensor:  # (B, heads, n, d_k), positions (1 or B, 1, n)
            turned = apply_rotary(t, positions, inv_freq=inv_freq)
            # YaRN scales q and k by sqrt(1/t): the logits by 1/t (Peng et al. 2023)
            return turned if attention_factor == 1.0 else turned * attention_factor

        x = self.embed_tokens(input_ids)  # (B, n, d_model)
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            past = None if cache is None else (cache.keys[i], cache.values[i])
            x, (k, v) = layer(x, past, mask, rotate)
            keys.append(k)
            values.append(v)
        logits = self.lm_head(self.norm(x))  # (B, n, d_model) -> (B, n, V)
        return logits, KVCache(tuple(keys), tuple(values), self._cache_token)


_HF_ATTENTION_NAMES = {f"self_attn.{x}_proj": f"self_attn.w_{x}" for x in "qkvo"}


def _pairs_from_hf(weight: Tensor, n_heads: int, d_k: int) -> Tensor:
    """Reorder a head's rows of W_q or W_k from RoPE pairs ``(i, i + d_k/2)`` to ``(2i, 2i + 1)``.

    The inverse of the permutation in Hugging Face's ``convert_llama_weights_to_hf.py``.
    """
    # (h * d_k, d_model) -> (h, 2, d_k / 2, d_model) -> (h, d_k / 2, 2, d_model) -> (h * d_k, ...)
    return weight.view(n_heads, 2, d_k // 2, -1).transpose(1, 2).reshape(n_heads * d_k, -1)


def llama_from_hf_state_dict(state_dict: Mapping[str, Tensor], config: LlamaConfig) -> Llama:
    """Build a :class:`Llama` holding the weights of a Hugging Face ``LlamaForCausalLM``.

    Args:
        state_dict: ``LlamaForCausalLM.state_dict()`` (or ``LlamaModel``'s plus ``lm_head.weight``);
            ``lm_head.weight`` is optional when ``config.tie_word_embeddings``.
        config: the sizes of that model (``LlamaConfig.from_hf(hf_model.config)``).

    Returns:
        A :class:`Llama` in eval mode on the device and dtype of the embedding.

    Used in: Q30, tests/qkv/test_llama.py (the Hugging Face reference check).
    """
    if not isinstance(config, LlamaConfig):
        raise TypeError(f"config must be a qkv.llama.LlamaConfig, got {type(config).__name__}")
    state = {
        k.removeprefix("model."): v
        for k, v in state_dict.items()
        if not k.endswith("rotary_emb.inv_freq")
    }  # old checkpoints kept it
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    h, h_kv, d_k = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    ours: dict[str, Tensor] = {}
    for name, tensor in state.items():
        key = name
        for hf, mine in _HF_ATTENTION_NAMES.items():
            key = key.replace(hf, mine)
        if key.endswith("w_q.weight") and tensor.shape[0] == h * d_k:
            tensor = _pairs_from_hf(tensor, h, d_k)
        elif key.endswith("w_k.weight") and tensor.shape[0] == h_kv * d_k:
            tensor = _pairs_from_hf(tensor, h_kv, d_k)
        ours[key] = tensor
    weight = ours.get("embed_tokens.weight")
    if config.tie_word_embeddings and weight is not None:
        ours["lm_head.weight"] = weight
    model = Llama(config)
    if weight is not None:  # load in the checkpoint's dtype: a float64 copy stays float64
        model = model.to(device=weight.device, dtype=weight.dtype)
    expected = model.state_dict()
    missing = sorted(k for k in expected if ours.get(k) is None)
    unexpected = sorted(set(ours) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"state_dict does not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}"
        )
    for name, tensor in ours.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
            )
    model.load_state_dict(ours)
    return model.eval()
