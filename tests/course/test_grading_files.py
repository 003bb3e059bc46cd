"""No file in the submissions folder can stop the batch, and every entry gets a row saying why.

Each test builds a small, hostile submissions folder and grades it. None of these files gets as
far as a kernel, so the whole module runs in seconds; the adversarial class in
``test_grading_batch.py`` runs the same kinds of files through the full command.
"""

import csv
import json
import os
import time
from pathlib import Path

import pytest

from nncourse.course import notebooks as nbs
from nncourse.course.grading import batch, reports
from nncourse.course.grading import rebuild as rb
from nncourse.course.grading.batch import (
    DUPLICATE,
    SKIPPED,
    UNREADABLE,
    ExerciseGrade,
    Grade,
    find_submissions,
    grade_batch,
    read_submission,
)
from tests.course.grading_helpers import SOLUTION

CORRUPT = b'{"cells": ['


def _hostile_folder(base: Path) -> Path:
    subs = base / "subs"
    subs.mkdir()
    os.mkfifo(subs / "fifo.ipynb")                      # reading it would block forever
    with open(subs / "huge.ipynb", "wb") as f:          # 30 GB, sparse: costs no disk
        f.truncate(30 * 2**30)
    (subs / "empty").mkdir()                            # a student folder without a notebook
    (subs / "elsewhere").mkdir()
    (subs / "elsewhere" / "x.txt").write_text("x")
    os.symlink(subs / "elsewhere", subs / "linked")     # a symlinked folder
    (subs / "notes.txt").write_text("not a notebook")
    (subs / "bob.ipynb").write_bytes(CORRUPT)           # two files claim student bob
    (subs / "bob").mkdir()
    (subs / "bob" / SOLUTION.name).write_bytes(CORRUPT)
    deep = subs / "/".join(["n" * 200] * 6)             # nested names far past NAME_MAX together
    deep.mkdir(parents=True)
    (deep / ("q" * 240 + ".ipynb")).write_bytes(CORRUPT)
    for name in ("a b.ipynb", "a_b.ipynb", "=2+3.ipynb", "@SUM(A1).ipynb", "-cmd.ipynb"):
        (subs / name).write_bytes(CORRUPT)
    return subs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    subs = _hostile_folder(base)
    entries = find_submissions(subs, SOLUTION)
    t0 = time.monotonic()
    grades = grade_batch(entries, SOLUTION, jobs=2, base=subs)
    seconds = time.monotonic() - t0
    out = base / "out"
    summary = reports.write_reports(grades, nbs.read(SOLUTION), out, "00_warmup")
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"subs": subs, "entries": entries, "grades": grades, "rows": rows, "out": out,
            "summary": summary, "seconds": seconds}


def _row(hostile, file):
    matches = [r for r in hostile["rows"] if r["file"] == reports.csv_cell(file)]
    assert len(matches) == 1, (file, [r["file"] for r in hostile["rows"]])
    return matches[0]


def test_every_entry_gets_a_row_and_nothing_hangs_the_batch(hostile):
    files = {r["file"] for r in hostile["rows"]}
    for expected in ("fifo.ipynb", "huge.ipynb", "empty", "linked", "notes.txt", "bob.ipynb",
                     f"bob/{SOLUTION.name}", "a b.ipynb", "a_b.ipynb", "=2+3.ipynb"):
        assert reports.csv_cell(expected) in files, (expected, sorted(files))
    assert len(hostile["rows"]) == len(hostile["entries"]) == len(hostile["grades"])
    # the FIFO did not block, the 30 GB file was not read: each row took no time of its own
    # (the batch's wall time depends on the machine's load: the notebooks in it are graded)
    special = [g for g in hostile["grades"] if g.file in ("fifo.ipynb", "huge.ipynb")]
    assert len(special) == 2 and all(g.seconds < 5 for g in special), special
    assert hostile["seconds"] < 600, "the batch blocked on a special file (a liveness bound)"
    assert hostile["summary"]["problems"] == []


def test_special_and_oversized_files_are_unreadable_with_the_reason(hostile):
    assert _row(hostile, "fifo.ipynb")["status"] == UNREADABLE
    assert "named pipe" in _row(hostile, "fifo.ipynb")["reason"]
    huge = _row(hostile, "huge.ipynb")
    assert huge["status"] == UNREADABLE and "30720 MB" in huge["reason"] and huge["sha256"] == ""
    assert "symbolic link to a folder" in _row(hostile, "linked")["reason"]


