"""Chapter 04's experiments: what the choice of activation does to a network.

* :func:`collapse_linear` -- a stack of Linear layers with identity activations *is* one Linear
  layer: multiply the matrices out;
* :func:`negative_fraction` / :func:`dying_relu_runs` -- units whose input is negative for every
  example (dead ReLUs) after training with a high learning rate, ReLU vs leaky ReLU vs ELU;
  :func:`dying_relu_seeds` repeats them over a few seeds and :func:`seed_table` prints means and
  spreads (a single run's dead fractions and accuracy move a lot with the seed);
* :func:`prelu_slopes` -- the slopes a PReLU network learned;
* :func:`depth_statistics` -- mean and std of activations through a deep net at initialization
  (SELU + LeCun init self-normalizes, ReLU without batch norm drifts);
* :func:`fixed_budget_runs` -- the same network and budget with each activation;
* :func:`plot_zoo`, :func:`gradient_flow` and the widget :func:`explore_activation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from nncourse import activations as A
from nncourse.data import load_digits
from nncourse.diagnostics import activation_stats
from nncourse.env import progress
from nncourse.models import linear_layers, make_mlp
from nncourse.plotting import color, decade_limits
from nncourse.training import History, eval_mode, mean_sd, train
from nncourse.widgets import Prefetcher, interactive_figure, set_limits

__all__ = ["collapse_linear", "negative_fraction", "dying_relu_runs", "dying_relu_seeds",
           "seed_table", "prelu_slopes",
           "prelu_run", "depth_statistics", "matched_init", "fixed_budget_runs", "plot_zoo",
           "variance_gain", "gradient_flow", "explore_activation"]



# --- 1. without a nonlinearity, depth buys nothing ------------------------------------------

@torch.no_grad()
def collapse_linear(model: nn.Sequential) -> nn.Linear:
    r"""The single ``nn.Linear`` equal to a stack of Linear layers with identity activations.

    :math:`W_L(\dots(W_2(W_1 x + b_1) + b_2)\dots) + b_L = W x + b` with
    :math:`W = W_L \cdots W_1` and :math:`b` the input-free part, propagated the same way.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    others = [type(m).__name__ for m in model if not isinstance(m, (nn.Linear, nn.Identity))]
    if others:
        raise ValueError("collapse_linear needs Linear and Identity layers only; the model has "
                         f"{', '.join(sorted(set(others)))} (a nonlinearity does not collapse)")
    layers = linear_layers(model)
    if not layers:
        raise ValueError("the model has no Linear layer")
    W = torch.eye(layers[0].in_features, dtype=layers[0].weight.dtype)
    b = torch.zeros(layers[0].in_features, dtype=layers[0].weight.dtype)
    for layer in layers:
        W = layer.weight @ W
        b = layer.weight @ b + (layer.bias if layer.bias is not None else 0)
    single = nn.Linear(W.shape[1], W.shape[0], dtype=W.dtype)  # keep float64 exact
    single.weight.copy_(W)
    single.bias.copy_(b)
    return single


# --- 3. dying ReLUs -------------------------------------------------------------------------

@torch.no_grad()
def negative_fraction(model: nn.Module, X: torch.Tensor) -> list[float]:
    """Per activation layer, the fraction of units whose *input* is <= 0 for every row of ``X``.

    For ReLU these units output 0 for every example and get no gradient: they are dead (the same
    number as ``activation_stats(...)["dead"]``). A leaky ReLU or ELU unit in that state still
    passes a gradient (slope ``a`` or ``alpha e^x``) and can come back.
    """
    rows: list[float] = []
    modules = [m for m in model.modules() if isinstance(m, A.MODULE_TYPES)]
    hooks = [m.register_forward_pre_hook(
        lambda mod, inp: rows.append((inp[0].reshape(len(inp[0]), -1) <= 0).all(0)
                                     .float().mean().item())) for m in modules]
    try:
        with eval_mode(model):
            model(X)
    finally:
        for h in hooks:
            h.remove()
    return rows


