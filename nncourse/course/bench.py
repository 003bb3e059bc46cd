"""``python -m nncourse bench [NOTEBOOK ...]``: time each chapter notebook, top to bottom.

A benchmark, not a test: it prints wall times (kernel start included) and the total, and fails
only when a notebook raises. Defaults to every ``chapters/*.ipynb``. Under each notebook it lists
its slowest cells (``--cells N``, from the times nbclient records), so a chapter's cost is visible
where it is spent.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from nncourse.course import notebooks as nbs

__all__ = ["bench", "add_arguments", "run"]


def cell_times(nb) -> list[tuple[int, float, str]]:
    """``(cell index, seconds, first line)`` of each executed code cell, slowest first."""
    out = []
    for i, cell in enumerate(nb.cells):
        t = cell.get("metadata", {}).get("execution", {})
        start, end = t.get("iopub.execute_input"), t.get("shell.execute_reply")
        if cell.cell_type != "code" or not (start and end):
            continue
        seconds = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                   - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
        first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
        out.append((i, seconds, first))
    return sorted(out, key=lambda r: -r[1])


def bench(paths: list[Path], timeout: int = 600, cells: int = 3) -> list[tuple[Path, float, str]]:
    rows = []
    for path in paths:
        nb = nbs.read(path)
        start = time.perf_counter()
        status = "ok"
        try:
            nbs.execute(nb, cwd=path.parent, timeout=timeout, record_timing=True)
        except Exception as exc:  # report and go on: one broken notebook must not hide the rest
            status = f"ERROR {type(exc).__name__}"
        rows.append((path, time.perf_counter() - start, status))
        print(f"{path.as_posix():<55} {rows[-1][1]:7.1f} s  {status}", flush=True)
        for i, seconds, first in cell_times(nb)[:cells]:
            print(f"    cell [{i:>2}] {seconds:6.1f} s  {first[:60]}", flush=True)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to time (default: chapters/*.ipynb)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--cells", type=int, default=3,
                        help="slowest cells listed under each notebook (0: none)")


def run(args: argparse.Namespace) -> int:
    paths = args.notebooks or sorted(Path("chapters").glob("*.ipynb"))
    if not paths:
        print("no notebooks to time", file=sys.stderr)
        return 1
    print(f"{'notebook':<55} {'time':>9}")
    rows = bench(paths, args.timeout, args.cells)
    total = sum(t for _, t, _ in rows)
    print(f"{'total':<55} {total:7.1f} s")
    return 0 if all(s == "ok" for *_, s in rows) else 1
