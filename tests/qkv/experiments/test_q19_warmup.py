"""qkv.experiments.q19_warmup: the training run Q19, Q22 and Q24 share, BERT's optimiser step."""

from __future__ import annotations

import pytest
import torch

import qkv
from qkv.experiments.q19_warmup import (
    BERT_FIRST_STEP,
    bert_adam_step,
    entropy_floors,
    final_loss,
    first_step,
    markov_language,
    train_markov_lm,
)


def test_training_is_reproducible_and_learns():
    with qkv.reproducible():
        _, first = train_markov_lm(0, norm_first=True, steps=30, n_layers=1)
        _, second = train_markov_lm(0, norm_first=True, steps=30, n_layers=1)
    assert first.loss == pytest.approx(second.loss, rel=1e-5)  # CUDA may reorder sums
    assert final_loss(first, 5) < first.loss[0] - 0.5


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train_markov_lm(0, norm_first=True, steps=0)
    with pytest.raises(ValueError, match="optimizer must be"):
        first_step(0, "Adagrad")


def test_entropy_floors_match_a_large_sample():
    """The exact floors against the empirical entropies of 20,000 sampled sequences."""
    floors = entropy_floors()
    ids = markov_language().sample(20_000, 17, generator=1)
    prev, nxt = ids[:, :-1].flatten(), ids[:, 1:].flatten()
    counts = torch.bincount(nxt).double()
    p = counts[counts > 0] / counts.sum()
    assert floors["unigram"] == pytest.approx(float(-(p * p.log()).sum()), abs=0.01)
    pair = torch.zeros(ids.max() + 1, ids.max() + 1, dtype=torch.float64)
    pair.index_put_((prev, nxt), torch.ones_like(prev, dtype=torch.float64), accumulate=True)
    cond = pair / pair.sum(dim=1, keepdim=True).clamp_min(1)
    h = -(pair * cond.clamp_min(1e-300).log()).sum() / pair.sum()
    assert floors["bayes"] == pytest.approx(float(h), abs=0.01)
    assert floors["bayes"] < floors["unigram"]


def test_bert_adam_step_follows_the_released_update():
    """No bias correction, decay outside the adaptive step: checked against the formula
    of google-research/bert optimization.py written out with torch ops, over 3 steps."""
    g = torch.Generator().manual_seed(0)
    param, m, v = torch.randn(50, generator=g), torch.zeros(50), torch.zeros(50)
    ref_p, ref_m, ref_v = param.clone(), m.clone(), v.clone()
    for _ in range(3):
        grad = torch.randn(50, generator=g)
        param, m, v = bert_adam_step(param, grad, m, v, 1e-3)
        ref_m = 0.9 * ref_m + 0.1 * grad
        ref_v = 0.999 * ref_v + 0.001 * grad**2
        ref_p = ref_p - 1e-3 * (ref_m / (ref_v.sqrt() + 1e-6) + 0.01 * ref_p)
        torch.testing.assert_close(param, ref_p)
    # and it differs from torch's AdamW, which corrects the bias
    p0 = torch.nn.Parameter(torch.ones(3))
    p0.grad = torch.full((3,), 0.5)
    torch.optim.AdamW([p0], lr=1e-3, eps=1e-6, weight_decay=0.01).step()
    zeros = torch.zeros(3)
    ours = bert_adam_step(torch.ones(3), torch.full((3,), 0.5), zeros, zeros, 1e-3)
    assert not torch.allclose(ours[0], p0.detach())


def test_first_steps():
    ratio, grad = first_step(0, "BERT")
    big = grad.abs() > 1e-3
    assert ratio[big].median().item() == pytest.approx(BERT_FIRST_STEP, rel=0.01)
    ratio, grad = first_step(0, "Adam")
    assert (ratio[grad.abs() > 1e-5] - 1).abs().max() < 2e-3
