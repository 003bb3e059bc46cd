"""Chapter 11 checks pass on the reference answers, fail with one clear sentence on wrong ones."""

import math

import numpy as np
import pytest

from nncourse import search
from nncourse.checks import ExerciseError, NotAttempted
from nncourse.checks import ch11 as check
from nncourse.training import accuracy

search.quiet()


# --- reference answers (the same as in solutions/11_hyperparameter_tuning.ipynb) -------------

def objective(trial, data, epochs):
    config = {"units": [trial.suggest_int("units", 8, 128, log=True)],
              "activation": trial.suggest_categorical("activation", ["relu", "tanh"]),
              "dropout": trial.suggest_float("dropout", 0.0, 0.5),
              "optimizer": "adam",
              "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True)}
    _, history = search.fit(config, data, epochs=epochs,
                            callbacks=[search.PruningCallback(trial)])
    return history.val_acc[-1]


def draw(dist, rng):
    if hasattr(dist, "choices"):
        return dist.choices[rng.integers(len(dist.choices))]
    if isinstance(dist.low, int):
        lo, hi = dist.low - 0.5, dist.high + 0.5
        x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if dist.log else rng.uniform(lo, hi)
        return int(round(x))
    if dist.log:
        return math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
    return rng.uniform(dist.low, dist.high)


def random_search(score, space, n_trials, seed=0):
    rng = np.random.default_rng(seed)
    best_config, best_score = None, -math.inf
    for _ in range(n_trials):
        config = {name: draw(dist, rng) for name, dist in space.items()}
        s = score(config)
        if s > best_score:
            best_config, best_score = config, s
    return best_config, best_score


def select_and_test(candidates, data):
    val = {name: accuracy(m, data.X_val, data.y_val) for name, m in candidates.items()}
    best = max(val, key=val.get)
    return best, accuracy(candidates[best], data.X_test, data.y_test)


def fails(check_fn, answer, *fragments):
    with pytest.raises(ExerciseError) as info:
        check_fn(answer)
    msg = str(info.value)
    assert msg.count("\n") == 0
    for f in fragments:
        assert f in msg, msg
    return msg


# --- 11.1 ---------------------------------------------------------------------------------------

def test_ex11_1_passes_on_reference(capsys):
    check.ex11_1_objective(objective)
    assert capsys.readouterr().out == "Exercise 11.1 passed (2 points)\n"


def test_ex11_1_stub_is_not_attempted():
    def stub(trial, data, epochs):
        raise NotImplementedError("write your answer here")
    with pytest.raises(NotAttempted):
        check.ex11_1_objective(stub)


def _objective(lr_log=True, metric="val_acc", report=True, units_name="units", ret_none=False):
    def obj(trial, data, epochs):
        config = {"units": [trial.suggest_int(units_name, 8, 128, log=True)],
                  "activation": trial.suggest_categorical("activation", ["relu", "tanh"]),
                  "dropout": trial.suggest_float("dropout", 0.0, 0.5), "optimizer": "adam",
                  "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=lr_log)}
        cbs = [search.PruningCallback(trial)] if report else []
        _, history = search.fit(config, data, epochs=epochs, callbacks=cbs)
        return None if ret_none else getattr(history, metric)[-1]
    return obj


@pytest.mark.parametrize("kwargs, fragments", [
    ({"lr_log": False}, ["Exercise 11.1", "'lr' should be drawn with suggest_float", "log=True"]),
    ({"metric": "train_acc"}, ["the value returned for", "validation accuracy"]),
    ({"report": False}, ["one reported validation accuracy per epoch", "PruningCallback"]),
    ({"units_name": "n_units"}, ["never suggested 'units'"]),
    ({"ret_none": True}, ["returned None"]),
])
def test_ex11_1_fails_on_wrong_answers(kwargs, fragments):
    fails(check.ex11_1_objective, _objective(**kwargs), *fragments)


def test_ex11_1_reports_student_errors():
    def broken(trial, data, epochs):
        return 1 / 0
    fails(check.ex11_1_objective, broken, "raised ZeroDivisionError")
    fails(check.ex11_1_objective, lambda trial, data, epochs: float("nan"), "NaN")


# --- 11.2 ---------------------------------------------------------------------------------------

def test_ex11_2_passes_on_reference(capsys):
    check.ex11_2_random_search(random_search)
    assert capsys.readouterr().out == "Exercise 11.2 passed (2 points)\n"


def _random_search(linear_lr=False, keep_min=False, global_rng=False, n_off=0, high_excl=False,
                   ints="ok"):
    def rs(score, space, n_trials, seed=0):
        rng = np.random.default_rng(None if global_rng else seed)
        results = []
        for _ in range(n_trials + n_off):
            config = {}
            for name, dist in space.items():
                if hasattr(dist, "choices"):
                    config[name] = dist.choices[rng.integers(len(dist.choices))]
                elif isinstance(dist.low, int) and ints == "round_uniform":
                    config[name] = round(rng.uniform(dist.low, dist.high))
                elif isinstance(dist.low, int) and ints == "log_ignored_float":
                    config[name] = (math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
                                    if dist.log else int(rng.integers(dist.low, dist.high + 1)))
                elif isinstance(dist.low, int) and ints == "round_linear":
                    config[name] = (draw(dist, rng) if dist.log
                                    else round(rng.uniform(dist.low, dist.high)))
                elif isinstance(dist.low, int) and ints == "integers":  # ignores log
                    config[name] = int(rng.integers(dist.low, dist.high + 1))
                elif isinstance(dist.low, int) and high_excl and not dist.log:
                    config[name] = int(rng.integers(dist.low, dist.high))
                elif isinstance(dist.low, int):
                    config[name] = draw(dist, rng)
                elif dist.log and not linear_lr:
                    config[name] = math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
                else:
                    config[name] = rng.uniform(dist.low, dist.high)
            results.append((score(config), config))
        s, c = (min if keep_min else max)(results, key=lambda t: t[0])
        return c, s
    return rs


@pytest.mark.parametrize("kwargs, fragments", [
    ({"linear_lr": True}, ["of your lr values are below 1e-3", "log=True"]),
    ({"keep_min": True}, ["best_score is wrong", "highest"]),
    ({"global_rng": True}, ["two runs with seed=7 tried different configurations"]),
    ({"n_off": 1}, ["score() was called 401 times for n_trials=400"]),
    ({"high_excl": True}, ["n_layers should take each integer 1, 2, 3"]),
    # issue 19: rng.integers ignores log=True; round(uniform) halves the ends; a float for an int
    ({"ints": "integers"}, ["of your units values are below 32", "log=True"]),
    ({"ints": "round_linear"}, ["n_layers (1..3, log=False) came out 1: 2", "half the chance"]),
    ({"ints": "round_uniform"}, ["of your units values are below 32"]),
    ({"ints": "log_ignored_float"}, ["units must be integers from 8 to 128"]),
])
def test_ex11_2_fails_on_wrong_answers(kwargs, fragments):
    fails(check.ex11_2_random_search, _random_search(**kwargs), *fragments)


def test_ex11_2_wrong_return_type():
    fails(check.ex11_2_random_search, lambda score, space, n, seed=0: None,
          "expected a tuple (best_config, best_score), got NoneType")


# --- 11.3 ---------------------------------------------------------------------------------------

def test_ex11_3_passes_on_reference(capsys):
    check.ex11_3_select_and_test(select_and_test)
    assert capsys.readouterr().out == "Exercise 11.3 passed (2 points)\n"


def scores_on(split, candidates, data):
    X, y = getattr(data, f"X_{split}"), getattr(data, f"y_{split}")
    scores = {name: accuracy(m, X, y) for name, m in candidates.items()}
    return scores, max(scores, key=scores.get)


def peek_at_test(candidates, data):
    test, best = scores_on("test", candidates, data)
    return best, test[best]


def all_on_test_then_pick_on_val(candidates, data):
    _, best = scores_on("val", candidates, data)
    test, _ = scores_on("test", candidates, data)
    return best, test[best]


def return_val_acc(candidates, data):
    val, best = scores_on("val", candidates, data)
    return best, val[best]


def val_acc_after_testing(candidates, data):
    val, best = scores_on("val", candidates, data)
    accuracy(candidates[best], data.X_test, data.y_test)
    return best, val[best]


def twice(candidates, data):
    best, acc = select_and_test(candidates, data)
    accuracy(candidates[best], data.X_test, data.y_test)
    return best, acc


@pytest.mark.parametrize("answer, fragments", [
    (peek_at_test, ["you chose 'A'", "'B' has the highest validation accuracy"]),
    (all_on_test_then_pick_on_val, ["also saw the test split"]),
    (return_val_acc, ["evaluated on the test split 0 times"]),
    (val_acc_after_testing, ["test_accuracy of 'B' is wrong", "expected 0.75, got 0.85"]),
    (twice, ["evaluated on the test split 2 times"]),
    (lambda candidates, data: "B", ["expected a tuple (best_name, test_accuracy), got str"]),
])
def test_ex11_3_fails_on_wrong_answers(answer, fragments):
    fails(check.ex11_3_select_and_test, answer, *fragments)


# --- 11.4 predict, measure and explain --------------------------------------------------------

def top_hit_rate(n_trials, repeats=2000, seed=0, top=0.95, best=True):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, size=(repeats, n_trials))
    if best:
        return float(np.mean(scores.max(axis=1) > top))
    return float(np.mean(scores > top))


def test_ex11_4_passes_and_explains(capsys):
    check.ex11_4_random_hits(top_hit_rate)
    out = capsys.readouterr().out
    assert out.endswith("Exercise 11.4 passed (2 points)\n") and "Bergstra" in out


@pytest.mark.parametrize("answer, fragments", [
    (lambda n, r, s: top_hit_rate(n, r, s, top=0.05), ["top_hit_rate(1, repeats=2000, seed=1)"]),
    (lambda n, r, s: top_hit_rate(n, r, s, best=False), ["top_hit_rate(10, repeats=2000"]),
    (lambda n, r, s: 0.95 ** n, ["top_hit_rate(1, repeats=2000, seed=1) returned 0.950"]),
])
def test_ex11_4_wrong_answers(answer, fragments):
    fails(check.ex11_4_random_hits, answer, *fragments, "re-running the experiment")
