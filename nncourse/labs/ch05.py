"""Chapter 05's experiments: what normalizing inputs and activations does to training.

* :func:`hessian_condition` and :func:`scaling_runs` -- raw vs standardized breast-cancer
  features: the least-squares Hessian's condition number and the same net's training curves;
  :func:`leakage` -- statistics of the whole set vs the training split;
* :func:`torch_agreement`, :func:`bn_digits_net`, :func:`forgotten_eval` -- nncourse's batch norm
  equals torch's; what goes wrong when ``model.eval()`` is forgotten;
* :func:`sigmoid_net`, :func:`lr_sweep` -- Ioffe & Szegedy's experiment on digits: a 3x100 sigmoid
  net with and without batch norm (and with BN after the activation), the percentiles of one
  unit's input over training and the learning rates that train;
* :func:`batch_noise` -- a batch-norm output depends on the rest of the batch, a layer-norm one
  does not; :func:`momentum_runs` -- a slow running average on a short run;
* :func:`explore_batchnorm`, the widget (precomputed sweep curves).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from nncourse._validate import check_choice, check_int
from nncourse.data import load_breast_cancer, load_digits
from nncourse.env import progress
from nncourse.init import init_model_
from nncourse.models import make_mlp
from nncourse.normalization import BatchNorm1d, LayerNorm, Standardizer
from nncourse.plotting import color
from nncourse.training import Callback, accuracy, mean_sd, train
from nncourse.widgets import interactive_figure, set_limits

__all__ = ["hessian_condition", "scaling_runs", "leakage", "torch_agreement", "bn_digits_net",
           "forgotten_eval", "PLACEMENTS", "LABELS", "placement_color", "sigmoid_net", "lr_sweep",
           "sweep_table",
           "largest_learning_rate", "batch_noise", "momentum_runs", "explore_batchnorm"]


# --- 1. input scaling -----------------------------------------------------------------------

def hessian_condition(X) -> float:
    r"""Condition number :math:`\lambda_{max}/\lambda_{min}` of the least-squares Hessian
    :math:`H = \frac1n \tilde X^\top \tilde X`, :math:`\tilde X = [X, 1]` (a bias column).

    Gradient descent on a quadratic needs a step below :math:`2/\lambda_{max}` and then shrinks
    the error along the flattest direction by only :math:`1 - 2\lambda_{min}/\lambda_{max}` per
    step: the condition number is how many times slower than the steepest direction it is.
    """
    X = np.asarray(X.numpy() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"hessian_condition: X must be 2-D with 2 or more rows, got {X.shape}")
    X1 = np.c_[X, np.ones(len(X))]
    eig = np.linalg.eigvalsh(X1.T @ X1 / len(X1))
    return float(eig[-1] / eig[0])


@lru_cache(maxsize=2)
def scaling_runs(optimizers: tuple[tuple[str, float], ...] = (("sgd", 0.01), ("adam", 0.01)),
                 epochs: int = 20, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """The same 2x16 ReLU net on breast cancer, raw vs standardized features, per optimizer.

    Returns ``{(optimizer, lr, "raw"|"standardized"): {"train_loss": (seeds, epochs) array,
    "val_acc": (seeds,) array}}``. Standardization uses the training split's statistics only.
    """
    sets = {"raw": load_breast_cancer(standardize=False),
            "standardized": load_breast_cancer(standardize=True)}
    runs = {}
    for opt, lr in progress(optimizers, desc="optimizers"):
        for name, data in sets.items():
            losses, accs = [], []
            for s in seeds:
                model = make_mlp(30, 1, width=16, depth=2, seed=s)
                h = train(model, data, epochs=epochs, lr=lr, optimizer=opt, batch_size=32,
                          seed=s, progress=False)
                losses.append(h.train_loss)
                accs.append(h.val_acc[-1])
            runs[(opt, lr, name)] = {"train_loss": np.array(losses), "val_acc": np.array(accs)}
    return runs


def leakage(seed: int = 0) -> dict[str, float]:
    """Standardize breast cancer with the training split's statistics vs the whole set's.

    Returns the largest shift of a feature's mean and the largest relative change of its
    standard deviation (both in units of the training split's std), and the mean of the
    *validation* features after each transform, averaged over features (|mean|): with whole-set
    statistics the validation rows helped choose the shift, so they look better centred than
    new data ever will.
    """
    from sklearn.datasets import load_breast_cancer as sk_load

    raw = load_breast_cancer(standardize=False, seed=seed)
    X_all = sk_load().data
    train_only = Standardizer().fit(raw.X_train)
    whole = Standardizer().fit(X_all)
    X_val = raw.X_val.numpy()
    return {
        "mean_shift": float(np.max(np.abs(whole.mean_ - train_only.mean_) / train_only.scale_)),
        "std_change": float(np.max(np.abs(whole.scale_ / train_only.scale_ - 1))),
        "val_mean_train_only": float(np.mean(np.abs(train_only.transform(X_val).mean(0)))),
        "val_mean_whole": float(np.mean(np.abs(whole.transform(X_val).mean(0)))),
        "all_mean_whole": float(np.mean(np.abs(whole.transform(X_all).mean(0)))),
    }


# --- 2. batch norm, train vs eval -----------------------------------------------------------

def torch_agreement(steps: int = 20, features: int = 8, seed: int = 0) -> dict[str, float]:
    """Run nncourse's ``BatchNorm1d`` and ``torch.nn.BatchNorm1d`` side by side in float64:
    ``steps`` batches alternating train and eval mode, with backward passes. Returns the largest
    absolute difference in outputs, input gradients and buffers over all steps."""
    gen = torch.Generator().manual_seed(seed)
    ours = BatchNorm1d(features, dtype=torch.float64)
    ref = nn.BatchNorm1d(features, dtype=torch.float64)
    worst = {"output": 0.0, "gradient": 0.0, "buffers": 0.0}
    for step in range(steps):
        mode = step % 3 != 2
        ours.train(mode)
        ref.train(mode)
        x = torch.randn(16, features, generator=gen, dtype=torch.float64) * 4 + 3
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = ours(xa), ref(xb)
        (ya ** 3).sum().backward()
        (yb ** 3).sum().backward()
        worst["output"] = max(worst["output"], (ya - yb).abs().max().item())
        worst["gradient"] = max(worst["gradient"], (xa.grad - xb.grad).abs().max().item())
        for name in ("running_mean", "running_var"):
            diff = (getattr(ours, name) - getattr(ref, name)).abs().max().item()
            worst["buffers"] = max(worst["buffers"], diff)
    worst["batches_tracked"] = (ours.num_batches_tracked.item(), ref.num_batches_tracked.item())
    return worst


@lru_cache(maxsize=2)
def _bn_digits(epochs: int, seed: int):
    data = load_digits(seed=seed)
    model = make_mlp(64, 10, width=64, depth=2, batch_norm=True, seed=seed)
    history = train(model, data, epochs=epochs, lr=0.01, optimizer="adam", batch_size=64,
                    seed=seed, progress=False)
    return model, history


def bn_digits_net(epochs: int = 8, seed: int = 0):
    """A 2x64 ReLU net with batch norm (``make_mlp(batch_norm=True)``) trained on digits with
    Adam; returns ``(a copy of the model, history)`` (the trained model is cached)."""
    model, history = _bn_digits(epochs, seed)
    return copy.deepcopy(model), history


@torch.no_grad()
def forgotten_eval(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 4) -> dict[str, float]:
    """What a forgotten ``model.eval()`` does to a trained batch-norm model (on a copy).

    * ``acc_eval`` -- accuracy on ``X`` in eval mode (running statistics; any batch size);
    * ``acc_train_mode`` -- accuracy when ``X`` is fed in train mode in batches of
      ``batch_size``: each example is normalized with its batch-mates' statistics;
    * ``changed`` -- fraction of predictions that differ between those two;
    * ``buffer_shift`` -- how far the first BN layer's running mean moved (largest change, in
      units of its running std) during that "evaluation" -- no optimizer step, yet the buffers
      are overwritten with statistics of the evaluation data.
    """
    model = copy.deepcopy(model)
    bn = next(m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, BatchNorm1d)))
    before = bn.running_mean.clone()
    std = bn.running_var.sqrt()
    model.eval()
    pred_eval = model(X).argmax(1)
    model.train()
    pred_train = torch.cat([model(X[i:i + batch_size]).argmax(1)
                            for i in range(0, len(X) - len(X) % batch_size, batch_size)])
    n = len(pred_train)
    return {"acc_eval": (pred_eval == y).float().mean().item(),
            "acc_train_mode": (pred_train == y[:n]).float().mean().item(),
            "changed": (pred_train != pred_eval[:n]).float().mean().item(),
            "buffer_shift": ((bn.running_mean - before).abs() / std).max().item()}


# --- 3. Ioffe & Szegedy on digits -----------------------------------------------------------

PLACEMENTS = ("off", "before", "after")  # no BN; BN between Linear and sigmoid; BN after sigmoid


def sigmoid_net(placement: str = "off", width: int = 100, depth: int = 3,
                seed: int = 0) -> nn.Sequential:
    """Ioffe & Szegedy's MNIST net for digits: ``depth`` sigmoid layers of ``width`` units,
    Xavier-normal weights (chapter 03's match for sigmoid), zero biases.

    ``placement``: ``"off"`` (no batch norm), ``"before"`` (Linear -> BN -> sigmoid, the paper's
    choice; the Linear's bias is dropped, BN's beta replaces it) or ``"after"`` (Linear ->
    sigmoid -> BN).
    """
    placement = check_choice(placement, "placement", PLACEMENTS, fn="sigmoid_net")
    layers: list[nn.Module] = []
    n_in = 64
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(check_int(depth, "depth", fn="sigmoid_net")):
            layers.append(nn.Linear(n_in, width, bias=placement != "before"))
            if placement == "before":
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.Sigmoid())
            if placement == "after":
                layers.append(nn.BatchNorm1d(width))
            n_in = width
        layers.append(nn.Linear(n_in, 10))
        model = nn.Sequential(*layers)
    return init_model_(model, "xavier_normal", seed=seed)


class _Recorder(Callback):
    """Per training step: the loss, and the 15/50/85th percentiles of one unit's input to the
    last sigmoid over the current mini-batch (what that sigmoid sees while it learns)."""

    def __init__(self, unit: int = 0):
        self.unit = unit
        self.losses: list[float] = []
        self.percentiles: list[np.ndarray] = []
        self._hook = None

    def on_train_begin(self, model, optimizer, history):
        last = [m for m in model.modules() if isinstance(m, nn.Sigmoid)][-1]

        def hook(module, inputs):
            if module.training:
                u = inputs[0][:, self.unit].detach().double()
                self.percentiles.append(
                    torch.quantile(u, torch.tensor([0.15, 0.5, 0.85], dtype=torch.float64))
                    .numpy())
        self._hook = last.register_forward_pre_hook(hook)

    def on_step_end(self, model, step, loss):
        self.losses.append(loss)

    def on_train_end(self, model, history):
        self._hook.remove()


@lru_cache(maxsize=2)
def lr_sweep(lrs: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0),
             placements: tuple[str, ...] = PLACEMENTS, seeds: tuple[int, ...] = (0, 1, 2),
             epochs: int = 5, batch_size: int = 60) -> dict:
    """Train :func:`sigmoid_net` on digits with plain SGD (mini-batches of 60, as the paper) for
    every placement x learning rate x seed.

    Returns ``{(placement, lr, seed): {"loss": per-step losses, "percentiles": (steps, 3),
    "val_acc": float, "diverged": bool}}``.
    """
    data = load_digits(seed=0)
    runs = {}
    for placement in progress(placements, desc="placements"):
        for lr in lrs:
            for s in seeds:
                model = sigmoid_net(placement, seed=s)
                rec = _Recorder()
                h = train(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=s,
                          callbacks=[rec], progress=False)
                runs[(placement, lr, s)] = {
                    "loss": np.array(rec.losses), "percentiles": np.array(rec.percentiles),
                    "val_acc": h.val_acc[-1] if not h.diverged else float("nan"),
                    "diverged": h.diverged}
    return runs


def _axes_of(runs: dict) -> tuple[list, list, list]:
    keys = list(runs)
    return (list(dict.fromkeys(k[0] for k in keys)), list(dict.fromkeys(k[1] for k in keys)),
            list(dict.fromkeys(k[2] for k in keys)))


def sweep_table(runs: dict) -> list[str]:
    """Lines of a table: validation accuracy (mean ± sd over seeds) per placement and learning
    rate; ``div`` where every seed diverged (loss NaN), ``k/n div`` where some did."""
    placements, lrs, seeds = _axes_of(runs)
    lines = [f"{'lr':>14}" + "".join(f"{lr:>13g}" for lr in lrs)]
    for p in placements:
        cells = []
        for lr in lrs:
            accs = [runs[(p, lr, s)]["val_acc"] for s in seeds]
            div = sum(runs[(p, lr, s)]["diverged"] for s in seeds)
            if div == len(seeds):
                cells.append("div")
            else:
                mean, sd = mean_sd([a for a in accs if not math.isnan(a)])
                cells.append(f"{mean:.2f} ± {sd:.2f}" + (f" {div}div" if div else ""))
        lines.append(f"BN {p:<11}" + "".join(f"{c:>13}" for c in cells))
    lines.append(f"(validation accuracy after the budget, mean ± sd over {len(seeds)} seeds)")
    return lines


def largest_learning_rate(runs: dict, placement: str, threshold: float = 0.8) -> float | None:
    """The largest learning rate of the sweep at which *every* seed reached validation accuracy
    ``threshold`` or more (None when no rate did)."""
    _, lrs, seeds = _axes_of(runs)
    ok = [lr for lr in lrs
          if all(runs[(placement, lr, s)]["val_acc"] >= threshold for s in seeds)]
    return max(ok) if ok else None


# --- 4. small batches and momentum ----------------------------------------------------------

@torch.no_grad()
def batch_noise(batch_sizes: Sequence[int] = (2, 4, 16, 64), draws: int = 200, width: int = 64,
                seed: int = 0) -> dict[str, list[float]]:
    """How much one example's normalized output moves with its batch-mates, in train mode.

    A fixed digits example is put in ``draws`` random batches of each size; we record the
    standard deviation (over draws, averaged over units) of its output after a fresh
    ``Linear(64, width)`` followed by batch norm or by layer norm. Returns
    ``{"batch": [...], "layer": [...]}``, one value per batch size.
    """
    gen = torch.Generator().manual_seed(seed)
    X = load_digits(seed=seed).X_train
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = nn.Linear(64, width)
    norms = {"batch": BatchNorm1d(width), "layer": LayerNorm(width)}
    out = {k: [] for k in norms}
    for m in batch_sizes:
        check_int(m, "batch size", low=2, fn="batch_noise")
        for name, norm in norms.items():
            norm.train()
            ys = []
            for _ in range(draws):
                mates = torch.randint(1, len(X), (m - 1,), generator=gen)
                batch = torch.cat([X[:1], X[mates]])
                ys.append(norm(linear(batch))[0])
            out[name].append(torch.stack(ys).std(0).mean().item())
    return out


@lru_cache(maxsize=2)
def momentum_runs(momenta: tuple[float, ...] = (0.1, 0.01), epochs: tuple[int, ...] = (1, 10),
                  seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """A 2x64 ReLU+BN net on digits (Adam, lr 0.01, batches of 64) with each BN ``momentum``.

    After each epoch in ``epochs`` we measure validation accuracy in eval mode (running
    statistics) and with the validation set's own statistics (train mode on a copy, the whole
    set as one batch). Returns ``{(momentum, epoch): {"eval": array, "batch_stats": array}}``
    (one value per seed).
    """
    data = load_digits(seed=0)
    results = {(m, e): {"eval": [], "batch_stats": []} for m in momenta for e in epochs}

    class Probe(Callback):
        def __init__(self, momentum):
            self.momentum = momentum

        def on_epoch_end(self, model, epoch, history):
            if epoch in epochs:
                r = results[(self.momentum, epoch)]
                r["eval"].append(accuracy(model, data.X_val, data.y_val))
                twin = copy.deepcopy(model).train()
                with torch.no_grad():
                    pred = twin(data.X_val).argmax(1)
                r["batch_stats"].append((pred == data.y_val).float().mean().item())

    for m in progress(momenta, desc="momenta"):
        for s in seeds:
            model = make_mlp(64, 10, width=64, depth=2, batch_norm=True, seed=s)
            for layer in model.modules():
                if isinstance(layer, nn.BatchNorm1d):
                    layer.momentum = m
            train(model, data, epochs=max(epochs), lr=0.01, optimizer="adam", batch_size=64,
                  seed=s, callbacks=[Probe(m)], progress=False)
    return {k: {kk: np.array(vv) for kk, vv in v.items()} for k, v in results.items()}


# --- 5. the widget --------------------------------------------------------------------------

LABELS = {"off": "no BN", "before": "BN before sigmoid", "after": "BN after sigmoid"}


def placement_color(placement: str) -> str:
    """The colour of a batch-norm placement in every figure of the chapter."""
    return color(f"bn_{placement}")


def explore_batchnorm(static: bool = False, lr: float = 1.0, placement: str = "before",
                      runs: dict | None = None):
    """Learning rate x batch norm (off / before / after the sigmoid) on the precomputed sweep
    (:func:`lr_sweep`, seed 0): left, the training loss per step (the same learning rate without
    BN in grey); right, the 15/50/85th percentiles of one last-layer unit's input."""
    import ipywidgets as W

    runs = lr_sweep() if runs is None else runs
    placements, lrs, _ = _axes_of(runs)
    if lr not in lrs:
        raise ValueError(f"explore_batchnorm: lr must be one of {lrs}, got {lr!r}")
    # one scale for every state (the worst loss and the widest percentiles of the sweep), so a
    # redraw repaints the curves, not the axes
    seed0 = [r for k, r in runs.items() if k[2] == 0]

    def finite_max(key, f=np.abs):
        values = np.concatenate([f(r[key]).ravel() for r in seed0])
        values = values[np.isfinite(values)]
        return float(values.max()) if len(values) else 1.0

    loss_hi = 10.0 ** min(3, math.ceil(math.log10(finite_max("loss"))))
    p_lim = math.ceil(min(finite_max("percentiles"), 50.0) * 1.1)
    n_steps = max(len(r["loss"]) for r in seed0)
    slider = W.SelectionSlider(options=lrs, value=lr, description="learning rate",
                               continuous_update=True, style={"description_width": "initial"})
    buttons = W.Dropdown(options=[(LABELS[p], p) for p in placements], value=placement,
                         description="batch norm")

    def draw(axes, state, lr, placement):
        run, base = runs[(placement, lr, 0)], runs[("off", lr, 0)]
        ax1, ax2 = axes
        # a diverged run stops at the end of the epoch where its loss became NaN
        steps, base_steps = (np.arange(1, len(r["loss"]) + 1) for r in (run, base))
        c = placement_color(placement)
        if "loss" not in state:
            state["base"], = ax1.plot(base_steps, base["loss"], color="0.6", lw=1,
                                      label="no BN")
            state["loss"], = ax1.plot(steps, run["loss"], lw=1.2)
            ax1.axhline(math.log(10), color="k", lw=0.6, ls=":", label="chance (ln 10)")
            ax1.set(yscale="log", xlabel="training step", ylabel="training loss (log scale)")
            ax1.legend(loc="lower left", fontsize=8)
            set_limits(ax1, xlim=(0, n_steps), ylim=(1e-2, loss_hi))
            state["p"] = [ax2.plot(steps, run["percentiles"][:, k], lw=lw)[0]
                          for k, lw in enumerate((0.8, 1.6, 0.8))]
            ax2.axhline(0, color="k", lw=0.5)
            # symlog: linear around 0, logarithmic beyond +-2 -- a saturated unit (|input| of
            # tens) and a healthy one (about +-1.5) on one fixed scale
            ax2.set_yscale("symlog", linthresh=2.0)
            ax2.set(xlabel="training step", ylabel="input to the sigmoid (symlog)")
            set_limits(ax2, xlim=(0, n_steps), ylim=(-p_lim, p_lim))
        state["base"].set_data(base_steps, base["loss"])
        state["loss"].set_data(steps, run["loss"])
        state["loss"].set_color(c)
        state["loss"].set_label(LABELS[placement])
        for k, line in enumerate(state["p"]):
            line.set_data(steps, run["percentiles"][:, k])
            line.set_color(c)
        acc = "diverged" if run["diverged"] else f"val acc {run['val_acc']:.2f}"
        ax1.set_title(f"{LABELS[placement]}, lr {lr:g}: {acc}")
        ax2.set_title("one unit's input: 15th, 50th, 85th percentile")

    return interactive_figure(draw, {"lr": slider, "placement": buttons}, ncols=2,
                              figsize=(9, 3.4), static=static)
