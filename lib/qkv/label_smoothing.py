"""Label smoothing and calibration: what ``cross_entropy(label_smoothing=eps)`` does to a model.

Label smoothing (Szegedy et al. 2016 §7) trains against the target
distribution ``q' = (1 - eps) * one_hot(y) + eps / V`` instead of the one-hot
``y``; PyTorch's ``F.cross_entropy(logits, y, label_smoothing=eps)`` is exactly
this, so the book uses it and only measures its effects here:

- :func:`expected_calibration_error`: the gap between confidence and accuracy,
  averaged over equal-width confidence bins (Naeini et al. 2015; Guo et al. 2017).
- :func:`calibration`: confidence, accuracy, ECE and NLL of a language model's
  next-token predictions.

Q24's experiment (the same small model trained with and without smoothing) is
:func:`qkv.experiments.q24_original_training_recipe.label_smoothing_experiment`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int

__all__ = ["expected_calibration_error", "calibration"]


def expected_calibration_error(confidence: Tensor, correct: Tensor, n_bins: int = 15) -> float:
    """ECE: ``sum_b |B_b| / N * |accuracy(B_b) - confidence(B_b)|`` over equal-width bins.

    Bin ``b`` holds the predictions with confidence in ``(b / n_bins, (b + 1) / n_bins]``
    (confidence 0 goes to the first bin). 0 means calibrated: among predictions
    made with confidence 0.8, 80% are right.

    Args:
        confidence: ``(N,)`` probability of the predicted class, in [0, 1].
        correct: ``(N,)`` bool, whether the prediction was right.
        n_bins: number of equal-width bins.
    Returns:
        the ECE, in [0, 1].
    """
    n_bins = check_int("n_bins", n_bins, 1)
    if confidence.shape != correct.shape or confidence.dim() != 1 or not len(confidence):
        raise ValueError(
            f"confidence and correct must be (N,) with N >= 1, got {tuple(confidence.shape)} "
            f"and {tuple(correct.shape)}"
        )
    if confidence.min() < 0 or confidence.max() > 1:
        raise ValueError("confidence must be probabilities in [0, 1]")
    confidence, correct = confidence.double(), correct.double()
    bins = (torch.ceil(confidence * n_bins).long() - 1).clamp(0, n_bins - 1)  # (N,)
    ece = torch.zeros((), dtype=torch.float64, device=confidence.device)
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            gap = (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
            ece += in_bin.double().mean() * gap
    return float(ece)


@torch.no_grad()
def calibration(model: nn.Module, ids: Tensor, n_bins: int = 15) -> dict[str, float]:
    """How sure and how right a language model is on ``ids: (B, L)``, next token by next token.

    Returns ``confidence`` (mean probability of the predicted token),
    ``accuracy`` (top-1), ``ece`` (:func:`expected_calibration_error`) and
    ``nll`` (mean cross-entropy in nats; perplexity is ``exp(nll)``). The model
    is evaluated in eval mode and left in its previous mode.
    """
    was_training = model.training
    model.eval()
    try:
        logits = model(ids[:, :-1]).flatten(0, 1)  # (B, L - 1, V) -> (N, V)
    finally:
        model.train(was_training)
    target = ids[:, 1:].flatten()
    confidence, predicted = logits.softmax(dim=-1).max(dim=-1)
    correct = predicted == target
    return {
        "confidence": float(confidence.mean()),
        "accuracy": float(correct.double().mean()),
        "ece": expected_calibration_error(confidence, correct, n_bins),
        "nll": float(F.cross_entropy(logits, target)),
    }
