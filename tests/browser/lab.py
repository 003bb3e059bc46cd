"""Drive a real JupyterLab in headless Chromium: start a server, open a notebook, run it, move its
widgets and time how long each takes to redraw its figure.

Used by tests/browser/test_widgets_in_lab.py (correctness) and tests/browser/bench_widgets.py
(latency table). Facts this relies on are in the team's TOOLING_NOTES (measured on this machine
kind).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("NNCOURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
# Test-only user settings, on top of the course's own (nncourse/course/install.py): off-screen cells
# are virtualized by default and would look hidden to the driver.
TEST_USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
#: What the server serves: a copy of the course as a learner's clone has it.
COURSE_PARTS = ["chapters", "exercises", "solutions", "docs", "README.md", "CONTRIBUTING.md"]

#: The latency floor: the most trivial widget JupyterLab + ipympl can show -- one line, its data
#: swapped with ``set_ydata`` and ``draw_idle`` on every move of a slider, in a figure of the
#: course's default size and style with a fixed layout, drawn by plain ipympl (none of the
#: course's redraw machinery in nncourse.widgets: each frame is a full matplotlib draw).
#: Every latency run measures it first, in the same server and browser, and reports each control
#: as a ratio to it: milliseconds do not carry from one machine (or one load) to another.
FLOOR_FOLDER = "bench"
FLOOR_NOTEBOOK = "latency_floor.ipynb"
FLOOR_CELLS = ["""\
import ipywidgets as W
import numpy as np
from ipympl.backend_nbagg import Canvas, FigureManager
from matplotlib.figure import Figure

import nncourse

nncourse.setup()
x = np.linspace(0, 2 * np.pi, 200)
# The course's default size and dpi (nncourse.setup); a fixed layout: nothing to re-measure.
fig = Figure(layout="none")
ax = fig.add_axes((0.1, 0.15, 0.85, 0.75))
line, = ax.plot(x, np.sin(x))
ax.set(xlabel="x", ylabel="sin(x + phase)", title="latency floor", ylim=(-1.1, 1.1))
canvas = Canvas(fig)
FigureManager(canvas, 0)
canvas.header_visible = canvas.footer_visible = canvas.toolbar_visible = False
canvas.resizable = canvas.capture_scroll = False
slider = W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="phase")


def move(change):
    line.set_ydata(np.sin(x + 2 * np.pi * change["new"]))
    canvas.draw_idle()


slider.observe(move, names="value")
W.VBox([W.HBox([slider]), canvas])""", """\
# For reference, not a target: the same line through the course's own widget machinery
# (nncourse.widgets.interactive_figure: the frame is rendered at once, the line repainted over a
# cached background). A control's ratio to this one is what its own drawing costs.
from nncourse.widgets import interactive_figure


def draw(axes, state, phase):
    if "line" not in state:
        state["line"], = axes[0].plot(x, np.sin(x))
        axes[0].set(xlabel="x", ylabel="sin(x + phase)", title="pipeline reference",
                    ylim=(-1.1, 1.1))
    state["line"].set_ydata(np.sin(x + 2 * np.pi * phase))


