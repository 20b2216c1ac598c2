"""Table 1 of Vaswani et al. (2017), measured: FLOPs, memory, growth and reach of a layer.

Vaswani et al. compare self-attention with recurrent and convolutional layers by
their cost per layer (``O(n^2 d)`` against ``O(n d^2)``) and by the path length
between two positions (``O(1)`` against ``O(n)``). This module measures both on
real modules instead of restating the table. It is also the book's one measuring
harness (FLOPs, time, peak memory), used by the chapters, :mod:`qkv.kvcache`, the
exercises and ``benchmarks/attention.py``:

- :func:`attention_flops` and :func:`rnn_flops` count the FLOPs that PyTorch's
  :class:`torch.utils.flop_counter.FlopCounterMode` sees in one forward pass;
- :func:`peak_memory_mib` runs attention in a child process and reports its
  peak memory above the process's baseline (the method of
  ``benchmarks/attention.py``);
- :func:`best_seconds` and :func:`median_seconds` time calls and
  :func:`growth_exponent` fits the slope of a log-log curve, the exponent ``p``
  of ``cost ~ n^p``;
- :class:`PeakMemory` measures the peak memory of a block above its baseline and
  :func:`child_json` runs a measurement in a fresh process;
- :func:`influence_on_last` and :func:`rnn_reach` measure how strongly the first
  input position still moves the last output of a layer (the path length, seen
  through the gradient).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import cast

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from qkv._checks import check_int
from qkv.attention import MultiHeadAttention, scaled_dot_product_attention

__all__ = [
    "count_flops",
    "attention_flops",
    "rnn_flops",
    "best_seconds",
    "median_seconds",
    "growth_exponent",
    "PeakMemory",
    "child_json",
    "peak_memory_mib",
    "influence_on_last",
    "rnn_reach",
    "rnn_reach_ratio",
]


def count_flops(fn: Callable[[], object]) -> dict[str, int]:
    """FLOPs of everything ``fn()`` computes, as counted by PyTorch, per operator.

    PyTorch's counter counts matrix products (one multiply-add = 2 FLOPs) and
    attention kernels it knows; element-wise work (softmax, masks) is not
    counted. Runs under ``torch.no_grad()``.

    Returns:
        ``{"aten.mm": ..., "aten.bmm": ..., "total": ...}``.
    Used in: Q4, Q10, Q20, Q25.
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    per_op = counter.get_flop_counts().get("Global", {})  # empty when nothing was counted
    counts = {str(op): int(f) for op, f in per_op.items()}
    return counts | {"total": int(counter.get_total_flops())}


def attention_flops(
    n: int, d_model: int, n_heads: int, *, device: torch.device | str | None = None
) -> dict[str, int]:
    """Counted FLOPs of one self-attention layer (``qkv``'s ``MultiHeadAttention``).

    The layer (no biases) runs once on a ``(1, n, d_model)`` input through its
    reference path (``need_weights=True``): the fused CPU kernel of
    ``F.scaled_dot_product_attention`` is invisible to PyTorch's counter, the
    reference path does the same arithmetic with ``bmm``.

    Returns:
        ``{"projections": ..., "attention": ..., "total": ...}``: the four
        linear maps W^Q, W^K, W^V, W^O (``mm``) and the scores plus the weighted
        sum (``bmm``).
    Used in: Q5.
    """
    if min(n, d_model, n_heads) < 1 or d_model % n_heads:
        raise ValueError(
            f"need n, d_model, n_heads >= 1 and d_model divisible by n_heads, "
            f"got n={n}, d_model={d_model}, n_heads={n_heads}"
        )
    layer = MultiHeadAttention(d_model, n_heads, bias=False).to(device).eval()
    x = torch.randn(1, n, d_model, device=device)  # (B, n, d_model)
    counts = count_flops(lambda: layer(x, need_weights=True))
    projections = counts.get("aten.mm", 0) + counts.get("aten.addmm", 0)
    attention = counts["total"] - projections
    return {"projections": projections, "attention": attention, "total": counts["total"]}


def rnn_flops(n: int, d: int, *, device: torch.device | str | None = None) -> int:
    """Counted FLOPs of one ``torch.nn.RNN`` layer (tanh, width ``d``) over ``n`` steps.

    Each step multiplies the input and the previous state by a ``d x d`` matrix.
    (PyTorch's counter does not see inside the fused CPU kernel of
    ``torch.nn.LSTM``, so only the plain RNN is counted.) Used in: Q5.
    """
    if min(n, d) < 1:
        raise ValueError(f"need n, d >= 1, got n={n}, d={d}")
    rnn = nn.RNN(d, d, batch_first=True).to(device)
    x = torch.randn(1, n, d, device=device)  # (B, L, d)
    return count_flops(lambda: rnn(x))["total"]


