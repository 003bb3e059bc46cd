import math

import numpy as np
import pytest
import torch

from nncourse import init
from nncourse.labs import ch03 as lab


def test_weight_std_matches_the_initializers():
    fan_in, fan_out = 300, 500
    cases = {"xavier_normal": lambda w, g: init.xavier_normal_(w, generator=g),
             "he_normal": lambda w, g: init.kaiming_normal_(w, nonlinearity="relu", generator=g),
             "lecun_normal": lambda w, g: init.lecun_normal_(w, generator=g)}
    for scheme, fill in cases.items():
        w = fill(torch.empty(fan_out, fan_in), torch.Generator().manual_seed(0))
        assert w.std().item() == pytest.approx(lab.weight_std(scheme, fan_in, fan_out), rel=0.01)
    assert lab.weight_std("xavier_normal", 128, 128, gain=5 / 3) == pytest.approx(
        5 / 3 / math.sqrt(128))
    assert lab.weight_std("normal_0.01", 10, 10) == 0.01
    with pytest.raises(ValueError,
                       match="weights must be one of normal_0.01, normal_1, .*got .glorot."):
        lab.weight_std("glorot", 1, 1)


def test_propagate_first_layer_follows_the_variance_rule():
    # One linear layer on N(0, 1) inputs: Var[y] = fan_in * Var[W].
    for scheme, expected in [("lecun_normal", 1.0), ("he_normal", math.sqrt(2)),
                             ("normal_0.01", 0.01 * math.sqrt(128))]:
        p = lab.propagate(scheme, "linear", depth=1)
        assert p.stds[0] == pytest.approx(expected, rel=0.05)


def test_propagate_vanishes_explodes_and_holds():
    assert lab.propagate("normal_0.01", "tanh", depth=20).stds[-1] < 1e-15
    assert lab.propagate("normal_1", "relu", depth=20).stds[-1] > 1e15
    for scheme, activation in [("lecun_normal", "linear"), ("lecun_normal", "selu"),
                               ("he_normal", "relu")]:
        stds = lab.propagate(scheme, activation, depth=50).stds
        assert 0.2 < stds[-1] / stds[0] < 5, (scheme, activation)
    assert np.all(np.isfinite(lab.propagate("normal_1", "linear", depth=100).stds))  # float64


def test_propagate_saturation_and_kept_values():
    p = lab.propagate("normal_1", "tanh", depth=5, keep=(1, 5))
    assert (p.saturated[-1] > 0.7
            and lab.propagate("xavier_normal", "tanh", depth=5).saturated[-1] < 0.01)
    assert sorted(p.values) == [1, 5] and p.values[5].shape == (256 * 128,)
    assert p.values[5].std(ddof=1) == pytest.approx(p.stds[4], rel=1e-6)
    assert not lab.propagate("he_normal", "relu", depth=3).saturated.any()


def test_propagate_is_deterministic_and_depth_prefix_consistent():
    a = lab.propagate("he_normal", "relu", depth=30).stds
    b = lab.propagate("he_normal", "relu", depth=10).stds
    np.testing.assert_array_equal(a[:10], b)


def test_propagate_validates_arguments():
    with pytest.raises(ValueError, match="activation must be one of linear, tanh, .*got 'gelu'"):
        lab.propagate("he_normal", "gelu")
    with pytest.raises(ValueError, match="depth must be a positive integer, got 0"):
        lab.propagate("he_normal", "relu", depth=0)
    with pytest.raises(ValueError, match="gain must be a positive number"):
        lab.propagate("he_normal", "relu", gain=-1.0)
    with pytest.raises(ValueError, match=r"keep must list layers in \[1, 5\]"):
        lab.propagate("he_normal", "relu", depth=5, keep=(6,))


def test_zero_init_stays_at_chance_and_constant_init_stays_symmetric():
    zeros = lab.train_circles("zeros", epochs=10)
    assert zeros.train_loss == pytest.approx(math.log(2), abs=1e-3) and zeros.test_acc == 0.5
    const = lab.train_circles("constant", epochs=10)
    first = const.model[0]
    assert lab.unit_spread(first) == 0.0
    assert not torch.allclose(first.weight, torch.full_like(first.weight, 0.5))  # it did move
    he = lab.train_circles("he", epochs=10)
    assert lab.unit_spread(he.model[0]) > 0.1
    assert he.initial_loss < 2 < lab.train_circles("large", epochs=1).initial_loss


