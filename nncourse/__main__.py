"""Command line: ``python -m nncourse COMMAND ...`` (or ``nncourse COMMAND``).

Each command lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``;
add a command by adding one line to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "check": ("nncourse.course.scoreboard", "run an exercise notebook and print your scoreboard"),
    "release": ("nncourse.course.release", "write exercises/ from solutions/ (instructors)"),
    "bench": ("nncourse.course.bench", "time each chapter notebook"),
    "execute": ("nncourse.course.execute", "run notebooks in place and store outputs (authors)"),
    "grade": ("nncourse.course.grading", "batch-grade a class's exercise notebooks (instructors)"),
    "export": ("nncourse.course.export",
               "write the exercises as an nbgrader course or otter-grader notebooks (instructors)"),
    "site": ("nncourse.course.site", "build the course as a static HTML site (make site)"),
    "tune": ("nncourse.course.tune",
             "a hyperparameter-tuning worker joining a shared Optuna study"),
    "portability": ("nncourse.course.portability",
                    "list checked outputs that change with the CPU's floating-point path "
                    "(authors)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m nncourse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen command's module is imported: some pull in torch or Optuna, which would
    # otherwise cost every command (and every grading or tuning worker) seconds of start-up.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(module=module)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(importlib.import_module(args.module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
