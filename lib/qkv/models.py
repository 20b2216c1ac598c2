"""Transformer parts built on :mod:`qkv.attention`: encoder and decoder layers, encoder-decoder.

Everything is batch first. Masks follow the book's convention (``True`` = may
attend); a padding mask ``pad`` is ``(B, L)`` bool with ``True`` = real token.

- :func:`sinusoidal_positions`: the fixed position encodings of Vaswani et al. 2017 §3.5.
- :class:`PositionwiseFeedForward`: FFN(x) = act(x W_1 + b_1) W_2 + b_2 (Eq. 2).
- :class:`TransformerEncoderLayer`: self-attention + FFN, each with a residual
  connection and LayerNorm, Post-LN (Vaswani et al. 2017) or Pre-LN (Xiong et al. 2020).
- :class:`TransformerDecoderLayer`: causal self-attention + cross-attention + FFN.
- :class:`EncoderDecoder`: embeddings, positions, the two stacks and the output projection.

BERT (``Bert``, ``BertConfig``, ``bert_from_hf_state_dict``, ``bert_parameter_count``,
``bert_parameter_breakdown``) is defined in ``qkv.bert`` and re-exported here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qkv.attention import MultiHeadAttention
from qkv.masks import causal_mask, combine, key_mask

# defined in qkv.bert, re-exported by __getattr__ at the end of this module
_BERT_NAMES = (
    "Bert",
    "BertConfig",
    "bert_from_hf_state_dict",
    "bert_parameter_count",
    "bert_parameter_breakdown",
)
__all__ = [
    "sinusoidal_positions",
    "PositionwiseFeedForward",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "EncoderDecoder",
    *_BERT_NAMES,
]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def sinusoidal_positions(
    max_len: int,
    d_model: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Sinusoidal position encodings, Vaswani et al. 2017 §3.5.

    ``PE[pos, 2i] = sin(pos / 10000^(2i / d_model))`` and
    ``PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model))``: wavelengths from 2π
    to 10000 · 2π, so that ``PE[pos + k]`` is a linear function of ``PE[pos]``.

    Returns:
        ``(max_len, d_model)``, added to the (scaled) token embeddings.

    Used in: Q5 (attention/q05_self_attention_core), Q7 (attention/q07_attention_variants),
    Q14 (transformer/q14_encoder_decoder_masks).
    """
    _check_positive_ints(max_len=max_len, d_model=d_model)
    position = torch.arange(max_len, device=device, dtype=torch.float64)[:, None]  # (L, 1)
    two_i = torch.arange(0, d_model, 2, device=device, dtype=torch.float64)  # (ceil(d/2),)
    angle = position / 10000.0 ** (two_i / d_model)  # (L, ceil(d_model / 2))
    pe = torch.empty(max_len, d_model, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])  # an odd d_model has one sine more
    return pe.to(dtype)


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = act(x W_1 + b_1) W_2 + b_2 at every position alike (Vaswani et al. 2017, Eq. 2).

    ``act`` is ReLU in the Transformer and GELU (exact, erf form; Hendrycks &
    Gimpel 2016) in BERT. ``x: (B, L, d_model)`` -> ``(B, L, d_model)`` through ``d_ff``.

    Used in: Q18 (bert/q18_nonlinearity).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu") -> None:
        super().__init__()
        _check_positive_ints(d_model=d_model, d_ff=d_ff)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be 'gelu' or 'relu', got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)  # W_1, b_1
        self.activation = _ACTIVATIONS[activation]()
        self.linear2 = nn.Linear(d_ff, d_model)  # W_2, b_2

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.activation(self.linear1(x)))


