"""`python -m nncourse grade`: adversarial submissions, each graded correctly, none stopping the batch.

The submissions are built at test time from the warm-up's solution and released exercise. One
batch (``--jobs 2``) grades all of them; the tests below read its gradebook, JSON record and
feedback files. Fast unit tests of the rebuild and the static flags come first.
"""

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from nncourse.course import notebooks as nbs
from nncourse.grading import Limits, _signal_name, find_master, find_submissions
from nncourse.grading import rebuild as rb
from nncourse.grading import sandbox

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_warmup.ipynb"
EXERCISE = ROOT / "exercises" / "00_warmup.ipynb"
AS_ROOT = os.geteuid() == 0

RELU = "def relu(x):\n    return np.maximum(x, 0.0)"
MSE = "def mse(y_pred, y_true):\n    return float(np.mean((y_pred - y_true) ** 2))"
ACC = "def accuracy(logits, labels):\n    return (logits.argmax(dim=1) == labels).float().mean().item()"
RIGHT = {"0.1": RELU, "0.2": MSE, "0.3": ACC}


def student(answers=None, edit=None):
    """The released exercise with some answers filled in (a dict of JSON, as saved by Jupyter)."""
    nb = json.loads(EXERCISE.read_text())
    for cell in nb["cells"]:
        if isinstance(cell["source"], list):
            cell["source"] = "".join(cell["source"])
        ex = cell["metadata"].get("nncourse", {}).get("exercise")
        if "answer" in cell["metadata"].get("tags", []) and ex in (answers or {}):
            cell["source"] = answers[ex]
    if edit:
        edit(nb)
    return nb


def cells_of(nb_dict):
    return rb.load_submission(json.dumps(nb_dict).encode())


# --- unit tests: reading, rebuilding, flags ------------------------------------------------------

@pytest.mark.parametrize("data, why", [
    (b"{\"cells\": [", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"[1, 2]", "not a Jupyter notebook"),
    (json.dumps({"nbformat": 3, "worksheets": []}).encode(), "format 3 is not supported"),
    (json.dumps({"nbformat": 4, "cells": "no"}).encode(), "no list of cells"),
    (b" " * (rb.MAX_SUBMISSION_BYTES + 1), "larger than"),
])
def test_unreadable_submissions_say_why(data, why):
    with pytest.raises(rb.SubmissionError, match=why):
        rb.load_submission(data)


def test_load_tolerates_list_sources_and_missing_metadata():
    nb = {"nbformat": 4, "nbformat_minor": 4, "metadata": {},
          "cells": [{"cell_type": "code", "source": ["a = 1\n", "b = 2"]}, "junk",
                    {"cell_type": "markdown", "metadata": None, "source": None}]}
    cells = rb.load_submission(json.dumps(nb).encode())
    assert [c["source"] for c in cells] == ["a = 1\nb = 2", ""]
    assert cells[0]["id"] is None and cells[0]["metadata"] == {"tags": [], "nncourse": {}}


def sources(rebuilt, role):
    return {nbs.exercise_id(c): c.source for c in rebuilt.notebook.cells if nbs.role(c) == role}


