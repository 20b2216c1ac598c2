"""Position information for attention: the sinusoidal table, rotary (RoPE) and ALiBi.

Attention itself is blind to order (permuting the tokens permutes the outputs),
so every Transformer adds position information somewhere:

- the sinusoidal table of Vaswani et al. 2017 §3.5 (:func:`sinusoidal_positions`)
  is *added to the input* once, an absolute position per token;
- RoPE (Su et al. 2021, RoFormer) rotates each pair of query/key features by an
  angle proportional to the position; since rotations compose, ``<R_i q, R_j k>
  = <q, R_(j-i) k>`` depends on ``j - i`` only. Applied to ``q`` and ``k``, never
  to ``v``, in every attention layer.
- ALiBi (Press et al. 2022) adds ``-slope_head * |i - j|`` to the scores: no
  embedding at all, a fixed linear penalty per head.

Used in: Q5, Q7, Q11, Q21.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qkv._checks import check_int

__all__ = ["sinusoidal_positions", "rotary_angles", "apply_rotary", "alibi_slopes", "alibi_bias"]


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

    Used in: Q5, Q7, Q11, Q21.
    """
    max_len, d_model = check_int("max_len", max_len, 1), check_int("d_model", d_model, 1)
    position = torch.arange(max_len, device=device, dtype=torch.float64)[:, None]  # (L, 1)
    two_i = torch.arange(0, d_model, 2, device=device, dtype=torch.float64)  # (ceil(d/2),)
    angle = position / 10000.0 ** (two_i / d_model)  # (L, ceil(d_model / 2))
    pe = torch.empty(max_len, d_model, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])  # an odd d_model has one sine more
    return pe.to(dtype)


def rotary_angles(positions: Tensor, d_k: int, *, base: float = 10000.0) -> Tensor:
    """The rotation angles ``p * theta_i`` of RoPE (Su et al. 2021 §3.2.2).

    ``theta_i = base^(-2i / d_k)`` for ``i = 0 .. d_k/2 - 1``: the first feature pair
    turns by one radian per position, the last almost not at all (the same
    frequencies as the sinusoidal table).

    Args:
        positions: ``(..., L)`` integer or float positions.
        d_k: the even feature width to be rotated.
        base: the wavelength base, 10000 in the paper.

    Returns:
        ``(..., L, d_k / 2)`` float32 (float64 for float64 positions) angles in radians.
    Used in: Q7.
    """
    if not isinstance(positions, Tensor) or positions.dtype == torch.bool:
        got = positions.dtype if isinstance(positions, Tensor) else type(positions).__name__
        raise TypeError(f"positions must be an integer or float Tensor (..., L), got {got}")
    d_k = check_int("d_k", d_k)
    if d_k < 2 or d_k % 2:
        raise ValueError(f"d_k must be a positive even int (features rotate in pairs), got {d_k!r}")
    if not (isinstance(base, int | float) and math.isfinite(base) and base > 1):
        raise ValueError(f"base must be a finite number > 1, got {base!r}")
    dtype = torch.float64 if positions.dtype == torch.float64 else torch.float32
    exponents = torch.arange(0, d_k, 2, dtype=dtype, device=positions.device) / d_k
    inv_freq = base**-exponents  # (d_k / 2,) = theta_i
    # (..., L, 1) * (d_k / 2,) -> (..., L, d_k / 2)
    return positions.to(dtype)[..., None] * inv_freq


def apply_rotary(x: Tensor, positions: Tensor | None = None, *, base: float = 10000.0) -> Tensor:
    """Rotate the feature pairs ``(x[2i], x[2i+1])`` of every token by ``p * theta_i`` (RoPE).

    Implements the element-wise form of Su et al. 2021 (§3.4.2) with the paper's interleaved
    pairs (GPT-NeoX and Hugging Face's Llama pair feature ``i`` with ``i + d_k/2`` instead: a
    permutation of the features, with the same relative property). Apply it to queries and
    keys after their projections, per head; the score ``apply_rotary(q, i) .
    apply_rotary(k, j)`` then depends on ``j - i`` only, and each vector keeps its norm.

    Args:
        x: ``(..., L, d_k)`` queries or keys, ``d_k`` even (e.g. ``(B, h, L, d_k)``).
        positions: ``(..., L)`` positions, broadcastable to ``x.shape[:-1]``;
            default ``0 .. L-1``.
        base: the wavelength base, 10000 in the paper.

    Returns:
        a new tensor shaped and typed like ``x`` (``x`` itself is not modified).

    Used in: Q7, Q21.
    """
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point or x.dim() < 2:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"x must be a floating-point Tensor (..., L, d_k), got {got}")
    L, d_k = x.shape[-2], x.shape[-1]
    if d_k % 2:
        raise ValueError(f"the last dim of x (d_k) must be even to rotate pairs, got {d_k}")
    if positions is None:
        positions = torch.arange(L, device=x.device)
    elif isinstance(positions, Tensor):
        try:
            fits = torch.broadcast_shapes(positions.shape, x.shape[:-1]) == x.shape[:-1]
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"positions of shape {tuple(positions.shape)} must broadcast to x's "
                f"(..., L) = {tuple(x.shape[:-1])}"
            )
    if x.dtype == torch.float64 and isinstance(positions, Tensor):
        positions = positions.to(torch.float64)  # float64 inputs get float64 angles
    angles = rotary_angles(positions, d_k, base=base)  # (..., L, d_k / 2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    pairs = x.unflatten(-1, (d_k // 2, 2))  # (..., L, d_k) -> (..., L, d_k / 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]  # (..., L, d_k / 2) each
    # A 2-D rotation of each pair: [cos -sin; sin cos] [even; odd]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2)  # (..., L, d_k / 2, 2) -> (..., L, d_k)


