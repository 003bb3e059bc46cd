"""Vanishing and exploding gradients (chapter 02): measure them layer by layer, name them, see them.

Every experiment uses the same probe: a deep MLP of width 64 on the 8x8 digits (64 inputs,
10 classes) and a fixed batch of 256 training images, so numbers are comparable across the chapter.

* :func:`layer_grad_norms` -- L2 norm of each Linear layer's weight gradient after a backward pass;
* :func:`gradient_profile` -- that profile for a freshly initialized network (one forward/backward);
* :func:`diagnose` -- label a profile ``"vanishing"``, ``"exploding"`` or ``"healthy"``;
* :func:`relative_weight_change` and :func:`train_deep` -- how far each layer moved in training;
* :func:`seed_runs` and :func:`over_seeds` -- the same run over a few seeds, summarized as a mean
  with its spread (a single run of a deep net at a high learning rate is too erratic to quote);
* figures: :func:`plot_sigmoid_chain`, :func:`plot_profiles`, :func:`plot_update_ratios`,
  :func:`plot_histograms`; the widget :func:`explore_gradients`.

The per-step monitoring itself is :class:`nncourse.diagnostics.GradientMonitor`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import torch
from torch import nn

from nncourse._validate import check_int, check_number
from nncourse.clipping import ClipGradients
from nncourse.data import load_digits
from nncourse.diagnostics import (
    GradientMonitor,
    activation_stats,
    gradient_norms,
    layer_outputs,
    weight_changes,
    weight_grad_norms,
)
from nncourse.env import progress
from nncourse.models import linear_layers, make_mlp
from nncourse.plotting import color, decade_limits, plot_per_layer
from nncourse.training import Callback, History, loss_function, mean_sd, train

__all__ = ["WIDTH", "ACTIVATION_CHOICES", "SCALES", "digits", "probe_batch", "layer_grad_norms",
           "gradient_profile", "first_last_ratio", "diagnose", "first_step_ratios",
           "relative_weight_change",
           "unit_spread", "at_least", "StepLosses", "train_deep", "seed_runs", "over_seeds",
           "plot_sigmoid_chain",
           "plot_profiles", "plot_update_ratios", "plot_histograms", "explore_gradients"]

#: Units per hidden layer in every experiment of the chapter.
WIDTH = 64
#: Activations offered by the widget.
ACTIVATION_CHOICES = ("sigmoid", "tanh", "relu")
#: Weight scales offered by the widget: std = scale / sqrt(fan_in); sqrt(2) is He for ReLU.
SCALES = (0.25, 0.5, 0.71, 1.0, 1.41, 2.0, 2.83, 4.0, 8.0, 16.0)


@lru_cache(maxsize=1)
def digits():
    """The digits dataset (cached: every experiment shares one split)."""
    return load_digits()


@lru_cache(maxsize=1)
def probe_batch(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training images and labels of :func:`digits`: the chapter's probe batch."""
    d = digits()
    return d.X_train[:n], d.y_train[:n]


def layer_grad_norms(model: nn.Module) -> list[float]:
    """L2 norm of each ``nn.Linear`` weight's ``.grad``, input to output (after ``backward``).

    Exercise 2.1's function; the course's implementation is
    :func:`nncourse.diagnostics.weight_grad_norms`.
    """
    return weight_grad_norms(model)


def _check_depth(depth) -> int:
    check_int(depth, "depth")
    return depth


@lru_cache(maxsize=512)
def gradient_profile(activation: str = "sigmoid", depth: int = 15, init: str = "default",
                     scale: float = 1.0, seed: int = 0) -> tuple[float, ...]:
    """Per-layer weight-gradient norms of a freshly initialized deep MLP on the probe batch.

    The network is ``make_mlp(64, 10, width=64, depth=depth, activation, init, init_scale=scale)``
    (``depth`` hidden layers, so ``depth + 1`` values, input to output). One forward and one
    backward pass of the cross-entropy loss: a few milliseconds, cached.
    """
    _check_depth(depth)
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    model = make_mlp(64, 10, width=WIDTH, depth=depth, activation=activation, init=init,
                     init_scale=float(scale), seed=seed)
    X, y = probe_batch()
    return tuple(gradient_norms(model, X, y))


