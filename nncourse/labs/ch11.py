"""Chapter 11's experiments: grid vs random search on the default network, robust summaries of a
TPE study (what the best trials share, the pruner's savings: the exact trials TPE proposes change
with the CPU's floating-point path), fANOVA importances with the search space's conditional
learning rates, and workers sharing a study.

The search code itself (search space, objective, pruning, random and grid search, studies in a
database) is in :mod:`nncourse.search`; the worker command is :mod:`nncourse.course.tune`.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution

from nncourse.data import Dataset
from nncourse.search import (
    DEFAULT_CONFIG,
    SearchResult,
    fit,
    grid_search,
    log_grid,
    lr_name,
    random_search,
)

__all__ = ["LR_WD_SPACE", "grid_vs_random", "plot_grid_vs_random", "top_trials_summary",
           "hit_rates", "pruning_summary", "COMMON_PARAMS", "main_optimizer",
           "fanova_importances", "importance_scope", "plot_importances", "run_workers",
           "trials_by_worker", "plot_intermediate", "plot_worker_timeline"]

#: Two hyperparameters of the default network, one that matters and one that barely does.
LR_WD_SPACE: dict[str, BaseDistribution] = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),  # centred (in log scale) on Adam's default
    "weight_decay": FloatDistribution(1e-6, 1e-3, log=True),
}


def grid_vs_random(data: Dataset, n: int = 9, epochs: int = 10,
                   seed: int = 0) -> tuple[SearchResult, SearchResult]:
    """Tune ``lr`` and ``weight_decay`` of :data:`DEFAULT_CONFIG` with the same budget twice.

    A ``sqrt(n) x sqrt(n)`` grid (log-spaced) and ``n`` random draws from :data:`LR_WD_SPACE`;
    each trial trains for ``epochs`` epochs and scores the validation accuracy.
    """
    side = math.isqrt(n)
    if side < 2 or side * side != n:
        raise ValueError(f"n must be a perfect square >= 4 (a square grid), got {n!r}")

    def score(params):
        return fit({**DEFAULT_CONFIG, **params}, data, epochs=epochs, seed=seed)[1].val_acc[-1]

    grid = grid_search(score, {k: log_grid(d, side) for k, d in LR_WD_SPACE.items()})
    return grid, random_search(score, LR_WD_SPACE, n_trials=n, seed=seed)


def plot_grid_vs_random(grid: SearchResult, rand: SearchResult, x: str = "lr",
                        y: str = "weight_decay", score_name: str = "validation accuracy"):
    """Where each search put its trials in the (``x``, ``y``) plane, and the score along ``x``.

    Left and middle: the sample layouts, coloured by score, with a tick on the ``x`` axis for each
    distinct ``x`` value tried. Right: score against ``x`` for both searches -- the view of the
    important hyperparameter that each search actually got.
    """
    import matplotlib.pyplot as plt

    from nncourse.plotting import color

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    vmin = min(min(grid.scores), min(rand.scores))
    vmax = max(max(grid.scores), max(rand.scores))
    for ax, name, res, marker in ((axes[0], "grid", grid, "s"), (axes[1], "random", rand, "o")):
        xs = [c[x] for c in res.configs]
        ys = [c[y] for c in res.configs]
        sc = ax.scatter(xs, ys, c=res.scores, cmap="viridis", vmin=vmin, vmax=vmax, s=70,
                        marker=marker, edgecolors="k", linewidths=0.5)
        for v in set(xs):
            ax.axvline(v, ymax=0.04, color=color(name), lw=2)
        best = res.best_config
        ax.scatter([best[x]], [best[y]], s=220, facecolors="none", edgecolors="red", linewidths=1.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.margins(0.08)
        ax.set_xlabel(f"{x} (important)")
        ax.set_ylabel(f"{y} (unimportant)")
        ax.set_title(f"{name}: {len(set(xs))} distinct {x} values, best {res.best_score:.3f}")
    fig.colorbar(sc, ax=axes[1], label=score_name)
    ax = axes[2]
    for name, res, marker in (("grid", grid, "s"), ("random", rand, "o")):
        ax.scatter([c[x] for c in res.configs], res.scores, marker=marker, color=color(name),
                   label=name, s=40, alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(score_name)
    ax.set_title(f"score along {x}")
    ax.legend()
    return fig


def _finished(study: optuna.Study) -> list:
    return sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                  key=lambda t: t.value, reverse=True)


def top_trials_summary(study: optuna.Study, k: int = 5, worst: int = 3, chance: float = 0.1,
                       agree_on=("n_layers", "optimizer")) -> str:
    """What the ``k`` best trials of ``study`` have in common, and how bad the ``worst`` are.

    Which configurations TPE proposes depends on every earlier score, down to the last bit of the
    floating-point path, so the exact list of trials is not something to rely on; what the best
    trials agree on is. For each categorical setting (number of layers, optimizer) the value most
    of the ``k`` share, if one does (an exact count such as 5 or 4 of 5 flips with the path); the
    learning rates of the trials with the most common optimizer, as powers of 10 (each optimizer
    has its own range, so they are compared within one); the best scores to 2 digits; and whether
    the worst trials sit at ``chance``.
    """
    trials = _finished(study)
    if len(trials) < k + worst:
        raise ValueError(f"the study has {len(trials)} complete trials; need k + worst = "
                         f"{k + worst}")
    top, bottom = trials[:k], trials[-worst:]
    lines = [f"the {k} best trials: validation accuracy {top[-1].value:.2f} to {top[0].value:.2f}"]
    for name in agree_on:
        values = [t.params[name] for t in top]
        common = max(dict.fromkeys(values), key=values.count)  # ties: the first seen
        n = values.count(common)
        lines.append(f"  {name:10s} {common} in most of the {k}" if n > k // 2 else
                     f"  {name:10s} mixed: {', '.join(sorted(set(map(str, values))))}")
    names = [t.params["optimizer"] for t in top]
    optimizer = max(dict.fromkeys(names), key=names.count)
    lrs = [t.params[lr_name(optimizer, t.params)] for t in top
           if t.params["optimizer"] == optimizer]
    lo, hi = math.floor(math.log10(min(lrs))), math.ceil(math.log10(max(lrs)))
    lines.append(f"  {'lr':10s} of the {optimizer} trials: between 1e{lo} and 1e{hi}")
    at_chance = sum(t.value < 2 * chance for t in bottom)
    lines.append(f"the {worst} worst trials: {at_chance} of {worst} below {2 * chance:.1f} "
                 f"(chance is {chance:.1f})")
    return "\n".join(lines)


def hit_rates(study: optuna.Study, threshold: float = 0.9, startup: int = 10) -> str:
    """Whether more than half of the random start-up trials, and of the later (TPE) trials,
    scored above ``threshold``. Printed as "more / not more than half" rather than as counts:
    scores near the threshold cross it on another floating-point path (0.886 and 0.892 of the
    start-up trials did), and the later configurations depend on every earlier score."""
    scores = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(scores) <= startup:
        raise ValueError(f"need more than {startup} complete trials, got {len(scores)}")
    first, rest = scores[:startup], scores[startup:]

    def share(values):
        hits = sum(v > threshold for v in values)
        return f"{'more' if hits > len(values) / 2 else 'not more'} than half of {len(values)}"

    return (f"trials 0-{startup - 1} (random start-up): {share(first)} above {threshold}\n"
            f"trials {startup}-{len(scores) - 1} (TPE proposals):   {share(rest)} above "
            f"{threshold}")


def pruning_summary(study: optuna.Study, epochs: int, warmup: int = 3,
                    pruned_at_least: float = 1 / 3, saved_at_least: float = 0.2) -> str:
    """How many trials the pruner stopped and what that saved, as bounds that hold or not.

    Exact counts depend on which configurations TPE proposed (a chaotic, path-dependent search):
    with the chapter's space, 8, 7, 16 and 15 of 30 trials were pruned with sampler seeds 0 to 3.
    So this prints whether at least
    ``pruned_at_least`` of the trials were pruned, whether most of them were stopped at the first
    epoch the pruner may judge (``warmup``), and whether at least ``saved_at_least`` of the
    epochs were saved.
    """
    finished = [t for t in study.trials if t.state.is_finished()]
    stopped = [t for t in finished if t.state == optuna.trial.TrialState.PRUNED]
    if not finished:
        raise ValueError("the study has no finished trials")
    at_warmup = sum(int(t.user_attrs.get("epochs_run", 0)) == warmup for t in stopped)
    used = sum(int(t.user_attrs.get("epochs_run", 0)) for t in finished
               if t.state != optuna.trial.TrialState.FAIL)
    budget = len(finished) * epochs
    saved = 1 - used / budget

    def bound(ok):
        return "at least" if ok else "less than"

    return (f"pruned {bound(len(stopped) >= pruned_at_least * len(finished))} "
            f"{_fraction(pruned_at_least)} of the {len(finished)} trials, "
            f"{'most' if at_warmup > len(stopped) / 2 else 'a minority'} of them at epoch {warmup} "
            f"(the first epoch the pruner may judge)\n"
            f"epochs trained: {bound(saved >= saved_at_least)} {saved_at_least:.0%} fewer than the "
            f"{budget} of the study without pruning")


def _fraction(x: float) -> str:
    names = {1 / 2: "half", 1 / 3: "a third", 1 / 4: "a quarter", 1 / 5: "a fifth"}
    return next((name for v, name in names.items() if math.isclose(x, v)), f"{x:.0%}")


#: The parameters every trial of :data:`nncourse.search.SEARCH_SPACE` has (``units_0`` is the
#: first layer's width); the others (``units_1``, ``units_2``, ``lr_<optimizer>``) are conditional.
COMMON_PARAMS = ("n_layers", "units_0", "activation", "dropout", "optimizer")


def _complete(study: optuna.Study) -> list:
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def main_optimizer(study: optuna.Study) -> tuple[str, int]:
    """The optimizer most complete trials of ``study`` used, and how many (ties: the first seen)."""
    names = [t.params["optimizer"] for t in _complete(study)]
    if not names:
        raise ValueError("the study has no complete trials")
    name = max(dict.fromkeys(names), key=names.count)
    return name, names.count(name)


def fanova_importances(study: optuna.Study, seed: int = 0) -> tuple[dict, dict, str]:
    """fANOVA importances of ``study`` two ways: ``(across, within, optimizer)``.

    ``across``: Optuna's default for ``params=None`` -- only the parameters *every* complete trial
    has (:data:`COMMON_PARAMS`); conditional parameters such as ``lr_adam`` are left out, because
    a random forest needs a value of each input for every trial.
    ``within``: the same, restricted (``params=[..., "lr_<optimizer>"]``, which keeps only the
    trials that have all of them) to the trials of the optimizer used most (:func:`main_optimizer`),
    so that its learning rate is ranked against the rest. Both are seeded (the forest is random).
    """
    optimizer, _ = main_optimizer(study)
    get = optuna.importance.get_param_importances
    across = get(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    params = [p for p in COMMON_PARAMS if p != "optimizer"] + [f"lr_{optimizer}"]
    within = get(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed),
                 params=params)
    return dict(across), dict(within), optimizer


def importance_scope(study: optuna.Study, across: dict) -> str:
    """Which parameters ``across`` (fANOVA with ``params=None``) ranked and which it left out.

    Unlike the importances themselves, this does not depend on the path TPE took: the random
    start-up trials already use every optimizer and every number of layers.
    """
    seen = sorted({p for t in _complete(study) for p in t.params})
    left = [p for p in seen if p not in across]
    lrs = [p for p in left if p.startswith("lr_")]
    rest = [p for p in left if not p.startswith("lr_")]
    ranked = sum(p.startswith("lr_") for p in across)
    return "\n".join([f"ranked by fANOVA (params=None): {', '.join(sorted(across))}",
                      f"left out, not in every trial: {', '.join(lrs + rest)}",
                      f"learning rates ranked: {ranked} of {ranked + len(lrs)}"])


def plot_importances(across: dict, within: dict, optimizer: str, n_trials: int):
    """Two bar charts: fANOVA importances over every trial (the parameters all trials share), and
    within the ``n_trials`` trials of ``optimizer``, where its learning rate can be ranked."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), layout="constrained")
    for ax, values, title in ((axes[0], across, "all trials: parameters every trial has"),
                              (axes[1], within, f"the {n_trials} trials with {optimizer}")):
        names = sorted(values, key=values.get)
        ax.barh(names, [values[n] for n in names],
                color=["#d62728" if n.startswith("lr") else "#1f77b4" for n in names])
        ax.set_xlim(0, 1)
        ax.set_xlabel("fANOVA importance (sums to 1)")
        ax.set_title(title)
    fig.suptitle("Hyperparameter importances of the TPE study (red: a learning rate)")
    return fig


