"""The exercise machinery is not vacuous.

* every solution notebook's structure is valid and scores full marks as stored;
* every exercise notebook, run as released, fails at exactly its check cells -- and at nothing
  else -- each with a "not attempted" message;
* exercises/ is exactly what `python -m nncourse release` writes (release --check).
"""

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from nncourse.course import notebooks as nbs
from nncourse.course import release, scoreboard

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))


def ids(paths):
    return [p.name for p in paths]


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_solution_structure_and_stored_score(path):
    nb = nbs.read(path)
    exercises = nbs.exercises(nb)
    assert 1 <= len(exercises), "a solution notebook needs exercises"
    nn = int(path.name[:2])
    for ex in exercises:
        assert ex.id.split(".")[0] == str(nn), f"exercise {ex.id} is numbered for another chapter"
        assert ex.answers, f"exercise {ex.id} has no answer cell"
        out = "".join(o.get("text", "") for o in nb.cells[ex.check].outputs)
        assert f"Exercise {ex.id} passed ({ex.points} point" in out, (
            f"check cell of {ex.id} must store its passing output")
    assert all(r.status == scoreboard.PASSED for r in scoreboard.score(nb))


def test_release_is_current():
    problems = release.release(ROOT / "solutions", ROOT / "exercises", check=True)
    assert problems == []


@pytest.mark.parametrize("path", EXERCISES, ids=ids(EXERCISES))
def test_released_exercise_fails_exactly_at_its_check_cells(path):
    nb = nbs.read(path)
    expected = {ex.check for ex in nbs.exercises(nb)}
    nbs.execute(nb, cwd=path.parent, timeout=300, allow_errors=True)
    failing = {i for i, cell in nbs.iter_code(nb) if nbs.cell_error(cell) is not None}
    assert failing == expected, (f"cells that failed: {sorted(failing)}; "
                                 f"check cells: {sorted(expected)}")
    for r in scoreboard.score(nb):
        assert r.status == scoreboard.NOT_ATTEMPTED, f"exercise {r.exercise}: {r.message}"
        assert f"Exercise {r.exercise}" in r.message and "NotImplementedError" in r.message
    for i in expected:  # shown as one line, not a traceback into nncourse
        assert len(nbs.cell_error(nb.cells[i])["traceback"]) == 1


def test_check_command_scores_partial_work(tmp_path):
    """`python -m nncourse check` on the warm-up with one answer filled in: 1 of 3 passes."""
    solution = nbs.read(ROOT / "solutions" / "00_warmup.ipynb")
    student = nbs.read(ROOT / "exercises" / "00_warmup.ipynb")
    for cell, sol in zip(student.cells, solution.cells):
        if nbs.role(cell) == nbs.ANSWER and nbs.exercise_id(cell) == "0.1":
            cell.source = sol.source
        if nbs.role(cell) == nbs.ANSWER and nbs.exercise_id(cell) == "0.2":
            cell.source = "def mse(y_pred, y_true):\n    return abs(y_pred - y_true).mean()"
    target = tmp_path / "00_warmup.ipynb"
    nbs.write(student, target)
    before = target.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "nncourse", "check", str(target)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert "without encryption" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
    out = proc.stdout
    assert "Exercise 0.1:  1/1  passed" in out
    assert "Exercise 0.2:  0/1  failed" in out and "mse(y_pred, y_true) is wrong" in out
    assert "Exercise 0.3:  0/2  not attempted" in out
    assert "Total: 1/4 points" in out
    assert target.read_bytes() == before, "check must not modify the student's notebook"


def test_stale_exercise_is_caught(tmp_path):
    sol_dir, ex_dir = tmp_path / "solutions", tmp_path / "exercises"
    sol_dir.mkdir()
    nb = nbs.read(ROOT / "solutions" / "00_warmup.ipynb")
    nbs.write(nb, sol_dir / "00_warmup.ipynb")
    assert release.release(sol_dir, ex_dir) == []
    assert release.release(sol_dir, ex_dir, check=True) == []
    edited = copy.deepcopy(nb)
    edited.cells[0].source += "\n\nA new sentence."
    nbs.write(edited, sol_dir / "00_warmup.ipynb")
    assert release.release(sol_dir, ex_dir, check=True) == [
        f"{ex_dir / '00_warmup.ipynb'} is stale"]
    (ex_dir / "99_orphan.ipynb").write_text("{}")
    (ex_dir / "00_warmup.ipynb").unlink()
    problems = release.release(sol_dir, ex_dir, check=True)
    assert f"{ex_dir / '00_warmup.ipynb'} is missing" in problems
    assert f"{ex_dir / '99_orphan.ipynb'} has no solution notebook" in problems


@pytest.mark.parametrize("path", EXERCISES, ids=ids(EXERCISES))
def test_released_exercise_never_shows_passed(path):
    """Issue 19: no output of a released notebook says an exercise passed (none is stored)."""
    nb = nbs.read(path)
    for i, cell in nbs.iter_code(nb):
        assert cell.outputs == [] and cell.execution_count is None, f"cell {i} has an output"


def _solved_copy(name: str, tmp_path: Path, solve: bool) -> Path:
    solution = nbs.read(ROOT / "solutions" / name)
    student = nbs.read(ROOT / "exercises" / name)
    if solve:
        for cell, sol in zip(student.cells, solution.cells):
            if nbs.role(cell) == nbs.ANSWER:
                cell.source = sol.source
    target = tmp_path / name
    nbs.write(student, target)
    return target


@pytest.mark.parametrize("solve", [True, False], ids=["solved", "unsolved"])
def test_nbval_lax_self_grading(tmp_path, solve):
    """`pytest --nbval-lax` on the warm-up: a solved copy passes; a fresh one fails at exactly
    its check cells, although no check cell stores an output."""
    target = _solved_copy("00_warmup.ipynb", tmp_path, solve)
    nb = nbs.read(target)
    checks = {i for i, cell in nbs.iter_code(nb) if nbs.role(cell) == nbs.CHECK}
    code_index = {i: k for k, (i, _) in enumerate(nbs.iter_code(nb))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--nbval-lax", "-rf", str(target)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    if solve:
        assert proc.returncode == 0, proc.stdout[-3000:]
        return
    assert proc.returncode == 1, proc.stdout[-3000:]
    failed = {int(line.rsplit("Cell ", 1)[1].split()[0])
              for line in proc.stdout.splitlines() if line.startswith("FAILED")}
    assert failed == {code_index[i] for i in checks}, proc.stdout[-3000:]
