"""qkv.experiments.q06_keys_equal_values: tying shares parameters; the experiments are seeded."""

import pytest
import torch

from qkv.attention import MultiHeadAttention
from qkv.experiments.q06_keys_equal_values import (
    TIES,
    Recall,
    absorption_error,
    diagonal_max_rate,
    diagonal_max_rates,
    tie_gap,
    tie_projections,
    tied_equivalent,
    train_recall,
)
from qkv.tying import count_parameters


def test_tie_shares_one_module() -> None:
    kv = tie_projections(MultiHeadAttention(12, 3), "W_K = W_V")
    qk = tie_projections(MultiHeadAttention(12, 3), "W_Q = W_K")
    assert kv.w_v is kv.w_k and qk.w_k is qk.w_q
    untied = count_parameters(MultiHeadAttention(12, 3))
    assert untied - count_parameters(kv) == count_parameters(torch.nn.Linear(12, 12))
    with pytest.raises(ValueError, match="tie must be one of"):
        tie_projections(MultiHeadAttention(12, 3), "W_Q = W_V")


def test_diagonal_max_rate_matches_a_loop(device) -> None:
    torch.manual_seed(0)
    mha = tie_projections(MultiHeadAttention(10, 2), "W_Q = W_K").to(device)
    x = torch.randn(3, 5, 10, device=device)
    with torch.no_grad():
        _, w = mha(x, need_weights=True)  # (3, 2, 5, 5)
    hits = sum(int(w[b, h, i].argmax() == i) for b in range(3) for h in range(2) for i in range(5))
    assert diagonal_max_rate(mha, x) == pytest.approx(hits / 30)
    rates = diagonal_max_rates(1, d_model=8, heads=(1, 2), n=6)
    assert set(rates) == {8, 4} and rates == diagonal_max_rates(1, d_model=8, heads=(1, 2), n=6)


@pytest.mark.parametrize("tie", TIES)
def test_recall_model_and_training(tie: str) -> None:
    model = Recall(vocab_size=31, tie=tie, d_model=6)
    logits, weights = model(torch.randint(6, 31, (4, 9)))
    assert logits.shape == (4, 31) and weights.shape == (4, 1, 1, 9)
    a, _ = train_recall(tie, seed=1, steps=2, d_model=6, n_pairs=3, n_symbols=5, device="cpu")
    b, _ = train_recall(tie, seed=1, steps=2, d_model=6, n_pairs=3, n_symbols=5, device="cpu")
    assert a.loss == b.loss and set(a.metrics) == {"accuracy", "self_weight"}


def test_tied_equivalent_computes_the_same_logits() -> None:
    torch.manual_seed(2)
    untied = Recall(vocab_size=31, tie="untied", d_model=6)
    with torch.no_grad():  # a non-trivial bias everywhere
        for p in untied.parameters():
            p.add_(0.3 * torch.randn_like(p))
    tied = tied_equivalent(untied)
    assert tied.attention.w_v is tied.attention.w_k
    ids = torch.randint(6, 31, (5, 9))
    assert torch.allclose(untied(ids)[0], tied(ids)[0], atol=1e-4)
    copy = Recall(vocab_size=31, tie="W_K = W_V", d_model=6)  # a plain tie is not equivalent
    copy.load_state_dict(
        {k: v for k, v in untied.state_dict().items() if not k.startswith("attention.w_v")},
        strict=False,
    )
    assert not torch.allclose(untied(ids)[0], copy(ids)[0], atol=1e-2)
    with pytest.raises(ValueError, match="untied one-head"):
        tied_equivalent(Recall(vocab_size=31, tie="untied", d_model=6, n_heads=2))
    with pytest.raises(ValueError, match="untied one-head"):
        tied_equivalent(tied)


def test_tie_gap_and_absorption() -> None:
    _, model = train_recall(
        "untied",
        seed=0,
        steps=3,
        d_model=6,
        n_pairs=3,
        n_symbols=5,
        device="cpu",
    )
    gap = tie_gap(model, n_pairs=3, n_symbols=5)
    assert gap["logit_gap"] < 1e-4 and gap["untied"] == gap["tied"]
    assert absorption_error(0, d_model=8, n_heads=1, n=5) < 1e-8
    assert absorption_error(0, d_model=8, n_heads=2, n=5) > 0.05
