"""GitHub Classroom and Gradescope: ``grade --pattern``, ``check --exercise``, ``--gradescope``.

A Classroom clone holds the whole course (chapters/, exercises/...): without a pattern each of
its notebooks became a "student" of its own. With ``--pattern`` the student is the top-level
folder, and only the matching notebook is graded.
"""

import json
import shutil

import pytest

from nncourse.__main__ import main
from nncourse.course.grading import classroom
from nncourse.course.grading.batch import DUPLICATE, OK, SKIPPED, ExerciseGrade, Grade
from tests.course.grading_helpers import EXERCISE, RIGHT, ROOT, student


def _clone(base, name, nb=None):
    """A student's Classroom repository: chapters/, exercises/ (one answered), a README."""
    repo = base / name
    (repo / "chapters").mkdir(parents=True)
    (repo / "exercises").mkdir()
    shutil.copy(ROOT / "chapters" / "00_start_here.ipynb", repo / "chapters")
    shutil.copy(ROOT / "exercises" / "01_backprop_from_scratch.ipynb", repo / "exercises")
    (repo / "exercises" / "00_warmup.ipynb").write_text(json.dumps(nb or student()))
    (repo / "README.md").write_text("my course")
    return repo


def test_pattern_names_each_student_after_their_top_level_folder(tmp_path):
    _clone(tmp_path, "nncourse-alice")
    _clone(tmp_path, "nncourse-bob")
    (tmp_path / "nncourse-carol").mkdir()  # cloned, nothing pushed
    (tmp_path / "notes.txt").write_text("not a student")
    (tmp_path / ".git").mkdir()
    pattern = classroom.expand_pattern("exercises/NN_*.ipynb", "0")
    assert pattern == "exercises/00_*.ipynb"
    entries = {e.student: e for e in classroom.find_by_pattern(tmp_path, pattern)}
    assert set(entries) == {"nncourse-alice", "nncourse-bob", "nncourse-carol", "notes.txt"}
    assert entries["nncourse-alice"].status is None
    assert entries["nncourse-alice"].path == tmp_path / "nncourse-alice/exercises/00_warmup.ipynb"
    assert entries["nncourse-carol"].status == SKIPPED
    assert "no file matches exercises/00_*.ipynb" in entries["nncourse-carol"].reason
    assert entries["notes.txt"].status == SKIPPED


def test_pattern_matching_two_files_grades_neither_and_links_are_not_followed(tmp_path):
    repo = _clone(tmp_path, "nncourse-dave")
    shutil.copy(repo / "exercises" / "00_warmup.ipynb", repo / "exercises" / "00_warmup_v2.ipynb")
    [entry] = classroom.find_by_pattern(tmp_path, "exercises/00_*.ipynb")
    assert entry.status == DUPLICATE and "2 files match" in entry.reason
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    (outside / "exercises").mkdir(parents=True)
    (outside / "exercises" / "00_warmup.ipynb").write_text("{}")
    (tmp_path / "nncourse-eve").mkdir()
    (tmp_path / "nncourse-eve" / "exercises").symlink_to(outside / "exercises")
    entries = {e.student: e for e in classroom.find_by_pattern(tmp_path, "exercises/00_*.ipynb")}
    assert entries["nncourse-eve"].status == SKIPPED
    (tmp_path / "nncourse-link").symlink_to(outside)
    entries = {e.student: e for e in classroom.find_by_pattern(tmp_path, "exercises/00_*.ipynb")}
    assert entries["nncourse-link"].status == SKIPPED


@pytest.mark.parametrize("bad", ["/etc/*.ipynb", "../other/*.ipynb", "exercises/*.py", ""])
def test_a_bad_pattern_is_one_sentence(bad):
    with pytest.raises(ValueError, match="--pattern must"):
        classroom.expand_pattern(bad, "0")


