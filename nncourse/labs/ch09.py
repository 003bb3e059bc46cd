"""Chapter 09's experiments: transfer what a network learned on digits 0-7 to 8 vs 9.

Géron's protocol (*Hands-On Machine Learning*, ch. 11) on data we ship: a *source* network is
trained on the digits 0-7 of the training split (:func:`source`); the *target* task is 8 vs 9 with
only ``n`` labelled examples (:func:`target_data`), measured on every 8 and 9 of the validation and
test splits (142 images; nothing is tuned on them). Every model of the chapter has the same
architecture, :data:`WIDTHS` with batch norm, so a comparison changes one thing at a time:

* ``scratch`` -- the target model, freshly initialized, all trained;
* ``frozen`` -- its lower ``k`` blocks replaced by copies of the source's and frozen
  (:func:`nncourse.transfer.freeze`); only the blocks above train;
* ``fine-tuned`` -- the same, frozen for the first half of the steps, then unfrozen with
  discriminative learning rates (:func:`nncourse.transfer.param_groups`: the reused blocks at a
  tenth of the head's rate).

A run is one labelled subset and one head initialization (the seed); :func:`runs` repeats a
setting over :data:`SEEDS` and :func:`seed_table` prints means with their spread -- transfer
results vary a lot between runs. :func:`grid` precomputes every (n, k, mode) for the table of
section 2 and the widget (:func:`explore_transfer`). Sections 3 and 4: :func:`freeze_first`,
:func:`coadaptation` (Yosinski et al.'s 5/5 split) and the unsupervised sources of
:func:`source` (``"autoencoder"``, ``"rotation"``, ``"permuted"``).
"""

from __future__ import annotations

from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from nncourse import transfer
from nncourse._validate import check_choice, check_int
from nncourse.data import load_digits
from nncourse.env import progress
from nncourse.models import make_mlp
from nncourse.plotting import color
from nncourse.training import accuracy, mean_sd, train
from nncourse.widgets import interactive_figure, set_limits

__all__ = ["WIDTHS", "SEEDS", "N_LABELS", "MODES", "SOURCES", "RECIPE", "digits_split",
           "target_data", "source", "target_model", "fit_target", "runs", "seed_table", "grid",
           "grid_table", "best_per_n", "plot_grid", "WAYS", "freeze_first", "freeze_first_table",
           "coadaptation", "coadaptation_table", "plot_coadaptation", "explore_transfer", "mean_sd"]

#: Hidden widths of every model of the chapter (two blocks with batch norm, then the head).
WIDTHS = (64, 32)
#: Seeds of a comparison: the labelled subset and the new layers' initialization.
SEEDS = (0, 1, 2, 3, 4)
#: Labelled examples of the target task (half 8s, half 9s).
N_LABELS = (10, 20, 50, 100, 200)
MODES = ("scratch", "frozen", "fine-tuned")
SOURCES = ("supervised", "autoencoder", "rotation", "permuted")
#: Pretraining (Adam, mini-batches of 64) and target training (Adam, full batch) settings.
RECIPE = {"source_epochs": 12, "source_lr": 1e-2, "steps": 60, "lr": 1e-2, "body_lr": 1e-3}


@lru_cache(maxsize=1)
def digits_split() -> dict:
    """The chapter's data: source (0-7, training split), target pool (8 and 9 of the training
    split, relabelled 0 and 1), target evaluation set (8 and 9 of validation + test), all
    training images without labels, and the source's evaluation set (0-7 of validation +
    test)."""
    d = load_digits(seed=0)
    X_held, y_held = torch.cat([d.X_val, d.X_test]), torch.cat([d.y_val, d.y_test])
    src, tgt, held = d.y_train < 8, d.y_train >= 8, y_held >= 8
    return {"X_source": d.X_train[src], "y_source": d.y_train[src],
            "X_pool": d.X_train[tgt], "y_pool": d.y_train[tgt] - 8,
            "X_eval": X_held[held], "y_eval": y_held[held] - 8,
            "X_source_eval": X_held[~held], "y_source_eval": y_held[~held],
            "X_unlabelled": d.X_train}


