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

import math
from dataclasses import dataclass, field
from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from nncourse._validate import check_int
from nncourse.data import Dataset, load_digits, load_moons
from nncourse.env import progress
from nncourse.models import linear_layers, make_mlp
from nncourse.plotting import color
from nncourse.regularization import (
    Dropout,
    _Patience,
    expected_calibration_error,
    mc_dropout_predict,
)
from nncourse.training import History, accuracy, eval_mode, mean_sd, train
from nncourse.widgets import interactive_figure

__all__ = ["RECIPE", "SEEDS", "noisy_moons", "Run", "fit", "fit_seeds", "fit_settings", "fit_many",
           "clear_cache", "mean_sd", "seed_table",
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


#: The seeds over which the chapter averages a comparison. A seed sets the initialization, the
#: dropout masks and which 40 training points are drawn; seed 0 is the run shown everywhere else.
SEEDS = (0, 1, 2, 3, 4)

#: Settings that every run of one batch shares (see :func:`fit_many`); the others (penalties,
#: dropout rate, max-norm bound, seed, how often the validation set is scored) may differ.
_SHARED = ("n_train", "width", "depth", "patience", "monitor", "epochs", "momentum")
_DEFAULTS = {"n_train": 40, "width": RECIPE["width"], "depth": RECIPE["depth"], "l2": 0.0,
             "l1": 0.0, "l1_proximal": True, "dropout": 0.0, "max_norm": None, "patience": None,
             "monitor": "val_loss", "epochs": RECIPE["epochs"], "momentum": RECIPE["momentum"],
             "eval_every": None, "seed": 0}
#: Trained runs by (training settings, validation cadence); see :func:`fit_many`.
_RUNS: dict[tuple, Run] = {}


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
    example. The validation curve is scored every ``eval_every`` epochs (default
    ``RECIPE["eval_every"]``; 0: only the final network is scored). Cached: the same settings
    return the same :class:`Run`. Several runs at once: :func:`fit_many`.
    """
    return fit_many([dict(name=name, n_train=n_train, width=width, depth=depth, l2=l2, l1=l1,
                          dropout=dropout, l1_proximal=l1_proximal, max_norm=max_norm,
                          patience=patience, monitor=monitor, epochs=epochs, momentum=momentum,
                          eval_every=eval_every, seed=seed)])[0]


def fit_seeds(name: str = "baseline", seeds: tuple = SEEDS, eval_every: int | None = None,
              **settings) -> list[Run]:
    """One setting of :func:`fit` once per seed, for a mean and a spread (cached, trained side by
    side as one batch by :func:`fit_many`).

    A table over seeds needs only the final networks: the seeds other than 0 are scored at the
    end, and seed 0 -- the chapter's running example -- is the run already trained with these
    settings if there is one, else a new one with a validation curve. Give ``eval_every`` to
    record every seed's curve.
    """
    return fit_settings({name: settings}, seeds, eval_every)[0]


def fit_settings(settings: dict, seeds: tuple = SEEDS,
                 eval_every: int | None = None) -> list[list[Run]]:
    """:func:`fit_seeds` for several settings at once, ``{name: {setting: value}}``: one list of
    runs per setting, in order, and all of them trained as few batches as possible. A setting
    may give its own ``"seeds"``."""
    specs, sizes = [], []
    for name, kw in settings.items():
        kw = dict(kw)
        own = tuple(kw.pop("seeds", seeds))
        sizes.append(len(own))
        for s in own:
            spec = dict(kw, name=name, seed=s)
            if eval_every is not None:
                spec["eval_every"] = eval_every
            elif s == 0:
                spec["_reuse"] = "any"     # any cached run, else one with a curve
            else:
                spec["eval_every"] = 0
            specs.append(spec)
    runs, out = fit_many(specs), []
    for n in sizes:
        out.append(runs[:n])
        runs = runs[n:]
    return out


def fit_many(specs) -> list[Run]:
    """Train several runs of :func:`fit` at once: ``specs`` is a list of dicts of its arguments
    (``name`` included); returns one :class:`Run` per spec, in order.

    Runs that share the network, the data size, the epochs and the early-stopping rule are
    trained side by side as one batch: each weight tensor gets a leading "run" axis and every
    step is one batched matrix product per layer (``torch.baddbmm``) instead of one small product
    per run -- on a 40-point task the cost of a step is mostly the fixed cost of each operation,
    so a batch of 16 runs costs about as much as 4 single runs. The batch changes nothing in a
    run: each run does exactly the arithmetic of ``nncourse.training.train`` with the chapter's
    callbacks (same products, same clipping, same dropout masks and batch order from its own
    seeded generators), so it is bit for bit the run :func:`fit` would train alone, whatever else
    is in the batch (``tests/labs/test_ch08.py`` checks both).
    """
    out, todo = [], {}
    for spec in specs:
        name, train_key, cadence, reuse = _normalize(spec)
        run = _cached(train_key, cadence, reuse)
        out.append((name, train_key, cadence, run))
        if run is None:
            todo.setdefault(train_key[:len(_SHARED)], {})[train_key, cadence] = None
    for shared, members in todo.items():
        # a run asked for with and without a curve is trained once, with the curve
        members = [(k, c) for k, c in members if c or not any(k == k2 and c2 for k2, c2 in members)]
        for (train_key, cadence), run in zip(members, _train_batch(shared, members)):
            _RUNS[train_key, cadence] = run
    runs = []
    for name, train_key, cadence, run in out:
        run = run or _cached(train_key, cadence)
        if run.name != name:
            run = Run(name, run.model, run.history, run.train_acc, run.val_acc, run.test_acc,
                      run.extra, run.data)
        runs.append(run)
    return runs


def clear_cache() -> None:
    """Forget every trained run (the next :func:`fit` trains again)."""
    _RUNS.clear()
    grid_runs.cache_clear()


def _normalize(spec: dict) -> tuple[str, tuple, int, str | None]:
    """``(name, training key, validation cadence, reuse)`` of one :func:`fit_many` spec. The
    training key lists the shared settings (:data:`_SHARED`) first, then the per-run ones."""
    unknown = set(spec) - set(_DEFAULTS) - {"name", "_reuse"}
    if unknown:
        raise TypeError(f"fit: unknown setting(s) {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(_DEFAULTS)}")
    s = {**_DEFAULTS, **spec}
    if s["monitor"] not in ("val_loss", "val_acc"):
        raise ValueError(f"fit: monitor must be 'val_loss' or 'val_acc', got {s['monitor']!r}")
    if s["patience"]:
        cadence = 1                         # early stopping looks at every epoch
    elif s["eval_every"] is None:
        cadence = RECIPE["eval_every"]
    else:
        cadence = check_int(s["eval_every"], "eval_every", low=0, fn="fit")
    key = (s["n_train"], s["width"], s["depth"], s["patience"] or None, s["monitor"],
           s["epochs"], float(s["momentum"]), float(s["l2"]), float(s["l1"]),
           bool(s["l1_proximal"]), float(s["dropout"]),
           None if s["max_norm"] is None else float(s["max_norm"]), s["seed"])
    return s.get("name", "baseline"), key, cadence, s.get("_reuse")


def _cached(train_key: tuple, cadence: int, reuse: str | None = None) -> Run | None:
    """The cached run with these settings: the same validation cadence; any run when only the
    final network is asked for (``cadence == 0``) or ``reuse == "any"``; any run with a
    validation curve when ``reuse == "curve"``. (A run not found is trained with ``cadence``.)"""
    if cadence == 0 or reuse:
        curve = reuse == "curve"
        return next((r for (k, c), r in _RUNS.items() if k == train_key and (c or not curve)),
                    None)
    return _RUNS.get((train_key, cadence))


def _train_batch(shared: tuple, members: list[tuple[tuple, int]]) -> list[Run]:
    """Train the runs ``members`` (``(training key, cadence)`` pairs sharing ``shared``) as one
    batch; see :func:`fit_many`. Mirrors ``training.train`` with the callbacks
    ``WeightPenalty`` (L2, then L1), ``MaxNorm`` and ``EarlyStopping`` operation by operation."""
    n_train, width, depth, patience, monitor, epochs, momentum = shared
    cfg = [dict(zip(("l2", "l1", "prox", "p", "c", "seed"), k[len(_SHARED):])) for k, _ in members]
    every = [c for _, c in members]
    S, lr, clip = len(members), RECIPE["lr"], RECIPE["clip_norm"]
    datas = [noisy_moons(n_train, seed=0, sample=m["seed"]) for m in cfg]
    nets = [make_mlp(2, 1, width=width, depth=depth, init="he_normal", dropout=m["p"],
                     seed=m["seed"]) for m in cfg]
    layers = [linear_layers(net) for net in nets]
    # one tensor per layer with a leading run axis; weights as nn.Linear stores them (out, in)
    W = [torch.stack([ls[i].weight.detach() for ls in layers]).requires_grad_()
         for i in range(depth + 1)]
    B = [torch.stack([ls[i].bias.detach() for ls in layers]).unsqueeze(1).requires_grad_()
         for i in range(depth + 1)]
    params = [t for pair in zip(W, B) for t in pair]          # model.parameters() order
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)

    def per_run(values):                                       # a (S, 1, 1) column of settings
        return torch.tensor(values, dtype=torch.float32).view(S, 1, 1)

    l2 = per_run([m["l2"] for m in cfg])
    l1_sub = per_run([m["l1"] if not m["prox"] else 0.0 for m in cfg])
    prox = [s for s, m in enumerate(cfg) if m["prox"] and m["l1"] > 0]
    threshold = per_run([lr * m["l1"] if s in prox else 0.0 for s, m in enumerate(cfg)])
    bound = per_run([math.inf if m["c"] is None else m["c"] for m in cfg])
    use_l2, use_sub = any(m["l2"] for m in cfg), bool(l1_sub.any())
    use_bound = any(m["c"] is not None for m in cfg)
    # each run's own generators: train()'s batch order (seeded with the run's seed) and the
    # global generator its dropout layers draw from (seeded with the seed in fit)
    order_gen = [torch.Generator().manual_seed(m["seed"]) for m in cfg]
    drop = {s: (m["p"], torch.Generator().manual_seed(m["seed"]))
            for s, m in enumerate(cfg) if m["p"] > 0}
    for p, gen in drop.values():        # train() first runs the model on 2 points (train mode)
        for _ in range(depth):
            torch.empty(2, width).bernoulli_(1 - p, generator=gen)
    X = torch.stack([d.X_train for d in datas])
    Y = torch.stack([d.y_train for d in datas])
    rows = torch.arange(S).unsqueeze(1)
    X_val, y_val = datas[0].X_val, datas[0].y_val
    ones = torch.ones(n_train, width)

    def forward(idx, x, train):
        # all runs: the batch tensors themselves; some runs (validation): a copy of their rows
        pick = (lambda t: t) if len(idx) == S else (lambda t: t[idx])
        h = x
        for i in range(depth):
            h = torch.relu(torch.baddbmm(pick(B[i]), h, pick(W[i]).mT))
            if train and drop:
                # nn.Dropout's arithmetic: a Bernoulli(1 - p) mask divided by 1 - p, per run
                h = h * torch.stack([ones if s not in drop else torch.empty(n_train, width)
                                     .bernoulli_(1 - drop[s][0], generator=drop[s][1])
                                     .div_(1 - drop[s][0]) for s in idx])
        # the one-logit output layer run by run: a batched matrix-vector product takes another
        # code path than nn.Linear's (other last bits); these small products are the same
        return [torch.addmm(b, a, w.mT).reshape(-1)
                for b, a, w in zip(pick(B[-1]).unbind(0), h.unbind(0), pick(W[-1]).unbind(0))]

    @torch.no_grad()
    def project():                      # reg.max_norm_ on every weight (rows = units)
        for w in W:
            norms = torch.linalg.vector_norm(w, 2, dim=2, keepdim=True)
            w.mul_(torch.where(norms > bound, (norms + 1e-7).reciprocal() * bound,
                               torch.ones_like(norms)))

    everyone = list(range(S))
    hist = [History() for _ in range(S)]
    rules = ([_Patience(patience, 0.0, "min" if monitor == "val_loss" else "max")
              for _ in range(S)] if patience else None)
    best_state, best_epoch, stopped = [None] * S, [None] * S, [None] * S
    final = [None] * S                  # weights of a run that stopped before the last epoch
    if use_bound:
        project()
    losses_t, correct_t = [], []
    for epoch in progress(range(1, epochs + 1), desc=f"{S} runs at once, epochs"):
        order = torch.stack([torch.randperm(n_train, generator=g) for g in order_gen])
        xb, yb = X[rows, order], Y[rows, order]
        outs = forward(everyone, xb, True)
        losses = torch.stack([nn.functional.binary_cross_entropy_with_logits(o, t.float())
                              for o, t in zip(outs, yb.unbind(0))])
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        with torch.no_grad():
            # clip_grad_norm_ run by run: the norm of the per-tensor norms, then one factor
            norms = torch.stack([torch.linalg.vector_norm(t.grad.flatten(1), 2.0, dim=1)
                                 for t in params], 1)
            total = torch.linalg.vector_norm(norms, 2.0, dim=1)
            factor = torch.clamp((total + 1e-6).reciprocal() * clip, max=1.0)
            for t in params:
                t.grad.mul_(factor.view(S, *[1] * (t.ndim - 1)))
            for w in W:                 # WeightPenalty.on_before_step: L2, then L1 subgradient
                if use_l2:
                    w.grad.add_(l2 * w)
                if use_sub:
                    w.grad.add_(l1_sub * torch.sign(w))
        opt.step()
        with torch.no_grad():
            if prox:                    # reg.soft_threshold_ with lr * lambda, proximal runs only
                for w in W:
                    shrunk = torch.sign(w[prox]) * (w[prox].abs() - threshold[prox]).clamp_min(0.0)
                    w[prox] = shrunk
            if use_bound:
                project()
            losses_t.append(losses.detach())
            correct_t.append(torch.stack([((o > 0).long() == t).sum() for o, t in
                                          zip(outs, yb.unbind(0))]))
            live = [s for s in everyone if final[s] is None]
            finite = torch.isfinite(losses).tolist()
            for s in live:
                if not finite[s]:       # train() stops a run whose loss is not finite
                    hist[s].diverged = True
                    final[s] = (epoch, [t[s].clone() for t in params])
            due = [s for s in live if finite[s] and every[s]
                   and (epoch % every[s] == 0 or epoch in (1, epochs))]
            if due:
                x_val = X_val.expand(len(due), -1, -1).contiguous()
                for s, o in zip(due, forward(due, x_val, False)):
                    h = hist[s]
                    h.val_loss.append(nn.functional.binary_cross_entropy_with_logits(
                        o, y_val.float()).item())
                    h.val_acc.append(((o > 0).long() == y_val).float().mean().item())
                    h.extra.setdefault("val_epochs", []).append(epoch)
                    if rules:
                        value = h.val_loss[-1] if monitor == "val_loss" else h.val_acc[-1]
                        improved, stop = rules[s].update(epoch, value)
                        if improved:
                            best_epoch[s] = epoch
                            best_state[s] = [t[s].clone() for t in params]
                        if stop:
                            stopped[s] = epoch
                            final[s] = (epoch, [t[s].clone() for t in params])
        if all(f is not None for f in final):
            break
    losses_all, correct_all = torch.stack(losses_t), torch.stack(correct_t)
    runs = []
    for s, (net, data) in enumerate(zip(nets, datas)):
        ran, state = final[s] or (len(losses_t), [t[s].detach() for t in params])
        if best_state[s] is not None:   # EarlyStopping restores the best epoch's weights
            state = best_state[s]
        with torch.no_grad():
            for layer, w, b in zip(linear_layers(net), state[0::2], state[1::2]):
                layer.weight.copy_(w)
                layer.bias.copy_(b.reshape(-1))
        net.eval()
        h = hist[s]
        h.train_loss = losses_all[:ran, s].tolist()
        h.train_acc = [c / n_train for c in correct_all[:ran, s].tolist()]
        h.lr = [lr] * ran
        h.epochs_run = ran
        extra = {}
        if rules:
            extra = {"best_epoch": best_epoch[s], "stopped_epoch": stopped[s]}
            h.extra.update(extra)
        runs.append(Run("", net, h, accuracy(net, data.X_train, data.y_train),
                        accuracy(net, data.X_val, data.y_val),
                        accuracy(net, data.X_test, data.y_test), extra, data))
    return runs


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
    pairs = [(l2, p) for l2 in l2_grid for p in dropout_grid]
    out = {}
    # any run already trained with these settings (e.g. the baseline, scored every epoch)
    runs = fit_many([dict(l2=l2, dropout=p, epochs=epochs, _reuse="curve") for l2, p in pairs])
    for (l2, p), r in zip(pairs, runs):
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
            state["val"].set_data(run["val_epochs"], run["val_loss"])
        # the training loss is measured with dropout on: say so only when there is dropout
        label = "train (dropout on)" if p > 0 else "train"
        state["train"].set_label(label)
        state["legend"].get_texts()[0].set_text(label)
        ax_b.set_title(f"λ = {l2}, p = {p}: train {run['train_acc']:.0%}, "
                       f"val {run['val_acc']:.1%}", fontsize=10)

    return interactive_figure(draw, controls, ncols=2, figsize=(9, 3.6), static=static)
