"""``nncourse export --to nbgrader``: the cell metadata, and the real nbgrader grading the export.

The nbgrader test runs ``nbgrader generate_assignment`` and ``nbgrader autograde`` on the
warm-up's export, with one student who submitted the solution (full marks) and one who submitted
the released stub (zero), and reads the grades back with ``nbgrader export``.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from nncourse.course import colab
from nncourse.course import export as ex
from nncourse.course import notebooks as nbs
from tests.course.grading_helpers import ROOT, SOLUTION

BIN = Path(sys.executable).parent


def _master_with_colab_cell():
    nb = nbs.read(SOLUTION)
    colab.add_colab_cell(nb)  # harmless if the notebooks already have it
    assert any(colab.is_colab_cell(c) for c in nb.cells)
    return nb


def test_nbgrader_metadata_maps_answer_check_and_instructor_cells():
    nb = ex.to_nbgrader(_master_with_colab_cell())
    assert not any(colab.is_colab_cell(c) for c in nb.cells), "the Colab cell is left out"
    exercises = {e.id: e for e in nbs.exercises(nb)}
    assert set(exercises) == {"0.1", "0.2", "0.3"}
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        assert meta["schema_version"] == 3 and meta["grade_id"] == cell.id
        role = nbs.role(cell)
        if role == nbs.ANSWER:
            assert meta["solution"] and not meta["grade"] and not meta["locked"]
            assert nbs.SOLUTION_BEGIN in cell.source  # nbgrader's own delimiters
        elif role == nbs.CHECK:
            assert meta["grade"] and meta["locked"] and not meta["solution"]
            assert meta["points"] == exercises[cell.metadata["nncourse"]["exercise"]].points
        else:
            assert meta["locked"] and not meta["grade"] and not meta["solution"]
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    nbformat.validate(nb)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells]
    assert len(ids) == len(set(ids))


def test_otter_master_has_one_question_per_exercise_with_the_check_as_test():
    nb = ex.to_otter(_master_with_colab_cell(), "00_warmup")
    raw = [c.source for c in nb.cells if c.cell_type == "raw"]
    assert raw[0].startswith("# ASSIGNMENT CONFIG") and "ok_format: false" in raw[0]
    questions = [r for r in raw if r.startswith("# BEGIN QUESTION")]
    assert questions == ["# BEGIN QUESTION\nname: ex0_1\npoints: 1",
                         "# BEGIN QUESTION\nname: ex0_2\npoints: 1",
                         "# BEGIN QUESTION\nname: ex0_3\npoints: 2"]
    assert raw.count("# BEGIN SOLUTION") == raw.count("# END SOLUTION") == 3
    assert raw.count("# BEGIN TESTS") == raw.count("# END QUESTION") == 3
    tests = [c.source for c in nb.cells if c.cell_type == "code" and "TEST CONFIG" in c.source]
    assert "def test_ex0_1(relu, check):\n    check.ex0_1_relu(relu)" in tests[0]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "### BEGIN SOLUTION" not in code and "    # BEGIN SOLUTION" in code
    assert "google.colab" not in code


def test_otter_refuses_an_instructor_cell_inside_an_exercise():
    nb = nbs.read(SOLUTION)
    check = next(i for i, c in enumerate(nb.cells) if c.get("id") == "check-0-1")
    nb.cells.insert(check, nbformat.v4.new_code_cell("print('instructor')"))
    with pytest.raises(ValueError, match="exercise 0.1: for otter, its answer cells must come"):
        ex.to_otter(nb, "00_warmup")


def test_export_refuses_bad_input_with_one_sentence(tmp_path, capsys):
    from nncourse.__main__ import main

    assert main(["export", "--to", "nbgrader", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["export", "--to", "nbgrader", str(ROOT / "solutions"), "--exercise", "x",
                 "--out", str(tmp_path / "o")]) == 2
    assert "chapter number" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    nb = nbs.read(SOLUTION)
    nb.cells = [c for c in nb.cells if nbs.role(c) != nbs.CHECK or c.id != "check-0-2"] + [
        nbformat.v4.new_code_cell("x", metadata={"tags": ["check"],
                                                 "nncourse": {"exercise": "0.9"}})]
    nbs.write(nb, broken / "00_warmup.ipynb")
    assert main(["export", "--to", "otter", str(broken), "--out", str(tmp_path / "o")]) == 2
    assert "needs positive integer points" in capsys.readouterr().err


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "nbgrader"), *args], cwd=course, capture_output=True,
                          text=True, timeout=900,
                          env={**os.environ, "JUPYTER_RUNTIME_DIR": str(course / ".runtime"),
                               # nbgrader runs `alembic` from PATH: the venv's, as when activated
                               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_real_nbgrader_gives_the_solution_full_marks_and_the_stub_zero(tmp_path, monkeypatch):
    if not (BIN / "nbgrader").exists():
        pytest.skip("nbgrader is not installed (it comes with the [dev] extras: make venv-dev)")
    t0 = time.monotonic()
    course = tmp_path / "course"
    [source] = ex.export("nbgrader", ROOT / "solutions", course, exercise="00")
    assert source == course / "source" / "00_warmup" / "00_warmup.ipynb"
    _nbgrader(course, "generate_assignment", "00_warmup", "--force")
    released = json.loads((course / "release" / "00_warmup" / "00_warmup.ipynb").read_text())
    answers = [c for c in released["cells"] if c["metadata"]["nbgrader"].get("solution")]
    assert len(answers) == 3 and all("NotImplementedError" in "".join(c["source"])
                                     for c in answers)
    solution = {c.id: c.source for c in nbs.read(source).cells}
    for who, solved in (("alice", True), ("bob", False)):
        nb = json.loads(json.dumps(released))
        for c in nb["cells"]:
            if solved and c["metadata"]["nbgrader"].get("solution"):
                c["source"] = solution[c["id"]]
        folder = course / "submitted" / who / "00_warmup"
        folder.mkdir(parents=True)
        (folder / "00_warmup.ipynb").write_text(json.dumps(nb))
    _nbgrader(course, "autograde", "00_warmup", "--create", "--force")
    from nbgrader.api import Gradebook  # the gradebook `nbgrader export` reads

    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # alembic

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {who: gb.find_submission("00_warmup", who) for who in ("alice", "bob")}
        scores = {who: (s.score, s.max_score) for who, s in scores.items()}
    assert scores == {"alice": (4.0, 4.0), "bob": (0.0, 4.0)}
    # nbgrader gives 0 to a graded cell that writes to stderr: the checks write nothing there
    graded = nbs.read(course / "autograded" / "alice" / "00_warmup" / "00_warmup.ipynb")
    for cell in graded.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            assert [o.get("name") for o in cell.outputs] == ["stdout"], cell.outputs
            assert "passed" in cell.outputs[0]["text"]
    print(f"nbgrader generate_assignment + autograde (2 students): {time.monotonic() - t0:.0f} s")
    shutil.rmtree(course / ".runtime", ignore_errors=True)
