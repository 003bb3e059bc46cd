"""Keep nncourse's reference implementations out of the sandbox (issue 26, item 1).

A student asked to write ``relu`` could call ``nncourse.activations.relu`` instead -- through
``getattr``, ``vars(module)``, ``module.__dict__``, a registry such as ``activations.ZOO``, or
any other spelling. Scanning the answer's source cannot see every spelling, and anything that
runs in the student's process can be undone by the student. So the grader (a trusted process)
decides what code the sandbox *has*: in the kernel's copy of the package, every top-level
function or class of nncourse that an exercise asks the student to write is replaced by a stub
that raises :class:`RuntimeError` saying so. Calling it in any spelling then fails the check
with that message; the real code exists only in the grader's own process, where the checks run.

What to withhold is decided by the grader before any student code runs (:func:`plan`): it runs
every check in its own process on the master's answers, each call through a proxy. When every
call of every check crosses, the references and the course's checks (``nncourse.checks``, whose
code computes expected values) are withheld. When a check cannot cross (it passes a callable,
e.g. chapter 01's gradient checker and chapter 11's objectives) it runs in the kernel and needs
the package whole there: then nothing is withheld, and the summary says so.

:func:`withhold` then verifies that the stripped package still imports (a module that *calls* a
withheld function at import time would break every kernel); if it does not, nothing is withheld
and the summary says so.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Plan", "plan", "withhold", "WITHHELD"]

WITHHELD = "is withheld while grading"  # in every stub's message


@dataclass
class Plan:
    """What to withhold from one notebook's sandbox."""

    names: dict[str, set[str]] = field(default_factory=dict)  # exercise -> reference names
    in_kernel: dict[str, str] = field(default_factory=dict)   # exercise -> why its check cannot
    checks: bool = False                                       # withhold nncourse.checks too

    @property
    def all_names(self) -> set[str]:
        return set().union(*self.names.values()) if self.names else set()


def _definition(node) -> bool:
    """An instructor statement the answers may rely on and that runs no experiment: imports,
    function and class definitions, and ALL_CAPS constants (``EPS_GRID = np.logspace(...)``)."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    return isinstance(node, ast.Assign) and all(
        isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)


def _master_functions(master) -> dict:
    """The master's answer functions, defined in this process (the instructor's own code).

    Only the instructor cells' definitions run (:func:`_definition`), then the answer cells
    (which define functions), so nothing of the notebook's experiments is executed here.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    from nncourse.course import notebooks as nbs
    from nncourse.course.colab import is_colab_cell

    ns: dict = {}
    for cell in master.cells:
        role = nbs.role(cell)
        if cell.cell_type != "code" or role not in (None, nbs.ANSWER) or is_colab_cell(cell):
            continue
        try:
            tree = ast.parse(TransformerManager().transform_cell(cell.source))
        except (SyntaxError, ValueError):
            continue
        body = tree.body if role == nbs.ANSWER else [n for n in tree.body if _definition(n)]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(ast.Module(body, []), "<master>", "exec"), ns)  # noqa: S102
        except Exception:  # noqa: BLE001 - a function missing here makes its check "in kernel"
            continue
    return ns


def _probe(spec: dict, functions: dict) -> str | None:
    """Run one check in this process on the master's answers, every call through a proxy.

    Returns why the check cannot run in the grader (a call whose arguments cannot be sent, or
    the check not passing here), or None when every call crossed. Only the grader's own
    encoding is tested: no student's answer is involved.
    """
    import json

    from . import proxy as px

    def transport(name, payload, on_callback):
        reply = px.serve(functions.get(name), json.loads(json.dumps(payload)), on_callback)
        return json.loads(json.dumps(reply))

    proxies = [px.Proxy(name, transport) for name in spec["args"]]
    try:
        fn = getattr(importlib.import_module(spec["module"]), spec["function"])
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            fn(*proxies)
    except Exception as exc:  # noqa: BLE001
        failed = f"the check did not pass on the master's answer here ({type(exc).__name__})"
    else:
        failed = None
    return "; ".join(p.cannot for p in proxies if p.cannot) or failed