interactive_figure(draw, {"phase": W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05,
                                                 description="phase")})"""]
#: Targets against the floor (issue #28): every control's median <= 1.3x the floor's median and
#: p95 <= 2x the floor's p95.
TARGET_MEDIAN, TARGET_P95 = 1.3, 2.0


def unavailable_reason() -> str | None:
    """Why the browser test cannot run here, or None if it can."""
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run does it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Python playwright is not installed (pip install -e .[dev])"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """JupyterLab started exactly as ``make lab`` starts it (``python -m nncourse.course.lab``),
    on a free loopback port with a random token, serving a copy of the course.

    It serves a *copy* so autosave never touches the repository's stored outputs; config, data and
    runtime directories are its own (the course's lab settings come from the environment, as for
    a learner). The only differences from ``make lab``: that root, the port, the token and no
    browser window. Stopped by PID (its whole process group).
    """

    def __init__(self, notebooks: list[Path] | None = None):
        """``notebooks``: extra notebooks to serve in ``chapters/`` (the benchmark's argument)."""
        self.tmp = Path(tempfile.mkdtemp(prefix="nncourse-lab-"))
        self.root = self.tmp / "course"
        self.root.mkdir()
        for part in COURSE_PARTS:
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, self.root / part, ignore=shutil.ignore_patterns(
                    ".ipynb_checkpoints", "__pycache__"))
            elif src.exists():
                shutil.copy(src, self.root / part)
        for nb in notebooks or []:
            (self.root / "chapters").mkdir(exist_ok=True)
            shutil.copy(nb, self.root / "chapters" / Path(nb).name)
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> None:
        env = dict(os.environ)
        for d in ("config", "data", "runtime", "ipython", "mpl"):
            (self.tmp / d).mkdir()
        user_settings = self.tmp / "config" / "lab" / "user-settings"
        for name, values in TEST_USER_SETTINGS.items():
            (user_settings / name).parent.mkdir(parents=True, exist_ok=True)
            (user_settings / name).write_text(json.dumps(values))
        env.pop("JUPYTERLAB_SETTINGS_DIR", None)
        env.update({"JUPYTER_CONFIG_DIR": str(self.tmp / "config"),
                    "JUPYTER_DATA_DIR": str(self.tmp / "data"),
                    "JUPYTER_RUNTIME_DIR": str(self.tmp / "runtime"),
                    "IPYTHONDIR": str(self.tmp / "ipython"), "MPLCONFIGDIR": str(self.tmp / "mpl"),
                    "NNCOURSE_PROGRESS": "0"})
        # The launcher `make lab` runs, with this environment's Python (.venv under `make test`).
        cmd = [sys.executable, "-m", "nncourse.course.lab", "--root", str(self.root),
               "--port", str(self.port), "--token", self.token, "--no-browser"]
        self.log = open(self.tmp / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited: {(self.tmp / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}",
                                            timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("JupyterLab did not answer in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def url(self, notebook: str, folder: str = "chapters") -> str:
        return f"{self.base}/lab/tree/{folder}/{notebook}?reset&token={self.token}"

    def add_floor_notebook(self) -> str:
        """Serve the latency floor's notebook (:data:`FLOOR_CELLS`) in ``bench/``; its name."""
        folder = self.root / FLOOR_FOLDER
        folder.mkdir(exist_ok=True)
        cells = [{"cell_type": "code", "execution_count": None, "id": f"floor{i}",
                  "metadata": {}, "outputs": [], "source": src}
                 for i, src in enumerate(FLOOR_CELLS)]
        nb = {"cells": cells, "metadata": {"kernelspec": {
            "display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}
        (folder / FLOOR_NOTEBOOK).write_text(json.dumps(nb, indent=1))
        return FLOOR_NOTEBOOK

    def shutdown_kernels(self) -> None:
        """Stop every kernel (a closed tab leaves its kernel running, holding memory and CPU)."""
        for session in self.api("api/sessions"):
            req = urllib.request.Request(
                f"{self.base}/api/sessions/{session['id']}?token={self.token}", method="DELETE")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(req, timeout=30).close()

    def api(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.base}/{path}?token={self.token}", timeout=30) as r:
            return json.loads(r.read())

    def saved_notebook(self, notebook: str) -> dict:
        return json.loads((self.root / "chapters" / notebook).read_text())


_PLAYWRIGHT = None


def _playwright():
    """One Playwright driver per process, started on first use: a second ``sync_playwright()``
    while one is running fails ("Sync API inside the asyncio loop"), and a test session may hold
    the JupyterLab browser while another test opens its own (the site test)."""
    global _PLAYWRIGHT
    if _PLAYWRIGHT is None:
        import atexit

        from playwright.sync_api import sync_playwright

        _PLAYWRIGHT = sync_playwright().start()
        atexit.register(_stop, _PLAYWRIGHT)
    return _PLAYWRIGHT


def _stop(driver) -> None:
    with contextlib.suppress(Exception):
        driver.stop()


@contextmanager
def browser(user_data_dir: Path, device_scale_factor: float = 1):
    """Headless Chromium; ``device_scale_factor=2`` is a high-DPI laptop screen, where ipympl
    renders figures at twice the pixels in each direction."""
    ctx = _playwright().chromium.launch_persistent_context(
        user_data_dir=str(user_data_dir), executable_path=CHROMIUM, headless=True,
        args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000},
        device_scale_factor=device_scale_factor)
    try:
        yield ctx
    finally:
        ctx.close()


# Resolves with the ms between the next keydown/change on the control and the first animation
# frame after the figure's visible canvas received new pixels, or -1 after the timeout. The
# canvas is watched by wrapping drawImage (how ipympl paints a frame), not by encoding the
# canvases on every frame: that encoding blocked the page for several ms per frame and was
# counted in the latency it measured. Pixels are compared once per drawImage, after the time
# is taken, so a redraw that leaves the figure unchanged does not count.
_WATCH = """
([box, timeoutMs]) => {
  const canvases = () => Array.from(box.querySelectorAll('canvas'));
  const snap = () => canvases().map(c => { try { return c.toDataURL(); } \
catch (e) { return ''; } }).join('|');
  const before = snap();
  window.__nnc_t0 = null;
  const mark = () => { if (window.__nnc_t0 === null) window.__nnc_t0 = performance.now(); };
  box.addEventListener('keydown', mark, {capture: true, once: true});
  box.addEventListener('change', mark, {capture: true, once: true});
  box.addEventListener('input', mark, {capture: true, once: true});
  box.addEventListener('mousedown', mark, {capture: true, once: true});
  window.__nnc_result = new Promise(resolve => {
    const proto = CanvasRenderingContext2D.prototype;
    const original = proto.drawImage;
    let done = false, pending = false;
    const finish = value => { if (!done) { done = true; proto.drawImage = original; \
resolve(value); } };
    proto.drawImage = function (...args) {
      const out = original.apply(this, args);
      if (!done && !pending && window.__nnc_t0 !== null && box.contains(this.canvas)) {
        pending = true;
        requestAnimationFrame(() => {
          const ms = performance.now() - window.__nnc_t0;
          pending = false;
          if (snap() !== before) finish(ms);
        });
      }
      return out;
    };
    setTimeout(() => finish(-1), timeoutMs);
  });
}
"""


@dataclass
class Control:
    kind: str          # "slider" or "dropdown"
    label: str
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class WidgetResult:
    notebook: str
    index: int
    controls: list[Control]
    screenshots: list[Path] = field(default_factory=list)


class NotebookPage:
    def __init__(self, page, server: LabServer, notebook: str, folder: str = "chapters"):
        self.page, self.server, self.notebook, self.folder = page, server, notebook, folder
        self.console_errors: list[str] = []
        page.on("console",
                lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def open(self, timeout_ms: int = 120_000) -> None:
        self.page.goto(self.server.url(self.notebook, self.folder))
        self.page.wait_for_selector(".jp-Notebook", state="attached", timeout=timeout_ms)
        self.wait_idle(timeout_ms)

    def wait_idle(self, timeout_ms: int = 120_000) -> None:
        # The status bar, not the toolbar: the toolbar says idle before Run All is accepted.
        self.page.wait_for_function(
            """() => Array.from(document.querySelectorAll('.jp-StatusBar-TextItem'))
                      .some(e => /\\(ipykernel\\)\\s*\\|\\s*Idle/.test(e.textContent))""",
            timeout=timeout_ms)

    def run_all(self, timeout_ms: int = 300_000) -> None:
        self.page.click("text=Run", timeout=30_000)
        self.page.click(".lm-Menu-itemLabel:text-is('Run All Cells')", timeout=30_000)
        # Every code cell gets a number (no "[*]" left) and the kernel is idle again.
        self.page.wait_for_function(
            """() => {
                const prompts = Array.from(\
document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'));
                return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
            }""", timeout=timeout_ms)
        self.wait_idle(timeout_ms)

    def save(self) -> dict:
        self.page.keyboard.press("Control+s")
        self.page.wait_for_timeout(1500)
        return self.server.saved_notebook(self.notebook)  # chapters/ only

    def widget_boxes(self):
        # A course widget: an output holding an ipywidgets VBox with a figure canvas inside.
        return self.page.locator(".jp-OutputArea-output .widget-vbox:has(canvas)").all()

    def page_text_errors(self) -> list[str]:
        return [t for t in self.page.locator(".jp-OutputArea-output").all_inner_texts()
                if "Error displaying widget" in t]

    def controls(self, box) -> list[tuple[str, object]]:
        found = []
        for handle in box.locator(".widget-slider .noUi-handle, "
                                  ".widget-slider input[type=range]").all():
            found.append(("slider", handle))
        for select in box.locator(".widget-dropdown select").all():
            found.append(("dropdown", select))
        for group in box.locator(".widget-toggle-buttons").all():
            found.append(("toggle", group))
        return found

    def move(self, box, kind: str, control, step: int, timeout_ms: int = 15_000,
             retry: bool = True) -> float:
        """Change one control by one step; return ms until the figure redrew (-1: it did not).

        A key press that never reached the slider (focus taken by JupyterLab under load: the
        slider's value did not change) is pressed once more; a value that changed without a
        new picture stays -1."""
        self.page.evaluate(_WATCH, [box.element_handle(), timeout_ms])
        if kind == "slider":
            before = control.get_attribute("aria-valuenow")
            control.focus()
            self.page.keyboard.press("ArrowRight" if step % 2 == 0 else "ArrowLeft")
            ms = float(self.page.evaluate("() => window.__nnc_result"))
            if ms < 0 and control.get_attribute("aria-valuenow") == before and retry:
                return self.move(box, kind, control, step, timeout_ms, retry=False)
            return ms
        elif kind == "toggle":  # click the button after the selected one
            buttons = control.locator("button").all()
            active = next((i for i, b in enumerate(buttons)
                           if "mod-active" in (b.get_attribute("class") or "")), -1)
            buttons[(active + 1) % len(buttons)].click()
        else:
            current = control.input_value()
            values = control.locator("option").evaluate_all("os => os.map(o => o.value)")
            nxt = (values[(values.index(current) + 1) % len(values)] if current in values
                   else values[0])
            control.select_option(nxt)
        return float(self.page.evaluate("() => window.__nnc_result"))


# Records when the figure's visible canvas gets new pixels (for drag_sliders).
_COUNT_FRAMES = """
([box]) => {
  window.__nnc_frames = [];
  const proto = CanvasRenderingContext2D.prototype;
  if (!window.__nnc_drawImage) window.__nnc_drawImage = proto.drawImage;
  const original = window.__nnc_drawImage;
  proto.drawImage = function (...args) {
    const out = original.apply(this, args);
    if (box.contains(this.canvas)) window.__nnc_frames.push(performance.now());
    return out;
  };
}
"""


def drag_sliders(page: NotebookPage, sweep_ms: int = 2000, steps: int = 40) -> list[dict]:
    """Drag every slider handle of every widget across its track and back with the mouse.

    Returns per slider the frames the figure showed during the drag and how long after the
    mouse-up the last one came: a drag must be followed, and must not leave a queue of stale
    frames to play after the learner lets go.
    """
    p, rows = page.page, []
    for w, box in enumerate(page.widget_boxes()):
        box.scroll_into_view_if_needed()
        for handle in box.locator(".widget-slider .noUi-handle").all():
            track = handle.locator("xpath=ancestor::div[contains(@class, 'noUi-target')][1]")
            label = handle.locator("xpath=ancestor::div[contains(@class, 'widget-slider')][1]"
                                   "//label[contains(@class, 'widget-label')]").first
            if track.get_attribute("disabled") is not None:  # e.g. an activation without parameter
                continue
            t, h = track.bounding_box(), handle.bounding_box()
            y = h["y"] + h["height"] / 2
            p.evaluate(_COUNT_FRAMES, [box.element_handle()])
            p.mouse.move(h["x"] + h["width"] / 2, y)
            p.mouse.down()
            start = p.evaluate("performance.now()")
            half = steps // 2
            for k in range(steps + 1):
                frac = k / half if k <= half else (steps - k) / half
                p.mouse.move(t["x"] + frac * t["width"], y)
                p.wait_for_timeout(sweep_ms / steps)
            p.mouse.up()
            up = p.evaluate("performance.now()")
            # settle: until 600 ms pass without a new frame (at most 10 s)
            p.wait_for_function("""(up) => {
                const last = Math.max(up, ...window.__nnc_frames);
                return performance.now() - last > 600 || performance.now() - up > 10000;
            }""", arg=up, polling=100, timeout=15_000)
            frames = p.evaluate("window.__nnc_frames")
            rows.append({"notebook": page.notebook, "widget": w,
                         "control": f"slider: {label.inner_text().strip()}",
                         "drag_ms": round(up - start), "frames": len(frames),
                         "last_after_up_ms": round(max(frames) - up) if frames else None})
    p.evaluate("() => { if (window.__nnc_drawImage) "
               "CanvasRenderingContext2D.prototype.drawImage = window.__nnc_drawImage; }")
    return rows


def drag_table(rows: list[dict]) -> str:
    lines = [f"{'notebook':38} {'widget':>6} {'control':24} {'drag ms':>8} {'frames':>6} "
             f"{'last frame after mouse-up (ms)':>31}"]
    for r in rows:
        last = "none" if r["last_after_up_ms"] is None else f"{r['last_after_up_ms']:+d}"
        lines.append(f"{r['notebook']:38} {r['widget']:>6} {r['control'][:24]:24} "
                     f"{r['drag_ms']:>8} {r['frames']:>6} {last:>31}")
    return "\n".join(lines)


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def widget_cell_count(nb: dict) -> int:
    """How many live widgets a stored notebook displays (cells with a widget-view output)."""
    return sum(any(WIDGET_MIME in o.get("data", {}) for o in c.get("outputs", []))
               for c in nb["cells"] if c["cell_type"] == "code")


def widget_notebooks() -> list[Path]:
    return [p for p in sorted((ROOT / "chapters").glob("*.ipynb"))
            if widget_cell_count(json.loads(p.read_text())) > 0]


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def stats(latencies: list[float]) -> dict:
    """n, median and p95 of the moves that redrew (a -1 is a move that did not)."""
    lat = [x for x in latencies if x >= 0]
    return {"n": len(lat), "median": percentile(lat, 0.5), "p95": percentile(lat, 0.95)}


def verdict(row_stats: dict, floor: dict | None) -> tuple[float, float, str]:
    """(median ratio, p95 ratio, "ok"/"SLOW") of a control against the floor's stats."""
    if not floor or not floor.get("n") or not row_stats["n"]:
        return float("nan"), float("nan"), "-"
    rm, rp = row_stats["median"] / floor["median"], row_stats["p95"] / floor["p95"]
    return rm, rp, "ok" if rm <= TARGET_MEDIAN and rp <= TARGET_P95 else "SLOW"


def floor_line(floor: dict) -> str:
    line = (f"floor (trivial ipympl widget, {FLOOR_FOLDER}/{FLOOR_NOTEBOOK}): median "
            f"{floor['median']:.0f} ms, p95 {floor['p95']:.0f} ms over {floor['n']} moves")
    if "latencies_ms" in floor:
        line += f" of {len(floor['latencies_ms'])}"
    pipe = floor.get("pipeline")
    if pipe:
        line += (f"; course-pipeline reference: median {pipe['median']:.0f} ms, "
                 f"p95 {pipe['p95']:.0f} ms")
    return line


def latency_table(rows: list[dict], floor: dict | None = None, header: bool = True) -> str:
    """rows: {"notebook", "widget", "control", "latencies_ms"} -> an aligned text table; with the
    floor's :func:`stats`, also each control's ratios to it and whether it meets the targets."""
    head = f"{'notebook':<34} {'w':>2} {'control':<26} {'n':>3} {'med ms':>7} {'p95 ms':>7}"
    lines = [head + (f" {'x med':>6} {'x p95':>6} {'target':>6}" if floor else "")]
    if floor and header:
        lines.insert(0, floor_line(floor) + f"; targets: median <= {TARGET_MEDIAN}x, "
                     f"p95 <= {TARGET_P95}x the floor's")
    for r in rows:
        st = stats(r["latencies_ms"])
        line = (f"{r['notebook'][:34]:<34} {r['widget']:>2} {r['control'][:26]:<26} {st['n']:>3} "
                f"{st['median']:7.0f} {st['p95']:7.0f}")
        if floor:
            rm, rp, ok = verdict(st, floor)
            line += f" {rm:6.2f} {rp:6.2f} {ok:>6}"
        lines.append(line)
    return "\n".join(lines)


def measure_floor(ctx, server: LabServer, moves: int = 30) -> dict:
    """Open the floor's notebook in browser context ``ctx``, move its sliders ``moves`` times and
    return the floor's :func:`stats` and raw latencies, with the course-pipeline reference's under
    ``"pipeline"``; the notebook's kernel is shut down afterwards."""
    name = server.add_floor_notebook()
    page = NotebookPage(ctx.new_page(), server, name, folder=FLOOR_FOLDER)
    try:
        page.open()
        page.run_all()
        rows = exercise_widgets(page, None, moves=moves)
        if len(rows) != 2 or not all(any(x >= 0 for x in r["latencies_ms"]) for r in rows):
            raise RuntimeError(f"the latency floor's widgets did not redraw: {rows}")
    finally:
        page.page.close()
        server.shutdown_kernels()
    pipeline = {**stats(rows[1]["latencies_ms"]), "latencies_ms": rows[1]["latencies_ms"]}
    return {**stats(rows[0]["latencies_ms"]), "latencies_ms": rows[0]["latencies_ms"],
            "pipeline": pipeline}


def exercise_widgets(page: NotebookPage, artifacts: Path | None, moves: int = 3) -> list[dict]:
    """Move every control of every widget ``moves`` times; return latency rows.

    Screenshots of each widget before and after go to ``artifacts`` (if given).
    """
    rows = []
    stem = page.notebook.removesuffix(".ipynb")
    for w, box in enumerate(page.widget_boxes()):
        box.scroll_into_view_if_needed()
        if artifacts:
            box.screenshot(path=str(artifacts / f"{stem}-widget{w}-before.png"))
        for c, (kind, control) in enumerate(page.controls(box)):
            if kind == "toggle":  # named by its options
                text = " / ".join(t.strip() for t in control.locator("button").all_inner_texts())
            else:
                klass = "widget-slider" if kind == "slider" else "widget-dropdown"
                label = control.locator(f"xpath=ancestor::div[contains(@class, '{klass}')][1]"
                                        "//label[contains(@class, 'widget-label')]")
                text = label.first.inner_text().strip() if label.count() else ""
            label = f"{kind}: {text}" if text else f"{kind} {c}"
            start_left = False
            if kind == "slider":
                now, top = (control.get_attribute("aria-valuenow"),
                            control.get_attribute("aria-valuemax"))
                start_left = now is not None and top is not None and float(now) >= float(top)
            lat = [page.move(box, kind, control, i + (1 if start_left else 0))
                   for i in range(moves)]
            rows.append({"notebook": page.notebook, "widget": w, "control": label,
                         "latencies_ms": lat})
        if artifacts:
            box.screenshot(path=str(artifacts / f"{stem}-widget{w}-after.png"))
    return rows
