import importlib
import inspect
import pkgutil

import ipywidgets as W
import matplotlib
import numpy as np

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402

import nncourse.labs  # noqa: E402
from nncourse import widgets  # noqa: E402
from nncourse.labs import ch00  # noqa: E402


def test_interactive_figure_redraws_on_every_change():
    calls = []

    def draw(axes, state, a, b):
        calls.append((a, b))
        state.setdefault("line", axes[0].plot([0, 1], [a, b])[0]).set_ydata([a, b])

    box = widgets.interactive_figure(draw, {"a": W.FloatSlider(value=1.0), "b": W.IntSlider(3)})
    slider_a = box.children[0].children[0]
    slider_a.value = 2.0
    # the default state twice (the second time to learn what draw changes: _Layers.learn)
    assert calls == [(1.0, 3), (1.0, 3), (2.0, 3)]
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
    runs = ch00.learning_rate_runs(epochs=10)
    assert set(runs) == set(ch00.LEARNING_RATES)
    assert runs[0.003]["train_loss"][-1] > runs[1.0]["train_loss"][-1]
    box = ch00.explore_learning_rate(epochs=10)
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
    assert calls == [("a", 1), ("a", 1), ("b", 5)]  # the default state: see the test above


# --- fast redraws: new data over a cached background ------------------------------------------

def _pixels(canvas):
    return np.asarray(canvas.get_renderer().buffer_rgba()).copy()


def _full_redraw(canvas):
    """What matplotlib itself draws for the figure's current state."""
    FigureCanvasAgg.draw(canvas)
    return _pixels(canvas)


