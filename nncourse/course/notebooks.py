"""Reading, classifying and executing the course's notebooks.

Shared by the release tool, the student checker, the benchmark, the grader and the tests.

Cell roles are tags: an answer cell is tagged ``answer``, a check cell ``check`` (and
``nbval-check-output`` so nbval compares it even under ``--nbval-lax`` where an output is
stored, i.e. in ``solutions/``; released exercises store none). Both carry
``metadata.nncourse = {"exercise": "1.2"}``; a check cell also ``"points": 2``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if "jsonschema" not in sys.modules:
    # nbformat imports jsonschema, which imports rfc3987_syntax when installed (it comes with
    # JupyterLab's stack) and builds a grammar for "iri" string formats: ~1.5 CPU-seconds of
    # every command that reads a notebook (`check`, `grade`, each grading worker). No notebook
    # schema uses that format, so jsonschema is told the module is absent (its own fallback).
    sys.modules.setdefault("rfc3987_syntax", None)

import nbformat

__all__ = ["ANSWER", "CHECK", "ExerciseCells", "role", "exercise_id", "exercises", "read",
           "write", "kernel_env", "execute", "cell_error", "error_text"]

ANSWER, CHECK = "answer", "check"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def read(path: str | os.PathLike) -> nbformat.NotebookNode:
    """Read a notebook as nbformat 4 (raises on invalid JSON or format)."""
    return nbformat.read(os.fspath(path), as_version=4)


def write(nb: nbformat.NotebookNode, path: str | os.PathLike) -> None:
    """Write a notebook the way the repository stores it (stable JSON, trailing newline)."""
    Path(path).write_text(dumps(nb), encoding="utf-8")


def dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def role(cell) -> str | None:
    """``"answer"``, ``"check"`` or None for an instructor cell."""
    tags = cell.get("metadata", {}).get("tags", [])
    if CHECK in tags:
        return CHECK
    if ANSWER in tags:
        return ANSWER
    return None


def exercise_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nncourse", {}).get("exercise")


@dataclass
class ExerciseCells:
    """One exercise of a notebook: its id, points, answer cell indices and check cell index."""

    id: str
    points: int
    answers: list[int]
    check: int


def exercises(nb) -> list[ExerciseCells]:
    """The notebook's exercises in order, validated (raises ValueError naming the problem)."""
    found: dict[str, ExerciseCells] = {}
    answers: dict[str, list[int]] = {}
    for i, cell in enumerate(nb.cells):
        r = role(cell)
        if r is None:
            continue
        ex = exercise_id(cell)
        if not ex:
            raise ValueError(f"cell {i} is tagged {r!r} but has no metadata.nncourse.exercise")
        if r == ANSWER:
            answers.setdefault(ex, []).append(i)
        else:
            if ex in found:
                raise ValueError(f"exercise {ex} has two check cells ({found[ex].check} and {i})")
            points = cell.metadata["nncourse"].get("points")
            if not isinstance(points, int) or points < 1:
                raise ValueError(f"check cell {i} (exercise {ex}) needs positive integer points")
            if "nbval-check-output" not in cell.metadata.get("tags", []):
                raise ValueError(f"check cell {i} (exercise {ex}) must be tagged "
                                 "nbval-check-output")
            found[ex] = ExerciseCells(ex, points, answers.get(ex, []), i)
    for ex, idx in answers.items():
        if ex not in found:
            raise ValueError(f"exercise {ex} has answer cells {idx} but no check cell")
        if any(i > found[ex].check for i in idx):
            raise ValueError(f"exercise {ex}: answer cells must come before the check cell")
    return list(found.values())


