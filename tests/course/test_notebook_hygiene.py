"""The repository's notebook rules (CONTRIBUTING.md), checked on every notebook.

These make the nbval run meaningful: nbval silently skips a cell that was never executed, and
compares text outputs exactly, so an unexecuted cell or an address in an output is a test that
cannot fail or cannot pass.
"""

import json
import re
from pathlib import Path

import pytest

from nncourse.course import notebooks as nbs
from nncourse.course.colab import is_colab_cell

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
STORED = CHAPTERS + SOLUTIONS
MACHINE_TEXT = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|[A-Z]:\\\\|ipykernel_\d+|"
                          r" at 0x[0-9a-f]{6,}|\d{4}-\d\d-\d\d[ T]\d\d:\d\d)")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def ids(paths):
    return [p.relative_to(ROOT).as_posix() for p in paths]


def test_there_is_something_to_check():
    assert CHAPTERS and SOLUTIONS and EXERCISES


@pytest.mark.parametrize("path", STORED, ids=ids(STORED))
def test_every_code_cell_is_executed_without_unexpected_errors(path):
    nb = nbs.read(path)
    for i, cell in nbs.iter_code(nb):
        if not cell.source.strip() or is_colab_cell(cell):  # Colab's cell: nbval-skip, no output
            continue
        assert cell.execution_count is not None, f"cell {i} was never executed (nbval skips it)"
        tags = cell.metadata.get("tags", [])
        if nbs.cell_error(cell) is not None:
            assert any("raises-exception" in t for t in tags), f"cell {i} stores an error"


@pytest.mark.parametrize("path", STORED + EXERCISES, ids=ids(STORED + EXERCISES))
def test_outputs_are_machine_independent(path):
    nb = nbs.read(path)
    for i, cell in nbs.iter_code(nb):
        # Images are not compared by nbval; everything else is, as exact text.
        text = json.dumps([{k: v for k, v in o.get("data", {}).items()
                            if not k.startswith("image/")}
                           if "data" in o else o for o in cell.outputs])
        m = MACHINE_TEXT.search(text)
        assert m is None, f"cell {i} output contains machine-specific text {m.group(0)!r}"


@pytest.mark.parametrize("path", STORED + EXERCISES, ids=ids(STORED + EXERCISES))
def test_no_trailing_semicolons(path):
    for i, cell in nbs.iter_code(nbs.read(path)):
        for line in cell.source.splitlines():
            code = line.split("#", 1)[0].rstrip()
            assert not code.endswith(";"), (f"cell {i}: trailing ';' does not hide output "
                                            "under nbval")


@pytest.mark.parametrize("path", STORED, ids=ids(STORED))
def test_setup_cell_comes_first(path):
    first = next(cell for _, cell in nbs.iter_code(nbs.read(path)) if not is_colab_cell(cell))
    assert "nncourse.setup(" in first.source, "the first code cell must call nncourse.setup()"


@pytest.mark.parametrize("path", STORED, ids=ids(STORED))
def test_widget_cells_are_ignored_by_nbval_and_follow_a_static_figure(path):
    nb = nbs.read(path)
    cells = list(nbs.iter_code(nb))
    for k, (i, cell) in enumerate(cells):
        if any(WIDGET_MIME in o.get("data", {}) and "VBox" in o["data"].get("text/plain", "")
               for o in cell.outputs):
            assert "nbval-ignore-output" in cell.metadata.get("tags", []), (
                f"widget cell {i} must be tagged nbval-ignore-output")
            before = [c for _, c in cells[:k]]
            assert any("image/png" in o.get("data", {}) for c in before[-2:] for o in c.outputs), (
                f"widget cell {i} must follow a static figure of its default state")


@pytest.mark.parametrize("path", STORED + EXERCISES, ids=ids(STORED + EXERCISES))
def test_notebook_size(path):
    assert path.stat().st_size < 3_000_000, "shrink figures (fewer, smaller images)"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids(CHAPTERS))
def test_chapter_has_exercises(path):
    nn = path.name[:2]
    if nn == "00":
        return
    assert list((ROOT / "solutions").glob(f"{nn}_*.ipynb")), f"no solutions/{nn}_* notebook"
