"""`python -m nncourse grade`: adversarial submissions, each graded correctly, none stopping the
batch.

The submissions are built at test time from the warm-up's solution and released exercise. One
batch (``--jobs 2``) grades all of them; the tests below read its gradebook, JSON record and
feedback files. Fast unit tests of the rebuild and the static flags come first.
"""

import csv
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.course.grading_helpers import (
    ACC,
    AS_ROOT,
    EXERCISE,
    MSE,
    RELU,
    RIGHT,
    ROOT,
    SOLUTION,
    student,
)

# --- the adversarial batch -----------------------------------------------------------------------

TOKEN = uuid.uuid4().hex[:12]
ESCAPE_FILE = Path(f"/tmp/nncourse-escape-{TOKEN}.txt")
LOCK_FILE = Path(f"/run/lock/nncourse-{TOKEN}")
SHM_KEY = 0x4E000000 + int(TOKEN[:6], 16) % 0xFFFFFF
SECRET = f"grader-secret-{uuid.uuid4().hex}"
LOOK_AT = [str(ROOT / "solutions"), str(ROOT / ".git"), str(ROOT / "nncourse" / "checks"),
           str(ROOT), str(SOLUTION), "/root", "/home", "/work", "/etc/shadow", "/etc/passwd"]


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
        "0.1": ("!ls /\nimport nncourse.checks.ch00 as c\n"
                "c.ex0_1_relu = lambda relu: print('Exercise 0.1 passed (1 point)')\n"
                "def relu(x):\n    return x"),
        "0.2": ("%alias_magic t timeit\nimport types\n"
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
    # what the grader's machine holds that a kernel must never see or keep
    snoop = student({
        "0.1": (f"import os, pathlib\nseen = []\n"
                f"for path in {LOOK_AT!r}:\n"
                f"    try:\n"
                f"        p = pathlib.Path(path)\n"
                f"        if p.is_dir():  # parents of the Python the kernel runs are fine\n"
                f"            found = {{'solutions', '.git', 'nncourse', 'exercises', 'Makefile',\n"
                f"                     'chapters'}} & set(os.listdir(p))\n"
                f"            if found:\n                seen.append(path + ': ' + str(found))\n"
                f"        else:\n            seen.append(path + ': ' + p.read_text()[:50])\n"
                f"    except OSError:\n        pass\n"
                f"print(seen)\n"
                f"def relu(x):\n    return x if seen else np.maximum(x, 0.0)"),
        "0.2": ("import os\n"
                "def mse(y_pred, y_true):\n"
                "    raise ValueError('the grader has ' + repr(dict(os.environ)))"),
        "0.3": (f"import ctypes, os\n"
                f"open({str(LOCK_FILE)!r}, 'w').write('left behind')\n"
                f"libc = ctypes.CDLL(None)\n"
                f"segment = libc.shmget({SHM_KEY}, 4096, 0o1000 | 0o666)  # IPC_CREAT\n"
                f"kept = segment >= 0\n"
                f"def accuracy(logits, labels):\n"
                f"    right = (logits.argmax(dim=1) == labels).float().mean().item()\n"
                f"    return right if kept else 0.0")})
    displays = student({
        "0.1": ("from IPython.display import display, update_display\n"
                "for _ in range(300):\n    display('x', display_id='d')\n"
                "update_display('y' * 60_000, display_id='d')\n" + RELU),
        "0.2": MSE, "0.3": ACC})
    return {"alice.ipynb": SOLUTION.read_bytes(), "snoop.ipynb": snoop,
            "displays.ipynb": displays,
            "dave/00_warmup.ipynb": EXERCISE.read_bytes(),
            "forged.ipynb": forged, "loop.ipynb": loop, "crash.ipynb": crash, "hog.ipynb": hog,
            "killed.ipynb": killed,
            "patch.ipynb": patch, "no_meta.ipynb": no_meta, "no_ids.ipynb": no_ids,
            "escape.ipynb": escape, "corrupt.ipynb": corrupt, "v3.ipynb": v3}


def _hashes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
            and p.stat().st_size < 2**30}


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
    os.mkfifo(subs / "fifo.ipynb")  # a pipe nobody writes to: reading it would hang the batch
    with open(subs / "huge.ipynb", "wb") as f:  # 30 GB, sparse: reading it would exhaust memory
        f.truncate(30 * 2**30)
    (subs / "=2+3.ipynb").write_text("{}")  # a formula in the gradebook
    (subs / "empty").mkdir()
    os.symlink(ROOT / "solutions", subs / "linked")  # a symlinked folder is not followed
    before = _hashes(subs)
    proc = subprocess.run(
        [sys.executable, "-m", "nncourse", "grade", str(subs), "--exercise", "00", "--jobs", "2",
         "--out", str(out), "--cell-timeout", "40", "--notebook-timeout", "400",
         "--memory-mb", "3072", "--no-preflight"],
        capture_output=True, text=True, timeout=900, cwd=base,
        env={**os.environ, "NNCOURSE_GRADER_SECRET": SECRET})
    rows = {}
    if (out / "gradebook.csv").exists():
        with open(out / "gradebook.csv", newline="") as f:
            rows = {r["student"]: r for r in csv.DictReader(f)}
    records = ({g["student"]: g for g in json.loads((out / "grades.json").read_text())}
               if (out / "grades.json").exists() else {})
    yield {"proc": proc, "rows": rows, "records": records, "subs": subs, "out": out,
           "before": before, "after": _hashes(subs)}
    ESCAPE_FILE.unlink(missing_ok=True)
    LOCK_FILE.unlink(missing_ok=True)


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
    assert set(batch["rows"]) == {"alice", "snoop", "displays", "dave", "forged", "loop", "crash",
                                  "hog", "killed", "patch", "no_meta", "no_ids", "escape",
                                  "corrupt", "v3", "mallory", "fifo", "huge", "'=2+3", "empty",
                                  "linked"}
    assert "per minute" in proc.stdout and "passed" in proc.stdout  # the class summary
    assert "median seconds per notebook" in proc.stdout and "kernel start" in proc.stdout
    header = next(csv.reader(open(batch["out"] / "gradebook.csv")))
    assert header[:6] == ["student", "0.1 (1)", "0.2 (1)", "0.3 (2)", "total (4)", "status"]


