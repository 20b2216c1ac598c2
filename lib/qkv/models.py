"""Whole Transformer models built from :mod:`qkv.layers`: the encoder-decoder, and BERT.

- :class:`EncoderDecoder`: the Transformer of Vaswani et al. 2017 (embeddings,
  sinusoidal positions, the encoder and decoder stacks, the output projection).

The building blocks live in :mod:`qkv.layers` (``PositionwiseFeedForward``,
``TransformerEncoderLayer``, ``TransformerDecoderLayer``), the sinusoidal table
in :mod:`qkv.positions` (``sinusoidal_positions``) and BERT in :mod:`qkv.bert`
(``Bert``, ``BertConfig``, ``bert_from_hf_state_dict``, ...); they are imported
here too, so ``qkv.models.<name>`` keeps working for each of them. None of those
modules imports this one, so there is no import cycle.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from qkv._checks import check_ids, check_positive_ints

# Re-exported so that `qkv.models.<name>` keeps working (`X as X` marks a re-export). They
# stay out of __all__, so the API page documents each name once, in its own module.
from qkv.bert import Bert as Bert
from qkv.bert import BertConfig as BertConfig
from qkv.bert import bert_from_hf_state_dict as bert_from_hf_state_dict
from qkv.bert import bert_parameter_breakdown as bert_parameter_breakdown
from qkv.bert import bert_parameter_count as bert_parameter_count
from qkv.layers import PositionwiseFeedForward as PositionwiseFeedForward
from qkv.layers import TransformerDecoderLayer as TransformerDecoderLayer
from qkv.layers import TransformerEncoderLayer
from qkv.masks import key_mask
from qkv.positions import sinusoidal_positions

__all__ = ["EncoderDecoder"]


class EncoderDecoder(nn.Module):
    """The Transformer of Vaswani et al. 2017: embeddings, positions, two stacks, output layer.

    Token embeddings are scaled by ``sqrt(d_model)`` and added to
    :func:`qkv.positions.sinusoidal_positions` (§3.4, §3.5), then dropout (§5.4). Embeddings
    are initialised with standard deviation ``d_model ** -0.5`` so the scaled
    embedding has unit scale. With ``tie_output`` the output projection shares
    the target embedding's weight (§3.4; Press & Wolf 2017). Pre-LN stacks end
    with a final LayerNorm.

    Args:
        src_vocab_size, tgt_vocab_size: ``V`` of source and target.
        d_model, n_heads, d_ff, n_layers: widths; ``n_layers`` in each stack.
        dropout, norm_first, activation: as in :class:`qkv.layers.TransformerEncoderLayer`.
        max_len: longest source or target sequence.
        tie_output: share the output projection with the target embedding.
    Used in: Q11, Q14, Q24.
    """

    positions: Tensor  # a buffer (register_buffer below): tells a type checker it is a Tensor

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
        check_positive_ints(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
        check_positive_ints(n_layers=n_layers, max_len=max_len)
        self.d_model, self.max_len = d_model, max_len
        layer_kw: dict[str, Any] = {
            "dropout": dropout,
            "norm_first": norm_first,
            "activation": activation,
        }
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
        check_ids(ids, embedding.num_embeddings, self.max_len, name)
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
