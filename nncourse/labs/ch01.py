"""Watching the NumPy network of chapter 01 learn two-moons: snapshots, figures, a widget.

:func:`training_run` trains :class:`nncourse.backprop.MLP` (one tanh hidden layer) with full-batch
gradient descent and keeps, at each epoch of :data:`SNAPSHOT_EPOCHS`, the predicted probability
over a grid of the plane. :func:`plot_snapshots` draws a few of them next to the loss curve;
:func:`explore_training` puts them behind sliders (epoch, hidden width, learning rate). Runs are
cached, so moving the epoch slider only swaps an image that is already computed, and a new width
or learning rate trains once (a fraction of a second).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np

from nncourse import backprop
from nncourse._validate import check_int
from nncourse.data import load_moons
from nncourse.plotting import color
from nncourse.training import History
from nncourse.widgets import interactive_figure

__all__ = ["SNAPSHOT_EPOCHS", "WIDTHS", "LEARNING_RATES", "Run", "moons_arrays", "training_run",
           "plot_boundary", "plot_snapshots", "explore_training"]

#: Epochs at which a run keeps the predicted probabilities (denser early, where things change).
SNAPSHOT_EPOCHS = (0, 1, 2, 5, 10, 20, 50, 100, 150, 200, 250, 300, 400, 500)
#: Hidden widths and learning rates behind the widget's sliders.
WIDTHS = (2, 4, 8, 32)
LEARNING_RATES = (0.3, 1.0, 3.0)


@dataclass(frozen=True)
class Run:
    """One training run: its history, snapshot epochs and the probability maps at those epochs."""

    width: int
    lr: float
    history: History
    epochs: tuple[int, ...]
    probs: np.ndarray  # (len(epochs), resolution, resolution), P(class 1) over the grid
    extent: tuple[float, float, float, float]  # x0, x1, y0, y1 of the grid
    X: np.ndarray  # training points, for the scatter
    y: np.ndarray


@lru_cache(maxsize=2)
def moons_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-moons (``nncourse.data.load_moons``) as float64 NumPy arrays: X_train, y_train, X_val,
    y_val."""
    d = load_moons(seed=seed)
    return (d.X_train.double().numpy(), d.y_train.numpy(), d.X_val.double().numpy(),
            d.y_val.numpy())


def _grid(X: np.ndarray, resolution: int, margin: float = 0.5):
    (x0, y0), (x1, y1) = X.min(0) - margin, X.max(0) + margin
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    return np.c_[xx.ravel(), yy.ravel()], (float(x0), float(x1), float(y0), float(y1))


@lru_cache(maxsize=16)
def training_run(width: int = 8, lr: float = 1.0, epochs: int = 500, seed: int = 0,
                 resolution: int = 80) -> Run:
    """Train a ``2 -> width -> 1`` tanh MLP on two-moons for ``epochs`` full-batch steps.

    Snapshots are taken at every epoch of :data:`SNAPSHOT_EPOCHS` up to ``epochs``.
    """
    check_int(width, "width", fn="training_run")
    X, y, X_val, y_val = moons_arrays(seed)
    grid, extent = _grid(X, resolution)
    snap_epochs = tuple(e for e in SNAPSHOT_EPOCHS if e <= epochs)
    probs = []

    def snapshot(epoch, net):
        if epoch in snap_epochs:
            probs.append(backprop.sigmoid(net.forward(grid)[:, 0]).reshape(resolution, resolution))

    net = backprop.MLP([2, width, 1], activation="tanh", seed=seed)
    history = backprop.fit(net, X, y, "bce", lr=lr, epochs=epochs, x_val=X_val, y_val=y_val,
                           callback=snapshot)
    return Run(width, lr, history, snap_epochs, np.stack(probs), extent, X, y)


