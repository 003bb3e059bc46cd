"""Hyperparameter search: one search space, three ways to search it, and pruning of bad trials.

A *configuration* is a plain dict that :func:`fit` turns into a trained MLP::

    {"units": [64, 32], "activation": "relu", "dropout": 0.2, "optimizer": "adam", "lr": 1e-3}

(``len(units)`` is the number of hidden layers). The search space :data:`SEARCH_SPACE` is
modelled on the Keras-Tuner articles' -- number of layers, units per layer, activation, dropout --
plus what they leave out, the optimizer and its learning rate on a log scale. The learning rate's
range depends on the optimizer (:data:`LR_RANGES`; one parameter ``lr_adam``, ``lr_sgd``... per
optimizer), because good learning rates of SGD, Adam and Adadelta lie decades apart: with one
shared range, an optimizer would look bad only because most of that range is wrong for it. It is
written with Optuna's own distribution classes, so one description serves both searches:

* :func:`suggest_config` asks an Optuna ``trial`` for each value (``trial.suggest_int`` ...), so
  Optuna's samplers (TPE, random, grid) and pruners drive the search;
* :func:`sample_config` draws each value with a NumPy generator: :func:`random_search` and
  :func:`grid_search` from scratch.

:func:`make_objective` is the Optuna objective: it trains one configuration with
:func:`nncourse.training.train` and reports the validation accuracy after every epoch through
:class:`PruningCallback`, so a pruner (median, Hyperband) can stop a trial that is doing worse than
the others at the same epoch. :func:`create_study` / :func:`load_study` keep a study in a database,
so several worker processes (``python -m nncourse tune``, :mod:`nncourse.course.tune`) search one
study together.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import optuna
import torch
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from nncourse._validate import check_int
from nncourse.data import Dataset
from nncourse.env import progress
from nncourse.models import make_mlp
from nncourse.training import Callback, History, train

__all__ = ["SEARCH_SPACE", "LR_RANGES", "DEFAULT_CONFIG", "quiet", "optuna_style", "suggest",
           "sample", "lr_name", "draw_config", "suggest_config", "sample_config",
           "config_from_params", "describe", "fit", "PruningCallback", "make_objective",
           "epochs_used", "random_search", "grid_search", "SearchResult", "log_grid",
           "create_study", "load_study", "open_storage", "create_or_load_study", "TuneError"]

#: The learning-rate range of each optimizer, ``(low, high)``, drawn log-uniformly. All span the
#: same three decades, so no optimizer gets a larger share of bad values than another, centred on
#: where each is usually run:
#:
#: * Adam, NAdam and RMSprop divide the gradient by its running RMS, so a step moves each weight by
#:   about ``lr`` whatever the gradient's scale: 1e-4 to 0.1, around the usual 1e-3;
#: * Adadelta's ``lr`` multiplies a step that is already in the units of the weights (Zeiler's
#:   original method has no learning rate, i.e. 1.0, torch's default): 0.01 to 10, around 1;
#: * plain SGD (no momentum here) moves by ``lr`` times the gradient, so its learning rate has to
#:   make up for small gradients: 1e-3 to 1, around the usual 0.01-0.1.
LR_RANGES: dict[str, tuple[float, float]] = {
    "rmsprop": (1e-4, 1e-1), "adam": (1e-4, 1e-1), "sgd": (1e-3, 1.0), "nadam": (1e-4, 1e-1),
    "adadelta": (1e-2, 10.0)}

#: The chapter's search space. ``units`` is drawn once *per hidden layer* (``units_0``, ...) and
#: the learning rate once, from the range of the optimizer just drawn (``lr_adam``, ...).
SEARCH_SPACE: dict[str, BaseDistribution] = {
    "n_layers": IntDistribution(1, 3),
    "units": IntDistribution(8, 128, log=True),
    "activation": CategoricalDistribution(("relu", "tanh", "sigmoid")),
    "dropout": FloatDistribution(0.1, 0.6),
    "optimizer": CategoricalDistribution(tuple(LR_RANGES)),
    **{f"lr_{name}": FloatDistribution(low, high, log=True)
       for name, (low, high) in LR_RANGES.items()},
}

#: What one writes before tuning anything: two hidden layers of 32 ReLUs, dropout 0.2 and Adam with
#: its default learning rate (the default of both torch.optim.Adam and Keras).
DEFAULT_CONFIG: dict = {"units": [32, 32], "activation": "relu", "dropout": 0.2,
                        "optimizer": "adam", "lr": 1e-3}

_CONFIG_KEYS = ("units", "activation", "dropout", "optimizer", "lr")


def quiet() -> None:
    """Silence Optuna's per-trial log lines and its ExperimentalWarning (plots, importances).

    Notebook outputs are compared as text, so the INFO line Optuna prints for every trial (with a
    timestamp) and warnings printed to stderr would make them differ between runs.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Some Optuna plots call fig.tight_layout() on the course's constrained-layout figures.
    warnings.filterwarnings("ignore", message="The figure layout has changed to tight")


