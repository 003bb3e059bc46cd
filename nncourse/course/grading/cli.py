"""``python -m nncourse grade SUBMISSIONS_DIR --exercise NN``: the instructor's command.

``--shard K/N`` grades one shard of the class; ``grade merge PART ... --exercise NN --out DIR``
combines the parts (:mod:`nncourse.course.grading.shards`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from nncourse.course import notebooks as nbs
from nncourse.course.grading import classroom, shards
from nncourse.course.grading.batch import (
    OK,
    PACKAGE_ROOT,
    Grade,
    Limits,
    find_master,
    find_submissions,
    grade_batch,
)
from nncourse.course.grading.reports import format_summary, printable, time_breakdown, write_reports

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Limits()
    parser.add_argument("submissions", type=Path, help="folder of submitted notebooks "
                        "(NAME.ipynb, or NAME/NN_x.ipynb per student); or `merge` followed by "
                        "the folders that grade --shard wrote")
    parser.add_argument("parts", type=Path, nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--exercise", default=None, help="chapter number: 03 grades against "
                        "solutions/03_*.ipynb")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded in parallel")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for gradebook.csv, feedback/ and grades.json "
                             "(default: grades-NN)")
    parser.add_argument("--solutions", type=Path, default=None,
                        help="folder of master notebooks (default: ./solutions, else the "
                             "solutions/ of the checkout nncourse is installed from)")
    parser.add_argument("--cell-timeout", type=int, default=d.cell_timeout,
                        help=f"seconds per cell (default {d.cell_timeout})")
    parser.add_argument("--notebook-timeout", type=int, default=d.notebook_timeout,
                        help=f"seconds per notebook, all runs together (default "
                             f"{d.notebook_timeout}); also its CPU-time limit")
    parser.add_argument("--memory-mb", type=int, default=d.memory // 2**20,
                        help=f"address-space limit of a kernel (default {d.memory // 2**20})")
    parser.add_argument("--no-preflight", action="store_true",
                        help="skip grading the master first (it must score full marks)")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="grade only shard K of N (by a hash of each student id); merge the "
                             "parts with: grade merge PART... --exercise NN --out DIR")
    parser.add_argument("--pattern", default=None, metavar="GLOB",
                        help="each top-level folder is one student (a GitHub Classroom clone); "
                             "grade its one file matching GLOB, e.g. 'exercises/NN_*.ipynb' "
                             "(NN: the --exercise number)")
    parser.add_argument("--gradescope", type=Path, default=None, metavar="FILE",
                        help="also write the one submission's result as Gradescope's "
                             "results.json to FILE")


def default_solutions() -> Path:
    """``./solutions`` if there is one, else the solutions/ beside an editable nncourse."""
    for folder in (Path("solutions"), PACKAGE_ROOT / "solutions"):
        if folder.is_dir():
            return folder
    raise ValueError("no solutions/ folder here: pass --solutions DIR (the master notebooks)")


def merge_parts(args: argparse.Namespace) -> int:
    """``grade merge PART ... --exercise NN --out DIR``."""
    try:
        master_path = find_master(args.exercise, args.solutions or default_solutions())
        info, grades = shards.merge(args.parts)
        if info["exercise"] != f"{int(args.exercise):02d}" or \
                shards.master_digest(master_path) != info["master_sha256"]:
            raise ValueError(f"the parts were graded against {info['master']}, not this "
                             f"{master_path.name}")
    except ValueError as exc:
        print(f"grade merge: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(f"grades-{int(args.exercise):02d}")
    master = nbs.read(master_path)
    sandbox = next((g.sandbox for g in grades if g.sandbox), {})
    summary = write_reports(grades, master, out, title=f"{master_path.stem}", sandbox=sandbox)
    print(format_summary(summary))
    print(f"\nmerged {info['shards']} shard(s), {len(grades)} rows")
    print(f"gradebook: {out / 'gradebook.csv'}   feedback: {out / 'feedback'}/")
    return 0


def run(args: argparse.Namespace) -> int:
    # No progress bars from the checks' experiments, which run in this (trusted) process: a
    # gradebook run's output is a log (the kernels' allow-listed environment says the same).
    os.environ["NNCOURSE_PROGRESS"] = "0"
    if args.exercise is None:
        print("grade: --exercise NN is required (the chapter number)", file=sys.stderr)
        return 2
    if str(args.submissions) == "merge" and not args.submissions.is_dir():
        return merge_parts(args)
    if args.parts:
        print(f"grade: one submissions folder, got {len(args.parts) + 1} (to combine shards: "
              "grade merge PART...)", file=sys.stderr)
        return 2
    try:
        shard = shards.parse_shard(args.shard) if args.shard else None
        master_path = find_master(args.exercise, args.solutions or default_solutions())
        limits = Limits(cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                        memory=args.memory_mb * 2**20)
        if args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
        if not args.submissions.is_dir():
            raise ValueError(f"{args.submissions} is not a folder")
    except ValueError as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(f"grades-{int(args.exercise):02d}")
    sub = args.submissions.resolve()
    if out.resolve() == sub or sub in out.resolve().parents:
        print("grade: --out must not be inside the submissions folder", file=sys.stderr)
        return 2
    try:
        if getattr(args, "pattern", None):
            pattern = classroom.expand_pattern(args.pattern, args.exercise)
            submissions = classroom.find_by_pattern(args.submissions, pattern)
        else:
            submissions = find_submissions(args.submissions, master_path)
    except ValueError as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    if not submissions:
        print(f"grade: no .ipynb files in {args.submissions}", file=sys.stderr)
        return 2
    to_grade = [e for e in submissions if e.status is None]
    if getattr(args, "gradescope", None) and len(to_grade) != 1:
        print(f"grade: --gradescope writes one submission's results, but {len(to_grade)} "
              f"notebooks to grade were found in {args.submissions}", file=sys.stderr)
        return 2
    everyone = submissions
    if shard:
        submissions = shards.select(everyone, *shard)
        print(f"shard {shard[0]}/{shard[1]}: {len(submissions)} of {len(everyone)} entries",
              flush=True)
    master = nbs.read(master_path)
    out.mkdir(parents=True, exist_ok=True)  # exists now, so kernels cannot see it
    hide = [master_path.parent.resolve(), PACKAGE_ROOT / "solutions", PACKAGE_ROOT / ".git", sub,
            out.resolve()]
    if os.geteuid() != 0:
        print("grade: not running as root -- kernels run as your user id, without a process "
              "limit; bubblewrap, when installed, provides the rest (see the protections listed "
              "at the end and docs/grading.md)", file=sys.stderr)
    limits_text = (f"{limits.cell_timeout} s/cell, {limits.notebook_timeout} s/notebook, "
                   f"{limits.memory // 2**20} MB")
    withhold = True
    if not args.no_preflight:
        print(f"preflight: grading the master {master_path.name} ({limits_text}) ...", flush=True)
        [g] = grade_batch([("master", master_path)], master_path, 1, limits, hide)
        full = sum(e.points for e in nbs.exercises(master))
        if g.total != full and "withheld from the kernel" in g.sandbox.get("references", ""):
            # the master's answers (or the notebook's own cells) call library code that needs
            # a withheld reference: grade with the whole package, and say so
            print("preflight: the master loses points without the reference implementations "
                  "(its answers use library code that needs them); grading with them, so "
                  "answers that call them are only flagged", flush=True)
            withhold = False
            [g] = grade_batch([("master", master_path)], master_path, 1, limits, hide,
                              withhold=False)
        if g.status != OK or g.total != sum(e.points for e in nbs.exercises(master)):
            detail = g.reason or "; ".join(f"{e.exercise}: {e.status} {e.message}"
                                           for e in g.exercises if e.earned < e.points)
            print(f"grade: the master does not score full marks in the sandbox, so no student "
                  f"could: {detail}", file=sys.stderr)
            return 1
        print(f"preflight: master scores {g.total}/{g.total} in {g.seconds:.0f} s; sandbox: "
              f"{json.dumps(g.sandbox)}", flush=True)

    def progress(n, total, g: Grade):
        possible = sum(e.points for e in g.exercises)
        what = f"{g.total}/{possible}" if g.exercises else "-"
        extra = f" -- {g.reason}" if g.reason else (f" -- {len(g.flags)} flag(s)" if g.flags
                                                    else "")
        print(printable(f"[{n}/{total}] {g.student}: {what} {g.status} ({g.seconds:.0f} s)"
                        f"{extra}", 400), flush=True)

    t0 = time.monotonic()
    grades = grade_batch(submissions, master_path, args.jobs, limits, hide, progress,
                         base=args.submissions, withhold=withhold)
    elapsed = time.monotonic() - t0
    sandbox = next((g.sandbox for g in grades if g.sandbox), {})
    summary = write_reports(grades, master, out, title=f"{master_path.stem}", sandbox=sandbox)
    if getattr(args, "gradescope", None):
        try:
            print(f"Gradescope results: {classroom.write_gradescope(grades, args.gradescope)}")
        except (ValueError, OSError) as exc:
            print(f"grade: {exc}", file=sys.stderr)
            return 2
    if shard:
        (out / shards.SHARD_FILE).write_text(json.dumps(shards.shard_record(
            *shard, args.exercise, master_path, submissions, everyone), indent=1))
    print()
    print(format_summary(summary))
    print(f"\n{len(grades)} notebooks in {elapsed:.0f} s with --jobs {args.jobs} "
          f"({len(grades) / max(elapsed, 1e-9) * 60:.1f} per minute)")
    if breakdown := time_breakdown(grades):
        print(breakdown)
    print(f"gradebook: {out / 'gradebook.csv'}   feedback: {out / 'feedback'}/")
    return 0
