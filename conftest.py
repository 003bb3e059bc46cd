"""Test-wide settings, applied before any kernel starts (kernels inherit the environment).

* Jupyter, IPython and matplotlib state go to a temporary directory, not the home directory.
* Progress bars are off and thread counts fixed, exactly as when notebooks were executed for
  storage.
* nbval runs kernels in this environment, with the sanitizers in tests/nbval_sanitize.cfg.
"""

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from nncourse.course.notebooks import kernel_env

_state = tempfile.mkdtemp(prefix="nncourse-test-")
for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
    os.environ[var] = os.path.join(_state, var.lower())
    os.makedirs(os.environ[var], exist_ok=True)
os.environ.update({k: v for k, v in kernel_env().items() if k.startswith(("NNCOURSE", "PYTHONHASH",
                                                                          "MPLBACKEND", "PYDEVD"))})

ROOT = Path(__file__).parent
_STARTED = time.time()


def pytest_configure(config):
    # Kernels run in this interpreter's environment (.venv), whatever kernelspecs the machine has.
    if hasattr(config.option, "nbval_current_env"):
        config.option.nbval_current_env = True
        if config.option.nbval_sanitize_with is None:
            config.option.nbval_sanitize_with = str(ROOT / "tests" / "nbval_sanitize.cfg")


def pytest_ignore_collect(collection_path, config):
    if ".ipynb_checkpoints" in collection_path.parts:
        return True
    return None


def pytest_terminal_summary(terminalreporter):
    # Here, not in tests/browser/conftest.py: under xdist only the controller reports, and it
    # never loads conftest files below the root.
    path = ROOT / "tests" / "browser" / "artifacts" / "latency.json"
    if not path.exists() or path.stat().st_mtime < _STARTED:
        return
    from tests.browser.lab import latency_table

    data = json.loads(path.read_text())
    rows, floor = (data, None) if isinstance(data, list) else (data["rows"], data["floor"])
    terminalreporter.section("widget latency in JupyterLab (ms, input change -> redrawn figure; "
                             "x: ratio to the floor)")
    terminalreporter.write_line(latency_table(rows, floor))


def pytest_collection_modifyitems(items):
    # nbval skips cells tagged nbval-skip with a bare "Skipped"; say why for the Colab first cell.
    from nncourse.course.colab import is_colab_cell

    for item in items:
        cell = getattr(item, "cell", None)
        if cell is not None and is_colab_cell(cell):
            item.add_marker(pytest.mark.skip(
                reason="Google Colab's first cell: it runs only on Colab "
                       "(nncourse/course/colab.py)"))