def alibi_slopes(n_heads: int) -> Tensor:
    """The per-head slopes of ALiBi (Press et al. 2022 §3).

    For ``n_heads`` a power of two, the geometric sequence that starts at and has
    ratio ``2^(-8 / n_heads)``: 8 heads get ``1/2, 1/4, ..., 1/256``. Otherwise the
    authors' rule: the slopes of the largest power of two ``p < n_heads``, then every
    other slope of ``2p`` heads (the odd-numbered ones) until there are ``n_heads``.

    Args:
        n_heads: the number of heads ``h``, a positive int.

    Returns:
        ``(h,)`` float32 slopes, decreasing for a power of two.

    Used in: Q7 (attention/q07_attention_variants).
    """
    n_heads = check_int("n_heads", n_heads, 1)
    p = 2 ** math.floor(math.log2(n_heads))  # largest power of two <= n_heads
    slopes = [2 ** (-8 * (i + 1) / p) for i in range(p)]
    # the extra heads interleave between those: 2^(-8 (2i + 1) / 2p), i = 0, 1, ...
    slopes += [2 ** (-8 * (2 * i + 1) / (2 * p)) for i in range(n_heads - p)]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(n_heads: int, L: int, *, device: torch.device | str | None = None) -> Tensor:
    """The ALiBi bias ``-slope_head * |i - j|`` to add to the attention scores.

    The paper (Press et al. 2022 §3) uses it with a causal mask, where ``j <= i`` and
    the bias is ``slope * (j - i)``; the ``|i - j|`` form extends it symmetrically to
    keys on the right, a common choice for bidirectional encoders (not in the paper).
    Pass it as the float ``mask`` of :func:`qkv.attention.scaled_dot_product_attention`
    (it is added to the scores); to combine it with a causal mask, add
    ``qkv.masks.to_additive(causal_mask(L))``.

    Args:
        n_heads: ``h``; L: sequence length (queries and keys are the same sequence).
        device: where to build it.

    Returns:
        ``(h, L, L)`` float32 bias, 0 on the diagonal; ``bias[None]`` is ``(1, h, L, L)``,
        the mask for ``(B, h, L, L)`` scores (a mask has the scores' rank, or is 2-D).

    Used in: Q7 (attention/q07_attention_variants).
    """
    L = check_int("L", L, 1)
    slopes = alibi_slopes(n_heads).to(device)
    positions = torch.arange(L, device=device)
    distance = (positions[:, None] - positions[None, :]).abs()  # (L, 1) - (1, L) -> (L, L)
    return -slopes[:, None, None] * distance  # (h, 1, 1) * (L, L) -> (h, L, L)


__all__ += ["rope_decay_bound"]  # Q21 (kept apart so that additions elsewhere merge cleanly)


def rope_decay_bound(distances: Tensor, d_k: int, *, base: float = 10000.0) -> Tensor:
    """RoFormer's long-term decay: the relative upper bound of a RoPE score at distance r.

    Su et al. 2021 (§3.4.3) write the rotated score as ``Re sum_i h_i e^{i r theta_i}``
    (``h_i`` the product of the i-th query and key pairs as complex numbers) and bound it,
    by Abel summation, by ``max_i |h_(i+1) - h_i| * sum_j |S_j|`` with
    ``S_j = sum_(k<j) e^{i r theta_k}``. The factor that depends on the distance,
    ``(1 / (d_k/2)) sum_(j=1..d_k/2) |S_j|``, is what this returns: it equals
    ``(d_k/2 + 1) / 2`` at ``r = 0`` and shrinks, with ripples, as ``r`` grows
    (their Fig. 2). It bounds how large a score *can* be, not what a trained model does.

    Args:
        distances: ``(...)`` relative distances ``r`` (integer or float).
        d_k: the even rotated width.
        base: the wavelength base (10000 in the paper; Llama 3 uses 500000).

    Returns:
        ``(...)`` float64 bound factors.

    Used in: Q21 (transformer/q21_positional_encodings).
    """
    if not isinstance(distances, Tensor) or distances.dtype == torch.bool:
        got = distances.dtype if isinstance(distances, Tensor) else type(distances).__name__
        raise TypeError(f"distances must be an integer or float Tensor, got {got}")
    angles = rotary_angles(distances.to(torch.float64), d_k, base=base)  # (..., d_k / 2)
    partial = torch.polar(torch.ones_like(angles), angles).cumsum(-1)  # S_1 .. S_(d_k/2)
    return partial.abs().mean(-1)
