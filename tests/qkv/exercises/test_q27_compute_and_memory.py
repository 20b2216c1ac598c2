"""The Q27 checker: FLOPs of a LLaMA forward pass, right and wrong."""

from __future__ import annotations

import pytest

from qkv.exercises.q27_compute_and_memory import check_forward_flops


def flops(config, batch, n, *, causal_half=False, gqa=True, head=True, swiglu=3, tied_skip=False):
    d, d_k, h = config.hidden_size, config.head_dim, config.num_attention_heads
    h_kv = config.num_key_value_heads if gqa else h
    per_layer = 2 * d * h * d_k + 2 * d * h_kv * d_k + swiglu * d * config.intermediate_size
    out = config.vocab_size * d if head and not (tied_skip and config.tie_word_embeddings) else 0
    weights = config.num_hidden_layers * per_layer + out
    attention = (2 if causal_half else 4) * config.num_hidden_layers * h * d_k * n * n
    return batch * (2 * n * weights + attention)


def test_the_reference_passes() -> None:
    verdict = check_forward_flops(flops)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    "wrong",
    [
        lambda c, b, n: flops(c, b, n, causal_half=True),  # Kaplan's causal term, not the kernel's
        lambda c, b, n: flops(c, b, n, gqa=False),  # K and V as wide as Q: no GQA
        lambda c, b, n: flops(c, b, n, head=False),  # the output layer forgotten
        lambda c, b, n: flops(c, b, n, tied_skip=True),  # "tied, so free": still a product
        lambda c, b, n: flops(c, b, n, swiglu=2),  # a 2017 FFN of two matrices
        lambda c, b, n: flops(c, 1, n),  # the batch forgotten
        # 2N with N counting the input embedding too (a lookup, not a product)
        lambda c, b, n: flops(c, b, n) + 2 * b * n * c.vocab_size * c.hidden_size,
        lambda c, b, n: float(flops(c, b, n)) + 0.5,  # not an integer count
    ],
)
def test_wrong_counts_fail_with_a_counter_example(wrong) -> None:
    verdict = check_forward_flops(wrong)
    assert verdict.status == "failed", verdict


def test_the_untouched_stub_is_not_attempted() -> None:
    def stub(config, batch, n):
        raise NotImplementedError

    assert check_forward_flops(stub).status == "not attempted"
