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
canvas. What keeps a slider fast (measured by ``tests/browser/bench_widgets.py``):

* the kernel renders and sends the new frame as soon as a control changes (no extra round trip);
* only what ``draw`` changed is repainted, over a cached picture of the rest (:class:`_Layers`):
  change artists with ``set_*`` calls, and keep axes limits fixed where you can -- new limits
  (use :func:`set_limits`, which skips unchanged ones, or :func:`steady_limits`, which keeps
  limits while the data fit them well) mean a full redraw, once per set of limits: pictures of
  limits seen before are kept;
* artists that never change (legends, gridlines, ticks) stay out of the repainted part when
  they are drawn *before* the changing ones: a lower zorder, ``ax.set_axisbelow(True)``;
* frames go to the browser as PNGs encoded for speed (no filters, zlib level 1), not size;
* the layout is computed once, for the first state, and then frozen (:func:`freeze_layout`).

Use ``continuous_update=False`` on sliders whose ``draw`` retrains a network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.layout_engine import PlaceHolderLayoutEngine

__all__ = ["interactive_figure", "control_values", "freeze_layout", "set_limits",
           "steady_limits"]


def control_values(controls: Mapping) -> dict:
    """The current value of each control, by name."""
    return {name: w.value for name, w in controls.items()}


class _Layers:
    """Redraw a figure by repainting only the artists that change, over a cached background.

    A widget's ``draw`` swaps data into a few artists (``set_data``, ``set_text``, ...) and leaves
    the rest -- axes, ticks, labels, legends -- alone; matplotlib marks what it changed as stale.
    The artists seen to change ("dynamic") and everything drawn after the first of them in the
    same axes (or, for figure-level artists such as a suptitle, in the figure) form the overlay.
    The background is the figure rendered without the overlay; a frame is the background copied
    back plus the overlay drawn in matplotlib's own order, so it is the same picture as a full
    redraw at a fraction of the cost (ticks and text are most of a redraw).

    A full redraw happens whenever that would not hold: on the first frame, when the renderer,
    an axes' limits, scale or position change, or when an artist outside the overlay changes (it
    joins the dynamic set). The backgrounds of the last few keys (limits, renderer) are kept, so
    going back to limits seen before -- a dropdown switched back and forth -- is a fast frame;
    tick labels are assumed to follow from the limits. Assumed, as in ``interactive_figure``'s
    grid of subplots: axes do not overlap. Changing an artist's data in place, without a
    ``set_*`` call, is invisible to this -- as it is to matplotlib's own stale tracking.
    """

    def __init__(self, fig: Figure):
        self.fig = fig
        self.dynamic: set = set()
        self.overlay: list = []  # artists drawn over the background, in drawing order
        self.background = None
        self.key = None
        self.frames = {"fast": 0, "full": 0}
        #: What the background shows, if the widget says (``state["scene"]``): part of the key.
        self.scene = None
        # Earlier backgrounds of the same overlay by key (axes limits, renderer): a dropdown that
        # switches between settings with different limits, then back, needs no full redraw.
        self.backgrounds: dict = {}

    def _key(self, renderer) -> tuple:
        return (id(renderer), renderer.width, renderer.height, self.fig.dpi,
                tuple((ax.get_position().bounds, tuple(ax.viewLim.bounds), ax.get_xscale(),
                       ax.get_yscale(), ax.get_visible()) for ax in self.fig.axes))

    @staticmethod
    def _in_order(container) -> list:
        """What ``container`` (Figure or Axes) draws, in its order: children sorted stably by
        zorder, as ``Figure.draw`` and ``Axes.draw`` do."""
        from operator import attrgetter

        artists = [a for a in container.get_children() if a is not container.patch]
        if hasattr(container, "spines"):  # an Axes
            if not (container.axison and container.get_frame_on()):
                artists = [a for a in artists if a not in container.spines.values()]
            if not container.axison:
                artists = [a for a in artists if a not in (container.xaxis, container.yaxis)]
        return sorted(artists, key=attrgetter("zorder"))

    def _changed(self) -> set:
        """Artists changed since the last frame (figure-level ones and the axes' children)."""
        found = {a for a in self.fig.get_children()
                 if a is not self.fig.patch and a not in self.fig.axes and a.stale}
        for ax in self.fig.axes:
            found |= {a for a in ax.get_children() if a is not ax.patch and a.stale}
        return found

    def _build_overlay(self) -> list:
        axes_overlay = {}
        for ax in self.fig.axes:
            artists = self._in_order(ax)
            first = next((i for i, a in enumerate(artists) if a in self.dynamic), None)
            if first is not None:
                axes_overlay[ax] = artists[first:]
        overlay, started = [], False
        for a in self._in_order(self.fig):
            started = started or a in axes_overlay or a in self.dynamic
            if started:
                overlay += axes_overlay.get(a, []) if a in self.fig.axes else [a]
        return [a for a in overlay if not a.get_animated()]

    def render(self, canvas) -> str:
        """Render the current state into ``canvas``'s Agg buffer; return "fast" or "full"."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = canvas.get_renderer()
        changed = self._changed()
        key = self._key(renderer) + (self.scene,)
        if self.key is not None and self.scene != self.key[-1]:
            # A new scene (see interactive_figure): what changed outside the overlay is its
            # background, drawn once per scene and kept, not artists that change every frame.
            changed &= set(self.overlay)
        if key != self.key:
            # New limits re-tick the axes: that is a full redraw now (or a cached background),
            # not a reason to repaint the axes on every later frame (their ticks are assumed
            # to follow from the limits, which are part of the key).
            changed -= {a for ax in self.fig.axes for a in (ax.xaxis, ax.yaxis)}
        fast = (self.background is not None and changed <= set(self.overlay)
                and (key == self.key or key in self.backgrounds))
        if fast:
            if key != self.key:
                self.background, self.key = self.backgrounds[key], key
            renderer.restore_region(self.background)
        else:
            if self.background is not None:  # on the first frame everything is new, not "changing"
                self.dynamic |= changed
            overlay = self._build_overlay()
            if overlay != self.overlay:  # the cached backgrounds hold what is now overlay
                self.backgrounds.clear()
            self.overlay = overlay
            self.dynamic &= set(self.overlay)  # forget artists that were removed
            for a in self.overlay:
                a.set_animated(True)  # Figure.draw and Axes.draw skip these; no stale flag is set
            try:
                FigureCanvasAgg.draw(canvas)
            finally:
                for a in self.overlay:
                    a.set_animated(False)
            renderer = canvas.get_renderer()
            self.background = renderer.copy_from_bbox(self.fig.bbox)
            self.key = self._key(renderer) + (self.scene,)
            if len(self.backgrounds) >= 8:  # a few screens' worth of pixels at most
                self.backgrounds.pop(next(iter(self.backgrounds)))
            self.backgrounds[self.key] = self.background
        for a in self.overlay:
            a.draw(renderer)
        # Everything on screen is now current: what changes before the next frame is stale again.
        self._mark_drawn()
        kind = "fast" if fast else "full"
        self.frames[kind] += 1
        return kind

    def _mark_drawn(self) -> None:
        for a in self.fig.get_children():
            a.stale = False
        for ax in self.fig.axes:
            for a in ax.get_children():
                a.stale = False

    def learn(self, draw_again: Callable[[], None]) -> None:
        """Learn which artists change from one frame to the next before the first frame.

        ``draw_again`` redraws the state just drawn: a widget's ``draw`` sets its changing
        artists (``set_data``, ``set_text``...) even to the values they have, which marks them
        stale. Those are the dynamic artists; without this, the first move of a control would
        find them out with a full redraw.
        """
        self._mark_drawn()
        draw_again()
        self.dynamic |= self._changed()


def _live_canvas(fig: Figure):
    """An ipympl canvas widget for ``fig`` that redraws through :class:`_Layers` and does not
    touch pyplot's global state."""
    from ipympl.backend_nbagg import Canvas, FigureManager

    class LayeredCanvas(Canvas):
        def _handle_message(self, object, content, buffers):
            super()._handle_message(object, content, buffers)
            if not self.viewed:  # the first message from a browser view
                self.viewed = True
                for hook in self.on_view:
                    hook()

        def draw(self):
            self._png_is_old = True
            try:
                self.layers.render(self)
            finally:
                self.manager.refresh_all()  # send the changed pixels to the browser

        def get_diff_image(self):
            return _diff_png(self)

        def get_renderer(self):
            renderer = super().get_renderer()
            if not hasattr(renderer, "text_cache"):  # a new renderer (new size or dpi)
                _cache_text(renderer)
            return renderer

    canvas = LayeredCanvas(fig)
    canvas.layers = _Layers(fig)
    canvas.viewed = False  # has a browser shown it (sent a message)? nbval and execute never do
    canvas.on_view: list[Callable[[], None]] = []  # called once, when it has
    FigureManager(canvas, 0)
    canvas.header_visible = False
    canvas.footer_visible = False
    canvas.toolbar_visible = False
    canvas.resizable = False
    canvas.capture_scroll = False
    return canvas


