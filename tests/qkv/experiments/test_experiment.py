"""qkv.reproducible and qkv.experiments: same numbers on any thread count, caller's state kept."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import qkv
from qkv.experiments import Claim, claims, experiment, modules


def _sum(seed: int) -> float:
    """A float32 sum of 4 million numbers: its last digits depend on the thread count."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4_000_000, generator=g).sum().item()


def _over_threads(fn) -> set[float]:
    saved = torch.get_num_threads()
    try:
        results = set()
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            results.add(fn(0))
            assert torch.get_num_threads() == threads  # restored
        return results
    finally:
        torch.set_num_threads(saved)


def test_an_experiment_gives_the_same_number_whatever_the_callers_thread_count():
    assert len(_over_threads(experiment(_sum))) == 1


def test_without_it_the_number_would_depend_on_the_thread_count():
    """The control: the test above could fail."""
    assert len(_over_threads(_sum)) > 1


def test_reproducible_restores_every_global_state():
    torch_state, py_state, np_state = torch.random.get_rng_state(), random.getstate(), None
    np_state = np.random.get_state()[1].copy()
    dtype = torch.get_default_dtype()
    with qkv.reproducible(7):
        torch.rand(3), random.random(), np.random.rand()
        torch.set_default_dtype(torch.float64)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    assert (np.random.get_state()[1] == np_state).all()
    assert torch.get_default_dtype() == dtype


def test_reproducible_seeds_like_seed_everything():
    with qkv.reproducible(3):
        inside = torch.rand(4)
    qkv.seed_everything(3)
    assert torch.equal(inside, torch.rand(4))


def test_reproducible_refuses_bad_threads():
    with pytest.raises((TypeError, ValueError), match="threads"):
        with qkv.reproducible(threads=0):
            pass


def test_a_claim_checks_its_margin_and_names_itself():
    claim = Claim("q00-demo", "a demo", lambda seed: 1.0, ">", 0.5, seeds=(0, 1))
    assert claim.check(0.7) == 0.7
    with pytest.raises(AssertionError, match=r"q00-demo.*0\.3.*> 0\.5"):
        claim.check(0.3)
    with pytest.raises(ValueError, match="op"):
        Claim("q00-bad", "bad", lambda seed: 1.0, "=", 0.5)
    with pytest.raises(ValueError, match="chapter_seed"):
        Claim("q00-bad", "bad", lambda seed: 1.0, ">", 0.5, seeds=(1, 2))
    with pytest.raises(ValueError, match="duplicate"):
        claims(claim, claim)


def test_every_experiment_module_declares_its_claims():
    for module in modules():
        number = module.__name__.rsplit(".", 1)[1].split("_", 1)[0]
        assert isinstance(module.CLAIMS, dict), module.__name__
        assert all(c.number == number for c in module.CLAIMS.values()), module.__name__
