"""Progress bars (nncourse.progress): a widget in a Jupyter kernel when on, nothing at all when
NNCOURSE_PROGRESS=0 -- which is how every stored output was produced, so none holds a bar."""

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from nncourse.course import notebooks as nbs

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p for d in ("chapters", "solutions", "exercises")
                   for p in (ROOT / d).glob("*.ipynb"))

# What a tqdm bar leaves in an output: its text form ("sweep:  40%|####  | 2/5 [00:01<00:01,
# 1.9it/s]"), and in a kernel an ipywidgets HBox of an HTML label and a FloatProgress.
TQDM_TEXT = re.compile(r"\d+%\|.*\|\s*\d+/\d*|\d+/\d+ \[\d\d:\d\d<|[\d.?]+(it|s)/(s|it)\]")
TQDM_WIDGET = re.compile(r"FloatProgress|IntProgress")

CELL = """\
import time
import nncourse
for _ in nncourse.progress(range(3), desc="demo sweep", delay=0):
    time.sleep(0.05)
print("done")
"""


def traces(outputs) -> list[str]:
    """The tqdm traces in a cell's outputs (text of any kind, and widget views' text form)."""
    found = []
    for out in outputs:
        texts = [out.get("text", "")] if out.get("output_type") == "stream" else []
        data = out.get("data", {})
        texts += [v if isinstance(v, str) else json.dumps(v) for v in data.values()]
        found += [t[:120] for t in texts if TQDM_TEXT.search(t) or TQDM_WIDGET.search(t)]
    return found


def run_cell(env) -> list:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nbs.execute(nb, cwd=ROOT, timeout=120, env=env)
    return nb.cells[0].outputs


def test_a_bar_appears_in_a_kernel_when_progress_is_on():
    env = nbs.kernel_env()
    env.pop("NNCOURSE_PROGRESS")  # as in JupyterLab: unset means on in a kernel
    outputs = run_cell(env)
    view = "application/vnd.jupyter.widget-view+json"
    widgets = [o for o in outputs if view in o.get("data", {})]
    assert widgets, outputs
    assert traces(outputs), outputs  # the scan below would see it
    assert any("done" in o.get("text", "") for o in outputs)


def test_no_output_at_all_when_progress_is_off():
    outputs = run_cell(nbs.kernel_env())  # NNCOURSE_PROGRESS=0, as for stored outputs
    assert [o.get("text") for o in outputs] == ["done\n"]
    assert not traces(outputs)


def test_the_test_session_turns_bars_off():
    # conftest.py sets it before any kernel starts: nbval's kernels inherit it
    assert os.environ.get("NNCOURSE_PROGRESS") == "0"
    assert nbs.kernel_env()["NNCOURSE_PROGRESS"] == "0"
    makefile = (ROOT / "Makefile").read_text()
    assert "NNCOURSE_PROGRESS=0 $(BIN)/python -m pytest" in makefile


def test_the_scan_recognises_a_terminal_bar():
    bar = "\rsweep:  40%|####      | 2/5 [00:01<00:01,  1.90it/s]"
    assert traces([{"output_type": "stream", "name": "stderr", "text": bar}])
    assert not traces([{"output_type": "stream", "name": "stdout",
                        "text": "lr 0.1: 95.0% +- 1.2%  (3/3 seeds)\n"}])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_progress_bar_in_stored_outputs(path):
    nb = nbs.read(path)
    found = {i: t for i, cell in nbs.iter_code(nb) if (t := traces(cell.get("outputs", [])))}
    assert not found, (f"progress bars stored in {path.name} (store outputs with "
                       f"`python -m nncourse execute`, which sets NNCOURSE_PROGRESS=0): {found}")
