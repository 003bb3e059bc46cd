"""The grader's reports: ``gradebook.csv``, one feedback file per student, ``grades.json``."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import sys
from pathlib import Path

from nncourse.course import notebooks as nbs
from nncourse.course import scoreboard
from nncourse.course.grading.batch import FLAGGED, NOT_GRADED, OK, TIME_PARTS, Grade

__all__ = ["feedback_text", "feedback_names", "csv_cell", "write_reports",
           "format_summary", "printable", "describe_sandbox"]


MAX_NAME = 80  # characters of a feedback file's name taken from the student id


def _safe_name(student: str) -> str:
    """A file name for ``student``: ASCII letters, digits, ``-_.``; at most ~90 characters.

    A name that had to change (or be shortened) gets a short hash of the full student id, so
    ``a b`` and ``a_b`` never share a feedback file.
    """
    text = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_"
                   for ch in student.replace("/", "__")).lstrip(".") or "_"
    if text != student or len(text) > MAX_NAME:
        digest = hashlib.sha256(student.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        text = f"{text[:MAX_NAME]}-{digest}"
    return text


def feedback_names(grades: list[Grade]) -> list[str]:
    """A distinct feedback file name per grade (also distinct ignoring case)."""
    used: set[str] = set()
    names = []
    for i, g in enumerate(grades):
        name = _safe_name(g.student)
        if name.casefold() in used:  # the same student id twice, or a forced clash
            name = f"{name[:MAX_NAME]}-{i}"
        used.add(name.casefold())
        names.append(f"{name}.txt")
    return names


def csv_cell(value):
    """A gradebook cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def feedback_text(g: Grade, title: str) -> str:
    lines = [f"{title} -- feedback for {g.student}", ""]
    if g.status in NOT_GRADED:
        lines += [f"Your notebook could not be graded: {g.reason}",
                  "Score: 0 points. Please contact your instructor."]
        return "\n".join(lines) + "\n"
    possible = sum(e.points for e in g.exercises)
    for e in g.exercises:
        lines.append(f"Exercise {e.exercise}: {e.earned}/{e.points}  {e.status}")
        if e.message and e.status != scoreboard.PASSED:
            msg = e.message
            for prefix in ("ExerciseError: ", "NotAttempted: "):
                msg = msg.replace(prefix, "")
            lines.append(f"    {msg}")
    lines += ["", f"Total: {g.total}/{possible} points"]
    notes = list(g.notes)
    if g.output_truncated:
        notes.append("Some of your cells printed a lot; only the start of their output was kept")
    if g.flags:
        notes.append("Your answers were flagged for your instructor to read")
    if notes:
        lines += ["", "Notes:"] + [f"  - {n}" for n in notes]
    lines += ["", f"Graded file SHA-256: {g.sha256}"]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def write_reports(grades: list[Grade], master, out: Path, title: str,
                  sandbox: dict | None = None) -> dict:
    """Write ``gradebook.csv``, ``feedback/*.txt``, ``grades.json``, ``summary.json``; return
    the summary.

    Each row and each feedback file is written on its own: one that fails (a name the file
    system refuses...) costs that file, and the summary's ``problems`` says which.
    """
    out.mkdir(parents=True, exist_ok=True)
    exercises = nbs.exercises(master)
    possible = sum(e.points for e in exercises)
    problems: list[str] = []
    names = feedback_names(grades)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student", *[f"{e.id} ({e.points})" for e in exercises],
                f"total ({possible})", "status", "reason", "flags", "file", "sha256", "feedback"])
    for g, name in zip(grades, names):
        try:
            earned = {e.exercise: e.earned for e in g.exercises}
            w.writerow([csv_cell(x) for x in (
                g.student, *[earned.get(e.id, 0) for e in exercises], g.total, g.status,
                g.reason, "; ".join(g.flags), g.file, g.sha256, f"feedback/{name}")])
        except Exception as exc:  # noqa: BLE001
            problems.append(f"gradebook row of {g.student!r}: {type(exc).__name__}: {exc}")
            w.writerow([csv_cell(str(g.student)[:200]), *[0] * len(exercises), 0, "error",
                        "the gradebook row could not be written", "", "", "", ""])
    _write(out / "gradebook.csv", buf.getvalue())
    fb = out / "feedback"
    fb.mkdir(exist_ok=True)
    for g, name in zip(grades, names):
        try:
            _write(fb / name, feedback_text(g, title))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"feedback of {g.student!r}: {type(exc).__name__}: {exc}")
    records = []
    for g, name in zip(grades, names):
        try:
            records.append(json.loads(json.dumps(dataclasses.asdict(g) | {
                "total": g.total, "feedback": f"feedback/{name}"}, default=str)))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"record of {g.student!r}: {type(exc).__name__}: {exc}")
    summary = {"students": len(grades),
               "graded": sum(g.status in (OK, FLAGGED) for g in grades),
               "flagged": sum(g.status == FLAGGED for g in grades),
               "not graded": sum(g.status in NOT_GRADED for g in grades),
               "exercises": {}}
    for e in exercises:
        pts = [x.earned for g in grades for x in g.exercises if x.exercise == e.id]
        pts += [0] * sum(g.status in NOT_GRADED for g in grades)
        summary["exercises"][e.id] = {
            "points": e.points, "mean": sum(pts) / len(pts) if pts else 0.0,
            "pass_rate": sum(p == e.points for p in pts) / len(pts) if pts else 0.0}
    totals = [g.total for g in grades]
    summary["mean_total"] = sum(totals) / len(totals) if totals else 0.0
    summary["possible"] = possible
    summary["problems"] = problems
    if sandbox is not None:
        summary["sandbox"] = sandbox
    for name, data in (("grades.json", records), ("summary.json", summary)):
        try:
            _write(out / name, json.dumps(data, indent=1, default=str))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    for p in problems:
        print(f"grade: could not write {p}", file=sys.stderr)
    return summary


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe for a terminal: control characters escaped, at most ``limit`` characters."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe_sandbox(info: dict) -> list[str]:
    """The protections a kernel had, one line each, those not in force first."""
    lines = []
    for key, value in info.items():
        if key == "limits":
            for name, v in value.items():
                lines.append(f"{name}: {v}")
        else:
            lines.append(f"{key}: {value}")
    return sorted(lines, key=lambda ln: "NOT" not in ln)


