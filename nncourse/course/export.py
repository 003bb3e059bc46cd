"""``python -m nncourse export --to nbgrader|otter [SOURCE_DIR]``: the exercises for other graders.

For instructors who already grade with nbgrader or otter-grader (the guide is
``docs/grading.md``, "Grading with nbgrader or otter-grader"). ``SOURCE_DIR`` is the folder of
master notebooks, ``solutions/`` by default; each ``NN_*.ipynb`` there becomes one assignment.
Our exercise format maps onto both tools one to one: an answer cell holds the solution between
``### BEGIN SOLUTION`` and ``### END SOLUTION``, and a check cell is one call such as
``check.ex3_2_xavier_uniform(xavier_uniform_)`` that prints ``Exercise 3.2 passed (2 points)``
or raises.

``--to nbgrader`` writes an nbgrader course folder::

    OUT/nbgrader_config.py                     # timeout per cell, the course's root
    OUT/source/03_weight_initialization/03_weight_initialization.ipynb

in which answer cells are nbgrader ``solution`` cells, check cells ``grade`` + ``locked`` cells
worth the exercise's points, every other cell ``locked`` (read-only; nbgrader restores it when
grading), all with ``schema_version 3`` and the cell id as ``grade_id``. Then, in ``OUT``::

    nbgrader generate_assignment 03_weight_initialization
    nbgrader autograde 03_weight_initialization

``--to otter`` writes one otter-assign master notebook per assignment::

    OUT/03_weight_initialization/03_weight_initialization.ipynb

with an ``ASSIGNMENT CONFIG`` cell, one question per exercise (its points, the answer cells as
the solution with ``# BEGIN SOLUTION`` / ``# END SOLUTION`` markers) and the check call as the
question's test (an exception-based test: it passes when the check does not raise). Then::

    otter assign 03_weight_initialization/03_weight_initialization.ipynb dist/

The Colab set-up cell (:func:`nncourse.course.colab.is_colab_cell`) is left out of both: the
students of an nbgrader or otter course run in an environment with nncourse installed, and the
cell does nothing anywhere but on Colab. Outputs are cleared (both tools clear them anyway).
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
from pathlib import Path

import nbformat

from nncourse.course import notebooks as nbs
from nncourse.course.colab import is_colab_cell

__all__ = ["to_nbgrader", "to_otter", "export", "add_arguments", "run", "FORMATS"]

FORMATS = ("nbgrader", "otter")
NBGRADER_SCHEMA = 3

NBGRADER_CONFIG = '''\
# nbgrader's configuration for the course exported by `python -m nncourse export --to nbgrader`.
c = get_config()  # noqa: F821 - nbgrader defines it
c.CourseDirectory.root = "."
# A check that re-runs a small experiment takes seconds; importing torch in a fresh kernel, more
# on a loaded machine. nbgrader's default is 30 s per cell.
c.Execute.timeout = 300
'''


def _masters(source: Path, exercise: str | None) -> list[Path]:
    if not source.is_dir():
        raise ValueError(f"{source} is not a folder (expected the master notebooks, e.g. "
                         "solutions/)")
    if exercise is not None and not str(exercise).isdigit():
        raise ValueError(f"--exercise must be a chapter number such as 03, got {exercise!r}")
    pattern = f"{int(exercise):02d}_*.ipynb" if exercise is not None else "[0-9][0-9]_*.ipynb"
    found = sorted(source.glob(pattern))
    if not found:
        raise ValueError(f"no master notebooks {pattern} in {source}")
    return found


def _clean(master) -> object:
    """A copy of ``master`` without the Colab cell, without outputs; validated."""
    nb = copy.deepcopy(master)
    nb.cells = [c for c in nb.cells if not is_colab_cell(c)]
    nbs.exercises(nb)  # raises ValueError naming the problem
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def _points(cell) -> int:
    return int(cell.metadata["nncourse"]["points"])


def to_nbgrader(master) -> object:
    """An nbgrader source notebook for the master ``master`` (a new object)."""
    nb = _clean(master)
    for i, cell in enumerate(nb.cells):
        r = nbs.role(cell)
        meta = {"grade": r == nbs.CHECK, "grade_id": cell.get("id") or f"cell-{i}",
                "locked": r != nbs.ANSWER, "schema_version": NBGRADER_SCHEMA,
                "solution": r == nbs.ANSWER, "task": False}
        if r == nbs.CHECK:
            meta["points"] = _points(cell)
        cell.metadata["nbgrader"] = meta
    return nb


# --- otter-grader ------------------------------------------------------------------------------

_MARKER = re.compile(r"^([ \t]*)###[ \t]*(BEGIN|END) SOLUTION\b.*$", re.M)


def _raw(text: str):
    return nbformat.v4.new_raw_cell(text)


def _question_name(exercise_id: str) -> str:
    return "ex" + exercise_id.replace(".", "_")


def to_otter(master, name: str) -> object:
    """An otter-assign master notebook for ``master``: one question per exercise."""
    nb = _clean(master)
    ex_by_cell = {}
    for ex in nbs.exercises(nb):
        if ex.answers != list(range(ex.check - len(ex.answers), ex.check)):
            raise ValueError(f"exercise {ex.id}: for otter, its answer cells must come right "
                             "before its check cell, with no other cell between them")
        for i in ex.answers:
            ex_by_cell[i] = ex
        ex_by_cell[ex.check] = ex
    config = ("# ASSIGNMENT CONFIG\n"
              f"name: {name}\n"
              "solutions_pdf: false\n"
              "export_cell: false\n"
              "check_all_cell: false\n"
              "generate: true\n"
              "tests:\n"
              "    ok_format: false\n")
    cells = [_raw(config)]
    open_q = None
    for i, cell in enumerate(nb.cells):
        ex = ex_by_cell.get(i)
        if ex is None:
            cells.append(cell)
            continue
        if open_q != ex.id:
            cells.append(_raw(f"# BEGIN QUESTION\nname: {_question_name(ex.id)}\n"
                              f"points: {ex.points}"))
            open_q = ex.id
        if i in ex.answers:
            if i == ex.answers[0]:
                cells.append(_raw("# BEGIN SOLUTION"))
            cell.source = _MARKER.sub(lambda m: f"{m.group(1)}# {m.group(2)} SOLUTION",
                                      cell.source)
            cells.append(cell)
            if i == ex.answers[-1]:
                cells.append(_raw("# END SOLUTION"))
        else:  # the check cell: the question's one test, passing when the check does not raise
            call, names = cell.source.strip(), _names(cell.source)
            fn = f"test_{_question_name(ex.id)}"
            test = nbformat.v4.new_code_cell(
                f'""" # BEGIN TEST CONFIG\npoints: {ex.points}\n"""  # END TEST CONFIG\n'
                f"def {fn}({names}):\n"
                f"    {call}\n\n"
                f"{fn}({names})")
            cells += [_raw("# BEGIN TESTS"), test, _raw("# END TESTS"), _raw("# END QUESTION")]
            open_q = None
    nb.cells = cells
    for cell in nb.cells:  # otter assign writes its own ids; ours would collide with its copies
        cell.pop("id", None)
    nb.nbformat_minor = 4
    return nb


