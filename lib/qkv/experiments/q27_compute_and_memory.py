"""Q27 (compute and memory): parameters, FLOPs, bytes and the roofline, counted and measured.

The chapter's arithmetic, each formula next to what checks it:

- :func:`llama_parameters` and :func:`gpt_parameters`: parameter counts from a config,
  checked against the models built on the ``meta`` device (nothing allocated);
- :func:`forward_flops`: FLOPs of one forward pass from a config (matrix products:
  ``2 x`` the weights a token meets, plus the scores and the weighted sum over every
  key), checked against :func:`counted_flops`, which runs the model under PyTorch's
  :class:`~torch.utils.flop_counter.FlopCounterMode` with the *math* attention kernel.
  The CPU's fused kernel (``aten._scaled_dot_product_flash_attention_for_cpu``) is
  invisible to the counter in torch 2.13; the math kernel computes the same attention
  with ``bmm``, which the counter sees, so a missed or extra product shows up;
- :func:`storage_bytes`: the bytes a cache's tensors really hold (their storages,
  each counted once), to compare with :func:`qkv.kvcache.kv_cache_bytes`;
- :func:`matmul_flops_per_second`, :func:`read_bytes_per_second`: this machine's
  roofline on one thread; :func:`gemv_and_gemm` places a decode-like and a
  prefill-like product on it;
- :func:`intensity`: FLOPs per byte of one forward pass, from the counts;
- :func:`tokens_that_fit`: how many cached tokens fit beside the weights on a GPU.

Nothing here depends on a seed: ``CLAIMS`` is empty. GPU figures are the vendors'
datasheet numbers (see the chapter for the citations).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from qkv.complexity import best_seconds
from qkv.experiments import claims, experiment
from qkv.gpt import GPTConfig
from qkv.kvcache import KVCache
from qkv.llama import LlamaConfig

__all__ = [
    "GPU",
    "GPUS",
    "llama_parameters",
    "gpt_parameters",
    "matmul_weights",
    "forward_flops",
    "counted_flops",
    "storage_bytes",
    "adam_state_bytes",
    "matmul_flops_per_second",
    "read_bytes_per_second",
    "gemv_and_gemm",
    "intensity",
    "tokens_that_fit",
    "CLAIMS",
]

CLAIMS = claims()  # parameters, FLOPs and bytes are counted; timings are shown, never asserted


@dataclass(frozen=True)
class GPU:
    """Datasheet figures: memory in bytes, dense 16-bit tensor FLOP/s, memory bandwidth in B/s."""

    memory: float
    flops: float
    bandwidth: float

    @property
    def ridge(self) -> float:
        """FLOPs per byte at which the compute roof meets the bandwidth roof."""
        return self.flops / self.bandwidth


# NVIDIA's datasheets, SXM modules with 80 GB ("GB" read as 10^9 bytes), dense BF16 Tensor Core:
# A100 80GB SXM: "312 TFLOPS / 624 TFLOPS*" (* with sparsity), memory bandwidth 2,039 GB/s;
# H100 SXM: 1,979 TFLOPS* "shown with sparsity", dense half of it (989.5), 3.35 TB/s.
# The PCIe and NVL versions have other figures.
GPUS = {
    "A100 80GB SXM": GPU(memory=80e9, flops=312e12, bandwidth=2.039e12),
    "H100 SXM": GPU(memory=80e9, flops=989.5e12, bandwidth=3.35e12),
}


def llama_parameters(c: LlamaConfig) -> dict[str, int]:
    """Parameters of :class:`qkv.llama.Llama` by part: embeddings, per layer, total.

    Per layer: ``W_q, W_o`` of ``d x h d_k``, ``W_k, W_v`` of ``d x h_kv d_k`` (GQA),
    three SwiGLU matrices of ``d x d_ff``, two RMSNorm gains of ``d``; no biases.
    Used in: Q27.
    """
    d, q_width, kv_width = (
        c.hidden_size,
        c.num_attention_heads * c.head_dim,
        (c.num_key_value_heads * c.head_dim),
    )
    attention = 2 * d * q_width + 2 * d * kv_width
    mlp = 3 * d * c.intermediate_size
    layer = attention + mlp + 2 * d
    embeddings = c.vocab_size * d * (1 if c.tie_word_embeddings else 2)
    total = embeddings + c.num_hidden_layers * layer + d  # + the final RMSNorm
    return {
        "attention": attention,
        "mlp": mlp,
        "layer": layer,
        "embeddings": embeddings,
        "total": total,
    }


def gpt_parameters(c: GPTConfig) -> dict[str, int]:
    """Parameters of :class:`qkv.gpt.GPT` (GPT-2): ``12 d^2 + 13 d`` per layer with ``d_ff = 4d``.

    Attention ``4 d^2 + 4 d`` (weights and biases), MLP ``2 d d_ff + d_ff + d``, two
    LayerNorms ``4 d``; a token and a position table; the output layer is tied.
    Used in: Q27.
    """
    d = c.n_embd
    attention = 4 * d * d + 4 * d
    mlp = 2 * d * c.d_ff + c.d_ff + d
    layer = attention + mlp + 4 * d
    embeddings = (c.vocab_size + c.n_positions) * d
    total = embeddings + c.n_layer * layer + 2 * d  # + the final LayerNorm
    return {
        "attention": attention,
        "mlp": mlp,
        "layer": layer,
        "embeddings": embeddings,
        "total": total,
    }


def matmul_weights(c: LlamaConfig | GPTConfig) -> int:
    """Weights a token meets in a matrix product: every layer's matrices and the output layer.

    The embedding lookup is a copy, not a product; biases and norms are added, not
    multiplied. Each of these weights costs 2 FLOPs (multiply, add) per token.
    """
    if isinstance(c, LlamaConfig):
        p = llama_parameters(c)
        per_layer = p["attention"] + p["mlp"]
        return c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size
    d = c.n_embd
    return c.n_layer * (4 * d * d + 2 * d * c.d_ff) + c.vocab_size * d


def _attention_shape(c: LlamaConfig | GPTConfig) -> tuple[int, int]:
    """``(n_layers, h * d_k)``: query heads times head width, the width of the scores' products."""
    if isinstance(c, LlamaConfig):
        return c.num_hidden_layers, c.num_attention_heads * c.head_dim
    return c.n_layer, c.n_embd