def run_workers(n_workers: int = 2, n_trials: int = 4, epochs: int = 5,
                dataset: str = "digits",
                study_name: str = "shared") -> tuple[list[str], optuna.Study]:
    """Start ``n_workers`` processes of ``python -m nncourse tune`` on one new SQLite study.

    All workers are started with ``--create`` at once (creating is race-free).
    Each worker gets its own sampler seed (1, 2, ...) and runs ``n_trials`` trials of
    ``epochs`` epochs on ``dataset`` (a name the ``tune`` command knows). Returns each worker's
    last line of output and an in-memory copy of the shared study (the temporary database is
    deleted). Which worker runs which trial depends on timing, so the result differs from run to
    run.
    """
    workdir = tempfile.mkdtemp(prefix="nncourse-study-")
    try:
        storage = f"sqlite:///{workdir}/chapter11.db"
        # every worker is started with --create at the same moment: the first to get there
        # creates the database and the study, the others join it
        # (nncourse.search.create_or_load_study)
        command = [sys.executable, "-m", "nncourse", "tune", "--study", study_name,
                   "--storage", storage, "--create", "--n-trials", str(n_trials),
                   "--epochs", str(epochs), "--dataset", dataset]
        workers = [subprocess.Popen(command + ["--seed", str(seed)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
                   for seed in range(1, n_workers + 1)]
        messages = []
        for worker in workers:
            out, err = worker.communicate()
            messages.append(out.strip() or err.strip())
        memory = optuna.storages.InMemoryStorage()
        optuna.copy_study(from_study_name=study_name, from_storage=storage, to_storage=memory)
        return messages, optuna.load_study(study_name=study_name, storage=memory)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def trials_by_worker(study: optuna.Study) -> list[list[int]]:
    """The trial numbers each worker ran, in the order the workers first appear."""
    by_worker: dict = {}
    for t in study.trials:
        by_worker.setdefault(t.user_attrs.get("worker"), []).append(t.number)
    return list(by_worker.values())


def plot_intermediate(study: optuna.Study, epochs: int, chance: float = 0.1, ax=None):
    """Each trial's validation accuracy per epoch (the 1-based epochs :class:`PruningCallback`
    reports as steps): completed trials as solid lines, pruned ones
    dashed and ending in a cross where the pruner stopped them; chance level as a dotted line."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4))
    done = pruned = 0
    for t in study.trials:
        steps = sorted(t.intermediate_values)
        if not steps:
            continue
        xs, ys = steps, [t.intermediate_values[s] for s in steps]  # steps are epochs 1, 2, ...
        if t.state == optuna.trial.TrialState.PRUNED:
            pruned += 1
            ax.plot(xs, ys, ls="--", lw=1.2, color="#d62728", alpha=0.8,
                    label="pruned" if pruned == 1 else None)
            ax.plot(xs[-1], ys[-1], "x", ms=8, mew=2, color="#d62728")
        else:
            done += 1
            ax.plot(xs, ys, lw=1.2, color="#1f77b4", alpha=0.6,
                    label="completed" if done == 1 else None)
    ax.axhline(chance, ls=":", color="0.4", lw=1, label=f"chance ({chance:g})")
    ax.set_xlim(0.8, epochs + 0.2)
    ax.set_xticks(range(1, epochs + 1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{done} completed and {pruned} pruned trials (x: where the pruner stopped one)")
    ax.legend(loc="lower right")
    return ax


def plot_worker_timeline(study: optuna.Study, ax=None):
    """One bar per trial from its start to its end, in seconds since the first trial started,
    one row per trial, coloured by the worker that ran it (hatched: pruned)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    trials = [t for t in study.trials if t.datetime_start and t.datetime_complete]
    if not trials:
        raise ValueError("the study has no finished trials")
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.35 * len(trials) + 1.2))
    t0 = min(t.datetime_start for t in trials)
    workers = list(dict.fromkeys(t.user_attrs.get("worker") for t in trials))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for t in trials:
        i = workers.index(t.user_attrs.get("worker"))
        start = (t.datetime_start - t0).total_seconds()
        length = (t.datetime_complete - t.datetime_start).total_seconds()
        ax.barh(t.number, length, left=start, color=palette[i % len(palette)], edgecolor="k",
                hatch="//" if t.state == optuna.trial.TrialState.PRUNED else None)
    ax.set_yticks([t.number for t in trials])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first trial started")
    ax.set_ylabel("trial")
    handles = [Patch(color=palette[i % len(palette)], label=f"worker {i + 1}")
               for i in range(len(workers))]
    handles.append(Patch(facecolor="white", edgecolor="k", hatch="//", label="pruned"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
