"""A tiny Transformer whose position scheme and attention span are arguments.

The experiments of Q21 (length generalisation) and Q25 (inductive bias) compare
models that differ in **one** thing: how the position of a token reaches
attention, or which keys a query may see. :class:`TinyTransformer` is a Pre-LN
stack (Xiong et al. 2020) built on :func:`qkv.attention.scaled_dot_product_attention`
with ``position`` one of

- ``"learned"``: a trainable table of ``max_len`` rows added to the input (BERT,
  GPT-2): a sequence longer than ``max_len`` has no row and raises ``ValueError``;
- ``"sinusoidal"``: the fixed table of Vaswani et al. 2017 §3.5, added to the input,
  computed for any length;
- ``"rope"``: rotary embeddings applied to queries and keys in every layer (Su et al.
  2021), nothing added to the input;
- ``"alibi"``: a per-head linear distance penalty on the scores (Press et al. 2022);
- ``"none"``: no position information at all (with a causal mask the model can
  still infer some order).

``causal`` adds the decoder's causal mask; ``window=w`` lets query ``i`` see keys
``j`` with ``|i - j| <= w`` only (a local, convolution-like span). For ``"rope"``,
two plain attributes rescale the rotation after training, as context-extension
methods do: ``rope_position_scale`` multiplies the positions (position interpolation
sets it to ``train_len / new_len``) and ``rope_base`` replaces the base 10000
(NTK-aware scaling raises it).

Used in: Q21 (transformer/q21_positional_encodings), Q25 (transformer/q25_weaknesses).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.attention import scaled_dot_product_attention
from qkv.masks import causal_mask, to_additive
from qkv.positions import alibi_slopes, apply_rotary, sinusoidal_positions

__all__ = ["POSITION_SCHEMES", "TinyTransformer"]

#: The values of ``TinyTransformer(position=...)``.
POSITION_SCHEMES = ("learned", "sinusoidal", "rope", "alibi", "none")


class _Block(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)  # W_Q, W_K, W_V side by side
        self.out = nn.Linear(d_model, d_model)  # W_O
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        rope: bool,
        positions: Tensor | None = None,
        base: float = 10000.0,
    ) -> Tensor:
        B, L, d_model = x.shape
        # (B, L, 3 d_model) -> (B, L, 3, h, d_k) -> 3 x (B, h, L, d_k)
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        if rope:  # rotate queries and keys, never values
            q, k = apply_rotary(q, positions, base=base), apply_rotary(k, positions, base=base)
        attended = scaled_dot_product_attention(q, k, v, mask)  # (B, h, L, d_k)
        x = x + self.out(attended.transpose(1, 2).reshape(B, L, d_model))  # -> (B, L, d_model)
        return x + self.ffn(self.norm2(x))


class TinyTransformer(nn.Module):
    """Token embedding, a position scheme, ``n_layers`` Pre-LN blocks, a final LayerNorm and head.

    Args:
        vocab_size: ``V`` of the input tokens.
        n_outputs: size of the per-token output (next-token logits: ``V``; tags: the
            number of classes).
        d_model, n_heads, n_layers: widths and depth; ``d_model`` a multiple of ``n_heads``
            (and ``d_k = d_model / n_heads`` even for ``"rope"``).
        position: one of :data:`POSITION_SCHEMES`.
        max_len: rows of the ``"learned"`` table (ignored by the other schemes).
        causal: mask future keys (a decoder / language model).
        window: if given, query ``i`` sees only keys with ``|i - j| <= window``.

    ``forward(ids: (B, L)) -> (B, L, n_outputs)``.

    Used in: Q21 (transformer/q21_positional_encodings), Q25 (transformer/q25_weaknesses).
    """

    def __init__(
        self,
        vocab_size: int,
        n_outputs: int,
        *,
        d_model: int = 32,
        n_heads: int = 2,
        n_layers: int = 1,
        position: str = "sinusoidal",
        max_len: int = 64,
        causal: bool = True,
        window: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("n_outputs", n_outputs),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("n_layers", n_layers),
            ("max_len", max_len),
        ):
            check_int(name, value, 1)
        if position not in POSITION_SCHEMES:
            raise ValueError(f"position must be one of {POSITION_SCHEMES}, got {position!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        if position == "rope" and (d_model // n_heads) % 2:
            raise ValueError(f"rope rotates feature pairs: d_k = {d_model // n_heads} must be even")
        if window is not None:
            check_int("window", window, 0)
        self.position, self.max_len, self.causal, self.window = position, max_len, causal, window
        self.d_model, self.n_heads = d_model, n_heads
        self.rope_position_scale, self.rope_base = 1.0, 10000.0  # see the module docstring
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_len, d_model) if position == "learned" else None
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, 4 * d_model) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_outputs)

    def _mask(self, L: int, device: torch.device) -> Tensor | None:
        """The bool or additive mask for ``L`` tokens: ``(1, 1, L, L)`` or ``(1, h, L, L)``."""
        allowed = None
        if self.causal:
            allowed = causal_mask(L, device=device)
        if self.window is not None:
            i = torch.arange(L, device=device)
            band = (i[:, None] - i[None, :]).abs() <= self.window  # (L, L)
            allowed = band if allowed is None else allowed & band
        if self.position != "alibi":  # the scores' rank: a 2-D mask is ambiguous if B == L
            return None if allowed is None else allowed[None, None]
        # ALiBi: -slope_h * |i - j| on the scores (Press et al. 2022 §3)
        i = torch.arange(L, device=device)
        distance = (i[:, None] - i[None, :]).abs()  # (L, L)
        slopes = alibi_slopes(self.n_heads).to(device)
        bias = -slopes[:, None, None] * distance  # (h, 1, 1) * (L, L) -> (h, L, L)
        if allowed is not None:
            bias = bias + to_additive(allowed, bias.dtype)
        return bias[None]  # (1, h, L, L): the same rank as the scores

    def forward(self, ids: Tensor) -> Tensor:
        """``ids: (B, L)`` token ids -> ``(B, L, n_outputs)`` logits."""
        if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dim() != 2:
            got = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, Tensor) else type(ids)
            raise TypeError(f"ids must be an integer tensor (B, L), got {got}")
        B, L = ids.shape
        if self.position == "learned" and L > self.max_len:
            raise ValueError(
                f"sequence length {L} is longer than the learned position table "
                f"({self.max_len} rows): position {self.max_len} has no embedding"
            )
        x = self.embed(ids)  # (B, L) -> (B, L, d_model)
        if self.pos_embed is not None:  # position == "learned"
            x = x + self.pos_embed(torch.arange(L, device=ids.device))
        elif self.position == "sinusoidal":
            x = x + sinusoidal_positions(L, self.d_model, device=ids.device, dtype=x.dtype)
        mask = self._mask(L, ids.device)
        positions = torch.arange(L, device=ids.device) * self.rope_position_scale
        for block in self.blocks:
            x = block(x, mask, self.position == "rope", positions, self.rope_base)
        return self.head(self.norm(x))