def test_circles_model_validates_and_random_biases():
    with pytest.raises(ValueError,
                       match="init must be one of zeros, constant, .*got .xavier_normal."):
        lab.circles_model("xavier_normal")
    assert lab.circles_model("he", bias="normal")[0].bias.abs().sum() > 0
    assert not lab.circles_model("he")[0].bias.any()


def test_widget_static_and_live_redraw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert lab.explore_initialization(static=True) is None
    plt.close("all")
    box = lab.explore_initialization()
    scheme, gain, activation, depth = box.children[0].children
    assert box.children[1].value == ""
    ax_std, ax_hist = box.figure.axes
    line = ax_std.get_lines()[0]
    assert len(line.get_xdata()) == 50 and len(ax_hist.patches) == 4
    depth.value = 7
    activation.value = "relu"
    scheme.value = "he_normal"
    assert box.children[1].value == ""
    assert len(line.get_xdata()) == 7
    np.testing.assert_allclose(line.get_ydata(), lab.propagate("he_normal", "relu", 7).stds)
    visible = [p for p in ax_hist.patches if p.get_visible()]
    assert len(visible) == 4 and [p.get_label() for p in visible] == [
        "layer 1", "layer 2", "layer 5", "layer 7"]
    depth.value = 2
    assert sum(p.get_visible() for p in ax_hist.patches) == 2
    # Laid out once with room for the widest log tick labels, then frozen (faster redraws).
    assert type(box.figure.get_layout_engine()).__name__ == "PlaceHolderLayoutEngine"
    assert ax_std.get_ylim()[0] > 1e-100
    assert ax_hist.get_title() == "layers 1, 2 (dark → light)"
    last = lab.propagate("he_normal", "relu", 2).stds[-1]
    w_std = lab.weight_std("he_normal", 128, 128)
    assert ax_std.get_title() == (f"relu, 2 layers, He weights (std {w_std:.3g})\n"
                                  f"→ layer 2: std {lab.format_std(last)}")
    scheme.value = "lecun_normal"
    lecun = ax_std.get_title()
    scheme.value = "xavier_normal"  # same std for square layers: the title still tells them apart
    assert lecun.startswith("relu, 2 layers, LeCun weights")
    assert ax_std.get_title().startswith("relu, 2 layers, Xavier weights")
    assert lecun.split(" (")[1] == ax_std.get_title().split(" (")[1]
    # Axis labels and titles stay where the first layout put them (no re-measuring per redraw).
    assert not ax_std.xaxis._autolabelpos and not ax_std._autotitlepos


def test_format_std_is_coarse_outside_the_healthy_range():
    assert [lab.format_std(v) for v in (3.68e-48, 3.68e52, 2.58e7, 1.04e-8)] == [
        "4e-48", "4e+52", "3e+07", "1e-08"]
    assert [lab.format_std(v) for v in (0.769, 22.2, 0.078, 0.001)] == ["0.769", "22.2", "0.078",
                                                                      "0.001"]
    assert lab.format_std(0.0) == "0" and lab.format_std(float("inf")) == "inf"


def _bin_tolerance(n_values: int) -> float:
    # the stated bound of Profile.fractions from quantiles: 2 / (Q - 1) plus 4 / n
    return 2 / (lab._QUANTILES - 1) + 4 / n_values


def test_widget_profile_matches_propagate():
    # float64 paths: a homogeneous activation reuses one pass for every gain; SELU does not.
    for activation, gain in [("relu", 1.7), ("linear", 0.6), ("selu", 1.3), ("relu", 1.0),
                             ("sigmoid", 3.0), ("tanh", 2.5)]:
        expected = lab.propagate("he_normal", activation, 30, gain, keep=(1, 30))
        got = lab.widget_profile("he_normal", activation, 30, gain, keep=(1, 30))
        np.testing.assert_allclose(got.stds, expected.stds, rtol=1e-10)
        np.testing.assert_array_equal(got.saturated, expected.saturated)
        assert got.kept == expected.kept == (1, 30)
        for k in (1, 30):
            v = expected.values[k]
            q = got.quantiles[k]
            assert q[0] == pytest.approx(v.min(), rel=1e-6) and q[-1] == pytest.approx(v.max(),
                                                                                     rel=1e-6)
            for scale in (0.3, 1.0, 2.0):  # bins narrower and wider than the histogram's range
                edges = np.linspace(-scale * got.limit, scale * got.limit, 61)
                exact, approx = expected.fractions(k, edges), got.fractions(k, edges)
                assert approx.sum() == pytest.approx(1.0)
                assert np.abs(approx - exact).max() <= _bin_tolerance(v.size), (activation, k)
        assert got.limit == pytest.approx(lab._histogram_limit(expected), rel=1e-5)
    # Other activations: the same arithmetic, the same numbers.
    for scheme in ("xavier_normal", "normal_1"):
        expected = lab.propagate(scheme, "tanh", 20, 1.2)
        got = lab.widget_profile(scheme, "tanh", 20, 1.2)
        np.testing.assert_array_equal(got.stds, expected.stds)
        np.testing.assert_array_equal(got.saturated, expected.saturated)