def test_timing_says_where_a_notebooks_seconds_went(batch):
    """grades.json's breakdown (docs/grading.md, "Speed"): every part is there, none negative,
    and the parts measured inside the worker fit inside its time, which fits inside the row's."""
    t, seconds = batch["records"]["alice"]["timing"], batch["records"]["alice"]["seconds"]
    inside = ("setup", "kernel_start", "instructor", "guards", "answers", "checks", "shutdown",
              "cleanup")
    grader = ("rebuild", "job_write", "worker", "result_read", "static_flags")
    assert set(inside + grader + ("kernel_cpu", "worker_cpu")) <= set(t), sorted(t)
    assert all(t[k] >= 0 for k in inside + grader)
    assert sum(t[k] for k in inside) <= t["worker"] + 0.01
    assert sum(t[k] for k in grader) <= seconds + 0.1


def test_submissions_are_byte_identical_and_nothing_was_planted(batch):
    assert batch["after"] == batch["before"]
    assert not (batch["subs"] / "planted.ipynb").exists()
    assert not (ROOT / "solutions" / "planted.ipynb").exists()
    for _who, row in batch["rows"].items():
        if row["sha256"]:
            file = row["file"][1:] if row["file"].startswith("'=") else row["file"]
            assert row["sha256"] == batch["before"][file]


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
    # the check runs in the grader's process, so a forged pass line or a hidden error is moot
    assert "relu(x) is wrong" in message(batch, "forged", "0.1")
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
    assert "40 s" in message(batch, "loop", "0.1")
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
    # (its patch of Exercise.close finds nothing to patch: nncourse.checks is withheld from the
    # sandbox, since every check of the warm-up runs in the grader)
    for expected in ("0.1: imports the course's checks", "the name 'check' was rebound",
                     "0.1: runs a shell command", "0.2: uses the IPython magic %alias_magic",
                     "numpy.allclose was replaced (restored)"):
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
    assert (rows["corrupt"]["status"] == "unreadable"
            and "not valid JSON" in rows["corrupt"]["reason"])
    assert rows["v3"]["status"] == "unreadable" and "format 3" in rows["v3"]["reason"]
    assert (rows["mallory"]["status"] == "unreadable"
            and "symbolic link" in rows["mallory"]["reason"])
    assert all(rows[w]["total (4)"] == "0" for w in ("corrupt", "v3", "mallory"))
    assert rows["fifo"]["status"] == "unreadable" and "named pipe" in rows["fifo"]["reason"]
    assert rows["huge"]["status"] == "unreadable" and "larger than" in rows["huge"]["reason"]
    assert rows["empty"]["status"] == "skipped" and "no notebook" in rows["empty"]["reason"]
    assert "symbolic link to a folder" in rows["linked"]["reason"]
    assert "could not be graded" in (batch["out"] / "feedback" / "v3.txt").read_text()