def test_rebuild_takes_only_answers_and_restores_everything_else():
    master = nbs.read(SOLUTION)

    def vandalise(nb):
        for cell in nb["cells"]:
            if "check" in cell["metadata"].get("tags", []):
                cell["source"] = "print('Exercise passed')"
                cell["metadata"]["nncourse"]["points"] = 100
            elif cell["source"].startswith("import nncourse"):
                cell["source"] = "import nncourse  # student edit\nnncourse.setup(seed=7)"
        nb["cells"].insert(3, {"cell_type": "code", "id": "mine", "metadata": {}, "outputs": [],
                               "execution_count": None, "source": "def helper(): pass"})

    built = rb.rebuild(master, cells_of(student(RIGHT, vandalise)))
    assert sources(built, nbs.ANSWER) == RIGHT
    assert sources(built, nbs.CHECK) == sources(rb.Rebuilt(master, []), nbs.CHECK)
    assert [e.points for e in nbs.exercises(built.notebook)] == [1, 1, 2]
    assert all(c.source != "def helper(): pass" for c in built.notebook.cells)
    code = [c for c in built.notebook.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert code[0].source == "import nncourse\nnncourse.setup()"
    for i, cell in enumerate(built.notebook.cells):  # a guard right before every check
        if nbs.role(cell) == nbs.CHECK:
            assert built.notebook.cells[i - 1].id.startswith(rb.GUARD_ID)
    assert any("check cell was edited" in n for n in built.notes)
    assert any("1 code cell you added was not run" in n for n in built.notes)


def test_rebuild_matches_answers_by_tags_then_order_then_stubs():
    master = nbs.read(SOLUTION)

    def new_ids(nb):
        for i, cell in enumerate(nb["cells"]):
            cell["id"] = f"renamed-{i}"

    built = rb.rebuild(master, cells_of(student(RIGHT, new_ids)))
    assert sources(built, nbs.ANSWER) == RIGHT and {a.how for a in built.answers} == {"tags"}

    def strip(nb):
        nb["nbformat_minor"] = 4
        for cell in nb["cells"]:
            cell.pop("id")
            cell["metadata"] = {}

    built = rb.rebuild(master, cells_of(student(RIGHT, strip)))
    assert sources(built, nbs.ANSWER) == RIGHT and {a.how for a in built.answers} == {"order"}

    def delete_answer(nb):
        new_ids(nb)
        nb["cells"] = [c for c in nb["cells"]
                       if c["metadata"].get("nncourse", {}).get("exercise") != "0.2"]

    built = rb.rebuild(master, cells_of(student(RIGHT, delete_answer)))
    assert "raise NotImplementedError" in sources(built, nbs.ANSWER)["0.2"]
    assert any("0.2: no answer cell was found" in n for n in built.notes)
    built = rb.rebuild(master, cells_of(student(RIGHT)), skip={"0.1": "hung"})
    assert "raise NotImplementedError" in sources(built, nbs.ANSWER)["0.1"]
    assert sources(built, nbs.ANSWER)["0.2"] == MSE


def flags(source, ex="0.1"):
    return rb.static_flags(source, ex, check_names={"check"}, reference_names={"relu"},
                           module_names={"np", "torch", "nncourse", "sys"},
                           nncourse_names=frozenset({"nncourse", "act"}))


def test_ordinary_answers_are_not_flagged():
    for source in RIGHT.values():
        assert flags(source) == []
    assert flags("%time x = 1\ndef relu(x):\n    return np.where(x > 0, x, 0.0)") == []
    assert flags("def relu(x:\n  broken") == []  # a syntax error is the check's business


@pytest.mark.parametrize("source, expected", [
    ("import nncourse.checks.ch00 as c\nc.ex0_1_relu = print", "imports the course's checks"),
    ("check.ex0_1_relu = print", "uses the check module 'check'"),
    ("check = None", "uses the check module 'check'"),
    ("np.allclose = lambda *a, **k: True", "assigns to np.allclose"),
    ("from nncourse.activations import relu", "reference implementation"),
    ("def relu(x):\n    return nncourse.activations.relu(x)", "reference implementation"),
    ("def relu(x):\n    return act.relu(x)", "reference implementation (act.relu)"),
    ("get_ipython().set_custom_exc((Exception,), print)", "get_ipython"),
    ("setattr(np, 'allclose', max)", "calls setattr()"),
    ("import builtins", "imports builtins"),
    ("class Fake(np.ndarray):\n    pass", "defines class Fake"),
    ("class F:\n    def __array_function__(self, *a):\n        return True", "defines class F"),
    ("import sys\nsys.modules['numpy'] = None", "edits sys.modules"),
])
def test_suspicious_answers_are_flagged(source, expected):
    found = flags(source)
    assert any(expected in f for f in found), found
    assert all(f.startswith("0.1: ") for f in found)


def test_check_bindings_and_defined_names():
    master = nbs.read(SOLUTION)
    assert rb.check_bindings(master) == [("check", "nncourse.checks.ch00", None)]
    assert rb.defined_names(RELU + "\nclass A: pass\nx = 1") == ["relu", "A"]
    assert rb.nncourse_aliases(master) == {"nncourse"}
    master.cells[1].source += "\nfrom nncourse import init as I, checks\nimport nncourse.data as D"
    assert rb.nncourse_aliases(master) == {"nncourse", "I", "D"}


def test_find_master_and_submissions(tmp_path):
    assert find_master("0", ROOT / "solutions") == SOLUTION
    assert find_master("00", ROOT / "solutions") == SOLUTION
    for bad in ("99", "x1"):
        with pytest.raises(ValueError):
            find_master(bad, ROOT / "solutions")
    (tmp_path / "ann.ipynb").write_text("{}")
    (tmp_path / "bo").mkdir()
    (tmp_path / "bo" / SOLUTION.name).write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "ann-checkpoint.ipynb").write_text("{}")
    assert [s for s, _ in find_submissions(tmp_path, SOLUTION)] == ["ann", "bo"]


