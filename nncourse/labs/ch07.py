"""Chapter 07's experiments: how fast to learn, and how to change the rate while learning.

Every run is the same digits MLP (:data:`RECIPE`: 64-64-64-10, He init, SGD with momentum 0.9,
batches of 64, 10 epochs = 170 steps) trained by :func:`nncourse.training.train` with the real
``torch.optim`` optimizer and ``torch.optim.lr_scheduler`` scheduler; :mod:`nncourse.schedules`
gives the formulas the figures draw (its tests prove they equal the schedulers).

* :func:`run` -- one training run with a named schedule (cached), recording the rate of every step;
  :func:`runs_over_seeds` and :func:`seed_table` -- the same over a few seeds, mean +- sd;
* :func:`range_tests` / :func:`rule_check` -- the range test per seed and each rule's pick checked
  by training with it;
* :func:`super_convergence` -- 1cycle vs a constant rate at a few training-set sizes;
* :func:`plateau_run` -- ``ReduceLROnPlateau`` on the validation loss;
* :func:`step_order_runs` / :func:`scheduler_first` -- where ``scheduler.step()`` belongs;
* :func:`warmup_runs` -- Adam at a large rate with and without linear warm-up (the seeds trained
  as one stacked model, :mod:`nncourse.stacked`);
* :func:`plot_schedules` and the widget :func:`explore_schedule`.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import torch
from torch.optim import lr_scheduler as S

from nncourse import schedules as sch
from nncourse._validate import check_choice, check_int, check_number
from nncourse.data import load_digits
from nncourse.models import make_mlp
from nncourse.plotting import color
from nncourse.stacked import StackedMLP, train_stacked
from nncourse.training import Callback, History, mean_sd, train
from nncourse.widgets import interactive_figure, set_limits

__all__ = ["RECIPE", "SCHEDULES", "LRS", "SEEDS", "schedule_curve", "make_scheduler", "run",
           "runs_over_seeds", "seed_table", "three_rates", "range_tests", "rule_check",
           "super_convergence", "plateau_run", "step_order_runs", "scheduler_first",
           "warmup_runs", "early_peak", "plot_schedules", "explore_schedule"]

RECIPE = dict(width=64, depth=2, batch_size=64, epochs=10, momentum=0.9)
#: Schedule names, in the order of the chapter (colours from :func:`nncourse.plotting.color`).
SCHEDULES = ("constant", "power", "exponential", "piecewise", "cosine", "1cycle")
#: The peak learning rates the widget offers (precomputed runs).
LRS = (0.03, 0.1, 0.3, 1.0)
SEEDS = (0, 1, 2)


@lru_cache(maxsize=1)
def _digits():
    """The digits split, loaded once: reading sklearn's file costs ~25 ms, and the chapter trains
    about a hundred runs on it (``train`` never modifies the data)."""
    return load_digits()


def _n_train(n_train: int | None) -> int:
    return len(_digits().y_train) if n_train is None else n_train


def _steps(n_train: int, epochs: int, batch_size: int = RECIPE["batch_size"]) -> int:
    return epochs * math.ceil(n_train / batch_size)


def schedule_curve(name: str, lr: float, total_steps: int) -> np.ndarray:
    """The rate at each of ``total_steps`` steps, from :mod:`nncourse.schedules`' formulas.

    The chapter's settings: power with ``s = T/10`` (lr/11 at the end), exponential down to lr/100,
    piecewise 10x down at 50 % and 75 % of the steps, cosine to 0, 1cycle with torch's defaults.
    """
    name = check_choice(name, "name", SCHEDULES, fn="schedule_curve")
    T = check_int(total_steps, "total_steps", low=4, fn="schedule_curve")
    lr = check_number(lr, "lr", 0, low_open=True, fn="schedule_curve")
    return _curve(name, lr, T).copy()


@lru_cache(maxsize=64)
def _curve(name: str, lr: float, T: int) -> np.ndarray:  # cached: the widget redraws from it
    f = {"constant": lambda t: lr,
         "power": lambda t: sch.power_lr(t, lr, s=T / 10),
         "exponential": lambda t: sch.exponential_lr(t, lr, 0.01 ** (1 / T)),
         "piecewise": lambda t: sch.piecewise_lr(t, lr, [T // 2, 3 * T // 4], 0.1),
         "cosine": lambda t: sch.cosine_lr(t, lr, T),
         "1cycle": lambda t: sch.one_cycle_lr(t, T, lr)}[name]
    return np.array([f(t) for t in range(T)])


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, total_steps: int):
    """The real ``lr_scheduler`` for :func:`schedule_curve`'s ``name`` (stepped every batch),
    or None for a constant rate."""
    T = total_steps
    lr = optimizer.param_groups[0]["lr"]
    return {"constant": lambda: None,
            "power": lambda: S.LambdaLR(optimizer, lambda t: (1 + t / (T / 10)) ** -1),
            "exponential": lambda: S.ExponentialLR(optimizer, 0.01 ** (1 / T)),
            "piecewise": lambda: S.MultiStepLR(optimizer, [T // 2, 3 * T // 4], 0.1),
            "cosine": lambda: S.CosineAnnealingLR(optimizer, T),
            "1cycle": lambda: S.OneCycleLR(optimizer, max_lr=lr, total_steps=T)}[name]()


class StepLog(Callback):
    """Records the rate (and momentum) used by every optimizer step, and every batch loss."""

    def on_train_begin(self, model, optimizer, history):
        self.opt, self.history = optimizer, history
        history.extra.update(step_lr=[], step_momentum=[], step_loss=[])

    def on_before_step(self, model, step):
        g = self.opt.param_groups[0]
        self.history.extra["step_lr"].append(g["lr"])
        self.history.extra["step_momentum"].append(g["betas"][0] if "betas" in g
                                                   else g.get("momentum", 0.0))

    def on_step_end(self, model, step, loss):
        self.history.extra["step_loss"].append(loss)


def _model(seed: int, width: int = RECIPE["width"], depth: int = RECIPE["depth"]):
    return make_mlp(64, 10, width=width, depth=depth, init="he_normal", seed=seed)


def run(name: str = "constant", lr: float = 0.1, seed: int = 0, n_train: int | None = None,
        epochs: int = RECIPE["epochs"]) -> History:
    """Train :data:`RECIPE` with schedule ``name`` at peak rate ``lr`` (cached).

    ``history.extra`` holds ``step_lr``, ``step_momentum`` and ``step_loss`` (one per step).
    ``n_train`` keeps a stratified subset of the training set (validation set unchanged).
    """
    name = check_choice(name, "name", SCHEDULES, fn="run")
    # one cache key per distinct run: run("cosine", 0.1, 0) and the same with n_train=1077,
    # epochs=10 spelled out are the same training
    return _run(name, float(lr), int(seed), _n_train(n_train), int(epochs))


@lru_cache(maxsize=256)
def _run(name: str, lr: float, seed: int, n: int, epochs: int) -> History:
    data = _digits().subset_train(n, seed=seed)
    T = _steps(n, epochs)
    model = _model(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=RECIPE["momentum"])
    scheduler = (lambda o: make_scheduler(name, o, T)) if name != "constant" else None
    return train(model, data, epochs=epochs, optimizer=opt, batch_size=RECIPE["batch_size"],
                 scheduler=scheduler, scheduler_interval="step", callbacks=[StepLog()],
                 seed=seed)


run.cache_info = _run.cache_info  # what the widget precomputed (tests read it)


def runs_over_seeds(name: str, lr: float, seeds=SEEDS, **kw) -> list[History]:
    return [run(name, lr, s, **kw) for s in seeds]


def _final(h: History, key: str) -> float:
    return getattr(h, key)[-1] if not h.diverged else (math.nan if key != "val_acc" else 0.1)


def seed_table(groups: dict[str, list[History]]) -> str:
    """One line per group: final training loss and validation accuracy, mean +- sd over seeds."""
    lines = [f"{'':<22}{'train loss':>18}{'val acc %':>16}"]
    for label, hs in groups.items():
        lm, ls = mean_sd(_final(h, "train_loss") for h in hs)
        am, asd = mean_sd(100 * _final(h, "val_acc") for h in hs)
        loss = f"{lm:.3f} ± {ls:.3f}" if math.isfinite(lm) else "diverged"
        lines.append(f"{label:<22}{loss:>18}{f'{am:.1f} ± {asd:.1f}':>16}")
    return "\n".join(lines)


# --- 1. too low, too high -------------------------------------------------------------------

def three_rates(rates=(0.001, 0.1, 1.0), seed: int = 0) -> dict[float, History]:
    """The same net with a constant rate that is too low, about right and too high."""
    return {lr: run("constant", lr, seed) for lr in rates}


# --- 2. the range test ----------------------------------------------------------------------

@lru_cache(maxsize=8)
def _range_test(seed: int, num_steps: int, beta: float) -> sch.RangeTest:
    data = _digits()
    model = _model(seed)
    opt = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=RECIPE["momentum"])
    return sch.lr_range_test(model, data, opt, start_lr=1e-4, end_lr=10.0, num_steps=num_steps,
                             batch_size=RECIPE["batch_size"], beta=beta, seed=seed)


def range_tests(seeds=SEEDS, num_steps: int = 100, beta: float = 0.98) -> dict[int, sch.RangeTest]:
    """The range test (1e-4 to 10 in ``num_steps`` batches) on a fresh :data:`RECIPE` model per
    seed, with SGD + momentum 0.9 as in the runs."""
    return {s: _range_test(s, num_steps, beta) for s in seeds}


def rule_check(tests: dict[int, sch.RangeTest]) -> dict[str, dict]:
    """Train with each rule's pick (that seed's own range test, constant rate, 10 epochs).

    Returns ``{rule: {"lrs": [...], "runs": [History, ...]}}``.
    """
    out = {}
    for rule in sch.RULES:
        lrs = [float(f"{t.suggestions[rule]:.3g}") for t in tests.values()]
        out[rule] = {"lrs": lrs, "runs": [run("constant", lr, s) for s, lr in zip(tests, lrs)]}
    return out


# --- 3. schedules ---------------------------------------------------------------------------

def super_convergence(sizes=(150, 400, None), lrs=(("constant", 0.1), ("1cycle", 0.3),
                                                   ("1cycle", 1.0)), seeds=SEEDS,
                      epochs: int = RECIPE["epochs"]) -> dict:
    """``{(name, lr): {n_train: [History per seed]}}`` -- same epochs at each size."""
    return {(name, lr): {_n_train(n): [run(name, lr, s, n_train=n, epochs=epochs) for s in seeds]
                         for n in sizes} for name, lr in lrs}


@lru_cache(maxsize=2)
def plateau_run(lr: float = 0.1, epochs: int = 30, patience: int = 2, factor: float = 0.3,
                seed: int = 0) -> History:
    """Constant rate cut by ``factor`` whenever the validation loss has not improved for
    ``patience`` epochs (``ReduceLROnPlateau``, stepped with the validation loss each epoch)."""
    model = _model(seed)
    return train(model, _digits(), epochs=epochs, lr=lr, momentum=RECIPE["momentum"],
                 batch_size=RECIPE["batch_size"],
                 scheduler=lambda o: S.ReduceLROnPlateau(o, factor=factor, patience=patience),
                 seed=seed, progress=False)


@lru_cache(maxsize=2)
def step_order_runs(lr: float = 0.1, gamma: float = 0.8, seed: int = 0) -> dict[str, History]:
    """``ExponentialLR(gamma)`` written for one step per epoch: stepped per epoch (right) and
    per batch (wrong: 17 steps an epoch)."""
    out = {}
    for interval in ("epoch", "step"):
        model = _model(seed)
        out[interval] = train(model, _digits(), epochs=RECIPE["epochs"], lr=lr,
                              momentum=RECIPE["momentum"], batch_size=RECIPE["batch_size"],
                              scheduler=lambda o: S.ExponentialLR(o, gamma),
                              scheduler_interval=interval, callbacks=[StepLog()], seed=seed,
                              progress=False)
    return out


def scheduler_first(total_steps: int = 8, max_lr: float = 1.0) -> dict:
    """The rates a ``OneCycleLR`` gives when ``scheduler.step()`` comes before vs after
    ``optimizer.step()`` in each iteration, and what torch says about it."""
    out = {}
    for order in ("optimizer first", "scheduler first"):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=max_lr, momentum=0.9)
        sched = S.OneCycleLR(opt, max_lr=max_lr, total_steps=total_steps)
        used = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(total_steps):
                p.grad = torch.ones(1)
                if order == "scheduler first":
                    sched.step()
                used.append(opt.param_groups[0]["lr"])
                opt.step()
                if order == "optimizer first":
                    sched.step()
        # torch's message, up to its first sentence's end (it goes on about skipping a value)
        out[order] = {"used": used, "warnings": sorted(
            {str(w.message).split("`optimizer.step()`")[0] + "`optimizer.step()`"
             for w in caught})}
    out["formula"] = [sch.one_cycle_lr(t, total_steps, max_lr) for t in range(total_steps + 1)]
    return out


# --- 4. warm-up -------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _warmup_runs(lr, warmup_steps, seeds, beta2, epochs, batch_size, width, depth):
    # the seeds train as one stacked model (nncourse.stacked): Adam is element-wise, so one
    # torch.optim.Adam over the stacked weights is each seed's own Adam; ~1.5x cheaper
    models = [_model(s, width=width, depth=depth) for s in seeds]
    stack = StackedMLP(models)
    opt = torch.optim.Adam(stack.parameters(), lr=lr, betas=(0.9, beta2))
    W = warmup_steps
    scheduler = (lambda o: S.LinearLR(o, start_factor=1 / W, end_factor=1.0,
                                      total_iters=W - 1)) if W > 1 else None
    return train_stacked(stack, _digits(), seeds, epochs, opt, batch_size=batch_size,
                         scheduler=scheduler, scheduler_interval="step", record_steps=True)


def warmup_runs(lr: float = 0.03, warmup_steps: int = 200, seeds=SEEDS, beta2: float = 0.99,
                epochs: int = 18, batch_size: int = 32, width: int = 64,
                depth: int = 4) -> dict[str, list[History]]:
    """Adam (beta2 = 0.99) at a large rate on a deeper net, without and with a linear warm-up of
    ``warmup_steps`` steps (2 / (1 - beta2) = 200 for beta2 = 0.99). One history per seed, with
    ``extra["step_loss"]`` and ``extra["step_lr"]``."""
    seeds = tuple(int(s) for s in seeds)
    return {label: list(_warmup_runs(lr, w, seeds, beta2, epochs, batch_size, width, depth))
            for label, w in (("no warm-up", 1), (f"warm-up {warmup_steps} steps", warmup_steps))}


def early_peak(history: History, steps: int = 200) -> float:
    """The largest mini-batch loss of the first ``steps`` steps (the warm-up period)."""
    return float(np.max(history.extra["step_loss"][:steps]))


# --- figures ----------------------------------------------------------------------------------

def plot_schedules(lr: float = 0.1, total_steps: int = 170, axes=None):
    """Each schedule's rate per step (left: linear scale, right: log scale)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name in SCHEDULES:
        curve = schedule_curve(name, lr, total_steps)
        for ax in axes:
            ax.plot(curve, color=color(name), label=name)
    axes[0].set(xlabel="step", ylabel="learning rate", title=f"Schedules, peak {lr:g}")
    axes[1].set(xlabel="step", ylabel="learning rate (log scale)", yscale="log",
                title="The same, log scale")
    axes[0].legend(fontsize=8)
    plt.show()


