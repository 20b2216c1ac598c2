"""Q21 experiments: the offset-copy task and the length experiment's bookkeeping."""

from __future__ import annotations

import pytest
import torch

from qkv.experiments.q21_positional_encodings import (
    SUM_D_MODEL,
    length_generalization,
    offset_copy,
    sum_recovery,
)


def test_offset_copy_targets_are_the_shifted_inputs() -> None:
    batch = offset_copy(3, 8, offset=2, vocab_size=5, generator=torch.Generator().manual_seed(0))
    assert batch.inputs.shape == batch.targets.shape == (3, 8)
    assert (batch.targets[:, :2] == -100).all()
    for b in range(3):
        for i in range(2, 8):
            assert batch.targets[b, i] == batch.inputs[b, i - 2]
    assert batch.inputs.min() >= 0 and batch.inputs.max() < 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"offset": 8}, "offset must be < length"), ({"offset": 0}, "offset must be >= 1")],
)
def test_offset_copy_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        offset_copy(2, 8, generator=torch.Generator(), **kwargs)


def test_the_learned_table_stops_at_the_training_length() -> None:
    result = length_generalization(
        0, schemes=("learned", "rope"), train_len=6, eval_lens=(6, 9), steps=2, device="cpu"
    )
    assert len(result.accuracy["learned"]) == 1 and len(result.accuracy["rope"]) == 2
    assert "learned position table (6 rows)" in result.errors["learned"]
    assert all(0.0 <= a <= 1.0 for a in result.accuracy["rope"])


def test_experiment_errors() -> None:
    with pytest.raises(ValueError, match="schemes must be among"):
        length_generalization(0, schemes=("absolute",), steps=1)
    with pytest.raises(ValueError, match="must start with train_len"):
        length_generalization(0, eval_lens=(32, 64), steps=1)


def test_sum_recovery_is_exact_only_when_tokens_avoid_the_positions_span():
    r = sum_recovery(seed=1)
    assert r["rank"]["r"] < SUM_D_MODEL / 3  # the sinusoidal table has low rank
    assert 0.15 < r["random"]["token energy in positions"] < 0.35  # about rank / d_model
    assert r["random"]["p error"] > 0.05 and r["random"]["e error"] > 0.02
    assert r["outside"]["token energy in positions"] < 1e-20
    assert r["outside"]["e error"] < 1e-9 and r["outside"]["p error"] < 1e-9
    assert r["outside"]["position identified"] == 1.0
    with pytest.raises(ValueError, match="seed"):
        sum_recovery(seed=-1)