@contextmanager
def optuna_style() -> Iterator[None]:
    """Draw ``optuna.visualization.matplotlib`` plots inside this block; the course style returns.

    Each of those plot functions calls ``plt.style.use("ggplot")``, which would change the look of
    every later figure of the session. Inside the block the plots draw in Optuna's own style; on
    leaving it, matplotlib's settings are restored as they were (``plt.rc_context``)::

        with search.optuna_style():
            ax = optuna.visualization.matplotlib.plot_optimization_history(study)
            plt.show()
    """
    import matplotlib.pyplot as plt

    with plt.rc_context():
        yield


# --- one search space, two ways to draw from it ----------------------------------------------

def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution):
    """Ask ``trial`` for parameter ``name`` from ``dist`` with the matching ``trial.suggest_*``."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    raise TypeError(f"unsupported distribution for {name!r}: {dist!r}")


def sample(dist: BaseDistribution, rng: np.random.Generator):
    """Draw one value from ``dist`` with a NumPy generator (what a random sampler does).

    Categorical: each choice equally likely. Float: uniform on ``[low, high]``, or uniform in
    ``log`` space when ``log=True`` (so 1e-4..1e-3 is as likely as 0.1..1). Int: the same on
    ``[low - 0.5, high + 0.5]``, rounded, so each end gets its fair share.
    """
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    if isinstance(dist, FloatDistribution):
        if dist.log:
            return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
        return float(rng.uniform(dist.low, dist.high))
    if isinstance(dist, IntDistribution):
        lo, hi = dist.low - 0.5, dist.high + 0.5
        x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if dist.log else rng.uniform(lo, hi)
        return int(min(max(round(x), dist.low), dist.high))
    raise TypeError(f"unsupported distribution: {dist!r}")


_SPACE_KEYS = ("n_layers", "units", "activation", "dropout", "optimizer")


def lr_name(optimizer: str, space: Mapping[str, BaseDistribution] = SEARCH_SPACE) -> str:
    """The name of the learning-rate parameter for ``optimizer`` in ``space``.

    ``lr_<optimizer>`` (e.g. ``lr_adam``) when the space gives that optimizer its own range, as
    :data:`SEARCH_SPACE` does; ``lr`` when the space has one range shared by every optimizer.
    """
    own = f"lr_{optimizer}"
    return own if own in space else "lr"


def _check_space(space: Mapping) -> None:
    if not isinstance(space, Mapping):
        raise TypeError(f"search space must be a dict of optuna distributions, got "
                        f"{type(space).__name__}")
    missing = [k for k in _SPACE_KEYS if k not in space]
    if missing:
        raise ValueError(f"search space is missing {', '.join(missing)}; it needs the keys "
                         f"{', '.join(_SPACE_KEYS)} and a learning rate (lr_<optimizer> for "
                         f"each optimizer, or one shared lr)")
    for name, dist in space.items():
        if not isinstance(dist, BaseDistribution):
            raise TypeError(f"search space entry {name!r} must be an optuna distribution "
                            f"(FloatDistribution, IntDistribution, CategoricalDistribution), "
                            f"got {type(dist).__name__}")
    optimizers = getattr(space["optimizer"], "choices", ())
    no_lr = [str(o) for o in optimizers if lr_name(o, space) not in space]
    if no_lr:
        raise ValueError(f"search space is missing a learning rate for {', '.join(no_lr)}: give "
                         f"{', '.join('lr_' + o for o in no_lr)} (one range per optimizer) or "
                         "one shared lr")


def draw_config(draw: Callable[[str, BaseDistribution], object],
                space: Mapping[str, BaseDistribution] = SEARCH_SPACE) -> dict:
    """Build a configuration by calling ``draw(name, distribution)`` for each hyperparameter.

    The space is *conditional* (define-by-run): the number of layers is drawn first, then one
    ``units_i`` per layer, so a 1-layer network has no ``units_1``; the optimizer is drawn before
    its learning rate, ``lr_<optimizer>`` from that optimizer's range (:func:`lr_name`), so a
    trial with Adam has an ``lr_adam`` and no ``lr_sgd``.
    """
    _check_space(space)
    n_layers = draw("n_layers", space["n_layers"])
    config = {"units": [draw(f"units_{i}", space["units"]) for i in range(n_layers)],
              "activation": draw("activation", space["activation"]),
              "dropout": draw("dropout", space["dropout"]),
              "optimizer": draw("optimizer", space["optimizer"])}
    name = lr_name(config["optimizer"], space)
    config["lr"] = draw(name, space[name])
    return config


def suggest_config(trial: optuna.Trial, space: Mapping = SEARCH_SPACE) -> dict:
    """A configuration suggested by an Optuna trial (its sampler picks the values)."""
    return draw_config(lambda name, dist: suggest(trial, name, dist), space)


def sample_config(rng: np.random.Generator, space: Mapping = SEARCH_SPACE) -> dict:
    """A configuration drawn uniformly at random (log-uniformly where ``log=True``)."""
    return draw_config(lambda name, dist: sample(dist, rng), space)


def config_from_params(params: Mapping) -> dict:
    """Turn Optuna's flat ``trial.params`` (``n_layers``, ``units_0``, ``lr_adam``...) back into a
    config (``lr`` is read from ``lr_<optimizer>``, or from a shared ``lr``)."""
    try:
        n = int(params["n_layers"])
        config = {"units": [int(params[f"units_{i}"]) for i in range(n)],
                  **{k: params[k] for k in ("activation", "dropout", "optimizer")}}
        name = lr_name(config["optimizer"], params)
        if name not in params:
            raise KeyError(f"lr_{config['optimizer']}")
        config["lr"] = params[name]
        return config
    except KeyError as err:
        raise ValueError(f"params lack {err.args[0]!r}; expected the parameters that "
                         f"suggest_config records, got {sorted(params)}") from None


def _validate_config(config: Mapping) -> None:
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    missing = [k for k in _CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"config is missing {', '.join(missing)}; a config has the keys "
                         f"{', '.join(_CONFIG_KEYS)}")
    units = config["units"]
    if (isinstance(units, (str, bytes)) or not isinstance(units, Sequence) or not units
            or not all(isinstance(u, (int, np.integer)) and u >= 1 for u in units)):
        raise ValueError(f"config['units'] must be a non-empty list of positive integers (one per "
                         f"hidden layer), got {units!r}")


def describe(config: Mapping) -> str:
    """One short line, e.g. ``2 x [64, 32] relu, dropout 0.20, adam lr 0.001``."""
    _validate_config(config)
    return (f"{len(config['units'])} x {list(map(int, config['units']))} {config['activation']}, "
            f"dropout {config['dropout']:.2f}, {config['optimizer']} lr {config['lr']:.3g}")


# --- training one configuration --------------------------------------------------------------

def fit(config: Mapping, data: Dataset, epochs: int = 10, seed: int = 0, batch_size: int = 64,
        callbacks: Sequence[Callback] = ()) -> tuple[torch.nn.Module, History]:
    """Build the MLP of ``config`` and train it on ``data``; return ``(model, history)``.

    ``config`` may also hold ``"weight_decay"`` (L2 penalty for the optimizer, default 0).

    Weights (He init for ReLU, Xavier otherwise), dropout masks and batch order all come from
    ``seed``, so the same configuration always gives the same score -- without this, tuning would
    partly be picking the luckiest seed. The global random state is left untouched.
    """
    _validate_config(config)
    init = "he_normal" if config["activation"] == "relu" else "xavier_normal"
    model = make_mlp(data.n_features, data.n_classes, width=[int(u) for u in config["units"]],
                     activation=config["activation"], dropout=float(config["dropout"]),
                     init=init, seed=seed)  # seeds the weights without touching the global RNG
    # Dropout masks come from torch's global generator: seed it, inside a fork so that the
    # caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        history = train(model, data, epochs=epochs, lr=float(config["lr"]),
                        optimizer=config["optimizer"], batch_size=batch_size, seed=seed,
                        callbacks=callbacks,
                        weight_decay=float(config.get("weight_decay", 0.0)))
    return model, history


class PruningCallback(Callback):
    """Report the validation accuracy to an Optuna trial after each epoch; prune if told to.

    ``trial.report(value, epoch)`` stores the intermediate value; ``trial.should_prune()`` asks
    the study's pruner whether this trial is worse than the others were at the same epoch, and if
    so we raise :class:`optuna.TrialPruned` to stop training. ``trial.user_attrs["epochs_run"]``
    records how many epochs were trained, to count the compute a pruner saved.
    """

    def __init__(self, trial: optuna.Trial, metric: str = "val_acc"):
        if metric not in ("val_acc", "val_loss"):
            raise ValueError(f"metric must be 'val_acc' or 'val_loss', got {metric!r}")
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, model, epoch, history):
        self.trial.set_user_attr("epochs_run", epoch)
        self.trial.report(getattr(history, self.metric)[-1], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")


def make_objective(data: Dataset, epochs: int = 10, space: Mapping = SEARCH_SPACE,
                   seed: int = 0) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: validation accuracy after ``epochs`` epochs of a suggested config.

    Use it as ``study.optimize(make_objective(data), n_trials=30)`` with
    ``direction="maximize"``. It never looks at the test split.
    """
    check_int(epochs, "epochs", fn="make_objective")
    _check_space(space)

    def objective(trial: optuna.Trial) -> float:
        config = suggest_config(trial, space)
        _, history = fit(config, data, epochs=epochs, seed=seed,
                         callbacks=[PruningCallback(trial)])
        return history.val_acc[-1]

    return objective


