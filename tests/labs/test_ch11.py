"""Tests for nncourse/labs/ch11.py: workers sharing one study."""

import pytest

from nncourse import search
from nncourse.labs import ch11 as lab

search.quiet()


def test_two_worker_processes_share_one_sqlite_study():
    messages, study = lab.run_workers(n_workers=2, n_trials=2, epochs=2, dataset="moons")
    assert len(messages) == 2
    assert all("worker done: 2 trials run" in m for m in messages), messages
    assert len(study.trials) == 4
    assert all(t.state.is_finished() for t in study.trials)
    assert len({t.number for t in study.trials}) == 4
    assert sorted(n for numbers in lab.trials_by_worker(study) for n in numbers) == [0, 1, 2, 3]
    assert len(lab.trials_by_worker(study)) == 2


def _study(values, params=None, states=None, epochs_run=None):
    """A study of finished trials with the given values (no training)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists = {"n_layers": IntDistribution(1, 3), "optimizer": CategoricalDistribution(
        ("adam", "nadam", "sgd")), "lr": FloatDistribution(1e-4, 1.0, log=True)}
    study = optuna.create_study(direction="maximize")
    for i, v in enumerate(values):
        p = (params or {}).get(i, {"n_layers": 1, "optimizer": "nadam", "lr": 0.02})
        state = (states or {}).get(i, optuna.trial.TrialState.COMPLETE)
        study.add_trial(optuna.trial.create_trial(
            params=p, distributions=dists, state=state,
            value=v if state == optuna.trial.TrialState.COMPLETE else None,
            intermediate_values={0: v} if state != optuna.trial.TrialState.COMPLETE else None,
            user_attrs={"epochs_run": (epochs_run or {}).get(i, 10)}))
    return study


def test_top_trials_summary_reports_agreement_bounds_and_the_worst():
    values = [0.95, 0.96, 0.97, 0.94, 0.1, 0.099, 0.5, 0.93]
    params = {0: {"n_layers": 2, "optimizer": "adam", "lr": 0.005},
              3: {"n_layers": 1, "optimizer": "sgd", "lr": 0.05}}
    text = lab.top_trials_summary(_study(values, params), k=5, worst=2)
    lines = text.splitlines()
    assert lines[0] == "the 5 best trials: validation accuracy 0.93 to 0.97"
    assert "n_layers   1 in most of the 5" in text and "optimizer  nadam in most of the 5" in text
    assert "lr         of the nadam trials: between 1e-2 and 1e-1" in text  # not adam's 0.005
    assert lines[-1] == "the 2 worst trials: 2 of 2 below 0.2 (chance is 0.1)"
    mixed = {i: {"n_layers": 1, "optimizer": o, "lr": 0.02}
             for i, o in enumerate(["adam", "sgd", "nadam", "adam", "sgd", "nadam"])}
    assert "optimizer  mixed: adam, nadam, sgd" in lab.top_trials_summary(
        _study([0.9] * 6, mixed), k=5, worst=1)
    with pytest.raises(ValueError, match="need k"):
        lab.top_trials_summary(_study([0.9] * 4), k=5, worst=3)


def test_hit_rates_counts_start_up_and_says_more_or_less_than_half_after():
    text = lab.hit_rates(_study([0.95] * 4 + [0.5] * 6 + [0.95] * 11 + [0.2] * 9))
    assert text.splitlines() == [
        "trials 0-9 (random start-up): not more than half of 10 above 0.9",
        "trials 10-29 (TPE proposals):   more than half of 20 above 0.9"]
    assert lab.hit_rates(_study([0.95] * 6 + [0.5] * 4 + [0.95] * 20)).startswith(
        "trials 0-9 (random start-up): more than half of 10")
    assert "not more than half" in lab.hit_rates(_study([0.95] * 10 + [0.95] * 10 + [0.2] * 10))


def test_pruning_summary_states_bounds():
    import optuna

    pruned = optuna.trial.TrialState.PRUNED
    states = {i: pruned for i in range(4)}
    study = _study([0.9] * 10, states=states, epochs_run={0: 3, 1: 3, 2: 3, 3: 7})
    lines = lab.pruning_summary(study, epochs=10).splitlines()
    # 4 of 10 pruned (>= 1/3); 3 of 4 at epoch 3; 76 of 100 epochs: 24 % saved (>= 20 %)
    assert lines[0].startswith("pruned at least a third of the 10 trials, most of them at epoch 3")
    assert lines[1] == ("epochs trained: at least 20% fewer than the 100 of the study "
                        "without pruning")
    few = _study([0.9] * 10, states={0: pruned}, epochs_run={0: 7})
    assert lab.pruning_summary(few, epochs=10).startswith("pruned less than a third")
    assert "a minority of them" in lab.pruning_summary(few, epochs=10)
    assert "less than 20% fewer" in lab.pruning_summary(few, epochs=10)  # 3 % saved


def _conditional_study(n=40, seed=0):
    """Trials of the chapter's search space with a made-up score: the learning rate matters
    (best at 10x the low end of each optimizer's range), dropout barely does."""
    import math

    import optuna

    def score(trial):
        config = search.suggest_config(trial)
        low, _ = search.LR_RANGES[config["optimizer"]]
        return 1 - abs(math.log10(config["lr"] / low) - 1) / 3 - 0.01 * config["dropout"]

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(score, n_trials=n)
    return study


def test_fanova_importances_rank_common_params_across_and_the_lr_within_one_optimizer():
    import matplotlib

    matplotlib.use("Agg")
    study = _conditional_study()
    main, count = lab.main_optimizer(study)
    names = [t.params["optimizer"] for t in study.trials]
    assert count == names.count(main) == max(names.count(o) for o in set(names))
    across, within, optimizer = lab.fanova_importances(study, seed=0)
    assert optimizer == main
    # params=None: only what every trial has -- no learning rate, no units_1
    assert set(across) == set(lab.COMMON_PARAMS)
    assert set(within) == {"n_layers", "units_0", "activation", "dropout", f"lr_{main}"}
    assert max(within, key=within.get) == f"lr_{main}"  # the made-up score depends on it
    assert sum(within.values()) == pytest.approx(1)
    text = lab.importance_scope(study, across).splitlines()
    assert text[0] == ("ranked by fANOVA (params=None): activation, dropout, n_layers, "
                       "optimizer, units_0")
    assert text[1].startswith("left out, not in every trial: lr_") and "units_1" in text[1]
    assert text[2] == "learning rates ranked: 0 of 5"
    fig = lab.plot_importances(across, within, optimizer, count)
    assert len(fig.axes) == 2 and f"{count} trials with {main}" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="no complete trials"):
        import optuna

        lab.main_optimizer(optuna.create_study())


