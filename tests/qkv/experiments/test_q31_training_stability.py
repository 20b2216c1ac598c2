"""The helpers of the Q31 experiment module that the chapter's assertions rest on."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.experiments import q31_training_stability as q31
from qkv.stack import TransformerStack


def test_lr_sensitivity_follows_wortsman_et_als_definition() -> None:
    # E[min(loss, l0) - best]: the excesses 0, 0.5 and (capped at l0 = 3) 2 average to 2.5/3
    assert q31.lr_sensitivity([1.0, 1.5, 7.0], 3.0) == pytest.approx(2.5 / 3)
    assert q31.lr_sensitivity([0.9, 0.9, 0.9], 4.0) == 0.0  # every rate as good as the best
    # a diverged run (inf or NaN) counts as the loss at initialisation, not as a hole
    assert q31.lr_sensitivity([1.0, math.inf, math.nan], 3.0) == pytest.approx(4 / 3)


@pytest.mark.parametrize("losses", [[], "1.0", None])
def test_lr_sensitivity_names_what_it_expected(losses) -> None:
    with pytest.raises(ValueError, match="losses must be"):
        q31.lr_sensitivity(losses, 3.0)
    with pytest.raises(ValueError, match="initial_loss"):
        q31.lr_sensitivity([1.0], math.nan)


def _stack(qk_norm: bool) -> TransformerStack:
    torch.manual_seed(0)
    model = TransformerStack(12, 32, 4, 64, 2, norm_first=True)
    return q31.add_qk_norm(model) if qk_norm else model


def test_qk_norm_bounds_the_logits_whatever_the_weights() -> None:
    """With unit gains and zero biases each normalised head vector has norm <= sqrt(d_k),
    so |q.k| / sqrt(d_k) <= sqrt(d_k) however large W_Q and W_K grow."""
    ids = torch.randint(0, 12, (4, 16), generator=torch.Generator().manual_seed(1))
    logits = {}
    for qk_norm in (False, True):
        model = _stack(qk_norm)
        small = q31.max_attention_logit(model, ids)
        with torch.no_grad():
            for attn in q31._attentions(model):
                for proj in (attn.w_q, attn.w_k):
                    linear = proj[0] if isinstance(proj, torch.nn.Sequential) else proj
                    linear.weight.mul_(100.0)
        logits[qk_norm] = (small, q31.max_attention_logit(model, ids))
    (plain_small, plain_large), (normed_small, normed_large) = logits[False], logits[True]
    assert plain_large > 1000 * plain_small  # quadratic in the weights' scale: 100^2
    assert normed_large <= math.sqrt(32 // 4) + 1e-4
    assert normed_small <= math.sqrt(32 // 4) + 1e-4


def test_train_proxy_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="lr must be"):
        q31.train_proxy(0, 0.0)
    with pytest.raises(ValueError, match="z_loss must be"):
        q31.train_proxy(0, 1e-2, z_loss=-1.0)
