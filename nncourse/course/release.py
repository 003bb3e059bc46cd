"""Write ``exercises/`` from ``solutions/``: ``python -m nncourse release [--check]``.

For each ``solutions/NN_*.ipynb``:

* in answer cells, every region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes a
  stub that raises ``NotImplementedError`` (keeping the region's indentation), and outputs are
  cleared;
* every code cell is cleared -- check cells included -- so a learner never sees
  ``Exercise N.M passed`` before running their own answer.

Self-grading still works: ``pytest --nbval-lax exercises/NN_x.ipynb`` runs *every* code cell and
fails any cell that raises, whether or not it has a stored output (nbval compares stored outputs
only of executed cells, but it checks every cell for exceptions). A check raises until its answer
is right, so the run fails at exactly the check cells of unsolved exercises and passes when all
are solved. The passing output itself lives in ``solutions/`` (compared by strict nbval there);
``make_exercise`` refuses a solution whose check cells do not store it.

``--check`` writes nothing and fails when ``exercises/`` is not exactly what ``release`` would
write.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

from nncourse.checks import passed_line
from nncourse.course import notebooks as nbs

__all__ = ["stub_source", "make_exercise", "release", "add_arguments", "run"]

_REGION = re.compile(
    r"^(?P<indent>[ \t]*)" + re.escape(nbs.SOLUTION_BEGIN) + r"[^\n]*\n.*?^[ \t]*"
    + re.escape(nbs.SOLUTION_END) + r"[^\n]*(\n|$)", re.S | re.M)


def stub_source(source: str, exercise_id: str) -> str:
    """Replace each solution region of ``source`` with a ``NotImplementedError`` stub."""
    if nbs.SOLUTION_BEGIN not in source:
        raise ValueError(f"answer cell of exercise {exercise_id} has no {nbs.SOLUTION_BEGIN!r}")

    def stub(m: re.Match) -> str:
        ind = m.group("indent")
        return (f"{ind}# YOUR CODE HERE\n"
                f"{ind}raise NotImplementedError(\"Exercise {exercise_id}: replace this line "
                f"with your code\")\n")

    out, n = _REGION.subn(stub, source)
    if nbs.SOLUTION_BEGIN in out or nbs.SOLUTION_END in out:
        raise ValueError(f"answer cell of exercise {exercise_id} has unbalanced solution markers")
    return out.rstrip("\n")


def make_exercise(solution) -> object:
    """The exercise notebook for a solution notebook (a new object; the input is untouched)."""
    nb = copy.deepcopy(solution)
    nbs.exercises(nb)  # validate the structure first
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        r = nbs.role(cell)
        if r == nbs.CHECK:
            ex_id = nbs.exercise_id(cell)
            points = cell.metadata["nncourse"]["points"]
            text = "".join(o.get("text", "") for o in cell.outputs)
            if (nbs.cell_error(cell) is not None or cell.execution_count is None
                    or passed_line(ex_id, points) not in text):
                raise ValueError(f"check cell of exercise {ex_id} must store "
                                 "its passing output: execute the solution notebook first")
        if r == nbs.ANSWER:
            cell.source = stub_source(cell.source, nbs.exercise_id(cell))
        cell.outputs = []
        cell.execution_count = None
    return nb


def exercise_path(solution: Path, exercises_dir: Path) -> Path:
    return exercises_dir / solution.name


def release(solutions_dir: Path, exercises_dir: Path, check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) every exercise; return the problems found."""
    problems = []
    solutions = sorted(solutions_dir.glob("[0-9][0-9]_*.ipynb"))
    if not solutions:
        return [f"no solution notebooks in {solutions_dir}"]
    expected_names = set()
    for sol in solutions:
        target = exercise_path(sol, exercises_dir)
        expected_names.add(target.name)
        try:
            text = nbs.dumps(make_exercise(nbs.read(sol)))
        except ValueError as exc:
            problems.append(f"{sol}: {exc}")
            continue
        if check:
            if not target.exists():
                problems.append(f"{target} is missing")
            elif target.read_text(encoding="utf-8") != text:
                problems.append(f"{target} is stale")
        else:
            exercises_dir.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    if check and exercises_dir.exists():
        for extra in sorted(exercises_dir.glob("*.ipynb")):
            if extra.name not in expected_names:
                problems.append(f"{extra} has no solution notebook")
    return problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--solutions", default="solutions", type=Path, help="source notebooks")
    parser.add_argument("--exercises", default="exercises", type=Path, help="output folder")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail if exercises/ is not up to date")


def run(args: argparse.Namespace) -> int:
    problems = release(args.solutions, args.exercises, check=args.check)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        if args.check:
            print("exercises/ is out of date: run `python -m nncourse release`", file=sys.stderr)
        return 1
    n = len(list(args.solutions.glob("[0-9][0-9]_*.ipynb")))
    print(f"{n} exercise notebook{'s' if n != 1 else ''} "
          f"{'up to date' if args.check else 'written'}"
          f" in {args.exercises}/")
    return 0
