"""Checks for chapter 11's exercises (``exercises/11_hyperparameter_tuning.ipynb``).

* 11.1 ``objective(trial, data, epochs)``: an Optuna objective for :data:`EX1_SPACE`;
* 11.2 ``random_search(score, space, n_trials, seed)``: random search from scratch;
* 11.3 ``select_and_test(candidates, data)``: pick on validation, evaluate once on test;
* 11.4 ``top_hit_rate(n_trials, repeats, seed)``: how often random search reaches the top 5 %.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import optuna
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nncourse import search
from nncourse.checks import exercise
from nncourse.data import load_moons

__all__ = ["EX1_SPACE", "ex11_1_objective", "ex11_2_random_search", "ex11_3_select_and_test",
           "ex11_4_random_hits"]

#: The search space of exercise 11.1: one hidden layer, Adam.
EX1_SPACE = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "units": IntDistribution(8, 128, log=True),
    "activation": CategoricalDistribution(("relu", "tanh")),
    "dropout": FloatDistribution(0.0, 0.5),
}


def _fmt_dist(d) -> str:
    if isinstance(d, CategoricalDistribution):
        return f"suggest_categorical with choices {list(d.choices)}"
    kind = "suggest_float" if isinstance(d, FloatDistribution) else "suggest_int"
    return f"{kind} from {d.low:g} to {d.high:g} with log={d.log}"


def ex11_1_objective(objective) -> None:
    """Exercise 11.1: the objective suggests EX1_SPACE, trains with search.fit, reports, returns."""
    with exercise("11.1", points=2, name="Optuna objective") as ex:
        data = load_moons(n_samples=300, seed=11)
        epochs = 3
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=5),
                                    pruner=optuna.pruners.NopPruner())
        for _ in range(2):
            trial = study.ask()
            value = ex.number(ex.call(objective, trial, data, epochs,
                                      call="objective(trial, data, epochs)"),
                              "objective(trial, data, epochs)")
            dists = dict(trial.distributions)
            missing = [n for n in EX1_SPACE if n not in dists]
            ex.true(not missing, f"your objective never suggested {', '.join(map(repr, missing))} "
                    f"(it suggested {sorted(dists) or 'nothing'})",
                    "call trial.suggest_... once for each of lr, units, activation and dropout, "
                    "with exactly those names")
            extra = [n for n in dists if n not in EX1_SPACE]
            ex.true(not extra, f"your objective suggested parameters outside the search space: "
                    f"{', '.join(map(repr, extra))}",
                    "the space has lr, units, activation, dropout")
            for name, expected in EX1_SPACE.items():
                ex.true(dists[name] == expected,
                        f"{name!r} should be drawn with {_fmt_dist(expected)}, but yours used "
                        f"{_fmt_dist(dists[name])}",
                        "values that span decades (learning rate, layer width) need log=True"
                        if getattr(expected, "log", False) else "copy the range from the table")
            p = trial.params
            config = {"units": [p["units"]], "activation": p["activation"],
                      "dropout": p["dropout"], "optimizer": "adam", "lr": p["lr"]}
            _, history = search.fit(config, data, epochs=epochs)
            study.tell(trial, value)
            reported = study.trials[-1].intermediate_values
            ex.close(value, history.val_acc[-1],
                     f"the value returned for {search.describe(config)}", atol=1e-6,
                     hint="return history.val_acc[-1] of search.fit(config, data, epochs=epochs) "
                          "-- the validation accuracy, not the training one")
            ex.true(sorted(reported) == list(range(1, epochs + 1)),
                    f"expected one reported validation accuracy per epoch (epochs 1..{epochs}), "
                    f"got reports at steps {sorted(reported)}",
                    "pass callbacks=[search.PruningCallback(trial)] to search.fit so pruners can "
                    "stop bad trials early")


def _ex2_score(config) -> float:
    # A smooth made-up score with one best region, so checking needs no training.
    return (-(math.log10(config["lr"]) + 2.5) ** 2 - 4 * (config["dropout"] - 0.2) ** 2
            + {"relu": 0.3, "tanh": 0.1, "sigmoid": 0.0}[config["activation"]]
            - 0.1 * abs(config["n_layers"] - 2))


EX2_SPACE = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
    "n_layers": IntDistribution(1, 3),
    "units": IntDistribution(8, 128, log=True),
    "activation": CategoricalDistribution(("relu", "tanh", "sigmoid")),
}


def ex11_2_random_search(random_search) -> None:
    """Exercise 11.2: random search from scratch over optuna distributions."""
    with exercise("11.2", points=2, name="random search") as ex:
        calls: list[dict] = []
        scores: list[float] = []

        def score(config):
            if not isinstance(config, dict):
                ex.fail(f"score() must be called with a dict config, got {type(config).__name__}",
                        "build {name: value for each name in space} and pass that")
            calls.append(dict(config))
            s = _ex2_score(config)
            scores.append(s)
            return s

        n = 400
        out = ex.call(random_search, score, dict(EX2_SPACE), n, 7,
                      call="random_search(score, space, n_trials=400, seed=7)")
        ex.true(isinstance(out, tuple) and len(out) == 2,
                f"expected a tuple (best_config, best_score), got {type(out).__name__}",
                "end with `return best_config, best_score`")
        ex.true(len(calls) == n, f"score() was called {len(calls)} times for n_trials={n}",
                "evaluate exactly one new configuration per trial")
        for c in calls:
            ex.true(set(c) == set(EX2_SPACE), f"a configuration has keys {sorted(c)}, expected "
                    f"{sorted(EX2_SPACE)}", "draw one value for every name in space")
        lr = np.array([c["lr"] for c in calls], dtype=float)
        dropout = np.array([c["dropout"] for c in calls], dtype=float)
        ex.true(lr.min() >= 1e-5 and lr.max() <= 1e-1 and dropout.min() >= 0
                and dropout.max() <= 0.5, "some sampled values fall outside their ranges",
                "stay within [low, high] of each distribution")
        below = float(np.mean(lr < 1e-3))
        ex.true(0.4 <= below <= 0.6,
                f"{below:.0%} of your lr values are below 1e-3, the middle of [1e-5, 1e-1] on a "
                "log scale; a log-uniform draw puts about half there",
                "for log=True draw the exponent uniformly: "
                "math.exp(rng.uniform(math.log(low), math.log(high)))")
        below = float(np.mean(dropout < 0.25))
        ex.true(0.4 <= below <= 0.6,
                f"{below:.0%} of your dropout values are below 0.25, the middle of [0, 0.5]; a "
                "uniform draw puts about half there", "use log space only when dist.log is True")
        layers = [c["n_layers"] for c in calls]
        ex.true(all(isinstance(v, (int, np.integer)) for v in layers)
                and set(int(v) for v in layers) == {1, 2, 3},
                f"n_layers should take each integer 1, 2, 3; yours took {sorted(set(layers))}",
                "rng.integers(low, high + 1) includes high")
        units = [c["units"] for c in calls]
        ex.true(all(isinstance(v, (int, np.integer)) and 8 <= v <= 128 for v in units),
                "units must be integers from 8 to 128, got e.g. "
                f"{next((v for v in units if not isinstance(v, (int, np.integer))), min(units))!r}",
                "round the log-uniform draw and convert it with int(...)")
        below = float(np.mean(np.asarray(units) < 32))
        ex.true(0.4 <= below <= 0.6,
                f"{below:.0%} of your units values are below 32, the middle of [8, 128] on a log "
                "scale; a log-uniform draw puts about half there (and 20% when every integer is "
                "equally likely)",
                "units has log=True: draw a float log-uniformly on [low - 0.5, high + 0.5], "
                "then round it")
        acts = {c["activation"] for c in calls}
        ex.true(acts == set(EX2_SPACE["activation"].choices),
                f"activation should take every choice; yours took {sorted(map(str, acts))}",
                "pick an index with rng.integers(len(dist.choices))")
        # the integers' distribution needs more draws: 4000 trials, sd of a frequency 0.0075
        counts: list[dict] = []
        ex.call(random_search, lambda c: counts.append(dict(c)) or 0.0, dict(EX2_SPACE), 4000, 9,
                call="random_search(score, space, n_trials=4000, seed=9)")
        freq = {k: float(np.mean([int(c["n_layers"]) == k for c in counts])) for k in (1, 2, 3)}
        ex.true(len(counts) == 4000 and all(abs(f - 1 / 3) < 0.04 for f in freq.values()),
                "over 4000 draws n_layers (1..3, log=False) came out "
                + ", ".join(f"{k}: {f:.1%}" for k, f in freq.items())
                + "; each integer should get about 33%",
                "round(rng.uniform(low, high)) gives the two end values half the chance of the "
                "others: draw on [low - 0.5, high + 0.5] before rounding, or use "
                "rng.integers(low, high + 1)")
        best_config, best_score = out
        best = int(np.argmax(scores))
        ex.close(ex.number(best_score, "best_score"), scores[best], "best_score",
                 hint="keep the configuration with the *highest* score")
        ex.true(best_config == calls[best], "best_config is not the configuration that got "
                "best_score", "store the config together with its score")
        first = list(calls)
        calls.clear()
        scores.clear()
        ex.call(random_search, score, dict(EX2_SPACE), n, 7, call="random_search(..., seed=7)")
        ex.true(calls == first, "two runs with seed=7 tried different configurations",
                "create rng = np.random.default_rng(seed) inside the function and draw only "
                "from it")
        calls.clear()
        scores.clear()
        ex.call(random_search, score, dict(EX2_SPACE), n, 8, call="random_search(..., seed=8)")
        ex.true(calls != first, "seed=8 tried the same configurations as seed=7",
                "create rng = np.random.default_rng(seed) from the seed argument")


class _Oracle(torch.nn.Module):
    """A fake classifier whose predictions on known rows are fixed; records which rows it saw."""

    def __init__(self, table: dict[bytes, int], n_classes: int, splits: dict[bytes, str]):
        super().__init__()
        self.table, self.n_classes, self.splits = table, n_classes, splits
        self.test_calls = 0

    def forward(self, x):
        rows = [r.numpy().tobytes() for r in x.detach().to(torch.float32)]
        if any(self.splits.get(r) == "test" for r in rows):
            self.test_calls += 1
        labels = torch.tensor([self.table.get(r, 0) for r in rows])
        return torch.nn.functional.one_hot(labels, self.n_classes).float()


def _scenario(val_acc: dict[str, float], test_acc: dict[str, float], seed: int):
    gen = torch.Generator().manual_seed(seed)
    n, k = 40, 3
    X = {s: torch.randn(n, 4, generator=gen) for s in ("train", "val", "test")}
    y = {s: torch.randint(0, k, (n,), generator=gen) for s in X}
    splits = {r.numpy().tobytes(): s for s in X for r in X[s]}
    models = {}
    for name in val_acc:
        table = {}
        for s, acc in (("val", val_acc[name]), ("test", test_acc[name]), ("train", 1.0)):
            right = round(acc * n)
            for i, r in enumerate(X[s]):
                table[r.numpy().tobytes()] = int(y[s][i]) if i < right else int(y[s][i] + 1) % k
        models[name] = _Oracle(table, k, splits)
    data = SimpleNamespace(X_train=X["train"], y_train=y["train"], X_val=X["val"],
                           y_val=y["val"], X_test=X["test"], y_test=y["test"], n_classes=k)
    return models, data


def ex11_3_select_and_test(select_and_test) -> None:
    """Exercise 11.3: choose the best candidate on validation, evaluate only it, once, on test."""
    with exercise("11.3", points=2, name="select, then test once") as ex:
        cases = [({"A": 0.700, "B": 0.850, "C": 0.800}, {"A": 0.900, "B": 0.750, "C": 0.800}, "B"),
                 ({"small": 0.900, "wide": 0.625, "deep": 0.875},
                  {"small": 0.825, "wide": 0.950, "deep": 0.700}, "small")]
        for k, (val_acc, test_acc, best) in enumerate(cases):
            models, data = _scenario(val_acc, test_acc, seed=30 + k)
            out = ex.call(select_and_test, dict(models), data,
                          call="select_and_test(candidates, data)")
            ex.true(isinstance(out, tuple) and len(out) == 2,
                    f"expected a tuple (best_name, test_accuracy), got {type(out).__name__}",
                    "end with `return best_name, test_accuracy`")
            name, acc = out
            ex.true(name in models, f"best_name should be one of {sorted(models)}, got {name!r}",
                    "return the dictionary key of the chosen model")
            ex.true(name == best, f"you chose {name!r} (validation accuracy {val_acc[name]:.3f}), "
                    f"but {best!r} has the highest validation accuracy ({val_acc[best]:.3f})",
                    "choose on the validation split; the test split only gives the final number")
            peeked = sorted(n for n, m in models.items() if m.test_calls and n != best)
            ex.true(not peeked, f"models {peeked} also saw the test split; only the chosen model "
                    "may be evaluated on it",
                    "compute validation accuracies first, pick, then evaluate the winner on test")
            ex.true(models[best].test_calls == 1, f"the chosen model was evaluated on the test "
                    f"split {models[best].test_calls} times, expected exactly once",
                    "call accuracy(model, data.X_test, data.y_test) once, for the winner")
            ex.close(ex.number(acc, "test_accuracy"), test_acc[best],
                     f"test_accuracy of {best!r}", atol=1e-6,
                     hint="return the test accuracy of the winner, not its validation accuracy")


# --- 11.4 predict, measure and explain ---------------------------------------------------------

def top_hit_rate_reference(n_trials: int, repeats: int = 2000, seed: int = 0) -> float:
    """Exercise 11.4's experiment: how often the best of ``n_trials`` random draws lands in the
    top 5 % of the search space (scores uniform on [0, 1], so "top 5 %" is a score > 0.95)."""
    rng = np.random.default_rng(seed)
    best = rng.uniform(0, 1, size=(repeats, n_trials)).max(axis=1)
    return float(np.mean(best > 0.95))


def ex11_4_random_hits(top_hit_rate) -> None:
    """Exercise 11.4: the chance that random search reaches the top 5 %, measured."""
    with exercise("11.4", points=2, name="measure random search's odds") as ex:
        refs = {}
        for n in (1, 10, 60):
            call = f"top_hit_rate({n}, repeats=2000, seed=1)"
            got = ex.number(ex.call(top_hit_rate, n, 2000, 1, call=call), call)
            refs[n] = top_hit_rate_reference(n, 2000, 85 + n)
            # 2000 repeats: a measured rate has sd <= 0.011; 0.035 is > 3 sd
            ex.true(abs(got - refs[n]) < 0.035,
                    f"{call} returned {got:.3f}; re-running the experiment gives {refs[n]:.3f} "
                    "(within 0.035 is accepted)",
                    "repeat `repeats` times: draw n_trials scores uniformly on [0, 1], keep the "
                    "best, count it a hit when it is above 0.95; return the fraction of hits")
        ex.note(f"Measured: {refs[1]:.3f} with 1 trial, {refs[10]:.3f} with 10, {refs[60]:.3f} "
                "with 60 -- the formula 1 - 0.95^n gives 0.05, 0.401, 0.954.")
        ex.note("Why: each trial lands in the top 5 % with probability 0.05 whatever the number "
                "of hyperparameters, so 60 random trials find a top-5 % configuration 95 % of "
                "the time (Bergstra & Bengio, 2012) -- when the top 5 % is good enough.")
