import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nncourse import data, models, plotting, training  # noqa: E402


def test_colours_are_fixed_per_name_and_stable_for_unknown_names():
    assert plotting.color("ReLU") == plotting.color("relu") == plotting.COLORS["relu"]
    assert plotting.color("leaky-relu") == plotting.COLORS["leaky_relu"]
    assert plotting.color("my method") == plotting.color("my method")


def test_style_is_applied():
    plotting.use_style()
    assert matplotlib.rcParams["figure.dpi"] == 80 and matplotlib.rcParams["axes.grid"]


def test_plot_history_and_boundary():
    d = data.load_moons(n_samples=200)
    m = models.make_mlp(2, 1, width=8, seed=0)
    h = training.train(m, d, epochs=3, progress=False)
    fig, (a, b) = plt.subplots(1, 2)
    plotting.plot_history(h, "acc", ax=a, title="t")
    assert [line.get_label() for line in a.get_lines()] == ["train", "val"]
    assert a.get_ylabel() == "accuracy"
    plotting.plot_decision_boundary(m, d.X_val, d.y_val, ax=b)
    assert b.collections  # contour + scatter
    with pytest.raises(ValueError, match="metric must be 'loss' or 'acc'"):
        plotting.plot_history(h, "f1")
    with pytest.raises(ValueError, match=r"2-D inputs of shape \(n, 2\)"):
        plotting.plot_decision_boundary(m, d.X_val[:, :1], d.y_val)
    plt.close("all")


def test_plot_per_layer_uses_log_scale_when_values_span_decades():
    ax = plotting.plot_per_layer({"sigmoid": [1e-6, 1e-3, 1.0], "relu": [0.5, 0.6, 0.7]})
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 2
    ax = plotting.plot_per_layer([1.0, 2.0, 3.0])
    assert ax.get_yscale() == "linear"
    plt.close("all")


def test_decade_limits_always_show_the_reference_range():
    assert plotting.decade_limits(np.array([0.3, 0.5])) == (1e-4, 1e2)
    assert plotting.decade_limits(np.array([3e-9, 2e5])) == (1e-9, 1e6)
    assert plotting.decade_limits(np.array([0.0, np.nan])) == (1e-4, 1e2)
    # a margin keeps points off the edges: 1.5e-9 / 2 lies below 1e-9
    assert plotting.decade_limits([1.5e-9, 600], at_least=(1e-3, 1e3), margin=2.0) == (1e-10, 1e4)
