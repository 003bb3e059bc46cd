"""Drive a real JupyterLab in headless Chromium: start a server, open a notebook, run it, move its
widgets and time how long each takes to redraw its figure.

Used by tests/browser/test_widgets_in_lab.py (correctness) and tests/browser/bench_widgets.py
(latency table). Facts this relies on are in the team's TOOLING_NOTES (measured on this machine
kind).
"""

from __future__ import annotations

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

    def api(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.base}/{path}?token={self.token}", timeout=30) as r:
            return json.loads(r.read())

    def saved_notebook(self, notebook: str) -> dict:
        return json.loads((self.root / "chapters" / notebook).read_text())


@contextmanager
def browser(user_data_dir: Path, device_scale_factor: float = 1):
    """Headless Chromium; ``device_scale_factor=2`` is a high-DPI laptop screen, where ipympl
    renders figures at twice the pixels in each direction."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
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
    def __init__(self, page, server: LabServer, notebook: str):
        self.page, self.server, self.notebook = page, server, notebook
        self.console_errors: list[str] = []
        page.on("console",
                lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def open(self, timeout_ms: int = 120_000) -> None:
        self.page.goto(self.server.url(self.notebook))
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
        return self.server.saved_notebook(self.notebook)

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
        return found

    def move(self, box, kind: str, control, step: int, timeout_ms: int = 15_000) -> float:
        """Change one control by one step; return ms until the figure redrew (-1: it did not)."""
        self.page.evaluate(_WATCH, [box.element_handle(), timeout_ms])
        if kind == "slider":
            control.focus()
            self.page.keyboard.press("ArrowRight" if step % 2 == 0 else "ArrowLeft")
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


def latency_table(rows: list[dict]) -> str:
    """rows: {"notebook", "widget", "control", "latencies_ms"} -> an aligned text table."""
    lines = [f"{'notebook':<38} {'widget':>6} {'control':<24} {'n':>3} {'median':>8} {'p95':>8}"]
    for r in rows:
        lat = [x for x in r["latencies_ms"] if x >= 0]
        lines.append(f"{r['notebook']:<38} {r['widget']:>6} {r['control'][:24]:<24} {len(lat):>3} "
                     f"{percentile(lat, 0.5):8.0f} {percentile(lat, 0.95):8.0f}")
    return "\n".join(lines)


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