def test_blocked_ancestor():
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own tmp folders are closed (0700)
    try:
        base.chmod(0o755)
        closed = base / "closed"
        (closed / "inner").mkdir(parents=True)
        closed.chmod(0o700)
        assert sandbox._blocked_ancestor(str(closed / "inner")) == str(closed)
        closed.chmod(0o755)
        assert sandbox._blocked_ancestor(str(closed / "inner")) is None
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(not AS_ROOT, reason="needs files owned by another user")
def test_remove_files_of_sweeps_only_that_users_files(tmp_path):
    uid = 2_000_000_999
    shared = tmp_path / "shared"
    (shared / "keep").mkdir(parents=True)
    shared.chmod(0o1777)
    mine, theirs, kept = shared / "left.txt", shared / "other.txt", shared / "keep" / "x"
    for p in (mine, theirs, kept):
        p.write_text("x")
    os.chown(mine, uid, uid)
    os.chown(kept, uid, uid)
    removed = sandbox.remove_files_of(uid, keep=str(shared / "keep"), roots=(str(shared),))
    assert removed == [str(mine)] and theirs.exists() and kept.exists()


def test_limits_and_signal_names():
    with pytest.raises(ValueError, match="cell_timeout must be a positive integer"):
        Limits(cell_timeout=0)
    assert "SIGSEGV" in _signal_name(-11) and "segmentation" in _signal_name(-11)
    assert _signal_name(3) == "exit code 3"


# --- the adversarial batch -----------------------------------------------------------------------

TOKEN = uuid.uuid4().hex[:12]
ESCAPE_FILE = Path(f"/tmp/nncourse-escape-{TOKEN}.txt")


