"""Tests for nncourse/search.py: search space, sampling, objective, pruning, searches."""

import math

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nncourse import data, search
from nncourse.labs import ch11 as lab

search.quiet()


@pytest.fixture(scope="module")
def tiny():
    return data.load_moons(n_samples=200, seed=0)


CONFIG = {"units": [8, 4], "activation": "tanh", "dropout": 0.1, "optimizer": "adam", "lr": 0.01}


def test_sample_float_log_is_uniform_in_log_space():
    rng = np.random.default_rng(0)
    dist = FloatDistribution(1e-5, 1e-1, log=True)
    xs = np.array([search.sample(dist, rng) for _ in range(4000)])
    assert xs.min() >= 1e-5 and xs.max() <= 1e-1
    # each of the 4 decades gets about a quarter of the draws (uniform: 0.1 % to the first)
    counts = np.histogram(np.log10(xs), bins=[-5, -4, -3, -2, -1])[0] / len(xs)
    assert np.allclose(counts, 0.25, atol=0.03), counts
    lin = np.array([search.sample(FloatDistribution(0.1, 0.6), rng) for _ in range(4000)])
    assert lin.min() >= 0.1 and lin.max() <= 0.6 and abs(lin.mean() - 0.35) < 0.01


def test_sample_int_and_categorical_cover_their_range_evenly():
    rng = np.random.default_rng(1)
    ints = [search.sample(IntDistribution(1, 3), rng) for _ in range(3000)]
    assert set(ints) == {1, 2, 3} and all(isinstance(i, int) for i in ints)
    assert np.allclose(np.bincount(ints)[1:] / 3000, 1 / 3, atol=0.03)
    logs = [search.sample(IntDistribution(8, 128, log=True), rng) for _ in range(3000)]
    assert min(logs) == 8 and max(logs) == 128
    assert abs(np.mean(np.array(logs) <= 32) - 0.5) < 0.05  # 32 is the geometric midpoint
    cats = [search.sample(CategoricalDistribution(("a", "b")), rng) for _ in range(2000)]
    assert abs(cats.count("a") / 2000 - 0.5) < 0.04


def test_suggest_config_records_the_search_space_and_round_trips():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        config = search.suggest_config(trial)
        n, opt = len(config["units"]), config["optimizer"]
        assert 1 <= n <= 3
        # the learning rate is conditional on the optimizer: one parameter per optimizer
        expected = {"n_layers", "activation", "dropout", "optimizer", f"lr_{opt}"} | {
            f"units_{i}" for i in range(n)}
        assert set(trial.distributions) == expected
        low, high = search.LR_RANGES[opt]
        assert trial.distributions[f"lr_{opt}"] == FloatDistribution(low, high, log=True)
        assert low <= config["lr"] <= high and config["lr"] == trial.params[f"lr_{opt}"]
        assert trial.distributions["units_0"] == search.SEARCH_SPACE["units"]
        assert search.config_from_params(trial.params) == config
        seen.add(opt)
        study.tell(trial, 0.0)
    assert seen == set(search.LR_RANGES) == set(search.SEARCH_SPACE["optimizer"].choices)


def test_lr_ranges_span_three_decades_around_each_optimizers_usual_rate():
    for name, (low, high) in search.LR_RANGES.items():
        assert math.log10(high / low) == pytest.approx(3), name
    assert search.LR_RANGES["adam"][0] <= 1e-3 <= search.LR_RANGES["adam"][1]
    assert search.LR_RANGES["adadelta"][0] <= 1.0 <= search.LR_RANGES["adadelta"][1]
    assert search.LR_RANGES["sgd"][0] <= 0.1 <= search.LR_RANGES["sgd"][1]


def test_a_space_may_share_one_learning_rate_range():
    shared = {k: v for k, v in search.SEARCH_SPACE.items() if not k.startswith("lr_")}
    shared["lr"] = FloatDistribution(1e-4, 1.0, log=True)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    config = search.suggest_config(trial, shared)
    assert "lr" in trial.params and not any(k.startswith("lr_") for k in trial.params)
    assert search.config_from_params(trial.params) == config
    assert search.lr_name("adam") == "lr_adam" and search.lr_name("adam", shared) == "lr"


def test_sample_config_draws_the_same_structure():
    rng = np.random.default_rng(0)
    configs = [search.sample_config(rng) for _ in range(50)]
    assert {len(c["units"]) for c in configs} == {1, 2, 3}
    assert all(set(c) == {"units", "activation", "dropout", "optimizer", "lr"} for c in configs)
    assert {c["optimizer"] for c in configs} == set(search.SEARCH_SPACE["optimizer"].choices)
    assert all(8 <= u <= 128 for c in configs for u in c["units"])
    assert all(search.LR_RANGES[c["optimizer"]][0] <= c["lr"] <= search.LR_RANGES[c["optimizer"]][1]
               for c in configs)
    no_sgd_lr = {k: v for k, v in search.SEARCH_SPACE.items() if k != "lr_sgd"}
    with pytest.raises(ValueError, match="missing a learning rate .* lr_sgd"):
        search.sample_config(rng, no_sgd_lr)
    with pytest.raises(ValueError, match="missing dropout"):
        search.sample_config(rng, {k: v for k, v in search.SEARCH_SPACE.items()
                                   if k != "dropout"})
    with pytest.raises(ValueError, match="params lack 'lr_adam'"):
        search.config_from_params({"n_layers": 1, "units_0": 8, "activation": "relu",
                                   "dropout": 0.1, "optimizer": "adam"})


