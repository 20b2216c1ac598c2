"""The Q16 checker: BERT's masking procedure, right and wrong."""

from __future__ import annotations

import pytest
import torch

from qkv.exercises import check_bert_masking
from qkv.mlm import mask_tokens


def reference(input_ids, *, rate, vocab_size, mask_id, special_ids, generator):
    return mask_tokens(
        input_ids,
        vocab_size=vocab_size,
        mask_id=mask_id,
        special_ids=special_ids,
        rate=rate,
        generator=generator,
    )


def by_hand(input_ids, *, rate, vocab_size, mask_id, special_ids, generator):
    special = torch.tensor([*special_ids, mask_id])
    chosen = torch.rand(input_ids.shape, generator=generator) < rate
    chosen &= ~torch.isin(input_ids, special)
    action = torch.rand(input_ids.shape, generator=generator)
    allowed = torch.tensor([i for i in range(vocab_size) if i not in special.tolist()])
    random_ids = allowed[torch.randint(len(allowed), input_ids.shape, generator=generator)]
    inputs = input_ids.clone()
    inputs[chosen & (action < 0.8)] = mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_ids[swap]
    labels = torch.where(chosen, input_ids, -100)
    return inputs, labels


def _variant(**changes):
    """by_hand with one realistic mistake."""

    def fn(input_ids, *, rate, vocab_size, mask_id, special_ids, generator):
        if changes.get("in_place"):
            inputs, labels = by_hand(
                input_ids,
                rate=rate,
                vocab_size=vocab_size,
                mask_id=mask_id,
                special_ids=special_ids,
                generator=generator,
            )
            input_ids.copy_(inputs)
            return input_ids, labels
        if changes.get("specials"):
            special_ids = ()
        inputs, labels = by_hand(
            input_ids,
            rate=rate,
            vocab_size=vocab_size,
            mask_id=mask_id,
            special_ids=special_ids,
            generator=generator,
        )
        if changes.get("all_mask"):
            inputs = torch.where(labels != -100, mask_id, input_ids)
        if changes.get("labels_everywhere"):
            labels = input_ids.clone()
        if changes.get("labels_of_inputs"):
            labels = torch.where(labels != -100, inputs, -100)
        return inputs, labels

    return fn


def test_reference_and_hand_written_pass() -> None:
    for fn in (reference, by_hand):
        verdict = check_bert_masking(fn)
        assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (_variant(specials=True), "special"),
        (_variant(all_mask=True), "[MASK]"),
        (_variant(labels_everywhere=True), "special"),
        (_variant(labels_of_inputs=True), "ORIGINAL"),
        (_variant(in_place=True), "in place"),
    ],
)
def test_wrong_maskers_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_bert_masking(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail, verdict.detail


def test_wrong_rate_fails() -> None:
    def doubles_the_rate(input_ids, *, rate, vocab_size, mask_id, special_ids, generator):
        # chooses 30% when asked for 15%
        return by_hand(
            input_ids,
            rate=min(1.0, 2 * rate),
            vocab_size=vocab_size,
            mask_id=mask_id,
            special_ids=special_ids,
            generator=generator,
        )

    verdict = check_bert_masking(doubles_the_rate)
    assert verdict.status == "failed" and "chosen tokens at rate" in verdict.detail, verdict


def test_stub_is_not_attempted() -> None:
    def stub(input_ids, **kwargs):
        raise NotImplementedError

    assert check_bert_masking(stub).status == "not attempted"


def test_a_masker_that_ignores_the_generator_fails() -> None:
    def global_rng(input_ids, *, rate, vocab_size, mask_id, special_ids, generator):
        kw = {"vocab_size": vocab_size, "mask_id": mask_id, "special_ids": special_ids}
        return by_hand(input_ids, rate=rate, generator=None, **kw)

    verdict = check_bert_masking(global_rng)
    assert verdict.status == "failed" and "generator" in verdict.detail, verdict