def _names(call: str) -> str:
    """The global names a check call uses, as the test function's parameters (otter passes
    each parameter the student's global of that name)."""
    import ast

    tree = ast.parse(call)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in names:
            names.append(node.id)
    return ", ".join(names)


def export(to: str, source: Path, out: Path, exercise: str | None = None) -> list[Path]:
    """Write the export; return the notebooks written."""
    if to not in FORMATS:
        raise ValueError(f"--to must be one of {', '.join(FORMATS)}, got {to!r}")
    masters = _masters(source, exercise)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for path in masters:
        name = path.stem
        master = nbs.read(path)
        try:
            nb = to_nbgrader(master) if to == "nbgrader" else to_otter(master, name)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        folder = out / ("source" if to == "nbgrader" else "") / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        target = folder / path.name
        nbs.write(nb, target)
        written.append(target)
    if to == "nbgrader":
        (out / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", default=Path("solutions"), type=Path,
                        help="folder of master notebooks NN_*.ipynb (default: solutions)")
    parser.add_argument("--to", required=True, choices=FORMATS, help="the grading tool")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: export-nbgrader or export-otter)")
    parser.add_argument("--exercise", default=None,
                        help="only this chapter number (e.g. 03); default: every notebook")


def run(args: argparse.Namespace) -> int:
    out = args.out or Path(f"export-{args.to}")
    try:
        written = export(args.to, args.source, out, args.exercise)
    except ValueError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    for p in written:
        print(p)
    if args.to == "nbgrader":
        names = " ".join(p.parent.name for p in written[:1])
        print(f"\n{len(written)} nbgrader assignment(s) in {out}/source/. Next, in {out}/:\n"
              f"  nbgrader generate_assignment {names}")
    else:
        print(f"\n{len(written)} otter master notebook(s) in {out}/. Next:\n"
              f"  otter assign {written[0]} dist/")
    return 0