@pytest.mark.skipif(not AS_ROOT, reason="file-system hiding, network and process limits need root")
def test_escape_attempts_fail_inside_the_sandbox(batch):
    # each answer is right only if its attack failed: the solutions and submissions were
    # invisible, nothing could be written outside, no network, at most RLIMIT_NPROC processes
    assert points(batch, "escape") == {"0.1": 1, "0.2": 1, "0.3": 2}
    assert not ESCAPE_FILE.exists()  # written to the sandbox's private /tmp (or removed after)
    sandbox = batch["records"]["escape"]["sandbox"]
    if not sandbox["tmp"].startswith("private"):
        assert any("outside its working directory" in f
                   for f in batch["records"]["escape"]["flags"])
    assert sandbox["network"].startswith("isolated") and sandbox["limits"]["RLIMIT_NPROC"] == 64
    left = subprocess.run(["pgrep", "-f", "sleep 613"], capture_output=True, text=True).stdout
    assert left.strip() == "", "processes started by a submission outlived its grading"


def _shm_keys() -> set[int]:
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(line.split()[0]) for line in lines}


def test_nothing_of_the_machine_is_seen_or_left_behind(batch):
    # 0.1 is right only if none of the checkout, solutions, .git, homes or /etc/shadow was
    # visible; 0.3 only if the SysV segment could be made (inside its own IPC namespace)
    assert points(batch, "snoop") == {"0.1": 1, "0.2": 0, "0.3": 2}
    assert "the grader has {" in message(batch, "snoop", "0.2")  # the kernel's environment...
    for name in ("gradebook.csv", "grades.json", "summary.json"):
        assert SECRET not in (batch["out"] / name).read_text()  # ...is not the grader's
    for f in (batch["out"] / "feedback").iterdir():
        assert SECRET not in f.read_text()
    assert "NNCOURSE_GRADER_SECRET" not in message(batch, "snoop", "0.2")
    assert not LOCK_FILE.exists(), "a file in /run/lock outlived grading"
    assert SHM_KEY not in _shm_keys(), "a SysV shared-memory segment outlived grading"
    sandbox = batch["records"]["snoop"]["sandbox"]
    assert sandbox["ipc"].startswith("own") and sandbox["pid"].startswith("own"), sandbox
    assert sandbox["environment"].startswith("allow-list")


def test_display_updates_are_capped_like_any_output(batch):
    assert points(batch, "displays") == {"0.1": 1, "0.2": 1, "0.3": 2}
    assert batch["records"]["displays"]["output_truncated"]
    assert (batch["out"] / "grades.json").stat().st_size < 2_000_000
