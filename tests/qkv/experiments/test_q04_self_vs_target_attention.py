"""qkv.experiments.q04_self_vs_target_attention: DIN's raw-weight pooling keeps the
intensity, the softmax pooling does not."""

import pytest
import torch

from qkv.experiments.q04_self_vs_target_attention import (
    InterestCTR,
    make_catalogue,
    probe_intensity,
    train_interest_models,
    user_batch,
)


def test_user_batch_counts_matching_behaviours() -> None:
    catalogue = make_catalogue(5, d=7, generator=1)._replace(noise=0.0)  # items = centres
    batch = user_batch(catalogue, 9, torch.Generator().manual_seed(2), max_len=11)
    target = torch.cdist(batch.candidate, catalogue.centres).argmin(-1)  # (B,)
    category = torch.cdist(batch.behaviours, catalogue.centres[None]).argmin(-1)  # (B, n)
    for b in range(9):
        real = category[b, : batch.lengths[b]]
        assert (real == target[b]).sum() == batch.k[b]  # brute-force count
        assert (category[b, batch.lengths[b] :] != target[b]).all()  # filler never matches
    assert torch.equal(batch.clicked, (batch.k >= 3).float())
    norms = catalogue.centres.norm(dim=-1)
    torch.testing.assert_close(norms, torch.full((5,), 7**0.5))


@pytest.mark.parametrize("softmax", [False, True])
def test_pooling_ignores_padding_and_counts_repeats(softmax: bool, device) -> None:
    torch.manual_seed(0)
    model = InterestCTR(7, softmax).to(device)
    g = torch.Generator().manual_seed(3)
    candidate, history = torch.randn(1, 7, generator=g), torch.randn(1, 5, 7, generator=g)
    candidate, history = candidate.to(device), history.to(device)
    garbage = torch.cat([history, 100 * torch.ones(1, 3, 7, device=device)], dim=1)
    with torch.no_grad():
        u, w = model.pool(candidate, history, torch.tensor([5]))
        u_pad, w_pad = model.pool(candidate, garbage, torch.tensor([5]))
        twice, _ = model.pool(candidate, history.repeat(1, 2, 1), torch.tensor([10]))
    torch.testing.assert_close(u_pad, u)
    torch.testing.assert_close(w_pad[:, :5], w)
    assert (w_pad[:, 5:] == 0).all()
    factor = 1.0 if softmax else 2.0  # softmax cannot count, DIN's raw weights can
    torch.testing.assert_close(twice, factor * u, atol=1e-5, rtol=1e-5)
    if softmax:
        torch.testing.assert_close(w.sum(-1), torch.ones(1, device=device))


def test_the_experiment_runs_and_probes() -> None:
    catalogue = make_catalogue(generator=0)
    models, accuracy = train_interest_models(catalogue, 0, steps=2, device="cpu")
    assert set(models) == set(accuracy) == {"DIN (no softmax)", "softmax"}
    assert all(0 <= a <= 1 for a in accuracy.values())
    totals, norms = probe_intensity(models["softmax"], catalogue, [1, 2, 3], seed=0)
    assert totals == pytest.approx([1, 1, 1]) and len(norms) == 3
