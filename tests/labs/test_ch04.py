"""Chapter 04's experiments and widget, without a browser."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from nncourse.diagnostics import activation_stats
from nncourse.labs import ch04 as lab
from nncourse.models import make_mlp

matplotlib.use("Agg")


def test_collapse_linear_gives_identical_outputs():
    model = make_mlp(5, 3, width=[7, 4, 6], activation="identity", seed=0).double()
    single = lab.collapse_linear(model)
    assert single.weight.dtype == torch.float64  # not rounded through float32 on the way
    X = torch.randn(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(single(X), model(X), rtol=0, atol=1e-12)
    assert single.weight.shape == (3, 5)


def test_collapse_linear_refuses_a_nonlinearity():
    with pytest.raises(ValueError, match="ReLU"):
        lab.collapse_linear(make_mlp(2, 1, width=3, depth=1))
    with pytest.raises(TypeError, match="nn.Sequential"):
        lab.collapse_linear(nn.Linear(2, 2))


def test_negative_fraction_is_the_dead_fraction_for_relu():
    model = make_mlp(4, 2, width=16, depth=3, seed=1)
    with torch.no_grad():
        model[0].bias[:4] = -100.0  # kill 4 of 16 first-layer units
    X = torch.rand(50, 4, generator=torch.Generator().manual_seed(1))
    neg = lab.negative_fraction(model, X)
    dead = [r["dead"] for r in activation_stats(model, X)]
    assert neg == pytest.approx(dead)
    assert neg[0] >= 0.25
    leaky = make_mlp(4, 2, width=16, depth=3, activation="leaky_relu", seed=1)
    with torch.no_grad():
        leaky[0].bias[:4] = -100.0
    assert lab.negative_fraction(leaky, X)[0] >= 0.25          # negative for every input ...
    assert activation_stats(leaky, X)[0]["dead"] == 0.0     # ... but not dead: slope 0.01


def test_prelu_slopes_reads_the_learned_parameters():
    model = make_mlp(3, 1, width=4, depth=2, activation="prelu")
    assert lab.prelu_slopes(model) == pytest.approx([0.25, 0.25])


def test_selu_self_normalizes_and_relu_does_not():
    selu = lab.depth_statistics("selu", "lecun_normal", depth=30, width=64, n=200)
    relu = lab.depth_statistics("relu", "he_normal", depth=30, width=64, n=200)
    assert len(selu["mean"]) == 30
    assert abs(selu["mean"][-1]) < 0.2 and abs(selu["std"][-1] - 1) < 0.2
    assert relu["mean"][-1] > 0.05  # ReLU outputs are never zero-centred


def test_variance_gain_recovers_he():
    assert lab.variance_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-4)
    assert lab.variance_gain("identity") == pytest.approx(1.0, rel=1e-4)
    assert lab.variance_gain("selu") == pytest.approx(1.0, abs=1e-3)


def test_gradient_flow_vanishes_for_sigmoid_not_selu():
    sig = lab.gradient_flow("sigmoid", depth=10)
    selu = lab.gradient_flow("selu", depth=10)
    assert len(sig) == 11 and all(np.isfinite(sig))
    assert sig[0] / sig[-2] < 1e-3
    assert 0.1 < selu[0] / selu[-2] < 10
    assert lab.gradient_flow("leaky_relu", 0.5, depth=5) != lab.gradient_flow("leaky_relu", 0.01,
                                                                          depth=5)


def test_matched_init_and_name_validation():
    assert lab.matched_init("tanh") == {"init": "xavier_normal", "init_gain": 5 / 3}
    assert lab.matched_init("relu") == {"init": "he_normal", "init_gain": None}
    with pytest.raises(ValueError, match="activations must be names"):
        lab._check_names(["relu6"])


def test_widget_builds_and_redraws():
    box = lab.explore_activation(depth=6)
    dropdown, slider = box.children[0].children
    fig = box.figure
    title = fig.axes[1].get_title()
    dropdown.value = "elu"
    assert slider.value == 1.0 and slider.description == "alpha"
    assert fig.axes[1].get_title() != title
    slider.value = 2.0
    assert "alpha = 2.00" in fig.axes[0].get_title()
    dropdown.value = "tanh"
    assert slider.disabled


def test_fixed_budget_runs_small():
    runs = lab.fixed_budget_runs(("relu", "tanh"), epochs=1, width=8, depth=1)
    assert set(runs) == {"relu", "tanh"} and all(h.epochs_run == 1 for h in runs.values())


def test_dying_relu_seeds_stacks_one_run_per_seed():
    runs = lab.dying_relu_seeds(("relu", "elu"), seeds=(0, 1), epochs=1, width=8, depth=2)
    assert set(runs) == {"relu", "elu"}
    assert runs["relu"]["dead"].shape == runs["relu"]["negative"].shape == (2, 2)
    assert runs["relu"]["val_acc"].shape == (2,)
    one = lab.dying_relu_runs(("relu", "elu"), epochs=1, width=8, depth=2, seed=1)
    assert runs["elu"]["dead"][1].tolist() == one["elu"]["dead"]
    assert runs["elu"]["val_acc"][1] == one["elu"]["val_acc"]
    runs["extra"] = runs["relu"]  # the caller's dict, not the cache's
    assert "extra" not in lab.dying_relu_seeds(("relu", "elu"), seeds=(0, 1), epochs=1, width=8,
                                               depth=2)
    with pytest.raises(ValueError, match="seeds must be"):
        lab.dying_relu_seeds(seeds=())


def test_seed_table_prints_means_and_spreads():
    runs = {"relu": {"dead": np.array([[0.5, 0.3], [0.3, 0.1]]),
                     "negative": np.array([[0.5, 0.3], [0.3, 0.1]]),
                     "val_acc": np.array([0.9, 0.8])}}
    header, row, note = lab.seed_table(runs)
    assert "val acc" in header and note == "(mean ± standard deviation over 2 seeds)"
    # per layer 0.40 0.20; all layers 0.40 and 0.20 per seed -> 0.30 ± 0.14; 85.0 ± 7.1
    assert row.split() == ["relu", "0.40", "0.20", "0.30", "±", "0.14", "0.30", "±", "0.14",
                           "85.0", "±", "7.1"]
    with pytest.raises(ValueError, match="same number of seeds"):
        lab.seed_table({**runs, "elu": {**runs["relu"], "val_acc": np.array([0.9])}})


def test_widget_prefetches_gradient_flows_once_a_browser_shows_it():
    lab.gradient_flow.cache_clear()
    box = lab.explore_activation(depth=6)
    assert lab._FLOWS.plan == [] and lab._FLOWS.thread is None  # no browser: no background work
    box.children[2]._handle_message(None, {"type": "initialized"}, [])  # a view opens
    assert lab._FLOWS.idle(timeout=120)
    before = lab.gradient_flow.cache_info()
    dropdown, slider = box.children[0].children
    slider.value = 0.02  # the slider's next step, then every activation: already computed
    for name in dropdown.options[:4]:
        dropdown.value = name
    assert lab.gradient_flow.cache_info().misses == before.misses
    assert lab.gradient_flow("leaky_relu", 0.02, depth=6) == lab.gradient_flow.__wrapped__(
        "leaky_relu", 0.02, depth=6)
