"""``python -m nncourse check exercises/NN_name.ipynb``: run a notebook, print a scoreboard.

The notebook is executed on a copy in a fresh kernel (the file is not modified), with errors
allowed so every exercise is tried. Each exercise is *passed* when its check cell ran without
error, *not attempted* when the answer still raises the stub's ``NotImplementedError``, and
*failed* otherwise, with the check's message.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from nncourse.course import notebooks as nbs

__all__ = ["Result", "score", "format_scoreboard", "add_arguments", "run"]

PASSED, FAILED, NOT_ATTEMPTED, NOT_RUN = "passed", "failed", "not attempted", "not run"


@dataclass
class Result:
    exercise: str
    points: int
    earned: int
    status: str
    message: str = ""


def score(executed_nb) -> list[Result]:
    """Score an *executed* notebook from its check cells' execution results."""
    results = []
    for ex in nbs.exercises(executed_nb):
        cell = executed_nb.cells[ex.check]
        err = nbs.cell_error(cell)
        if cell.get("execution_count") is None:
            results.append(Result(ex.id, ex.points, 0, NOT_RUN, "the check cell did not run"))
        elif err is None:
            results.append(Result(ex.id, ex.points, ex.points, PASSED))
        else:
            status = NOT_ATTEMPTED if err.get("ename") == "NotAttempted" else FAILED
            results.append(Result(ex.id, ex.points, 0, status, nbs.error_text(err)))
    return results


def format_scoreboard(results: list[Result], title: str = "") -> str:
    lines = [title] if title else []
    for r in results:
        line = f"  Exercise {r.exercise + ':':<5} {r.earned}/{r.points}  {r.status}"
        if r.message and r.status != PASSED:
            msg = (r.message.split(": ", 1)[-1]
                   if r.message.startswith(("ExerciseError", "NotAttempted")) else r.message)
            line += f"\n      {msg}"
        lines.append(line)
    total = sum(r.earned for r in results)
    possible = sum(r.points for r in results)
    lines.append(f"  Total: {total}/{possible} points"
                 + ("  -- all exercises passed!" if results and total == possible else ""))
    return "\n".join(lines)


def _ipc_kernel_manager():
    """A KernelManager class that talks to its kernel over IPC (Unix sockets), not TCP.

    Over TCP ipykernel warns on every start that the connection is not encrypted ("Kernel is
    running over TCP without encryption"); a local course run has no use for a network port.
    The sockets go to the (temporary, private) Jupyter runtime directory of the run.
    """
    import os
    import tempfile

    from jupyter_client.manager import KernelManager

    class IPCKernelManager(KernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            # nbs.execute points JUPYTER_RUNTIME_DIR at a private temporary directory
            runtime = os.environ.get("JUPYTER_RUNTIME_DIR") or tempfile.gettempdir()
            self.ip = os.path.join(runtime, f"nncourse-kernel-{os.getpid()}")

    return IPCKernelManager


def check_notebook(path: Path, timeout: int = 300, exercise: str | None = None) -> list[Result]:
    """Run a copy of the notebook at ``path`` and score it. With ``exercise`` (``"3.2"``), only
    the cells up to that exercise's check cell run, and only that exercise is scored."""
    nb = nbs.read(path)
    found = nbs.exercises(nb)
    work = copy.deepcopy(nb)
    if exercise is not None:
        ex = next((e for e in found if e.id == exercise), None)
        if ex is None:
            raise ValueError(f"the notebook has no exercise {exercise} (it has "
                             f"{', '.join(e.id for e in found) or 'none'})")
        work.cells = work.cells[:ex.check + 1]
    for cell in work.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbs.execute(work, cwd=path.parent, timeout=timeout, allow_errors=True,
                kernel_manager_class=_ipc_kernel_manager())
    results = score(work)
    return [r for r in results if r.exercise == exercise] if exercise is not None else results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="+", type=Path, help="exercise notebooks to check")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    parser.add_argument("--exercise", default=None, metavar="N.M",
                        help="run the notebook up to exercise N.M's check only; exit 0 when it "
                             "passes, 1 when not (one GitHub Classroom test per exercise)")


def run(args: argparse.Namespace) -> int:
    os.environ["NNCOURSE_PROGRESS"] = "0"  # as when the notebooks were stored (kernel_env too)
    ok = True
    for path in args.notebooks:
        if not path.exists():
            print(f"{path}: no such notebook", file=sys.stderr)
            ok = False
            continue
        try:
            results = check_notebook(path, args.timeout, getattr(args, "exercise", None))
        except Exception as exc:  # unreadable notebook, missing kernel...: say so, go on
            print(f"{path}: could not be checked: {type(exc).__name__}: {exc}", file=sys.stderr)
            ok = False
            continue
        print(format_scoreboard(results, title=f"{path}"))
        ok = ok and all(r.status == PASSED for r in results)
    return 0 if ok else 1
