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

:func:`rope_frequencies` gives RoPE's frequencies after the context-extension
rescalings Hugging Face names ``rope_type`` "linear", "dynamic", "yarn" and "llama3"
(used by :mod:`qkv.llama`, equal to ``transformers.modeling_rope_utils``).

Used in: Q5, Q7, Q11, Q21, Q29.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import torch
from torch import Tensor

from qkv._checks import check_int

__all__ = [
    "sinusoidal_positions",
    "rotary_angles",
    "apply_rotary",
    "alibi_slopes",
    "alibi_bias",
    "rope_decay_bound",
    "rope_frequencies",
    "check_rope_scaling",
]


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


def rotary_angles(
    positions: Tensor, d_k: int, *, base: float = 10000.0, inv_freq: Tensor | None = None
) -> Tensor:
    """The rotation angles ``p * theta_i`` of RoPE (Su et al. 2021 §3.2.2).

    ``theta_i = base^(-2i / d_k)`` for ``i = 0 .. d_k/2 - 1``: the first feature pair
    turns by one radian per position, the last almost not at all (the same
    frequencies as the sinusoidal table).

    Args:
        positions: ``(..., L)`` integer or float positions.
        d_k: the even feature width to be rotated.
        base: the wavelength base, 10000 in the paper.
        inv_freq: ``(d_k / 2,)`` frequencies ``theta_i`` to use instead of ``base``'s,
            e.g. rescaled ones from :func:`rope_frequencies`.

    Returns:
        ``(..., L, d_k / 2)`` float32 (float64 for float64 positions) angles in radians.
    Used in: Q7.
    """
    if not isinstance(positions, Tensor) or positions.dtype == torch.bool:
        got: object = positions.dtype if isinstance(positions, Tensor) else type(positions).__name__
        raise TypeError(f"positions must be an integer or float Tensor (..., L), got {got}")
    d_k = check_int("d_k", d_k)
    if d_k < 2 or d_k % 2:
        raise ValueError(f"d_k must be a positive even int (features rotate in pairs), got {d_k!r}")
    is_number = isinstance(base, Real) and not isinstance(base, bool)  # numpy numbers too
    if not (is_number and math.isfinite(base) and base > 1):
        raise ValueError(f"base must be a finite number > 1, got {base!r}")
    dtype = torch.float64 if positions.dtype == torch.float64 else torch.float32
    if inv_freq is None:
        exponents = torch.arange(0, d_k, 2, dtype=dtype, device=positions.device) / d_k
        inv_freq = base**-exponents  # (d_k / 2,) = theta_i
    elif not isinstance(inv_freq, Tensor) or inv_freq.shape != (d_k // 2,):
        got = tuple(inv_freq.shape) if isinstance(inv_freq, Tensor) else type(inv_freq).__name__
        raise ValueError(
            f"inv_freq must be a tensor of shape (d_k / 2,) = ({d_k // 2},), got {got}"
        )
    else:
        inv_freq = inv_freq.to(dtype=dtype, device=positions.device)
    # (..., L, 1) * (d_k / 2,) -> (..., L, d_k / 2)
    return positions.to(dtype)[..., None] * inv_freq


def apply_rotary(
    x: Tensor,
    positions: Tensor | None = None,
    *,
    base: float = 10000.0,
    inv_freq: Tensor | None = None,
) -> Tensor:
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
        inv_freq: ``(d_k / 2,)`` frequencies to use instead of ``base``'s
            (:func:`rope_frequencies`; :mod:`qkv.llama`).

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
    angles = rotary_angles(positions, d_k, base=base, inv_freq=inv_freq)  # (..., L, d_k / 2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    pairs = x.unflatten(-1, (d_k // 2, 2))  # (..., L, d_k) -> (..., L, d_k / 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]  # (..., L, d_k / 2) each
    # A 2-D rotation of each pair: [cos -sin; sin cos] [even; odd]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2)  # (..., L, d_k / 2, 2) -> (..., L, d_k)


# ---------------------------------------------------------------- RoPE scaling
# The keys each rope_type takes besides "rope_type", Hugging Face's names: (required, optional).
_ROPE_KEYS = {
    "linear": ({"factor"}, set()),
    "dynamic": ({"factor"}, set()),
    "yarn": (
        {"factor"},
        {
            "original_max_position_embeddings",
            "attention_factor",
            "beta_fast",
            "beta_slow",
            "mscale",
            "mscale_all_dim",
            "truncate",
        },
    ),
    "llama3": (
        {"factor", "low_freq_factor", "high_freq_factor"},
        {"original_max_position_embeddings"},
    ),
}


def _check_number(name: str, value: object, minimum: float, *, strict: bool = False) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        if value > minimum or (value == minimum and not strict):
            return float(value)
    bound = f"> {minimum}" if strict else f">= {minimum}"
    raise ValueError(f"rope_scaling[{name!r}] must be a finite number {bound}, got {value!r}")


def check_rope_scaling(scaling: Mapping | None) -> dict | None:
    """Return a checked copy of a ``rope_scaling`` dict in Hugging Face's format, or None.

    ``{"rope_type": "linear" | "dynamic" | "yarn" | "llama3", "factor": s, ...}`` (see
    :func:`rope_frequencies` for each type's keys). The old key ``"type"`` is read as
    ``"rope_type"``; ``None``, ``{}`` and ``rope_type="default"`` mean plain RoPE (None).

    Raises:
        TypeError: ``scaling`` is not a dict.
        ValueError: an unknown ``rope_type`` or key, a missing factor or one below 1, or a
            value of the wrong kind.
    """
    if scaling is None:
        return None
    if not isinstance(scaling, Mapping):
        raise TypeError(f"rope_scaling must be a dict or None, got {type(scaling).__name__}")
    params = dict(scaling)
    rope_type = params.pop("rope_type", params.pop("type", "default"))
    if rope_type == "default" and not params:
        return None
    if rope_type not in _ROPE_KEYS:
        raise ValueError(
            f"rope_scaling['rope_type'] must be one of {sorted(_ROPE_KEYS)}, got {rope_type!r}"
        )
    required, optional = _ROPE_KEYS[rope_type]
    if set(params) - required - optional or required - set(params):
        raise ValueError(
            f"rope_type {rope_type!r} takes {sorted(required)} and optionally "
            f"{sorted(optional)}; got keys {sorted(params)}"
        )
    params["factor"] = _check_number("factor", params["factor"], 1.0)
    for name in (
        "attention_factor",
        "beta_fast",
        "beta_slow",
        "low_freq_factor",
        "high_freq_factor",
    ):
        if params.get(name) is not None:
            params[name] = _check_number(name, params[name], 0.0, strict=True)
    for name in ("mscale", "mscale_all_dim"):
        if params.get(name) is not None:
            params[name] = _check_number(name, params[name], 0.0)
    if "original_max_position_embeddings" in params:
        check_int(
            "rope_scaling['original_max_position_embeddings']",
            params["original_max_position_embeddings"],
            1,
        )
    if rope_type == "llama3" and not params["high_freq_factor"] > params["low_freq_factor"]:
        low, high = params["low_freq_factor"], params["high_freq_factor"]
        raise ValueError(
            f"rope_scaling['high_freq_factor'] must be > low_freq_factor, got {high} and {low}"
        )
    if not isinstance(params.get("truncate", True), bool):
        raise ValueError(f"rope_scaling['truncate'] must be a bool, got {params['truncate']!r}")
    return {"rope_type": rope_type, **params}


def _yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's ``sqrt(1/t) = 0.1 ln(s) + 1`` (Peng et al. 2023; ``get_mscale`` in their code)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def rope_frequencies(
    d_k: int,
    *,
    base: float = 10000.0,
    scaling: Mapping | None = None,
    max_position_embeddings: int | None = None,
    seq_len: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, float]:
    """RoPE's frequencies ``theta_i`` after a context-extension rescaling, and the attention factor.

    Equal to Hugging Face's ``ROPE_INIT_FUNCTIONS`` (``transformers.modeling_rope_utils``) for
    ``scaling["rope_type"]``, with ``s = scaling["factor"]`` and ``L = max_position_embeddings``:

    - None: ``theta_i = base^(-2i / d_k)``, as :func:`rotary_angles`.
    - ``"linear"``: Position Interpolation (Chen et al. 2023): position ``p`` turns as ``p / s``
      would, i.e. ``theta_i / s``: ``s`` times the context squeezed into the trained angles.
    - ``"dynamic"``: "NTK-aware" scaling with a base that grows with the sequence:
      ``base * (s * l / L - (s - 1))^(d_k / (d_k - 2))`` for a sequence of ``l = max(seq_len, L)``
      tokens, so nothing changes up to ``L``; the fastest pair keeps its frequency, the slowest
      is divided by ``s * l / L - (s - 1)`` (the formula of the YaRN authors' code,
      github.com/jquesnelle/yarn).
    - ``"yarn"``: YaRN, "NTK-by-parts" plus attention scaling (Peng et al. 2023): pairs that
      turn more than ``beta_fast`` (32) times over ``original_max_position_embeddings`` keep
      ``theta_i``, pairs that turn less than ``beta_slow`` (1) times get ``theta_i / s``, and a
      ramp linear in the pair index ``i`` blends the two in between (as the authors' code and
      Hugging Face do; the bounds rounded out with floor/ceil when ``truncate``). The
      attention factor ``0.1 ln(s) + 1`` (or ``attention_factor``, or the ratio that
      ``mscale`` and ``mscale_all_dim`` give) multiplies the rotated q and k: the logits
      are scaled by its square.
    - ``"llama3"``: Llama 3.1's rule (``apply_scaling`` in Meta's github.com/meta-llama/
      llama-models): pairs whose wavelength ``2 pi / theta_i`` is shorter than
      ``L / high_freq_factor`` keep ``theta_i``, longer than ``L / low_freq_factor`` get
      ``theta_i / s``, and in between a blend linear in ``L / wavelength`` (the number of
      turns over ``L = original_max_position_embeddings``).

    Args:
        d_k: the even width being rotated (``head_dim``).
        base: ``rope_theta``.
        scaling: a ``rope_scaling`` dict (:func:`check_rope_scaling`), or None.
        max_position_embeddings: ``L``; needed by "dynamic", and by "yarn" and "llama3"
            without ``original_max_position_embeddings``.
        seq_len: for "dynamic": the length of the sequence being run (its largest position + 1).
        device: where to put the result.

    Returns:
        ``(inv_freq, attention_factor)``: ``(d_k / 2,)`` float64 and a float (1 except for yarn).
    Used in: Q29.
    """
    d_k = check_int("d_k", d_k)
    if d_k < 2 or d_k % 2:
        raise ValueError(f"d_k must be a positive even int (features rotate in pairs), got {d_k!r}")
    if not (isinstance(base, int | float) and math.isfinite(base) and base > 1):
        raise ValueError(f"base must be a finite number > 1, got {base!r}")
    scaling = check_rope_scaling(scaling)
    exponents = torch.arange(0, d_k, 2, dtype=torch.float64, device=device) / d_k  # 2i / d_k
    if scaling is None:
        return base**-exponents, 1.0
    rope_type, factor = scaling["rope_type"], scaling["factor"]
    if rope_type == "linear":
        return base**-exponents / factor, 1.0
    # "dynamic", "yarn" and "llama3" need the trained length L
    L = scaling.get("original_max_position_embeddings", max_position_embeddings)
    if L is None:
        raise ValueError(f"rope_type {rope_type!r} needs max_position_embeddings")
    L = check_int("max_position_embeddings", L, 1)
    if rope_type == "dynamic":
        if d_k == 2:
            raise ValueError("rope_type 'dynamic' needs d_k > 2 (its exponent is d_k / (d_k - 2))")
        length = L if seq_len is None else max(check_int("seq_len", seq_len, 1), L)
        base = base * (factor * length / L - (factor - 1)) ** (d_k / (d_k - 2))
    inv_freq = base**-exponents  # (d_k / 2,)
    if rope_type == "llama3":
        wavelength = 2 * math.pi / inv_freq  # positions per turn of each pair
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        smooth = (L / wavelength - low) / (high - low)  # 0 at wavelength L / low, 1 at L / high
        blend = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        kept = torch.where(wavelength < L / high, inv_freq, blend)
        return torch.where(wavelength > L / low, inv_freq / factor, kept), 1.0
    if rope_type != "yarn":
        return inv_freq, 1.0

    def pair_turning(turns: float) -> float:  # the (fractional) pair i turning `turns` times in L
        return d_k * math.log(L / (turns * 2 * math.pi)) / (2 * math.log(base))

    low = pair_turning(scaling.get("beta_fast") or 32.0)
    high = pair_turning(scaling.get("beta_slow") or 1.0)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d_k - 1)
    high = high + 0.001 if low == high else high  # a step, not a division by zero
    i = torch.arange(d_k // 2, dtype=torch.float64, device=device)
    ramp = ((i - low) / (high - low)).clamp(0, 1)  # 0: keep theta_i (fast pairs), 1: theta_i / s
    inv_freq = inv_freq * (1 - ramp) + inv_freq / factor * ramp
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = _yarn_mscale(factor)
    return inv_freq, float(attention_factor)


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

    Used in: Q21, Q29.
    """
    if not isinstance(distances, Tensor) or distances.dtype == torch.bool:
        got = distances.dtype if isinstance(distances, Tensor) else type(distances).__name__
        raise TypeError(f"distances must be an integer or float Tensor, got {got}")
    angles = rotary_angles(distances.to(torch.float64), d_k, base=base)  # (..., d_k / 2)
    partial = torch.polar(torch.ones_like(angles), angles).cumsum(-1)  # S_1 .. S_(d_k/2)
    return partial.abs().mean(-1)
