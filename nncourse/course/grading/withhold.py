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
    # module.name of references that library code the master's own run uses needs (chapter
    # 01's backprop.MLP calls backprop.sigmoid): public name stubbed, a private copy kept
    needed: set[str] = field(default_factory=set)

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


def _probe(spec: dict, functions: dict, side: list | None = None) -> str | None:
    """Run one check in this process on the master's answers, every call through a proxy.

    Returns why the check cannot run in the grader (a call whose arguments cannot be sent, or
    the check not passing here), or None when every call crossed. Only the grader's own
    encoding is tested: no student's answer is involved. ``side[0]`` is True while code that
    would run in the sandbox runs (the master's function), False on the check's side.
    """
    import json

    from . import proxy as px

    side = side if side is not None else [False]

    def transport(name, payload, on_callback):
        def channel(text):  # a call-back of what the check lent: the check's side again
            side[0] = False
            try:
                return on_callback(text)
            finally:
                side[0] = True

        side[0] = True
        try:
            reply = px.serve(functions.get(name), json.loads(json.dumps(payload)), channel)
        finally:
            side[0] = False
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


def _references(master) -> dict[str, set[str]]:
    from nncourse.course import notebooks as nbs

    from . import rebuild as rb

    refs: dict[str, set[str]] = {}
    for cell in master.cells:
        if nbs.role(cell) == nbs.ANSWER:
            refs.setdefault(nbs.exercise_id(cell), set()).update(rb.defined_names(cell.source))
    return {ex: names for ex, names in refs.items() if names}


_PLANS: dict[str, Plan] = {}  # master digest -> plan (the preflight and the batch share one)


def plan(master, timeout: int = 1800) -> Plan:
    """Which reference implementations the sandbox of ``master``'s exercise can do without.

    The master -- the instructor's own, trusted notebook -- is run top to bottom in a subprocess
    of the grader (:func:`_run_master`), every check through proxies as in the sandbox. That
    tells which checks cannot run in the grader, and which reference implementations the
    sandbox's side of the run calls through library code: those are kept under a private name
    (see :func:`withhold`), every other one is withheld in full. A notebook without references
    only has its checks probed on the master's functions here (:func:`_quick_probe`). The
    result is cached per master.
    """
    import hashlib
    import json
    import os
    import tempfile

    import nbformat

    text = nbformat.writes(master)
    key = hashlib.sha256(text.encode()).hexdigest()
    if key in _PLANS:
        return _PLANS[key]
    refs = _references(master)
    out = Plan()
    if not refs:
        # no reference to withhold: only the checks, when they all cross on the master's
        # functions alone
        out.checks = _quick_probe(master)
        _PLANS[key] = out
        return out
    with tempfile.TemporaryDirectory(prefix="nncourse-plan-") as d:
        path, report = os.path.join(d, "master.ipynb"), os.path.join(d, "plan.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        env = dict(os.environ, MPLBACKEND="Agg", NNCOURSE_PROGRESS="0", OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0")
        proc = subprocess.run([sys.executable, "-m", "nncourse.course.grading.withhold", path,
                               report], capture_output=True, text=True, timeout=timeout, cwd=d,
                              env=env, stdin=subprocess.DEVNULL)
        try:
            with open(report) as f:
                found = json.load(f)
        except (OSError, ValueError):
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            found = {"in_kernel": {"*": f"the master could not be probed ({tail})"},
                     "needed": []}
    out.in_kernel = dict(found["in_kernel"])
    # a check that runs in the kernel may need any reference there (its own code calls them):
    # then nothing is withheld
    out.names = {} if out.in_kernel else refs
    out.checks = not out.in_kernel
    out.needed = set(found["needed"]) if not out.in_kernel else set()
    _PLANS[key] = out
    return out


