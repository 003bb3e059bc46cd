"""One call that makes a notebook reproducible: seeds, threads, print options, plot style.

Every notebook's first code cell runs ``nncourse.setup()``. What it fixes, and why:

* seeds of Python, NumPy and torch, so every run draws the same random numbers;
* the number of torch threads (default 1): large reductions are summed in a different order with a
  different thread count, which changes the last digits of results;
* deterministic torch algorithms, so no kernel picks a non-deterministic path;
* short print options, so printed tensors and arrays show 4 significant digits, not 8;
* the course's plot style (see :mod:`nncourse.plotting`).
"""

from __future__ import annotations

import os
import platform
import random
import sys
from importlib import metadata

import numpy as np
import torch

from nncourse._validate import check_int

__all__ = ["setup", "seed_everything", "environment_report", "progress_enabled",
           "progress"]

#: Versions the stored notebook outputs were produced with (see constraints.txt).
EXPECTED_VERSIONS = {
    "torch": "2.13.0",
    "numpy": "2.4",
    "scikit-learn": "1.9",
    "matplotlib": "3.11",
}
#: The Python the stored outputs were produced with (the course runs on 3.11-3.13).
TEXT_PYTHON = (3, 11)


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU).

    Parameters
    ----------
    seed : int
        A non-negative integer.
    """
    check_int(seed, "seed", low=0, fn="seed_everything")
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))


def setup(seed: int = 0, threads: int = 1, style: bool = True) -> None:
    """Make the rest of the notebook reproducible and give it the course's look.

    Parameters
    ----------
    seed : int
        Seed for Python, NumPy and torch.
    threads : int
        Number of threads torch may use. Results are bit-identical only for a fixed count; 1 is
        fast enough for the course's small networks.
    style : bool
        Apply the course's matplotlib style.
    """
    check_int(threads, "threads", fn="setup")
    seed_everything(seed)
    torch.set_num_threads(threads)
    _deterministic()
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    if style:
        from nncourse.style import use_style

        use_style()


def _deterministic() -> None:
    """``torch.use_deterministic_algorithms(True)`` without importing TorchInductor.

    The public call also sets ``torch._inductor.config.deterministic``, and importing that
    module imports torch._dynamo: about as long as importing torch itself (1-2 s of every
    notebook's start, and of every ``python -m nncourse check``), for a compiler the course never
    uses. When Inductor is not imported yet, its flag is set through the environment variable it
    reads when it is (``TORCHINDUCTOR_DETERMINISTIC``), so the outcome is the same.
    """
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if "torch._inductor.config" in sys.modules or set_flag is None:
        torch.use_deterministic_algorithms(True)
        return
    os.environ["TORCHINDUCTOR_DETERMINISTIC"] = "1"
    set_flag(True, warn_only=False)


def progress_enabled(requested: bool | None = None) -> bool:
    """Whether to show a progress bar.

    ``requested`` wins when given. Otherwise the environment variable ``NNCOURSE_PROGRESS``
    decides: ``0`` turns bars off (the notebook executor, the tests, the grader and ``check`` set
    it, so stored outputs contain no bars), ``1`` turns them on. Unset, bars are on in a Jupyter
    kernel (JupyterLab) and in a terminal, and off where stderr goes to a pipe or a file (a log,
    a worker started by another program), which a bar would only fill with lines.
    """
    if requested is not None:
        return bool(requested)
    setting = os.environ.get("NNCOURSE_PROGRESS", "")
    if setting in ("0", "1"):
        return setting == "1"
    return _in_jupyter_kernel() or _stderr_is_terminal()


def _in_jupyter_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class _NoBar:
    """What :func:`progress` returns without an iterable when bars are off: accepts a bar's
    calls and shows nothing."""

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress(iterable=None, desc: str | None = None, total: int | None = None, *,
             unit: str = "it", leave: bool = False, delay: float = 1.0,
             enabled: bool | None = None):
    """A progress bar (``tqdm.auto``) over ``iterable`` for a loop a learner waits on.

    In JupyterLab it is a widget, in a terminal a line on stderr. It appears only after
    ``delay`` seconds (a fast or cached loop shows nothing) and, with ``leave=False``, disappears
    when the loop ends. When bars are off (``NNCOURSE_PROGRESS=0``, which the notebook executor,
    the tests, the grader and ``check`` set; or ``enabled=False``) ``iterable`` itself is
    returned: no output at all, so stored outputs never contain a bar. Without ``iterable``, a
    bar to ``update()`` by hand (a do-nothing stand-in when off).

    Use it in one line: ``for lr in progress(LRS, desc="learning rates"):``.
    """
    if not progress_enabled(enabled):
        return _NoBar() if iterable is None else iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, delay=delay,
                disable=False)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def environment_report() -> str:
    """A short, stable report of the versions that matter, with a verdict.

    Only ``major.minor`` (``major.minor.patch`` for torch) is shown, so the report is the same on
    every machine that has the course's pinned environment.
    """
    lines = [f"Python {platform.python_version_tuple()[0]}.{platform.python_version_tuple()[1]}"]
    problems = []
    if sys.version_info[:2] != TEXT_PYTHON:
        problems.append("the text was produced with Python {}.{}, you have {}.{}".format(
            *TEXT_PYTHON, *sys.version_info[:2]))
    for dist, expected in EXPECTED_VERSIONS.items():
        found = _version(dist).split("+")[0]
        shown = ".".join(found.split(".")[: len(expected.split("."))])
        lines.append(f"{dist} {shown}")
        if shown != expected:
            problems.append(f"{dist} {expected} expected, found {found}")
    lines.append(f"torch threads: {torch.get_num_threads()}")
    if problems:
        lines.append("WARNING: " + "; ".join(problems) + " -- numbers may differ from the text. "
                     "Run `make lab` to get the course's environment.")
    else:
        lines.append("Environment OK: numbers you get will match the ones in the text.")
    return "\n".join(lines)
