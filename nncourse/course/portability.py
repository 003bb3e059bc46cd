"""``python -m nncourse portability [NOTEBOOK ...]``: which checked outputs depend on the CPU's
code path?

Stored outputs are made on one floating-point path (:mod:`nncourse.fp_pin`), so they reproduce on
any x86-64 machine. This tool answers the other question: would a *conclusion* survive a change of
path? It executes each notebook twice, one notebook at a time, under two paths (default: the pinned
path and this machine's fastest unpinned one, which differ in every kernel library: ATen, MKL,
oneDNN, numpy), and lists every cell nbval compares whose text differs, with a word-level diff::

    chapters/02_x.ipynb cell 13  [digits]  result = lab.train_relu(...)
        val acc {72.5%→72.7%} after 20 epochs

A cell is ``[digits]`` when only numbers moved, each by at most ``--rtol`` (relative); otherwise it
is ``[CHECK]``: read it and the prose around it -- a ranking, a "diverged" or a percentage may have
flipped. Paths: ``pinned``, ``best`` (the pin off, every library on its default path), ``default``
/ ``avx2`` / ``avx512`` (the pin off, ``ATEN_CPU_CAPABILITY`` set to that), and ``stored`` (the
outputs in the file, not executed). Run it before storing new outputs (``make test-portability``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nncourse import fp_pin
from nncourse.course import notebooks as nbs

__all__ = ["PATHS", "path_env", "checked_outputs", "CellDiff", "diff_notebooks", "word_diff",
           "classify", "format_report", "add_arguments", "run"]

PATHS = ("pinned", "best", "default", "avx2", "avx512", "stored")
IGNORED_TAGS = ("nbval-ignore-output", "nbval-skip")
# nbval compares these as text after the sanitizers of tests/nbval_sanitize.cfg.
_SANITIZE = [(re.compile(r"\x1b\[[0-9;]*m"), ""), (re.compile(r"0x[0-9a-fA-F]{6,16}"), "0xADDRESS"),
             (re.compile(r'src="data:image/[a-z]+;base64,[^"]*"'), 'src="data:image"')]
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TOKEN = re.compile(r"\s+|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\w+|[^\w\s]")


def path_env(name: str) -> dict[str, str]:
    """The kernel environment of floating-point path ``name`` (see the module docstring)."""
    env = nbs.kernel_env()
    if name == "pinned":
        env.pop(fp_pin.OPT_OUT, None)
        return fp_pin.pinned_env(env)
    if name not in PATHS or name == "stored":
        raise ValueError(f"path must be one of {', '.join(p for p in PATHS if p != 'stored')}, "
                         f"got {name!r}")
    for var in (*fp_pin.PIN, *fp_pin.UNSET):
        env.pop(var, None)
    env[fp_pin.OPT_OUT] = "0"
    if name != "best":
        env["ATEN_CPU_CAPABILITY"] = name
    return env


def _sanitize(text: str) -> str:
    for pattern, repl in _SANITIZE:
        text = pattern.sub(repl, text)
    return text


def checked_outputs(nb) -> dict[int, str]:
    """``{cell index: text}`` of every cell nbval compares (images excluded, as nbval does)."""
    found = {}
    for i, cell in nbs.iter_code(nb):
        tags = cell.get("metadata", {}).get("tags", [])
        if any(t in tags for t in IGNORED_TAGS) or not cell.source.strip():
            continue
        parts, stream = [], None
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                # A kernel splits a cell's prints into chunks at random; nbval joins them again.
                text = "".join(out.get("text", ""))
                if stream == out.get("name"):
                    parts[-1] += text
                else:
                    stream = out.get("name", "stdout")
                    parts.append(f"[{stream}] " + text)
                continue
            stream = None
            if kind in ("execute_result", "display_data"):
                for mime in ("text/plain", "text/html", "text/latex", "text/markdown"):
                    if mime in out.get("data", {}):
                        text = out["data"][mime]
                        parts.append(f"[{mime}] "
                                     + (text if isinstance(text, str) else "".join(text)))
            elif kind == "error":
                parts.append(f"[error] {nbs.error_text(out)}")
        found[i] = _sanitize("\n".join(parts))
    return found


def word_diff(old: str, new: str) -> str:
    """One line with the changed words marked ``{old→new}`` (``{-old}`` / ``{+new}`` when one
    side is empty)."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append("".join(a[i1:i2]))
        elif op == "replace":
            out.append("{" + "".join(a[i1:i2]) + "→" + "".join(b[j1:j2]) + "}")
        elif op == "delete":
            out.append("{-" + "".join(a[i1:i2]) + "}")
        else:
            out.append("{+" + "".join(b[j1:j2]) + "}")
    return "".join(out)