def explore_schedule(static: bool = False, name: str = "1cycle", lr: float = 0.3):
    """Pick a schedule and its peak rate: its curve (left) and the training run it gives
    (right: training loss per step, smoothed, and validation loss per epoch; seed 0,
    precomputed for every choice on first use)."""
    import ipywidgets as W

    if not static:  # train every choice once now, so that moving a control only redraws
        for schedule in SCHEDULES:
            for peak in LRS:
                run(schedule, peak, 0)
    dropdown = W.Dropdown(options=list(SCHEDULES), value=name, description="schedule")
    slider = W.SelectionSlider(options=list(LRS), value=lr, description="peak lr",
                               continuous_update=True)
    T = _steps(_n_train(None), RECIPE["epochs"])
    steps = np.arange(T)
    per_epoch = T // RECIPE["epochs"]
    epochs_at = np.arange(1, RECIPE["epochs"] + 1) * per_epoch - 1

    def draw(axes, state, schedule, peak):
        curve = schedule_curve(schedule, peak, T)
        h = run(schedule, peak, 0)
        loss = sch.smooth(np.nan_to_num(h.extra["step_loss"], nan=1e3, posinf=1e3), 0.9)
        val = np.full(RECIPE["epochs"], np.nan)
        val[:len(h.val_loss)] = np.nan_to_num(h.val_loss, nan=1e3, posinf=1e3)
        ax1, ax2 = axes
        if "lr" not in state:
            state["lr"], = ax1.plot(steps, curve, lw=2)
            ax1.set(xlabel="step", ylabel="learning rate (log scale)", yscale="log",
                    ylim=(1e-6, 2.0))
            state["loss"], = ax2.plot(steps[:len(loss)], loss, lw=1, label="train (smoothed)")
            state["val"], = ax2.plot(epochs_at, val, "o-", label="validation, per epoch")
            ax2.set(xlabel="step", ylabel="loss (log scale)", yscale="log", ylim=(5e-3, 10))
            ax2.legend(loc="upper right", fontsize=8)
        state["lr"].set_data(steps, curve)
        state["loss"].set_data(steps[:len(loss)], loss)
        state["val"].set_ydata(val)
        for artist in (state["lr"], state["loss"]):
            artist.set_color(color(schedule))
        set_limits(ax1, xlim=(0, T))
        ax1.set_title(f"{schedule}, peak {peak:g}")
        acc = "diverged" if h.diverged else f"val acc {h.val_acc[-1]:.1%}"
        ax2.set_title(f"seed 0: {acc}")

    return interactive_figure(draw, {"schedule": dropdown, "peak": slider}, ncols=2,
                              figsize=(10, 3.4), static=static)
