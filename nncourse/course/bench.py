"""``python -m nncourse bench [NOTEBOOK ...]``: time each chapter notebook, top to bottom.

A benchmark, not a test: it prints wall times (kernel start included) and the total, and fails
only when a notebook raises. Defaults to every ``chapters/*.ipynb``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nncourse.course import notebooks as nbs

__all__ = ["bench", "add_arguments", "run"]


def bench(paths: list[Path], timeout: int = 600) -> list[tuple[Path, float, str]]:
    rows = []
    for path in paths:
        nb = nbs.read(path)
        start = time.perf_counter()
        status = "ok"
        try:
            nbs.execute(nb, cwd=path.parent, timeout=timeout)
        except Exception as exc:  # report and go on: one broken notebook must not hide the rest
            status = f"ERROR {type(exc).__name__}"
        rows.append((path, time.perf_counter() - start, status))
        print(f"{path.as_posix():<55} {rows[-1][1]:7.1f} s  {status}", flush=True)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to time (default: chapters/*.ipynb)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")


def run(args: argparse.Namespace) -> int:
    paths = args.notebooks or sorted(Path("chapters").glob("*.ipynb"))
    if not paths:
        print("no notebooks to time", file=sys.stderr)
        return 1
    print(f"{'notebook':<55} {'time':>9}")
    rows = bench(paths, args.timeout)
    total = sum(t for _, t, _ in rows)
    print(f"{'total':<55} {total:7.1f} s")
    return 0 if all(s == "ok" for *_, s in rows) else 1