def first_last_ratio(norms: Sequence[float]) -> float:
    """Gradient norm of the first layer divided by that of the last (inf if the last is 0)."""
    norms = np.asarray(norms, dtype=float)
    if norms.ndim != 1 or norms.size < 2:
        raise ValueError(f"need a 1-D profile of at least 2 layers, got shape {norms.shape}")
    return float(norms[0] / norms[-1]) if norms[-1] != 0 else math.inf


def diagnose(norms: Sequence[float], ratio: float = 100.0, max_norm: float = 100.0,
             min_norm: float = 1e-3) -> str:
    """Label a per-layer gradient-norm profile (input to output).

    * ``"exploding"`` if any norm is NaN or infinite, or larger than ``max_norm``, or the first
      layer's norm is more than ``ratio`` times the last layer's (growing toward the input);
    * ``"vanishing"`` if every norm is below ``min_norm`` (no layer gets a usable gradient), or
      the first layer's norm is less than the last layer's divided by ``ratio`` (shrinking toward
      the input);
    * ``"healthy"`` otherwise.

    The thresholds are rules of thumb for losses of order 1 (cross-entropy at initialization is
    ln 10 = 2.3 for 10 classes), not laws.
    """
    if isinstance(norms, torch.Tensor):
        norms = norms.detach().double().numpy()
    g = np.asarray(norms, dtype=float)
    if g.ndim != 1 or g.size < 2:
        raise ValueError(f"need a 1-D profile of at least 2 layers, got shape {g.shape}")
    if not np.all(np.isfinite(g)) or g.max() > max_norm or g[0] > ratio * g[-1]:
        return "exploding"
    if g.max() < min_norm or g[0] * ratio < g[-1]:
        return "vanishing"
    return "healthy"


def first_step_ratios(activation: str = "relu", depth: int = 10, init: str = "he_normal",
                      scale: float = 1.0, lr: float = 0.1, seed: int = 0) -> np.ndarray:
    """Update-to-weight ratio ``lr * ||dL/dW_l|| / ||W_l||`` of each layer's first SGD step.

    The same network and probe batch as :func:`gradient_profile`. Whether a gradient is "too
    large" depends on the step it makes: this is the number to compare with the ~1e-3 rule of
    thumb, at the learning rate you will train with. One value per layer, input to output.
    """
    _check_depth(depth)
    check_number(lr, "lr", 0)
    model = make_mlp(64, 10, width=WIDTH, depth=depth, activation=activation, init=init,
                     init_scale=float(scale), seed=seed)
    grads = np.array(gradient_profile(activation, depth, init, scale, seed))
    weights = np.array([m.weight.norm().item() for m in model if isinstance(m, nn.Linear)])
    return lr * grads / weights


def relative_weight_change(before: nn.Module | Sequence[torch.Tensor],
                           after: nn.Module) -> list[float]:
    """``||W_after - W_before|| / ||W_before||`` for each Linear layer, input to output.

    ``before`` is a copy of the model taken before training (or the list of its weights); see
    :func:`nncourse.diagnostics.weight_changes`.
    """
    old = [lay.weight for lay in linear_layers(before)] if isinstance(before, nn.Module) else before
    return weight_changes(old, after)


def unit_spread(model: nn.Module, X: torch.Tensor) -> list[float]:
    """For each activation layer: the spread of a unit's output across the examples of ``X``.

    The standard deviation over examples, averaged over units (eval mode). Near 0 means every
    unit outputs the same value whatever the input: the layer carries no information about it.
    """
    return [out.double().reshape(len(X), -1).std(0).mean().item()
            for out in layer_outputs(model, X).values()]


def at_least(value: float, floor: float, spec: str = ".0e") -> str:
    """``value`` formatted with ``spec``, or ``"<floor"`` when it is below ``floor``.

    For float32 measurements that fall to rounding level (a weight change under float32's
    ~1e-7 relative resolution, a spread under the gap between neighbouring floats), only the
    bound is meaningful: the digits depend on how the CPU rounds, so they are not printed.
    """
    if not floor > 0:
        raise ValueError(f"floor must be positive, got {floor!r}")
    return f"<{floor:{spec}}" if value < floor else f"{value:{spec}}"


