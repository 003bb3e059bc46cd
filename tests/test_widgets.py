import ipywidgets as W
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402

from nncourse import tour, widgets  # noqa: E402


def test_interactive_figure_redraws_on_every_change():
    calls = []

    def draw(axes, state, a, b):
        calls.append((a, b))
        state.setdefault("line", axes[0].plot([0, 1], [a, b])[0]).set_ydata([a, b])

    box = widgets.interactive_figure(draw, {"a": W.FloatSlider(value=1.0), "b": W.IntSlider(3)})
    slider_a = box.children[0].children[0]
    slider_a.value = 2.0
    assert calls == [(1.0, 3), (2.0, 3)]
    assert list(box.figure.axes[0].get_lines()[0].get_ydata()) == [2.0, 3]


def test_invalid_setting_is_reported_in_the_widget_not_raised():
    def draw(axes, state, a):
        if a > 5:
            raise ValueError("a must be at most 5")

    box = widgets.interactive_figure(draw, {"a": W.IntSlider(1, 0, 10)})
    box.children[0].children[0].value = 7
    assert "a must be at most 5" in box.children[1].value


def test_static_mode_draws_the_default_state_once():
    calls = []
    out = widgets.interactive_figure(lambda axes, state, a: calls.append(a),
                                     {"a": W.IntSlider(4)}, static=True)
    assert out is None and calls == [4]


def test_draw_must_be_callable():
    with pytest.raises(TypeError, match="draw must be callable"):
        widgets.interactive_figure(None, {})


def test_tour_runs_show_that_a_tiny_learning_rate_crawls():
    runs = tour.learning_rate_runs(epochs=10)
    assert set(runs) == set(tour.LEARNING_RATES)
    assert runs[0.003]["train_loss"][-1] > runs[1.0]["train_loss"][-1]
    box = tour.explore_learning_rate(epochs=10)
    slider = box.children[0].children[0]
    slider.value = 0.003
    assert "lr = 0.003" in box.figure.axes[0].get_title()


def test_layout_is_computed_once_then_frozen():
    box = widgets.interactive_figure(lambda axes, state, a: axes[0].set_title(f"a = {a}"),
                                     {"a": W.IntSlider(1)})
    pos = box.figure.axes[0].get_position().bounds
    box.children[0].children[0].value = 2
    assert not isinstance(box.figure.get_layout_engine(), ConstrainedLayoutEngine)
    assert box.figure.axes[0].get_position().bounds == pos


def test_a_control_that_resets_another_draws_once():
    calls = []
    kind = W.Dropdown(options=["a", "b"], value="a")
    param = W.IntSlider(1)
    kind.observe(lambda change: setattr(param, "value", 5), names="value")  # registered first
    widgets.interactive_figure(lambda axes, state, kind, param: calls.append((kind, param)),
                               {"kind": kind, "param": param})
    kind.value = "b"
    assert calls == [("a", 1), ("b", 5)]
