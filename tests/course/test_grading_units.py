"""The grader's parts, fast: reading submissions, rebuilding the notebook, static flags, helpers."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from nncourse.course import notebooks as nbs
from nncourse.course.grading import rebuild as rb
from nncourse.course.grading import sandbox
from nncourse.course.grading.batch import (
    Limits,
    _signal_name,
    find_master,
    find_submissions,
)
from tests.course.grading_helpers import (
    AS_ROOT,
    MSE,
    RELU,
    RIGHT,
    ROOT,
    SOLUTION,
    cells_of,
    student,
)

# --- unit tests: reading, rebuilding, flags ------------------------------------------------------

@pytest.mark.parametrize("data, why", [
    (b"{\"cells\": [", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"[1, 2]", "not a Jupyter notebook"),
    (json.dumps({"nbformat": 3, "worksheets": []}).encode(), "format 3 is not supported"),
    (json.dumps({"nbformat": 4, "cells": "no"}).encode(), "no list of cells"),
    (b" " * (rb.MAX_SUBMISSION_BYTES + 1), "larger than"),
])
def test_unreadable_submissions_say_why(data, why):
    with pytest.raises(rb.SubmissionError, match=why):
        rb.load_submission(data)


def test_load_tolerates_list_sources_and_missing_metadata():
    nb = {"nbformat": 4, "nbformat_minor": 4, "metadata": {},
          "cells": [{"cell_type": "code", "source": ["a = 1\n", "b = 2"]}, "junk",
                    {"cell_type": "markdown", "metadata": None, "source": None}]}
    cells = rb.load_submission(json.dumps(nb).encode())
    assert [c["source"] for c in cells] == ["a = 1\nb = 2", ""]
    assert cells[0]["id"] is None and cells[0]["metadata"] == {"tags": [], "nncourse": {}}


def sources(rebuilt, role):
    return {nbs.exercise_id(c): c.source for c in rebuilt.notebook.cells if nbs.role(c) == role}


def test_rebuild_takes_only_answers_and_restores_everything_else():
    master = nbs.read(SOLUTION)

    def vandalise(nb):
        for cell in nb["cells"]:
            if "check" in cell["metadata"].get("tags", []):
                cell["source"] = "print('Exercise passed')"
                cell["metadata"]["nncourse"]["points"] = 100
            elif cell["source"].startswith("import nncourse"):
                cell["source"] = "import nncourse  # student edit\nnncourse.setup(seed=7)"
        nb["cells"].insert(3, {"cell_type": "code", "id": "mine", "metadata": {}, "outputs": [],
                               "execution_count": None, "source": "def helper(): pass"})

    built = rb.rebuild(master, cells_of(student(RIGHT, vandalise)))
    assert sources(built, nbs.ANSWER) == RIGHT
    assert sources(built, nbs.CHECK) == sources(rb.Rebuilt(master, []), nbs.CHECK)
    assert [e.points for e in nbs.exercises(built.notebook)] == [1, 1, 2]
    assert all(c.source != "def helper(): pass" for c in built.notebook.cells)
    code = [c for c in built.notebook.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert code[0].source == "import nncourse\nnncourse.setup()"
    for i, cell in enumerate(built.notebook.cells):  # a guard right before every check
        if nbs.role(cell) == nbs.CHECK:
            assert built.notebook.cells[i - 1].id.startswith(rb.GUARD_ID)
    assert any("check cell was edited" in n for n in built.notes)
    assert any("1 code cell you added was not run" in n for n in built.notes)


def test_rebuild_matches_answers_by_tags_then_order_then_stubs():
    master = nbs.read(SOLUTION)

    def new_ids(nb):
        for i, cell in enumerate(nb["cells"]):
            cell["id"] = f"renamed-{i}"

    built = rb.rebuild(master, cells_of(student(RIGHT, new_ids)))
    assert sources(built, nbs.ANSWER) == RIGHT and {a.how for a in built.answers} == {"tags"}

    def strip(nb):
        nb["nbformat_minor"] = 4
        for cell in nb["cells"]:
            cell.pop("id")
            cell["metadata"] = {}

    built = rb.rebuild(master, cells_of(student(RIGHT, strip)))
    assert sources(built, nbs.ANSWER) == RIGHT and {a.how for a in built.answers} == {"order"}

    def delete_answer(nb):
        new_ids(nb)
        nb["cells"] = [c for c in nb["cells"]
                       if c["metadata"].get("nncourse", {}).get("exercise") != "0.2"]

    built = rb.rebuild(master, cells_of(student(RIGHT, delete_answer)))
    assert "raise NotImplementedError" in sources(built, nbs.ANSWER)["0.2"]
    assert any("0.2: no answer cell was found" in n for n in built.notes)
    built = rb.rebuild(master, cells_of(student(RIGHT)), skip={"0.1": "hung"})
    assert "raise NotImplementedError" in sources(built, nbs.ANSWER)["0.1"]
    assert sources(built, nbs.ANSWER)["0.2"] == MSE


def flags(source, ex="0.1"):
    return rb.static_flags(source, ex, check_names={"check"}, reference_names={"relu"},
                           module_names={"np", "torch", "nncourse", "sys"},
                           nncourse_names=frozenset({"nncourse", "act"}))


def test_ordinary_answers_are_not_flagged():
    for source in RIGHT.values():
        assert flags(source) == []
    assert flags("%time x = 1\ndef relu(x):\n    return np.where(x > 0, x, 0.0)") == []
    assert flags("def relu(x:\n  broken") == []  # a syntax error is the check's business


@pytest.mark.parametrize("source, expected", [
    ("import nncourse.checks.ch00 as c\nc.ex0_1_relu = print", "imports the course's checks"),
    ("check.ex0_1_relu = print", "uses the check module 'check'"),
    ("check = None", "uses the check module 'check'"),
    ("np.allclose = lambda *a, **k: True", "assigns to np.allclose"),
    ("from nncourse.activations import relu", "reference implementation"),
    ("def relu(x):\n    return nncourse.activations.relu(x)", "reference implementation"),
    ("def relu(x):\n    return act.relu(x)", "reference implementation (act.relu)"),
    ("get_ipython().set_custom_exc((Exception,), print)", "get_ipython"),
    ("setattr(np, 'allclose', max)", "calls setattr()"),
    ("import builtins", "imports builtins"),
    ("class Fake(np.ndarray):\n    pass", "defines class Fake"),
    ("class F:\n    def __array_function__(self, *a):\n        return True", "defines class F"),
    ("import sys\nsys.modules['numpy'] = None", "edits sys.modules"),
    ("!ls /\ndef relu(x):\n    return x", "runs a shell command"),
    ("files = !ls", "runs a shell command"),
    ("%config InlineBackend.figure_format = 'svg'", "uses the IPython magic %config"),
    ("%alias_magic t timeit", "uses the IPython magic %alias_magic"),
    ("%%bash\nls /", "uses the IPython magic %bash"),
])
def test_suspicious_answers_are_flagged(source, expected):
    found = flags(source)
    assert any(expected in f for f in found), found
    assert all(f.startswith("0.1: ") for f in found)


def test_check_bindings_and_defined_names():
    master = nbs.read(SOLUTION)
    assert rb.check_bindings(master) == [("check", "nncourse.checks.ch00", None)]
    assert rb.defined_names(RELU + "\nclass A: pass\nx = 1") == ["relu", "A"]
    assert rb.nncourse_aliases(master) == {"nncourse"}
    setup = next(c for c in master.cells
                 if c.cell_type == "code" and "nncourse.setup(" in c.source)
    setup.source += "\nfrom nncourse import init as I, checks\nimport nncourse.data as D"
    assert rb.nncourse_aliases(master) == {"nncourse", "I", "D"}


def test_find_master_and_submissions(tmp_path):
    assert find_master("0", ROOT / "solutions") == SOLUTION
    assert find_master("00", ROOT / "solutions") == SOLUTION
    for bad in ("99", "x1"):
        with pytest.raises(ValueError):
            find_master(bad, ROOT / "solutions")
    (tmp_path / "ann.ipynb").write_text("{}")
    (tmp_path / "bo").mkdir()
    (tmp_path / "bo" / SOLUTION.name).write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "ann-checkpoint.ipynb").write_text("{}")
    assert [e.student for e in find_submissions(tmp_path, SOLUTION)] == ["ann", "bo"]
    assert all(e.status is None for e in find_submissions(tmp_path, SOLUTION))


def test_blocked_ancestor():
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own tmp folders are closed (0700)
    try:
        base.chmod(0o755)
        closed = base / "closed"
        (closed / "inner").mkdir(parents=True)
        closed.chmod(0o700)
        assert sandbox._blocked_ancestor(str(closed / "inner")) == str(closed)
        closed.chmod(0o755)
        assert sandbox._blocked_ancestor(str(closed / "inner")) is None
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(not AS_ROOT, reason="needs files owned by another user")
def test_remove_files_of_sweeps_only_that_users_files(tmp_path):
    uid = 2_000_000_999
    shared = tmp_path / "shared"
    (shared / "keep").mkdir(parents=True)
    shared.chmod(0o1777)
    mine, theirs, kept = shared / "left.txt", shared / "other.txt", shared / "keep" / "x"
    for p in (mine, theirs, kept):
        p.write_text("x")
    os.chown(mine, uid, uid)
    os.chown(kept, uid, uid)
    removed = sandbox.remove_files_of(uid, keep=str(shared / "keep"), roots=(str(shared),))
    assert removed == [str(mine)] and theirs.exists() and kept.exists()


def test_processes_of_counts_live_processes_not_zombies():
    """A zombie has exited: waiting for it to vanish cost ~1 s per notebook, until its parent
    reaps it, and it can no longer do anything a kill would stop."""
    import subprocess
    import sys
    import time

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(500):  # until the child has exited (its /proc entry stays: not reaped)
            with open(f"/proc/{dead.pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.01)
        mine = sandbox._processes_of(os.getuid())
        assert live.pid in mine and os.getpid() in mine
        assert os.path.exists(f"/proc/{dead.pid}") and dead.pid not in mine
    finally:
        live.kill()
        live.wait()
        dead.wait()


def test_limits_and_signal_names():
    with pytest.raises(ValueError, match="cell_timeout must be a positive integer"):
        Limits(cell_timeout=0)
    assert "SIGSEGV" in _signal_name(-11) and "segmentation" in _signal_name(-11)
    assert _signal_name(3) == "exit code 3"


def test_time_breakdown_is_the_median_of_each_part_and_names_the_rest():
    from nncourse.course.grading.batch import ERROR, OK, Grade
    from nncourse.course.grading.reports import time_breakdown

    def row(start, cells, seconds, status=OK):
        return Grade("s", "s.ipynb", "", status, seconds=seconds,
                     timing={"kernel_start": start, "instructor": cells, "checks": 0.5,
                             "kernel_cpu": 2.0})

    grades = [row(1.0, 2.0, 4.0), row(2.0, 3.0, 9.0), row(3.0, 4.0, 8.0),
              row(50.0, 50.0, 100.0, status=ERROR)]  # not graded: left out
    assert time_breakdown(grades) == (
        "median seconds per notebook (3 graded): kernel start 2.00, instructor cells 3.00, "
        "checks 0.50, other 0.50; kernel CPU 2.00")
    assert time_breakdown([]) == "" and time_breakdown(grades[3:]) == ""
