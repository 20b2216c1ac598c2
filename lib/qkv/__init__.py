"""qkv: the library behind *Transformer interview questions, answered in code*.

Every chapter of the book imports its code from here, so each concept lives in
exactly one, tested place: masks in :mod:`qkv.masks`, attention in
:mod:`qkv.attention`, and so on.

Shape vocabulary (used in every docstring, comment and chapter; batch first):

============  ===========================================================
``B``         batch size
``h``         number of attention heads (``n_heads``); ``n_kv_heads`` for K/V
``n``         number of queries (target length)
``m``         number of keys and values (source length)
``L``         sequence length when queries and keys are the same sequence
``d_model``   model (residual stream) width
``d_k``       query/key width per head; ``d_v`` value width per head
``V``         vocabulary size (``vocab_size``)
============  ===========================================================

Mask convention: a boolean mask is ``True`` where a query **may attend** to a
key, the convention of :func:`torch.nn.functional.scaled_dot_product_attention`.
:func:`qkv.masks.to_torch_key_padding_mask` converts to the opposite
convention of :class:`torch.nn.MultiheadAttention` (``True`` = ignore).
A mask's rank fixes its meaning: 2-D is a pair mask ``(n, m)`` shared by every
sequence and head; any other mask has the scores' rank (``(B, 1, 1, m)`` from
:func:`qkv.masks.key_mask`), size-1 axes broadcasting. A ``(B, m)`` padding mask
goes in as ``key_padding_mask=pad`` (``True`` = real token), never as ``mask``;
see :mod:`qkv.attention` for the full rule.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np
import torch

__version__ = "0.1.0"

__all__ = ["device", "reproducible", "seed_everything", "__version__"]

# The submodules load on first use (PEP 562), so `import qkv` stays cheap and
# `qkv.quiz.show(...)` or `qkv.masks.causal_mask(...)` work without extra imports.
# Every public module file must be listed (tests/test_package.py checks it).
_SUBMODULES = frozenset(
    {
        "additive", "attention", "bert", "bpe", "chunked", "complexity", "data", "din",
        "exercises", "experiments", "explanation", "glue", "gpt", "heads", "inductive_bias",
        "kernel_regression",
        "kvcache", "label_smoothing", "layers", "length_generalization", "longtext",
        "markov", "masks", "mixing", "mlm", "models", "norms", "plot",
        "positions", "quiz", "saturation", "scoring", "sentence_pairs", "seq2seq",
        "shared_projections", "stability", "tasks", "tiny_transformer", "tokenization",
        "train", "tying", "vocab", "warmup", "wordpiece",
    }
)  # fmt: skip


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES})


def device() -> torch.device:
    """Return the device the chapters run on: CUDA when available, else CPU.

    Set the environment variable ``QKV_DEVICE`` (e.g. ``cpu``) to override.
    Used in: every chapter that trains or times something.
    """
    requested = os.environ.get("QKV_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and return a CPU generator.

    Chapters call this once at the top so that every run of a notebook prints
    the same numbers; the returned :class:`torch.Generator` (seeded with the
    same value) is for code that wants its own random stream.
    Used in: every chapter.
    """
    from qkv._checks import check_int

    seed = check_int("seed", seed, 0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


@contextmanager
def reproducible(seed: int | None = None, *, threads: int = 1) -> Iterator[None]:
    """Run a block with ``threads`` torch threads (and ``seed``), then restore the caller's.

    On CPU a matrix product or a reduction split over more threads adds its terms in
    another order, so a training run's numbers depend on the thread count. Inside this
    context they do not: the same code prints the same numbers under ``make book``,
    ``make test``, Jupyter or Colab (bit for bit on one CPU type; on a GPU or another
    CPU only within the spreads of the robustness page). On exit the caller's thread
    count, default dtype and Python, NumPy and torch (CPU and CUDA) random states are
    restored, so an experiment never changes its caller's global state.
    Used in: Q17, every function of :mod:`qkv.experiments`.
    """
    from qkv._checks import check_int

    threads = check_int("threads", threads, 1)
    saved_threads = torch.get_num_threads()
    saved_dtype = torch.get_default_dtype()
    py_state, np_state = random.getstate(), np.random.get_state()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    cuda_states = torch.cuda.get_rng_state_all() if cuda else None
    with torch.random.fork_rng(devices=[]):  # restores the CPU generator
        torch.set_num_threads(threads)
        try:
            if seed is not None:
                seed_everything(seed)
            yield
        finally:
            torch.set_num_threads(saved_threads)
            torch.set_default_dtype(saved_dtype)
            random.setstate(py_state)
            np.random.set_state(np_state)
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)
