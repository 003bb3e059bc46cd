"""One plot style for the whole course, and the few figures every chapter needs.

Colours are fixed per *thing*: ReLU is the same blue, Adam the same green, in every chapter.
Look a colour up with :func:`color`; unknown names get a stable colour from the cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from nncourse.style import _CYCLE, use_style
from nncourse.training import eval_mode

__all__ = [
    "COLORS", "color", "use_style", "plot_history", "plot_per_layer", "plot_decision_boundary",
]


#: The same colour for the same method in every chapter.
COLORS: dict[str, str] = {
    # data splits
    "train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c",
    # activations
    "relu": "#1f77b4", "leaky_relu": "#17becf", "prelu": "#0b5d7a", "elu": "#9467bd",
    "selu": "#e377c2", "gelu": "#8c564b", "silu": "#bcbd22", "swish": "#bcbd22",
    "softplus": "#7f7f7f", "tanh": "#2ca02c", "sigmoid": "#d62728", "identity": "#000000",
    "linear": "#000000", "step": "#555555",
    # initializations
    "zeros": "#7f7f7f", "normal": "#ff7f0e", "xavier": "#2ca02c", "glorot": "#2ca02c",
    "he": "#1f77b4", "kaiming": "#1f77b4", "lecun": "#e377c2", "default": "#000000",
    # optimizers
    "sgd": "#7f7f7f", "momentum": "#ff7f0e", "nesterov": "#d62728", "adagrad": "#9467bd",
    "rmsprop": "#8c564b", "adam": "#2ca02c", "nadam": "#17becf", "adamw": "#bcbd22",
    # regularization
    "baseline": "#000000", "l1": "#9467bd", "l2": "#1f77b4", "dropout": "#ff7f0e",
    "max_norm": "#8c564b", "early_stopping": "#2ca02c", "augmentation": "#e377c2",
    # gradient clipping
    "no_clipping": "#7f7f7f", "clip_norm": "#2ca02c", "clip_value": "#d62728",
    # pruning
    "one_shot": "#ff7f0e", "iterative": "#1f77b4", "layer_wise": "#9467bd", "global": "#2ca02c",
    # learning-rate schedules
    "constant": "#000000", "power": "#9467bd", "exponential": "#8c564b", "piecewise": "#bcbd22",
    "cosine": "#1f77b4", "1cycle": "#d62728", "plateau": "#ff7f0e", "warmup": "#17becf",
}


def color(name: str) -> str:
    """The course colour for ``name`` (case-insensitive); a stable cycle colour if unknown."""
    key = str(name).lower().replace("-", "_").replace(" ", "_")
    if key in COLORS:
        return COLORS[key]
    # A stable hash (not Python's salted hash) so unknown names keep their colour between runs.
    return _CYCLE[sum(key.encode()) % len(_CYCLE)]


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots()
    return ax


def plot_history(history, metric: str = "loss", ax=None, label: str | None = None,
                 color_name: str | None = None, title: str | None = None):
    """Plot the training and validation curve of one metric (``loss`` or ``acc``) per epoch.

    Training is drawn solid, validation dashed, both in one colour (``color_name`` or the split
    colours when no label is given).
    """
    if metric not in ("loss", "acc"):
        raise ValueError(f"metric must be 'loss' or 'acc', got {metric!r}")
    ax = _axes(ax)
    epochs = np.arange(1, len(history.train_loss) + 1)
    for split, style in (("train", "-"), ("val", "--")):
        values = getattr(history, f"{split}_{metric}")
        if not values:
            continue
        c = color(color_name) if color_name else color(split if label is None else label)
        name = split if label is None else f"{label} ({split})"
        ax.plot(epochs[: len(values)], values, style, color=c, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel({"loss": "loss", "acc": "accuracy"}[metric])
    if metric == "loss" and _spans_decades(history.train_loss):
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def decade_limits(values, at_least: tuple[float, float] = (1e-4, 1e2),
                  margin: float = 1.0) -> tuple[float, float]:
    """Log-axis limits on whole decades around the positive finite ``values`` (widened by the
    factor ``margin`` first), never narrower than ``at_least``.

    A fixed range that only grows by whole decades keeps one scale across a widget's settings
    (so curves compare) and keeps its axes unchanged on most moves (so redraws are cheap).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return at_least
    lo = min(at_least[0], 10.0 ** math.floor(math.log10(v.min() / margin)))
    hi = max(at_least[1], 10.0 ** math.ceil(math.log10(v.max() * margin)))
    return lo, hi


def _spans_decades(values) -> bool:
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0])
    return v.size > 1 and v.max() / v.min() > 100


def plot_per_layer(values: Mapping[str, Sequence[float]] | Sequence[float], ax=None,
                   ylabel: str = "value", title: str | None = None, log: bool | None = None,
                   xlabel: str = "layer (input → output)"):
    """Plot one value per layer (e.g. gradient norm), one line per series.

    ``values`` is a list (one series) or a mapping ``{series name: list}``. The y axis is
    logarithmic when ``log`` is True or, by default, when the values span more than two decades.
    """
    ax = _axes(ax)
    series = values if isinstance(values, Mapping) else {"": values}
    all_values = []
    for name, ys in series.items():
        ys = np.asarray(ys, dtype=float)
        all_values.extend(ys[np.isfinite(ys)].tolist())
        ax.plot(np.arange(1, len(ys) + 1), ys, "o-", color=color(name) if name else None,
                label=name or None)
    if log or (log is None and _spans_decades(all_values)):
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(series.keys()):
        ax.legend()
    return ax


@torch.no_grad()
def plot_decision_boundary(model: torch.nn.Module, X, y, ax=None, title: str | None = None,
                           resolution: int = 150, margin: float = 0.5):
    """Shade the class a 2-D classifier predicts over the plane and scatter the points.

    Works with one output logit (sigmoid) or one logit per class (softmax).
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"plot_decision_boundary needs 2-D inputs of shape (n, 2), got {X.shape}")
    ax = _axes(ax)
    (x0, y0), (x1, y1) = X.min(0) - margin, X.max(0) + margin
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = torch.from_numpy(np.c_[xx.ravel(), yy.ravel()].astype(np.float32))
    with eval_mode(model):
        logits = model(grid)
    if logits.ndim == 1 or logits.shape[1] == 1:
        z = torch.sigmoid(logits.reshape(-1)).numpy()
    else:
        z = (torch.softmax(logits, 1)[:, 1].numpy() if logits.shape[1] == 2
             else logits.argmax(1).numpy())
    ax.contourf(xx, yy, z.reshape(xx.shape), levels=20, cmap="RdBu_r", alpha=0.35)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu_r", s=12, edgecolors="k", linewidths=0.3)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(False)
    if title:
        ax.set_title(title)
    return ax
