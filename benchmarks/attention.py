"""Benchmark qkv.attention: the fast path's overhead, and chunked attention's peak memory.

Run by hand (not part of the test suite); it prints the Markdown tables of
``appendix/benchmarks.md``::

    python benchmarks/attention.py            # CPU
    python benchmarks/attention.py --device cuda
    OMP_NUM_THREADS=1 python benchmarks/attention.py --clock cpu --only time  # shared machine

1. Time: :func:`qkv.attention.scaled_dot_product_attention` (fast path, and the
   reference path that returns the weights) against
   :func:`torch.nn.functional.scaled_dot_product_attention`, median of several
   interleaved repeats after a warm-up. Target: fast path <= 1.1 x torch.
2. Peak memory of :func:`qkv.attention.chunked_attention` against full attention
   (the reference path, which forms the ``(n, m)`` weights) and torch's fused kernel,
   side by side, each configuration in its own process: peak RSS minus the baseline
   after ``import torch`` and a warm-up call at n = 64 on CPU,
   ``torch.cuda.max_memory_allocated`` on GPU; median of 5 processes. Targets at
   n = 8192: chunked <= 1/8 of full and <= 2 x torch SDPA.

The measuring harness (interleaved medians, peak memory above a baseline, a fresh
process per measurement) is :mod:`qkv.complexity`'s, the one the chapters use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))  # qkv without installing

from qkv.attention import chunked_attention, scaled_dot_product_attention  # noqa: E402
from qkv.complexity import PeakMemory, best_seconds, child_json, median_seconds  # noqa: E402
from qkv.masks import key_mask, padding_mask  # noqa: E402

TIME_CONFIG = {"B": 4, "h": 8, "d_k": 64, "n": (128, 512, 2048)}
MEMORY_CONFIG = {
    "B": 1,
    "h": 2,
    "d_k": 64,
    "n": (2048, 4096, 8192),
    "chunk_size": 1024,
    "query_chunk_size": 256,
}


CLOCK = "wall"  # --clock cpu: this process's CPU time, robust to other jobs' load


def _median_ms(fns: dict, repeats: int, device: str) -> dict[str, float]:
    """Median time (ms) of each function; calls interleaved so drifting load hits all."""
    with torch.no_grad():
        one_round = best_seconds(lambda: [fn() for fn in fns.values()], 1, clock=CLOCK)
        # small sizes are noisy: repeat them more, about 6 s per configuration in all
        repeats = max(repeats, min(51, int(6.0 / one_round)))
        seconds = median_seconds(fns, repeats, clock=CLOCK, warmup=False)  # warmed up above
    return {name: 1e3 * s for name, s in seconds.items()} | {"repeats": repeats}


def time_attention(device: str, repeats: int) -> list[dict]:
    """Median times (ms) of torch SDPA, qkv's fast path and qkv's reference path."""
    rows = []
    B, h, d_k = TIME_CONFIG["B"], TIME_CONFIG["h"], TIME_CONFIG["d_k"]
    for n in TIME_CONFIG["n"]:
        gen = torch.Generator().manual_seed(n)
        q, k, v = (torch.randn(B, h, n, d_k, generator=gen).to(device) for _ in range(3))
        # padding: the sequences have n, 3n/4, n/2, n/4 real tokens, (B, 1, 1, n)
        mask = key_mask(padding_mask([n * (B - i) // B for i in range(B)], n)).to(device)
        for mask_name, m in (("none", None), ("padding", mask)):
            pair = {
                "torch": partial(F.scaled_dot_product_attention, q, k, v, attn_mask=m),
                "fast": partial(scaled_dot_product_attention, q, k, v, m),
            }
            # the reference path is timed apart: its large (n, m) tensors, freed and
            # allocated again, would slow whichever call came after it
            ref = partial(scaled_dot_product_attention, q, k, v, m, return_weights=True)
            timed = _median_ms({"reference": ref}, repeats, device)
            timed |= _median_ms(pair, repeats, device)  # its "repeats" is the one shown
            rows.append({"n": n, "mask": mask_name} | timed)
    return rows


def peak_memory_mb(method: str, n: int, device: str, runs: int = 5) -> float:
    """Peak memory (MiB) of one configuration: the median over ``runs`` fresh processes
    (the allocator's per-thread arenas make single runs vary by some 20 MiB)."""
    args = [__file__, "--child", method, str(n), "--device", device]
    return statistics.median(child_json(args)["peak_mb"] for _ in range(runs))


def _run(method: str, n: int, device: str) -> None:
    B, h, d_k = MEMORY_CONFIG["B"], MEMORY_CONFIG["h"], MEMORY_CONFIG["d_k"]
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, h, n, d_k, generator=gen).to(device) for _ in range(3))
    with torch.no_grad():
        if method == "full":
            scaled_dot_product_attention(q, k, v, return_weights=True)
        elif method == "chunked":
            blocks = {key: MEMORY_CONFIG[key] for key in ("chunk_size", "query_chunk_size")}
            chunked_attention(q, k, v, **blocks)
        else:
            F.scaled_dot_product_attention(q, k, v)


