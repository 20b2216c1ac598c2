"""Q21 (transformer/q21_positional_encodings): train short, test long, per position scheme.

The task, :func:`offset_copy`, needs position and nothing else: at every position
``i`` the model must output the token ``offset`` places back, ``x[i - offset]``
(the tokens are uniform random, so content gives no hint). A causal
Pre-LN :class:`~qkv.stack.TransformerStack` is trained with :mod:`qkv.train` on
sequences of ``train_len`` tokens, once per position scheme, then evaluated on
longer sequences. The offset is the same at every length, so a scheme that
represents *relative* position well has nothing new to learn at test time; an
absolute scheme meets positions it has never seen.

One function per claimed number, each a function of the seed:
:func:`positions_needed`, :func:`sinusoidal_at_4x`, :func:`rope_vs_sinusoidal_at_2x`;
``CLAIMS`` declares their margins.

Used in: Q21, Q29.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from qkv._checks import check_int
from qkv.experiments import Claim, claims, experiment
from qkv.stack import POSITION_SCHEMES, TransformerStack
from qkv.train import TrainConfig, train

__all__ = [
    "CopyBatch",
    "offset_copy",
    "LengthResult",
    "length_generalization",
    "positions_needed",
    "sinusoidal_at_4x",
    "rope_vs_sinusoidal_at_2x",
    "context_extension",
    "pi_without_fine_tuning",
    "pi_fine_tuning_gain",
    "ntk_zero_shot_gain",
    "CLAIMS",
]

TRAIN_LEN = 16  # every model is trained on 16 tokens ...
EVAL_LENS = (16, 32, 64)  # ... and tested at 1, 2 and 4 times that
STEPS = 200
#: Steps of the short fine-tune at the new length in :func:`context_extension`.
FINE_TUNE_STEPS = 30


class CopyBatch(NamedTuple):
    """``inputs (B, L)`` token ids and ``targets (B, L)``: ``inputs`` shifted by the offset."""

    inputs: Tensor
    targets: Tensor


def offset_copy(
    batch_size: int,
    length: int,
    *,
    offset: int = 1,
    vocab_size: int = 10,
    generator: torch.Generator,
) -> CopyBatch:
    """Uniform random tokens; the target at position ``i`` is ``inputs[i - offset]``.

    The first ``offset`` positions have nothing to copy: their target is ``-100``,
    the ``ignore_index`` of :func:`torch.nn.functional.cross_entropy`.

    Args:
        batch_size, length: ``B`` and ``L``.
        offset: how far back to copy, ``1 <= offset < L``.
        vocab_size: ``V``; tokens are ``0 .. V-1``.
        generator: a CPU :class:`torch.Generator` (the batch is a function of it).
    """
    check_int("batch_size", batch_size, 1)
    check_int("length", length, 2)
    check_int("offset", offset, 1)
    check_int("vocab_size", vocab_size, 2)
    if offset >= length:
        raise ValueError(f"offset must be < length, got offset {offset} and length {length}")
    inputs = torch.randint(0, vocab_size, (batch_size, length), generator=generator)
    targets = torch.full_like(inputs, -100)
    targets[:, offset:] = inputs[:, :-offset]
    return CopyBatch(inputs, targets)


def _copy_loss(model: torch.nn.Module, batch: CopyBatch) -> Tensor:
    logits = model(batch.inputs)  # (B, L, V)
    return F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten())


@torch.no_grad()
def _accuracy(model: torch.nn.Module, batch: CopyBatch) -> float:
    predicted = model(batch.inputs).argmax(dim=-1)  # (B, L)
    scored = batch.targets != -100
    return (predicted[scored] == batch.targets[scored]).float().mean().item()


@dataclass(frozen=True)
class LengthResult:
    """What :func:`length_generalization` measured.

    Attributes:
        train_len: the length every model was trained on.
        eval_lens: the evaluation lengths, ``train_len`` first.
        accuracy: ``scheme -> [accuracy at each evaluation length]`` (copy accuracy on
            held-out sequences; chance is ``1 / vocab_size``). The ``"learned"`` scheme has
            an entry only for lengths it can run.
        errors: ``scheme -> the error message`` it raised at a longer length.
    """

    train_len: int
    eval_lens: tuple[int, ...]
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@functools.lru_cache(maxsize=16)
def _trained_model(
    scheme: str,
    seed: int,
    train_len: int,
    offset: int,
    vocab_size: int,
    steps: int,
    device: str | torch.device | None,
) -> TransformerStack:
    """One tiny causal model trained on :func:`offset_copy` at ``train_len`` (cached; eval mode).

    One Pre-LN layer (``d_model = 32``, 4 heads, GELU FFN of ``4 d_model``, PyTorch's
    initialisation); ``max_len = train_len`` is the learned table's size and, for RoPE,
    the trained length that ``rope_scaling`` starts from.
    """
    config = TrainConfig(steps=steps, lr=3e-3, seed=seed, device=device)
    torch.manual_seed(seed)
    model = TransformerStack(
        vocab_size,
        32,
        4,
        4 * 32,
        1,
        norm_first=True,
        causal=True,
        max_len=train_len,
        position=scheme,
        activation="gelu",
        init="default",
    )

    def batches(step: int, g: torch.Generator) -> CopyBatch:
        return offset_copy(32, train_len, offset=offset, vocab_size=vocab_size, generator=g)

    train(model, batches, _copy_loss, config)
    return model.eval()


@experiment
@functools.lru_cache(maxsize=8)
def length_generalization(
    seed: int = 0,
    *,
    schemes: tuple[str, ...] = ("none", "learned", "sinusoidal", "rope", "alibi"),
    train_len: int = TRAIN_LEN,
    eval_lens: tuple[int, ...] = EVAL_LENS,
    offset: int = 1,
    vocab_size: int = 10,
    steps: int = STEPS,
    device: str | torch.device | None = None,
) -> LengthResult:
    """Train one tiny causal model per position scheme on ``train_len``, test at ``eval_lens``.

    Each model (``d_model=32``, 4 heads, 1 layer; the ``"learned"`` table has exactly
    ``train_len`` rows) is trained for ``steps`` AdamW updates (lr 3e-3, batches of 32)
    on :func:`offset_copy`, with the same seed for its initialisation and its batches.
    Evaluation uses 64 fresh sequences per length (seeded by ``seed``). Results are
    cached: a second call with the same arguments returns the same object.

    Returns:
        a :class:`LengthResult`.

    Used in: Q21 (also ``benchmarks/robustness.py``).
    """
    check_int("seed", seed, 0)
    unknown = set(schemes) - set(POSITION_SCHEMES)
    if unknown:
        raise ValueError(f"schemes must be among {POSITION_SCHEMES}, got {sorted(unknown)}")
    if not eval_lens or eval_lens[0] != train_len:
        raise ValueError(f"eval_lens must start with train_len {train_len}, got {eval_lens}")
    result = LengthResult(train_len, tuple(eval_lens))
    eval_g = torch.Generator().manual_seed(10_000 + seed)
    tests = [
        offset_copy(64, n, offset=offset, vocab_size=vocab_size, generator=eval_g)
        for n in eval_lens
    ]
    for scheme in schemes:
        model = _trained_model(scheme, seed, train_len, offset, vocab_size, steps, device)
        device_ = next(model.parameters()).device
        accuracy = result.accuracy.setdefault(scheme, [])
        for test in tests:
            test = CopyBatch(test.inputs.to(device_), test.targets.to(device_))
            try:
                accuracy.append(_accuracy(model, test))
            except ValueError as err:  # a learned table has no row for this position
                result.errors[scheme] = str(err)
                break
    return result


@experiment
def positions_needed(seed: int) -> float:
    """At the training length: worst accuracy with positions minus accuracy without.

    Used in: Q21.
    """
    acc = length_generalization(seed=seed).accuracy
    return min(acc[k][0] for k in ("learned", "sinusoidal", "rope")) - acc["none"][0]


@experiment
def sinusoidal_at_4x(seed: int) -> float:
    """Copy accuracy at 64 tokens of the sinusoidal model trained on 16.

    Used in: Q21.
    """
    return length_generalization(seed=seed).accuracy["sinusoidal"][2]


@experiment
def rope_vs_sinusoidal_at_2x(seed: int) -> float:
    """Copy accuracy at 32 tokens (trained on 16): RoPE minus sinusoidal.

    Used in: Q21.
    """
    acc = length_generalization(seed=seed).accuracy
    return acc["rope"][1] - acc["sinusoidal"][1]


@experiment
@functools.lru_cache(maxsize=8)
def context_extension(seed: int = 0) -> dict[str, float]:
    """Copy accuracy at 64 tokens of the RoPE model trained on 16, rescaled four ways.

    The model of :func:`length_generalization` (RoPE, trained on 16 tokens) is run at
    ``new_len = 64`` (factor ``s = 4``):

    - ``"extrapolate"``: unchanged, positions 0..63 (angles it never saw);
    - ``"PI, no fine-tuning"``: position interpolation (Chen et al. 2023), positions
      multiplied by ``1/s`` (``rope_scaling = {"rope_type": "linear", "factor": s}``), so
      every angle lies inside the trained range;
    - ``"PI + fine-tuning"``: the same, after ``FINE_TUNE_STEPS`` AdamW steps on
      64-token sequences;
    - ``"direct fine-tuning"``: the same steps without rescaling (a control);
    - ``"NTK-aware, no fine-tuning"``: ``rope_theta`` raised to ``10000 * s^(d_k/(d_k-2))``,
      which leaves the fastest pair untouched and slows the slowest by ``s``.

    Returns ``{name: accuracy}`` on 64 held-out sequences of 64 tokens.

    Used in: Q21 (also ``benchmarks/robustness.py``).
    """
    import copy

    check_int("seed", seed, 0)
    new_len, s = EVAL_LENS[-1], EVAL_LENS[-1] / TRAIN_LEN
    trained = _trained_model("rope", seed, TRAIN_LEN, 1, 10, STEPS, None)
    device = next(trained.parameters()).device
    eval_g = torch.Generator().manual_seed(20_000 + seed)
    test = offset_copy(64, new_len, generator=eval_g)
    test = CopyBatch(test.inputs.to(device), test.targets.to(device))
    d_k = trained.d_model // trained.n_heads

    def scored(model: TransformerStack, *, pi: bool = False, base: float = 10000.0) -> float:
        model = copy.deepcopy(model)
        model.rope_scaling = {"rope_type": "linear", "factor": s} if pi else None
        model.rope_theta = base
        return _accuracy(model.eval(), test)

    def fine_tuned(pi: bool) -> TransformerStack:
        model = copy.deepcopy(trained).train()
        model.rope_scaling = {"rope_type": "linear", "factor": s} if pi else None
        config = TrainConfig(steps=FINE_TUNE_STEPS, lr=3e-3, seed=seed + 1, device=device)
        train(model, lambda step, g: offset_copy(32, new_len, generator=g), _copy_loss, config)
        return model.eval()

    return {
        "extrapolate": scored(trained),
        "PI, no fine-tuning": scored(trained, pi=True),
        "PI + fine-tuning": scored(fine_tuned(pi=True), pi=True),
        "direct fine-tuning": scored(fine_tuned(pi=False)),
        "NTK-aware, no fine-tuning": scored(trained, base=10000.0 * s ** (d_k / (d_k - 2))),
    }


@experiment
def pi_without_fine_tuning(seed: int) -> float:
    """Accuracy at 64 tokens of the RoPE model with position interpolation, not fine-tuned.

    Used in: Q21.
    """
    return context_extension(seed=seed)["PI, no fine-tuning"]


@experiment
def pi_fine_tuning_gain(seed: int) -> float:
    """Position interpolation: accuracy at 64 after the short fine-tune minus before.

    Used in: Q21.
    """
    result = context_extension(seed=seed)
    return result["PI + fine-tuning"] - result["PI, no fine-tuning"]


@experiment
def ntk_zero_shot_gain(seed: int) -> float:
    """No fine-tuning, 64 tokens: NTK-aware base minus plain extrapolation.

    Used in: Q21.
    """
    result = context_extension(seed=seed)
    return result["NTK-aware, no fine-tuning"] - result["extrapolate"]


_FIVE = tuple(range(5))
CLAIMS = claims(
    Claim(
        "q21-positions-needed",
        "offset copy at the training length (16): accuracy of the worst model with positions "
        "(learned, sinusoidal, RoPE) minus that of the model without positions",
        positions_needed,
        ">",
        0.4,
        seeds=_FIVE,
    ),
    Claim(
        "q21-sinusoidal-at-4x",
        "sinusoidal model trained on 16 tokens: copy accuracy at 64 tokens",
        sinusoidal_at_4x,
        "<",
        0.6,
        seeds=_FIVE,
    ),
    Claim(
        "q21-rope-vs-sinusoidal-at-2x",
        "copy accuracy at 32 tokens (trained on 16): RoPE minus sinusoidal",
        rope_vs_sinusoidal_at_2x,
        ">",
        0.2,
        seeds=_FIVE,
    ),
    Claim(
        "q21-pi-needs-fine-tuning",
        "RoPE model trained on 16 tokens, run at 64 with position interpolation and no "
        "fine-tuning: copy accuracy",
        pi_without_fine_tuning,
        "<",
        0.4,
        seeds=_FIVE,
    ),
    Claim(
        "q21-pi-fine-tuned",
        "position interpolation at 64 tokens: accuracy after 30 fine-tuning steps minus before",
        pi_fine_tuning_gain,
        ">",
        0.4,
        seeds=_FIVE,
    ),
    Claim(
        "q21-ntk-zero-shot",
        "no fine-tuning, 64 tokens: accuracy with the NTK-aware base minus plain RoPE",
        ntk_zero_shot_gain,
        ">",
        0.1,
        seeds=_FIVE,
    ),
)


# --- Token and position subspaces: can e and p be recovered from e + p? ---------------

#: Sizes of :func:`sum_recovery`: the base model's width and BERT's number of positions.
SUM_D_MODEL, SUM_POSITIONS, SUM_VOCAB = 512, 512, 1000


@experiment
@functools.lru_cache(maxsize=8)
def sum_recovery(seed: int = 0) -> dict[str, dict[str, float]]:
    """Recover the token vector ``e`` and the position vector ``p`` from ``e + p``.

    The positions are the ``SUM_POSITIONS`` sinusoidal vectors of width ``SUM_D_MODEL``
    (:func:`qkv.positions.sinusoidal_positions`); they span a subspace of numerical rank
    ``r`` (singular values above ``1e-10`` of the largest). ``SUM_VOCAB`` token vectors
    come two ways, each of the same norms: ``"random"``, i.i.d. N(0, 1) features (an
    untrained embedding), and ``"outside"``, the same vectors with their component in
    the positions' subspace removed (what training could arrange). For 2,048 random
    (token, position) pairs the best linear maps from ``x = e + p`` to ``e`` and to
    ``p`` are fitted by least squares, then scored on 1,024 fresh pairs:

    - ``"token energy in positions"``: the mean share of a token vector's squared norm
      that lies in the positions' subspace;
    - ``"e error"``, ``"p error"``: squared error of the linear estimate over the
      squared norm of the target (0 = exact recovery);
    - ``"token identified"``, ``"position identified"``: how often the nearest token
      (position) vector to the linear estimate is the right one.

    Returns ``{"random" | "outside": {measure: value}}``, plus ``"rank": {"r": r}``.

    Used in: Q21.
    """
    from qkv.positions import sinusoidal_positions

    check_int("seed", seed, 0)
    g = torch.Generator().manual_seed(seed)
    d, n_pos, vocab, n_fit, n_test = SUM_D_MODEL, SUM_POSITIONS, SUM_VOCAB, 2048, 1024
    positions = sinusoidal_positions(n_pos, d, dtype=torch.float64)  # (n_pos, d)
    u, s, _ = torch.linalg.svd(positions.T, full_matrices=False)  # u: (d, n_pos)
    rank = int((s > 1e-10 * s[0]).sum())
    basis = u[:, :rank]  # (d, r): orthonormal basis of the positions' span
    random = torch.randn(vocab, d, generator=g, dtype=torch.float64)  # (V, d)
    outside = random - (random @ basis) @ basis.T  # remove the in-span component
    outside = outside * (random.norm(dim=1, keepdim=True) / outside.norm(dim=1, keepdim=True))
    tok = torch.randint(0, vocab, (n_fit + n_test,), generator=g)
    pos = torch.randint(0, n_pos, (n_fit + n_test,), generator=g)
    result: dict[str, dict[str, float]] = {"rank": {"r": float(rank)}}
    for name, tokens in (("random", random), ("outside", outside)):
        e, p = tokens[tok], positions[pos]  # (n, d) each
        test = slice(n_fit, None)
        e_hat, p_hat = _linear_recovery(e + p, e, n_fit), _linear_recovery(e + p, p, n_fit)
        result[name] = {
            "token energy in positions": ((tokens @ basis).pow(2).sum(1) / tokens.pow(2).sum(1))
            .mean()
            .item(),
            "e error": ((e_hat - e[test]).pow(2).sum() / e[test].pow(2).sum()).item(),
            "p error": ((p_hat - p[test]).pow(2).sum() / p[test].pow(2).sum()).item(),
            "token identified": (torch.cdist(e_hat, tokens).argmin(1) == tok[test])
            .double()
            .mean()
            .item(),
            "position identified": (torch.cdist(p_hat, positions).argmin(1) == pos[test])
            .double()
            .mean()
            .item(),
        }
    return result


def _linear_recovery(x: Tensor, target: Tensor, n_fit: int) -> Tensor:
    """Least-squares ``W`` from the first ``n_fit`` rows of ``x (n, d)`` to ``target (n, d)``;
    its predictions for the remaining rows, ``(n - n_fit, d)``."""
    w = torch.linalg.lstsq(x[:n_fit], target[:n_fit]).solution  # (d, d)
    return x[n_fit:] @ w


@experiment
def position_loss_from_random_tokens(seed: int) -> float:
    """Random token vectors: share of ``p``'s energy the best linear map from ``e + p`` misses.

    Used in: Q21.
    """
    return sum_recovery(seed=seed)["random"]["p error"]


__all__ += ["sum_recovery", "position_loss_from_random_tokens"]
CLAIMS = claims(
    *CLAIMS.values(),
    Claim(
        "q21-sum-recovery",
        "512 sinusoidal positions (d_model 512), 1,000 random N(0, 1) token vectors: share of "
        "the position vector's energy that the best linear map from e + p fails to recover",
        position_loss_from_random_tokens,
        ">",
        0.05,
        seeds=_FIVE,
    ),
)
