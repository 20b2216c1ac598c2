"""A decoder-only Transformer with GPT-2's architecture, and its key/value cache.

:class:`GPT` follows Hugging Face's ``GPT2LMHeadModel`` module for module (Radford
et al. 2019), so that :func:`gpt_from_hf_state_dict` loads its weights and
reproduces its logits:

- token embedding + learned position embedding, then dropout;
- ``n_layer`` Pre-LN blocks ``x = x + Attn(LN(x))``, ``x = x + MLP(LN(x))`` with
  causal self-attention (:func:`qkv.attention.scaled_dot_product_attention`) and
  an MLP ``n_embd -> 4 n_embd -> n_embd`` with the tanh approximation of GELU
  (Hugging Face's ``"gelu_new"``);
- a final LayerNorm and an output layer tied to the token embedding (:func:`qkv.tying.tie`).

Decoding with a :class:`~qkv.kvcache.KVCache`: past keys and values never change under a causal
mask, so each layer keeps them and a step computes q, k, v for the new tokens only
(queries are never cached). Names follow Hugging Face's ``GPT2Config``;
``n_embd`` is ``d_model``, ``n_head`` is ``h``, ``vocab_size`` is ``V``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.attention import MultiHeadAttention, scaled_dot_product_attention
from qkv.kvcache import KVCache
from qkv.masks import causal_mask, key_mask
from qkv.tying import tie

__all__ = ["GPTConfig", "KVCache", "Decoder", "GPT", "greedy_generate", "gpt_from_hf_state_dict"]


@dataclass
class GPTConfig:
    """GPT-2's sizes, with Hugging Face's field names and defaults (GPT-2 small, 124M).

    ``n_inner`` (the MLP width ``d_ff``) defaults to ``4 * n_embd``.
    Used in: Q11, Q23, Q27.
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    n_inner: int | None = None
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        sizes = dict(
            vocab_size=self.vocab_size,
            n_positions=self.n_positions,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_inner=self.d_ff,
        )
        for name, value in sizes.items():
            check_int(name, value, 1)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not a multiple of n_head={self.n_head}")
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon}")

    @property
    def d_ff(self) -> int:
        return 4 * self.n_embd if self.n_inner is None else self.n_inner