def forward_flops(c: LlamaConfig | GPTConfig, batch: int, n: int, past: int = 0) -> dict[str, int]:
    """FLOPs of one forward pass over ``n`` new tokens after ``past`` cached ones.

    ``linear``: ``2 x matmul_weights x batch x n``. ``attention``: per layer and query
    head, ``Q K^T`` and ``P V`` each cost ``2 x n x m x d_k`` with ``m = past + n`` keys:
    ``4 x n_layers x batch x n x m x h d_k``. A dense kernel computes the masked half too;
    Kaplan et al.'s ``2 n_layer n_ctx d_attn`` per token is half of this term at ``m = n``.
    Used in: Q27.
    """
    n_layers, width = _attention_shape(c)
    linear = 2 * matmul_weights(c) * batch * n
    attention = 4 * n_layers * batch * n * (past + n) * width
    return {"linear": linear, "attention": attention, "total": linear + attention}


def counted_flops(
    model: nn.Module, input_ids: Tensor, cache: KVCache | None = None, *, backward: bool = False
) -> dict[str, int]:
    """FLOPs PyTorch counts for ``model(input_ids, cache)`` (and its backward pass).

    Attention runs through the math kernel (``sdpa_kernel(SDPBackend.MATH)``), whose
    products the counter sees. Returns ``{"linear", "attention", "forward"}`` (products
    with a weight matrix, ``mm``/``addmm``; products between activations, ``bmm``; their
    sum) and ``"backward"`` when asked.
    Used in: Q27.
    """
    with sdpa_kernel(SDPBackend.MATH), torch.set_grad_enabled(backward):
        with FlopCounterMode(display=False) as counter:
            logits, _ = model(input_ids, cache)
        per_op = {str(op): int(f) for op, f in counter.get_flop_counts()["Global"].items()}
        result = {
            "linear": per_op.get("aten.mm", 0) + per_op.get("aten.addmm", 0),
            "attention": per_op.get("aten.bmm", 0),
            "forward": int(counter.get_total_flops()),
        }
        if backward:
            with FlopCounterMode(display=False) as counter:
                logits.float().logsumexp(-1).sum().backward()
            result["backward"] = int(counter.get_total_flops())
    return result