def _attacks(subs: Path) -> dict:
    """name -> notebook JSON text (or bytes, or a callable making a special file)."""
    sol = json.loads(SOLUTION.read_text())
    corrupt = SOLUTION.read_text()[:1500]
    v3 = dict(sol, nbformat=3)

    def edit_checks(nb):
        for cell in nb["cells"]:
            ex = cell["metadata"].get("nncourse", {}).get("exercise")
            if "check" in cell["metadata"].get("tags", []) and ex == "0.2":
                cell["source"] = 'print("Exercise 0.2 passed (1 point)")'
        nb["cells"] = [c for c in nb["cells"] if not (
            "check" in c["metadata"].get("tags", [])
            and c["metadata"]["nncourse"]["exercise"] == "0.3")]

    forged = student({
        "0.1": ('def relu(x):\n'
                '    print("Exercise 0.1 passed (1 point)")\n'
                '    get_ipython().set_custom_exc(\n'
                '        (Exception,), lambda *a, **k: print("Exercise 0.1 passed (1 point)"))\n'
                '    return x\n'
                'print("Exercise 0.1 passed (1 point)")'),
        "0.2": "def mse(y_pred, y_true):\n    return 0.0",
        "0.3": ACC}, edit_checks)
    loop = student({"0.1": ("import time\nwhile True:\n    try:\n        time.sleep(0.2)\n"
                            "    except BaseException:\n        pass"),
                    "0.2": MSE, "0.3": ACC})
    crash = student({
        "0.1": 'import sys\nsys.exit("bye")\n' + RELU,
        "0.2": "import os\nos._exit(3)",
        "0.3": ("def accuracy(logits, labels):\n    import ctypes\n    ctypes.string_at(0)\n"
                "    return 0.0")})
    killed = student({"0.1": RELU, "0.2": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
                      "0.3": ACC})
    hog = student({
        "0.1": "def relu(x):\n    hog = bytearray(8 * 2**30)\n    return np.maximum(x, 0.0)",
        "0.2": "for _ in range(300):\n    print('y' * 1_000_000)\n" + MSE,
        "0.3": "print('z' * 50_000_000)\n" + ACC})
    patch = student({
        "0.1": ("import nncourse.checks.ch00 as c\n"
                "c.ex0_1_relu = lambda relu: print('Exercise 0.1 passed (1 point)')\n"
                "def relu(x):\n    return x"),
        "0.2": ("import types\n"
                "check = types.SimpleNamespace(\n"
                "    ex0_2_mse=lambda f: print('Exercise 0.2 passed (1 point)'),\n"
                "    ex0_3_accuracy=lambda f: print('Exercise 0.3 passed (2 points)'))\n"
                "def mse(y_pred, y_true):\n    return 0.0"),
        "0.3": ("np.allclose = lambda *a, **k: True\nimport nncourse.checks\n"
                "nncourse.checks.Exercise.close = lambda self, *a, **k: None\n"
                "def accuracy(logits, labels):\n    return 0.5")})

    def drop_metadata(nb):
        for cell in nb["cells"]:
            cell["metadata"] = {}

    no_meta = student({"0.1": RELU, "0.2": MSE, "0.3": "from nncourse.training import accuracy"},
                      drop_metadata)

    def drop_ids(nb):
        nb["nbformat_minor"] = 4
        for cell in nb["cells"]:
            cell.pop("id")
            cell["metadata"] = {}

    no_ids = student(RIGHT, drop_ids)
    escape = student({
        "0.1": (f"import os\nleaks = []\n"
                f"for path in ({str(SOLUTION)!r}, {str(subs / 'alice.ipynb')!r}):\n"
                f"    try:\n        open(path).read()\n        leaks.append('read ' + path)\n"
                f"    except OSError:\n        pass\n"
                f"for path in ({str(subs / 'alice.ipynb')!r}, {str(subs / 'planted.ipynb')!r},\n"
                f"             {str(ROOT / 'solutions' / 'planted.ipynb')!r}):\n"
                f"    try:\n        with open(path, 'a') as f:\n            f.write('pwned')\n"
                f"        leaks.append('wrote ' + path)\n    except OSError:\n        pass\n"
                f"with open({str(ESCAPE_FILE)!r}, 'w') as f:\n    f.write('escaped')\n"
                f"def relu(x):\n    return x if leaks else np.maximum(x, 0.0)"),
        "0.2": ("import socket\ntry:\n"
                "    socket.create_connection(('1.1.1.1', 53), timeout=3).close()\n"
                "    online = True\nexcept OSError:\n    online = False\n"
                "def mse(y_pred, y_true):\n"
                "    return float(np.mean((y_pred - y_true) ** 2)) + online"),
        "0.3": ("import subprocess\nspawned = 0\ntry:\n    for _ in range(100):\n"
                "        subprocess.Popen(['sleep', '613'])\n        spawned += 1\n"
                "except OSError:\n    pass\n"
                "def accuracy(logits, labels):\n"
                "    right = (logits.argmax(dim=1) == labels).float().mean().item()\n"
                "    return right if spawned < 100 else 0.0")})
    return {"alice.ipynb": SOLUTION.read_bytes(),
            "dave/00_warmup.ipynb": EXERCISE.read_bytes(),
            "forged.ipynb": forged, "loop.ipynb": loop, "crash.ipynb": crash, "hog.ipynb": hog,
            "killed.ipynb": killed,
            "patch.ipynb": patch, "no_meta.ipynb": no_meta, "no_ids.ipynb": no_ids,
            "escape.ipynb": escape, "corrupt.ipynb": corrupt, "v3.ipynb": v3}


