"""Q8 (attention/q08_padding_mask): how far the wrong padding masks land from the right one.

- :func:`padded_batch`: the chapter's batch (lengths 5, 3, 7 and 1, padded to ``L = 7``;
  the padding positions hold random values too) and its multi-head attention layer.
- :func:`torch_layer`: PyTorch's ``nn.MultiheadAttention`` of the same size.
- :func:`wrong_answers`: what each popular wrong answer does to that batch: zeroing the
  weights after the softmax, masking the query axis, averaging every position, and
  passing qkv's mask (``True`` = real token) to PyTorch's ``key_padding_mask``
  (``True`` = ignore) without inverting it.

The right answer (mask the keys before the softmax) gives every real token its unpadded
output exactly, whatever the seed; the chapter asserts that directly. How *wrong* the
wrong answers are depends on the random values, hence the claims over seeds.
"""

from __future__ import annotations

import torch
from torch import nn

from qkv._checks import check_int
from qkv.attention import MultiHeadAttention, scaled_dot_product_attention
from qkv.experiments import Claim, claims, experiment
from qkv.masks import key_mask, padding_mask

__all__ = [
    "CLAIMS",
    "LENGTHS",
    "L",
    "D_MODEL",
    "N_HEADS",
    "padded_batch",
    "torch_layer",
    "wrong_answers",
]

LENGTHS = (5, 3, 7, 1)  # the four sequences of the batch
L, D_MODEL, N_HEADS = 7, 12, 3  # padded length, width, heads
SHORT = 1  # the sequence of length 3, whose weights the chapter draws
SEEDS = tuple(range(30))


@experiment
def padded_batch(seed: int) -> tuple[torch.Tensor, MultiHeadAttention]:
    """The chapter's batch ``x`` ``(B, L, d_model)`` and its attention layer, from ``seed``.

    ``x`` comes from a generator seeded with ``seed``; the layer's weights from torch's
    global generator seeded with ``seed`` (restored afterwards), as in a chapter that
    starts with ``qkv.seed_everything(seed)``.

    Used in: Q8.
    """
    seed = check_int("seed", seed, 0)
    x = torch.randn(len(LENGTHS), L, D_MODEL, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    return x, MultiHeadAttention(D_MODEL, N_HEADS).eval()


@experiment
def torch_layer(seed: int) -> nn.MultiheadAttention:
    """PyTorch's ``nn.MultiheadAttention(d_model, h)``, batch first, weights from ``seed + 1``.

    Used in: Q8.
    """
    torch.manual_seed(check_int("seed", seed, 0) + 1)
    return nn.MultiheadAttention(D_MODEL, N_HEADS, batch_first=True).eval()


def _weights(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Single-head self-attention weights with q = k = v = x, ``(B, n, m)``."""
    return scaled_dot_product_attention(x, x, x, mask=mask, return_weights=True)[1]


@experiment
def wrong_answers(seed: int) -> dict[str, float]:
    """Four wrong answers on the batch of ``seed``, each measured where it goes wrong.

    Returns:
        ``after_softmax_row_sum``: weights zeroed at padded keys after the softmax: the
        largest row sum over the real queries of the length-3 sequence (1 if right).
        ``query_mask_share``: the query axis masked instead: the smallest weight a real
        query of that sequence still gives to padding keys (0 if right).
        ``naive_pooling_error``: the mean over all ``L`` positions of the masked layer's
        outputs against the mean over each unpadded sequence (largest difference).
        ``unconverted_error``: qkv's mask given to ``nn.MultiheadAttention`` as
        ``key_padding_mask`` without inverting it: the smallest, over the padded
        sequences, of the largest error at their real tokens.

    Used in: Q8.
    """
    x, mha = padded_batch(seed)
    lengths = torch.tensor(LENGTHS)
    pad = padding_mask(lengths, L)  # (B, L), True = real token
    n = LENGTHS[SHORT]
    with torch.no_grad():
        after = _weights(x) * pad[:, None, :]  # (B, n, m), padded keys zeroed afterwards
        query_masked = _weights(x, pad[:, :, None])  # (B, n, 1): the query axis
        out, _ = mha(x, mask=key_mask(pad))
        alone = [mha(x[b : b + 1, :k])[0][0] for b, k in enumerate(LENGTHS)]
        reference = torch.stack([o.mean(dim=0) for o in alone])  # (B, d_model)
        theirs = torch_layer(seed)
        ours = MultiHeadAttention.from_torch(theirs).eval()  # the same weights
        right, _ = ours(x, mask=key_mask(pad))
        short = lengths < L
        wrong, _ = theirs(x[short], x[short], x[short], key_padding_mask=pad[short])
    padded = [(b, k) for b, k in enumerate(LENGTHS) if k < L]
    errors = [(wrong[row, :k] - right[b, :k]).abs().max() for row, (b, k) in enumerate(padded)]
    return {
        "after_softmax_row_sum": float(after[SHORT, :n].sum(-1).max()),
        "query_mask_share": float(query_masked[SHORT, :n, n:].sum(-1).min()),
        "naive_pooling_error": float((out.mean(dim=1) - reference).abs().max()),
        "unconverted_error": float(min(errors)),
    }


def _claim(claim_id: str, key: str, text: str, op: str, margin: float) -> Claim:
    """A claim on ``wrong_answers(seed)[key]``, over :data:`SEEDS`."""
    return Claim(claim_id, text, lambda seed: wrong_answers(seed)[key], op, margin, seeds=SEEDS)


CLAIMS = claims(
    _claim(
        "q08-after-softmax-row-sum",
        "after_softmax_row_sum",
        "weights zeroed after the softmax: largest row sum of a real query (length-3 sequence)",
        "<",
        1 - 1e-3,
    ),
    _claim(
        "q08-query-mask-share",
        "query_mask_share",
        "query axis masked: smallest weight a real query (length 3) gives to padding keys",
        ">",
        1e-3,
    ),
    _claim(
        "q08-naive-pooling-error",
        "naive_pooling_error",
        "mean over all positions vs mean over each unpadded sequence: largest difference",
        ">",
        1e-3,
    ),
    _claim(
        "q08-unconverted-mask-error",
        "unconverted_error",
        "qkv's mask as nn.MultiheadAttention's key_padding_mask, not inverted: smallest error",
        ">",
        0.05,
    ),
)