def test_plot_intermediate_tells_pruned_from_completed():
    import datetime

    import matplotlib
    import optuna
    from optuna.distributions import FloatDistribution

    matplotlib.use("Agg")
    study = optuna.create_study(direction="maximize")
    dist = {"lr": FloatDistribution(1e-4, 1.0, log=True)}
    study.add_trial(optuna.trial.create_trial(params={"lr": 0.01}, distributions=dist, value=0.9,
                                              intermediate_values={1: 0.5, 2: 0.7, 3: 0.9}))
    study.add_trial(optuna.trial.create_trial(params={"lr": 0.5}, distributions=dist,
                                              state=optuna.trial.TrialState.PRUNED,
                                              intermediate_values={1: 0.1, 2: 0.1}))
    ax = lab.plot_intermediate(study, epochs=3)
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles["completed"] == "-" and styles["pruned"] == "--"
    assert "1 completed and 1 pruned" in ax.get_title()
    # the timeline: seconds since the first start, one bar per trial, a legend entry per worker
    t0 = datetime.datetime(2026, 1, 1)
    timed = optuna.create_study(direction="maximize")
    for i in range(2):
        timed.add_trial(optuna.trial.create_trial(
            params={"lr": 0.01}, distributions=dist, value=0.5, user_attrs={"worker": f"w{i}"}))
    trials = timed.trials
    for t, (start, end) in zip(trials, ((0, 4), (1, 3))):
        t.datetime_start = t0 + datetime.timedelta(seconds=start)
        t.datetime_complete = t0 + datetime.timedelta(seconds=end)
    fake = type("S", (), {"trials": trials})()
    ax = lab.plot_worker_timeline(fake)
    bars = [(p.get_x(), p.get_width()) for p in ax.patches]
    assert sorted(bars) == [(0.0, 4.0), (1.0, 2.0)]
    assert "seconds since" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["worker 1", "worker 2", "pruned"]