class _TextRecorder:
    """Stands in for a RendererAgg's C++ renderer while it draws a text, recording the glyph
    images it is given (and passing everything through)."""

    def __init__(self, real):
        self.real, self.glyphs = real, []

    def draw_text_image(self, image, x, y, angle, gc):
        self.glyphs.append((np.array(image, copy=True), x, y, angle))
        self.real.draw_text_image(image, x, y, angle, gc)

    def __getattr__(self, name):
        return getattr(self.real, name)


def _cache_text(renderer, most: int = 4000) -> None:
    """Make ``renderer`` (a RendererAgg) draw a text it has drawn before, at the same place, by
    copying the glyph images it rendered then.

    Laying out and rasterizing the glyphs with FreeType is most of what a text costs, and text
    is most of a redraw: titles on every frame, tick labels on every full one. A text is the
    same picture when its string, font, angle, antialiasing and position are (the renderer's
    size and dpi are its own); only its colour and clipping come from the graphics context,
    which the copy uses as the original did. Math text is drawn as usual.
    """
    draw_text = renderer.draw_text
    renderer.text_cache = cache = {}

    def cached_draw_text(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath:
            return draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
        extra = ((mtext.get_fontfeatures(), mtext.get_language()) if mtext is not None
                 and hasattr(mtext, "get_fontfeatures") else None)
        key = (s, hash(prop), angle, gc.get_antialiased(), x, y, extra)
        glyphs = cache.get(key)
        if glyphs is None:
            recorder = renderer._renderer = _TextRecorder(renderer._renderer)
            try:
                draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
            finally:
                renderer._renderer = recorder.real
            if len(cache) >= most:
                cache.clear()
            if recorder.glyphs or not s.strip():  # else: drawn another way; not cached
                cache[key] = recorder.glyphs
            return
        for image, gx, gy, gangle in glyphs:
            renderer._renderer.draw_text_image(image, gx, gy, gangle, gc)

    renderer.draw_text = cached_draw_text


def _diff_png(canvas) -> bytes | None:
    """``FigureCanvasWebAggCore.get_diff_image`` (matplotlib 3.11) with a fast PNG encoder.

    The frame goes to a browser on the same machine or network: the size of the PNG matters
    little, the time spent compressing it is latency (:func:`_fast_png`).
    """
    if not canvas._png_is_old:
        return None
    pixels = np.asarray(canvas.get_renderer().buffer_rgba())
    buff = pixels.view(np.uint32).squeeze(2)  # one uint32 per pixel: compare whole pixels
    if (canvas._force_full or buff.shape != canvas._last_buff.shape
            or (pixels[:, :, 3] != 255).any()):  # transparent pixels cannot be overlaid
        canvas.set_image_mode("full")
        output = buff
    else:
        canvas.set_image_mode("diff")
        output = np.where(buff != canvas._last_buff, buff, 0)
    canvas._last_buff = buff.copy()
    canvas._force_full = False
    canvas._png_is_old = False
    return _fast_png(output.view(np.uint8).reshape((*output.shape, 4)))


def _fast_png(rgba: np.ndarray) -> bytes:
    """An RGBA image as a PNG, encoded for speed: no row filters (PIL tries several per row),
    zlib level 1. Two to three times faster than PIL at level 1 for a widget's frames, and no
    larger: a diff frame is mostly zeros, and filters gain little on antialiased plots."""
    import struct
    import zlib

    height, width, _ = rgba.shape
    rows = np.zeros((height, 4 * width + 1), dtype=np.uint8)  # filter byte 0 ("none") per row
    rows[:, 1:] = rgba.reshape(height, 4 * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + chunk(b"IEND", b""))


def freeze_layout(fig: Figure) -> None:
    """Lay ``fig`` out once, for what it shows now, and keep axes and axis labels there.

    Re-running constrained layout and re-placing each axis label beside its tick labels
    measure every tick label on each draw: most of a redraw's time. The axes should not jump
    around while a slider moves anyway. A widget whose tick labels grow (a log axis reaching
    1e-120) lays out with its widest labels first and calls this itself.
    """
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            label = axis.label
            where = label.get_transform().transform(label.get_position())
            axis.set_label_coords(*ax.transAxes.inverted().transform(where))


def set_limits(ax, xlim: tuple[float, float] | None = None,
               ylim: tuple[float, float] | None = None) -> None:
    """Set ``ax``'s x/y limits, but only those that differ from the current ones.

    ``set_xlim`` marks the axis for repainting even when the limits stay the same, which turns
    a widget's cheap redraw (new data over a cached background) into a full one.
    """
    if xlim is not None and tuple(ax.get_xlim()) != tuple(xlim):
        ax.set_xlim(xlim)
    if ylim is not None and tuple(ax.get_ylim()) != tuple(ylim):
        ax.set_ylim(ylim)


def interactive_figure(draw: Callable, controls: Mapping, nrows: int = 1, ncols: int = 1,
                       figsize: tuple[float, float] | None = None, static: bool = False,
                       title: str | None = None, on_idle: Callable | None = None,
                       **subplot_kw):
    """Build a widget: ``controls`` above a figure that ``draw`` updates on every change.

    Parameters
    ----------
    draw : callable
        ``draw(axes, state, **values)``: ``axes`` is a flat list of Axes, ``state`` a dict kept
        between calls (store artists there on the first call, update them afterwards), ``values``
        the controls' current values by name. A ``draw`` that swaps a whole background (e.g.
        the contours of another surface, under a path that changes with every move) names it
        with ``state["scene"] = <hashable>``: the artists it adds, removes or changes with a
        new scene are then background, drawn once per scene (and limits) and kept, and going
        back to a scene seen before is a fast frame. The same scene must look the same.
    controls : mapping of name to ipywidgets widget
        Each control's ``value`` is passed to ``draw`` under its name.
    static : bool
        Draw the controls' default state once as an ordinary (inline) figure and return None --
        the picture shown before the live widget.
    title : str, optional
        Figure title.
    on_idle : callable, optional
        ``on_idle(values)``, called with the controls' values when a browser view of the widget
        opens and after each frame sent to it: the kernel is about to wait for the learner, a
        time to prepare what the next moves may need (e.g. in a background thread). Never
        called when no browser shows the widget (nbval, ``nncourse execute``).

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
    # Titles stay at the top edge of their axes (y = 1) instead of being re-placed above the
    # tick labels on every draw, which measures them all; nothing is drawn above these axes.
    with mpl.rc_context({"axes.titley": 1.0}):
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    if title:
        fig.suptitle(title)
    canvas = _live_canvas(fig)
    if on_idle is not None:
        canvas.on_view.append(lambda: on_idle(control_values(controls)))
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
            canvas.layers.scene = state.get("scene")
            error.value = ""
        except ValueError as exc:  # invalid combination of settings: say so, keep the last figure
            error.value = f"<span style='color:#d62728'>{exc}</span>"
        if canvas.syncing_data_url:  # no browser view yet: let it ask for a frame when it opens
            canvas.draw_idle()
        else:
            # Render and send now rather than asking the browser to ask for a frame (one round
            # trip less). ipywidgets sends a control's next value only once the kernel is idle
            # again, so a dragged slider cannot queue up frames.
            canvas.draw()
            if on_idle is not None and canvas.viewed:
                on_idle(values)

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw()
    try:  # the first move can then be a fast frame (see _Layers.learn)
        canvas.layers.learn(lambda: draw(axes, state, **drawn[-1]))
    except ValueError:  # an invalid default state: it is reported above
        pass
    if not isinstance(fig.get_layout_engine(), PlaceHolderLayoutEngine):  # draw() may have done it
        freeze_layout(fig)
    box = W.VBox([W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap")), error,
                  canvas])
    box.figure = fig  # for tests and for learners who want to save it
    box.redraw = redraw
    return box


def _nice_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) near ``span / 8``."""
    raw = span / 8
    base = 10.0 ** np.floor(np.log10(raw))
    return float(next(m * base for m in (1, 2, 5, 10) if m * base >= raw))


def steady_limits(ax, axis: str, lo: float, hi: float, fill: float = 0.5,
                  at_least: tuple[float, float] | None = None) -> bool:
    """Show ``lo..hi`` on ``ax``'s ``axis`` ("x" or "y") without moving its limits on every change.

    The current limits stay while ``lo..hi`` fits inside them and spans at least ``fill`` of
    them (on a log axis, of their decades); otherwise they are set around ``lo..hi``, widened
    to round values (whole decades on a log axis, multiples of a 1-2-5 step otherwise) and to
    ``at_least``. A widget whose data move a little with each step of a slider then repaints
    its curves over the cached background instead of redrawing the axes and their tick labels
    each time (see :class:`_Layers`). Returns True when the limits changed.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    log = (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log"
    if at_least is not None:
        lo, hi = min(lo, at_least[0]), max(hi, at_least[1])
    if not (np.isfinite(lo) and np.isfinite(hi)) or (log and lo <= 0):
        return False
    f = np.log10 if log else (lambda v: v)
    cur = ax.get_xlim() if axis == "x" else ax.get_ylim()
    with np.errstate(divide="ignore", invalid="ignore"):  # a log axis still at 0..1
        c0, c1, d0, d1 = f(cur[0]), f(cur[1]), f(lo), f(hi)
    if c0 <= d0 and d1 <= c1 and (d1 - d0) >= fill * (c1 - c0):
        return False
    if log:
        new = (10.0 ** np.floor(d0), 10.0 ** max(np.ceil(d1), np.floor(d0) + 1))
    else:
        step = _nice_step(d1 - d0) if d1 > d0 else max(abs(d0), 1.0) / 8
        digits = max(0, 1 - int(np.floor(np.log10(step))))  # no 0.30000000000000004
        new = (round(step * np.floor(d0 / step), digits), round(step * np.ceil(d1 / step), digits))
        if new[1] <= new[0]:
            new = (new[0], new[0] + step)
    new = (float(new[0]), float(new[1]))
    if new == tuple(cur):
        return False
    (ax.set_xlim if axis == "x" else ax.set_ylim)(new)
    return True


class Prefetcher:
    """Works through a plan in a background thread while the kernel waits for the learner: what
    a widget's next moves may need (``interactive_figure``'s ``on_idle`` hands it the plan).

    ``step(item)`` does one piece of the first item and returns True when the item is done (it
    is then dropped from the plan); a long item can so be done in short steps, and a frame waits
    for at most one. The widget calls :meth:`pause` before it draws a frame and :meth:`resume`
    with a new plan after. The thread starts on the first :meth:`resume` -- with a browser view
    only, so nbval and ``nncourse execute`` never start one -- and uses the kernel's torch
    thread count, so whichever thread computes a result, it is the same.
    """

    def __init__(self, step: Callable[[object], bool], name: str):
        self.step, self.name = step, name
        self.plan: list = []
        self.paused = False
        self.thread: threading.Thread | None = None
        self.cond = threading.Condition()

    def pause(self) -> None:
        with self.cond:
            self.paused = True

    def resume(self, plan: list) -> None:
        import torch

        with self.cond:
            self.plan, self.paused = list(plan), False
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, args=(torch.get_num_threads(),),
                                               name=self.name, daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def idle(self, timeout: float = 60.0) -> bool:
        """Wait until the plan is done (for tests); False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: not self.plan, timeout)

    def _run(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)  # as the kernel's (one, after nncourse.setup)
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.plan and not self.paused)
                item = self.plan[0]
            if self.step(item):
                with self.cond:
                    if self.plan and self.plan[0] == item:
                        self.plan.pop(0)
                    self.cond.notify_all()