class TransformerEncoderLayer(nn.Module):
    """Self-attention and a feed-forward network, each with a residual connection and LayerNorm.

    Post-LN (``norm_first=False``, Vaswani et al. 2017 §3.1, BERT):
    ``x = LayerNorm(x + Dropout(Sublayer(x)))``. Pre-LN (``norm_first=True``,
    Xiong et al. 2020): ``x = x + Dropout(Sublayer(LayerNorm(x)))``, which trains
    without warm-up; a stack of Pre-LN layers needs a final LayerNorm.
    Dropout is applied to each sublayer's output before the residual sum (§5.4)
    and, with ``attention_dropout``, to the attention weights.

    Args:
        d_model, n_heads, d_ff: widths; ``d_model`` must be a multiple of ``n_heads``.
        dropout: residual dropout; ``attention_dropout`` defaults to it.
        norm_first: Pre-LN when True.
        activation: ``"gelu"`` (BERT) or ``"relu"`` (the original Transformer).
        layer_norm_eps: ``1e-5`` in PyTorch, ``1e-12`` in BERT.

    Used in: Q5, Q15, Q17, Q19.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        *,
        norm_first: bool = False,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        _check_probability(dropout=dropout)
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=attention_dropout)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Encode ``x: (B, L, d_model)``; ``mask`` (``True`` = may attend) is ``(L, L)`` or
        ``(B, 1, 1, L)`` from :func:`qkv.masks.key_mask`.

        Returns ``(B, L, d_model)``, and the attention weights ``(B, h, L, L)`` when
        ``need_weights``.
        """
        if self.norm_first:
            attended, weights = self.self_attn(self.norm1(x), mask=mask, need_weights=need_weights)
            x = x + self.dropout(attended)
            x = x + self.dropout(self.ffn(self.norm2(x)))
        else:
            attended, weights = self.self_attn(x, mask=mask, need_weights=need_weights)
            x = self.norm1(x + self.dropout(attended))
            x = self.norm2(x + self.dropout(self.ffn(x)))
        return (x, weights) if need_weights else x


class TransformerDecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder output, and a feed-forward network.

    Self-attention always uses a causal mask, so position ``i`` never sees the
    target tokens after it (Vaswani et al. 2017 §3.2.3); cross-attention may see
    every (real) encoder position, so it takes no causal mask. Residuals,
    LayerNorm and dropout as in :class:`TransformerEncoderLayer`.

    Used in: Q14 (transformer/q14_encoder_decoder_masks).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        *,
        norm_first: bool = False,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_probability(dropout=dropout)
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        """Decode ``x: (B, n, d_model)`` attending to ``memory: (B, m, d_model)``.

        ``self_mask`` (e.g. ``key_mask(tgt_pad)``, ``(B, 1, 1, n)``) is combined
        with the causal mask; ``memory_mask`` (e.g. ``key_mask(src_pad)``,
        ``(B, 1, 1, m)``) masks the encoder's padding. ``True`` = may attend.
        Returns ``(B, n, d_model)``.
        """
        n = x.shape[1]
        causal = causal_mask(n, device=x.device)[None, None]  # (1, 1, n, n): unambiguous if B == n
        self_mask = combine(causal, self_mask)  # (1, 1, n, n) or (B, 1, n, n)
        if self.norm_first:
            attended = self.self_attn(self.norm1(x), mask=self_mask)[0]
            x = x + self.dropout(attended)
            attended = self.cross_attn(self.norm2(x), memory, mask=memory_mask)[0]
            x = x + self.dropout(attended)
            x = x + self.dropout(self.ffn(self.norm3(x)))
        else:
            x = self.norm1(x + self.dropout(self.self_attn(x, mask=self_mask)[0]))
            x = self.norm2(x + self.dropout(self.cross_attn(x, memory, mask=memory_mask)[0]))
            x = self.norm3(x + self.dropout(self.ffn(x)))
        return x