def test_gradescope_results_have_one_test_per_exercise(tmp_path):
    g = Grade("alice", "a.ipynb", "0" * 64, OK, exercises=[
        ExerciseGrade("0.1", 1, 1, "passed"),
        ExerciseGrade("0.2", 1, 0, "failed", "Exercise 0.2 (mse): wrong. Hint: square."),
        ExerciseGrade("0.3", 2, 2, "passed")], notes=["Exercise 0.3: the check cell was edited"])
    r = classroom.gradescope_results(g)
    assert r["score"] == 3
    assert [(t["name"], t["score"], t["max_score"]) for t in r["tests"]] == [
        ("Exercise 0.1", 1, 1), ("Exercise 0.2", 0, 1), ("Exercise 0.3", 2, 2)]
    assert "Hint: square" in r["tests"][1]["output"] and "edited" in r["output"]
    with pytest.raises(ValueError, match="one submission"):
        classroom.write_gradescope([g, g], tmp_path / "results.json")
    path = classroom.write_gradescope([g], tmp_path / "results" / "results.json")
    assert json.loads(path.read_text()) == r


def test_grade_with_pattern_and_gradescope_through_the_command(tmp_path, capsys, monkeypatch):
    """``grade --pattern --gradescope``: only the clone's exercises/00_warmup.ipynb goes to the
    grader, as student ``nncourse-alice``, and results.json holds what the grader returned. The
    grading itself (a sandboxed kernel per notebook, ~1 min here under load) is stubbed: the
    grader's own tests run it."""
    from nncourse.course.grading import cli

    subs = tmp_path / "subs"
    _clone(subs, "nncourse-alice", student({"0.1": RIGHT["0.1"], "0.3": RIGHT["0.3"]}))
    out = tmp_path / "grades"
    seen = []

    def fake_grade_batch(entries, master_path, *args, **kwargs):
        seen.extend(entries)
        return [Grade(e.student, str(e.path), "0" * 64, OK, exercises=[
            ExerciseGrade("0.1", 1, 1, "passed"), ExerciseGrade("0.2", 1, 0, "not attempted"),
            ExerciseGrade("0.3", 2, 2, "passed")]) for e in entries]

    monkeypatch.setattr(cli, "grade_batch", fake_grade_batch)
    rc = main(["grade", str(subs), "--exercise", "0", "--pattern", "exercises/NN_*.ipynb",
               "--out", str(out), "--no-preflight", "--gradescope",
               str(tmp_path / "results.json")])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    rows = (out / "gradebook.csv").read_text().splitlines()
    assert [(e.student, e.path) for e in seen] == [
        ("nncourse-alice", subs / "nncourse-alice" / "exercises" / "00_warmup.ipynb")]
    assert len(rows) == 2 and rows[1].startswith("nncourse-alice,1,0,2,3,graded,")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["score"] == 3
    assert [t["score"] for t in results["tests"]] == [1, 0, 2]


def _run_check(path, exercise):
    return main(["check", str(path), "--exercise", exercise])


def test_check_one_exercise_exits_0_when_it_passes_and_1_when_not(tmp_path, capsys):
    nb = tmp_path / "00_warmup.ipynb"
    nb.write_text(json.dumps(student({"0.2": RIGHT["0.2"]})))
    assert _run_check(nb, "0.2") == 0
    out = capsys.readouterr().out
    assert "Exercise 0.2:  1/1  passed" in out and "0.1" not in out
    assert _run_check(nb, "0.1") == 1
    assert "not attempted" in capsys.readouterr().out
    assert _run_check(EXERCISE, "9.9") == 1
    assert "has no exercise 9.9" in capsys.readouterr().err



def test_gradescope_refuses_a_folder_of_several_submissions_before_grading(tmp_path, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    for who in ("alice", "bob"):
        (subs / f"{who}.ipynb").write_text(json.dumps(student()))
    rc = main(["grade", str(subs), "--exercise", "0", "--out", str(tmp_path / "g"),
               "--gradescope", str(tmp_path / "results.json")])
    assert rc == 2 and "2 notebooks to grade" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()