def best_seconds(fn: Callable[[], object], repeats: int = 3, *, clock: str = "wall") -> float:
    """Shortest time of ``repeats`` calls of ``fn()``, after one warm-up call.

    ``clock="wall"`` measures elapsed time and waits for CUDA kernels before and
    after each call, so GPU work is counted. ``clock="cpu"`` measures the CPU
    time of this process (all its threads, ``time.process_time``): the work
    done on the CPU, which other programs competing for the cores do not inflate.
    Used in: Q5, Q25.
    """
    _check_clock(repeats, clock)
    now = time.perf_counter if clock == "wall" else time.process_time
    cuda = clock == "wall" and torch.cuda.is_available()
    fn()  # warm-up: thread pools, allocator, kernel selection
    best = math.inf
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = now()
        fn()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, now() - start)
    return best


def median_seconds(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = 7,
    *,
    clock: str = "wall",
    warmup: bool = True,
) -> dict[str, float]:
    """Median time of each function over ``repeats`` calls, the calls interleaved.

    Round ``r`` calls the functions in an order rotated by ``r``, so that a load that
    drifts (another job starting, the CPU clocking down) hits each function alike and
    each call follows each other one equally often. ``clock`` is as in
    :func:`best_seconds`; with ``warmup``, every function is called once first.

    Returns:
        ``{name: seconds}``.

    Used in: Q20, benchmarks/attention.py and :func:`qkv.kvcache.decode_step_seconds`.
    """
    repeats = _check_clock(repeats, clock)
    now = time.perf_counter if clock == "wall" else time.process_time
    cuda = clock == "wall" and torch.cuda.is_available()
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if cuda:
                torch.cuda.synchronize()
            start = now()
            fns[name]()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(now() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _check_clock(repeats: object, clock: object) -> int:
    repeats = check_int("repeats", repeats, 1)
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    return repeats


def growth_exponent(ns: Sequence[float], values: Sequence[float], last: int = 3) -> float:
    """Least-squares slope of ``log(value)`` against ``log(n)`` over the ``last`` points.

    For ``value = c * n^p`` it returns ``p``; fitting only the largest ``n``
    keeps fixed overheads (which flatten the curve at small ``n``) out.
    Used in: Q5, Q20.
    """
    if len(ns) != len(values) or not 2 <= last <= len(ns):
        raise ValueError(
            f"need as many values as ns and 2 <= last <= len(ns), "
            f"got {len(ns)} ns, {len(values)} values, last={last}"
        )
    if min(ns) <= 0 or min(values) <= 0:
        raise ValueError("ns and values must be positive to take logarithms")
    x = torch.tensor([math.log(v) for v in ns[-last:]], dtype=torch.float64)
    y = torch.tensor([math.log(v) for v in values[-last:]], dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x * x).sum())