def _quick_probe(master) -> bool:
    """True when every check crosses on the master's functions defined here in this process
    (the instructor's definitions and answer cells only, no experiment): the common case, a
    second or two. Answers that read notebook state (chapter 02's ``moons``) need the full run."""
    from nncourse.course import notebooks as nbs

    from . import rebuild as rb

    bindings = rb.check_bindings(master)
    functions = None
    for cell in master.cells:
        if nbs.role(cell) == nbs.CHECK:
            spec = rb.trusted_call(cell.source, bindings)
            if spec is None:
                return False
            if functions is None:
                functions = _master_functions(master)
            if _probe(spec, functions) is not None:
                return False
    return True


def _definers(names: set[str]) -> list[tuple[str, str]]:
    """``(module, name)`` for every top-level def or class of nncourse named in ``names``
    (the course tools and the checks excluded, as in the sandbox's copy)."""
    import nncourse

    root = Path(nncourse.__file__).resolve().parent
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        if rel.parts[1:2] in (("course",), ("checks",)):
            continue
        source = path.read_text()
        if not any(n in source for n in names):
            continue
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                    node.name in names:
                found.append((module, node.name))
    return found


def _wrap_function(fn, qual: str, n: int) -> None:
    """Make every call of ``fn`` -- in any spelling, through any reference to it -- call
    ``_nncourse_probe_hit(qual)`` first, by swapping its code object in place."""
    import types

    g = fn.__globals__
    orig = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    orig.__kwdefaults__ = fn.__kwdefaults__
    g[f"_nncourse_probe_orig_{n}"] = orig
    free = fn.__code__.co_freevars
    keep = f"        if _nncourse_probe_hit is None:\n            ({', '.join(free)},)\n" if free \
        else ""
    src = (f"def _outer({', '.join(free)}):\n    def _w(*args, **kwargs):\n{keep}"
           f"        _nncourse_probe_hit({qual!r})\n"
           f"        return _nncourse_probe_orig_{n}(*args, **kwargs)\n    return _w\n")
    outer = next(c for c in compile(src, "<probe>", "exec").co_consts
                 if isinstance(c, types.CodeType))
    inner = next(c for c in outer.co_consts if isinstance(c, types.CodeType))
    fn.__code__ = inner


def _instrument(names: set[str], hit) -> None:
    """Record (``hit(module.name)``) every call of nncourse's reference implementations."""
    import inspect
    import types

    n = 0
    for module, name in _definers(names):
        try:
            obj = vars(importlib.import_module(module)).get(name)
        except Exception:  # noqa: BLE001 - a module that does not import: nothing to trace
            continue
        targets = []
        if isinstance(obj, type):
            for v in vars(obj).values():
                v = getattr(v, "__func__", v)
                if isinstance(v, types.FunctionType):
                    targets.append(v)
        elif callable(obj):
            inner = inspect.unwrap(obj)
            targets = [f for f in {id(obj): obj, id(inner): inner}.values()
                       if isinstance(f, types.FunctionType)]
        for fn in targets:
            fn.__globals__["_nncourse_probe_hit"] = hit
            try:
                _wrap_function(fn, f"{module}.{name}", n)
            except (ValueError, TypeError, SyntaxError):
                continue
            n += 1


def _run_master(path: str, report: str) -> None:
    """``python -m nncourse.course.grading.withhold MASTER.ipynb PLAN.json``: run the master
    (trusted instructor code) top to bottom as the sandbox would, and probe every check cell.

    Writes ``{"in_kernel": {exercise: why}, "needed": [module.name, ...]}``: the checks that
    could not run in the grader's process, and the reference implementations that the sandbox's
    side of the run (the instructor's cells, the answers, the master's functions called by the
    checks) called through library code.
    """
    import json

    from IPython.core.interactiveshell import InteractiveShell

    from nncourse.course import notebooks as nbs

    from . import rebuild as rb

    master = nbs.read(path)
    names = set().union(*_references(master).values()) if _references(master) else set()
    side, hits = [False], set()

    def hit(qual):
        if side[0]:
            hits.add(qual)

    _instrument(names, hit)
    shell = InteractiveShell.instance()
    bindings = rb.check_bindings(master)
    in_kernel: dict[str, str] = {}
    for cell in master.cells:
        if cell.cell_type != "code" or \
                cell.get("metadata", {}).get("nncourse", {}).get("role") == "colab":
            continue
        if nbs.role(cell) == nbs.CHECK:
            ex = nbs.exercise_id(cell)
            spec = rb.trusted_call(cell.source, bindings)
            why = ("the check cell is not one call of a check" if spec is None
                   else _probe(spec, shell.user_ns, side))
            if why:
                in_kernel[ex] = why
            continue
        side[0] = True
        try:
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                result = shell.run_cell(cell.source, store_history=False, silent=True)
        finally:
            side[0] = False
        if not result.success:
            err = result.error_in_exec or result.error_before_exec
            in_kernel["*"] = (f"the master's cell {cell.get('id')} failed here "
                              f"({type(err).__name__}: {err})")
            break
    with open(report, "w") as f:
        json.dump({"in_kernel": in_kernel, "needed": sorted(hits)}, f)


