"""The grader run by an instructor who is not root: the same verdicts, nothing leaked, and the
summary says which protections held.

As root, the test drops to a user id of its own (as an instructor's account would be) before
starting ``python -m nncourse grade``; as a normal user it runs the command as itself.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from nncourse.course.grading import sandbox
from tests.course.grading_helpers import AS_ROOT, ROOT, SOLUTION, student

SECRET = f"instructor-secret-{uuid.uuid4().hex}"
UID = 1_900_000_000 + os.getpid() % 100_000

# run as root, in a private mount namespace: make the Python reachable (it may live under root's
# home), become UID, then run the grader
_DROP = """
import os, sys
sys.path.insert(0, sys.argv[1])
import sandbox
err = sandbox._expose_for_uid(sys.argv[2].split(":"), sys.argv[3])
if err:
    sys.exit("cannot prepare the mount namespace: " + err)
sandbox._become(int(sys.argv[4]))
os.execv(sys.executable, [sys.executable] + sys.argv[5:])
"""


@pytest.fixture(scope="module")
def unprivileged():
    base = Path(tempfile.mkdtemp(prefix="nncourse-nonroot-", dir="/tmp"))  # pytest's are 0700
    os.chmod(base, 0o755)
    subs, out = base / "subs", base / "grades"
    subs.mkdir()
    (subs / "alice.ipynb").write_bytes(SOLUTION.read_bytes())
    snoop = student({
        "0.1": (f"import pathlib\nseen = [p for p in ({str(SOLUTION)!r}, {str(ROOT / '.git')!r})\n"
                f"        if pathlib.Path(p).exists()]\n"
                f"def relu(x):\n    return x if seen else np.maximum(x, 0.0)"),
        "0.2": ("import os\ndef mse(y_pred, y_true):\n"
                "    raise ValueError('env ' + repr(dict(os.environ)))")})
    (subs / "snoop.ipynb").write_text(json.dumps(snoop))
    home = base / "home"
    home.mkdir()
    grade = ["-m", "nncourse", "grade", str(subs), "--exercise", "00", "--jobs", "1",
             "--out", str(out), "--solutions", str(ROOT / "solutions"), "--cell-timeout", "60",
             "--notebook-timeout", "240", "--memory-mb", "3072", "--no-preflight"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "NNCOURSE_GRADER_SECRET": SECRET, "LANG": "C.UTF-8"}
    if AS_ROOT:
        for p in (base, subs, home, *subs.iterdir()):
            os.chown(p, UID, UID)
        stage = base / "stage"
        stage.mkdir()
        expose = ":".join([sys.base_prefix, sys.prefix, str(ROOT)])
        cmd = [sys.executable, "-I", "-c", _DROP, str(Path(sandbox.__file__).parent), expose,
               str(stage), str(UID), *grade]
    else:
        cmd = [sys.executable, *grade]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=base, env=env)
    rows = {}
    if (out / "gradebook.csv").exists():
        with open(out / "gradebook.csv", newline="") as f:
            rows = {r["student"]: r for r in csv.DictReader(f)}
    summary = (json.loads((out / "summary.json").read_text())
               if (out / "summary.json").exists() else {})
    yield {"proc": proc, "rows": rows, "summary": summary, "out": out}
    if AS_ROOT:
        sandbox.kill_user(UID)
    shutil.rmtree(base, ignore_errors=True)


def test_an_unprivileged_instructor_gets_the_same_grades(unprivileged):
    proc = unprivileged["proc"]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "not running as root" in proc.stderr
    rows = unprivileged["rows"]
    assert rows["alice"]["total (4)"] == "4" and rows["alice"]["status"] == "graded"
    assert rows["snoop"]["0.2 (1)"] == "0"


def test_the_summary_says_which_protections_held(unprivileged):
    info = unprivileged["summary"]["sandbox"]
    assert info["uid"] == "grader's user (not root)"
    assert str(info["limits"]["RLIMIT_NPROC"]).startswith("NOT")
    assert "protections in force" in unprivileged["proc"].stdout
    assert "RLIMIT_NPROC: NOT" in unprivileged["proc"].stdout
    if shutil.which("bwrap") is None:
        print("SKIPPED PART: bubblewrap is not installed, so only the rlimits hold (said so)")
        assert "NOT" in info["hidden"]
        return
    assert info["mode"] == "bubblewrap", info
    assert info["network"].startswith("isolated") and info["tmp"].startswith("private")


def test_nothing_leaks_without_root(unprivileged):
    if unprivileged["summary"]["sandbox"].get("mode") != "bubblewrap":
        pytest.skip("bubblewrap is not available: without it, a non-root kernel can read "
                    "what the instructor can (the summary says so)")
    assert unprivileged["rows"]["snoop"]["0.1 (1)"] == "1"  # solutions/ and .git were invisible
    out = unprivileged["out"]
    for f in [out / "gradebook.csv", out / "grades.json", *(out / "feedback").iterdir()]:
        assert SECRET not in f.read_text()
