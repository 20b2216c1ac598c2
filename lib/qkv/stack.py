"""One configurable Transformer stack for the book's experiments, and its training helpers.

Every experiment that trains or probes a token-level Transformer builds the same
:class:`TransformerStack`: token embeddings, a position scheme, ``n_layers`` of
:class:`qkv.layers.TransformerEncoderLayer` (Post-LN or Pre-LN), a final LayerNorm for
Pre-LN, and a linear output layer. The experiments differ in keyword arguments only:

- ``position``: how the order of the tokens reaches attention, one of
  :data:`POSITION_SCHEMES` (learned table, sinusoidal table, RoPE, ALiBi, none);
- ``causal`` and ``window``: which keys a query may see;
- ``activation``, ``init``, ``n_outputs``: the FFN's non-linearity, the initialisation,
  the width of the per-token output;
- ``rope_theta`` and ``rope_scaling``: RoPE's base and a Hugging Face-style rescaling
  (:func:`qkv.positions.rope_frequencies`, as :mod:`qkv.llama`), plain attributes that can
  be changed after training (position interpolation, NTK-aware scaling, YaRN).

RoPE reaches the layers as :mod:`qkv.gpt` and :mod:`qkv.llama` do it: a ``rotate``
closure over the positions, applied to the queries and keys of every head. The reference
models (:class:`qkv.gpt.GPT`, :class:`qkv.llama.Llama`) keep their own blocks, whose
parameter names must match Hugging Face's.

:func:`next_token_loss` and :func:`layer_gradient_norms` are the training helpers of
Q19, Q22, Q24 and Q31.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int, check_probability
from qkv.layers import TransformerEncoderLayer
from qkv.masks import causal_mask, to_additive
from qkv.positions import (
    alibi_bias,
    apply_rotary,
    check_rope_scaling,
    rope_frequencies,
    sinusoidal_positions,
)

__all__ = [
    "POSITION_SCHEMES",
    "TransformerStack",
    "next_token_loss",
    "layer_gradient_norms",
]

#: The values of ``TransformerStack(position=...)``.
POSITION_SCHEMES = ("learned", "sinusoidal", "rope", "alibi", "none")
_INITS = ("xavier", "default")


class TransformerStack(nn.Module):
    """Embeddings, a position scheme, ``n_layers`` encoder layers, a final LayerNorm, a head.

    ``x_0 = embed(ids)`` (plus a learned or sinusoidal position table); then ``n_layers``
    of :class:`~qkv.layers.TransformerEncoderLayer`, Post-LN ``x = LN(x + F(x))`` or
    Pre-LN ``x = x + F(LN(x))`` (``norm_first``); Pre-LN adds a final LayerNorm (the
    residual stream is never normalised otherwise); then a linear layer to ``n_outputs``.

    Args:
        vocab_size: ``V`` of the input tokens.
        d_model, n_heads, d_ff, n_layers: widths and depth; ``d_model`` a multiple of
            ``n_heads``, and ``d_k = d_model / n_heads`` even for ``"rope"``.
        norm_first: Pre-LN (Xiong et al. 2020) when True, Post-LN (Vaswani et al. 2017).
        causal: mask future keys, so the stack is a language model.
        max_len: rows of the ``"learned"`` table (a longer sequence raises ``ValueError``);
            for ``"rope"``, the trained length that ``rope_scaling`` starts from (Hugging
            Face's ``max_position_embeddings``; nothing is refused). Unused otherwise.
        dropout: on the embeddings, each sub-layer's output and the attention weights.
        position: one of :data:`POSITION_SCHEMES`: ``"learned"`` table added to the input
            (BERT, GPT-2), ``"sinusoidal"`` table added to the input (Vaswani et al. 2017
            §3.5, any length), ``"rope"`` rotating q and k in every layer (Su et al. 2021),
            ``"alibi"`` adding ``-slope_h * |i - j|`` to the scores (Press et al. 2022;
            :func:`qkv.positions.alibi_bias`), or ``"none"``.
        activation: the FFN's ``"relu"`` (the original Transformer) or ``"gelu"`` (BERT).
        window: if given, query ``i`` sees only keys with ``|i - j| <= window``.
        n_outputs: the width of the per-token output; defaults to ``vocab_size``
            (next-token logits).
        init: ``"xavier"``: every weight matrix except the embeddings Xavier-uniform
            (Glorot & Bengio 2010), as the original Transformer's code and Xiong et al.
            2020's analysis; ``"default"``: PyTorch's initialisation of each module.
        rope_theta: RoPE's base (10000 in the paper).
        rope_scaling: None, or a dict in Hugging Face's format such as ``{"rope_type":
            "yarn", "factor": 4.0, "original_max_position_embeddings": 16}``
            (:func:`qkv.positions.rope_frequencies`; YaRN's attention factor multiplies
            the rotated q and k).

    ``rope_theta`` and ``rope_scaling`` are attributes, checked when set: a model trained
    at one length can be run at another with ``{"rope_type": "linear", "factor": s}``
    (position interpolation), a larger base (NTK-aware), or YaRN.

    ``forward(ids: (B, L)) -> (B, L, n_outputs)``.
    Used in: Q21, Q25.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        *,
        norm_first: bool,
        causal: bool = True,
        max_len: int = 64,
        dropout: float = 0.0,
        position: str = "learned",
        activation: str = "relu",
        window: int | None = None,
        n_outputs: int | None = None,
        init: str = "xavier",
        rope_theta: float = 10000.0,
        rope_scaling: Mapping | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("d_ff", d_ff),
            ("n_layers", n_layers),
        ):
            check_int(name, value, 1)
        self.max_len = check_int("max_len", max_len, 1)
        n_outputs = vocab_size if n_outputs is None else check_int("n_outputs", n_outputs, 1)
        check_probability(dropout=dropout)
        if position not in POSITION_SCHEMES:
            raise ValueError(f"position must be one of {POSITION_SCHEMES}, got {position!r}")
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        if position == "rope" and (d_model // n_heads) % 2:
            raise ValueError(f"rope rotates feature pairs: d_k = {d_model // n_heads} must be even")
        if position != "rope" and (rope_scaling or rope_theta != 10000.0):
            raise ValueError(f"rope_theta and rope_scaling need position='rope', got {position!r}")
        self.window = None if window is None else check_int("window", window, 0)
        self.norm_first, self.causal, self.position = bool(norm_first), bool(causal), position
        self.d_model, self.n_heads = d_model, n_heads
        self.rope_theta, self.rope_scaling = rope_theta, rope_scaling  # checked by the setters
        # The creation order below fixes which random numbers each parameter draws.
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model) if position == "learned" else None
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                d_model, n_heads, d_ff, dropout, norm_first=norm_first, activation=activation
            )
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.output = nn.Linear(d_model, n_outputs)
        if init == "xavier":
            for name, p in self.named_parameters():
                if p.dim() == 2 and not name.startswith(("embed", "pos")):
                    nn.init.xavier_uniform_(p)

    @property
    def rope_theta(self) -> float:
        """RoPE's base ``theta`` (``rope_theta`` in Hugging Face's configs)."""
        return self._rope_theta

    @rope_theta.setter
    def rope_theta(self, value: float) -> None:
        ok = isinstance(value, Real) and not isinstance(value, bool)  # numpy numbers too
        if not (ok and math.isfinite(value) and value > 1):
            raise ValueError(f"rope_theta must be a finite number > 1, got {value!r}")
        self._rope_theta = float(value)

    @property
    def rope_scaling(self) -> dict | None:
        """None or a checked ``rope_scaling`` dict (:func:`qkv.positions.check_rope_scaling`)."""
        return self._rope_scaling

    @rope_scaling.setter
    def rope_scaling(self, value: Mapping | None) -> None:
        self._rope_scaling = check_rope_scaling(value)

    def attention_mask(self, L: int, device: torch.device | str | None = None) -> Tensor | None:
        """The mask of ``L`` tokens: bool ``(1, 1, L, L)`` (``True`` = may attend), or for
        ``"alibi"`` the additive float ``(1, h, L, L)``: the bias plus ``-inf`` where masked.
        None when every query sees every key."""
        allowed = causal_mask(L, device=device) if self.causal else None  # (L, L)
        if self.window is not None:
            i = torch.arange(L, device=device)
            band = (i[:, None] - i[None, :]).abs() <= self.window  # (L, L)
            allowed = band if allowed is None else allowed & band
        if self.position != "alibi":  # 4-D: a 2-D mask is refused as ambiguous when B == L
            return None if allowed is None else allowed[None, None]
        bias = alibi_bias(self.n_heads, L, device=device)  # (h, L, L), float32
        if allowed is not None:
            bias = bias + to_additive(allowed, bias.dtype)  # -inf where masked
        return bias[None]  # (1, h, L, L): the scores' rank

    def rotary(
        self, L: int, device: torch.device | str | None = None
    ) -> Callable[[Tensor], Tensor]:
        """The ``rotate`` of positions ``0 .. L-1`` that every layer applies to q and k.

        Frequencies from :func:`qkv.positions.rope_frequencies` with ``rope_theta``,
        ``rope_scaling``, ``max_position_embeddings = max_len`` and ``seq_len = L``, as in
        :meth:`qkv.llama.Llama.rope`; YaRN's attention factor multiplies the rotated vectors.
        """
        inv_freq, attention_factor = rope_frequencies(
            self.d_model // self.n_heads,
            base=self.rope_theta,
            scaling=self.rope_scaling,
            max_position_embeddings=self.max_len,
            seq_len=L,
            device=device,
        )
        positions = torch.arange(L, device=device)

        def rotate(t: Tensor) -> Tensor:  # (B, heads, L, d_k)
            turned = apply_rotary(t, positions, inv_freq=inv_freq)
            # YaRN scales q and k by sqrt(1/t): the logits by 1/t (Peng et al. 2023)
            return turned if attention_factor == 1.0 else turned * attention_factor

        return rotate

    def forward(self, ids: Tensor) -> Tensor:
        """``ids: (B, L)`` token ids -> ``(B, L, n_outputs)``."""
        if not isinstance(ids, Tensor) or ids.is_floating_point() or ids.dtype == torch.bool:
            got = ids.dtype if isinstance(ids, Tensor) else type(ids).__name__
            raise TypeError(f"ids must be an integer tensor (B, L), got {got}")
        if ids.dim() != 2:
            raise ValueError(f"ids must be an integer tensor (B, L), got {tuple(ids.shape)}")
        L, device = ids.shape[1], ids.device
        x = self.embed(ids)  # (B, L) -> (B, L, d_model)
        if self.pos is not None:  # "learned"
            if L > self.max_len:
                raise ValueError(
                    f"sequence length {L} > max_len {self.max_len}: the learned position "
                    f"table ({self.max_len} rows) has no row for position {self.max_len}"
                )
            x = x + self.pos(torch.arange(L, device=device))
        elif self.position == "sinusoidal":
            x = x + sinusoidal_positions(L, self.d_model, device=device, dtype=x.dtype)
        x = self.dropout(x)
        mask = self.attention_mask(L, device)
        rotate = self.rotary(L, device) if self.position == "rope" else None
        for layer in self.layers:
            x = layer(x, mask, rotate=rotate)
        return self.output(self.final_norm(x))  # (B, L, n_outputs)


def next_token_loss(model: nn.Module, ids: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy of predicting ``ids[:, 1:]`` from ``ids[:, :-1]`` (nats per token).

    ``label_smoothing`` is PyTorch's ``cross_entropy(label_smoothing=...)``.
    """
    logits = model(ids[:, :-1])  # (B, L - 1, V)
    return F.cross_entropy(
        logits.flatten(0, 1), ids[:, 1:].flatten(), label_smoothing=label_smoothing
    )


def layer_gradient_norms(model: TransformerStack, ids: Tensor) -> list[float]:
    """The L2 norm of the gradient of :func:`next_token_loss` w.r.t. each layer's parameters.

    One number per layer of ``model.layers``, bottom (input side) first (Xiong et al.
    2020, Fig. 3, measure this at initialisation). Uses :func:`torch.autograd.grad`, so
    the parameters' ``.grad`` are left alone.
    """
    params = [list(layer.parameters()) for layer in model.layers]
    grads = torch.autograd.grad(next_token_loss(model, ids), [p for ps in params for p in ps])
    norms, i = [], 0
    for ps in params:
        norms.append(math.sqrt(sum(float(g.pow(2).sum()) for g in grads[i : i + len(ps)])))
        i += len(ps)
    return norms
