"""Browser-test fixtures: one JupyterLab server and one headless Chromium for the whole module."""

import json
import time
from pathlib import Path

import pytest

from tests.browser import lab

ARTIFACTS = Path(__file__).parent / "artifacts"
_STARTED = time.time()


@pytest.fixture(scope="session")
def lab_server():
    reason = lab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = lab.LabServer(lab.widget_notebooks())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium(lab_server):
    with lab.browser(lab_server.tmp / "chromium-profile") as ctx:
        yield ctx


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter):
    path = ARTIFACTS / "latency.json"
    if not path.exists() or path.stat().st_mtime < _STARTED:
        return
    terminalreporter.section("widget latency in JupyterLab (ms, input change -> redrawn figure)")
    terminalreporter.write_line(lab.latency_table(json.loads(path.read_text())))