def epochs_used(study: optuna.Study) -> int:
    """Total epochs trained by the study's finished (complete or pruned) trials."""
    return sum(int(t.user_attrs.get("epochs_run", 0)) for t in study.trials
               if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


# --- searching without Optuna ----------------------------------------------------------------

@dataclass
class SearchResult:
    """Every configuration tried, with its score, in order; ``best`` is the highest score."""

    configs: list = field(default_factory=list)
    scores: list = field(default_factory=list)

    @property
    def best_index(self) -> int:
        if not self.scores:
            raise ValueError("no configurations were evaluated")
        return int(np.argmax(self.scores))

    @property
    def best_config(self):
        return self.configs[self.best_index]

    @property
    def best_score(self) -> float:
        return float(self.scores[self.best_index])


def _check_trials(n_trials) -> None:
    check_int(n_trials, "n_trials")


def random_search(score: Callable[[dict], float], space: Mapping[str, BaseDistribution],
                  n_trials: int, seed: int = 0) -> SearchResult:
    """Random search from scratch: draw each hyperparameter independently, keep the best.

    ``space`` maps names to distributions (any names: a flat space, not :data:`SEARCH_SPACE`'s
    per-layer units); ``score(config)`` returns a number to maximize.
    """
    _check_trials(n_trials)
    rng = np.random.default_rng(seed)
    result = SearchResult()
    for _ in progress(range(n_trials), desc="random search", unit="trial"):
        config = {name: sample(dist, rng) for name, dist in space.items()}
        result.configs.append(config)
        result.scores.append(float(score(config)))
    return result


def grid_search(score: Callable[[dict], float], grid: Mapping[str, Sequence]) -> SearchResult:
    """Try every combination of the values in ``grid`` (``{name: [values]}``)."""
    import itertools

    if not grid or any(len(v) == 0 for v in grid.values()):
        raise ValueError("grid must map each name to a non-empty list of values")
    result = SearchResult()
    names = list(grid)
    for values in progress(itertools.product(*(grid[n] for n in names)), desc="grid search",
                           total=math.prod(len(grid[n]) for n in names), unit="trial"):
        config = dict(zip(names, values))
        result.configs.append(config)
        result.scores.append(float(score(config)))
    return result


def log_grid(dist: BaseDistribution, n: int) -> list:
    """``n`` evenly spaced values across ``dist`` (in log space when ``dist.log``)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    lo, hi = dist.low, dist.high
    values = np.geomspace(lo, hi, n) if dist.log else np.linspace(lo, hi, n)
    if isinstance(dist, IntDistribution):
        return sorted({int(round(v)) for v in values})
    return [float(v) for v in values]


class TuneError(Exception):
    """A problem with the worker's arguments (bad storage URL, unknown study)."""


def _safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


#: How many times :func:`open_storage` tries to set up a database that other workers are setting
#: up at the same moment (each try waits a little longer, with jitter, about 10 s in all).
_CREATE_ATTEMPTS = 10


def _sqlite_file(url: str) -> str | None:
    """The file behind a ``sqlite:///`` URL (``None`` for other databases and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def _is_creation_race(err: BaseException) -> bool:
    """Whether ``err`` is another worker creating the same tables or rows at the same moment."""
    from sqlalchemy import exc

    text = str(err).lower()
    return isinstance(err, exc.IntegrityError) or (
        isinstance(err, exc.DBAPIError)
        and any(hint in text for hint in ("already exists", "duplicate", "database is locked")))


def _storage_error(url: str, err: BaseException, raced: bool = False) -> TuneError:
    """One honest sentence for a storage that could not be opened, by what went wrong."""
    from sqlalchemy import exc

    where = f"cannot open storage {_safe_url(url)}"
    reason = (str(err).splitlines()[0] if str(err) else type(err).__name__).rstrip(". ")
    if isinstance(err, exc.NoSuchModuleError):
        return TuneError(f"{where}: SQLAlchemy knows no database or driver of that name "
                         f"({reason}); use sqlite:///, postgresql+psycopg:// or mysql+pymysql://")
    if isinstance(err, ImportError):
        return TuneError(f"{where}: its database driver is not installed ({reason}); for "
                         "PostgreSQL run `pip install psycopg` and use a postgresql+psycopg:// "
                         "URL, for MySQL `pip install pymysql` and mysql+pymysql://")
    if isinstance(err, exc.ArgumentError):
        return TuneError(f"{where}: not a valid database URL ({reason})")
    if raced:
        return TuneError(f"{where}: other workers kept changing the database while this one set "
                         f"it up ({reason}); start this worker again")
    if isinstance(err, exc.OperationalError) and _sqlite_file(url) is not None:
        return TuneError(f"{where}: {reason}. Check that its directory exists and is writable")
    if isinstance(err, exc.OperationalError):
        return TuneError(f"{where}: {reason}. Check the host, port, user, password and database "
                         "name, and that the server is running and reachable")
    return TuneError(f"{where}: {reason}")


def open_storage(url: str, create: bool = True) -> optuna.storages.RDBStorage:
    """Connect to a study database: ``sqlite:///file.db``, ``postgresql+psycopg://...``, ``mysql://...``.

    With ``create`` (the default) a missing SQLite file and Optuna's tables are created; workers
    that do so at the same moment retry (Optuna's table set-up is not atomic: the loser of the race
    gets a unique-constraint error). Without ``create`` a missing SQLite file is an error, so a
    typo in the path does not leave an empty database behind.
    """
    if not isinstance(url, str) or "://" not in url:
        raise TuneError(f"storage must be a database URL such as sqlite:///study.db or "
                        f"postgresql+psycopg://user:password@host/dbname, got {url!r}")
    try:
        path = _sqlite_file(url)
    except Exception as err:  # noqa: BLE001 -- a malformed URL, said in one sentence
        raise _storage_error(url, err) from None
    if not create and path is not None and not os.path.exists(path):
        raise TuneError(f"no study database at {path}; start the first worker with --create, "
                        "or check the path")
    # SQLite allows one writer at a time; wait for the lock instead of failing at once.
    kwargs = {"connect_args": {"timeout": 60}} if path is not None else {}
    rng = random.Random()
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as err:  # noqa: BLE001 -- every failure becomes one sentence
            raced = _is_creation_race(err)
            if not raced or attempt == _CREATE_ATTEMPTS - 1:
                raise _storage_error(url, err, raced=raced) from None
            time.sleep(rng.uniform(0.05, 0.2) * (attempt + 1))
    raise AssertionError("unreachable")


def create_study(name: str, storage: str | optuna.storages.BaseStorage | None = None,
                 seed: int | None = 0, load_if_exists: bool = False,
                 pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """A maximizing study with a seeded TPE sampler and a median pruner (the chapter's choice).

    The pruner lets a trial run 3 epochs before judging it, and judges only after 5 trials have
    finished, so it compares against a meaningful median.
    """
    if isinstance(storage, str):
        storage = open_storage(storage)
    return optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=load_if_exists,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3))


def create_or_load_study(name: str, storage: str, seed: int | None = None) -> optuna.Study:
    """Create the study, or join it when another worker has already created it (race-free).

    Several workers may run this at the same moment on a fresh database: the database set-up is
    retried (:func:`open_storage`) and ``load_if_exists`` turns "someone else created the study
    first" into joining it.
    """
    rdb = open_storage(storage, create=True)
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return create_study(name, rdb, seed=seed, load_if_exists=True)
        except Exception as err:  # noqa: BLE001
            if not _is_creation_race(err) or attempt == _CREATE_ATTEMPTS - 1:
                raise _storage_error(storage, err, raced=_is_creation_race(err)) from None
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
    raise AssertionError("unreachable")


def load_study(name: str, storage: str, seed: int | None = None) -> optuna.Study:
    """Join an existing study; a clear :class:`TuneError` when there is no study of that name.

    Never creates a SQLite file: a path that does not exist is an error.
    """
    rdb = open_storage(storage, create=False)
    names = optuna.get_all_study_names(storage=rdb)
    if name not in names:
        have = ", ".join(sorted(names)) if names else "none"
        raise TuneError(f"no study named {name!r} in {_safe_url(storage)} (studies there: {have}); "
                        "create it with --create, or check the name")
    return create_study(name, rdb, seed=seed, load_if_exists=True)
