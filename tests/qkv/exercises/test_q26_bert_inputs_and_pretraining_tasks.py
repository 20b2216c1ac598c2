"""The Q26 checker: BERT's input sum, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises import check_bert_input_sum


def reference(ids, types, tables):
    token, position, segment = tables
    return token[ids] + segment[types] + position[torch.arange(ids.shape[1])]


def test_reference_and_the_one_hot_form_pass() -> None:
    assert check_bert_input_sum(reference).passed

    def one_hot(ids, types, tables):
        token, position, segment = tables
        pos = torch.arange(ids.shape[1]).expand_as(ids)
        one_hot = torch.nn.functional.one_hot
        parts = [one_hot(ids, len(token)), one_hot(pos, len(position))]
        parts.append(one_hot(types, len(segment)))
        hots = torch.cat(parts, -1).float()
        return hots @ torch.cat([token, position, segment])

    verdict = check_bert_input_sum(one_hot)
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    "wrong",
    [
        lambda ids, types, t: t[0][ids] + t[2][types],  # forgot positions
        lambda ids, types, t: t[0][ids] + t[1][types] + t[2][: ids.shape[1]],  # swapped tables
        lambda ids, types, t: t[0][ids] + t[2][types] + t[1][1 : ids.shape[1] + 1],  # from 1
        lambda ids, types, t: t[0][ids] + t[1][: ids.shape[1]],  # forgot segments
    ],
)
def test_wrong_sums_fail(wrong) -> None:
    verdict = check_bert_input_sum(wrong)
    assert verdict.status == "failed", verdict


def test_concatenation_has_the_wrong_shape() -> None:
    def concat(ids, types, t):
        positions = t[1][: ids.shape[1]].expand(len(ids), -1, -1)
        return torch.cat([t[0][ids], t[2][types], positions], -1)

    verdict = check_bert_input_sum(concat)
    assert verdict.status == "failed" and "expected shape" in verdict.detail, verdict


def test_positions_counted_across_the_batch_fail() -> None:
    def flattened(ids, types, t):  # one running position over the flattened batch
        B, L = ids.shape
        positions = (torch.arange(B * L) % len(t[1])).reshape(B, L)
        return t[0][ids] + t[2][types] + t[1][positions]

    verdict = check_bert_input_sum(flattened)
    assert verdict.status == "failed", verdict