def kernel_env(threads: int = 1) -> dict[str, str]:
    """Environment for executing notebooks reproducibly: no progress bars, fixed threads, and the
    floating-point pin of :mod:`nncourse.fp_pin` (unless ``NNCOURSE_FP_PIN=0``)."""
    from nncourse.fp_pin import pinned_env

    env = pinned_env(dict(os.environ))
    env.update({"NNCOURSE_PROGRESS": "0", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
                "PYDEVD_DISABLE_FILE_VALIDATION": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    env.pop("JPY_PARENT_PID", None)
    return env


def execute(nb, cwd: str | os.PathLike, timeout: int | None = 600, allow_errors: bool = False,
            env: dict | None = None, **client_kwargs):
    """Execute ``nb`` in a fresh ``python3`` kernel (working directory ``cwd``); return it.

    Cells are stored without timing metadata so re-executing an unchanged notebook gives an
    identical file (``record_timing=True`` keeps it, for the benchmark). Google Colab's first
    cell (:mod:`nncourse.course.colab`) is left as it is, unexecuted: it runs only on Colab, and
    the notebook rules want it stored without output or execution count.
    """
    from nbclient import NotebookClient

    from nncourse.course.colab import is_colab_cell

    client_kwargs.setdefault("record_timing", False)
    cells = nb.cells
    nb.cells = [c for c in cells if not is_colab_cell(c)]  # the same cell objects, run in place
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                allow_errors=allow_errors,
                                resources={"metadata": {"path": os.fspath(cwd)}}, **client_kwargs)
        with _isolated_jupyter_dirs():
            client.execute(env=env or kernel_env())
    finally:
        nb.cells = cells
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


class _isolated_jupyter_dirs:
    """Keep kernel runtime files out of the user's home while executing."""

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="nncourse-jupyter-")
        self._old = os.environ.get("JUPYTER_RUNTIME_DIR")
        os.environ["JUPYTER_RUNTIME_DIR"] = self._tmp.name
        return self

    def __exit__(self, *exc):
        if self._old is None:
            os.environ.pop("JUPYTER_RUNTIME_DIR", None)
        else:
            os.environ["JUPYTER_RUNTIME_DIR"] = self._old
        self._tmp.cleanup()


def cell_error(cell) -> dict | None:
    """The cell's error output (``ename``, ``evalue``) if it raised, else None."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return out
    return None


def error_text(err: dict) -> str:
    """``ename: evalue`` without terminal colour codes."""
    return _ANSI.sub("", f"{err.get('ename', 'Error')}: {err.get('evalue', '')}")


def iter_code(nb) -> Iterator[tuple[int, nbformat.NotebookNode]]:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            yield i, cell


# --- building notebooks from Python (for authors who generate a notebook with a script) -------

def md(text: str):
    """A markdown cell (text is dedented and stripped)."""
    from textwrap import dedent

    return nbformat.v4.new_markdown_cell(dedent(text).strip("\n"))


def code(source: str, tags: tuple[str, ...] = (), **metadata):
    """A code cell with optional tags (e.g. ``("nbval-ignore-output",)``)."""
    from textwrap import dedent

    cell = nbformat.v4.new_code_cell(dedent(source).strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    cell.metadata.update(metadata)
    return cell


def answer(source: str, exercise: str):
    """An answer cell of ``exercise``; put the solution between the BEGIN/END SOLUTION markers."""
    return code(source, (ANSWER,), nncourse={"exercise": exercise})


def check(source: str, exercise: str, points: int):
    """The check cell of ``exercise``, worth ``points``."""
    return code(source, (CHECK, "nbval-check-output"),
                nncourse={"exercise": exercise, "points": points})


def new(cells: list) -> nbformat.NotebookNode:
    """A notebook with the course's kernel metadata and stable, readable cell ids."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    counts: dict[str, int] = {}
    for cell in cells:
        r = role(cell)
        if r:
            key = f"{r}-{exercise_id(cell).replace('.', '-')}"
        else:
            key = "md" if cell.cell_type == "markdown" else "code"
        counts[key] = counts.get(key, 0) + 1
        cell["id"] = key if r and counts[key] == 1 else f"{key}-{counts[key]}"
    nb.cells = list(cells)
    nbformat.validate(nb)
    return nb
