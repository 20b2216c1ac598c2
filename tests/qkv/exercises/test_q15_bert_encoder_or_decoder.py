"""The Q15 checker: counting BERT's parameters, right and wrong."""

from __future__ import annotations

import pytest

from qkv.bert import BertConfig, bert_parameter_count
from qkv.exercises import check_bert_parameter_count


def embeddings(c: BertConfig) -> int:
    return (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * c.hidden_size


def test_the_library_formula_passes() -> None:
    verdict = check_bert_parameter_count(bert_parameter_count)
    assert verdict.passed, verdict


def without(part: str):
    """A count that forgets one part of BERT."""

    def count(c: BertConfig) -> int:
        H, inner, total = c.hidden_size, c.intermediate_size, bert_parameter_count(c)
        return (
            total
            - {
                "pooler": H * H + H,
                "layer norms": 2 * H + c.num_hidden_layers * 4 * H,
                "biases": c.num_hidden_layers * (4 * H + inner + H) + H,
                "segment table": c.type_vocab_size * H,
            }[part]
        )

    return count


@pytest.mark.parametrize("part", ["pooler", "layer norms", "biases", "segment table"])
def test_forgetting_a_part_fails_with_the_config(part: str) -> None:
    verdict = check_bert_parameter_count(without(part))
    assert verdict.status == "failed", verdict
    assert "expected 109,482,240 parameters" in verdict.detail, verdict.detail


def test_assuming_a_4h_feed_forward_fails_on_other_sizes() -> None:
    def four_h(c: BertConfig) -> int:
        H = c.hidden_size
        return embeddings(c) + 2 * H + c.num_hidden_layers * (12 * H * H + 13 * H) + H * H + H

    verdict = check_bert_parameter_count(four_h)
    assert verdict.status == "failed" and "FFN not 4H" in verdict.detail, verdict


def test_a_float_answer_is_rejected() -> None:
    verdict = check_bert_parameter_count(lambda c: float(bert_parameter_count(c)))
    assert verdict.status == "failed" and "expected an int" in verdict.detail, verdict
