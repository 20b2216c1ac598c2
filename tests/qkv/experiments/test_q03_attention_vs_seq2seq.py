"""qkv.experiments.q03_attention_vs_seq2seq: the digit experiment is seeded, measures both
tasks, and leaves the caller's random state and thread count alone."""

import pytest
import torch
import torch.nn.functional as F

from qkv.experiments.q03_attention_vs_seq2seq import (
    digit_accuracy,
    digit_loss,
    digit_run,
    digit_runs,
    reversal_alignment,
    train_digit_model,
)
from qkv.tasks import PAD_ID, digit_seq2seq


def test_digit_experiment_is_seeded_and_measures_both_tasks() -> None:
    runs = [
        train_digit_model(attention=True, task="copy", steps=2, seed=3, max_len=5, device="cpu")
        for _ in range(2)
    ]
    assert runs[0][1].loss == runs[1][1].loss  # same seed, same run
    model = runs[0][0]
    batch = digit_seq2seq(4, min_len=1, max_len=5, task="copy", generator=0)
    logits, _ = model(batch.src, batch.lengths, batch.tgt[:, :-1])
    by_hand = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), batch.tgt[:, 1:].reshape(-1), ignore_index=PAD_ID
    )
    torch.testing.assert_close(digit_loss(model, batch), by_hand)
    accuracy = digit_accuracy(model, task="copy", max_len=5, n_strings=7)
    assert len(accuracy) == 5 and all(0 <= a <= 1 for a in accuracy)
    weights, on_mirror, argmax_rate = reversal_alignment(model, length=4, n_strings=3)
    assert weights.shape == (3, 5, 4) and 0 <= on_mirror <= 1 and 0 <= argmax_rate <= 1
    classic, _ = train_digit_model(attention=False, steps=1, max_len=5, device="cpu")
    with pytest.raises(ValueError, match="needs a model built with attention=True"):
        reversal_alignment(classic)


def test_training_leaves_the_callers_state_alone() -> None:
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    run = digit_run(0, attention=False, steps=1, device="cpu")
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), state)
    assert len(run.accuracy) == 12 and 0 <= run.long <= 1 and 0 <= run.short <= 1


def test_one_training_through_two_budgets_is_the_two_runs() -> None:
    # the chapter measures its 100- and 400-step classic models on one training
    short, long = digit_runs(2, attention=True, budgets=(3, 7), d_hidden=8, device="cpu")
    for run, steps in ((short, 3), (long, 7)):
        alone = digit_run(2, attention=True, steps=steps, d_hidden=8, device="cpu")
        params, expected = run.model.state_dict(), alone.model.state_dict()
        assert all(torch.equal(params[k], expected[k]) for k in expected)
        assert run.accuracy == alone.accuracy
    assert short.model is not long.model and short.history.step == [0, 2]
    assert long.history.step == [0, 2, 3, 6] and long.history.loss[:2] == short.history.loss
    with pytest.raises(ValueError, match="increasing"):
        digit_runs(0, attention=False, budgets=(5, 5), device="cpu")
