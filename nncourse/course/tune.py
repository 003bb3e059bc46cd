"""``python -m nncourse tune``: a hyperparameter-tuning worker joining a study kept in a database.

Start the same command in several terminals (or on several machines, with a PostgreSQL/MySQL URL):
each worker runs trials of chapter 11's search space (:mod:`nncourse.search`) for the shared study.
Any number of workers may start with ``--create`` at once (creating is race-free); without it a
missing study or SQLite file is an error and nothing is created.

Which storage: SQLite (``sqlite:///study.db``) for one machine only -- one writer at a time, and its
file locking is unreliable on network file systems; PostgreSQL (``pip install psycopg``,
``postgresql+psycopg://user:password@host/dbname``) or MySQL (``pip install pymysql``) for many
machines; with only a shared file system, Optuna's ``JournalStorage`` from Python instead (it has
no URL). tests/course/test_tune.py runs two workers against a throwaway PostgreSQL server.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

import optuna

from nncourse.search import (
    TuneError,
    _check_trials,
    create_or_load_study,
    load_study,
    make_objective,
    quiet,
)

__all__ = ["DATASETS", "add_arguments", "run"]

DATASETS = {"digits": "load_digits", "moons": "load_moons", "circles": "load_circles",
            "breast_cancer": "load_breast_cancer"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("A tuning worker: run trials of the chapter-11 search space for a study "
                          "kept in a database. Start the same command in several terminals (or on "
                          "several machines, with a PostgreSQL/MySQL URL) to search together. "
                          "SQLite is for one machine; for PostgreSQL install its driver: "
                          "pip install psycopg.")
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--storage", required=True,
                        help="database URL, e.g. sqlite:///study.db (one machine) or "
                             "postgresql+psycopg://user:password@host/dbname (many machines)")
    parser.add_argument("--n-trials", type=int, default=10, help="trials this worker runs")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    parser.add_argument("--seed", type=int, default=None,
                        help="sampler seed (give each worker a different one)")
    parser.add_argument("--create", action="store_true",
                        help="create the database and study if they do not exist yet (safe "
                             "to give every worker: they join the first one's study)")


def run(args: argparse.Namespace) -> int:
    import nncourse
    from nncourse import data as datasets

    quiet()
    nncourse.setup(threads=1, style=False)
    try:
        _check_trials(args.n_trials)
        if args.epochs < 1:
            raise TuneError(f"--epochs must be a positive integer, got {args.epochs}")
        if args.create:
            study = create_or_load_study(args.study, args.storage, seed=args.seed)
        else:
            study = load_study(args.study, args.storage, seed=args.seed)
    except (TuneError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    data = getattr(datasets, DATASETS[args.dataset])()
    objective = make_objective(data, epochs=args.epochs)
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def tagged(trial):  # record which worker ran each trial
        trial.set_user_attr("worker", worker)
        return objective(trial)

    study.optimize(tagged, n_trials=args.n_trials)
    states = [t.state for t in study.trials]
    n_done = states.count(optuna.trial.TrialState.COMPLETE)
    n_pruned = states.count(optuna.trial.TrialState.PRUNED)
    best = f"{study.best_value:.3f}" if n_done else "none yet"
    print(f"worker done: {args.n_trials} trials run; study {args.study!r} has {len(states)} "
          f"trials ({n_done} complete, {n_pruned} pruned); best validation accuracy {best}")
    return 0
