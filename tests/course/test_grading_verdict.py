"""Attacks on *where the verdict is decided* (issue 26, item 1): each earned unearned marks without
a flag while the checks ran inside the student's kernel. Now the grader's own process runs each
check and calls the student's functions in the sandbox through a proxy, so they earn nothing.

The reference implementation is not in the sandbox's copy of nncourse (a stub says it is
withheld), and nothing the student's side replies can move a check into the kernel.
"""

import csv
import json
import subprocess
import sys

import pytest

from tests.course.grading_helpers import ACC, MSE, RELU, student

# attack 1: contextlib.contextmanager patched so that exercise() swallows every error
ATTACK_1_PATCH = ("import contextlib as _c\n"
                  "_orig = _c.contextmanager\n"
                  "def _cm(fn):\n"
                  "    made = _orig(fn)\n"
                  "    class Wrap:\n"
                  "        def __init__(self, *a, **k):\n"
                  "            self.cm, self.a, self.k = made(*a, **k), a, k\n"
                  "        def __enter__(self):\n"
                  "            return self.cm.__enter__()\n"
                  "        def __exit__(self, *exc):\n"
                  "            if exc[0] is None:\n"
                  "                return self.cm.__exit__(*exc)\n"
                  "            p = self.k.get('points', 1)\n"
                  "            s = 's' * (p != 1)\n"
                  "            print(f'Exercise {self.a[0]} passed ({p} point{s})')\n"
                  "            return True\n"
                  "    return Wrap\n"
                  "vars(_c).update(contextmanager=_cm)\n")

ATTACKS = {
    # 1. contextlib.contextmanager patched through an alias: the re-imported checks' exercise()
    #    swallows every error and prints the pass line
    "contextmanager": ("0.1", {
        "0.1": (ATTACK_1_PATCH +
                "def relu(x):\n    raise NotImplementedError"),
        "0.2": MSE, "0.3": ACC}),
    # 2. an IPython input transformer, reached through exit._ip, turns check cells into None
    "transformer": ("0.1", {
        "0.1": ("_ip = exit._ip\n"
                "def _t(lines):\n"
                "    return ['None\\n'] if any('check.' in ln for ln in lines) else lines\n"
                "_ip.input_transformers_post.append(_t)\n"
                "def relu(x):\n    return x"),
        "0.2": MSE, "0.3": ACC}),
    # 3. the grader's snapshot poisoned so that a replaced np.allclose is not restored
    "snapshot": ("0.2", {
        "0.1": RELU,
        "0.2": ("import sys, numpy\n"
                "_yes = lambda *a, **k: True\n"
                "vars(numpy)['allclose'] = _yes\n"
                "sys._nncourse_grader_snapshot['numpy'][1]['allclose'] = _yes\n"
                "def mse(y_pred, y_true):\n    return 0.0"),
        "0.3": ACC}),
    # 4. a thread re-patches np.allclose after the guard restores it, and sys.stdout is wrapped
    #    so that the guard's report line says nothing was found
    "thread": ("0.3", {
        "0.1": RELU, "0.2": MSE,
        "0.3": ("import json, sys, threading, time, numpy\n"
                "class _Filter:\n"
                "    def __init__(self, inner):\n"
                "        self.inner = inner\n"
                "    def write(self, text):\n"
                "        if text.startswith('NNCOURSE-GRADER-GUARD '):\n"
                "            report = json.loads(text.split(' ', 1)[1])\n"
                "            report['found'] = []\n"
                "            text = 'NNCOURSE-GRADER-GUARD ' + json.dumps(report)\n"
                "        return self.inner.write(text)\n"
                "    def __getattr__(self, name):\n"
                "        return getattr(self.inner, name)\n"
                "vars(sys)['stdout'] = _Filter(sys.stdout)\n"
                "def _loop():\n"
                "    while True:\n"
                "        vars(numpy)['allclose'] = lambda *a, **k: True\n"
                "        time.sleep(0.001)\n"
                "threading.Thread(target=_loop, daemon=True).start()\n"
                "def accuracy(logits, labels):\n    return 0.5")}),
    # 5. the expected values read from the check's stack frame
    "frame": ("0.1", {
        "0.1": ("import sys\n"
                "def relu(x):\n"
                "    return sys._getframe(2).f_locals['expected']"),
        "0.2": MSE, "0.3": ACC}),
    # 6. nncourse's reference implementation (nncourse.activations.relu) called through getattr
    "reference": ("0.1", {
        "0.1": ("import nncourse.activations as _a\n"
                "def relu(x):\n"
                "    return getattr(_a, 're' + 'lu')(x)"),
        "0.2": MSE, "0.3": ACC}),
    # 6b. the same through vars() and the activations registry, spelled so no scan can see it
    "registry": ("0.1", {
        "0.1": ("import importlib\n"
                "_m = importlib.import_module('nncourse.' + 'activations')\n"
                "def relu(x):\n"
                "    return vars(_m)['Z' + 'OO']['relu'].f(x)"),
        "0.2": MSE, "0.3": ACC}),
    # 7. force the check back into the kernel by returning what the proxy cannot carry once,
    #    then win there with the contextmanager patch of attack 1
    "fallback": ("0.1", {
        "0.1": (ATTACK_1_PATCH +
                "def relu(x):\n    return object()"),
        "0.2": MSE, "0.3": ACC}),
}


# honest answers that change library state the way libraries do: full marks, no flag
BENIGN = {
    # importing torch._dynamo (torch.compile does) wraps torch.manual_seed with functools.wraps
    "dynamo": {"0.1": "import torch._dynamo\n" + RELU, "0.2": MSE, "0.3": ACC},
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("verdict")
    subs, out = base / "submissions", base / "grades"
    subs.mkdir()
    for name, (_, answers) in ATTACKS.items():
        (subs / f"{name}.ipynb").write_text(json.dumps(student(answers)))
    for name, answers in BENIGN.items():
        (subs / f"{name}.ipynb").write_text(json.dumps(student(answers)))
    proc = subprocess.run(
        [sys.executable, "-m", "nncourse", "grade", str(subs), "--exercise", "00", "--jobs", "2",
         "--out", str(out), "--cell-timeout", "60", "--notebook-timeout", "240",
         "--memory-mb", "3072", "--no-preflight"],
        capture_output=True, text=True, timeout=900, cwd=base)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(out / "gradebook.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_attack_on_the_verdict_earns_nothing_or_is_flagged(graded, attack):
    exercise = ATTACKS[attack][0]
    row = graded[attack]
    points = next(v for k, v in row.items() if k.startswith(f"{exercise} ("))
    assert points == "0" or exercise in row["flags"], (attack, row)


@pytest.mark.parametrize("name", list(BENIGN))
def test_an_honest_answer_that_imports_library_internals_is_not_flagged(graded, name):
    row = graded[name]
    assert row["flags"] == "" and row["status"] == "graded", row
    assert next(v for k, v in row.items() if k.startswith("total (")) == "4", row
