"""The sandbox on its own, with tiny notebooks (no torch): what a kernel can see and keep."""

import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from nncourse.course.grading import batch
from tests.course.grading_helpers import ROOT

PROBE = """
import json, os, pathlib
def visible(p):
    try:
        return sorted(os.listdir(p)) if os.path.isdir(p) else pathlib.Path(p).read_text()[:20]
    except OSError as exc:
        return None
print("PROBE " + json.dumps({
    "env": sorted(os.environ),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "tmp": sorted(os.listdir("/tmp")),
    "scratch": visible(str(pathlib.Path.cwd().parents[1])),
    "works": visible(str(pathlib.Path.cwd().parent)),
    "solutions": visible(ROOT + "/solutions"),
    "git": visible(ROOT + "/.git"),
    "checkout": visible(ROOT),
    "home": visible(os.path.expanduser("~root")),
}))
"""


def _bound_under_tmp() -> set[str]:
    """Top-level names under /tmp of the paths the sandbox binds read-only (the venv, Python)."""
    names = set()
    for path in {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), ROOT.resolve()}:
        if path.is_relative_to("/tmp") and path != Path("/tmp"):
            names.add(path.relative_to("/tmp").parts[0])
    return names


def _probe(mode):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PROBE.replace("ROOT", repr(str(ROOT))))]
    scratch = batch._Scratch([ROOT / "solutions"], mode=mode)
    try:
        result = batch._execute(nb, scratch, batch.Limits(cell_timeout=60), budget=120)
    finally:
        scratch.cleanup()
    text = "".join(o.get("text", "") for o in result["notebook"].cells[0].outputs)
    line = next(ln for ln in text.splitlines() if ln.startswith("PROBE "))
    return json.loads(line[len("PROBE "):]), result["sandbox"]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
def test_bubblewrap_kernel_sees_only_the_allow_list(monkeypatch):
    monkeypatch.setenv("NNCOURSE_GRADER_SECRET", "hunter2")
    seen, info = _probe("bwrap")
    assert info["mode"] == "bubblewrap"
    assert "NNCOURSE_GRADER_SECRET" not in seen["env"] and "PATH" in seen["env"]
    launcher = {"HOME", "TMPDIR", "IPYTHONDIR", "MPLCONFIGDIR"}
    ipykernel = {"CLICOLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "GIT_PAGER", "PAGER", "TERM",
                 "QT_API", "PYDEVD_USE_FRAME_EVAL", "PWD"}  # set by ipykernel and bwrap
    extra = set(seen["env"]) - set(batch.kernel_env(ROOT)) - launcher - ipykernel
    assert all(k.startswith(("JUPYTER_", "JPY_")) for k in extra), extra
    assert len(seen["pids"]) <= 3, seen["pids"]  # the reaper, the kernel (and a helper)
    # /tmp is private: only the path down to its own work directory exists there; not the
    # grader's jobs/ (connection keys), not other kernels' work directories
    # (a checkout cloned under /tmp shows the path down to its bound, read-only .venv)
    own = [t for t in seen["tmp"] if t not in _bound_under_tmp()]
    assert len(own) <= 1 and all(t.startswith("nncourse-grade-") for t in own), seen["tmp"]
    assert seen["scratch"] == ["pkg", "work"] and len(seen["works"]) == 1
    assert seen["solutions"] is None and seen["git"] is None
    assert seen["checkout"] in (None, [".venv"]), seen["checkout"]  # at most the venv's parent


def test_without_bubblewrap_the_weaker_sandbox_says_so(monkeypatch):
    monkeypatch.setenv("NNCOURSE_GRADER_SECRET", "hunter2")
    seen, info = _probe("unshare")
    assert "NNCOURSE_GRADER_SECRET" not in seen["env"]  # the environment allow-list holds anyway
    assert info["pid"].startswith("NOT") and info["ipc"].startswith("NOT")
    assert info["mode"].startswith("unshare")
    if os.geteuid() == 0:
        assert seen["solutions"] in (None, []), "root hides solutions/ even without bwrap"
