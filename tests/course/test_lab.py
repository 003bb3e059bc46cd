"""The JupyterLab launcher `make lab` runs (nncourse/course/lab.py); the browser test drives it."""

import socket

from nncourse.course import lab


def test_port_8888_when_free_else_another():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        other = lab.pick_port(busy)
        assert other != busy and other > 0
    assert lab.pick_port(other) == other


def test_command_serves_the_repository_and_opens_the_start_notebook(tmp_path):
    cmd = lab.lab_command(tmp_path, 8899, "tok", open_browser=False, extra=["--foo"])
    assert cmd[1:4] == ["-m", "jupyter", "lab"]
    assert f"--ServerApp.root_dir={tmp_path}" in cmd
    assert "--LabApp.default_url=/lab/tree/chapters/00_start_here.ipynb?file-browser-path=/" in cmd
    assert {"--ServerApp.port=8899", "--ServerApp.port_retries=0", "--IdentityProvider.token=tok",
            "--ServerApp.open_browser=False", "--LabApp.news_url="} <= set(cmd)
    assert cmd[-1] == "--foo"
    assert (lab.ROOT / lab.START).exists()


def test_printed_address_is_the_start_notebook_with_the_token():
    assert lab.start_url(8890, "abc") == (
        "http://127.0.0.1:8890/lab/tree/chapters/00_start_here.ipynb?file-browser-path=/&token=abc")