def _check_names(names: Sequence[str]) -> list[str]:
    names = list(names)
    bad = [n for n in names if n not in A.TRAINABLE]
    if bad or not names:
        raise ValueError(f"activations must be names from {', '.join(A.TRAINABLE)}; got {names!r}")
    return names


@lru_cache(maxsize=4)
def dying_relu_runs(activations: tuple[str, ...] = ("relu", "leaky_relu", "elu"),
                    lr: float = 0.03, epochs: int = 8, width: int = 32, depth: int = 4,
                    seed: int = 0) -> dict[str, dict]:
    """Train the same digits MLP with each activation using Adam at a high learning rate.

    Returns ``{name: {"dead": [...], "negative": [...], "val_acc": float, "history": History}}``
    with per-layer fractions after training: ``dead`` from
    :func:`nncourse.diagnostics.activation_stats` (output exactly 0 for every training example)
    and ``negative`` from :func:`negative_fraction`.
    """
    data = load_digits(seed=seed)
    runs = {}
    for name in progress(_check_names(activations), desc="activations"):
        model = make_mlp(64, 10, width=width, depth=depth, activation=name, init="he_normal",
                         seed=seed)
        history = train(model, data, epochs=epochs, lr=lr, optimizer="adam", batch_size=32,
                        seed=seed, progress=False)
        runs[name] = {"dead": [r["dead"] for r in activation_stats(model, data.X_train)],
                      "negative": negative_fraction(model, data.X_train),
                      "val_acc": history.val_acc[-1], "history": history}
    return runs


@lru_cache(maxsize=4)
def _dying_relu_seeds(activations, lr, seeds, epochs, width, depth):
    per_seed = [dying_relu_runs(activations, lr=lr, epochs=epochs, width=width, depth=depth,
                                seed=s) for s in progress(seeds, desc="seeds")]
    return {name: {key: np.array([runs[name][key] for runs in per_seed])
                   for key in ("dead", "negative", "val_acc")}
            for name in per_seed[0]}


def dying_relu_seeds(activations: tuple[str, ...] = ("relu", "leaky_relu", "elu"),
                     lr: float = 0.03, seeds: tuple[int, ...] = (0, 1, 2),
                     epochs: int = 8, width: int = 32, depth: int = 4) -> dict[str, dict]:
    """:func:`dying_relu_runs` once per seed (cached), stacked: for each activation, ``dead`` and
    ``negative`` as arrays of shape (seeds, layers) and ``val_acc`` of shape (seeds,).

    Which units die, and the final accuracy, change with the seed (and with the CPU's rounding):
    one layer of one run can lose 0.12 or 0.62 of its ReLUs, and an accuracy gap of a few points
    between two activations reverses from one seed to the next. Quote means over seeds with their
    spread (:func:`seed_table`). Returns a new dict (the arrays are shared with the cache).
    """
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty tuple of ints, got {seeds!r}")
    return dict(_dying_relu_seeds(tuple(_check_names(activations)), lr, seeds, epochs, width,
                                  depth))


def seed_table(runs: dict[str, dict]) -> list[str]:
    """Lines of a table for :func:`dying_relu_seeds` results: per layer, the dead fraction (mean
    over seeds); over all layers, the dead and the negative-for-every-input fractions and the
    validation accuracy as mean ± standard deviation over seeds."""
    n = {len(r["val_acc"]) for r in runs.values()}
    if len(n) != 1:
        raise ValueError("every entry needs the same number of seeds")
    n_seeds = n.pop()

    def pm(values, spec):
        mean, sd = mean_sd(values)
        return f"{mean:{spec}}" + (f" ± {sd:{spec}}" if n_seeds > 1 else "")

    lines = [f"{'':<16}{'dead, per layer':>22}{'dead, all layers':>18}{'input <= 0, all':>18}"
             f"{'val acc (%)':>14}"]
    for name, r in runs.items():
        per_layer = " ".join(f"{v:.2f}" for v in r["dead"].mean(0))
        lines.append(f"{name:<16}{per_layer:>22}{pm(r['dead'].mean(1), '.2f'):>18}"
                     f"{pm(r['negative'].mean(1), '.2f'):>18}{pm(r['val_acc'] * 100, '.1f'):>14}")
    lines.append(f"(mean ± standard deviation over {n_seeds} seeds)")
    return lines