class StepLosses(Callback):
    """Training callback: the mini-batch loss of every step, in ``losses`` (NaN/inf included)."""

    def __init__(self):
        self.losses: list[float] = []

    def on_step_end(self, model, step, loss):
        self.losses.append(loss)


def train_deep(activation: str = "sigmoid", init: str = "default", depth: int = 10,
               epochs: int = 10, lr: float = 0.1, scale: float = 1.0, seed: int = 0,
               monitor_every: int | None = None, **train_kwargs) -> dict:
    """Train a deep MLP on digits with mini-batch SGD and measure what happened to each layer.

    Returns a dict with ``model``, ``history`` (:class:`nncourse.training.History`),
    ``change`` (:func:`relative_weight_change` per layer) and, with ``monitor_every``, the
    :class:`~nncourse.diagnostics.GradientMonitor` under ``monitor``. Extra keyword arguments go to
    :func:`nncourse.training.train` (e.g. ``clip_norm=1.0``, ``callbacks=[...]``).
    """
    model = make_mlp(64, 10, width=WIDTH, depth=_check_depth(depth), activation=activation,
                     init=init, init_scale=scale, seed=seed)
    before = copy.deepcopy(model)
    callbacks = list(train_kwargs.pop("callbacks", ()))
    monitor = None
    if monitor_every is not None:
        monitor = GradientMonitor(every=monitor_every)
        callbacks.append(monitor)
    history: History = train(model, digits(), epochs=epochs, lr=lr, seed=seed,
                             callbacks=callbacks, **train_kwargs)
    return {"model": model, "history": history, "change": relative_weight_change(before, model),
            "monitor": monitor}


@lru_cache(maxsize=8)
def seed_runs(activation: str = "relu", init: str = "he_normal", seeds: tuple[int, ...] = (0, 1, 2),
              depth: int = 10, epochs: int = 10, lr: float = 0.05, scale: float = 1.0,
              monitor_every: int | None = None,
              clip: tuple[str, float] | None = None) -> tuple[dict, ...]:
    """:func:`train_deep` once per seed (cached): one result dict per seed, in ``seeds`` order.

    ``clip`` is ``None``, ``("norm", c)`` or ``("value", c)``: each run gets a fresh
    :class:`~nncourse.clipping.ClipGradients` ``(c, by=...)``, kept under the result's ``"clip"``.
    Single runs of a deep net at a high learning rate differ by tens of points from one seed (or
    one CPU's rounding) to the next; compare their mean, :func:`over_seeds`.
    """
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty tuple of ints, got {seeds!r}")
    if clip is not None and (len(clip) != 2 or clip[0] not in ("norm", "value")):
        raise ValueError(f"clip must be None, ('norm', c) or ('value', c), got {clip!r}")
    results = []
    for seed in progress(seeds, desc=f"{activation}, seeds"):
        clipper = ClipGradients(clip[1], by=clip[0]) if clip is not None else None
        res = train_deep(activation, init=init, depth=depth, epochs=epochs, lr=lr, scale=scale,
                         seed=seed, monitor_every=monitor_every,
                         callbacks=[clipper] if clipper is not None else [])
        res["clip"] = clipper
        results.append(res)
    return tuple(results)


def over_seeds(results: Sequence[dict]) -> str:
    """One line for a few runs of :func:`seed_runs`: how many diverged, and the final validation
    accuracy as mean ± standard deviation over the seeds that did not (with the lowest), e.g.
    ``"val acc 89.5% ± 1.3 (3 seeds, lowest 88.1%)"``."""
    if not results:
        raise ValueError("need at least one run")
    n = len(results)
    hist = [r["history"] for r in results]
    diverged = [h for h in hist if h.diverged]
    parts = []
    if diverged:
        epochs = sorted({h.epochs_run for h in diverged})
        when = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
        parts.append(f"diverged (NaN/inf) in {len(diverged)} of {n} seeds, in {when}")
    acc = np.array([h.val_acc[-1] for h in hist if not h.diverged]) * 100
    if acc.size:
        mean, sd = mean_sd(acc)
        sd = f" ± {sd:.1f}" if acc.size > 1 else ""
        parts.append(f"val acc {mean:.1f}%{sd} ({acc.size} seed{'s' * (acc.size > 1)}, "
                     f"lowest {acc.min():.1f}%)")
    return "; ".join(parts)


