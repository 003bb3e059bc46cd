"""nncourse.labs.ch02: per-layer gradient norms, the diagnosis, weight change, the widget's
compute."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from nncourse.labs import ch02 as lab
from nncourse.models import linear_layers, make_mlp

matplotlib.use("Agg")


def _backward(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(32, 6, generator=gen)
    y = torch.randint(0, 3, (32,), generator=gen)
    nn.functional.cross_entropy(model(X), y).backward()


def test_layer_grad_norms_match_torch_and_skip_batch_norm_and_biases():
    model = make_mlp(6, 3, width=[9, 7, 5], activation="tanh", batch_norm=True, seed=1)
    _backward(model)
    expected = [torch.linalg.matrix_norm(m.weight.grad).item() for m in model
                if isinstance(m, nn.Linear)]
    assert lab.layer_grad_norms(model) == pytest.approx(expected, rel=1e-6)
    assert len(expected) == 4
    model[0].weight.grad = None
    assert lab.layer_grad_norms(model)[0] == 0.0


def test_gradient_profile_vanishes_for_sigmoid_not_for_relu_he():
    sig = lab.gradient_profile("sigmoid", 10, "default")
    relu = lab.gradient_profile("relu", 10, "he_normal")
    assert len(sig) == len(relu) == 11
    assert lab.first_last_ratio(sig) < 1e-6 and lab.diagnose(sig) == "vanishing"
    assert 0.1 < lab.first_last_ratio(relu) < 10 and lab.diagnose(relu) == "healthy"
    assert lab.diagnose(lab.gradient_profile("relu", 10, "he_normal", 3.0)) == "exploding"
    assert lab.gradient_profile("sigmoid", 10, "default") is sig  # cached: the widget is instant


def test_gradient_profile_is_one_backward_pass_of_the_probe_batch():
    model = make_mlp(64, 10, width=lab.WIDTH, depth=3, activation="tanh", init="xavier_normal",
                     init_scale=2.0, seed=4)
    X, y = lab.probe_batch()
    nn.functional.cross_entropy(model(X), y).backward()
    assert lab.gradient_profile("tanh", 3, "xavier_normal", 2.0, seed=4) == pytest.approx(
        lab.layer_grad_norms(model), rel=1e-6)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_gradient_profile_validates_depth(bad):
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        lab.gradient_profile("relu", bad)


@pytest.mark.parametrize("norms, expected", [
    ([1e-9, 1e-6, 1e-3, 0.5], "vanishing"),
    ([0.3, 0.5, 0.4, 0.2], "healthy"),
    ([5e-4, 2e-4, 3e-4], "vanishing"),          # all below min_norm
    ([0.0, 0.0, 0.0], "vanishing"),
    ([50.0, 5.0, 0.4], "exploding"),            # grows toward the input by > 100
    ([150.0, 140.0, 160.0], "exploding"),       # flat but too large
    ([0.1, float("nan"), 0.2], "exploding"),
    ([0.1, 0.2, float("inf")], "exploding"),
    ([0.02, 0.3, 1.0], "healthy"),              # a factor 50: within the ratio
    ([0.009, 0.3, 1.0], "vanishing"),           # a factor 111
])
def test_diagnose(norms, expected):
    assert lab.diagnose(norms) == expected
    assert lab.diagnose(np.array(norms)) == expected
    assert lab.diagnose(torch.tensor(norms, requires_grad=True)) == expected


def test_diagnose_thresholds_and_validation():
    assert lab.diagnose([0.02, 0.3, 1.0], ratio=10) == "vanishing"
    assert lab.diagnose([150.0, 140.0], max_norm=1e3) == "healthy"
    assert lab.diagnose([5e-4, 2e-4], min_norm=1e-5) == "healthy"
    for bad in ([1.0], [[1.0, 2.0]], []):
        with pytest.raises(ValueError, match="1-D profile"):
            lab.diagnose(bad)
    assert lab.first_last_ratio([2.0, 1.0, 4.0]) == 0.5
    assert lab.first_last_ratio([1.0, 0.0]) == math.inf


def test_relative_weight_change():
    a = make_mlp(4, 2, width=5, depth=2, seed=0)
    b = make_mlp(4, 2, width=5, depth=2, seed=0)
    assert lab.relative_weight_change(a, b) == [0.0, 0.0, 0.0]
    with torch.no_grad():
        linear_layers(b)[1].weight.mul_(1.5)
    assert lab.relative_weight_change(a, b) == pytest.approx([0.0, 0.5, 0.0])
    weights = [lay.weight.clone() for lay in linear_layers(a)]
    assert lab.relative_weight_change(weights, b) == pytest.approx([0.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="Linear layers"):
        lab.relative_weight_change(a, make_mlp(4, 2, width=5, depth=3))


def test_train_deep_records_changes_and_monitor():
    res = lab.train_deep("relu", "he_normal", depth=2, epochs=1, lr=0.1, monitor_every=5)
    assert res["history"].epochs_run == 1
    assert len(res["change"]) == 3 and all(c > 0 for c in res["change"])
    mon = res["monitor"]
    assert mon.grad_norms.shape[1] == 3 and mon.update_ratios.shape == mon.grad_norms.shape


def test_seed_runs_one_run_per_seed_with_its_own_clipper():
    runs = lab.seed_runs("relu", "he_normal", seeds=(0, 1), depth=2, epochs=1, lr=0.05,
                         clip=("norm", 1.0))
    assert len(runs) == 2 and all(r["history"].epochs_run == 1 for r in runs)
    assert runs[0]["clip"] is not runs[1]["clip"] and runs[0]["clip"].by == "norm"
    assert len(runs[0]["clip"].total_norms) == len(runs[1]["clip"].total_norms) > 0
    # seed 0 is exactly train_deep's seed-0 run (with the same clipping)
    from nncourse.clipping import ClipGradients
    alone = lab.train_deep("relu", "he_normal", depth=2, epochs=1, lr=0.05,
                           callbacks=[ClipGradients(1.0)])
    assert runs[0]["change"] == alone["change"] != runs[1]["change"]
    assert lab.seed_runs("relu", "he_normal", seeds=(0, 1), depth=2, epochs=1, lr=0.05,
                         clip=("norm", 1.0)) is runs  # cached
    with pytest.raises(ValueError, match="clip must be"):
        lab.seed_runs(clip=("max", 1.0))
    with pytest.raises(ValueError, match="seeds must be"):
        lab.seed_runs(seeds=())


def _run(acc, diverged=False, epochs=10):
    from nncourse.training import History
    h = History(val_acc=[acc], train_loss=[1.0], epochs_run=epochs, diverged=diverged)
    return {"history": h}


def test_over_seeds_mean_spread_and_divergence():
    assert lab.over_seeds([_run(0.9), _run(0.8), _run(0.85)]) == \
        "val acc 85.0% ± 5.0 (3 seeds, lowest 80.0%)"
    assert lab.over_seeds([_run(0.1, True, 1), _run(0.1, True, 1)]) == \
        "diverged (NaN/inf) in 2 of 2 seeds, in epoch 1"
    mixed = lab.over_seeds([_run(0.1, True, 2), _run(0.9)])
    assert mixed == ("diverged (NaN/inf) in 1 of 2 seeds, in epoch 2; "
                     "val acc 90.0% (1 seed, lowest 90.0%)")
    with pytest.raises(ValueError):
        lab.over_seeds([])


def test_widget_redraws_the_profile_in_place():
    box = lab.explore_gradients()
    depth, activation, scale = box.children[0].children
    line = box.figure.axes[0].lines[0]
    activation.value = "relu"
    scale.value = 1.41
    depth.value = 7
    assert box.figure.axes[0].lines[0] is line
    assert line.get_ydata() == pytest.approx(
        np.array(lab.gradient_profile("relu", 7, "lecun_normal", 1.41)))
    assert "healthy" in box.figure.axes[0].get_title()
    scale.value = 4.0
    assert "exploding" in box.figure.axes[0].get_title()
    # laid out once by interactive_figure, then frozen: not re-solved on every redraw
    assert type(box.figure.get_layout_engine()).__name__ == "PlaceHolderLayoutEngine"


def test_unit_spread_is_std_across_examples():
    model = make_mlp(3, 2, width=4, depth=2, activation="tanh", seed=0)
    X = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))
    h1 = torch.tanh(model[0](X))
    spread = lab.unit_spread(model, X)
    assert len(spread) == 2
    assert spread[0] == pytest.approx(h1.std(0).mean().item(), rel=1e-6)
    assert lab.unit_spread(model, X[:1].repeat(5, 1)) == pytest.approx([0.0, 0.0], abs=1e-7)


def test_at_least_prints_the_floor_for_rounding_level_values():
    assert lab.at_least(2e-10, 1e-6) == "<1e-06"
    assert lab.at_least(4.2e-6, 1e-6) == "4e-06"
    assert lab.at_least(7.4e-9, 6e-8, ".1e") == "<6.0e-08"
    assert lab.at_least(0.38, 6e-8, ".1e") == "3.8e-01"
    with pytest.raises(ValueError, match="floor must be positive"):
        lab.at_least(1.0, 0.0)


def test_first_step_ratios_is_lr_times_gradient_over_weight():
    r1 = lab.first_step_ratios("relu", depth=4, init="he_normal", scale=1.0, lr=0.1)
    r2 = lab.first_step_ratios("relu", depth=4, init="he_normal", scale=1.0, lr=0.01)
    assert r1.shape == (5,) and np.allclose(r1, 10 * r2)
    grads = np.array(lab.gradient_profile("relu", 4, "he_normal", 1.0))
    model = make_mlp(64, 10, width=lab.WIDTH, depth=4, activation="relu", init="he_normal", seed=0)
    weights = np.array([m.weight.norm().item() for m in linear_layers(model)])
    assert np.allclose(r1, 0.1 * grads / weights)
    # larger weights: a larger step relative to the weights (gradients grow ~ s^depth)
    big = lab.first_step_ratios("relu", depth=4, init="he_normal", scale=2.0, lr=0.1)
    assert big.max() > 5 * r1.max()
    with pytest.raises(ValueError):
        lab.first_step_ratios(lr=-1.0)


def test_widget_scale_reaches_the_sigmoid_recovery():
    assert 16.0 in lab.SCALES
    ratio = lab.first_last_ratio(lab.gradient_profile("sigmoid", 15, "lecun_normal", 16.0))
    small = lab.first_last_ratio(lab.gradient_profile("sigmoid", 15, "lecun_normal", 1.0))
    assert ratio > 1e3 * small
