"""Start JupyterLab on the course: the one command line ``make lab`` and the browser test use.

    python -m nncourse.course.lab [--root DIR] [--port N] [--token T] [--no-browser]
                                  [JUPYTER ARGS...]

* The server's root is the repository, so the file browser shows ``chapters/``, ``exercises/``,
  ``solutions/``, ``docs/`` and the README; ``chapters/00_start_here.ipynb`` is the page it opens,
  with the file browser at that root.
* Port 8888 when free, otherwise any free port; the token is chosen here, so the full address can
  be printed plainly before JupyterLab's own log starts.
* No news feed, no update check: the course runs offline (the matching lab settings come with the
  environment, see :mod:`nncourse.course.install`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START = "chapters/00_start_here.ipynb"
# The start notebook open, the file browser at the root (JupyterLab opens a file's folder
# otherwise).
DEFAULT_URL = f"/lab/tree/{START}?file-browser-path=/"
HOST = "127.0.0.1"
PREFERRED_PORT = 8888


def pick_port(preferred: int = PREFERRED_PORT, host: str = HOST) -> int:
    """``preferred`` if nothing listens there, else a free port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError(f"no free port on {host}")


def start_url(port: int, token: str, host: str = HOST) -> str:
    return f"http://{host}:{port}{DEFAULT_URL}&token={token}"


def lab_command(root: Path, port: int, token: str, open_browser: bool = True,
                extra: list[str] | None = None) -> list[str]:
    """The JupyterLab command line (run with this environment's Python)."""
    cmd = [sys.executable, "-m", "jupyter", "lab",
           f"--ServerApp.root_dir={root}", f"--LabApp.default_url={DEFAULT_URL}",
           f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}",
           # Fail rather than move to another port than the one printed.
           "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}",
           f"--ServerApp.open_browser={open_browser}",
           # Offline: no news feed, no update check.
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI run as root; JupyterLab refuses otherwise
    return cmd + list(extra or [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nncourse.course.lab",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="folder to serve (the repository)")
    parser.add_argument("--port", type=int, default=None, help="default: 8888 or a free port")
    parser.add_argument("--token", default=None, help="default: a random token")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args, extra = parser.parse_known_args(argv)
    port = args.port or pick_port()
    token = args.token or secrets.token_hex(24)
    cmd = lab_command(args.root.resolve(), port, token, not args.no_browser, extra)
    print(f"\nnncourse: JupyterLab is starting on the course. Open this address in your browser\n"
          f"(it opens by itself unless --no-browser); Ctrl-C here stops JupyterLab:\n\n"
          f"    {start_url(port, token)}\n", flush=True)
    os.execv(cmd[0], cmd)  # JupyterLab takes this process: Ctrl-C and the PID reach it directly
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