def prelu_slopes(model: nn.Module) -> list[float]:
    """The learned slope of each ``nn.PReLU`` in ``model`` (mean over channels), input first."""
    return [m.weight.detach().mean().item() for m in model.modules() if isinstance(m, nn.PReLU)]


@lru_cache(maxsize=2)
def prelu_run(epochs: int = 15, lr: float = 0.003, seed: int = 0) -> tuple[list[float], History]:
    """Train a 4x32 PReLU MLP on digits (Adam); return the learned slopes and the history.

    Every PReLU starts at torch's default slope 0.25.
    """
    data = load_digits(seed=seed)
    model = make_mlp(64, 10, width=32, depth=4, activation="prelu", init="he_normal", seed=seed)
    history = train(model, data, epochs=epochs, lr=lr, optimizer="adam", batch_size=32,
                    seed=seed, progress=False)
    return prelu_slopes(model), history


# --- 4. self-normalization ------------------------------------------------------------------

def depth_statistics(activation: str, init: str, depth: int = 50, width: int = 100,
                     n: int = 500, input_mean: float = 0.0, input_std: float = 1.0,
                     init_gain: float | None = None, seed: int = 0) -> dict[str, list[float]]:
    """Mean and std of each hidden layer's activations in a fresh deep MLP (no training).

    Inputs are ``n`` draws of ``N(input_mean, input_std^2)`` in ``width`` dimensions, from their
    own random stream (with the weights' seed, the first inputs would be proportional to the first
    layer's weight rows). ``init`` and ``init_gain`` are :func:`nncourse.models.make_mlp`'s.
    Returns ``{"mean": [...], "std": [...]}``, one value per hidden layer.
    """
    gen = torch.Generator().manual_seed(_INPUT_STREAM + seed)
    X = torch.randn(n, width, generator=gen) * input_std + input_mean
    model = make_mlp(width, 10, width=width, depth=depth, activation=activation, init=init,
                     init_gain=init_gain, seed=seed)
    stats = activation_stats(model, X)
    return {"mean": [r["mean"] for r in stats], "std": [r["std"] for r in stats]}


_INPUT_STREAM = 1_000_003  # offset of the inputs' seed from the weights' seed


# --- 5. a fixed budget ----------------------------------------------------------------------

def matched_init(activation: str) -> dict:
    """The initialization chapter 03 pairs with ``activation``, as ``make_mlp`` keywords: Xavier
    for sigmoid (gain 1) and tanh (torch's gain 5/3), LeCun for SELU, He for the ReLU family
    (from the course's activation table, :data:`nncourse.activations.ZOO`)."""
    act = A.get(activation)
    return {"init": act.init, "init_gain": act.init_gain}


@lru_cache(maxsize=2)
def fixed_budget_runs(activations: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu",
                                                      "elu", "selu", "gelu", "silu"),
                      epochs: int = 15, lr: float = 0.1, width: int = 64, depth: int = 4,
                      seed: int = 0) -> dict[str, History]:
    """Train the same 4x64 digits MLP with each activation: plain SGD, same epochs and rate,
    each with its matched initialization (:func:`matched_init`). Returns ``{name: History}``."""
    data = load_digits(seed=seed)
    runs = {}
    for name in progress(_check_names(activations), desc="activations"):
        model = make_mlp(64, 10, width=width, depth=depth, activation=name,
                         **matched_init(name), seed=seed)
        runs[name] = train(model, data, epochs=epochs, lr=lr, batch_size=64, seed=seed,
                           progress=False)
    return runs


# --- 2. and 7. figures and the widget -------------------------------------------------------