# --- figures ---------------------------------------------------------------------------------

def plot_sigmoid_chain(max_depth: int = 20):
    """Left: the sigmoid and its derivative (at most 0.25). Right: 0.25^n over depth n."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    z = torch.linspace(-6, 6, 241)
    s = torch.sigmoid(z)
    ax1.plot(z, s, color=color("sigmoid"), label=r"$\sigma(z)$")
    ax1.plot(z, s * (1 - s), "--", color=color("sigmoid"), label=r"$\sigma'(z)=\sigma(1-\sigma)$")
    ax1.axhline(0.25, color="gray", lw=0.8, ls=":")
    ax1.set(xlabel="$z$", ylabel="value", title="Sigmoid and its derivative (max 0.25 at z = 0)")
    ax1.legend(loc="upper left")
    n = np.arange(1, max_depth + 1)
    ax2.semilogy(n, 0.25 ** n, "o-", color=color("sigmoid"), ms=3, label=r"$0.25^n$")
    ax2.set(xlabel="number of sigmoid layers $n$", ylabel="best-case factor (log scale)",
            title="Product of n sigmoid derivatives")
    ax2.legend()
    plt.show()


def plot_profiles(profiles: Mapping[str, Sequence[float]], ax=None, title: str | None = None,
                  ylabel: str = "weight-gradient norm (log scale)", legend_title: str | None = None,
                  cmap: str | None = None):
    """Per-layer gradient norms, one line per series, log scale.

    Lines are coloured by the series' name (:func:`nncourse.plotting.color`), or along ``cmap``
    for an ordered family (e.g. increasing weight scales); the legend then sits outside the axes.
    """
    ax = plot_per_layer(dict(profiles), ax=ax, ylabel=ylabel, title=title, log=True)
    if cmap is not None:
        colors = plt.get_cmap(cmap)(np.linspace(0.1, 0.85, len(profiles)))
        for line, c in zip(ax.get_lines(), colors):
            line.set_color(c)
        ax.legend(title=legend_title, loc="center left", bbox_to_anchor=(1.0, 0.5))
    elif legend_title:
        ax.legend(title=legend_title)
    return ax


def plot_update_ratios(results: Mapping[str, dict], title: str = "Update-to-data ratio per layer"):
    """One panel per run: ``||ΔW|| / ||W||`` of every layer over training steps, log scale.

    ``results`` maps a name to a :func:`train_deep` result made with ``monitor_every``. Layers are
    coloured input (dark) to output (yellow); the dotted line is the ~1e-3 rule of thumb.
    """
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 3.4), sharey=True,
                             squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        mon = res["monitor"]
        ratios = np.clip(mon.update_ratios, 1e-14, None)
        cmap = plt.get_cmap("viridis")
        n = ratios.shape[1]
        for j in range(n):
            ax.plot(mon.steps[:len(ratios)], ratios[:, j], color=cmap(j / max(n - 1, 1)), lw=1,
                    label=f"layer {j + 1}" if j in (0, n - 1) else None)
        ax.axhline(1e-3, color="k", ls=":", lw=1, label="1e-3 rule of thumb")
        ax.set_yscale("log")
        ax.set(xlabel="training step", title=name)
    axes[0][-1].legend(loc="lower right")
    axes[0][0].set_ylabel(r"$\|\Delta W\| / \|W\|$ (log scale)")
    fig.suptitle(title)
    plt.show()


def _weight_gradients(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> list[np.ndarray]:
    model.zero_grad(set_to_none=True)
    out = model(X)
    loss_function(out.shape[1])(out, y).backward()
    grads = [lay.weight.grad.reshape(-1).numpy().copy() for lay in linear_layers(model)]
    model.zero_grad(set_to_none=True)
    return grads


def plot_histograms(models: Mapping[str, nn.Module], layers: Sequence[int] | None = None):
    """Per-layer histograms: activations (left) and log10 |weight gradient| (right), one row per
    model, for a few hidden layers (1-based; default first, middle, last hidden layer)."""
    X, y = probe_batch()
    fig, axes = plt.subplots(len(models), 2, figsize=(9, 2.8 * len(models)), squeeze=False)
    for row, (name, model) in zip(axes, models.items()):
        acts = activation_stats(model, X, keep_values=True)
        grads = _weight_gradients(model, X, y)
        pick = layers or sorted({1, (len(acts) + 1) // 2, len(acts)})
        cmap = plt.get_cmap("viridis")
        for k, j in enumerate(pick):
            c = cmap(k / max(len(pick) - 1, 1))
            row[0].hist(acts[j - 1]["values"], bins=40, histtype="step", color=c,
                        label=f"layer {j}", density=True)
            g = np.abs(grads[j - 1])
            row[1].hist(np.log10(g[g > 0]), bins=40, histtype="step", color=c,
                        label=f"layer {j}", density=True)
        row[0].set(xlabel="activation value", ylabel="density", title=f"{name}: activations")
        row[1].set(xlabel=r"$\log_{10}|\partial L/\partial W|$", ylabel="density",
                   title=f"{name}: weight gradients")
        row[0].legend()
        row[1].legend()
    plt.show()


# --- the widget -------------------------------------------------------------------------------

def explore_gradients(static: bool = False, depth: int = 15, activation: str = "sigmoid",
                      scale: float = 1.0):
    """Depth slider, activation dropdown and weight-scale slider over the gradient-norm profile.

    Weights are drawn from N(0, scale^2 / fan_in) (``lecun_normal`` times ``scale``): scale 1.41
    is He initialization for ReLU. Each change is one forward/backward pass on the probe batch
    (cached), and the line is updated in place.
    """
    import ipywidgets as W

    from nncourse.widgets import interactive_figure, steady_limits

    controls = {
        "depth": W.IntSlider(value=depth, min=2, max=40, description="hidden layers",
                             style={"description_width": "initial"}),
        "activation": W.Dropdown(options=list(ACTIVATION_CHOICES), value=activation,
                                 description="activation"),
        "scale": W.SelectionSlider(options=list(SCALES), value=scale, description="weight scale",
                                   style={"description_width": "initial"}),
    }

    def draw(axes, state, depth, activation, scale):
        ax = axes[0]
        norms = np.array(gradient_profile(activation, depth, "lecun_normal", scale))
        x = np.arange(1, len(norms) + 1)
        shown = np.where(norms > 0, norms, np.nan)
        if "line" not in state:
            state["line"], = ax.plot(x, shown, "o-", ms=3)
            ax.set_yscale("log")
            # Plain-text decade labels and no minor ticks: mathtext tick labels were the largest
            # part of a redraw.
            ax.yaxis.set_major_locator(mticker.LogLocator(base=10, numticks=8))
            ax.yaxis.set_major_formatter(mticker.FuncFormatter(
                lambda v, _pos: f"1e{round(math.log10(v)):+d}" if v > 0 else ""))
            ax.yaxis.set_minor_locator(mticker.NullLocator())
            ax.set_xlabel("layer (input → output)")
            ax.set_ylabel("weight-gradient norm (log scale)")
            # diagnose()'s max_norm and min_norm: rules of thumb, labelled as such
            for y, text, va in ((100.0, "1e2: diagnose()'s max_norm (a rule of thumb)", "top"),
                                (1e-3, "1e-3: diagnose()'s min_norm (a rule of thumb)", "bottom")):
                ax.axhline(y, color="gray", ls=":", lw=1)
                ax.annotate(text, (0.01, y), xycoords=("axes fraction", "data"), fontsize=7,
                            color="gray", ha="left", va=va, annotation_clip=True)
        state["line"].set_data(x, shown)
        state["line"].set_color(color(activation))
        # Limits that hold while the profile fits them well (steady_limits): a move then
        # repaints the line over the cached axes instead of redrawing every tick label.
        steady_limits(ax, "x", 0.5, len(norms) + 0.5, fill=0.6)
        steady_limits(ax, "y", *decade_limits(norms))
        ax.set_title(f"{activation}, {depth} hidden layers, weights std = {scale}/√fan_in\n"
                     f"{diagnose(norms)}: first/last layer = {first_last_ratio(norms):.1e}")

    return interactive_figure(draw, controls, static=static, figsize=(7.5, 3.8))
