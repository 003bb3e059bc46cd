"""The grader's reports: ``gradebook.csv``, one feedback file per student, ``grades.json``."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from nncourse import notebooks as nbs
from nncourse import scoreboard
from nncourse.course.grading.batch import ERROR, FLAGGED, OK, UNREADABLE, Grade

__all__ = ["feedback_text", "write_reports", "format_summary"]


def _safe_name(student: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in student.replace("/", "__"))


def feedback_text(g: Grade, title: str) -> str:
    lines = [f"{title} -- feedback for {g.student}", ""]
    if g.status in (UNREADABLE, ERROR):
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


def write_reports(grades: list[Grade], master, out: Path, title: str) -> dict:
    """Write ``gradebook.csv``, ``feedback/*.txt`` and ``grades.json``; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    exercises = nbs.exercises(master)
    possible = sum(e.points for e in exercises)
    with open(out / "gradebook.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *[f"{e.id} ({e.points})" for e in exercises],
                    f"total ({possible})", "status", "reason", "flags", "file", "sha256"])
        for g in grades:
            earned = {e.exercise: e.earned for e in g.exercises}
            w.writerow([g.student, *[earned.get(e.id, 0) for e in exercises], g.total, g.status,
                        g.reason, "; ".join(g.flags), g.file, g.sha256])
    fb = out / "feedback"
    fb.mkdir(exist_ok=True)
    for g in grades:
        (fb / f"{_safe_name(g.student)}.txt").write_text(feedback_text(g, title), "utf-8")
    (out / "grades.json").write_text(json.dumps([dataclasses.asdict(g) | {"total": g.total}
                                                 for g in grades], indent=1), "utf-8")
    summary = {"students": len(grades),
               "graded": sum(g.status in (OK, FLAGGED) for g in grades),
               "flagged": sum(g.status == FLAGGED for g in grades),
               "not graded": sum(g.status in (UNREADABLE, ERROR) for g in grades),
               "exercises": {}}
    for e in exercises:
        pts = [x.earned for g in grades for x in g.exercises if x.exercise == e.id]
        pts += [0] * sum(g.status in (UNREADABLE, ERROR) for g in grades)
        summary["exercises"][e.id] = {
            "points": e.points, "mean": sum(pts) / len(pts) if pts else 0.0,
            "pass_rate": sum(p == e.points for p in pts) / len(pts) if pts else 0.0}
    totals = [g.total for g in grades]
    summary["mean_total"] = sum(totals) / len(totals) if totals else 0.0
    summary["possible"] = possible
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{summary['students']} submissions: {summary['graded']} graded "
             f"({summary['flagged']} flagged for review), {summary['not graded']} not gradable",
             f"{'exercise':<10}{'points':>7}{'mean':>8}{'passed':>9}"]
    for ex, s in summary["exercises"].items():
        lines.append(f"{ex:<10}{s['points']:>7}{s['mean']:>8.2f}{s['pass_rate']:>9.0%}")
    lines.append(f"{'total':<10}{summary['possible']:>7}{summary['mean_total']:>8.2f}")
    return "\n".join(lines)
