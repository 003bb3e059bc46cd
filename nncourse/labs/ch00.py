"""The course tour (chapter 00): a first network, and a first widget.

:func:`learning_rate_runs` trains the same small network on two-moons once per learning rate;
:func:`explore_learning_rate` shows those runs behind a slider. The runs are computed once, so
moving the slider only swaps curves that are already there.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib.ticker import NullLocator

from nncourse.data import load_moons
from nncourse.models import make_mlp
from nncourse.plotting import color
from nncourse.training import train
from nncourse.widgets import interactive_figure

__all__ = ["LEARNING_RATES", "learning_rate_runs", "explore_learning_rate"]

#: Learning rates behind the tour's slider (log-spaced).
LEARNING_RATES = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


@lru_cache(maxsize=4)
def learning_rate_runs(epochs: int = 40, seed: int = 0) -> dict[float, dict[str, list[float]]]:
    """Train a 2x16 ReLU MLP on two-moons with full-batch SGD for each rate in LEARNING_RATES.

    Returns ``{lr: {"train_loss": [...], "val_loss": [...], "val_acc": [...]}}``.
    """
    data = load_moons(n_samples=500, seed=seed)
    runs = {}
    for lr in LEARNING_RATES:
        model = make_mlp(2, 1, width=16, depth=2, init="he_normal", seed=seed)
        h = train(model, data, epochs=epochs, lr=lr, batch_size=None, seed=seed, progress=False)
        runs[lr] = {"train_loss": h.train_loss, "val_loss": h.val_loss, "val_acc": h.val_acc}
    return runs


def explore_learning_rate(static: bool = False, epochs: int = 40):
    """A slider over learning rates; the loss curves of that run are redrawn in place."""
    import ipywidgets as W

    runs = learning_rate_runs(epochs)
    slider = W.SelectionSlider(options=list(LEARNING_RATES), value=0.3,
                               description="learning rate", style={"description_width": "initial"})

    def draw(axes, state, lr):
        ax = axes[0]
        run = runs[lr]
        x = np.arange(1, epochs + 1)
        if "train" not in state:
            state["train"], = ax.plot(x, run["train_loss"], "-", color=color("train"),
                                      label="train")
            state["val"], = ax.plot(x, run["val_loss"], "--", color=color("val"),
                                    label="validation")
            ax.set_yscale("log")
            losses = [v for r in runs.values() for v in r["train_loss"] + r["val_loss"]]
            lo, hi = 0.8 * min(losses), 1.2 * max(losses)
            ax.set_ylim(lo, hi)
            # plain numbers at 1-2-5 steps instead of matplotlib's 2x10^-1, 3x10^-1, ... labels
            steps = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50)
            ticks = [t for t in steps if lo <= t <= hi]
            ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
            ax.yaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss (log scale)")
            ax.legend(loc="upper right")
        state["train"].set_ydata(run["train_loss"])
        state["val"].set_ydata(run["val_loss"])
        ax.set_title(f"lr = {lr}: validation accuracy {run['val_acc'][-1]:.1%}")

    return interactive_figure(draw, {"lr": slider}, static=static)
