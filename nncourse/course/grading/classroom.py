"""GitHub Classroom and Gradescope: submissions found by a pattern, results in Gradescope's format.

``grade SUBMISSIONS --pattern 'exercises/NN_*.ipynb'``: every top-level folder of
``SUBMISSIONS`` is one student (a clone of their Classroom repository, ``nncourse-alice``), and
only the files matching the pattern inside it are graded. A whole clone holds many notebooks
(``chapters/``, ``exercises/``, ``solutions/`` of the template...): without a pattern each of
them would become a "student" of its own. ``NN`` in the pattern stands for the chapter number of
``--exercise`` (``exercises/NN_*.ipynb`` with ``--exercise 3`` is ``exercises/03_*.ipynb``).

``grade ... --gradescope results.json`` writes the one graded submission's result in the format
Gradescope's autograder reads from ``/autograder/results/results.json``: a total ``score`` and one
test per exercise with its ``score``, ``max_score`` and the check's message as ``output``.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from nncourse.course.grading.batch import DUPLICATE, NOT_GRADED, SKIPPED, Entry, Grade, top_level

__all__ = ["expand_pattern", "find_by_pattern", "gradescope_results", "write_gradescope"]


def expand_pattern(pattern: str, exercise: str | None) -> str:
    """``pattern`` with ``NN`` replaced by the two-digit chapter number; validated."""
    if exercise is not None and str(exercise).isdigit():
        pattern = pattern.replace("NN", f"{int(exercise):02d}")
    p = PurePosixPath(pattern)
    if not pattern or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"--pattern must be a relative path inside each student's folder, such "
                         f"as exercises/NN_*.ipynb, got {pattern!r}")
    if not pattern.endswith(".ipynb"):
        raise ValueError(f"--pattern must match notebooks (end in .ipynb), got {pattern!r}")
    return pattern


def _matches(folder: Path, pattern: str) -> list[Path]:
    """The files under ``folder`` matching ``pattern``, never through a symbolic link to a
    folder, never a hidden entry."""
    found = []
    for path in sorted(folder.glob(pattern)):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        # glob follows links to folders: refuse any match whose parent path holds a link
        parents = [folder.joinpath(*rel.parts[:i]) for i in range(1, len(rel.parts))]
        if any(p.is_symlink() for p in parents):
            continue
        found.append(path)
    return found


def find_by_pattern(folder: Path, pattern: str) -> list[Entry]:
    """One :class:`Entry` per top-level folder of ``folder``: its one notebook matching
    ``pattern``, named after the folder; or why it is not graded (no match, several matches,
    not a folder)."""
    out: list[Entry] = []
    for e in top_level(folder):
        path = Path(e.path)
        if e.is_symlink() or not e.is_dir(follow_symlinks=False):
            out.append(Entry(e.name, path, SKIPPED, "with --pattern, each student is a folder "
                             "(a clone of their repository); this is not a folder of its own"))
            continue
        found = _matches(path, pattern)
        if not found:
            out.append(Entry(e.name, path, SKIPPED, f"no file matches {pattern} in this folder"))
        elif len(found) > 1:
            names = ", ".join(p.relative_to(path).as_posix() for p in found)
            out.append(Entry(e.name, path, DUPLICATE, f"{len(found)} files match {pattern} "
                             f"({names}); none was graded: narrow the pattern"))
        else:
            out.append(Entry(e.name, found[0]))
    return out


def gradescope_results(g: Grade) -> dict:
    """One submission's grade as Gradescope's ``results.json``."""
    tests = []
    for e in g.exercises:
        tests.append({"name": f"Exercise {e.exercise}", "number": e.exercise,
                      "score": e.earned, "max_score": e.points,
                      "status": "passed" if e.earned == e.points else "failed",
                      "output": e.message or e.status, "visibility": "visible"})
    lines = []
    if g.status in NOT_GRADED:
        lines.append(f"Not graded ({g.status}): {g.reason}")
    lines += [f"Note: {n}" for n in g.notes]
    if g.flags:
        lines.append("Your answers were flagged for your instructor to read.")
    result = {"score": g.total, "tests": tests, "output": "\n".join(lines),
              "visibility": "visible", "stdout_visibility": "hidden"}
    if not tests:  # nothing graded: Gradescope needs a score and shows the output
        result["score"] = 0
    return result


def write_gradescope(grades: list[Grade], path: Path) -> Path:
    """Write ``results.json`` for the one submission in ``grades`` (Gradescope grades one at a
    time); raises ValueError when there is not exactly one."""
    graded = [g for g in grades if g.status != SKIPPED] or grades
    if len(graded) != 1:
        raise ValueError(f"--gradescope writes one submission's results, but {len(graded)} "
                         "entries were found: grade Gradescope's /autograder/submission folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gradescope_results(graded[0]), indent=1) + "\n", encoding="utf-8")
    return path