def _hashes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    subs, out = base / "submissions", base / "grades"
    subs.mkdir()
    for name, content in _attacks(subs).items():
        path = subs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            content = json.dumps(content, indent=1)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    os.symlink(SOLUTION, subs / "mallory.ipynb")  # "my notebook" -> the instructor's solution
    before = _hashes(subs)
    proc = subprocess.run(
        [sys.executable, "-m", "nncourse", "grade", str(subs), "--exercise", "00", "--jobs", "2",
         "--out", str(out), "--cell-timeout", "25", "--notebook-timeout", "240",
         "--memory-mb", "3072", "--no-preflight"],
        capture_output=True, text=True, timeout=900, cwd=base)
    rows = {}
    if (out / "gradebook.csv").exists():
        with open(out / "gradebook.csv", newline="") as f:
            rows = {r["student"]: r for r in csv.DictReader(f)}
    records = ({g["student"]: g for g in json.loads((out / "grades.json").read_text())}
               if (out / "grades.json").exists() else {})
    yield {"proc": proc, "rows": rows, "records": records, "subs": subs, "out": out,
           "before": before, "after": _hashes(subs)}
    ESCAPE_FILE.unlink(missing_ok=True)


def points(batch, who):
    g = batch["records"][who]
    return {e["exercise"]: e["earned"] for e in g["exercises"]}


def statuses(batch, who):
    return {e["exercise"]: e["status"] for e in batch["records"][who]["exercises"]}


def message(batch, who, ex):
    return next(e["message"] for e in batch["records"][who]["exercises"] if e["exercise"] == ex)


def test_batch_finishes_with_a_row_per_submission(batch):
    proc = batch["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert set(batch["rows"]) == {"alice", "dave", "forged", "loop", "crash", "hog", "killed",
                                  "patch", "no_meta", "no_ids", "escape", "corrupt", "v3",
                                  "mallory"}
    assert "per minute" in proc.stdout and "passed" in proc.stdout  # the class summary
    header = next(csv.reader(open(batch["out"] / "gradebook.csv")))
    assert header[:6] == ["student", "0.1 (1)", "0.2 (1)", "0.3 (2)", "total (4)", "status"]


def test_submissions_are_byte_identical_and_nothing_was_planted(batch):
    assert batch["after"] == batch["before"]
    assert not (batch["subs"] / "planted.ipynb").exists()
    assert not (ROOT / "solutions" / "planted.ipynb").exists()
    for who, row in batch["rows"].items():
        if row["sha256"]:
            assert row["sha256"] == batch["before"][row["file"]]


def test_solution_full_marks_and_untouched_exercise_zero(batch):
    assert points(batch, "alice") == {"0.1": 1, "0.2": 1, "0.3": 2}
    assert batch["rows"]["alice"]["status"] == "graded" and batch["rows"]["alice"]["flags"] == ""
    assert points(batch, "dave") == {"0.1": 0, "0.2": 0, "0.3": 0}
    assert set(statuses(batch, "dave").values()) == {"not attempted"}
    feedback = (batch["out"] / "feedback" / "dave.txt").read_text()
    assert "Exercise 0.1: 0/1  not attempted" in feedback and "Total: 0/4 points" in feedback
    assert "NotAttempted:" not in feedback  # the message, not the exception's class


def test_forged_prints_hidden_errors_and_edited_checks_do_not_count(batch):
    assert points(batch, "forged") == {"0.1": 0, "0.2": 0, "0.3": 2}
    assert "did not complete normally" in message(batch, "forged", "0.1")
    assert "mse(y_pred, y_true) is wrong" in message(batch, "forged", "0.2")
    g = batch["records"]["forged"]
    assert any("0.2: the check cell was edited" in n for n in g["notes"])
    assert any("0.3: the check cell was missing" in n for n in g["notes"])
    assert any("get_ipython" in f for f in g["flags"])
    feedback = (batch["out"] / "feedback" / "forged.txt").read_text()
    assert "mse(y_pred, y_true) is wrong" in feedback and "Total: 2/4 points" in feedback


def test_infinite_loop_loses_only_its_exercise(batch):
    assert points(batch, "loop") == {"0.1": 0, "0.2": 1, "0.3": 2}
    assert statuses(batch, "loop")["0.1"] == "timed out"
    assert "25 s" in message(batch, "loop", "0.1")
    assert batch["records"]["loop"]["attempts"] == 2


