"""Tests for qkv.plot on the Agg backend: labels, titles, and the data actually drawn."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from qkv.plot import attention_heatmap, mask_image, training_curves  # noqa: E402
from qkv.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _weights(n=5, m=7):
    scores = torch.randn(n, m, generator=torch.Generator().manual_seed(0))
    return scores.softmax(-1)


def test_attention_heatmap_draws_the_weights_with_labels():
    weights = _weights()
    keys = [f"k{j}" for j in range(7)]
    queries = [f"q{i}" for i in range(5)]
    ax = attention_heatmap(weights, x_labels=keys, y_labels=queries, title="Head 0")
    np.testing.assert_array_equal(ax.images[0].get_array(), weights.numpy())
    assert ax.get_title() == "Head 0"
    assert ax.get_xlabel() == "key position (token)"
    assert ax.get_ylabel() == "query position (token)"
    assert [t.get_text() for t in ax.get_xticklabels()] == keys
    assert [t.get_text() for t in ax.get_yticklabels()] == queries
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar
    assert ax.figure.axes[1].get_ylabel() == "attention weight (probability)"


def test_attention_heatmap_uses_the_given_axes_and_a_default_title():
    fig, (left, right) = plt.subplots(1, 2)
    weights = _weights().requires_grad_()
    ax = attention_heatmap(weights, ax=right)
    assert ax is right and not left.images
    assert ax.get_title() == "Attention weights"
    # queries run down the y axis: row 0 of the matrix is the top row of the image
    assert ax.images[0].get_array().shape == (5, 7)
    top, bottom = ax.get_ylim()[1], ax.get_ylim()[0]
    assert top == pytest.approx(-0.5) and bottom == pytest.approx(4.5)


def test_plots_leave_rcparams_alone():
    before = dict(matplotlib.rcParams)
    attention_heatmap(_weights())
    mask_image(torch.eye(3, dtype=torch.bool))
    training_curves({"a": History(step=[0], loss=[1.0])})
    assert dict(matplotlib.rcParams) == before


def test_mask_image_draws_the_mask():
    mask = torch.tril(torch.ones(4, 6, dtype=torch.bool))
    ax = mask_image(mask, title="Causal mask")
    np.testing.assert_array_equal(ax.images[0].get_array(), mask.numpy())
    assert ax.get_title() == "Causal mask (white = may attend)"
    assert ax.get_xlabel() == "key position (token)"
    assert ax.get_ylabel() == "query position (token)"
    assert ax.images[0].get_clim() == (0, 1)


def test_training_curves_plot_each_history():
    a = History(step=[0, 5, 10], loss=[3.0, 2.0, 1.5], metrics={"acc": [0.1, 0.5, 0.9]})
    b = History(step=[0, 5], loss=[3.2, 2.5], metrics={"acc": [0.2, 0.4]})
    ax = training_curves({"warm-up": a, "none": b}, log_y=True)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["warm-up", "none"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [0, 5, 10])
    np.testing.assert_array_equal(lines[1].get_ydata(), [3.2, 2.5])
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "Training loss"
    assert ax.get_xlabel() == "optimizer step (updates)"
    assert ax.get_ylabel() == "loss"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["warm-up", "none"]

    _, other = plt.subplots()
    ax = training_curves({"a": a}, key="acc", ax=other, ylabel="accuracy (fraction)")
    assert ax is other and ax.get_yscale() == "linear"
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), [0.1, 0.5, 0.9])
    assert ax.get_ylabel() == "accuracy (fraction)"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: attention_heatmap(torch.zeros(2, 3, 4)), ValueError, r"2-D tensor or array"),
        (lambda: attention_heatmap([[0.5, 0.5]]), ValueError, "got list"),
        (
            lambda: attention_heatmap(torch.zeros(2, 3), x_labels=["a", "b"]),
            ValueError,
            "x_labels must have 3 entries, got 2",
        ),
        (
            lambda: attention_heatmap(torch.zeros(2, 3), y_labels=["a"]),
            ValueError,
            "y_labels must have 2 entries, got 1",
        ),
        (lambda: mask_image(torch.zeros(2, 2)), ValueError, "mask must be boolean"),
        (lambda: training_curves({}), ValueError, "non-empty dict"),
        (lambda: training_curves({"a": [1.0]}), TypeError, r"histories\['a'\] must be a History"),
        (
            lambda: training_curves({"a": History()}, key="bleu"),
            KeyError,
            "no series 'bleu'",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
