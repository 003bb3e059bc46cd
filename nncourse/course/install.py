"""Install the course into the running Python environment: ``make venv`` and Binder call this.

    python -m nncourse.course.install [--torch-index URL] [--extras dev]

It does three things, with the standard library only (it runs before anything is installed):

1. **torch's CPU build on Linux.** PyPI's Linux ``torch`` wheel is the CUDA build: with it pip also
   pulls ~18 ``nvidia-*`` packages (a ~5.5 GB venv instead of ~1.7 GB). PyTorch's CPU wheel index
   serves ``torch==2.13.0+cpu``, which satisfies the pin ``torch==2.13.0`` of constraints.txt and
   sorts above PyPI's ``2.13.0``, so pip takes it when the index is given as an extra index.
2. **No long retries when that index cannot be reached.** pip asks an extra index about *every*
   package it resolves, and retries each failed request five times with back-off (~8 s a package,
   about 15 minutes for this course when the host does not resolve). So the index is probed once,
   with a short timeout, and left out (with a warning) when it does not answer.
3. **Course-wide JupyterLab settings** (:data:`LAB_SETTINGS`) written to
   ``<environment>/share/jupyter/lab/settings/overrides.d/nncourse.json``, JupyterLab's place for
   defaults of one installation (``overrides.d`` so a user's own ``overrides.json`` stays theirs):
   they come with the environment and never touch the user's home directory. A user's settings
   (Settings menu) still win over them.

The exact versions live in constraints.txt; pyproject.toml states only ranges.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: PyTorch's CPU wheel index, the default of the Makefile's ``TORCH_INDEX`` on Linux.
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"

#: Defaults for every JupyterLab started from this environment (a user's own settings still win).
LAB_SETTINGS = {
    # No "Would you like to get notified about official Jupyter news?" toast over the course, and
    # no update check: the course runs offline.
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


def probe(url: str, timeout: float = 5.0) -> str | None:
    """Why ``url`` cannot be reached, or None if it answers (any HTTP status counts as an
    answer)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # the server answered: pip will get its answers too
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return f"{type(reason).__name__}: {reason}"


def pip_install_args(extras: str = "", torch_index: str | None = None, editable: bool = True,
                     project: str | Path = ".") -> list[str]:
    """The arguments after ``python -m pip install`` that install the course with its pins."""
    target = f"{project}[{extras}]" if extras else str(project)
    args = ["-c", str(ROOT / "constraints.txt")]
    if torch_index:
        args += ["--extra-index-url", torch_index]
    return args + (["-e", target] if editable else [target])


def default_torch_index(system: str | None = None) -> str:
    """The Makefile's default: the CPU index on Linux, none elsewhere (PyPI's torch is CPU
    there)."""
    import platform

    return CPU_TORCH_INDEX if (system or platform.system()) == "Linux" else ""


def cuda_packages(report: dict) -> list[str]:
    """What of a ``pip install --report`` would bring CUDA: nvidia-*/cuda-* packages, triton (the
    GPU compiler only CUDA builds of torch require), or a torch whose version names a CUDA build."""
    found = []
    for item in report.get("install", []):
        name = item["metadata"]["name"].lower().replace("_", "-")
        version = item["metadata"]["version"]
        if (name.startswith(("nvidia-", "cuda-")) or name == "triton"
                or (name == "torch" and "+cu" in version)):
            found.append(f"{name}=={version}")
    return found


def lab_settings_path(prefix: str | Path = sys.prefix) -> Path:
    return Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "nncourse.json"


def write_lab_settings(prefix: str | Path = sys.prefix, extra: dict | None = None) -> Path:
    """Write :data:`LAB_SETTINGS` (merged with ``extra``) as the environment's lab overrides."""
    path = lab_settings_path(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**LAB_SETTINGS, **(extra or {})}, indent=2) + "\n")
    return path


def resolve_torch_index(torch_index: str | None, timeout: float = 5.0) -> str | None:
    """``torch_index`` if it answers within ``timeout``, else None (with a warning printed)."""
    if not torch_index:
        return None
    reason = probe(torch_index, timeout)
    if reason is None:
        return torch_index
    print(f"WARNING: the torch index {torch_index} does not answer ({reason}); installing torch "
          "from the default index instead. On Linux that may be the CUDA build (several GB). "
          "Set TORCH_INDEX= to silence this, or to another index.", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nncourse.course.install",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--torch-index", default="",
                        help="extra index for torch's CPU build (empty: the default index only)")
    parser.add_argument("--extras", default="", help="optional dependencies, e.g. 'dev'")
    parser.add_argument("--probe-timeout", type=float, default=5.0)
    parser.add_argument("--not-editable", action="store_true",
                        help="a regular install; default: editable, so edits take effect")
    parser.add_argument("--lab-settings-only", action="store_true",
                        help="only write the JupyterLab settings (conda users, after the env)")
    args = parser.parse_args(argv)
    if args.lab_settings_only:
        print(f"JupyterLab settings for this environment: {write_lab_settings()}")
        return 0

    index = resolve_torch_index(args.torch_index, args.probe_timeout)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet",
           *pip_install_args(args.extras, index, editable=not args.not_editable, project=ROOT)]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if rc:
        return rc
    print(f"JupyterLab settings for this environment: {write_lab_settings()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
