"""The Colab first cell (nncourse/course/colab.py) on small in-memory notebooks, and under nbval."""

import ast
import os
import subprocess
import sys
import textwrap
import tomllib
import types
from pathlib import Path

import nbformat
import pytest

from nncourse.course import colab

ROOT = Path(__file__).resolve().parents[2]


def small_notebook(minor=5):
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = minor
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell("import nncourse\nnncourse.setup()"),
                nbformat.v4.new_code_cell("print(1)")]
    if minor < 5:
        for c in nb.cells:
            c.pop("id", None)
    return nb


def test_cell_is_plain_python_that_compiles():
    source = colab.cell_source()
    compile(source, "<colab cell>", "exec")
    assert not any(line.lstrip().startswith(("%", "!")) for line in source.splitlines())
    assert f"git+{colab.REPO_URL}@{colab.REF}" in source


def test_cell_rejects_a_ref_that_is_not_a_name():
    with pytest.raises(ValueError, match="ref must be a branch, tag or commit name"):
        colab.cell_source(ref='main"; rm -rf /')


def run_cell(monkeypatch, on_colab):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(("pip", cmd)))
    if on_colab:
        output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append("widgets"))
        google = types.ModuleType("google")
        google.colab = types.ModuleType("google.colab")
        google.colab.output = output
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", google.colab)
        monkeypatch.setitem(sys.modules, "google.colab.output", output)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(colab.cell_source(), {})  # noqa: S102 -- the cell is the code under test
    return calls


def test_cell_does_nothing_outside_colab(monkeypatch):
    assert run_cell(monkeypatch, on_colab=False) == []


def test_cell_installs_the_course_and_enables_widgets_on_colab(monkeypatch):
    calls = run_cell(monkeypatch, on_colab=True)
    assert calls[-1] == "widgets"
    (_, cmd), = calls[:-1]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[-1] == f"nncourse @ git+{colab.REPO_URL}@{colab.REF}"


@pytest.mark.parametrize("minor", [4, 5])
def test_add_inserts_before_the_first_code_cell_once(minor):
    nb = small_notebook(minor)
    assert colab.add_colab_cell(nb) is True
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "code"]
    cell = nb.cells[1]
    assert colab.is_colab_cell(cell) and "nbval-skip" in cell.metadata.tags
    assert cell.outputs == [] and cell.execution_count is None
    assert ("id" in cell) == (minor >= 5)
    nbformat.validate(nb)
    before = nbformat.writes(nb)
    assert colab.add_colab_cell(nb) is False
    assert nbformat.writes(nb) == before


def test_add_refreshes_a_stale_cell_and_drops_duplicates():
    nb = small_notebook()
    colab.add_colab_cell(nb, ref="v0.1")
    stale = nbformat.from_dict(colab.new_cell(ref="old"))
    stale.pop("id")
    nb.cells.append(stale)  # a second, stale copy at the end
    assert colab.add_colab_cell(nb, ref="v0.2") is True
    found = [c for c in nb.cells if colab.is_colab_cell(c)]
    assert len(found) == 1 and "@v0.2" in found[0].source
    assert nb.cells.index(found[0]) == 1
    nbformat.validate(nb)


def test_add_works_on_plain_json_dicts():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    plain = {**nb, "cells": [dict(c) for c in nb.cells]}
    assert colab.add_colab_cell(plain)
    assert colab.is_colab_cell(plain["cells"][0])


FAKE_COLAB = """
import subprocess, sys, types
google = types.ModuleType("google"); google.colab = types.ModuleType("google.colab")
sys.modules["google"] = google; sys.modules["google.colab"] = google.colab
def _refuse(*a, **k):
    raise RuntimeError("the Colab cell ran")
subprocess.run = _refuse
"""


@pytest.mark.parametrize("tagged", [True, False])
def test_nbval_skips_the_cell(tmp_path, tagged):
    """In a kernel that looks like Colab the cell would fail; nbval must not run it.

    The untagged control shows the check can fail: nbval runs the cell and it fails.
    """
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.cells[0].execution_count = 1
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    colab.add_colab_cell(nb)
    if not tagged:
        nb.cells[0].metadata.tags = []
    nbformat.write(nb, tmp_path / "nb.ipynb")
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-fake-colab.py").write_text(textwrap.dedent(FAKE_COLAB))
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                        "--nbval-current-env", "nb.ipynb"], check=False, cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    if tagged:
        assert r.returncode == 0, r.stdout[-3000:]
        assert "1 passed" in r.stdout
    else:
        assert r.returncode != 0 and "the Colab cell ran" in r.stdout, r.stdout[-3000:]


