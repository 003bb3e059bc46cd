"""The floating-point pin: in force after `import nncourse` whatever the environment says.

Each test starts a fresh interpreter, because the pinned variables are read once, when torch and
numpy are first imported.
"""

import json
import os
import subprocess
import sys

import pytest

from nncourse import fp_pin
from nncourse.course.notebooks import kernel_env

# What a maintainer or a CI runner might have exported (avx512 would crash torch on an AVX2-only
# CPU).
HOSTILE = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
           "ONEDNN_MAX_CPU_ISA": "ALL", "NPY_DISABLE_CPU_FEATURES": ""}

# The path each library took, and a fingerprint of the course's kind of work: a small MLP trained
# with GELU and tanh (ATen, MKL sgemm, oneDNN) and numpy's float64 transcendental functions.
PROBE = r"""
import hashlib, json, os, sys, ctypes
FIRST = os.environ.get("PROBE_IMPORT_FIRST")
if FIRST:
    __import__(FIRST)
import nncourse
import numpy as np, torch
torch.set_num_threads(1)
from numpy._core import _multiarray_umath as npcore
try:
    lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
    torch.ones(2, 2) @ torch.ones(2, 2)
    mkl_branch = lib.mkl_serv_cbwr_get(1)  # 3 = MKL_CBWR_COMPATIBLE, 1 = off, 2 = AUTO
except (OSError, AttributeError):
    mkl_branch = None
torch.manual_seed(0)
x = torch.randn(256, 2)
y = (x[:, 0] * x[:, 1] > 0).long()
net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.GELU(), torch.nn.Linear(32, 32),
                          torch.nn.Tanh(), torch.nn.Linear(32, 2))
opt = torch.optim.Adam(net.parameters(), lr=0.01)
for _ in range(60):
    loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
z = np.linspace(-20, 20, 4001)
blob = torch.cat([p.detach().ravel() for p in net.parameters()]).numpy().tobytes()
blob += np.concatenate([np.exp(z), np.sin(z), np.tanh(z)]).tobytes()
print(json.dumps({"aten": torch.backends.cpu.get_cpu_capability(), "mkl_branch": mkl_branch,
                  "numpy_v3": bool(npcore.__cpu_features__.get("X86_V3")),
                  "fingerprint": hashlib.sha1(blob).hexdigest()}))
"""


def probe(env_update: dict, first: str | None = None) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k not in fp_pin.PIN and k not in fp_pin.UNSET
           and k != fp_pin.OPT_OUT}
    env.update(env_update)
    if first:
        env["PROBE_IMPORT_FIRST"] = first
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_pin_overrides_whatever_the_environment_exports():
    hostile, err1 = probe(HOSTILE)
    plain, err2 = probe({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AUTO"})
    assert hostile["aten"] == plain["aten"] == "DEFAULT"
    assert hostile["mkl_branch"] in (3, None) and plain["mkl_branch"] in (3, None)
    assert not hostile["numpy_v3"] and not plain["numpy_v3"]
    assert hostile["fingerprint"] == plain["fingerprint"], "same bits whatever the environment says"
    assert "WARNING" not in err1 + err2


def test_opt_out_leaves_the_environment_alone():
    unpinned, err = probe({fp_pin.OPT_OUT: "0", "ATEN_CPU_CAPABILITY": "default",
                           "NPY_DISABLE_CPU_FEATURES": ""}, first="torch")
    assert unpinned["aten"] == "DEFAULT"  # the user's own choice, not the pin
    assert unpinned["mkl_branch"] in (1, None)  # MKL_CBWR not set
    assert "WARNING" not in err


def test_warns_in_one_line_when_torch_came_first():
    _, err = probe({"ATEN_CPU_CAPABILITY": "avx2"}, first="torch")
    lines = [line for line in err.splitlines() if "nncourse WARNING" in line]
    assert len(lines) == 1
    assert "torch and numpy were imported before nncourse" in lines[0]  # torch imports numpy
    assert "restart the kernel and run `import nncourse` first" in lines[0]


def test_no_warning_when_the_environment_was_already_pinned():
    # Kernels started by the course's tools get the pin in their environment from the start.
    _, err = probe(dict(fp_pin.PIN), first="torch")
    assert "WARNING" not in err


@pytest.mark.parametrize("opt_out", [None, "0"])
def test_kernel_env_carries_the_pin_unless_opted_out(monkeypatch, opt_out):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    if opt_out is None:
        monkeypatch.delenv(fp_pin.OPT_OUT, raising=False)
        env = kernel_env()
        assert {k: env[k] for k in fp_pin.PIN} == fp_pin.PIN
        assert "MKL_ENABLE_INSTRUCTIONS" not in env
    else:
        monkeypatch.setenv(fp_pin.OPT_OUT, opt_out)
        env = kernel_env()
        assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"


def test_not_in_force_names_the_late_libraries():
    pinned = dict(fp_pin.PIN)
    assert fp_pin.not_in_force(pinned, {"torch": 1, "numpy": 1}) == []
    assert fp_pin.not_in_force({}, {"numpy": 1}) == ["numpy"]
    assert fp_pin.not_in_force({}, {}) == []
    assert fp_pin.not_in_force({**pinned, "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
                               {"torch": 1}) == ["torch"]


def test_this_pytest_process_is_pinned():
    # The root conftest imports nncourse before anything imports torch, so the unit tests and the
    # nbval kernels (which inherit this environment) run on the pinned path.
    import torch
    from numpy._core import _multiarray_umath as npcore

    if fp_pin.enabled():
        assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
        assert not npcore.__cpu_features__.get("X86_V3")
