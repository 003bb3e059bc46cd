"""Chapter 08's experiments: overfit a small noisy task on purpose, then regularize it.

One task and one training recipe for the whole chapter, so every technique is compared on equal
terms: :func:`noisy_moons` (40 training points, 901 validation points) and :func:`fit`, which
trains the same wide, deep MLP with any mix of L1/L2, dropout, max-norm and early stopping and
returns a :class:`Run`. Runs are cached by their settings: a sweep, the comparison table and the
widget share the runs they have in common. On 40 points one run is one draw: :func:`fit_seeds`
repeats a setting over :data:`SEEDS` (each seed draws the 40 points, the initialization and the
dropout masks), :func:`seed_table` prints means with their spread and
:func:`paired_differences` compares two settings seed by seed, which is what a comparison of
techniques must rest on. :func:`explore_regularization` is the chapter's widget (L2 strength x
dropout rate, from a precomputed grid of runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from nncourse.data import Dataset, load_digits, load_moons
from nncourse.env import progress
from nncourse.models import make_mlp
from nncourse.plotting import color
from nncourse.regularization import (
    Dropout,
    EarlyStopping,
    MaxNorm,
    WeightPenalty,
    expected_calibration_error,
    mc_dropout_predict,
)
from nncourse.training import Callback, History, accuracy, eval_mode, evaluate, mean_sd, train
from nncourse.widgets import interactive_figure

__all__ = ["RECIPE", "SEEDS", "noisy_moons", "Run", "fit", "fit_seeds", "mean_sd", "seed_table",
           "paired_differences",
           "dropout_loss_modes", "mc_dropout_scores", "fit_digits", "table", "plot_curves",
           "plot_boundaries", "probability_grid", "boundary_lines", "L2_GRID", "DROPOUT_GRID",
           "grid_runs", "explore_regularization"]

#: The chapter's training recipe: a wide, deep ReLU net and full-batch SGD with momentum; gradient
#: clipping (chapter 02) only acts when heavy dropout makes a step explode. The validation set is
#: scored every ``eval_every`` epochs (every epoch for early stopping): scoring 901 points costs
#: more than a training step on 40.
RECIPE = {"width": 64, "depth": 3, "epochs": 300, "lr": 0.1, "momentum": 0.9, "clip_norm": 5.0,
          "eval_every": 5}


def noisy_moons(n_train: int = 40, noise: float = 0.3, seed: int = 0,
                sample: int | None = None) -> Dataset:
    """Two-moons with ``noise``: ``n_train`` training points, 901 validation, 900 test.

    The validation and test sets are large so that an accuracy measured on them is not luck of a
    small split (binomial standard error about 1.2 points at 85 %); the training set is small so
    that a big network can memorize it -- and so that two trainings differ by more than that
    (compare settings with :func:`fit_seeds`). ``sample`` (default: ``seed``) draws which
    ``n_train`` points of the 1199-point training pool are used; validation and test stay fixed.
    """
    return _noisy_moons(n_train, float(noise), seed, seed if sample is None else sample)


@lru_cache(maxsize=16)
def _noisy_moons(n_train: int, noise: float, seed: int, sample: int) -> Dataset:
    full = load_moons(n_samples=3000, noise=noise, seed=seed, val_fraction=0.3, test_fraction=0.3)
    return full.subset_train(n_train, seed=sample)


@dataclass
class Run:
    """One trained network and what we measure on it."""

    name: str
    model: nn.Module
    history: History
    train_acc: float   # eval mode, final (or restored) weights
    val_acc: float
    test_acc: float
    extra: dict = field(default_factory=dict)
    data: Dataset | None = None   # what it was trained on (its training points)

    @property
    def gap(self) -> float:
        """Train minus validation accuracy: how much the network memorized."""
        return self.train_acc - self.val_acc

    @property
    def val_epochs(self) -> np.ndarray:
        """The epochs at which the validation curves were measured."""
        return np.asarray(self.history.extra.get(
            "val_epochs", range(1, len(self.history.val_loss) + 1)))

    def line(self) -> str:
        return (f"{self.name:<22} train {self.train_acc:6.1%}   val {self.val_acc:6.1%}   "
                f"gap {self.gap:+6.1%}")


class _EvaluateEvery(Callback):
    """Score the validation set every ``every`` epochs (and at the last one) into the history;
    ``history.extra["val_epochs"]`` says which epochs. Runs before the other callbacks, so
    early stopping sees the new value."""

    def __init__(self, X, y, every: int, epochs: int):
        self.X, self.y, self.every, self.epochs = X, y, every, epochs

    def on_epoch_end(self, model, epoch, history):
        if epoch % self.every == 0 or epoch in (1, self.epochs):
            loss, acc = evaluate(model, self.X, self.y)
            history.val_loss.append(loss)
            history.val_acc.append(acc)
            history.extra.setdefault("val_epochs", []).append(epoch)


def fit(name: str = "baseline", *, n_train: int = 40, width: int = RECIPE["width"],
        depth: int = RECIPE["depth"], l2: float = 0.0, l1: float = 0.0, dropout: float = 0.0,
        l1_proximal: bool = True, max_norm: float | None = None, patience: int | None = None,
        monitor: str = "val_loss", epochs: int = RECIPE["epochs"],
        momentum: float = RECIPE["momentum"], eval_every: int | None = None,
        seed: int = 0) -> Run:
    """Train the chapter's MLP on :func:`noisy_moons` with the given regularization.

    ``l2`` adds the L2 gradient ``l2 * w`` (SGD's ``weight_decay``, on weights, not biases),
    ``l1`` an L1 penalty -- a proximal step (exact zeros) or, with ``l1_proximal=False``, its
    subgradient ``l1 * sign(w)`` --, ``dropout`` the rate after each hidden layer, ``max_norm``
    the bound on each unit's incoming weight norm, ``patience`` turns on early stopping on
    ``monitor`` (``"val_loss"`` or ``"val_acc"``, restoring the best weights; the validation set
    is then scored every epoch). ``seed`` sets the initialization, the dropout masks *and* which
    40 points are drawn from the pool (:func:`noisy_moons`); seed 0 is the chapter's running
    example. Cached: the same settings return the same :class:`Run`.
    """
    every = 1 if patience else (eval_every or RECIPE["eval_every"])
    run = _fit(n_train, width, depth, float(l2), float(l1), bool(l1_proximal), float(dropout),
               None if max_norm is None else float(max_norm), patience, monitor, epochs,
               float(momentum), every, seed)
    if run.name != name:
        run = Run(name, run.model, run.history, run.train_acc, run.val_acc, run.test_acc,
                  run.extra, run.data)
    return run


@lru_cache(maxsize=256)
def _fit(n_train, width, depth, l2, l1, l1_proximal, dropout, max_norm, patience, monitor,
         epochs, momentum, eval_every, seed) -> Run:
    data = noisy_moons(n_train, seed=0, sample=seed)
    model = make_mlp(2, 1, width=width, depth=depth, init="he_normal", dropout=dropout,
                     seed=seed)
    callbacks = [_EvaluateEvery(data.X_val, data.y_val, eval_every, epochs)]
    if l2:
        callbacks.append(WeightPenalty("l2", l2))
    if l1:
        callbacks.append(WeightPenalty("l1", l1, proximal=l1_proximal))
    if max_norm is not None:
        callbacks.append(MaxNorm(max_norm))
    stopper = EarlyStopping(patience=patience, monitor=monitor) if patience else None
    if stopper:
        callbacks.append(stopper)
    # Dropout draws its masks from the global generator: seed it per run, so that a run does
    # not depend on which runs came before it (the cache makes the call order vary).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        history = train(model, data, epochs=epochs, lr=RECIPE["lr"], momentum=momentum,
                        clip_norm=RECIPE["clip_norm"], batch_size=None, callbacks=callbacks,
                        seed=seed, evaluate_val=False)
    extra = {}
    if stopper:
        extra = {"best_epoch": stopper.best_epoch, "stopped_epoch": stopper.stopped_epoch}
    return Run("", model, history, accuracy(model, data.X_train, data.y_train),
               accuracy(model, data.X_val, data.y_val), accuracy(model, data.X_test, data.y_test),
               extra, data)


#: The seeds over which the chapter averages a comparison. A seed sets the initialization, the
#: dropout masks and which 40 training points are drawn; seed 0 is the run shown everywhere else.
SEEDS = (0, 1, 2, 3, 4)


def fit_seeds(name: str = "baseline", seeds: tuple = SEEDS, **settings) -> list[Run]:
    """:func:`fit` once per seed (cached): the runs of one setting, for a mean and a spread."""
    return [fit(name, seed=s, **settings) for s in progress(seeds, desc=f"{name}, seeds")]


def seed_table(groups, test: bool = False) -> str:
    """Like :func:`table`, for groups of runs (one list per setting, e.g. from :func:`fit_seeds`):
    the number of seeds, mean train accuracy, mean validation accuracy ± its standard deviation,
    mean gap (in whole points: training accuracy on 40 points moves in steps of 2.5) and, if
    asked, mean test accuracy ± standard deviation. A group of one run shows "1" seed and no
    spread."""
    head = (f"{'':<22} {'seeds':>5} {'train':>7} {'val':>7} {'± sd':>5} {'gap':>4}"
            + (f" {'test':>7} {'± sd':>5}" if test else ""))
    rows = [head]
    for runs in groups:
        n = len(runs)
        tr, _ = mean_sd(r.train_acc for r in runs)
        va, va_sd = mean_sd(r.val_acc for r in runs)
        gap, _ = mean_sd(r.gap for r in runs)
        spread = (lambda sd: f"{sd * 100:5.1f}") if n > 1 else (lambda sd: f"{'-':>5}")
        row = f"{runs[0].name:<22} {n:5d} {tr:7.1%} {va:7.1%} {spread(va_sd)} {gap * 100:+4.0f}"
        if test:
            te, te_sd = mean_sd(r.test_acc for r in runs)
            row += f" {te:7.1%} {spread(te_sd)}"
        rows.append(row)
    return "\n".join(rows)


def paired_differences(runs, reference) -> tuple[float, float, int]:
    """Test accuracy of ``runs`` minus that of ``reference``, seed by seed (the same seed means
    the same 40 points and the same initial weights): the mean difference, its standard
    deviation and on how many seeds ``runs`` is ahead."""
    diffs = [a.test_acc - b.test_acc for a, b in zip(runs, reference, strict=True)]
    m, sd = mean_sd(diffs)
    return float(m), float(sd), sum(d > 0 for d in diffs)


def dropout_loss_modes(run: Run, n_masks: int = 100, seed: int = 0) -> tuple[float, float]:
    """The trained network's loss on its training data with dropout on (averaged over
    ``n_masks`` random masks, as the training curve measures it but without the noise of one
    mask) and with dropout off (eval mode, as the validation curve measures it): same weights,
    two modes."""
    data = run.data or noisy_moons()
    X, y = data.X_train, data.y_train.float()
    with torch.no_grad(), eval_mode(run.model), torch.random.fork_rng(devices=[]):
        off = nn.functional.binary_cross_entropy_with_logits(run.model(X).reshape(-1), y).item()
        for m in run.model.modules():
            if isinstance(m, (nn.Dropout, Dropout)):
                m.train()
        torch.manual_seed(seed)
        on = np.mean([nn.functional.binary_cross_entropy_with_logits(
            run.model(X).reshape(-1), y).item() for _ in range(n_masks)])
    return float(on), off


def mc_dropout_scores(run: Run, n_samples: int = 100, seed: int = 0) -> dict:
    """Validation accuracy, NLL and ECE of a dropout network with dropout off ("standard") and
    with Monte Carlo dropout (``n_samples`` passes, averaged), and the mean MC standard
    deviation of P(class 1) on the points MC dropout gets wrong and right."""
    data = noisy_moons()
    X, y = data.X_val, data.y_val
    with torch.no_grad(), eval_mode(run.model):
        p_single = torch.sigmoid(run.model(X).reshape(-1))
    p_mc, p_std = mc_dropout_predict(run.model, X, n_samples=n_samples, seed=seed)

    def scores(p):
        # no clamp of p: one confidently wrong point costs what it costs (torch's
        # binary_cross_entropy only bounds log(0) at -100)
        nll = nn.functional.binary_cross_entropy(p, y.float()).item()
        return {"acc": ((p > 0.5).long() == y).float().mean().item(), "nll": nll,
                "ece": expected_calibration_error(p, y)}

    wrong = (p_mc > 0.5).long() != y
    return {"standard": scores(p_single), "mc": scores(p_mc),
            "std_wrong": p_std[wrong].mean().item(), "std_right": p_std[~wrong].mean().item()}


@lru_cache(maxsize=8)
def fit_digits(name: str = "no augmentation", n_train: int = 100, copies: int = 0,
               max_shift: float = 0.5, max_degrees: float = 15.0, noise_std: float = 0.0,
               seed: int = 0) -> Run:
    """A 64-128-128-10 MLP on ``n_train`` digits (10 per class for 100), trained with Adam.

    With ``copies > 0`` the training set gets that many augmented variants of each image
    (:func:`nncourse.augmentation.augment_dataset`); the number of epochs is divided by
    ``copies + 1`` so that every run sees the same number of examples (20,000 for 100 images).
    """
    from nncourse.augmentation import augment_dataset

    small = load_digits(seed=0).subset_train(n_train, seed=seed)
    data = small if copies == 0 else augment_dataset(
        small, copies, seed=seed, max_shift=max_shift, max_degrees=max_degrees,
        noise_std=noise_std)
    model = make_mlp(64, 10, width=128, depth=2, init="he_normal", seed=seed)
    history = train(model, data, epochs=max(1, 200 // (copies + 1)), lr=1e-3, optimizer="adam",
                    batch_size=32, seed=seed, progress=False)
    return Run(name, model, history, accuracy(model, small.X_train, small.y_train),
               accuracy(model, small.X_val, small.y_val),
               accuracy(model, small.X_test, small.y_test))


def table(runs, test: bool = False) -> str:
    """The runs as an aligned text table (train / validation accuracy, gap; test if asked)."""
    head = f"{'':<22} {'train':>7} {'val':>7} {'gap':>7}" + (f" {'test':>7}" if test else "")
    rows = [head]
    for r in runs:
        row = f"{r.name:<22} {r.train_acc:7.1%} {r.val_acc:7.1%} {r.gap * 100:+6.1f}"
        rows.append(row + (f" {r.test_acc:7.1%}" if test else ""))
    return "\n".join(rows)


def plot_curves(runs, metric: str = "loss", ax=None, title: str | None = None,
                colors=None, log: bool | None = None):
    """Training (solid) and validation (dashed) curves of several runs on one axes."""
    if ax is None:
        _, ax = plt.subplots()
    colors = colors or [color(r.name) for r in runs]
    for r, c in zip(runs, colors):
        h = r.history
        tr, va = getattr(h, f"train_{metric}"), getattr(h, f"val_{metric}")
        ax.plot(np.arange(1, len(tr) + 1), tr, "-", color=c, lw=1.2, label=f"{r.name} (train)")
        ax.plot(r.val_epochs, va, "--", color=c, lw=1.2, label=f"{r.name} (val)")
    ax.set_xlabel("epoch")
    ax.set_ylabel({"loss": "loss", "acc": "accuracy"}[metric])
    if log or (log is None and metric == "loss"):
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, ncol=1 if len(runs) < 3 else 2)
    return ax


# --- decision boundaries, drawn from a precomputed probability grid -------------------------

_EXTENT = (-2.0, 3.0, -1.7, 2.2)


@torch.no_grad()
def probability_grid(model: nn.Module, resolution: int = 80,
                     extent: tuple[float, float, float, float] = _EXTENT) -> np.ndarray:
    """P(class 1) of a one-logit model on a ``resolution x resolution`` grid over ``extent``
    (x0, x1, y0, y1); row 0 is the bottom of the plane. Eval mode."""
    x0, x1, y0, y1 = extent
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = torch.from_numpy(np.c_[xx.ravel(), yy.ravel()].astype(np.float32))
    with eval_mode(model):
        p = torch.sigmoid(model(grid).reshape(-1)).numpy()
    return p.reshape(resolution, resolution)


def boundary_lines(probs: np.ndarray) -> list[np.ndarray]:
    """The decision boundary (the P = 0.5 level line) of a :func:`probability_grid`, as a list
    of ``(n, 2)`` arrays of plane coordinates -- what ``ax.contour`` would draw."""
    import contourpy

    x0, x1, y0, y1 = _EXTENT
    xs = np.linspace(x0, x1, probs.shape[1])
    ys = np.linspace(y0, y1, probs.shape[0])
    return list(contourpy.contour_generator(xs, ys, probs).lines(0.5))


def _draw_boundary(ax, probs: np.ndarray, data: Dataset, points: str = "train"):
    """Draw the probability map, the boundary and the points; returns the (image, boundary)
    artists, so that a widget can swap their data in place."""
    from matplotlib.collections import LineCollection

    im = ax.imshow(probs, origin="lower", extent=_EXTENT, cmap="RdBu_r", vmin=0, vmax=1,
                   alpha=0.45, aspect="auto", interpolation="bilinear", zorder=1)
    # Ticks under the map (there are no gridlines here, so nothing changes to the eye): a widget
    # then repaints the map without repainting the axes.
    ax.set_axisbelow(True)
    x0, x1, y0, y1 = _EXTENT
    contour = ax.add_collection(LineCollection(boundary_lines(probs), colors="k", linewidths=1))
    X, y = (data.X_train, data.y_train) if points == "train" else (data.X_val, data.y_val)
    # the points in colours that are not on the map: white circles (class 0), black triangles
    small = points != "train"
    for k, marker, face, edge in [(0, "o", "white", "black"), (1, "^", "black", "white")]:
        ax.scatter(X[y == k, 0], X[y == k, 1], marker=marker, s=5 if small else 18, c=face,
                   edgecolors=edge, linewidths=0.2 if small else 0.6, zorder=3)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(False)
    return im, contour


def plot_boundaries(runs, points: str = "train", ncols: int | None = None, size: float = 2.6):
    """Decision boundaries of several runs side by side; each title gives its accuracies."""
    ncols = ncols or len(runs)
    nrows = -(-len(runs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 0.95),
                             squeeze=False, sharex=True, sharey=True)
    data = noisy_moons()
    for ax, r in zip(axes.ravel(), runs):
        _draw_boundary(ax, probability_grid(r.model), data, points)
        ax.set_title(f"{r.name}\ntrain {r.train_acc:.0%}, val {r.val_acc:.1%}", fontsize=9)
    for ax in axes.ravel()[len(runs):]:
        ax.axis("off")
    return fig


# --- the widget: L2 strength x dropout rate --------------------------------------------------

#: The widget's grid of settings (each pair is one precomputed run). The λ = 0 row and the p = 0
#: column are runs of the chapter's L2 and dropout sweeps (cached), so only 4 runs are new.
L2_GRID = (0.0, 0.01, 0.03)
DROPOUT_GRID = (0.0, 0.5, 0.8)


@lru_cache(maxsize=2)
def grid_runs(epochs: int = RECIPE["epochs"], l2_grid: tuple = L2_GRID,
              dropout_grid: tuple = DROPOUT_GRID) -> dict:
    """What the widget shows for every (L2 strength, dropout rate) pair, computed once:
    ``{(l2, p): {"probs", "boundary", "train_loss", "val_loss", "train_acc", "val_acc"}}``."""
    out = {}
    for l2 in progress(l2_grid, desc="L2 grid"):
        for p in dropout_grid:
            r = fit(l2=l2, dropout=p, epochs=epochs)
            h = r.history
            probs = probability_grid(r.model)
            out[l2, p] = {"probs": probs, "boundary": boundary_lines(probs),
                          "train_loss": h.train_loss, "val_loss": h.val_loss,
                          "val_epochs": r.val_epochs,
                          "train_acc": r.train_acc, "val_acc": r.val_acc}
    return out


def explore_regularization(static: bool = False, epochs: int = RECIPE["epochs"],
                           l2_grid: tuple = L2_GRID, dropout_grid: tuple = DROPOUT_GRID):
    """Sliders for the L2 strength and the dropout rate; the decision boundary and the loss
    curves of that run are swapped in (all runs of the grid are trained once, up front)."""
    import ipywidgets as W

    runs = grid_runs(epochs, tuple(l2_grid), tuple(dropout_grid))
    data = noisy_moons()
    style = {"description_width": "initial"}
    controls = {
        "l2": W.SelectionSlider(options=list(l2_grid), value=l2_grid[len(l2_grid) // 2],
                                description="L2 λ", style=style),
        "p": W.SelectionSlider(options=list(dropout_grid), value=dropout_grid[0],
                               description="dropout p", style=style),
    }

    def draw(axes, state, l2, p):
        run = runs[l2, p]
        ax_b, ax_c = axes
        x = np.arange(1, len(run["train_loss"]) + 1)
        if "image" not in state:
            state["image"], state["contour"] = _draw_boundary(ax_b, run["probs"], data)
            state["train"], = ax_c.plot(x, run["train_loss"], "-", color=color("train"),
                                        label="train")
            state["val"], = ax_c.plot(run["val_epochs"], run["val_loss"], "--",
                                      color=color("val"), label="validation")
            ax_c.set_yscale("log")
            ax_c.set_ylim(1e-3, 10)
            ax_c.set_xlabel("epoch")
            ax_c.set_ylabel("loss (log scale)")
            ax_c.set_title("loss per epoch")
            state["legend"] = ax_c.legend(loc="lower left")
        else:
            # swap data in place: no new artists, no contouring (boundaries are precomputed)
            state["image"].set_data(run["probs"])
            state["contour"].set_segments(run["boundary"])
            state["train"].set_ydata(run["train_loss"])
            state["val"].set_ydata(run["val_loss"])
        # the training loss is measured with dropout on: say so only when there is dropout
        label = "train (dropout on)" if p > 0 else "train"
        state["train"].set_label(label)
        state["legend"].get_texts()[0].set_text(label)
        ax_b.set_title(f"λ = {l2}, p = {p}: train {run['train_acc']:.0%}, "
                       f"val {run['val_acc']:.1%}", fontsize=10)

    return interactive_figure(draw, controls, ncols=2, figsize=(9, 3.6), static=static)
