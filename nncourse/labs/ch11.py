"""Chapter 11's experiments: grid vs random search on the default network, and workers sharing a
study.

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
    create_study,
    fit,
    grid_search,
    log_grid,
    random_search,
)

__all__ = ["LR_WD_SPACE", "grid_vs_random", "plot_grid_vs_random", "run_workers",
           "trials_by_worker"]

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


def run_workers(n_workers: int = 2, n_trials: int = 4, epochs: int = 5,
                dataset: str = "digits",
                study_name: str = "shared") -> tuple[list[str], optuna.Study]:
    """Start ``n_workers`` processes of ``python -m nncourse tune`` on one new SQLite study.

    Each worker gets its own sampler seed (1, 2, ...) and runs ``n_trials`` trials of
    ``epochs`` epochs on ``dataset`` (a name the ``tune`` command knows). Returns each worker's
    last line of output and an in-memory copy of the shared study (the temporary database is
    deleted). Which worker runs which trial depends on timing, so the result differs from run to
    run.
    """
    workdir = tempfile.mkdtemp(prefix="nncourse-study-")
    try:
        storage = f"sqlite:///{workdir}/chapter11.db"
        create_study(study_name, storage)  # created once; the workers join it
        command = [sys.executable, "-m", "nncourse", "tune", "--study", study_name,
                   "--storage", storage, "--n-trials", str(n_trials), "--epochs", str(epochs),
                   "--dataset", dataset]
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
