"""qkv.shared_projections: tying shares parameters; the experiments are seeded."""

import pytest
import torch

from qkv.attention import MultiHeadAttention
from qkv.shared_projections import (
    TIES,
    Recall,
    diagonal_max_rate,
    diagonal_max_rates,
    tie_projections,
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
    a = train_recall(tie, seed=1, steps=2, d_model=6, n_pairs=3, n_symbols=5, device="cpu")
    b = train_recall(tie, seed=1, steps=2, d_model=6, n_pairs=3, n_symbols=5, device="cpu")
    assert a.loss == b.loss and set(a.metrics) == {"accuracy", "self_weight"}
