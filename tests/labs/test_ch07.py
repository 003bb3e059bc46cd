"""Chapter 07's experiments: the rates the runs used are the formulas', the comparisons compare what
they say, and the widget's compute part works without a browser."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nncourse.labs import ch07 as lab  # noqa: E402


@pytest.mark.parametrize("name", lab.SCHEDULES)
def test_runs_use_the_formula_rates(name):
    h = lab.run(name, 0.3, 0, n_train=128, epochs=3)  # 2 batches an epoch: 6 steps
    used = np.array(h.extra["step_lr"])
    assert len(used) == 6 == len(h.extra["step_loss"])
    np.testing.assert_allclose(used, lab.schedule_curve(name, 0.3, 6), rtol=1e-12)
    if name == "1cycle":
        assert h.extra["step_momentum"][0] == pytest.approx(0.95)
    else:
        assert set(h.extra["step_momentum"]) == {0.9}


def test_schedule_curve_shapes():
    T = 170
    c = {n: lab.schedule_curve(n, 0.1, T) for n in lab.SCHEDULES}
    assert np.all(c["constant"] == 0.1)
    assert c["power"][-1] == pytest.approx(0.1 / (1 + 169 / 17))
    assert c["exponential"][-1] == pytest.approx(0.1 * 0.01 ** (169 / 170))
    assert sorted(set(np.round(c["piecewise"], 12))) == [0.001, 0.01, 0.1]
    assert c["1cycle"].max() == pytest.approx(0.1, rel=1e-3)
    assert c["1cycle"][0] == pytest.approx(0.1 / 25)
    with pytest.raises(ValueError, match="schedule_curve: name must be one of constant"):
        lab.schedule_curve("linear", 0.1, T)
    with pytest.raises(ValueError, match="schedule_curve: lr must be a positive number"):
        lab.schedule_curve("cosine", 0, T)


def test_rule_check_trains_each_seeds_own_pick():
    tests = lab.range_tests(seeds=(0,))
    picks = lab.rule_check(tests)
    assert set(picks) == {"min/10", "steepest", "valley"}
    for rule, p in picks.items():
        assert p["lrs"][0] == pytest.approx(tests[0].suggestions[rule], rel=1e-2)
        assert p["runs"][0].lr[0] == p["lrs"][0]


def test_step_order_runs_and_scheduler_first():
    runs = lab.step_order_runs()
    assert runs["epoch"].extra["step_lr"][-1] == pytest.approx(0.1 * 0.8 ** 9)
    assert runs["step"].extra["step_lr"][-1] == pytest.approx(0.1 * 0.8 ** 169)
    assert runs["step"].val_acc[-1] < runs["epoch"].val_acc[-1] - 0.2
    first = lab.scheduler_first(total_steps=8)
    assert first["optimizer first"]["used"] == pytest.approx(first["formula"][:8])
    assert first["scheduler first"]["used"] == pytest.approx(first["formula"][1:])
    assert first["optimizer first"]["warnings"] == []
    assert any("before `optimizer.step()`" in w for w in first["scheduler first"]["warnings"])


def test_plateau_cuts_the_rate():
    h = lab.plateau_run(epochs=30)
    rates = sorted(set(h.lr), reverse=True)
    assert rates[0] == 0.1 and len(rates) > 2
    assert all(b == pytest.approx(a * 0.3) for a, b in zip(rates, rates[1:]))


def test_warmup_runs_record_the_warmup():
    runs = lab.warmup_runs(seeds=(0,), epochs=1)
    warm = runs["warm-up 200 steps"][0].extra["step_lr"]
    assert warm[0] == pytest.approx(0.03 / 200) and warm[33] == pytest.approx(0.03 * 34 / 200)
    assert set(runs["no warm-up"][0].extra["step_lr"]) == {0.03}
    assert lab.early_peak(runs["no warm-up"][0], 10) == max(
        runs["no warm-up"][0].extra["step_loss"][:10])


def test_seed_table_mean_and_spread():
    hs = [lab.run("constant", 0.1, s, n_train=128, epochs=2) for s in (0, 1)]
    table = lab.seed_table({"constant": hs})
    loss = np.array([h.train_loss[-1] for h in hs])
    assert f"{loss.mean():.3f} ± {loss.std(ddof=1):.3f}" in table


def test_explore_schedule_draws_every_choice_without_a_browser():
    import matplotlib.pyplot as plt

    box = lab.explore_schedule(static=True)
    assert box is None
    plt.close("all")
    # the live widget: every control value redraws without error
    widget = lab.explore_schedule()
    controls = widget.children[0].children
    for name in lab.SCHEDULES:
        controls[0].value = name
        for lr in lab.LRS:
            controls[1].value = lr
            assert widget.children[1].value == ""  # no error shown
            line = widget.figure.axes[0].lines[0]
            np.testing.assert_allclose(line.get_ydata(), lab.schedule_curve(name, lr, 170))
    assert lab.run.cache_info().currsize >= len(lab.SCHEDULES) * len(lab.LRS)
