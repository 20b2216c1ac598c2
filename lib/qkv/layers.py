"""The two layers every Transformer stacks: encoder layer and decoder layer, with their FFN.

Everything is batch first. Masks follow the book's convention (``True`` = may
attend); a padding mask ``pad`` is ``(B, L)`` bool with ``True`` = real token.

- :class:`PositionwiseFeedForward`: FFN(x) = act(x W_1 + b_1) W_2 + b_2 (Vaswani et al.
  2017, Eq. 2).
- :class:`TransformerEncoderLayer`: self-attention + FFN, each with a residual
  connection and LayerNorm, Post-LN (Vaswani et al. 2017) or Pre-LN (Xiong et al. 2020).
- :class:`TransformerDecoderLayer`: causal self-attention + cross-attention + FFN.

Whole models built from them: :class:`qkv.models.EncoderDecoder`, :class:`qkv.bert.Bert` and
the experiments' :class:`qkv.stack.TransformerStack`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from qkv._checks import check_positive_ints, check_probability
from qkv.attention import MultiHeadAttention
from qkv.masks import causal_mask, combine

__all__ = ["PositionwiseFeedForward", "TransformerEncoderLayer", "TransformerDecoderLayer"]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = act(x W_1 + b_1) W_2 + b_2 at every position alike (Vaswani et al. 2017, Eq. 2).

    ``act`` is ReLU in the Transformer and GELU (exact, erf form; Hendrycks &
    Gimpel 2016) in BERT. ``x: (B, L, d_model)`` -> ``(B, L, d_model)`` through ``d_ff``.
    Used in: Q18, Q22.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu") -> None:
        super().__init__()
        check_positive_ints(d_model=d_model, d_ff=d_ff)
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

    Used in: Q5, Q11, Q14, Q15, Q18, Q22, Q24.
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
        check_probability(dropout=dropout)
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=attention_dropout)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
        *,
        rotate: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Encode ``x: (B, L, d_model)``; ``mask`` (``True`` = may attend) is ``(L, L)`` (refused
        as ambiguous when ``B == L``: pass ``mask[None, None]``) or ``(B, 1, 1, L)`` from
        :func:`qkv.masks.key_mask`, or a float mask added to the scores (ALiBi). ``rotate``
        turns the queries and keys of every head (RoPE), as in
        :meth:`qkv.attention.MultiHeadAttention.forward`.

        Returns ``(B, L, d_model)``, and the attention weights ``(B, h, L, L)`` when
        ``need_weights``.
        """
        if self.norm_first:
            attended, weights = self.self_attn(
                self.norm1(x), mask=mask, need_weights=need_weights, rotate=rotate
            )
            x = x + self.dropout(attended)
            x = x + self.dropout(self.ffn(self.norm2(x)))
        else:
            attended, weights = self.self_attn(
                x, mask=mask, need_weights=need_weights, rotate=rotate
            )
            x = self.norm1(x + self.dropout(attended))
            x = self.norm2(x + self.dropout(self.ffn(x)))
        return (x, weights) if need_weights else x


class TransformerDecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder output, and a feed-forward network.

    Self-attention always uses a causal mask, so position ``i`` never sees the
    target tokens after it (Vaswani et al. 2017 §3.2.3); cross-attention may see
    every (real) encoder position, so it takes no causal mask. Residuals,
    LayerNorm and dropout as in :class:`TransformerEncoderLayer`.
    Used in: Q14, Q15.
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
        check_probability(dropout=dropout)
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
