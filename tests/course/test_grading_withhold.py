"""The sandbox's copy of nncourse without the reference implementations (issue 26, item 1): an
answer that calls nncourse's own ``relu`` in any spelling finds a stub that says so."""

import shutil
import subprocess
import sys

import pytest

import nncourse
from nncourse.course import notebooks as nbs
from nncourse.course.grading import withhold
from nncourse.course.grading.batch import kernel_env
from tests.course.grading_helpers import ROOT


def test_a_reference_def_becomes_a_stub_and_the_rest_is_kept():
    source = ("import math\n\n@staticmethod\ndef relu(x):\n    '''doc'''\n    return max(x, 0)\n\n"
              "def other(x):\n    return relu(x)\n\nclass Dropout:\n    p = 0.5\n\n"
              "TABLE = {'relu': relu}\n")
    new, hits = withhold._strip_source(source, {"relu", "Dropout"}, "nncourse.m")
    assert hits == ["nncourse.m.relu", "nncourse.m.Dropout"]
    ns: dict = {}
    exec(compile(new, "m.py", "exec"), ns)  # noqa: S102 - our own generated source
    assert "return max" not in new and "def other(x):\n    return relu(x)" in new
    with pytest.raises(RuntimeError, match="nncourse.m.Dropout is withheld while grading"):
        ns["Dropout"]()


def test_a_reference_library_code_needs_keeps_a_private_copy_and_loses_its_name():
    source = ("def sigmoid(z):\n    return 1 / (1 + 2.718 ** -z)\n\n"
              "def prime(z, relu=None):\n    s = sigmoid(z)\n    return s * (1 - s)\n\n"
              "def shadow(sigmoid):\n    return sigmoid\n\n"
              "TABLE = {'sigmoid': sigmoid}\n__all__ = ['sigmoid']\n")
    new, hits = withhold._strip_source(source, {"sigmoid"}, "nncourse.m", keep={"sigmoid"},
                                       token="t")
    assert hits == ["nncourse.m.sigmoid"]
    ns: dict = {}
    exec(compile(new, "m.py", "exec"), ns)  # noqa: S102 - our own generated source
    assert abs(ns["prime"](0.0) - 0.25) < 1e-9 and ns["TABLE"]["sigmoid"](0.0) == 0.5
    assert ns["shadow"](7) == 7  # a parameter of the same name is left alone
    for spelling in (ns["sigmoid"], ns.get("sigmoid")):
        with pytest.raises(RuntimeError, match="nncourse.m.sigmoid is withheld while grading"):
            spelling(0.0)


def test_another_module_reaches_a_kept_reference_through_its_private_name():
    source = ("from nncourse.m import sigmoid\nfrom nncourse import m\n\n"
              "def f(z):\n    return sigmoid(z) + m.sigmoid(z)\n")
    imported, edits = withhold._imports_of_kept(source, "nncourse.other", False,
                                                {"nncourse.m.sigmoid"}, "t")
    assert imported == {"sigmoid": "_nncourse_lib_sigmoid_t"} and len(edits) == 1
    new, _ = withhold._strip_source(source, {"sigmoid"}, "nncourse.other", set(), imported,
                                    "t", edits)
    assert new.count("_nncourse_lib_sigmoid_t") == 3 and "import sigmoid" not in new


def test_the_plan_for_the_warm_up_withholds_every_answer_and_the_checks():
    the_plan = withhold.plan(nbs.read(ROOT / "solutions" / "00_warmup.ipynb"))
    assert the_plan.in_kernel == {} and the_plan.checks
    assert the_plan.all_names == {"relu", "mse", "accuracy"}


@pytest.mark.parametrize("chapter", ["01_backprop_from_scratch", "02_vanishing_exploding_gradients",
                                     "11_hyperparameter_tuning"])
def test_checks_that_lend_functions_and_trials_are_probed_to_the_end(chapter):
    # 1.4's first call (relative_error) crosses, its later numerical_gradient(f, x) lends f;
    # chapter 02's 2.5 reads the notebook's `moons` (the master runs whole, so it is there);
    # chapter 11 lends trials, scoring functions and models: all run in the grader
    the_plan = withhold.plan(nbs.read(ROOT / "solutions" / f"{chapter}.ipynb"))
    assert the_plan.in_kernel == {} and the_plan.checks and the_plan.all_names


def test_the_full_run_of_the_master_traces_what_the_sandbox_side_calls(tmp_path):
    # chapter 01's 1.5 builds a backprop.MLP, whose training calls dense_backward and sigmoid
    import json

    report = tmp_path / "plan.json"
    proc = subprocess.run([sys.executable, "-m", "nncourse.course.grading.withhold",
                           str(ROOT / "solutions" / "01_backprop_from_scratch.ipynb"),
                           str(report)], capture_output=True, text=True, timeout=1200,
                          cwd=tmp_path, env=dict(kernel_env(ROOT), MPLBACKEND="Agg"))
    found = json.loads(report.read_text())
    assert found["in_kernel"] == {}, (found, proc.stderr[-800:])
    assert {"nncourse.backprop.sigmoid", "nncourse.backprop.dense_backward"} <= \
        set(found["needed"])


