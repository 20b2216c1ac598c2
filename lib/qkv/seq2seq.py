"""A GRU encoder-decoder, with a fixed context vector or with Bahdanau attention.

The classic encoder-decoder (Cho et al. 2014; Sutskever et al. 2014) reads the
source into one fixed-length vector ``c`` and generates the target from it. The
attention model of Bahdanau et al. 2015 keeps the same encoder and decoder but
gives step ``i`` its own context vector, a weighted sum over *all* encoder states,

    ``c_i = sum_j alpha_ij h_j``,  ``alpha_i = softmax_j(a(s_{i-1}, h_j))``  (Eq. 5-6),

with the additive score ``a`` of :class:`qkv.attention.AdditiveAttention`.
Here both models share every other part, so a comparison isolates the context:

- encoder: embedding + bidirectional GRU over the real tokens; ``h_j`` concatenates
  the forward and backward states (Bahdanau et al. 2015 §3.2);
- decoder step: ``s_i = GRU([E y_{i-1}; c_i], s_{i-1})`` and
  ``logits_i = W_o [s_i; c_i; E y_{i-1}]``, with ``s_0 = tanh(W_s c)`` (App. A.2.2);
- ``c`` (no attention) is ``[forward state at the last token; backward state at the
  first]``, the summary vector fed to every decoder step as in Cho et al. 2014.

Departures from the paper: a linear output layer instead of the maxout "deep
output", and no beam search (greedy decoding).

Q3's experiment (both models trained on digit strings, their accuracy per length
and the learned alignment) lives in :mod:`qkv.experiments.q03_attention_vs_seq2seq`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from qkv._checks import check_int
from qkv.attention import AdditiveAttention
from qkv.masks import padding_mask

__all__ = [
    "Seq2SeqConfig",
    "Encoder",
    "Decoder",
    "Seq2Seq",
]


@dataclass
class Seq2SeqConfig:
    """Sizes and special ids of a :class:`Seq2Seq` model.

    Attributes:
        vocab_size: ``V``, shared by source and target.
        d_embedding: width of the token embeddings.
        d_hidden: width of each GRU state (the encoder states ``h_j`` have ``2 * d_hidden``).
        attention: Bahdanau attention (True) or one fixed context vector (False).
        pad_id, bos_id, eos_id: padding, beginning and end of a target sequence.
    """

    vocab_size: int
    d_embedding: int = 32
    d_hidden: int = 64
    attention: bool = True
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_embedding", "d_hidden"):
            setattr(self, name, check_int(name, getattr(self, name), 1))
        for name in ("pad_id", "bos_id", "eos_id"):
            value = check_int(name, getattr(self, name), 0)
            if value >= self.vocab_size:
                raise ValueError(f"{name} must be an id in [0, {self.vocab_size}), got {value!r}")
            setattr(self, name, value)


class Encoder(nn.Module):
    """Embedding + bidirectional GRU that reads only the real tokens of each source."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.d_embedding, config.pad_id)
        self.gru = nn.GRU(config.d_embedding, config.d_hidden, batch_first=True, bidirectional=True)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Encode ``src (B, m)`` token ids with ``lengths (B,)`` real tokens each.

        Returns:
            ``(states, summary)``: the annotations ``h_j``, ``(B, m, 2 d_hidden)`` and zero
            at padding; and the fixed-length vector ``c``, ``(B, 2 d_hidden)``, made of the
            forward state at the last real token and the backward state at the first.
        """
        # Packing makes the backward GRU start at the last *real* token, not at padding.
        packed = pack_padded_sequence(
            self.embedding(src), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, final = self.gru(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=src.shape[1])
        summary = torch.cat((final[0], final[1]), dim=-1)  # 2 x (B, d_hidden) -> (B, 2 d_hidden)
        return states, summary


class Decoder(nn.Module):
    """One GRU decoder step, conditioned on a context vector (fixed or attended)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        d_emb, d_hid, d_ctx = config.d_embedding, config.d_hidden, 2 * config.d_hidden
        self.embedding = nn.Embedding(config.vocab_size, d_emb, config.pad_id)
        self.attention = AdditiveAttention(d_hid, d_ctx, d_hid) if config.attention else None
        self.init_state = nn.Linear(d_ctx, d_hid)  # W_s
        self.gru = nn.GRUCell(d_emb + d_ctx, d_hid)
        self.out = nn.Linear(d_hid + d_ctx + d_emb, config.vocab_size)

    def step(
        self, y_prev: Tensor, s_prev: Tensor, states: Tensor, summary: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Decode one token.

        Args:
            y_prev: ``(B,)`` previous target token; s_prev: ``(B, d_hidden)`` state ``s_{i-1}``.
            states: ``(B, m, 2 d_hidden)`` encoder states; summary: ``(B, 2 d_hidden)``.
            mask: ``(B, m)`` bool, True = real source token (may attend).
        Returns:
            logits ``(B, V)``, the new state ``s_i (B, d_hidden)``, and the attention
            weights ``alpha_i (B, m)`` (``None`` without attention).
        """
        emb = self.embedding(y_prev)  # (B, d_embedding)
        weights = None
        if self.attention is None:
            context = summary  # the same c at every step: the bottleneck
        else:  # the query is s_{i-1}, as in Bahdanau et al. 2015 Eq. (6)
            context, weights = self.attention(s_prev[:, None], states, mask=mask[:, None])
            context, weights = context[:, 0], weights[:, 0]  # (B, 1, .) -> (B, .)
        s = self.gru(torch.cat((emb, context), dim=-1), s_prev)
        logits = self.out(torch.cat((s, context, emb), dim=-1))
        return logits, s, weights


class Seq2Seq(nn.Module):
    """Encoder-decoder for token sequences; ``config.attention`` picks the context."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def forward(self, src: Tensor, lengths: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: feed the true previous tokens ``tgt_in (B, n)`` (``BOS`` first).

        Args:
            src: ``(B, m)`` source ids, padding after ``lengths (B,)`` real tokens.
            tgt_in: ``(B, n)``, usually ``tgt[:, :-1]``; predict ``tgt[:, 1:]``.
        Returns:
            logits ``(B, n, V)`` and attention weights ``(B, n, m)`` (``None`` without
            attention). Weights on padded source positions are exactly 0.
        """
        self._check_source(src, lengths)
        self._check_ids("tgt_in", tgt_in, src.shape[0])
        states, summary, s, mask = self._start(src, lengths)
        logits, weights = [], []
        for i in range(tgt_in.shape[1]):
            step_logits, s, alpha = self.decoder.step(tgt_in[:, i], s, states, summary, mask)
            logits.append(step_logits)
            weights.append(alpha)
        return torch.stack(logits, dim=1), self._stack(weights)  # n x (B, .) -> (B, n, .)

    @torch.no_grad()
    def greedy_decode(
        self, src: Tensor, lengths: Tensor, max_steps: int
    ) -> tuple[Tensor, Tensor | None]:
        """Generate ``max_steps`` tokens, each the argmax given the previous ones.

        Returns:
            tokens ``(B, max_steps)`` (``pad_id`` after a row's first ``eos_id``) and
            weights ``(B, max_steps, m)`` (``None`` without attention).
        """
        self._check_source(src, lengths)
        max_steps = check_int("max_steps", max_steps, 1)
        cfg = self.config
        states, summary, s, mask = self._start(src, lengths)
        y = torch.full((src.shape[0],), cfg.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros_like(y, dtype=torch.bool)
        tokens, weights = [], []
        for _ in range(max_steps):
            logits, s, alpha = self.decoder.step(y, s, states, summary, mask)
            y = logits.argmax(dim=-1)
            tokens.append(y.masked_fill(done, cfg.pad_id))
            weights.append(alpha)
            done = done | (y == cfg.eos_id)
        return torch.stack(tokens, dim=1), self._stack(weights)

    def _start(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Encode; return states, summary, the first decoder state s_0 and the source mask."""
        states, summary = self.encoder(src, lengths)
        s0 = torch.tanh(self.decoder.init_state(summary))  # (B, d_hidden)
        mask = padding_mask(lengths, src.shape[1])  # (B, m), True = real source token
        return states, summary, s0, mask

    @staticmethod
    def _stack(weights: list[Tensor | None]) -> Tensor | None:
        # every step returns weights (a model with attention) or every step returns None
        return None if weights[0] is None else torch.stack(cast(list[Tensor], weights), dim=1)

    def _check_ids(self, name: str, ids: object, batch: int | None = None) -> None:
        if not isinstance(ids, Tensor) or ids.dtype != torch.long:
            got = ids.dtype if isinstance(ids, Tensor) else type(ids).__name__
            raise TypeError(f"{name} must be a tensor of torch.long token ids, got {got}")
        if ids.dim() != 2 or ids.shape[1] == 0 or batch not in (None, ids.shape[0]):
            expected = "(B, length >= 1)" if batch is None else f"({batch}, length >= 1)"
            raise ValueError(f"{name} must be {expected}, got {tuple(ids.shape)}")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(f"{name} ids must lie in [0, {self.config.vocab_size})")

    def _check_source(self, src: Tensor, lengths: Tensor) -> None:
        self._check_ids("src", src)
        B, m = src.shape
        if not isinstance(lengths, Tensor) or lengths.dtype.is_floating_point:
            got = lengths.dtype if isinstance(lengths, Tensor) else type(lengths).__name__
            raise TypeError(f"lengths must be an integer tensor, got {got}")
        if lengths.shape != (B,):
            raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
        if lengths.min() < 1 or lengths.max() > m:
            raise ValueError(f"lengths must lie in [1, m={m}], got {lengths.tolist()}")
