"""The one pattern every course widget follows: controls that redraw a figure in place.

A chapter widget is a function in the chapter's module built on :func:`interactive_figure`::

    def explore_depth(static: bool = False):
        def draw(axes, state, depth, activation):
            norms = compute_norms(depth, activation)          # unit-tested without a browser
            if "line" not in state:                           # first call: create the artists
                state["line"], = axes[0].plot(norms, "o-")
            else:                                             # later calls: update them in place
                state["line"].set_data(range(len(norms)), norms)
                axes[0].relim(); axes[0].autoscale_view()
        return interactive_figure(draw, {"depth": IntSlider(10, 2, 30), ...}, static=static)

``explore_depth(static=True)`` draws the default state as an ordinary inline figure (what GitHub,
printed HTML and nbval see); ``explore_depth()`` returns a live widget whose figure is an ipympl
canvas updated in place with ``draw_idle`` -- no re-rendering of the whole output, which is what
keeps a slider near the browser's ~100 ms floor. The layout is computed once, for the first
state, and then frozen. Use ``continuous_update=False`` on sliders whose
``draw`` retrains a network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["interactive_figure", "control_values"]


def control_values(controls: Mapping) -> dict:
    """The current value of each control, by name."""
    return {name: w.value for name, w in controls.items()}


def _live_canvas(fig: Figure):
    """An ipympl canvas widget for ``fig`` that does not touch pyplot's global state."""
    from ipympl.backend_nbagg import Canvas, FigureManager

    canvas = Canvas(fig)
    FigureManager(canvas, 0)
    canvas.header_visible = False
    canvas.footer_visible = False
    canvas.toolbar_visible = False
    canvas.resizable = False
    canvas.capture_scroll = False
    return canvas


def interactive_figure(draw: Callable, controls: Mapping, nrows: int = 1, ncols: int = 1,
                       figsize: tuple[float, float] | None = None, static: bool = False,
                       title: str | None = None, **subplot_kw):
    """Build a widget: ``controls`` above a figure that ``draw`` updates on every change.

    Parameters
    ----------
    draw : callable
        ``draw(axes, state, **values)``: ``axes`` is a flat list of Axes, ``state`` a dict kept
        between calls (store artists there on the first call, update them afterwards), ``values``
        the controls' current values by name.
    controls : mapping of name to ipywidgets widget
        Each control's ``value`` is passed to ``draw`` under its name.
    static : bool
        Draw the controls' default state once as an ordinary (inline) figure and return None --
        the picture shown before the live widget.
    title : str, optional
        Figure title.

    Returns
    -------
    ipywidgets.VBox or None
    """
    import ipywidgets as W

    if not callable(draw):
        raise TypeError(f"draw must be callable, got {type(draw).__name__}")
    if static:
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **subplot_kw)
        if title:
            fig.suptitle(title)
        draw(list(np.ravel(axes)), {}, **control_values(controls))
        plt.show()
        return None

    fig = Figure(figsize=figsize or plt.rcParams["figure.figsize"], layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    if title:
        fig.suptitle(title)
    canvas = _live_canvas(fig)
    state: dict = {}
    axes = list(np.ravel(axes))
    error = W.HTML()

    drawn: list[dict] = []  # the values last drawn

    def redraw(_change=None):
        values = control_values(controls)
        # One user action can change several controls (a dropdown that resets a slider): draw
        # each distinct state once, not once per notification.
        if drawn and drawn[-1] == values:
            return
        drawn[:] = [values]
        try:
            draw(axes, state, **values)
            error.value = ""
        except ValueError as exc:  # invalid combination of settings: say so, keep the last figure
            error.value = f"<span style='color:#d62728'>{exc}</span>"
        canvas.draw_idle()

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw()
    # Lay the figure out once, for its first state; re-running constrained layout on every
    # slider move costs about half of a redraw, and the axes should not jump around anyway.
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    box = W.VBox([W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap")), error,
                  canvas])
    box.figure = fig  # for tests and for learners who want to save it
    box.redraw = redraw
    return box