def _changed_pairs(old: str, new: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Aligned (old line, new line) pairs that differ, and lines only one side has."""
    a, b = old.splitlines(), new.splitlines()
    pairs, lonely = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "replace":
            n = min(i2 - i1, j2 - j1)
            pairs += list(zip(a[i1:i1 + n], b[j1:j1 + n]))
            lonely += [f"- {x}" for x in a[i1 + n:i2]] + [f"+ {y}" for y in b[j1 + n:j2]]
        elif op == "delete":
            lonely += [f"- {x}" for x in a[i1:i2]]
        elif op == "insert":
            lonely += [f"+ {y}" for y in b[j1:j2]]
    return pairs, lonely


def classify(old: str, new: str, rtol: float = 0.02) -> str:
    """``"digits"`` if only numbers changed, each by at most ``rtol`` relative, else ``"CHECK"``."""
    pairs, lonely = _changed_pairs(old, new)
    if lonely:
        return "CHECK"
    for x, y in pairs:
        a, b = _TOKEN.findall(x), _TOKEN.findall(y)
        if len(a) != len(b):
            return "CHECK"
        for s, t in zip(a, b):
            if s == t:
                continue
            if not (_NUMBER.fullmatch(s) and _NUMBER.fullmatch(t)):
                return "CHECK"
            u, v = float(s), float(t)
            if abs(u - v) > rtol * max(abs(u), abs(v), 1e-300):
                return "CHECK"
    return "digits"


@dataclass
class CellDiff:
    """One checked cell whose text differs between the two paths."""

    cell: int
    source: str
    old: str
    new: str
    verdict: str = ""
    lines: list[str] = field(default_factory=list)


def diff_notebooks(nb_a, nb_b, rtol: float = 0.02) -> list[CellDiff]:
    """The checked cells of ``nb_a`` whose text differs in ``nb_b`` (same cells, other outputs)."""
    a, b = checked_outputs(nb_a), checked_outputs(nb_b)
    diffs = []
    for i, old in a.items():
        new = b.get(i, "")
        if old == new:
            continue
        pairs, lonely = _changed_pairs(old, new)
        first = next((line for line in nb_a.cells[i].source.splitlines() if line.strip()), "")
        diffs.append(CellDiff(i, first, old, new, classify(old, new, rtol),
                              [word_diff(x, y) for x, y in pairs] + lonely))
    return diffs


def format_report(path: str, names: tuple[str, str], diffs: list[CellDiff], checked: int,
                  width: int = 110) -> str:
    """A compact, reviewable report of one notebook."""
    head = f"{path}: {len(diffs)} of {checked} checked cells differ ({names[0]} vs {names[1]})"
    lines = [head]
    for d in diffs:
        src = d.source if len(d.source) <= 60 else d.source[:57] + "..."
        lines.append(f"  cell {d.cell:<3} [{d.verdict}]  {src}")
        for line in d.lines:
            line = line.replace("[stdout] ", "")
            lines.append("      " + (line if len(line) <= width else line[:width - 3] + "..."))
    return "\n".join(lines)


def _run(path: Path, name: str, timeout: int):
    nb = nbs.read(path)
    if name == "stored":
        return nb
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # Errors are allowed: a cell that raises under one path and not the other is itself a finding.
    return nbs.execute(nb, cwd=path.parent, timeout=timeout, allow_errors=True, env=path_env(name))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to check (default: chapters/*.ipynb and solutions/*.ipynb)")
    parser.add_argument("--paths", default="pinned,best",
                        help=f"two floating-point paths to compare, from {', '.join(PATHS)} "
                             "(default: pinned,best)")
    parser.add_argument("--rtol", type=float, default=0.02,
                        help="largest relative change of a number still called [digits]")
    parser.add_argument("--save", type=Path, default=None,
                        help="folder to keep the executed notebooks in (for a closer look)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")


def run(args: argparse.Namespace) -> int:
    names = tuple(p.strip() for p in args.paths.split(","))
    if len(names) != 2 or any(n not in PATHS for n in names) or names[0] == names[1]:
        print(f"--paths needs two different paths from {', '.join(PATHS)}, got {args.paths!r}",
              file=sys.stderr)
        return 2
    paths = args.notebooks or sorted(Path("chapters").glob("*.ipynb")) + sorted(
        Path("solutions").glob("*.ipynb"))
    if not paths:
        print("no notebooks to check", file=sys.stderr)
        return 2
    flagged = 0
    for path in paths:  # one notebook at a time: the machine may be shared
        runs, times = [], []
        for name in names:  # back to back, so the two times are comparable (a rough bench)
            start = time.perf_counter()
            runs.append(_run(path, name, args.timeout))
            times.append(time.perf_counter() - start)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            for name, nb in zip(names, runs):
                nbs.write(nb, args.save / f"{path.parent.name}-{path.stem}.{name}.ipynb")
        diffs = diff_notebooks(*runs, rtol=args.rtol)
        flagged += sum(d.verdict == "CHECK" for d in diffs)
        print(format_report(path.as_posix(), names, diffs, len(checked_outputs(runs[0]))),
              flush=True)
        print("  (" + ", ".join(f"{n} {t:.0f} s" for n, t in zip(names, times) if n != "stored")
              + ")", flush=True)
    print(json.dumps({"cells_to_check": flagged}))
    return 1 if flagged else 0