def test_histogram_from_quantiles_counts_ties_and_tails_like_np_histogram():
    rng = np.random.default_rng(0)
    # ReLU-like: half the values exactly 0 (an edge falls on it), a long right tail
    values = np.maximum(rng.standard_normal(20_000), 0.0) ** 3
    q = np.quantile(values, np.linspace(0, 1, lab._QUANTILES))
    for edges in (np.linspace(-1.0, 1.0, 61), np.linspace(-0.5, 4.0, 10),
                  np.array([0.0, 0.1, 0.2, 0.3])):  # the first edge exactly at the atom
        exact = lab._fractions(values, edges)
        approx = lab._quantile_fractions(q, edges)
        assert np.abs(approx - exact).max() <= _bin_tolerance(values.size)
    # the atom lands in the bin that starts at 0, as in np.histogram
    edges = np.array([-1.0, 0.0, 1e-6, 100.0])
    approx = lab._quantile_fractions(q, edges)
    assert approx[0] == 0.0 and approx[1] == pytest.approx(lab._fractions(values, edges)[1],
                                                           abs=_bin_tolerance(values.size))
    # everything outside the edges is counted in the outermost bins
    np.testing.assert_allclose(lab._quantile_fractions(q, np.array([-3.0, -2.0, -1.0])),
                               [0.0, 1.0])
    u = np.sort(rng.standard_normal(4097).astype(np.float32))
    assert lab._abs_quantile(u, 0.995) == pytest.approx(np.quantile(np.abs(u), 0.995), rel=1e-6)


def test_cache_keeps_hundreds_of_passes_in_tens_of_megabytes():
    lab._FORWARD_CACHE.clear()
    entry = lab._forward("tanh", 0.1, 50, 128, 256, 0)
    per_layer = sum(a.nbytes for a in entry.quantiles) / entry.done
    assert per_layer <= 4200  # 1025 float32 quantiles, not 32768 values
    assert lab._CACHE_LAYERS * per_layer <= 40e6
    assert lab._CACHE_LAYERS // 50 >= 150  # passes of the widget's default depth
    # a pass whose last layer was dropped is extended by recomputing from the input: same numbers
    entry.h = None
    deeper = lab._forward("tanh", 0.1, 60, 128, 256, 0)
    assert deeper is entry and deeper.done == 60
    np.testing.assert_array_equal(deeper.stds, lab.propagate("normal_1", "tanh", 60, 0.1).stds)


