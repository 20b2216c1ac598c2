"""Q16's experiments: masked-LM training, the attention-mask leak and its paths."""

from __future__ import annotations

import pytest
import torch

from qkv.experiments.q16_mask_rate import isolated_mask_batch, leak_by_path, train_masked_lm
from qkv.markov import MarkovLanguage


def test_isolated_mask_batch_keeps_both_neighbours():

    words, position = isolated_mask_batch(MarkovLanguage(7), 50, 5, generator=3)
    assert words.shape == (50, 5) and position.min() >= 1 and position.max() <= 3
    again, _ = isolated_mask_batch(MarkovLanguage(7), 50, 5, generator=3)
    assert torch.equal(words, again)
    with pytest.raises(ValueError, match="length"):
        isolated_mask_batch(MarkovLanguage(7), 5, 2, generator=0)


def test_train_masked_lm_attention_hiding_leaks_and_input_hiding_does_not(device):
    leak = train_masked_lm(0.15, hide="attention", steps=30, device=device)
    assert leak.accuracy > leak.bayes_accuracy and leak.loss < leak.bayes_loss
    honest = train_masked_lm(0.15, hide="input", steps=5, device=device)
    assert honest.loss > honest.bayes_loss  # nobody beats the exact posterior
    assert 0.5 < honest.bayes_accuracy < 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"rate": 0.0}, "rate"), ({"rate": 1.5}, "rate"), ({"rate": 0.15, "hide": "loss"}, "hide")],
)
def test_train_masked_lm_rejects_bad_arguments(kwargs, match):
    rate = kwargs.pop("rate")
    with pytest.raises(ValueError, match=match):
        train_masked_lm(rate, steps=1, **kwargs)


def test_leak_by_path_separates_the_residual_from_the_query():
    change = leak_by_path(0)
    others = torch.arange(12) != 5
    for name, moved in change.items():
        assert (moved[others] == 0).all(), name  # the attention mask hides it from the rest
    assert change["BERT layer"][5] > 0.1
    assert change["no residual"][5] > 1e-3  # the query still carries the word
    assert (change["no residual, position-only queries"] == 0).all()
    with pytest.raises(ValueError, match="position"):
        leak_by_path(0, length=4, position=4)


def test_experiments_restore_the_callers_threads_and_rng():
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    leak_by_path(1)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)
