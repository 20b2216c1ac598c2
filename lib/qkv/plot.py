"""The book's figures: attention heatmaps, masks and training curves.

Every function takes ``ax=None`` (a new figure is made when it is ``None``),
gives the plot a title and axis labels with units, returns the axes, and
leaves matplotlib's global settings (``rcParams``, styles) alone. Queries run
down the y axis and keys along the x axis, as in the matrix ``Q K^T``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from qkv.train import History

__all__ = ["attention_heatmap", "mask_image", "training_curves"]

Matrix = torch.Tensor | np.ndarray


def _as_matrix(name: str, values: Matrix) -> np.ndarray:
    """A 2-D tensor or array as a NumPy array (detached, on the CPU)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if not isinstance(values, np.ndarray) or values.ndim != 2:
        got = values.shape if isinstance(values, np.ndarray) else type(values).__name__
        raise ValueError(f"{name} must be a 2-D tensor or array (n, m), got {got}")
    return values


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _check_labels(name: str, labels: Sequence[str] | None, size: int) -> None:
    if labels is not None and len(labels) != size:
        raise ValueError(f"{name} must have {size} entries, got {len(labels)}")


def attention_heatmap(
    weights: Matrix,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw an attention-weight matrix: one row per query, one column per key.

    Args:
        weights: ``(n, m)`` (one head; select ``weights[b, head]`` first).
        x_labels: ``m`` key tokens for the x ticks.
        y_labels: ``n`` query tokens for the y ticks.
        ax: axes to draw on; a new figure when ``None``.
        title: defaults to "Attention weights".
    Returns:
        the axes; the image is ``ax.images[0]``, with a colorbar.
    Used in: Q1, Q2, Q3, Q4, Q6, Q8.
    """
    values = _as_matrix("weights", weights)
    _check_labels("x_labels", x_labels, values.shape[1])
    _check_labels("y_labels", y_labels, values.shape[0])
    ax = _axes(ax)
    image = ax.imshow(values, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="attention weight (probability)")
    if x_labels is not None:  # keys rotated so that long tokens stay readable
        ax.set_xticks(range(len(x_labels)), x_labels, rotation=90)
    if y_labels is not None:
        ax.set_yticks(range(len(y_labels)), y_labels)
    ax.set_xlabel("key position (token)")
    ax.set_ylabel("query position (token)")
    ax.set_title(title if title is not None else "Attention weights")
    return ax


def mask_image(mask: Matrix, ax: Axes | None = None, title: str = "Attention mask") -> Axes:
    """Draw a boolean attention mask: white = may attend (True), black = blocked.

    Args:
        mask: bool ``(n, m)``, True = query ``i`` may attend to key ``j``.
        ax: axes to draw on; a new figure when ``None``.
        title: the plot's title; "(white = may attend)" is appended.
    Returns:
        the axes; the image is ``ax.images[0]``.
    Used in: Q14, Q20.
    """
    values = _as_matrix("mask", mask)
    if values.dtype != np.bool_:
        raise ValueError(f"mask must be boolean (True = may attend), got dtype {values.dtype}")
    ax = _axes(ax)
    ax.imshow(values, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xlabel("key position (token)")
    ax.set_ylabel("query position (token)")
    ax.set_title(f"{title} (white = may attend)")
    return ax


def training_curves(
    histories: Mapping[str, History],
    *,
    key: str = "loss",
    ax: Axes | None = None,
    log_y: bool = False,
    title: str | None = None,
    ylabel: str | None = None,
) -> Axes:
    """Plot one recorded series of several training runs against the step.

    Args:
        histories: ``run name -> History`` (from :func:`qkv.train.train`).
        key: ``"loss"``, ``"grad_norm"``, ``"lr"``, ``"seconds"`` or a metric.
        ax: axes to draw on; a new figure when ``None``.
        log_y: logarithmic y axis (losses that span decades).
        title: defaults to "Training <key>".
        ylabel: the y label with its unit, e.g. "cross-entropy (nats)";
            defaults to the key's name.
    Returns:
        the axes, one line per run, labelled with the run's name.
    Used in: Q3, Q6, Q10, Q19, Q22.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError(f"histories must be a non-empty dict name -> History, got {histories!r}")
    ax = _axes(ax)
    for name, history in histories.items():
        if not isinstance(history, History):
            raise TypeError(f"histories[{name!r}] must be a History, got {type(history).__name__}")
        ax.plot(history.step, history.values(key), label=name)
    ax.set_xlabel("optimizer step (updates)")
    ax.set_ylabel(ylabel if ylabel is not None else key.replace("_", " "))
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title if title is not None else f"Training {key.replace('_', ' ')}")
    ax.legend()
    return ax