class EncoderDecoder(nn.Module):
    """The Transformer of Vaswani et al. 2017: embeddings, positions, two stacks, output layer.

    Token embeddings are scaled by ``sqrt(d_model)`` and added to
    :func:`sinusoidal_positions` (§3.4, §3.5), then dropout (§5.4). Embeddings
    are initialised with standard deviation ``d_model ** -0.5`` so the scaled
    embedding has unit scale. With ``tie_output`` the output projection shares
    the target embedding's weight (§3.4; Press & Wolf 2017). Pre-LN stacks end
    with a final LayerNorm.

    Args:
        src_vocab_size, tgt_vocab_size: ``V`` of source and target.
        d_model, n_heads, d_ff, n_layers: widths; ``n_layers`` in each stack.
        dropout, norm_first, activation: as in :class:`TransformerEncoderLayer`.
        max_len: longest source or target sequence.
        tie_output: share the output projection with the target embedding.

    Used in: Q3 (attention/q03_attention_vs_seq2seq), Q11 (transformer/q11_weight_sharing),
    Q14 (transformer/q14_encoder_decoder_masks).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        dropout: float = 0.0,
        *,
        max_len: int = 512,
        norm_first: bool = False,
        activation: str = "gelu",
        tie_output: bool = False,
    ) -> None:
        super().__init__()
        _check_positive_ints(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
        _check_positive_ints(n_layers=n_layers, max_len=max_len)
        self.d_model, self.max_len = d_model, max_len
        layer_kw = dict(dropout=dropout, norm_first=norm_first, activation=activation)
        self.src_embed = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model)
        for embedding in (self.src_embed, self.tgt_embed):
            nn.init.normal_(embedding.weight, std=d_model**-0.5)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.encoder_layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, n_heads, d_ff, **layer_kw) for _ in range(n_layers)
        )
        self.decoder_layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, n_heads, d_ff, **layer_kw) for _ in range(n_layers)
        )
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.output = nn.Linear(d_model, tgt_vocab_size, bias=False)
        if tie_output:
            self.output.weight = self.tgt_embed.weight

    def _embed(self, ids: Tensor, embedding: nn.Embedding, name: str) -> Tensor:
        _check_ids(ids, embedding.num_embeddings, self.max_len, name)
        x = embedding(ids) * math.sqrt(self.d_model)  # (B, L) -> (B, L, d_model)
        return self.dropout(x + self.positions[: ids.shape[1]].to(x.dtype))

    def encode(self, src: Tensor, src_pad: Tensor | None = None) -> Tensor:
        """``src: (B, m)`` ids, ``src_pad: (B, m)`` bool (True = real) -> ``(B, m, d_model)``."""
        mask = None if src_pad is None else key_mask(src_pad)  # (B, 1, 1, m)
        x = self._embed(src, self.src_embed, "src")
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_pad: Tensor | None = None,
        tgt_pad: Tensor | None = None,
    ) -> Tensor:
        """``tgt: (B, n)`` ids, ``memory: (B, m, d_model)`` -> logits ``(B, n, tgt_vocab_size)``."""
        self_mask = None if tgt_pad is None else key_mask(tgt_pad)  # (B, 1, 1, n)
        memory_mask = None if src_pad is None else key_mask(src_pad)  # (B, 1, 1, m)
        x = self._embed(tgt, self.tgt_embed, "tgt")
        for layer in self.decoder_layers:
            x = layer(x, memory, self_mask, memory_mask)
        return self.output(self.decoder_norm(x))

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_pad: Tensor | None = None,
        tgt_pad: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits ``(B, n, tgt_vocab_size)`` for ``src: (B, m)``, ``tgt: (B, n)``.

        ``src_pad``/``tgt_pad``: ``(B, m)``/``(B, n)`` bool, True = real token. Logit
        ``i`` depends on ``tgt[:, : i + 1]`` only, so feed ``tgt[:, :-1]`` to predict
        ``tgt[:, 1:]``.
        """
        return self.decode(tgt, self.encode(src, src_pad), src_pad, tgt_pad)


def _check_ids(ids: Tensor, vocab_size: int, max_len: int, name: str) -> None:
    """Token ids must be an integer ``(B, L)`` tensor in ``[0, vocab_size)``, ``L <= max_len``."""
    if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        got = ids.dtype if isinstance(ids, Tensor) else type(ids).__name__
        raise TypeError(f"{name} must be an integer tensor of token ids, got {got}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must be (B, L), got shape {tuple(ids.shape)}")
    if ids.shape[1] > max_len:
        raise ValueError(f"{name} has length {ids.shape[1]} > the maximum of {max_len} positions")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(
            f"{name} must be in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]"
        )


def _check_positive_ints(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_probability(**probabilities: float) -> None:
    for name, p in probabilities.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")


def __getattr__(name: str):
    """Re-export BERT from ``qkv.bert`` on first use (``qkv.models.Bert``).

    ``qkv.bert`` builds on :class:`TransformerEncoderLayer`, so it imports this
    module; importing it lazily here (PEP 562) avoids a circular import.
    """
    if name in _BERT_NAMES:
        from qkv import bert

        return getattr(bert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
