"""Browser-test fixtures: one JupyterLab server and one headless Chromium for the whole module."""

from pathlib import Path

import pytest

from tests.browser import lab

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="session")
def lab_server():
    reason = lab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = lab.LabServer()
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
