"""Chapter 05's experiments and widget, without a browser (small settings)."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from nncourse.labs import ch05 as lab

matplotlib.use("Agg")


def test_hessian_condition_of_scaled_columns():
    gen = np.random.default_rng(0)
    X = gen.normal(size=(500, 3))
    X = (X - X.mean(0)) / X.std(0)
    base = lab.hessian_condition(X)
    assert base < 2  # standardized, nearly uncorrelated columns (plus the bias column)
    scaled = X * [1.0, 1.0, 1000.0]
    assert lab.hessian_condition(scaled) > 1e5 * base / 10  # one column 1000x: ~1e6 x worse
    with pytest.raises(ValueError, match="2-D"):
        lab.hessian_condition(np.ones(3))


def test_leakage_statistics():
    leak = lab.leakage()
    assert 0 < leak["mean_shift"] < 1 and 0 < leak["std_change"] < 1
    assert leak["all_mean_whole"] < 1e-10  # whole-set statistics centre the whole set exactly


def test_torch_agreement_is_exact_in_float64():
    agree = lab.torch_agreement(steps=6)
    assert max(agree["output"], agree["gradient"], agree["buffers"]) < 1e-12
    assert agree["batches_tracked"] == (4, 4)


def test_forgotten_eval_changes_predictions_and_buffers_on_a_copy():
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 3, generator=gen) * 2 + 1
    y = torch.randint(0, 2, (64,), generator=gen)
    before = model[1].running_mean.clone()
    r = lab.forgotten_eval(model, X, y, batch_size=2)
    assert torch.equal(model[1].running_mean, before)  # the caller's model is untouched
    assert r["buffer_shift"] > 0.1
    assert 0 <= r["changed"] <= 1


@pytest.mark.parametrize("placement,n_bn", [("off", 0), ("before", 3), ("after", 3)])
def test_sigmoid_net_placements(placement, n_bn):
    model = lab.sigmoid_net(placement, width=10, seed=1)
    kinds = [type(m).__name__ for m in model]
    assert kinds.count("BatchNorm1d") == n_bn and kinds.count("Sigmoid") == 3
    if placement == "before":
        assert kinds[:3] == ["Linear", "BatchNorm1d", "Sigmoid"] and model[0].bias is None
    if placement == "after":
        assert kinds[:3] == ["Linear", "Sigmoid", "BatchNorm1d"]
    same = lab.sigmoid_net(placement, width=10, seed=1)
    assert torch.equal(model[0].weight, same[0].weight)
    with pytest.raises(ValueError, match="placement must be one of"):
        lab.sigmoid_net("middle")


def test_lr_sweep_records_losses_and_percentiles():
    runs = lab.lr_sweep(lrs=(1.0,), placements=("off", "before"), seeds=(0,), epochs=1)
    r = runs[("before", 1.0, 0)]
    steps = math.ceil(1077 / 60)
    assert r["loss"].shape == (steps,) and r["percentiles"].shape == (steps, 3)
    assert np.all(np.diff(r["percentiles"], axis=1) >= 0)  # 15th <= 50th <= 85th
    table = lab.sweep_table(runs)
    assert len(table) == 4 and "BN before" in table[2]
    assert lab.largest_learning_rate(runs, "off", threshold=1.01) is None


def test_batch_noise_layer_norm_ignores_the_batch():
    noise = lab.batch_noise(batch_sizes=(2, 32), draws=30)
    assert noise["layer"] == [0.0, 0.0]
    assert noise["batch"][0] > noise["batch"][1] > 0


def _fake_run(steps, level, diverged=False):
    loss = np.full(steps, level)
    if diverged:
        loss[-3:] = np.nan
    pct = np.stack([loss - 1, loss, loss + 1], axis=1)
    return {"loss": loss, "percentiles": pct, "val_acc": 0.5, "diverged": diverged}


def test_explore_batchnorm_draws_every_state():
    import matplotlib.pyplot as plt

    runs = {("off", 1.0, 0): _fake_run(90, 2.3), ("before", 1.0, 0): _fake_run(90, 0.5),
            ("off", 3.0, 0): _fake_run(90, 3.0),
            ("before", 3.0, 0): _fake_run(36, 1e30, diverged=True)}  # stopped early
    assert lab.explore_batchnorm(static=True, lr=1.0, runs=runs) is None
    plt.close("all")
    box = lab.explore_batchnorm(lr=1.0, placement="off", runs=runs)
    box.children[0].children[1].value = "before"
    lines = box.figure.axes[0].get_lines()
    np.testing.assert_array_equal(lines[1].get_ydata(), runs[("before", 1.0, 0)]["loss"])
    box.children[0].children[0].value = 3.0  # a diverged run, shorter than its baseline
    box.figure.canvas.draw()
    assert len(lines[1].get_xdata()) == 36 and len(lines[0].get_xdata()) == 90
    assert "diverged" in box.figure.axes[0].get_title()
    with pytest.raises(ValueError, match="lr must be one of"):
        lab.explore_batchnorm(lr=0.5, runs=runs)