def _stub(node, qualname: str, indent: str) -> list[str]:
    message = (f"{qualname} {WITHHELD}: the exercise asks you to write it yourself "
               "(the grader's copy of nncourse does not contain it)")
    raise_line = f"{indent}    raise RuntimeError({message!r})"
    if isinstance(node, ast.ClassDef):
        return [f"{indent}class {node.name}:",
                f"{indent}    def __init__(self, *args, **kwargs):", "    " + raise_line]
    return [f"{indent}def {node.name}(*args, **kwargs):", raise_line]


def _refs(tree, name: str) -> list:
    """The ``ast.Name`` nodes of ``tree`` that mean the module-level ``name`` (not a parameter
    or local variable of a function that shadows it)."""
    out = []

    def visit(node, shadowed: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            params = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
            params |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
            body = node.body if isinstance(node.body, list) else [node.body]
            stores = {n.id for b in body for n in ast.walk(b)
                      if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            stores |= {n.name for b in body for n in ast.walk(b) if isinstance(
                n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            declared = {g for b in body for n in ast.walk(b) if isinstance(n, ast.Global)
                        for g in n.names}
            for d in getattr(node, "decorator_list", []) + a.defaults + \
                    [d for d in a.kw_defaults if d is not None]:
                visit(d, shadowed)
            inner = shadowed or (name in params | stores and name not in declared)
            for b in body:
                visit(b, inner)
            return
        if isinstance(node, ast.Name) and node.id == name and not shadowed:
            out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child, shadowed)

    visit(tree, False)
    return out


def _edit(lines: list[str], edits: list[tuple[int, int, int, str]]) -> None:
    """Replace ``lines[row - 1][start:end]`` by text, for every ``(row, start, end, text)``."""
    for row, start, end, text in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:start] + text + line[end:]


def private_name(name: str, token: str) -> str:
    return f"_nncourse_lib_{name}_{token}"


def _strip_source(source: str, names: set[str], module: str, keep: set[str] = frozenset(),
                  imported: dict[str, str] | None = None, token: str = "x",
                  more_edits: list | None = None) -> tuple[str, list[str]]:
    """``source`` with the top-level defs named in ``names`` replaced by stubs.

    A name in ``keep`` (library code in the sandbox needs it) keeps its code under a private
    name (:func:`private_name`), which every reference to it in this module now uses; its
    public name becomes the stub, defined at the end of the module. ``imported`` maps names this
    module imports from a module where they are kept (``from nncourse.backprop import
    sigmoid``) to that private name: the import and the references use it too.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    hits = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.ClassDef)) and n.name in names]
    kept = [n for n in hits if n.name in keep]
    edits = list(more_edits or [])
    for node in kept:
        new = private_name(node.name, token)
        col = lines[node.lineno - 1].index(node.name, node.col_offset)
        edits.append((node.lineno, col, col + len(node.name), new))
        edits += [(r.lineno, r.col_offset, r.end_col_offset, new) for r in _refs(tree, node.name)]
    for public, new in (imported or {}).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if a.name == public and a.asname is None:
                        edits.append((a.lineno, a.col_offset, a.end_col_offset, new))
        edits += [(r.lineno, r.col_offset, r.end_col_offset, new) for r in _refs(tree, public)]
    _edit(lines, edits)  # same lines, same positions: the stubs below still fit
    # stubs (the def line onwards; decorators stay: they must still apply to something callable)
    for node in sorted([n for n in hits if n.name not in keep], key=lambda n: n.lineno,
                       reverse=True):
        lines[node.lineno - 1:node.end_lineno] = _stub(node, f"{module}.{node.name}", "")
    for node in kept:
        lines += ["", "", f"# {module}.{node.name} {WITHHELD}: library code above uses a "
                  "private copy"] + _stub(node, f"{module}.{node.name}", "")
    return "\n".join(lines) + "\n", [f"{module}.{n.name}" for n in hits]


def _stub_checks(package: Path) -> None:
    """Replace the check modules by empty ones (imports of them still work in the kernel)."""
    for path in (package / "nncourse" / "checks").glob("*.py"):
        path.write_text(f'"""nncourse.checks {WITHHELD}: the grader runs the checks itself."""\n')


def _module_aliases(tree, module: str, is_package: bool) -> tuple[dict, dict]:
    """``(names, modules)``: what ``from M import n`` binds (n -> "M.n") and which names are
    bound to modules (``from nncourse import activations``, ``import nncourse.x as y``)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names, modules = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            source_module = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                names[a.asname or a.name] = (f"{source_module}.{a.name}", a)
                modules[a.asname or a.name] = f"{source_module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    modules[a.asname] = a.name
    return names, modules


def _imports_of_kept(source: str, module: str, is_package: bool, needed: set[str],
                     token: str) -> tuple[dict[str, str], list]:
    """How ``module`` reaches references kept privately elsewhere: names it imports
    (``from nncourse.backprop import sigmoid``, relative too; public name -> private name), and
    edits for attribute uses (``activations.relu(x)`` -> ``activations._nncourse_lib_relu_...``).
    """
    tree = ast.parse(source)
    own = {n.name for n in tree.body
           if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    names, modules = _module_aliases(tree, module, is_package)
    out = {n: private_name(n, token) for n, (full, a) in names.items()
           if a.asname is None and n not in own and full in needed}
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                f"{modules.get(node.value.id)}.{node.attr}" in needed and \
                node.lineno == node.end_lineno:
            end = node.end_col_offset
            edits.append((node.lineno, end - len(node.attr), end,
                          private_name(node.attr, token)))
    return out, edits


def withhold(package: Path, the_plan: Plan, python: str = sys.executable,
             env: dict | None = None) -> list[str]:
    """Strip ``package`` (the sandbox's copy, holding ``nncourse/``) as ``the_plan`` says.

    Returns what was withheld (``module.name``, and ``nncourse.checks``), or raises
    RuntimeError -- after restoring every file -- when the stripped copy no longer imports.
    """
    import secrets

    root = package / "nncourse"
    names = the_plan.all_names
    # kept privately: only what the master's run needed (library code it calls uses them); a
    # reference other library code merely refers to (a registry entry) is withheld in full, so
    # ``ZOO["relu"].f`` finds the stub too
    needed = set(the_plan.needed)
    token = secrets.token_hex(4)  # the private names differ from one batch to the next
    saved: dict[Path, str] = {}
    done: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("")
        if rel.parts[:2] == ("nncourse", "checks"):
            continue
        source = path.read_text()
        if not names or not any(n in source for n in names):
            continue
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        keep = {n for n in names if f"{module}.{n}" in needed}
        imported, attr_edits = _imports_of_kept(source, module, is_package, needed, token)
        new, hits = _strip_source(source, names, module, keep, imported, token, attr_edits)
        imported = imported or attr_edits
        if hits or imported:
            saved[path] = source
            path.write_text(new)
            done += [h + (" (its name only: library code keeps a private copy)"
                          if h in needed else "") for h in hits]
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


if __name__ == "__main__":
    _run_master(sys.argv[1], sys.argv[2])