def test_exit_and_crashes_lose_only_their_exercise(batch):
    assert points(batch, "crash") == {"0.1": 0, "0.2": 0, "0.3": 0}
    assert statuses(batch, "crash") == {"0.1": "failed", "0.2": "crashed", "0.3": "crashed"}
    assert "SystemExit" in message(batch, "crash", "0.1")
    assert "exit code 3" in message(batch, "crash", "0.2")
    assert "SIGSEGV" in message(batch, "crash", "0.3")
    assert batch["records"]["crash"]["attempts"] == 3


def test_sigkill_is_retried_once_then_blamed_on_its_exercise(batch):
    assert points(batch, "killed") == {"0.1": 1, "0.2": 0, "0.3": 2}
    assert statuses(batch, "killed")["0.2"] == "crashed"
    assert "SIGKILL" in message(batch, "killed", "0.2")
    g = batch["records"]["killed"]
    assert g["attempts"] == 3 and any("rule out an outside cause" in n for n in g["notes"])
    assert g["flags"] == []


def test_memory_bomb_and_huge_output(batch):
    assert points(batch, "hog") == {"0.1": 0, "0.2": 1, "0.3": 2}
    assert "MemoryError" in message(batch, "hog", "0.1")
    g = batch["records"]["hog"]
    assert g["output_truncated"]
    assert "only the start of their output was kept" in (
        batch["out"] / "feedback" / "hog.txt").read_text()
    assert (batch["out"] / "grades.json").stat().st_size < 2_000_000


def test_monkeypatched_checks_are_restored_and_flagged(batch):
    assert points(batch, "patch") == {"0.1": 0, "0.2": 0, "0.3": 0}
    row, flags = batch["rows"]["patch"], batch["records"]["patch"]["flags"]
    assert row["status"] == "graded, flagged for review"
    for expected in ("0.1: imports the course's checks", "the name 'check' was rebound",
                     "numpy.allclose was replaced (restored)", "Exercise.close was patched"):
        assert any(expected in f for f in flags), (expected, flags)


def test_deleted_metadata_still_grades_and_reference_use_is_flagged(batch):
    assert points(batch, "no_meta") == {"0.1": 1, "0.2": 1, "0.3": 0}
    flags = batch["records"]["no_meta"]["flags"]
    assert any("0.3: imports nncourse's reference implementation" in f for f in flags), flags
    assert any("accuracy is nncourse's own nncourse.training.accuracy" in f for f in flags)
    assert points(batch, "no_ids") == {"0.1": 1, "0.2": 1, "0.3": 2}
    assert any("found by its position" in n for n in batch["records"]["no_ids"]["notes"])


def test_unreadable_files_get_a_row_saying_why(batch):
    rows = batch["rows"]
    assert rows["corrupt"]["status"] == "unreadable" and "not valid JSON" in rows["corrupt"]["reason"]
    assert rows["v3"]["status"] == "unreadable" and "format 3" in rows["v3"]["reason"]
    assert rows["mallory"]["status"] == "unreadable" and "symbolic link" in rows["mallory"]["reason"]
    assert all(rows[w]["total (4)"] == "0" for w in ("corrupt", "v3", "mallory"))
    assert "could not be graded" in (batch["out"] / "feedback" / "v3.txt").read_text()


@pytest.mark.skipif(not AS_ROOT, reason="file-system hiding, network and process limits need root")
def test_escape_attempts_fail_inside_the_sandbox(batch):
    # each answer is right only if its attack failed: the solutions and submissions were
    # invisible, nothing could be written outside, no network, at most RLIMIT_NPROC processes
    assert points(batch, "escape") == {"0.1": 1, "0.2": 1, "0.3": 2}
    assert not ESCAPE_FILE.exists()  # written to /tmp by the sandbox, removed after the run
    assert any("outside its working directory" in f for f in batch["records"]["escape"]["flags"])
    sandbox = batch["records"]["escape"]["sandbox"]
    assert sandbox["network"].startswith("isolated") and sandbox["limits"]["RLIMIT_NPROC"] == 64
    left = subprocess.run(["pgrep", "-f", "sleep 613"], capture_output=True, text=True).stdout
    assert left.strip() == "", "processes started by a submission outlived its grading"