def test_a_check_that_must_run_in_the_kernel_keeps_the_package_whole():
    master = nbs.read(ROOT / "solutions" / "00_warmup.ipynb")
    check = next(c for c in master.cells if nbs.role(c) == nbs.CHECK)
    check.source = "x = 1\n" + check.source  # no longer one call: the kernel runs this cell
    the_plan = withhold.plan(master)
    assert list(the_plan.in_kernel) == [nbs.exercise_id(check)]
    assert the_plan.all_names == set() and not the_plan.checks


@pytest.fixture(scope="module")
def stripped(tmp_path_factory):
    package = tmp_path_factory.mktemp("pkg")
    shutil.copytree(ROOT / "nncourse", package / "nncourse",
                    ignore=shutil.ignore_patterns("__pycache__", "course"))
    the_plan = withhold.plan(nbs.read(ROOT / "solutions" / "00_warmup.ipynb"))
    return package, withhold.withhold(package, the_plan, env=kernel_env(package))


@pytest.mark.parametrize("spelling", [
    "import nncourse.activations as a; a.relu(x)",
    "import nncourse.activations as a; getattr(a, 're' + 'lu')(x)",
    "import nncourse.activations as a; vars(a)['relu'](x)",
    "import nncourse.activations as a; a.__dict__['relu'](x)",
    "import importlib; importlib.import_module('nncourse.activations').relu(x)",
])
def test_every_spelling_of_the_reference_finds_the_stub(stripped, spelling):
    package, done = stripped
    # relu is in activations' registry too, which the warm-up's run does not use: withheld in full
    assert "nncourse.activations.relu" in done
    assert "nncourse.checks" in done
    code = f"import numpy as np, nncourse; x = np.array([-1.0, 2.0]); {spelling}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=package, env=kernel_env(package), timeout=120)
    assert proc.returncode != 0 and "is withheld while grading" in proc.stderr, proc.stderr[-500:]


def test_what_the_notebooks_need_still_imports_and_works(stripped):
    package, _ = stripped
    code = ("import nncourse; nncourse.setup(); from nncourse.checks import ch00 as check\n"
            "from nncourse.models import make_mlp; import torch\n"
            "print(make_mlp(2, 2, width=4, activation='relu')(torch.zeros(1, 2)).shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=package, env=kernel_env(package), timeout=120)
    assert proc.returncode == 0 and "torch.Size([1, 2])" in proc.stdout, proc.stderr[-800:]
    assert not hasattr(sys.modules.get("nncourse"), "nothing") and nncourse  # this process: real


def test_chapter_01_is_graded_in_the_grader_and_borrowing_is_caught(tmp_path):
    # 1.4 lends the checker a function f that reads x after the student's code perturbed it in
    # place: the call-back carries x's state to the grader and f's value back, through the
    # kernel's stdin channel. Chapter 01's own answer to 1.5 uses backprop.MLP, which needs the
    # withheld sigmoid: its name is withheld, backprop keeps a private copy, so the master keeps
    # full marks without falling back, and a checker that borrows numerical_gradient by name
    # finds the stub
    import csv
    import json

    sol = json.loads((ROOT / "solutions" / "01_backprop_from_scratch.ipynb").read_text())
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    (subs / "honest.ipynb").write_text(json.dumps(sol))
    for cell in sol["cells"]:
        if cell.get("metadata", {}).get("nncourse", {}).get("exercise") == "1.4" and \
                "answer" in cell["metadata"].get("tags", []):
            cell["source"] = ("import importlib\n"
                              "_g = importlib.import_module('nncourse.' + 'gradcheck')\n"
                              "def numerical_gradient(f, x, eps=1e-6):\n"
                              "    return getattr(_g, 'numerical_' + 'gradient')(f, x, eps)\n"
                              "def relative_error(a, n):\n"
                              "    return vars(_g)['relative_error'](a, n)\n")
    (subs / "borrower.ipynb").write_text(json.dumps(sol))
    proc = subprocess.run(
        [sys.executable, "-m", "nncourse", "grade", str(subs), "--exercise", "01", "--jobs", "2",
         "--out", str(out), "--cell-timeout", "120", "--notebook-timeout", "400"],
        capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(out / "gradebook.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    total = next(k for k in rows["honest"] if k.startswith("total ("))
    possible = total[len("total ("):-1]
    assert rows["honest"][total] == possible, rows["honest"]
    borrower = rows["borrower"]
    assert borrower["1.4 (2)"] == "0" or "1.4:" in borrower["flags"], borrower
    assert "master loses points without the reference implementations" not in proc.stdout
    assert borrower["1.4 (2)"] == "0", borrower
    assert "is withheld while grading" in (out / "feedback" / "borrower.txt").read_text()
    grades = json.loads((out / "grades.json").read_text())
    records = grades if isinstance(grades, list) else grades.get("students", grades)
    text = json.dumps(records)
    assert "check(s) run in the grader's own process" in text and "NOT: check cell" not in text