def plot_zoo(names: Sequence[str] = ("step", "sigmoid", "tanh", "relu", "leaky_relu", "elu",
                                     "selu", "gelu", "silu", "softplus"),
             x_range: tuple[float, float] = (-4.0, 4.0), ncols: int = 5):
    """One panel per activation: :math:`f` (solid) and :math:`f'` (dashed), torch's defaults
    (leaky ReLU's slope is drawn at 0.1 so it is visible)."""
    import matplotlib.pyplot as plt

    names = list(names)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.2 * nrows), sharex=True,
                             sharey=True, squeeze=False)
    x = torch.linspace(*x_range, 801, dtype=torch.float64)
    for ax, name in zip(axes.ravel(), names):
        act = A.get(name)
        value = 0.1 if name == "leaky_relu" else None
        c = color(name)
        ax.plot(x, act(x, value), "-", color=c, label="$f(x)$")
        ax.plot(x, act.derivative(x, value), "--", color=c, alpha=0.7, label="$f'(x)$")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(name + (" (a = 0.1)" if value is not None else ""))
        ax.set_ylim(-2.0, 3.0)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("x")
    for ax in axes[:, 0]:
        ax.set_ylabel("f (solid), f' (dashed)")
    fig.suptitle("Activation functions (solid) and their derivatives (dashed)")
    plt.show()


_Z = np.linspace(-12, 12, 24001)
_GAUSS_W = np.exp(-_Z ** 2 / 2) / math.sqrt(2 * math.pi) * (_Z[1] - _Z[0])


def variance_gain(name: str, value: float | None = None) -> float:
    r"""The init gain :math:`g = 1/\sqrt{E[f(z)^2]}`, :math:`z \sim N(0, 1)`, that keeps the
    second moment of pre-activations at 1 layer after layer (weights :math:`N(0, g^2/n_{in})`).

    It is chapter 03's He argument done numerically for any :math:`f`: for ReLU
    :math:`E[f(z)^2] = 1/2` gives He's :math:`g^2 = 2`.
    """
    act = A.get(name)
    second = float(np.sum(_GAUSS_W * act(torch.from_numpy(_Z), value).numpy() ** 2))
    if second <= 0:
        raise ValueError(f"{name} outputs 0 for every input: no gain keeps the signal alive")
    return 1 / math.sqrt(second)


@lru_cache(maxsize=512)
def gradient_flow(name: str, value: float | None = None, depth: int = 20, width: int = 64,
                  n: int = 256, n_classes: int = 10, seed: int = 0) -> tuple[float, ...]:
    """Weight-gradient norm of each layer of a fresh deep net using our activation ``name``.

    ``depth`` hidden layers of ``width`` units with weights :math:`N(0, g^2/n_{in})`
    (:func:`variance_gain`), zero biases, a linear read-out and cross-entropy on random labels,
    on ``n`` standard-normal inputs. Input layer first; the read-out's norm is last.
    """
    act = A.get(name)
    gain = 1.0 if name == "step" else variance_gain(name, value)
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, width, generator=gen, dtype=torch.float64)
    y = torch.randint(0, n_classes, (n,), generator=gen)
    weights = [(torch.randn(width, width, generator=gen, dtype=torch.float64) * gain
                / math.sqrt(width)).requires_grad_(True) for _ in range(depth)]
    readout = (torch.randn(n_classes, width, generator=gen, dtype=torch.float64)
               / math.sqrt(width)).requires_grad_(True)
    h = X
    for W in weights:
        h = act(h @ W.T, value)
    loss = nn.functional.cross_entropy(h @ readout.T, y)
    loss.backward()
    return tuple(w.grad.norm().item() for w in weights + [readout])


def _flow_step(item) -> bool:
    gradient_flow(*item[:2], depth=item[2])
    return True


#: Computes :func:`gradient_flow` for what the widget may show next, in a background thread
#: started once a browser shows it (nbval and ``execute`` never do), paused while a frame is
#: drawn. Results are cached by ``gradient_flow`` itself: the same numbers whichever thread
#: computes them (each call seeds its own generator; torch single-threaded as the kernel).
_FLOWS = Prefetcher(_flow_step, "nncourse-ch04-prefetch")


