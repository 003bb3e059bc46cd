"""Every chapter's widgets work in a real JupyterLab, in headless Chromium.

For each chapter that displays widgets: open it, Run All, then move every slider and change every
dropdown and require the widget's figure to redraw, then drag every slider with the mouse and
require the same; no "Error displaying widget", no JavaScript
errors, no Python errors except in cells tagged raises-exception. Latencies are recorded, beside
the floor (a trivial ipympl widget measured first in the same server and browser) and each
control's ratio to it (see the terminal summary and tests/browser/artifacts/latency.json); the
targets (median <= 1.3x, p95 <= 2x the floor's) are checked by the benchmark
tests/browser/bench_widgets.py at 1x and 2x device pixel ratio, not asserted here: three moves
on a loaded machine are too few for a verdict.
"""

import json

import pytest

from tests.browser import lab

NOTEBOOKS = lab.widget_notebooks()
_rows: list[dict] = []


def test_some_chapter_has_widgets():
    assert NOTEBOOKS, "no chapter displays a widget: nothing for the browser test to check"


@pytest.mark.parametrize("notebook", [p.name for p in NOTEBOOKS])
def test_widgets_redraw_in_jupyterlab(notebook, lab_server, chromium, artifacts, latency_floor):
    stored = json.loads((lab.ROOT / "chapters" / notebook).read_text())
    page = lab.NotebookPage(chromium.new_page(), lab_server, notebook)
    try:
        page.open()
        page.run_all()
        boxes = page.widget_boxes()
        assert len(boxes) == lab.widget_cell_count(stored), "every widget cell shows a live figure"
        rows = lab.exercise_widgets(page, artifacts)
        _rows.extend(rows)
        floor = {k: latency_floor[k] for k in ("n", "median", "p95", "latencies_ms")}
        (artifacts / "latency.json").write_text(json.dumps({"floor": floor, "rows": _rows},
                                                           indent=1))
        for r in rows:
            assert all(x >= 0 for x in r["latencies_ms"]), (
                f"widget {r['widget']} {r['control']}: the figure did not redraw")
        assert rows, "widgets without controls"
        for d in lab.drag_sliders(page, sweep_ms=600, steps=12):  # the mouse path, not just keys
            assert d["frames"] > 0, f"widget {d['widget']} {d['control']}: a drag did not redraw"
        assert page.page_text_errors() == []
        saved = page.save()
        for i, cell in enumerate(c for c in saved["cells"] if c["cell_type"] == "code"):
            errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
            if "raises-exception" not in cell.get("metadata", {}).get("tags", []):
                assert not errors, (
                    f"code cell {i} raised {errors[0]['ename']}: {errors[0]['evalue']}")
        assert page.console_errors == []
    finally:
        page.page.screenshot(path=str(artifacts / f"{notebook.removesuffix('.ipynb')}-page.png"),
                             full_page=False)
        page.page.close()
        lab_server.shutdown_kernels()