def format_summary(summary: dict) -> str:
    lines = [f"{summary['students']} submissions: {summary['graded']} graded "
             f"({summary['flagged']} flagged for review), {summary['not graded']} not gradable",
             f"{'exercise':<10}{'points':>7}{'mean':>8}{'passed':>9}"]
    for ex, s in summary["exercises"].items():
        lines.append(f"{ex:<10}{s['points']:>7}{s['mean']:>8.2f}{s['pass_rate']:>9.0%}")
    lines.append(f"{'total':<10}{summary['possible']:>7}{summary['mean_total']:>8.2f}")
    if summary.get("sandbox"):
        lines.append("protections in force for the kernels (see summary.json):")
        lines += [f"  {ln}" for ln in describe_sandbox(summary["sandbox"])]
    if summary.get("problems"):
        lines.append(f"{len(summary['problems'])} report file(s) could not be written (see above)")
    return "\n".join(lines)


def time_breakdown(grades: list[Grade]) -> str:
    """Where a graded notebook's time went: the median seconds of each part over the graded
    notebooks, the rest of the row's time (what no part measures: waiting for the job slot's
    worker to start, the first time), and the kernel's CPU seconds. Empty if nothing ran."""
    from statistics import median

    rows = [g for g in grades if g.timing and g.status not in NOT_GRADED]
    if not rows:
        return ""
    parts = [(label, median(g.timing.get(key, 0.0) for g in rows)) for key, label in TIME_PARTS]
    rest = median(g.seconds - sum(g.timing.get(k, 0.0) for k, _ in TIME_PARTS) for g in rows)
    cpu = median(g.timing.get("kernel_cpu") or 0.0 for g in rows)
    shown = ", ".join(f"{label} {s:.2f}" for label, s in parts if s >= 0.005)
    return (f"median seconds per notebook ({len(rows)} graded): {shown}, other {max(rest, 0):.2f}; "
            f"kernel CPU {cpu:.2f}")