def storage_bytes(tensors: tuple[Tensor, ...] | list[Tensor]) -> int:
    """Bytes of the storages behind ``tensors``, each storage counted once.

    A view of a larger buffer counts the whole buffer: what the memory really holds.
    Used in: Q27.
    """
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


@experiment
def adam_state_bytes(model: nn.Module) -> int:
    """Bytes of the state :class:`torch.optim.Adam` keeps after one step on ``model``.

    Adam keeps two moments per parameter, in the parameters' dtype (``exp_avg``,
    ``exp_avg_sq``); the step counters are one scalar per tensor.
    Used in: Q27.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    moments = [
        t
        for state in optimizer.state.values()
        for name, t in state.items()
        if name in ("exp_avg", "exp_avg_sq")
    ]
    return storage_bytes(moments)


@experiment
def matmul_flops_per_second(size: int = 1024, repeats: int = 3) -> float:
    """Float32 FLOP/s of a ``size x size`` matrix product on one thread (best of ``repeats``).

    Used in: Q27.
    """
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / best_seconds(lambda: a @ b, repeats)


@experiment
def read_bytes_per_second(mib: int = 128, repeats: int = 3) -> float:
    """Bytes/s read by summing a ``mib`` MiB float32 buffer on one thread (best of ``repeats``).

    A sum reads each element once and writes nothing: a streaming read, the traffic of a
    decoding step, from a buffer larger than the caches.
    Used in: Q27.
    """
    x = torch.ones(mib * 2**20 // 4)
    return 4 * x.numel() / best_seconds(x.sum, repeats)


@experiment
def gemv_and_gemm(d: int = 4096, tokens: int = 128, repeats: int = 3) -> dict[str, tuple]:
    """A ``d x d`` float32 weight times 1 token (decode) and times ``tokens`` tokens (prefill).

    Returns ``{name: (FLOPs per byte, FLOP/s)}``: intensity counted (FLOPs over the bytes
    of weight, input and output), throughput measured on one thread.
    Used in: Q27.
    """
    w = torch.randn(d, d)
    result = {}
    for name, n in (("decode, 1 token", 1), (f"prefill, {tokens} tokens", tokens)):
        x = torch.randn(n, d)
        flops = 2 * n * d * d
        moved = 4 * (d * d + 2 * n * d)
        seconds = best_seconds(partial(torch.matmul, x, w.T), repeats)  # x @ w.T
        result[name] = (flops / moved, flops / seconds)
    return result


def intensity(
    c: LlamaConfig, batch: int, n: int, past: int = 0, *, bytes_per_element: int = 2
) -> float:
    """FLOPs per byte of one forward pass: :func:`forward_flops` over the bytes read and written.

    Bytes: the matrix weights read once for the whole batch, each sequence's cached keys
    and values read, and the new ones written (activations left out: they are small
    next to the weights at these sizes, and a fused kernel keeps them on chip).
    Used in: Q27.
    """
    kv_per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim
    moved = bytes_per_element * (matmul_weights(c) + batch * kv_per_token * (past + n))
    return forward_flops(c, batch, n, past)["total"] / moved


def tokens_that_fit(
    gpu_memory: float, c: LlamaConfig, *, bytes_per_element: int = 2, reserve: float = 0.0
) -> int:
    """Cached tokens (summed over the batch) that fit beside the weights in ``gpu_memory`` bytes.

    Weights and cache both in ``bytes_per_element`` (2 for bf16). ``reserve``: bytes kept
    for activations and the framework. Returns 0 when the weights alone do not fit.
    Used in: Q27.
    """
    weights = llama_parameters(c)["total"] * bytes_per_element
    per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * bytes_per_element
    free = gpu_memory - reserve - weights
    return max(0, int(free // per_token))
