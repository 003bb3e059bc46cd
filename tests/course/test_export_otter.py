"""``nncourse export --to otter``: the real ``otter assign`` and ``otter run`` on the warm-up.

``otter run`` grades without Docker, in this environment. One submission with exercise 0.2 left
as otter's stub and the other two solved must score 1 + 0 + 2 of 4: full marks where the answer
is right and zero where it is the stub, in one run. (``otter grade`` needs Docker and is not
tested here.)
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nncourse.course import export as ex
from tests.course.grading_helpers import MSE, RELU, ROOT

BIN = Path(sys.executable).parent
ACC = ("def accuracy(logits, labels):\n"
       "    return (logits.argmax(dim=1) == labels).float().mean().item()")


def _otter(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(BIN / "otter"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_real_otter_assign_and_run_grade_each_exercise(tmp_path):
    if not (BIN / "otter").exists():
        pytest.skip("otter-grader is not installed (it comes with the [dev] extras: "
                    "make venv-dev)")
    t0 = time.monotonic()
    [master] = ex.export("otter", ROOT / "solutions", tmp_path / "otter", exercise="00")
    # --no-run-tests: the master's checks are run by the grading below and by strict nbval
    _otter(tmp_path, "assign", "--no-run-tests", str(master), "dist")
    student_nb = tmp_path / "dist" / "student" / "00_warmup.ipynb"
    [zipped] = (tmp_path / "dist" / "autograder").glob("*.zip")
    nb = json.loads(student_nb.read_text())
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert sum('grader.check("ex0_' in s for s in sources) == 3
    assert not any("np.maximum" in s for s in sources), "the solution leaked to students"
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if text.startswith("def relu("):
            cell["source"] = RELU
        elif text.startswith("def accuracy("):
            cell["source"] = ACC
        elif text.startswith("def mse("):
            assert "..." in text  # otter's stub; left as it is
    assert MSE not in json.dumps(nb)
    submission = tmp_path / "submission.ipynb"
    (tmp_path / "results").mkdir()
    submission.write_text(json.dumps(nb))
    _otter(tmp_path, "run", "-a", str(zipped), "-o", str(tmp_path / "results"), "--no-logo",
           str(submission))
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    scores = {t["name"]: (t.get("score"), t.get("max_score")) for t in results["tests"]
              if t["name"].startswith("ex")}
    assert scores == {"ex0_1": (1, 1), "ex0_2": (0, 1), "ex0_3": (2, 2)}, results
    print(f"otter assign + otter run: {time.monotonic() - t0:.0f} s")