class CausalSelfAttention(MultiHeadAttention):
    """Masked multi-head self-attention that appends its keys and values to a cache.

    Same projections as :class:`qkv.attention.MultiHeadAttention` (``w_q, w_k, w_v, w_o``),
    grouped-query heads included: the cache keeps the ``n_kv_heads`` K/V heads, shared by
    the query heads only inside the attention (GQA's memory saving, used by :mod:`qkv.llama`).
    """

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        past: tuple[Tensor, Tensor] | None = None,
        mask: Tensor | None = None,
        rotate: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x: (B, n, d_model)``, ``past``: keys, values ``(B, n_kv_heads, m - n, d_k)`` or None.

        ``mask``: bool ``(B or 1, 1, n, m)`` (``True`` = may attend), or None when every
        query may see every key. ``rotate``: applied to the new q and k ``(B, heads, n, d_k)``
        before k is cached (RoPE, in :mod:`qkv.llama`), or None. Returns ``out (B, n, d_model)``
        and keys, values ``(B, n_kv_heads, m, d_k)``: the past ones, the ``n`` new ones appended.
        """
        B, n, _ = x.shape
        # (B, n, heads * d_k) -> (B, n, heads, d_k) -> (B, heads, n, d_k), heads = h for q
        q = self.w_q(x).view(B, n, self.n_heads, self.d_k).transpose(1, 2)
        k, v = (
            w(x).view(B, n, self.n_kv_heads, self.d_k).transpose(1, 2) for w in (self.w_k, self.w_v)
        )
        if rotate is not None:  # positions enter q and k only, before k is cached
            q, k = rotate(q), rotate(k)
        if past is not None:  # the new token's k, v join the cache; its q is used once
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        group = self.n_heads // self.n_kv_heads  # query heads per K/V head (1 without GQA)
        k_all, v_all = (
            (k, v)
            if group == 1
            else (k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1))
        )
        dropout_p = self.dropout if self.training else 0.0
        out = scaled_dot_product_attention(q, k_all, v_all, mask, dropout_p=dropout_p)
        out = out.transpose(1, 2).reshape(B, n, -1)  # (B, h, n, d_k) -> (B, n, h * d_k)
        return self.w_o(out), (k, v)


class Block(nn.Module):
    """A Pre-LN GPT-2 block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``.

    Used in: Q27.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        d_model = config.n_embd
        self.ln_1 = nn.LayerNorm(d_model, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(d_model, config.n_head, dropout=config.attn_pdrop)
        self.ln_2 = nn.LayerNorm(d_model, eps=config.layer_norm_epsilon)
        self.fc = nn.Linear(d_model, config.d_ff)  # Hugging Face's mlp.c_fc
        self.proj = nn.Linear(config.d_ff, d_model)  # mlp.c_proj
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self, x: Tensor, past: tuple[Tensor, Tensor] | None, mask: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        attended, kv = self.attn(self.ln_1(x), past, mask)
        x = x + self.dropout(attended)
        hidden = F.gelu(self.fc(self.ln_2(x)), approximate="tanh")  # GPT-2's "gelu_new"
        return x + self.dropout(self.proj(hidden)), kv


class Decoder(nn.Module):
    """The base of :class:`GPT` and :class:`qkv.llama.Llama`: one input check, one cache.

    ``forward(input_ids, cache)`` returns ``(logits, KVCache)``, both models check their
    input the same way, and :func:`greedy_generate` drives either.

    A subclass sets ``vocab_size``, ``n_layers`` and ``max_len`` (the number of learned
    positions, GPT's ``n_positions``; None where positions are rotations, with no table to
    run out of) and has an ``lm_head``.
    """

    vocab_size: int
    n_layers: int
    max_len: int | None
    lm_head: nn.Linear

    def __init__(self) -> None:
        super().__init__()
        # Identifies this model's caches. Not id(self): a deleted model's id is reused by
        # the next object, so its caches would pass. A new object per model is never reused
        # while a cache holds it.
        self._cache_token = object()

    def _check_input_ids(self, input_ids: Tensor) -> tuple[int, int]:
        """Return ``(B, n)`` of integer ids in ``[0, V)`` with ``1 <= n <= max_len``."""
        if (
            not isinstance(input_ids, Tensor)
            or input_ids.is_floating_point()
            or (input_ids.dtype == torch.bool)
        ):
            got = input_ids.dtype if isinstance(input_ids, Tensor) else type(input_ids).__name__
            raise TypeError(f"input_ids must be an integer tensor of token ids, got {got}")
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be (B, n) with n >= 1, got {tuple(input_ids.shape)}")
        B, n = input_ids.shape
        V, max_len = self.vocab_size, self.max_len
        if max_len is not None and n > max_len:
            raise ValueError(f"input_ids has length {n} > the maximum of {max_len} positions")
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= V:
            raise ValueError(f"input_ids must be in [0, {V}), got values in [{low}, {high}]")
        return B, n

    def _check_cache(self, cache: KVCache | None, batch_size: int, n: int) -> int:
        """Return the cache length ``m0`` after checking it fits this model and batch."""
        m0 = 0
        if cache is not None:
            if not isinstance(cache, KVCache):
                name = type(self).__name__
                raise TypeError(f"cache must be a KVCache from {name}.forward, got {type(cache)}")
            if cache.owner is not self._cache_token or len(cache.keys) != self.n_layers:
                raise ValueError("cache was made by another model: pass this model's own cache")
            if cache.batch_size != batch_size:
                raise ValueError(
                    f"cache holds a batch of {cache.batch_size} sequences, input_ids {batch_size}"
                )
            m0 = cache.length
        if self.max_len is not None and m0 + n > self.max_len:
            raise ValueError(
                f"cache length {m0} + {n} new tokens = {m0 + n} exceeds n_positions={self.max_len}"
            )
        return m0

    def _padding_mask(
        self, attention_mask: Tensor | None, batch_size: int, m: int
    ) -> Tensor | None:
        """``attention_mask (B, m)`` of 0/1 (1 = real token) as a bool key mask ``(B, 1, 1, m)``."""
        if attention_mask is None:
            return None
        if not isinstance(attention_mask, Tensor) or attention_mask.shape != (batch_size, m):
            shape = getattr(attention_mask, "shape", type(attention_mask).__name__)
            raise ValueError(f"attention_mask must be (B, m0 + n) = {(batch_size, m)}, got {shape}")
        if not ((attention_mask == 0) | (attention_mask == 1)).all():
            raise ValueError("attention_mask must hold only 0 and 1 (1 = real token)")
        return key_mask(attention_mask.bool())  # (B, m) -> (B, 1, 1, m)

    def _positions(
        self, position_ids: Tensor | None, batch_size: int, n: int, m0: int, device: torch.device
    ) -> Tensor:
        """The positions of the ``n`` new tokens: ``(1, n)`` = ``m0 .. m0 + n - 1``, or ``(B, n)``.

        ``position_ids``: None, or an integer ``(B, n)`` tensor of positions ``>= 0`` (and
        ``< max_len`` where positions are a learned table), as Hugging Face's ``position_ids``.
        """
        if position_ids is None:
            return torch.arange(m0, m0 + n, device=device)[None]  # (1, n)
        if (
            not isinstance(position_ids, Tensor)
            or position_ids.is_floating_point()
            or position_ids.is_complex()
            or position_ids.dtype == torch.bool
        ):
            got = position_ids.dtype if isinstance(position_ids, Tensor) else type(position_ids)
            raise TypeError(f"position_ids must be an integer tensor (B, n), got {got}")
        if position_ids.shape != (batch_size, n):
            raise ValueError(
                f"position_ids must be (B, n) = {(batch_size, n)} like input_ids, "
                f"got {tuple(position_ids.shape)}"
            )
        low, high = int(position_ids.min()), int(position_ids.max())
        if low < 0:
            raise ValueError(f"position_ids must be >= 0, got a minimum of {low}")
        if self.max_len is not None and high >= self.max_len:
            raise ValueError(
                f"position_ids must be < n_positions={self.max_len} (the learned table), "
                f"got a maximum of {high}"
            )
        return position_ids.to(device=device, dtype=torch.long)


class GPT(Decoder):
    """GPT-2 (Radford et al. 2019): learned positions, Pre-LN causal blocks, tied output layer.

    Weights are initialised as in GPT-2: normal with standard deviation
    ``initializer_range``, the two output projections of each block scaled by
    ``1 / sqrt(2 * n_layer)``, zero biases, LayerNorm 1 and 0.

    Used in: Q11, Q27.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.vocab_size, self.n_layers, self.max_len = (
            config.vocab_size,
            config.n_layer,
            config.n_positions,
        )
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # tokens
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)  # learned positions
        self.drop = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.lm_head = tie(self.wte, nn.Linear(config.n_embd, config.vocab_size, bias=False))
        std = config.initializer_range
        for name, p in self.named_parameters():  # the tied lm_head.weight comes once, as wte
            if p.dim() == 1:  # biases and LayerNorm parameters: LayerNorm weights 1, else 0
                nn.init.constant_(p, 1.0 if name.endswith(".weight") else 0.0)
            else:  # the two residual-path outputs of each block get 1 / sqrt(2 n_layer)
                residual = name.endswith(("w_o.weight", "proj.weight"))
                nn.init.normal_(p, std=std / (2 * config.n_layer) ** 0.5 if residual else std)

    def forward(
        self,
        input_ids: Tensor,
        cache: KVCache | None = None,
        *,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, KVCache]:
        """Logits for ``input_ids (B, n)``, continuing the sequence held by ``cache``.

        Args:
            input_ids: ``(B, n)`` token ids in ``[0, vocab_size)``; with a cache of length
                ``m0``, positions ``m0 .. m0 + n - 1`` (``m0 + n <= n_positions``).
            cache: the :class:`~qkv.kvcache.KVCache` this model returned for the earlier
                tokens, or None.
            attention_mask: optional ``(B, m0 + n)`` of 0/1 (1 = real token) over past and
                new tokens, as in Hugging Face: padding keys are hidden from every query.
                It does not move positions: without ``position_ids`` they count from 0 in
                every row, exact for right padding; padded positions' logits are meaningless.
            position_ids: optional integer ``(B, n)``, the position of each new token in
                ``[0, n_positions)``, as Hugging Face's ``position_ids``. For left padding give
                ``(attention_mask.cumsum(-1) - 1).clamp(min=0)`` (what Hugging Face's
                ``generate`` uses; :func:`greedy_generate` does it for you), so that each
                row's real tokens count from 0 as if the row were alone.
            mask: optional bool ``(n, m0 + n)`` replacing the causal mask (``True`` = may
                attend), e.g. :func:`qkv.masks.prefix_lm_mask` for a non-causal decoder (Q32).

        Returns:
            ``logits (B, n, V)`` and the new cache, ``m = m0 + n`` positions.
        """
        B, n = self._check_input_ids(input_ids)
        m0 = self._check_cache(cache, B, n)
        m = m0 + n
        if mask is None:
            mask = None if n == 1 else causal_mask(n, m, device=input_ids.device)[None, None]
        elif not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (n, m):
            got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, Tensor) else type(mask)
            raise ValueError(f"mask must be a bool (n, m0 + n) = {(n, m)} tensor, got {got}")
        else:
            mask = mask.to(input_ids.device)[None, None]  # (n, m) -> (1, 1, n, m)
        pad = self._padding_mask(attention_mask, B, m)  # (B, 1, 1, m) or None
        if pad is not None:
            mask = pad if mask is None else mask & pad  # (B, 1, n, m)
        positions = self._positions(position_ids, B, n, m0, input_ids.device)  # (1 or B, n)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))  # (B, n, d_model)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            past = None if cache is None else (cache.keys[i], cache.values[i])
            x, (k, v) = block(x, past, mask)
            keys.append(k)
            values.append(v)
        logits = self.lm_head(self.ln_f(x))  # (B, n, d_model) -> (B, n, V)
        return logits, KVCache(tuple(keys), tuple(values), self._cache_token)


def greedy_generate(
    model: Decoder,
    input_ids: Tensor,
    max_new_tokens: int,
    *,
    attention_mask: Tensor | None = None,
    use_cache: bool = True,
    return_logits: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Append ``max_new_tokens`` arg-max tokens to ``input_ids (B, n)``, one step at a time.

    ``model`` is a :class:`GPT` or a :class:`qkv.llama.Llama` (any :class:`Decoder`).
    With ``use_cache`` each step feeds only the newest token and the :class:`~qkv.kvcache.KVCache`;
    without it each step reruns the whole sequence. Both give the same tokens (for a Llama
    with "dynamic" RoPE scaling past ``max_position_embeddings`` they differ, as in Hugging
    Face: the cached keys keep the rotation of the step that made them).

    A batch of prompts of different lengths is padded on the LEFT, with ``attention_mask``
    ``(B, n)`` of 0/1 (1 = real token): as Hugging Face's ``generate``, each row's positions
    are ``attention_mask.cumsum(-1) - 1`` (0 on the padding), the new tokens continue that
    count, and the mask grows by a 1 per step. Each row then gets the tokens it would get
    alone, without padding. Right padding is refused: the new tokens would follow the padding.

    Returns:
        ``(B, n + max_new_tokens)`` ids (a new tensor; ``input_ids`` is not changed), and
        with ``return_logits`` also the logits each step chose from, ``(B, max_new_tokens, V)``
        (Hugging Face's ``output_logits``).

    Used in: Q23 (transformer/q23_kv_cache).
    """
    if not isinstance(model, Decoder):
        raise TypeError(
            f"model must be a qkv.gpt.GPT or a qkv.llama.Llama, got {type(model).__name__}"
        )
    B, n = model._check_input_ids(input_ids)  # an integer (B, n) tensor, not floats or a list
    check_int("max_new_tokens", max_new_tokens, 0)
    n_total = n + max_new_tokens
    if model.max_len is not None and n_total > model.max_len:
        raise ValueError(
            f"{n} prompt tokens + max_new_tokens={max_new_tokens} = {n_total} "
            f"exceeds n_positions={model.max_len}"
        )
    positions = mask = None
    if attention_mask is not None:
        model._padding_mask(attention_mask, B, n)  # (B, n) of 0 and 1
        mask = attention_mask.to(device=input_ids.device, dtype=torch.long)
        if not mask[:, -1].all():
            raise ValueError(
                "attention_mask must end in 1 in every row: pad on the left, so that each "
                "row's newest token sits in the last column (right padding would put the "
                "generated tokens after the padding)"
            )
        # Hugging Face's generate: each row counts its real tokens from 0; padding gets 0
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # (B, n)
    ids, cache, scores = input_ids.clone(), None, []
    step_input, step_positions = input_ids, positions
    with torch.no_grad():
        for _ in range(max_new_tokens):
            if use_cache:  # feed only what the cache has not seen
                logits, cache = model(
                    step_input, cache, attention_mask=mask, position_ids=step_positions
                )
            else:  # recompute the whole prefix
                logits, _ = model(ids, attention_mask=mask, position_ids=positions)
            scores.append(logits[:, -1])  # (B, V)
            step_input = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
            ids = torch.cat([ids, step_input], dim=1)
            if mask is not None and positions is not None:  # the new token is real, one further
                mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
                step_positions = positions[:, -1:] + 1  # (B, 1)
                positions = torch.cat([positions, step_positions], dim=1)
    if not return_logits:
        return ids
    if not scores:  # max_new_tokens == 0
        V, weight = model.vocab_size, model.lm_head.weight
        return ids, torch.empty(ids.shape[0], 0, V, dtype=weight.dtype, device=ids.device)
    return ids, torch.stack(scores, dim=1)  # max_new_tokens x (B, V) -> (B, max_new_tokens, V)


def gpt_from_hf_state_dict(state_dict: Mapping[str, Tensor], config: GPTConfig) -> GPT:
    """Build a :class:`GPT` holding the weights of a Hugging Face ``GPT2LMHeadModel``.

    Hugging Face's ``Conv1D`` stores weights as ``(in, out)``: they are transposed
    into ``nn.Linear``'s ``(out, in)``, and ``attn.c_attn`` is split into W_q, W_k, W_v.

    Args:
        state_dict: ``GPT2LMHeadModel.state_dict()`` or ``GPT2Model.state_dict()``;
            the tied ``lm_head.weight`` and the old ``attn.bias`` buffers are optional.
        config: the sizes of that model.

    Returns:
        A :class:`GPT` in eval mode on the device and dtype of ``wte``.

    Used in: Q11, Q23, tests/qkv/test_gpt.py (the Hugging Face reference check of the chapter's
    model).
    """
    state = {k.removeprefix("transformer."): v for k, v in state_dict.items()}
    state = {k: v for k, v in state.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    state.pop("lm_head.weight", None)  # tied to wte
    names = {"wte.weight": "wte.weight", "wpe.weight": "wpe.weight"}
    names |= {f"ln_f.{kind}": f"ln_f.{kind}" for kind in ("weight", "bias")}
    per_layer = {
        "ln_1": "ln_1",
        "ln_2": "ln_2",
        "attn.c_proj": "attn.w_o",
        "mlp.c_fc": "fc",
        "mlp.c_proj": "proj",
    }
    layers = range(config.n_layer)
    for i in layers:
        for hf, mine in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"h.{i}.{hf}.{kind}"] = f"blocks.{i}.{mine}.{kind}"
    fused = [f"h.{i}.attn.c_attn.{kind}" for i in layers for kind in ("weight", "bias")]
    missing = sorted(set(names) - set(state) | set(fused) - set(state))
    unexpected = sorted(set(state) - set(names) - set(fused))
    if missing or unexpected:
        raise ValueError(
            f"state_dict does not fit GPT2LMHeadModel: missing {missing}, unexpected {unexpected}"
        )
    ours: dict[str, Tensor] = {}
    for hf, name in names.items():
        conv1d = hf.endswith("weight") and ("attn." in hf or "mlp." in hf)
        ours[name] = state[hf].T if conv1d else state[hf]  # Conv1D (in, out) -> Linear (out, in)
    for i in range(config.n_layer):
        weight = state[f"h.{i}.attn.c_attn.weight"].T  # (d_model, 3 d_model) -> (3 d_model, ...)
        bias = state[f"h.{i}.attn.c_attn.bias"]
        for part, w, b in zip(("w_q", "w_k", "w_v"), weight.chunk(3), bias.chunk(3), strict=True):
            ours[f"blocks.{i}.attn.{part}.weight"], ours[f"blocks.{i}.attn.{part}.bias"] = w, b
    ours["lm_head.weight"] = ours["wte.weight"]
    model = GPT(config)
    expected = model.state_dict()
    for name, tensor in ours.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
            )
    model.load_state_dict(ours)
    weight = state["wte.weight"]
    return model.to(device=weight.device, dtype=weight.dtype).eval()