def explore_activation(static: bool = False, name: str = "leaky_relu", value: float = 0.01,
                       depth: int = 20):
    """Pick an activation and its parameter; see f, f' and the gradient flow through a deep net.

    Left: :math:`f` and :math:`f'`. Right: the weight-gradient norm of each of ``depth`` layers
    (:func:`gradient_flow`, log scale) -- flat means every layer learns at the same pace.
    """
    import ipywidgets as W

    names = [n for n in A.ZOO if n != "step"]
    dropdown = W.Dropdown(options=names, value=name, description="activation")
    slider = W.FloatSlider(value=value, min=0.0, max=3.0, step=0.01, description="parameter",
                           continuous_update=True, readout_format=".2f",
                           style={"description_width": "initial"})

    def sync(change=None):  # the slider follows the chosen activation's parameter
        act = A.get(dropdown.value)
        slider.disabled = act.param is None
        if act.param is not None:
            lo, hi = act.bounds
            slider.description = act.param
            # widen first so the new value is never clamped by the old bounds
            slider.min, slider.max = min(lo, slider.min), max(hi, slider.max)
            if change is not None:  # keep the caller's value on the first call
                slider.value = act.default
            slider.min, slider.max = lo, hi
        else:
            slider.description = "(no parameter)"

    sync()
    dropdown.observe(sync, names="value")
    x = torch.linspace(-4, 4, 401, dtype=torch.float64)
    layers = np.arange(1, depth + 2)

    def plan(activation: str, parameter: float) -> list[tuple]:
        """What the next moves may show: the slider's neighbours, then every activation of the
        dropdown at its default parameter."""
        act, step = A.get(activation), slider.step
        near = ([] if act.param is None else
                [round(parameter + k * step, 6) for k in (1, -1, 2, -2)
                 if act.bounds[0] <= parameter + k * step <= act.bounds[1]])
        return ([(activation, v) for v in near]
                + [(n, A.get(n).default if A.get(n).param else None) for n in names])

    def prefetch(values: dict) -> None:  # once a browser shows the widget, after each frame
        _FLOWS.resume([(*item, depth) for item in plan(values["activation"],
                                                        round(float(values["parameter"]), 6))])

    def draw(axes, state, activation, parameter):
        _FLOWS.pause()  # the frame first
        act = A.get(activation)
        # rounded as the slider shows it, whatever the browser's float arithmetic
        v = None if act.param is None else round(float(parameter), 6)
        f, df = act(x, v).numpy(), act.derivative(x, v).numpy()
        norms = np.array(gradient_flow(activation, v, depth=depth))
        c = color(activation)
        ax1, ax2 = axes
        if "f" not in state:
            from matplotlib.lines import Line2D
            from matplotlib.ticker import MaxNLocator

            state["f"], = ax1.plot(x, f, "-")
            state["df"], = ax1.plot(x, df, "--")
            ax1.axhline(0, color="k", lw=0.5)
            ax1.set_xlabel("x")
            ax1.set_ylabel("value")
            ax1.set_ylim(-2, 3)
            # black proxies: the curves change colour with the activation, the legend does not
            ax1.legend([Line2D([], [], color="k"), Line2D([], [], color="k", ls="--")],
                       ["$f(x)$", "$f'(x)$"], loc="upper left").set_zorder(1.9)
            # (under the curves: then part of the cached background, not repainted per move)
            state["g"], = ax2.plot(layers, norms, "o-")
            ax2.set_yscale("log")
            ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax2.set_xlabel("layer (input → output; last = read-out)")
            ax2.set_ylabel("‖∂L/∂W‖ (log scale)")
        state["f"].set_ydata(f)
        state["df"].set_ydata(df)
        state["g"].set_ydata(norms)
        for artist in (state["f"], state["df"], state["g"]):
            artist.set_color(c)
        label = activation + ("" if v is None else f" ({act.param} = {v:.2f})")
        ax1.set_title(f"{label}: f and f'")
        # 1e-3..1e3 unless the curve leaves it: one scale for every activation, and a redraw
        # that repaints the curve, not the axes.
        set_limits(ax2, ylim=decade_limits(norms, at_least=(1e-3, 1e3), margin=2.0))
        ax2.set_title(f"gradient flow, {depth} layers: first / last hidden = "
                      f"{norms[0] / norms[-2]:.2g}")

    return interactive_figure(draw, {"activation": dropdown, "parameter": slider}, ncols=2,
                              on_idle=prefetch,
                              figsize=(9, 3.4), static=static)