def peak_memory_mib(
    ns: Sequence[int],
    *,
    d_k: int = 64,
    n_heads: int = 1,
    device: str = "cpu",
    window: int | None = None,
) -> list[float]:
    """Peak memory (MiB) of one attention forward pass per length, measured in a child process.

    For each ``n`` the child builds q, k, v ``(1, n_heads, n, d_k)``, records its
    baseline, and runs ``qkv``'s reference attention (which materialises the
    ``(1, n_heads, n, n)`` weights). With ``window``, the inputs are first cut into
    overlapping windows of ``window`` tokens with stride ``window // 2``
    (``(1, W, n_heads, window, d_k)``, before the baseline) and attention runs
    inside each window, as sliding-window BERT does. The peak above the baseline is
    the high-water mark of resident memory (Linux ``VmHWM``, reset before each
    ``n``) on CPU and ``torch.cuda.max_memory_allocated`` on CUDA. The child runs
    with a fixed ``malloc`` mmap threshold so that freed blocks go back to the
    system between lengths. Used in: Q5, Q20.
    """
    if not ns or min(ns) < 1 or d_k < 1 or n_heads < 1:
        raise ValueError(f"need lengths >= 1, d_k >= 1, n_heads >= 1, got {ns}, {d_k}, {n_heads}")
    if window is not None and not (2 <= window <= min(ns)):
        raise ValueError(f"window must be in [2, min(ns) = {min(ns)}], got {window}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cpu" and not Path("/proc/self/status").exists():
        raise RuntimeError("peak memory on CPU needs Linux's /proc/self/status")
    config = {"ns": list(ns), "d_k": d_k, "n_heads": n_heads, "device": device, "window": window}
    env = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    # the child prints one JSON list: the peak MiB of each length
    return cast(list[float], child_json(["-m", "qkv.complexity", json.dumps(config)], env=env))


def child_json(args: Sequence[str], *, env: Mapping[str, str] | None = None) -> object:
    """Run ``python *args`` in a fresh process and return the JSON of its last output line.

    A fresh process is how peak memory is measured: its baseline is only ``import
    torch``, and nothing a notebook allocated earlier counts. ``env`` adds variables to
    this process's environment (e.g. ``MALLOC_MMAP_THRESHOLD_``).
    """
    cmd = [sys.executable, *args]
    environment = os.environ | dict(env or {})
    result = subprocess.run(cmd, check=True, capture_output=True, text=True, env=environment)
    return json.loads(result.stdout.strip().splitlines()[-1])


class PeakMemory:
    """Peak memory of a ``with`` block above the memory in use when it starts, in MiB.

    On CPU: the high-water mark of resident memory (Linux ``VmHWM``, reset on entry
    through ``/proc/self/clear_refs``) minus ``VmRSS`` on entry; off Linux, the
    process's ``ru_maxrss``, which cannot be reset (so run one measurement per process).
    On CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` on entry.
    After the block, ``mib`` holds the result::

        with PeakMemory("cpu") as peak:
            attention(q, k, v)
        peak.mib
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device).type
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.mib = math.nan

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self._base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
            except OSError:
                pass
            self._base = _memory_kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self.mib = (_memory_kib("VmHWM") - self._base) / 2**10


def _memory_kib(key: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, KiB.

    Off Linux, both are ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        import resource  # Unix only; Linux has /proc

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss // 1024 if sys.platform == "darwin" else maxrss
    return int(next(line.split()[1] for line in lines if line.startswith(key + ":")))


def _child(ns: list[int], d_k: int, n_heads: int, device: str, window: int | None) -> list[float]:
    gen = torch.Generator().manual_seed(0)
    peaks = []
    for n in [ns[0], *ns]:  # a first run warms up thread pools and library buffers
        q, k, v = torch.randn(3, 1, n_heads, n, d_k, generator=gen).to(device)  # (B, h, n, d_k)
        if window is not None:  # (B, h, n, d_k) -> (B, W, h, window, d_k), stride window // 2
            q, k, v = (
                t.unfold(2, window, window // 2).transpose(-1, -2).transpose(1, 2).contiguous()
                for t in (q, k, v)
            )
        with torch.no_grad(), PeakMemory(device) as peak:
            out, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
        peaks.append(peak.mib)
        del q, k, v, out, weights
    return peaks[1:]


def influence_on_last(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``||d out[L-1] / d x[j]||`` for every input position ``j``: shape ``(L,)``.

    ``layer`` maps ``(1, L, w)`` to a tuple whose first element is ``(1, L, w)``
    (``torch.nn.RNN`` and ``qkv``'s ``MultiHeadAttention`` both do); ``x`` is
    ``(L, w)``. The Jacobian is computed by autograd.
    """
    if x.dim() != 2:
        raise ValueError(f"x must be (L, w), got shape {tuple(x.shape)}")
    jac = torch.autograd.functional.jacobian(lambda z: layer(z[None])[0][0, -1], x)  # (w, L, w)
    return jac.pow(2).sum(dim=(0, 2)).sqrt()


def rnn_reach(seed: int, *, length: int = 24, width: int = 16) -> dict[str, torch.Tensor | float]:
    """How strongly each input position moves the last output of a tanh RNN, two initialisations.

    Builds ``torch.nn.RNN(width, width)`` with PyTorch's default initialisation
    (every weight uniform in ``±1/sqrt(width)``) and a random input of ``length``
    steps, both from ``seed`` (the global random state is left as it was), and
    measures :func:`influence_on_last`, first as built, then with the recurrent
    matrix ``W_hh`` replaced by a random orthogonal one (all singular values 1).

    Returns:
        ``{"default": (L,), "orthogonal": (L,), "spectral_radius": ...}``, the
        last being the largest eigenvalue modulus of the default ``W_hh``;
        ``influence[0] / influence[-1]`` is how much of position 0 survives
        ``L - 1`` steps.
    """
    if length < 2 or width < 1:
        raise ValueError(f"need length >= 2 and width >= 1, got {length}, {width}")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = nn.RNN(width, width, batch_first=True)
        x = torch.randn(length, width, generator=gen)  # (L, w)
        default = influence_on_last(rnn, x)
        w_hh = rnn.get_parameter("weight_hh_l0")  # (w, w), the recurrent matrix
        radius = torch.linalg.eigvals(w_hh.detach()).abs().max().item()
        with torch.no_grad():
            nn.init.orthogonal_(w_hh)
        orthogonal = influence_on_last(rnn, x)
    return {"default": default, "orthogonal": orthogonal, "spectral_radius": radius}


def rnn_reach_ratio(seed: int, init: str = "default") -> float:
    """``influence[0] / influence[-1]`` of :func:`rnn_reach` for ``init`` ("default" or
    "orthogonal"): the share of position 0 that reaches the last output."""
    if init not in ("default", "orthogonal"):
        raise ValueError(f"init must be 'default' or 'orthogonal', got {init!r}")
    influence = cast(torch.Tensor, rnn_reach(seed)[init])  # (L,): only the radius is a float
    return (influence[0] / influence[-1]).item()


if __name__ == "__main__":  # the child process of peak_memory_mib
    config = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    print(json.dumps(_child(**config)))