def plan(master) -> Plan:
    """Which reference implementations the sandbox of ``master``'s exercise can do without."""
    from nncourse.course import notebooks as nbs

    from . import rebuild as rb

    bindings = rb.check_bindings(master)
    refs: dict[str, set[str]] = {}
    functions = None
    out = Plan()
    for cell in master.cells:
        role = nbs.role(cell)
        if role == nbs.ANSWER:
            refs.setdefault(nbs.exercise_id(cell), set()).update(rb.defined_names(cell.source))
        elif role == nbs.CHECK:
            ex = nbs.exercise_id(cell)
            spec = rb.trusted_call(cell.source, bindings)
            if functions is None:
                functions = _master_functions(master)
            why = ("the check cell is not one call of a check" if spec is None
                   else _probe(spec, functions))
            if why:
                out.in_kernel[ex] = why
    # a check that runs in the kernel may need any reference there (its own code calls them):
    # then nothing is withheld
    out.names = {} if out.in_kernel else {ex: names for ex, names in refs.items() if names}
    out.checks = not out.in_kernel
    return out


def _stub(node, qualname: str, indent: str) -> list[str]:
    message = (f"{qualname} {WITHHELD}: the exercise asks you to write it yourself "
               "(the grader's copy of nncourse does not contain it)")
    raise_line = f"{indent}    raise RuntimeError({message!r})"
    if isinstance(node, ast.ClassDef):
        return [f"{indent}class {node.name}:",
                f"{indent}    def __init__(self, *args, **kwargs):", "    " + raise_line]
    return [f"{indent}def {node.name}(*args, **kwargs):", raise_line]


def _strip_source(source: str, names: set[str], module: str) -> tuple[str, list[str]]:
    """``source`` with the top-level defs named in ``names`` replaced by stubs."""
    tree = ast.parse(source)
    lines = source.splitlines()
    hits = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.ClassDef)) and n.name in names]
    # the def line onwards (decorators stay: they must still apply to something callable)
    for node in sorted(hits, key=lambda n: n.lineno, reverse=True):
        lines[node.lineno - 1:node.end_lineno] = _stub(node, f"{module}.{node.name}", "")
    return "\n".join(lines) + "\n", [f"{module}.{n.name}" for n in hits]


def _stub_checks(package: Path) -> None:
    """Replace the check modules by empty ones (imports of them still work in the kernel)."""
    for path in (package / "nncourse" / "checks").glob("*.py"):
        path.write_text(f'"""nncourse.checks {WITHHELD}: the grader runs the checks itself."""\n')


def withhold(package: Path, the_plan: Plan, python: str = sys.executable,
             env: dict | None = None) -> list[str]:
    """Strip ``package`` (the sandbox's copy, holding ``nncourse/``) as ``the_plan`` says.

    Returns what was withheld (``module.name``, and ``nncourse.checks``), or raises
    RuntimeError -- after restoring every file -- when the stripped copy no longer imports.
    """
    root = package / "nncourse"
    names = the_plan.all_names
    saved: dict[Path, str] = {}
    done: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("")
        if rel.parts[:2] == ("nncourse", "checks"):
            continue
        source = path.read_text()
        if not names or not any(n in source for n in names):
            continue
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        new, hits = _strip_source(source, names, module)
        if hits:
            saved[path] = source
            path.write_text(new)
            done += hits
    if the_plan.checks:
        for path in (root / "checks").glob("*.py"):
            saved[path] = path.read_text()
        _stub_checks(package)
        done.append("nncourse.checks")
    if not done:
        return done
    modules = sorted({".".join(p.relative_to(package).with_suffix("").parts)
                      .removesuffix(".__init__") for p in root.rglob("*.py")})
    probe = ("import importlib, sys\n"
             f"for m in {modules!r}:\n"
             "    importlib.import_module(m)\n")
    proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=300,
                          cwd=package, env=env)
    if proc.returncode != 0:
        for path, source in saved.items():
            path.write_text(source)
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"the package without the reference implementations does not import "
                           f"({tail})")
    return done
