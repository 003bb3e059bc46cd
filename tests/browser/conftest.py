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


@pytest.fixture(scope="session")
def latency_floor(lab_server, chromium):
    """The trivial ipympl widget's latency in this server and browser (lab.measure_floor): the
    yardstick the latency table's ratios use. Ten moves keep it light; the benchmark moves it
    more, before and after the chapters, at 1x and 2x device pixel ratio."""
    return lab.measure_floor(chromium, lab_server, moves=10)