def _child(method: str, n: int, device: str) -> None:
    # Warm-up at a tiny n first: the first matmul pages in tens of MiB of library code and
    # thread pools, the same for every method, which would otherwise swamp small peaks.
    _run(method, 64, device)
    # Baseline after import torch (and the warm-up); PeakMemory resets the Linux high-water
    # mark on entry, so that transient import-time memory stays out of the peak.
    with PeakMemory(device) as peak:
        _run(method, n, device)
    print(json.dumps({"peak_mb": peak.mib}))


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=7, help="fewest timing repeats")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="cpu: this process's CPU time (use with 1 torch thread on a shared machine)",
    )
    parser.add_argument("--only", choices=["time", "memory"], help="print one table")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    global CLOCK
    CLOCK = args.clock
    if args.child:
        _child(args.child[0], int(args.child[1]), args.device)
        return

    name = torch.cuda.get_device_name() if args.device == "cuda" else _cpu_name()
    threads = torch.get_num_threads()
    print(f"Machine: {args.device} ({name}), {os.cpu_count()} cores, {threads} torch threads,")
    print(f"torch {torch.__version__}, Python {platform.python_version()}")
    print()
    if args.only != "memory":
        print_time_table(args)
    if args.only != "time":
        print_memory_table(args)


def print_time_table(args: argparse.Namespace) -> None:
    B, h, d_k = TIME_CONFIG["B"], TIME_CONFIG["h"], TIME_CONFIG["d_k"]
    clock = "CPU time" if args.clock == "cpu" else "wall time"
    print(f"Time, float32, B={B}, h={h}, d_k=d_v={d_k}, n=m; median {clock} of the repeats (ms)")
    print()
    print(
        "| n | mask | repeats | torch SDPA | qkv fast | fast / torch "
        "| qkv reference | reference / torch |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in time_attention(args.device, args.repeats):
        t = r["torch"]
        cells = [r["n"], r["mask"], r["repeats"], f"{t:.2f}", f"{r['fast']:.2f}"]
        cells += [f"{r['fast'] / t:.2f}", f"{r['reference']:.2f}", f"{r['reference'] / t:.2f}"]
        print("| " + " | ".join(map(str, cells)) + " |")
    print()


def print_memory_table(args: argparse.Namespace) -> None:
    B, h, d_k = MEMORY_CONFIG["B"], MEMORY_CONFIG["h"], MEMORY_CONFIG["d_k"]
    c, r = MEMORY_CONFIG["chunk_size"], MEMORY_CONFIG["query_chunk_size"]
    print(f"Peak memory above baseline, float32, B={B}, h={h}, d_k=d_v={d_k}, n=m (MiB)")
    print()
    print(
        f"| n | full (reference) | chunked ({r} x {c} blocks) | chunked / full "
        "| torch SDPA | chunked / torch |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in MEMORY_CONFIG["n"]:
        full, chunked, sdpa = (
            peak_memory_mb(m, n, args.device) for m in ("full", "chunked", "sdpa")
        )
        cells = [n, f"{full:.0f}", f"{chunked:.0f}", f"{chunked / full:.3f}", f"{sdpa:.0f}"]
        print("| " + " | ".join(map(str, [*cells, f"{chunked / sdpa:.2f}"])) + " |")


if __name__ == "__main__":
    main()