def test_prefetch_fills_the_cache_in_the_background_with_the_same_numbers():
    lab._FORWARD_CACHE.clear()
    plan = lab._prefetch_plan("xavier_normal", 1.0, "tanh", 12, 128, 256, gains=(1.05, 0.95))
    keys = [key for key, _ in plan]
    assert len(keys) == len(set(keys))
    # the current setting, the gain slider's next steps, the dropdowns' next options...
    # and last the other activations at the neighbouring gains
    assert keys[0] == lab._pass_key("xavier_normal", "tanh", 1.0, 128, 256, 0)
    assert keys[1:5] == [lab._pass_key("xavier_normal", "tanh", 1.05, 128, 256, 0),
                         lab._pass_key("xavier_normal", "tanh", 0.95, 128, 256, 0),
                         lab._pass_key("he_normal", "tanh", 1.0, 128, 256, 0),
                         lab._pass_key("xavier_normal", "sigmoid", 1.0, 128, 256, 0)]
    assert keys[-1] == lab._pass_key("xavier_normal", "selu", 0.95, 128, 256, 0)
    # every option of both dropdowns, and the gain's neighbours where the gain needs a new pass
    wanted = {lab._pass_key(s, a, g, 128, 256, 0) for s in lab.WEIGHTS for a in lab.ACTIVATIONS
              for g in (1.0,)} | {lab._pass_key("xavier_normal", a, g, 128, 256, 0)
                                  for a in ("tanh", "sigmoid", "selu") for g in (1.05, 0.95)}
    assert set(keys) == wanted
    lab._PREFETCH.resume(plan)
    assert lab._PREFETCH.idle(timeout=120)
    assert all(lab._FORWARD_CACHE[key].done >= 12 for key in keys)
    assert lab._prefetch_plan("xavier_normal", 1.0, "tanh", 12, 128, 256,
                              gains=(1.05, 0.95)) == []
    for scheme, activation, gain in [("normal_1", "sigmoid", 1.0), ("xavier_normal", "selu", 1.05),
                                     ("he_normal", "relu", 1.0)]:
        got = lab.widget_profile(scheme, activation, 12, gain, keep=(12,))
        np.testing.assert_array_equal(got.stds, lab.propagate(scheme, activation, 12, gain).stds)
    # paused (while the widget draws a frame), it computes nothing
    lab._PREFETCH.pause()
    lab._PREFETCH.plan = [(lab._pass_key("normal_1", "tanh", 2.0, 128, 256, 0), 5)]
    assert not lab._PREFETCH.idle(timeout=0.5)
    lab._PREFETCH.resume(lab._PREFETCH.plan)
    assert lab._PREFETCH.idle(timeout=60)


def test_the_widget_prefetches_only_once_a_browser_shows_it(monkeypatch):
    plans = []
    monkeypatch.setattr(lab._PREFETCH, "resume", plans.append)
    box = lab.explore_initialization()
    assert plans == []  # executed without a browser (nbval): no background work
    canvas = box.children[2]
    canvas._handle_message(None, {"type": "initialized"}, [])
    assert len(plans) == 1
    box.children[0].children[2].value = "relu"
    assert len(plans) == 2


def test_widget_profile_extends_cached_passes_with_depth():
    shallow = lab.widget_profile("xavier_normal", "sigmoid", 5, 2.0)
    deep = lab.widget_profile("xavier_normal", "sigmoid", 40, 2.0, keep=(40,))
    np.testing.assert_array_equal(deep.stds[:5], shallow.stds)
    np.testing.assert_array_equal(deep.stds,
                                  lab.propagate("xavier_normal", "sigmoid", 40, 2.0).stds)
    with pytest.raises(ValueError, match="gain must be a positive number"):
        lab.widget_profile("he_normal", "relu", gain=0)


def test_decade_ticks_use_round_steps():
    np.testing.assert_allclose(lab._decade_ticks(1e-3, 10), [1e-3, 1e-2, 1e-1, 1, 10])
    np.testing.assert_allclose(lab._decade_ticks(1e-172, 1), [1e-150, 1e-100, 1e-50, 1])
    np.testing.assert_allclose(lab._decade_ticks(1e-3, 1e154), [1, 1e50, 1e100, 1e150])


def test_gradient_profile_backward_regimes():
    tiny = lab.gradient_profile("normal_0.01", "tanh", depth=10)
    big = lab.gradient_profile("normal_1", "tanh", depth=10)
    xavier = lab.gradient_profile("xavier_normal", "tanh", depth=10)
    assert tiny.shape == (10,) and tiny.max() < 1e-6          # vanished everywhere
    assert big[0] / big[-1] > 100                              # chaotic: explodes toward the input
    assert 0.5 < xavier[0] / xavier[-1] < 2                    # flat
    with pytest.raises(ValueError):
        lab.gradient_profile("xavier_normal", "softmax")


def test_train_deep_runs_every_network_per_seed():
    runs = lab.train_deep(seeds=(0,), depth=2, width=8, epochs=1)
    assert list(runs) == list(lab.DEEP_RUNS)
    assert all(len(h) == 1 and h[0].epochs_run == 1 for h in runs.values())
    with pytest.raises(ValueError):
        lab.train_deep(seeds=())


def test_prefetch_plans_the_depth_shown_before_the_layers_beyond():
    lab._FORWARD_CACHE.clear()
    plan = lab._prefetch_plan("he_normal", 1.0, "relu", 8, 128, 256, deeper=12)
    depths = [d for _, d in plan]
    assert depths == sorted(depths) and set(depths) == {8, 12}
    assert len(plan) == 2 * len({key for key, _ in plan})