def target_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` labelled target examples (``n // 2`` eights, the rest nines), drawn with ``seed``."""
    n = check_int(n, "n", low=2, fn="target_data")
    s = digits_split()
    y = s["y_pool"]
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for label, k in ((0, n // 2), (1, n - n // 2)):
        idx = torch.nonzero(y == label).flatten()
        if k > len(idx):
            raise ValueError(f"target_data: n must be at most {2 * len(idx)}, got {n}")
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    idx = torch.cat(picks)
    return s["X_pool"][idx], y[idx]


#: The fixed pixel permutation of the "permuted" source (a task that looks nothing like ours).
_PERMUTATION = torch.randperm(64, generator=torch.Generator().manual_seed(9))


@lru_cache(maxsize=32)
def source(kind: str = "supervised", seed: int = 0) -> nn.Sequential:
    """A pretrained network whose blocks :func:`target_model` reuses (cached; do not train it).

    ``"supervised"``: classifies digits 0-7. ``"autoencoder"``: reconstructs every training
    image, 8s and 9s included, without a label (:func:`nncourse.transfer.autoencoder`; its
    encoder has the chapter's widths). ``"rotation"``: tells which of 4 rotations an unlabelled
    image went through (:func:`nncourse.transfer.rotations`). ``"permuted"``: classifies digits
    0-7 whose pixels were shuffled by one fixed permutation -- a source unrelated to the target.
    """
    kind = check_choice(kind, "kind", SOURCES, fn="source")
    s = digits_split()
    epochs, lr = RECIPE["source_epochs"], RECIPE["source_lr"]
    if kind == "autoencoder":
        model = transfer.autoencoder(64, WIDTHS, batch_norm=True, seed=seed)
        transfer.pretrain_autoencoder(model, s["X_unlabelled"], epochs=epochs, lr=lr, seed=seed)
        return model
    if kind == "rotation":
        model = make_mlp(64, 4, width=list(WIDTHS), batch_norm=True, init="he_normal", seed=seed)
        transfer.pretrain_rotations(model, s["X_unlabelled"], epochs=epochs // 2, lr=lr,
                                    seed=seed)
        return model
    X = s["X_source"] if kind == "supervised" else s["X_source"][:, _PERMUTATION]
    model = make_mlp(64, 8, width=list(WIDTHS), batch_norm=True, init="he_normal", seed=seed)
    train(model, (X, s["y_source"]), epochs=epochs, lr=lr, optimizer="adam", batch_size=64,
          seed=seed, progress=False, evaluate_val=False)
    return model


def target_model(k: int, seed: int, kind: str = "supervised") -> nn.Sequential:
    """The 8-vs-9 model: a fresh ``make_mlp(64, 2, WIDTHS)`` (seed ``100 + seed``) whose lower
    ``k`` blocks are copies of :func:`source`'s (seed ``seed``), frozen. ``k = 0``: scratch."""
    k = check_int(k, "k", low=0, fn="target_model")
    if k > len(WIDTHS):
        raise ValueError(f"target_model: k must be at most {len(WIDTHS)}, got {k}")
    fresh = make_mlp(64, 2, width=list(WIDTHS), batch_norm=True, init="he_normal",
                     seed=100 + seed)
    if k == 0:
        return fresh
    reused = transfer.reuse(source(kind, seed), k, head=2)[:-1]  # copies, not the source's own
    transfer.freeze(reused)
    upper = [m for b in transfer.blocks(fresh)[k:] for m in b]
    return nn.Sequential(*reused, *upper)


@lru_cache(maxsize=1024)
def fit_target(n: int, k: int, mode: str, seed: int, kind: str = "supervised",
               steps: int = RECIPE["steps"]) -> float:
    """Train :func:`target_model` on ``n`` labels in ``mode`` (scratch needs ``k = 0``) with
    full-batch Adam for ``steps`` steps; return the held-out accuracy. Cached."""
    mode = check_choice(mode, "mode", MODES, fn="fit_target")
    if (mode == "scratch") != (k == 0):
        raise ValueError("fit_target: scratch means k = 0, and k = 0 means scratch; "
                         f"got mode {mode!r} with k = {k}")
    X, y = target_data(n, seed)
    model = target_model(k, seed, kind)
    lr = RECIPE["lr"]
    n_blocks = len(transfer.blocks(model))
    lrs = [lr] * n_blocks
    if mode == "fine-tuned":
        lrs = [RECIPE["body_lr"]] * k + [lr] * (n_blocks - k)
    # All parameters, frozen ones included: the optimizer must see the reused blocks when they
    # are unfrozen half-way (an optimizer built on the trainable ones alone never would).
    opt = torch.optim.Adam(transfer.param_groups(model, lrs))
    phases = [steps] if mode != "fine-tuned" else [steps // 2, steps - steps // 2]
    for i, phase in enumerate(phases):
        if i == 1:
            transfer.unfreeze(model)
        train(model, (X, y), epochs=phase, optimizer=opt, batch_size=None, seed=seed,
              progress=False, evaluate_val=False)
    s = digits_split()
    return accuracy(model, s["X_eval"], s["y_eval"])


def runs(n: int, k: int, mode: str, kind: str = "supervised", seeds: tuple = SEEDS) -> np.ndarray:
    """The held-out accuracies of one setting, one per seed."""
    return np.array([fit_target(n, k, mode, s, kind) for s in progress(seeds, desc="seeds")])


def _label(k: int, mode: str) -> str:
    return "scratch" if mode == "scratch" else f"{mode} ({k} reused)"


def seed_table(rows: dict) -> str:
    """``{name: accuracies over seeds}`` as a table: seeds, mean, standard deviation, min."""
    lines = [f"{'':<34} {'seeds':>5} {'mean':>7} {'± sd':>6} {'min':>7}"]
    for name, accs in rows.items():
        m, sd = mean_sd(accs)
        lines.append(f"{name:<34} {len(accs):5d} {m:7.1%} {sd * 100:6.1f} {np.min(accs):7.1%}")
    return "\n".join(lines)


#: The widget's and section 2's settings: (k, mode) for every k of WIDTHS.
CONFIGS = ((0, "scratch"),) + tuple((k, m) for m in MODES[1:] for k in range(1, len(WIDTHS) + 1))


@lru_cache(maxsize=2)
def grid(n_labels: tuple = N_LABELS, seeds: tuple = SEEDS) -> dict:
    """``{(n, k, mode): accuracies over seeds}`` for every n and every (k, mode) of
    :data:`CONFIGS`, computed once."""
    return {(n, k, m): runs(n, k, m, seeds=seeds)
            for n in progress(n_labels, desc="label counts") for k, m in CONFIGS}


def grid_table(g: dict) -> str:
    """Mean accuracy (and sd, in points) of each setting of :func:`grid` per number of labels."""
    ns = sorted({key[0] for key in g})
    head = f"{'':<24}" + "".join(f"{f'n = {n}':>14}" for n in ns)
    lines = [head]
    for k, m in CONFIGS:
        cells = []
        for n in ns:
            mu, sd = mean_sd(g[n, k, m])
            cells.append(f"{mu:8.1%} ±{sd * 100:4.1f}")
        lines.append(f"{_label(k, m):<24}" + "".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


def best_per_n(g: dict) -> dict:
    """For each n: the setting with the highest mean, and the settings whose mean is within one
    standard error of the difference of it (a tie at this many seeds)."""
    ns = sorted({key[0] for key in g})
    out = {}
    for n in ns:
        means = {(k, m): g[n, k, m].mean() for k, m in CONFIGS}
        best = max(means, key=means.get)
        b = g[n, best[0], best[1]]
        ties = []
        for km in CONFIGS:
            if km == best:
                continue
            a = g[n, km[0], km[1]]
            se = np.sqrt(b.var(ddof=1) / len(b) + a.var(ddof=1) / len(a))
            if means[best] - means[km] <= se:
                ties.append(_label(*km))
        out[n] = (_label(*best), ties)
    return out


def plot_grid(g: dict, ax=None, configs=CONFIGS):
    """Mean held-out accuracy against labelled examples (log scale), one line per setting,
    with a band of one standard deviation over seeds."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    ns = np.array(sorted({key[0] for key in g}))
    for k, m in configs:
        mu, sd = mean_sd([g[n, k, m] for n in ns], axis=1)
        c = _color(k, m)
        ax.plot(ns, mu, "o-" if m != "frozen" else "s--", color=c, label=_label(k, m))
        ax.fill_between(ns, mu - sd, mu + sd, color=c, alpha=0.12)
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("labelled examples of 8 vs 9 (log scale)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"8 vs 9 after pretraining on 0-7 (mean ± sd over {len(SEEDS)} seeds)")
    ax.legend(fontsize=8)
    return ax


def _color(k: int, mode: str) -> str:
    if mode == "scratch":
        return "#000000"
    return {("frozen", 1): "#9ecae1", ("frozen", 2): "#1f77b4", ("fine-tuned", 1): "#fdae6b",
            ("fine-tuned", 2): "#d62728"}.get((mode, k), color(f"{mode}{k}"))


# --- section 3: why freeze first ------------------------------------------------------------

WAYS = ("at once", "head first", "head first, body at lr/10")


def freeze_first(n: int = 20, seeds: tuple = SEEDS, steps: int = 30, lr: float = 0.3) -> dict:
    """Reuse both blocks under a new random head and train with SGD (momentum 0.9) on ``n``
    labels, three ways (:data:`WAYS`): everything from step 0 for ``2 * steps`` steps; the head
    alone for ``steps`` steps, then everything for ``steps`` more at the same rate; or the same
    with the reused blocks at a tenth of the rate after unfreezing.

    Returns, per way, three arrays over ``seeds``: ``"grad"``, the norm of the first layer's
    gradient at the first step that trains it (under a random head, or under the trained
    head); ``"drift"``, how far that layer's weights moved, relative to their norm; ``"acc"``,
    the held-out accuracy at the end.
    """
    s = digits_split()
    out = {way: {"grad": [], "drift": [], "acc": []} for way in WAYS}
    for seed in progress(seeds, desc="seeds"):
        X, y = target_data(n, seed)
        for way, res in out.items():
            model = target_model(len(WIDTHS), seed)
            w0 = model[0].weight.detach().clone()
            body = lr / 10 if way.endswith("lr/10") else lr
            opt = torch.optim.SGD(transfer.param_groups(model, [body] * len(WIDTHS) + [lr]),
                                  momentum=0.9)
            fit = dict(optimizer=opt, batch_size=None, seed=seed, progress=False,
                       evaluate_val=False)
            if way != "at once":
                train(model, (X, y), epochs=steps, **fit)
            transfer.unfreeze(model)
            model.train()
            nn.functional.cross_entropy(model(X), y).backward()
            res["grad"].append(model[0].weight.grad.norm().item())
            opt.zero_grad(set_to_none=True)
            train(model, (X, y), epochs=2 * steps if way == "at once" else steps, **fit)
            res["drift"].append(((model[0].weight - w0).norm() / w0.norm()).item())
            res["acc"].append(accuracy(model, s["X_eval"], s["y_eval"]))
    return {way: {k: np.array(v) for k, v in res.items()} for way, res in out.items()}


def freeze_first_table(res: dict) -> str:
    """:func:`freeze_first`'s results: mean ± sd over seeds of each measure, one row per way."""
    lines = [f"{'':<28} {'body grad norm':>16} {'layer-1 drift':>15} {'accuracy':>14}"]
    for way, r in res.items():
        g, gs = mean_sd(r["grad"])
        d, ds = mean_sd(r["drift"])
        a, as_ = mean_sd(r["acc"])
        lines.append(f"{way:<28} {g:9.2f} ± {gs:4.2f} {d:8.2f} ± {ds:4.2f} "
                     f"{a:8.1%} ± {as_ * 100:3.1f}")
    return "\n".join(lines)


# --- section 3: Yosinski et al.'s co-adaptation experiment on a 5/5 split ---------------------

#: The deeper net of the co-adaptation experiment: three hidden blocks, so there is a middle.
DEEP = (32, 32, 32)


@lru_cache(maxsize=16)
def _half_net(half: str, seed: int, steps: int) -> nn.Sequential:
    """A base network trained on digits 0-4 (``"A"``) or 5-9 (``"B"``, relabelled 0-4)."""
    X, y = _half_data(half)
    model = make_mlp(64, 5, width=list(DEEP), init="he_normal", seed=seed)
    train(model, (X, y), epochs=steps, lr=1e-2, optimizer="adam", batch_size=None, seed=seed,
          progress=False, evaluate_val=False)
    return model


def _half_data(half: str, split: str = "train"):
    d = load_digits(seed=0)
    if split == "train":
        X, y = d.X_train, d.y_train
    else:
        X, y = torch.cat([d.X_val, d.X_test]), torch.cat([d.y_val, d.y_test])
    keep = y < 5 if half == "A" else y >= 5
    return X[keep], y[keep] - (0 if half == "A" else 5)


def coadaptation(seeds: tuple = SEEDS, steps: int = 60) -> dict:
    """Yosinski et al. (2014) on digits: copy the first ``k`` blocks of base network B (trained
    on 5-9) or A (trained on 0-4) into a new net, re-initialize the blocks above, train on 5-9
    (full batch, Adam, ``steps`` steps) with the copied blocks frozen (``"BnB"``, ``"AnB"``) or
    fine-tuned (``"AnB+"``); ``k = 0`` is base B itself. Returns ``{(name, k): held-out
    accuracy on 5-9 per seed}``."""
    X, y = _half_data("B")
    Xe, ye = _half_data("B", "eval")
    out = {("baseB", 0): np.array([accuracy(_half_net("B", s, steps), Xe, ye) for s in seeds])}
    for k in progress(range(1, len(DEEP) + 1), desc="blocks"):
        for name in ("BnB", "AnB", "AnB+"):
            accs = []
            for s in seeds:
                base = _half_net("B" if name == "BnB" else "A", s, steps)
                fresh = make_mlp(64, 5, width=list(DEEP), init="he_normal", seed=200 + s)
                reused = transfer.reuse(base, k, head=5)[:-1]
                if name != "AnB+":
                    transfer.freeze(reused)
                model = nn.Sequential(*reused, *[m for b in transfer.blocks(fresh)[k:]
                                                 for m in b])
                train(model, (X, y), epochs=steps, lr=1e-2, optimizer="adam", batch_size=None,
                      seed=s, progress=False, evaluate_val=False)
                accs.append(accuracy(model, Xe, ye))
            out[name, k] = np.array(accs)
    return out


def coadaptation_table(res: dict) -> str:
    """The co-adaptation results as a table: one row per way, one column per k."""
    ks = sorted({k for name, k in res if name != "baseB"})
    lines = [f"{'':<8}" + "".join(f"{f'k = {k}':>14}" for k in ks)]
    for name in ("BnB", "AnB", "AnB+"):
        cells = []
        for k in ks:
            mu, sd = mean_sd(res[name, k])
            cells.append(f"{mu:8.1%} ±{sd * 100:4.1f}")
        lines.append(f"{name:<8}" + "".join(f"{c:>14}" for c in cells))
    mu, sd = mean_sd(res["baseB", 0])
    lines.append(f"{'baseB':<8}{f'{mu:8.1%} ±{sd * 100:4.1f}':>14}  (k = 0: trained on 5-9 alone)")
    return "\n".join(lines)


def plot_coadaptation(res: dict, ax=None):
    """Accuracy on 5-9 against the number of copied blocks, one line per way (mean ± sd)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    ks = sorted({k for name, k in res if name != "baseB"})
    base, base_sd = mean_sd(res["baseB", 0])
    ax.axhspan(base - base_sd, base + base_sd, color="#7f7f7f", alpha=0.2)
    ax.axhline(base, color="#7f7f7f", lw=1, label="baseB (k = 0)")
    for name, c in (("BnB", "#1f77b4"), ("AnB", "#d62728"), ("AnB+", "#2ca02c")):
        mu, sd = mean_sd([res[name, k] for k in ks], axis=1)
        ax.errorbar(ks, mu, yerr=sd, fmt="o-", color=c, capsize=3, label=name)
    ax.set_xticks(ks)
    ax.set_xlabel("blocks copied (k)")
    ax.set_ylabel("held-out accuracy on 5-9")
    ax.set_title("copy k blocks, freeze them, retrain the rest on 5-9")
    ax.legend(fontsize=8)
    return ax


# --- the widget ----------------------------------------------------------------------------

def explore_transfer(static: bool = False, n_labels: tuple = N_LABELS, seeds: tuple = SEEDS):
    """Sliders for the labelled examples and the reused blocks, a toggle frozen / fine-tuned:
    the accuracy of every seed and their mean, for scratch and the chosen transfer, at that n;
    beside it the curves over all n with the chosen n marked. Everything comes from
    :func:`grid`, computed once."""
    import ipywidgets as W

    g = grid(tuple(n_labels), tuple(seeds))
    ns = list(n_labels)
    style = {"description_width": "initial"}
    controls = {
        "n": W.SelectionSlider(options=ns, value=ns[1], description="labelled examples",
                               style=style),
        "k": W.IntSlider(value=len(WIDTHS), min=1, max=len(WIDTHS), description="reused blocks",
                         style=style),
        "mode": W.ToggleButtons(options=list(MODES[1:]), value="frozen", description="",
                                style=style),
    }
    jitter = np.linspace(-0.12, 0.12, len(seeds))

    def draw(axes, state, n, k, mode):
        ax_s, ax_c = axes
        scratch, other = g[n, 0, "scratch"], g[n, k, mode]
        mu_s, mu_o = scratch.mean(), other.mean()
        cs = [g[m, 0, "scratch"].mean() for m in ns]
        co = [g[m, k, mode].mean() for m in ns]
        if "dots" not in state:
            state["dots_s"], = ax_s.plot(0 + jitter, scratch, "o", color="#000000", alpha=0.6)
            state["dots"], = ax_s.plot(1 + jitter, other, "o", color=_color(k, mode), alpha=0.6)
            state["mean_s"], = ax_s.plot([-0.3, 0.3], [mu_s] * 2, "-", color="#000000", lw=3)
            state["mean"], = ax_s.plot([0.7, 1.3], [mu_o] * 2, "-", color=_color(k, mode), lw=3)
            ax_s.set_xticks([0, 1], ["scratch", "transfer"])
            ax_s.set_xlim(-0.6, 1.6)
            ax_s.set_ylim(0.65, 1.01)
            ax_s.set_ylabel("held-out accuracy (one dot per seed)")
            state["curve_s"], = ax_c.plot(ns, cs, "o-", color="#000000", label="scratch")
            state["curve"], = ax_c.plot(ns, co, "s--", color=_color(k, mode), label="transfer")
            state["mark"] = ax_c.axvline(n, color="#7f7f7f", lw=1)
            ax_c.set_xscale("log")
            ax_c.set_xticks(ns, [str(m) for m in ns])
            ax_c.set_xlim(ns[0] * 0.8, ns[-1] * 1.25)
            ax_c.set_ylim(0.65, 1.01)
            ax_c.set_xlabel("labelled examples (log scale)")
            ax_c.set_ylabel("mean held-out accuracy")
            ax_c.legend(loc="lower right", fontsize=8)
            state["dots"].set_color(_color(k, mode))
        else:
            state["dots_s"].set_ydata(scratch)
            state["dots"].set_ydata(other)
            state["mean_s"].set_ydata([mu_s] * 2)
            state["mean"].set_ydata([mu_o] * 2)
            state["curve_s"].set_ydata(cs)
            state["curve"].set_ydata(co)
            state["mark"].set_xdata([n, n])
            for key in ("dots", "mean", "curve"):
                state[key].set_color(_color(k, mode))
        set_limits(ax_s, ylim=(0.65, 1.01))
        ax_s.set_title(f"n = {n}: scratch {mu_s:.1%}, {mode} ({k} reused) {mu_o:.1%}",
                       fontsize=9)
        ax_c.set_title(f"mean over {len(seeds)} seeds; {mode}, {k} reused", fontsize=9)

    return interactive_figure(draw, controls, ncols=2, figsize=(9.5, 3.8), static=static)