def plot_boundary(ax, prob: np.ndarray, extent, X: np.ndarray, y: np.ndarray):
    """Shade P(class 1) over the plane (red = 1, blue = 0) and scatter the points; return the
    image."""
    im = ax.imshow(prob, origin="lower", extent=extent, cmap="RdBu_r", vmin=0, vmax=1, alpha=0.45,
                   aspect="auto", interpolation="bilinear", zorder=1)
    # Ticks under the map (there are no gridlines here, so nothing changes to the eye): a widget
    # then repaints the map without repainting the axes.
    ax.set_axisbelow(True)
    # vmin/vmax beyond the labels keep the points a lighter red/blue than the darkest shading
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu_r", vmin=-0.6, vmax=1.6, s=8, edgecolors="k",
               linewidths=0.3)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(False)
    ax.locator_params(axis="x", nbins=5)  # few tick labels: text is most of a redraw's cost
    ax.locator_params(axis="y", nbins=4)
    return im


def _loss_axes(ax, run: Run):
    h = run.history
    x = np.arange(len(h.train_loss))
    train, = ax.plot(x, h.train_loss, "-", color=color("train"), label="train")
    val, = ax.plot(x, h.val_loss, "--", color=color("val"), label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("binary cross-entropy")
    ax.set_ylim(0, 0.9)
    ax.set_yticks([0, 0.3, 0.6, 0.9])
    ax.legend(loc="upper right")
    return train, val


def plot_snapshots(run: Run, epochs=(0, 10, 200, 500)):
    """The decision boundary at a few epochs, and the loss curve with those epochs marked."""
    missing = [e for e in epochs if e not in run.epochs]
    if missing:
        raise ValueError(f"no snapshot at epochs {missing}; snapshots are at {run.epochs}")
    # Boundaries on a grid of two columns (large enough to see the shape), the loss curve as a tall
    # panel on the right.
    rows = (len(epochs) + 1) // 2
    fig = plt.figure(figsize=(11, 3.6 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 3)
    axes = [fig.add_subplot(grid[k // 2, k % 2]) for k in range(len(epochs))]
    axes.append(fig.add_subplot(grid[:, 2]))
    for ax, e in zip(axes, epochs):
        plot_boundary(ax, run.probs[run.epochs.index(e)], run.extent, run.X, run.y)
        ax.set_title(f"epoch {e}: loss {run.history.train_loss[e]:.3f}")
    _loss_axes(axes[-1], run)
    for e in epochs:
        axes[-1].axvline(e, color="k", lw=0.6, alpha=0.4)
    axes[-1].set_title("loss per epoch")
    fig.suptitle(f"2 -> {run.width} -> 1 tanh network, full-batch gradient descent, lr = {run.lr}")
    plt.show()


def explore_training(static: bool = False):
    """Sliders for the epoch, the hidden width and the learning rate; boundary and loss redrawn."""
    import ipywidgets as W

    style = {"description_width": "initial"}
    controls = {
        "epoch": W.SelectionSlider(options=list(SNAPSHOT_EPOCHS), value=100, description="epoch",
                                   style=style),
        "width": W.SelectionSlider(options=list(WIDTHS), value=8, description="hidden width",
                                   continuous_update=False, style=style),
        "lr": W.SelectionSlider(options=list(LEARNING_RATES), value=1.0,
                                description="learning rate", continuous_update=False, style=style),
    }

    def draw(axes, state, epoch, width, lr):
        run = training_run(width, lr)
        k = run.epochs.index(epoch)
        h = run.history
        if "image" not in state:
            state["image"] = plot_boundary(axes[0], run.probs[k], run.extent, run.X, run.y)
            state["train"], state["val"] = _loss_axes(axes[1], run)
            # The legend under the curves (it sits where the losses are not): it is then part
            # of the cached background, not repainted with the curves on every move.
            axes[1].get_legend().set_zorder(1.9)
            state["marker"] = axes[1].axvline(epoch, color="k", lw=1, alpha=0.6)
        state["image"].set_data(run.probs[k])
        state["train"].set_ydata(h.train_loss)
        state["val"].set_ydata(h.val_loss)
        state["marker"].set_xdata([epoch, epoch])
        axes[0].set_title(f"epoch {epoch}: validation accuracy {h.val_acc[epoch]:.1%}")
        axes[1].set_title(f"width {width}, lr {lr}: train loss {h.train_loss[epoch]:.3f}")

    return interactive_figure(draw, controls, ncols=2, figsize=(9, 3.6), static=static)


