"""A class graded in shards and merged gives the single machine's gradebook (issue 28, item 3)."""

import json
import subprocess
import sys

import pytest

from nncourse.course.grading import shards
from nncourse.course.grading.batch import Entry
from tests.course.grading_helpers import MSE, RELU, RIGHT, student


def test_a_shard_is_k_of_n_and_every_student_is_in_exactly_one():
    assert shards.parse_shard("2/3") == (2, 3) and shards.parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/3", "4/3", "3", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="K/N"):
            shards.parse_shard(bad)
    ids = [f"student{i}" for i in range(200)] + ["élève", "a b", "a_b"]
    for n in (1, 3, 7):
        owners = [[k for k in range(1, n + 1) if shards.in_shard(s, k, n)] for s in ids]
        assert all(len(o) == 1 for o in owners)
    sizes = [sum(shards.in_shard(s, k, 3) for s in ids) for k in (1, 2, 3)]
    assert min(sizes) > 40  # the hash spreads the class


def part(folder, k, n, students, order, exercise="00", digest="abc"):
    folder.mkdir()
    (folder / "shard.json").write_text(json.dumps(
        {"shard": [k, n], "exercise": exercise, "master": "00_warmup.ipynb",
         "master_sha256": digest, "order": order}))
    (folder / "grades.json").write_text(json.dumps(
        [{"student": s, "file": f"{s}.ipynb", "sha256": "", "status": "graded",
          "exercises": [{"exercise": "0.1", "points": 1, "earned": 1, "status": "passed"}]}
         for s in students]))
    return folder


def test_merge_refuses_parts_that_do_not_belong_together(tmp_path):
    a = part(tmp_path / "a", 1, 2, ["bob", "amy"], [1, 0])
    b = part(tmp_path / "b", 2, 2, ["cy"], [2])
    info, grades = shards.merge([b, a])
    assert info["shards"] == 2 and [g.student for g in grades] == ["amy", "bob", "cy"]
    assert grades[0].exercises[0].earned == 1
    cases = [
        ([a], "shard\\(s\\) 2/2 missing"),
        ([a, part(tmp_path / "a2", 1, 2, ["dan"], [3])], "shard 1/2 is given twice"),
        ([a, part(tmp_path / "c", 2, 3, ["cy"], [2])], "one of 2"),
        ([a, part(tmp_path / "d", 2, 2, ["bob"], [5])], "'bob' is in both"),
        ([a, part(tmp_path / "e", 2, 2, ["cy"], [2], digest="xyz")], "another master"),
        ([a, part(tmp_path / "f", 2, 2, ["cy"], [2], exercise="03")], "another exercise"),
        ([a, tmp_path], "not a shard's output"),
    ]
    for folders, message in cases:
        with pytest.raises(ValueError, match=message):
            shards.merge(folders)


def test_selecting_a_shard_keeps_entries_whole():
    entries = [Entry(f"s{i}", tmp) for i, tmp in enumerate(["x"] * 10)]
    picked = [shards.select(entries, k, 3) for k in (1, 2, 3)]
    assert sorted(e.student for p in picked for e in p) == sorted(e.student for e in entries)


def grade(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "nncourse", "grade", *map(str, args),
                           "--cell-timeout", "60", "--notebook-timeout", "240", "--no-preflight"],
                          capture_output=True, text=True, timeout=1200, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_three_shards_merged_equal_one_machine(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    answers = {"ana": RIGHT, "ben": {"0.1": RELU}, "cem": {"0.1": RELU, "0.2": MSE}, "dia": {}}
    for name, given in answers.items():
        (subs / f"{name}.ipynb").write_text(json.dumps(student(given)))
    (subs / "notes.txt").write_text("not a notebook")  # a row of its own, in some shard
    grade(subs, "--exercise", "00", "--jobs", "2", "--out", tmp_path / "one", cwd=tmp_path)
    for k in (1, 2, 3):
        out = grade(subs, "--exercise", "00", "--jobs", "2", "--shard", f"{k}/3",
                    "--out", tmp_path / f"part-{k}", cwd=tmp_path)
        assert f"shard {k}/3:" in out
    merged = tmp_path / "merged"
    grade("merge", *(tmp_path / f"part-{k}" for k in (3, 1, 2)), "--exercise", "00",
          "--out", merged, cwd=tmp_path)
    one = tmp_path / "one"
    assert (merged / "gradebook.csv").read_text() == (one / "gradebook.csv").read_text()
    assert sorted(p.name for p in (merged / "feedback").iterdir()) == \
        sorted(p.name for p in (one / "feedback").iterdir())
    for p in (one / "feedback").iterdir():
        assert (merged / "feedback" / p.name).read_text() == p.read_text()
    summary = json.loads((merged / "summary.json").read_text())
    assert summary["students"] == 5 and summary["mean_total"] == json.loads(
        (one / "summary.json").read_text())["mean_total"]
    # a part missing is refused, and says which
    proc = subprocess.run([sys.executable, "-m", "nncourse", "grade", "merge",
                           str(tmp_path / "part-1"), str(tmp_path / "part-3"), "--exercise", "00",
                           "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "2/3 missing" in proc.stderr