def _step(control, i: int) -> None:
    """Move a control one step (back and forth, so every value is a real change)."""
    options = getattr(control, "options", None)
    if options:
        values = [o[1] if isinstance(o, tuple) else o for o in options]
        j = values.index(control.value)
        control.value = values[(j + (1 if (i // 3) % 2 == 0 else -1)) % len(values)]
    else:
        up = control.value + control.step
        control.value = up if up <= control.max else control.min


def _toy_widget():
    def draw(axes, state, a):
        ax = axes[0]
        if "line" not in state:
            state["line"], = ax.plot([0, 1], [0, a], lw=3, label="line")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 10)
            ax.legend(loc="center")  # drawn over the line: the overlay must repaint it too
            ax.set_xlabel("x")
        state["line"].set_ydata([0, a])
        ax.set_title(f"a = {a}")

    return widgets.interactive_figure(draw, {"a": W.IntSlider(5, 0, 10)})


def _toy_widget_after_a_change():
    """The toy widget once its first frame and a frame after a change are drawn: it knows
    which artists change."""
    box = _toy_widget()
    canvas = box.figure.canvas
    canvas.draw()
    box.children[0].children[0].value = 6
    canvas.draw()
    return box, canvas, box.figure.axes[0]


def test_a_fast_frame_is_the_same_picture_as_a_full_redraw():
    box = _toy_widget()
    canvas, slider = box.figure.canvas, box.children[0].children[0]
    canvas.draw()
    for value in (6, 7, 2, 9):
        slider.value = value
        canvas.draw()
        assert np.array_equal(_pixels(canvas), _full_redraw(canvas))
    # the first frame; what changes was learned before it, so every later frame repaints only that
    assert canvas.layers.frames == {"full": 1, "fast": 4}
    line, legend = box.figure.axes[0].get_lines()[0], box.figure.axes[0].get_legend()
    overlay = canvas.layers.overlay
    assert line in overlay and legend in overlay
    assert box.figure.axes[0].xaxis not in overlay and box.figure.axes[0].yaxis not in overlay


def test_new_limits_or_a_new_artist_force_a_full_redraw():
    box, canvas, ax = _toy_widget_after_a_change()
    assert canvas.layers.render(canvas) == "fast"
    ax.set_ylim(0, 20)
    assert canvas.layers.render(canvas) == "full"
    assert np.array_equal(_pixels(canvas), _full_redraw(canvas))
    ax.axhline(3, color="r")
    assert canvas.layers.render(canvas) == "full"
    assert np.array_equal(_pixels(canvas), _full_redraw(canvas))
    box.figure.suptitle("changed")
    assert canvas.layers.render(canvas) == "full"
    assert np.array_equal(_pixels(canvas), _full_redraw(canvas))


def test_set_limits_leaves_unchanged_limits_alone():
    box, canvas, ax = _toy_widget_after_a_change()
    widgets.set_limits(ax, xlim=(0, 1), ylim=(0, 10))
    assert canvas.layers.render(canvas) == "fast"
    widgets.set_limits(ax, ylim=(0, 12))
    assert ax.get_ylim() == (0, 12)
    assert canvas.layers.render(canvas) == "full"


def test_limits_seen_before_reuse_their_background():
    box, canvas, ax = _toy_widget_after_a_change()
    ax.set_ylim(0, 20)
    ax.set_yticks([0, 5, 10, 15, 20])  # re-ticking with new limits is part of that full redraw
    assert canvas.layers.render(canvas) == "full"
    assert ax.yaxis not in canvas.layers.overlay
    ax.set_ylim(0, 10)
    ax.set_yticks([0, 2, 4, 6, 8, 10])
    box.children[0].children[0].value = 3
    assert canvas.layers.render(canvas) == "fast"  # the background of 0..10, kept
    assert np.array_equal(_pixels(canvas), _full_redraw(canvas))
    ax.set_ylim(0, 20)
    ax.set_yticks([0, 5, 10, 15, 20])
    assert canvas.layers.render(canvas) == "fast"
    assert np.array_equal(_pixels(canvas), _full_redraw(canvas))
    ax.axhline(3, color="r")  # a new artist: the kept backgrounds no longer hold
    assert canvas.layers.render(canvas) == "full"
    ax.set_ylim(0, 10)
    ax.set_yticks([0, 2, 4, 6, 8, 10])
    assert canvas.layers.render(canvas) == "full"
    assert np.array_equal(_pixels(canvas), _full_redraw(canvas))


def test_steady_limits_move_only_when_the_data_leave_them_or_fill_too_little():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    assert widgets.steady_limits(ax, "y", 0.0, 0.37)
    assert ax.get_ylim() == (0.0, 0.4)  # round values around the data
    assert not widgets.steady_limits(ax, "y", 0.0, 0.33)  # fits and fills enough: kept
    assert widgets.steady_limits(ax, "y", 0.0, 0.45)  # leaves them
    assert ax.get_ylim()[1] >= 0.45
    assert widgets.steady_limits(ax, "y", 0.0, 0.1)  # fills too little
    assert ax.get_ylim() == (0.0, 0.1)
    assert widgets.steady_limits(ax, "x", -0.27, 0.27)
    assert ax.get_xlim() == (-0.3, 0.3)  # symmetric data, symmetric limits
    ax.set_yscale("log")
    assert widgets.steady_limits(ax, "y", 3e-5, 20)
    assert ax.get_ylim() == (1e-5, 100.0)  # whole decades
    assert not widgets.steady_limits(ax, "y", 1e-4, 10)
    assert widgets.steady_limits(ax, "y", 1e-2, 1, fill=0.9)
    assert ax.get_ylim() == (1e-2, 1.0)
    assert widgets.steady_limits(ax, "y", 0.5, 0.6, at_least=(1e-3, 10.0))
    assert ax.get_ylim() == (1e-3, 10.0)
    with pytest.raises(ValueError, match="axis must be 'x' or 'y'"):
        widgets.steady_limits(ax, "z", 0, 1)


def test_with_a_browser_view_open_a_change_is_rendered_at_once():
    box = _toy_widget()
    canvas = box.figure.canvas
    slider = box.children[0].children[0]
    slider.value = 6  # no view yet: the browser asks for a frame when it opens
    assert canvas.layers.frames == {"full": 0, "fast": 0}
    canvas.syncing_data_url = False  # what ipympl records when a view has initialized
    slider.value = 7
    assert sum(canvas.layers.frames.values()) == 1


def _course_widgets():
    """Every ``explore_*`` function of the chapter labs (``nncourse/labs/chNN.py``): the widgets."""
    found = []
    for info in pkgutil.iter_modules(nncourse.labs.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"nncourse.labs.{info.name}")
        found += [pytest.param(f, id=f"labs.{info.name}.{name}")
                  for name, f in inspect.getmembers(module, inspect.isfunction)
                  if name.startswith("explore_") and f.__module__ == module.__name__]
    return found


#: Widgets that only swap precomputed data into fixed axes: after the first frames, every frame
#: should be a fast one. (The others rescale their axes on most moves.)
SWAP_ONLY = {"explore_learning_rate", "explore_training", "explore_activation",
             "explore_regularization", "explore_sparsity"}


def test_the_course_has_widgets():
    assert len(_course_widgets()) >= 7


@pytest.mark.parametrize("explore", _course_widgets())
def test_every_course_widget_redraws_the_same_picture_fast_or_full(explore):
    box = explore()
    canvas = box.figure.canvas
    controls = list(box.children[0].children)
    canvas.draw()
    for i in range(4 * len(controls)):
        _step(controls[(i // 4) % len(controls)], i)
        canvas.draw()
        assert np.array_equal(_pixels(canvas), _full_redraw(canvas)), (
            f"frame {i} ({canvas.layers.frames}) differs from a full redraw")
    if explore.__name__ in SWAP_ONLY:
        assert canvas.layers.frames["fast"] >= 4 * len(controls) - 2, canvas.layers.frames


def test_on_idle_runs_only_once_a_browser_shows_the_widget():
    seen = []
    box = widgets.interactive_figure(
        lambda axes, state, a: state.setdefault("line", axes[0].plot([0, 1], [a, a])[0]),
        {"a": W.IntSlider(1)}, on_idle=seen.append)
    slider, canvas = box.children[0].children[0], box.children[2]
    slider.value = 2
    assert seen == [] and not canvas.viewed  # no browser (nbval, execute): never called
    canvas._handle_message(None, {"type": "initialized"}, [])  # a view opens
    assert seen == [{"a": 2}] and canvas.viewed
    canvas._handle_message(None, {"type": "refresh"}, [])  # once per view, not per message
    slider.value = 3  # after each frame sent to the view
    assert seen == [{"a": 2}, {"a": 3}]


def test_the_first_move_after_the_first_frame_is_a_fast_frame():
    def draw(axes, state, a):
        if "line" not in state:
            state["line"], = axes[0].plot([0, 1], [0, a])
            axes[0].set_ylim(0, 10)
        state["line"].set_ydata([0, a])
        axes[0].set_title(f"a = {a}")

    box = widgets.interactive_figure(draw, {"a": W.IntSlider(1)})
    canvas = box.children[2]
    canvas._handle_message(None, {"type": "initialized"}, [])
    canvas.draw()  # the first frame a browser asks for: everything
    assert canvas.layers.frames == {"fast": 0, "full": 1}
    box.children[0].children[0].value = 2
    assert canvas.layers.frames == {"fast": 1, "full": 1}
    assert {type(a).__name__ for a in canvas.layers.dynamic} == {"Line2D", "Text"}


def test_texts_drawn_again_from_the_cache_are_the_same_picture():
    def draw(axes, state, a):
        axes[0].plot([0, 1], [0, a])
        axes[0].set_title(f"a = {a}: ünïcode, kerning AV To", loc="left")
        axes[0].set_ylabel("rotated label")
        axes[0].text(0.31, 0.52, "a text at fractional pixels", rotation=30)
        axes[0].set_xlabel("$x_1$ (math text)")

    box = widgets.interactive_figure(draw, {"a": W.IntSlider(1)})
    canvas = box.children[2]
    for dpr in (1, 2):
        canvas._set_device_pixel_ratio(dpr)
        FigureCanvasAgg.draw(canvas)
        first, cache = _pixels(canvas), canvas.get_renderer().text_cache
        assert len(cache) > 5 and all(len(glyphs) for glyphs in cache.values())
        FigureCanvasAgg.draw(canvas)  # every text now comes from the cache
        again = _pixels(canvas)
        plain = FigureCanvasAgg(box.figure)  # matplotlib's own renderer, no cache
        plain.draw()
        assert np.array_equal(again, first)
        assert np.array_equal(again, np.asarray(plain.get_renderer().buffer_rgba()))
        box.figure.set_canvas(canvas)


def test_fast_png_decodes_to_the_same_pixels():
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    for shape in [(1, 1, 4), (7, 13, 4), (576, 1520, 4)]:
        rgba = rng.integers(0, 256, shape, dtype=np.uint8)
        rgba[: shape[0] // 2] = 0  # a diff frame: mostly transparent
        decoded = Image.open(io.BytesIO(widgets._fast_png(rgba)))
        assert decoded.mode == "RGBA" and np.array_equal(np.asarray(decoded), rgba)


def test_a_scene_is_drawn_once_then_kept_and_stays_out_of_the_overlay():
    def draw(axes, state, scene, a):
        ax = axes[0]
        if state.get("shown") != scene:  # swap the whole background, as chapter 06's surfaces
            for artist in state.get("background", []):
                artist.remove()
            levels = np.linspace(0, 1, 8 if scene == "many" else 3)
            grid = np.add.outer(np.linspace(0, 1, 30), np.linspace(0, 1, 30)) / 2
            state["background"] = [ax.contour(grid, levels=levels, colors="0.7"),
                                   ax.plot([5, 25], [25, 5], "k:")[0]]
            state["shown"] = scene
        if "line" not in state:
            state["line"], = ax.plot([0, 29], [0, a], zorder=5)
        state["line"].set_ydata([0, a])
        state["scene"] = scene

    scene = W.Dropdown(options=["few", "many"], value="few")
    slider = W.IntSlider(3, 0, 29)
    box = widgets.interactive_figure(draw, {"scene": scene, "a": slider})
    canvas = box.children[2]
    canvas.draw()
    for value, a in [("many", 3), ("many", 9), ("few", 9), ("many", 9), ("few", 12)]:
        scene.value, slider.value = value, a
        canvas.draw()
        assert np.array_equal(_pixels(canvas), _full_redraw(canvas))
        assert canvas.layers.overlay == [line for line in box.figure.axes[0].get_lines()
                                         if line.get_zorder() == 5]
    # full: the first frame and the first visit of "many"; every other frame is fast
    assert canvas.layers.frames["full"] == 2, canvas.layers.frames