def test_badge_table_lists_chapters_and_their_exercises(tmp_path):
    for name in ("chapters/00_start_here.ipynb", "chapters/01_backprop.ipynb",
                 "exercises/00_warmup.ipynb", "chapters/notes.ipynb"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}")
    table = colab.badge_table(tmp_path, repo="me/course", ref="v1").splitlines()
    assert len(table) == 4  # header, rule, two numbered chapters
    assert ("colab.research.google.com/github/me/course/blob/v1/chapters/00_start_here.ipynb"
            in table[2])
    assert "blob/v1/exercises/00_warmup.ipynb" in table[2]
    assert "exercises" not in table[3].split("|")[3]


def test_readme_badge_table_is_current():
    readme = (ROOT / "README.md").read_text()
    assert colab.update_readme(readme, colab.badge_table(ROOT)) == readme, (
        "README's Colab table is stale: python -m nncourse.course.colab --readme README.md")


def test_update_readme_needs_the_markers():
    with pytest.raises(ValueError, match="markers"):
        colab.update_readme("# no table here", "| |")


def test_repository_url_is_the_one_in_pyproject():
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Source"] == colab.REPO_URL



def test_notebooks_have_the_current_colab_cell():
    paths = sorted(p for d in ("chapters", "solutions", "exercises")
                   for p in (ROOT / d).glob("[0-9][0-9]_*.ipynb"))
    fix = "python -m nncourse.course.colab chapters/*.ipynb solutions/*.ipynb && make release"
    notebooks = {p.relative_to(ROOT).as_posix(): nbformat.read(p, 4) for p in paths}
    have = sorted(k for k, nb in notebooks.items() if any(colab.is_colab_cell(c) for c in nb.cells))
    if not have:
        pytest.skip(f"no notebook has the Colab first cell yet ({fix})")
    missing = sorted(set(notebooks) - set(have))
    assert not missing, f"notebooks without the Colab cell: {missing} ({fix})"
    stale = [k for k, nb in notebooks.items() if colab.add_colab_cell(nb)]
    assert not stale, f"stale or misplaced Colab cell in {stale} ({fix})"


def test_execute_leaves_the_cell_unexecuted(tmp_path):
    """`python -m nncourse execute` (and bench, check, portability: all through nbs.execute)
    runs every cell but the Colab one, which stays as the notebook rules want it."""
    from nncourse.__main__ import main

    nb = small_notebook()
    nb.cells[1].source = "print('setup')"
    colab.add_colab_cell(nb)
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert main(["execute", str(path)]) == 0
    out = nbformat.read(path, 4)
    assert colab.add_colab_cell(out) is False  # still current: no output, no execution count
    cell = next(c for c in out.cells if colab.is_colab_cell(c))
    assert cell.outputs == [] and cell.execution_count is None
    code = [c for c in out.cells if c.cell_type == "code" and not colab.is_colab_cell(c)]
    assert [c.execution_count for c in code] == [1, 2]
    assert [o.text for c in code for o in c.outputs] == ["setup\n", "1\n"]


def test_the_grader_does_not_run_the_cell():
    from nncourse.course.grading import rebuild

    master = small_notebook()
    colab.add_colab_cell(master)
    rebuilt = rebuild.rebuild(master, [])
    assert not any(colab.is_colab_cell(c) for c in rebuilt.notebook.cells)
    assert any("nncourse.setup()" in c.source for c in rebuilt.notebook.cells)


def test_the_grader_reads_no_instructor_code_from_the_cell():
    """Its imports (sys, subprocess, google.colab) are not the instructor's setup: the static
    flags and the withholding never see them."""
    from nncourse.course.grading import rebuild

    master = small_notebook()
    colab.add_colab_cell(master)
    imported = {a.name for tree in rebuild.instructor_trees(master) for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for a in node.names}
    assert imported == {"nncourse"}
