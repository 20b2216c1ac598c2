"""Checker for the Q27 exercise: the FLOPs of a LLaMA forward pass, from its config."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from qkv.llama import Llama, LlamaConfig

from .core import Case, Mismatch, Verdict, run_checks

__all__ = ["check_forward_flops"]

_SIZES = dict(vocab_size=53, hidden_size=24, intermediate_size=40, num_hidden_layers=2)
_CASES = {  # name -> (config fields beyond _SIZES, batch, n)
    "GQA, 6 query heads over 2 K/V heads": (
        dict(num_attention_heads=6, num_key_value_heads=2),
        1,
        5,
    ),
    "MHA, batch of 3": (dict(num_attention_heads=4), 3, 9),
    "MQA, tied output layer": (
        dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=True),
        2,
        6,
    ),
    "head_dim 10 with 3 heads, 3 layers": (
        dict(num_attention_heads=3, head_dim=10, num_hidden_layers=3),
        1,
        11,
    ),
}


def _case(name: str, fields: dict, batch: int, n: int) -> Case:
    def run(fn: Callable) -> None:
        config = LlamaConfig(**(_SIZES | fields))
        torch.manual_seed(0)
        model = Llama(config).eval()
        ids = torch.randint(0, config.vocab_size, (batch, n), generator=torch.Generator())
        # the math kernel's bmm products are visible to the counter; the fused CPU kernel is not
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as c:
            model(ids)
        expected = c.get_total_flops()
        got = fn(config, batch, n)
        if isinstance(got, torch.Tensor):
            got = got.item()
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if not isinstance(got, int) or isinstance(got, bool):
            raise Mismatch(f"{name}: expected an int, got {type(got).__name__}")
        if got != expected:
            raise Mismatch(
                f"{name}, batch {batch}, n {n}: PyTorch counts {expected:,} FLOPs, got {got:,}"
            )

    return Case(name, run)


def check_forward_flops(fn: Callable[[LlamaConfig, int, int], int]) -> Verdict:
    """Check the reader's ``forward_flops(config, batch, n)`` from Q27.

    ``fn`` takes a :class:`qkv.llama.LlamaConfig`, a batch size and a length and must
    return the FLOPs that PyTorch's ``FlopCounterMode`` counts for one forward pass of
    :class:`qkv.llama.Llama` over ``(batch, n)`` token ids, attention through the math
    kernel (the full ``n x n`` scores). Cases cover GQA, MHA, MQA with a tied output
    layer, a head width other than ``hidden_size / heads``, and batches above one.

    Used in: Q27.
    """
    cases = [_case(name, *spec) for name, spec in _CASES.items()]
    return run_checks("forward_flops", fn, cases)