def test_empty_folders_and_non_notebooks_are_listed_as_skipped(hostile):
    assert _row(hostile, "empty")["status"] == SKIPPED
    assert "holds no notebook" in _row(hostile, "empty")["reason"]
    assert _row(hostile, "notes.txt")["status"] == SKIPPED


def test_a_student_id_claimed_twice_is_refused_for_both(hostile):
    for file in ("bob.ipynb", f"bob/{SOLUTION.name}"):
        row = _row(hostile, file)
        assert row["student"] == "bob" and row["status"] == DUPLICATE
        assert "2 files claim student 'bob'" in row["reason"] and "none was graded" in row["reason"]


def test_feedback_files_are_distinct_and_bounded(hostile):
    names = [r["feedback"] for r in hostile["rows"]]
    assert len(set(n.casefold() for n in names)) == len(names)
    assert _row(hostile, "a_b.ipynb")["feedback"] == "feedback/a_b.txt"
    assert _row(hostile, "a b.ipynb")["feedback"].startswith("feedback/a_b-")
    for name in names:
        assert len(Path(name).name) <= 100 and (hostile["out"] / name).is_file()
    deep = next(r for r in hostile["rows"] if r["file"].endswith("q" * 240 + ".ipynb"))
    assert "not valid JSON" in (hostile["out"] / deep["feedback"]).read_text()


def test_csv_cells_never_start_a_formula(hostile):
    text = (hostile["out"] / "gradebook.csv").read_text()
    with open(hostile["out"] / "gradebook.csv", newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@")), cell
    assert "'=2+3" in text and "'@SUM(A1)" in text and "'-cmd" in text
    assert reports.csv_cell("=1") == "'=1" and reports.csv_cell(3) == 3
    assert reports.csv_cell("alice") == "alice"


def test_read_submission_refuses_links_and_reads_at_most_the_limit(tmp_path):
    real = tmp_path / "real.ipynb"
    real.write_bytes(b"x" * 100)
    os.symlink(real, tmp_path / "link.ipynb")
    with pytest.raises(rb.SubmissionError, match="symbolic link"):
        read_submission(tmp_path / "link.ipynb")
    with pytest.raises(rb.SubmissionError, match="larger than"):
        read_submission(real, limit=50)
    assert read_submission(real) == b"x" * 100
    with pytest.raises(rb.SubmissionError, match="a folder"):
        read_submission(tmp_path)


def test_a_failing_report_write_costs_one_file(tmp_path, monkeypatch):
    master = nbs.read(SOLUTION)
    ex = [ExerciseGrade("0.1", 1, 1, "passed"), ExerciseGrade("0.2", 1, 0, "failed", "no"),
          ExerciseGrade("0.3", 2, 2, "passed")]
    grades = [Grade(name, f"{name}.ipynb", "ab", "graded", list(ex)) for name in ("x", "y", "z")]
    real_write = reports._write

    def flaky(path, text):
        if path.name == "y.txt":
            raise OSError(36, "File name too long")
        real_write(path, text)

    monkeypatch.setattr(reports, "_write", flaky)
    summary = reports.write_reports(grades, master, tmp_path, "00_warmup")
    assert (tmp_path / "feedback" / "x.txt").exists() and (tmp_path / "feedback" / "z.txt").exists()
    assert any("feedback of 'y'" in p for p in summary["problems"])
    assert len(json.loads((tmp_path / "grades.json").read_text())) == 3


def test_a_grader_failure_costs_one_row(tmp_path, monkeypatch):
    for name in ("p", "q"):
        (tmp_path / f"{name}.ipynb").write_bytes(CORRUPT)

    def boom(*a, **k):
        raise MemoryError("simulated")

    real = batch.grade_submission

    def fake(student, *a, **k):
        return boom() if student == "p" else real(student, *a, **k)

    monkeypatch.setattr(batch, "grade_submission", fake)
    grades = grade_batch(find_submissions(tmp_path, SOLUTION), SOLUTION, jobs=1)
    assert [(g.student, g.status) for g in grades] == [("p", "error"), ("q", UNREADABLE)]
    assert "MemoryError" in grades[0].reason
