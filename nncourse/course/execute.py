"""``python -m nncourse execute NOTEBOOK ...``: run notebooks in place and store their outputs.

For authors. It executes each notebook top to bottom in a fresh kernel, in the notebook's own
folder, with the environment the tests use (no progress bars, one thread), and writes the outputs
back without timing metadata -- so what is stored is exactly what ``pytest --nbval`` will compare.
After changing a solution, run ``python -m nncourse release`` too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nncourse.course import notebooks as nbs

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.notebooks:
        nb = nbs.read(path)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
                cell.metadata.pop("execution", None)
        try:
            nbs.execute(nb, cwd=path.parent, timeout=args.timeout)
        except Exception as exc:
            print(f"{path}: FAILED, not written: {type(exc).__name__}: {str(exc)[-2000:]}",
                  file=sys.stderr)
            failed += 1
            continue
        nbs.write(nb, path)
        print(f"{path}: executed and written")
    return 1 if failed else 0