def test_fit_is_seeded_and_leaves_the_global_rng_alone(tiny):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    _, h1 = search.fit(CONFIG, tiny, epochs=2)
    assert torch.equal(torch.get_rng_state(), state)
    _, h2 = search.fit(CONFIG, tiny, epochs=2)
    _, h3 = search.fit(CONFIG, tiny, epochs=2, seed=1)
    assert h1.val_acc == h2.val_acc and h1.train_loss == h2.train_loss
    assert h1.train_loss != h3.train_loss
    model, h4 = search.fit({**CONFIG, "weight_decay": 0.1}, tiny, epochs=2)
    assert h4.train_loss != h1.train_loss
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [8, 4, 2]


@pytest.mark.parametrize("bad, message", [
    ({**CONFIG, "units": []}, "non-empty list"),
    ({**CONFIG, "units": 8}, "non-empty list"),
    ({k: v for k, v in CONFIG.items() if k != "lr"}, "missing lr"),
])
def test_fit_rejects_bad_configs(tiny, bad, message):
    with pytest.raises(ValueError, match=message):
        search.fit(bad, tiny, epochs=1)


def test_objective_reports_every_epoch_and_returns_the_final_validation_accuracy(tiny):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0),
                                pruner=optuna.pruners.NopPruner())
    study.optimize(search.make_objective(tiny, epochs=3), n_trials=2)
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert t.value == t.intermediate_values[3]
        _, h = search.fit(search.config_from_params(t.params), tiny, epochs=3)
        assert h.val_acc[-1] == t.value
    assert search.epochs_used(study) == 6
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        search.make_objective(tiny, epochs=0)


class _PruneAfterTwo(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return max(trial.intermediate_values) >= 2


def test_pruning_callback_stops_training_and_records_epochs(tiny):
    study = optuna.create_study(direction="maximize", pruner=_PruneAfterTwo(),
                                sampler=optuna.samplers.RandomSampler(0))
    study.optimize(search.make_objective(tiny, epochs=5), n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert [t.user_attrs["epochs_run"] for t in study.trials] == [2, 2]
    assert search.epochs_used(study) == 4


def test_random_and_grid_search():
    calls = []

    def score(c):
        calls.append(c)
        return -(math.log10(c["lr"]) + 2) ** 2

    space = {"lr": FloatDistribution(1e-4, 1.0, log=True),
             "act": CategoricalDistribution(("a", "b"))}
    r = search.random_search(score, space, n_trials=20, seed=3)
    assert len(calls) == 20 and r.configs == calls
    assert r.best_score == max(r.scores) and r.best_config == calls[int(np.argmax(r.scores))]
    assert search.random_search(score, space, 20, seed=3).configs == r.configs
    assert search.random_search(score, space, 20, seed=4).configs != r.configs
    g = search.grid_search(score, {"lr": search.log_grid(space["lr"], 5), "act": ["a", "b"]})
    assert len(g.configs) == 10 and g.best_config["lr"] == pytest.approx(1e-2)
    assert search.log_grid(IntDistribution(8, 128, log=True), 5) == [8, 16, 32, 64, 128]
    with pytest.raises(ValueError, match="n_trials"):
        search.random_search(score, space, 0)
    with pytest.raises(ValueError, match="perfect square"):
        lab.grid_vs_random(None, n=8)


def test_describe():
    expected = "2 x [32, 32] relu, dropout 0.20, adam lr 0.001"
    assert search.describe(search.DEFAULT_CONFIG) == expected


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_optuna_style_restores_the_course_style_after_optuna_plots():
    import matplotlib.pyplot as plt

    from nncourse.plotting import use_style

    use_style()
    before = dict(plt.rcParams)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    with search.optuna_style():
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
        assert plt.rcParams["axes.facecolor"] != before["axes.facecolor"]  # Optuna's ggplot
    plt.close(ax.figure)
    assert plt.rcParams["axes.facecolor"] == before["axes.facecolor"]
    assert dict(plt.rcParams) == before


def test_only_a_concurrent_set_up_is_retried():
    from sqlalchemy import exc

    race = exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: alembic_version"))
    refused = exc.OperationalError("connect", {}, Exception("Connection refused"))
    exists = exc.ProgrammingError("CREATE", {}, Exception('relation "studies" already exists'))
    assert search._is_creation_race(race) and search._is_creation_race(exists)
    assert not search._is_creation_race(refused)
    assert not search._is_creation_race(ValueError("duplicate"))  # not from the database


def test_load_without_create_does_not_make_a_sqlite_file(tmp_path):
    db = tmp_path / "missing.db"
    with pytest.raises(search.TuneError, match="no study database at .*--create"):
        search.load_study("s", f"sqlite:///{db}")
    assert not db.exists()
    study = search.create_or_load_study("s", f"sqlite:///{db}")
    again = search.create_or_load_study("s", f"sqlite:///{db}")  # joins, does not fail
    assert study.study_name == again.study_name == "s" and db.exists()
