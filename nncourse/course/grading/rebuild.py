"""Turn a submitted notebook into the notebook the grader runs, and flag suspicious answers.

The student contributes *only* the source of the answer cells. Everything else -- the setup cells,
the check cells, their metadata and points -- comes from the instructor's master
(``solutions/NN_*.ipynb``), so a deleted or edited check cell, forged outputs or a changed points
value cannot change a grade. Before each check cell the grader inserts a *guard* cell that
re-imports the course's checks from disk, rebinds the check module's name in the notebook, and
reports whether the student had replaced or patched them, or bound an answer to nncourse's own
(reference) function.
"""

from __future__ import annotations

import ast
import copy
import json
from dataclasses import dataclass, field

import nbformat

from nncourse.course import notebooks as nbs
from nncourse.course.colab import is_colab_cell
from nncourse.course.release import stub_source

__all__ = ["SubmissionError", "Answer", "load_submission", "Rebuilt", "rebuild", "static_flags",
           "GUARD_ID", "GUARD_MARK", "check_bindings", "defined_names", "nncourse_aliases"]

GUARD_ID = "grader-guard"
GUARD_MARK = "NNCOURSE-GRADER-GUARD "
MAX_SUBMISSION_BYTES = 20 * 1024 * 1024


class SubmissionError(ValueError):
    """The submission cannot be graded; the message says why, for the gradebook."""


def load_submission(data: bytes) -> list[dict]:
    """The submission's cells, read leniently but safely from its bytes.

    Only what grading needs is kept (type, id, source, tags, nncourse metadata), so a notebook
    with deleted or odd cell metadata still yields its answers.
    """
    if len(data) > MAX_SUBMISSION_BYTES:
        raise SubmissionError(f"the file is {len(data) / 2**20:.0f} MB, larger than the "
                              f"{MAX_SUBMISSION_BYTES // 2**20} MB a notebook may be")
    try:
        nb = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise SubmissionError("the file is not UTF-8 text, so it is not a notebook") from None
    except json.JSONDecodeError as exc:
        raise SubmissionError(f"the file is not valid JSON ({exc.msg} at line {exc.lineno}, "
                              f"column {exc.colno}); was it saved completely?") from None
    if not isinstance(nb, dict) or "cells" not in nb and "worksheets" not in nb:
        raise SubmissionError("the file is JSON but not a Jupyter notebook")
    version = nb.get("nbformat")
    if version != 4:
        raise SubmissionError(f"notebook format {version!r} is not supported (expected 4); "
                              "open and save it with a current Jupyter")
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise SubmissionError("the notebook has no list of cells")
    out = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if not isinstance(source, str):
            source = ""
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
        course = meta.get("nncourse") if isinstance(meta.get("nncourse"), dict) else {}
        cid = cell.get("id") if isinstance(cell.get("id"), str) else None
        out.append({"cell_type": cell.get("cell_type"), "id": cid, "source": source,
                    "metadata": {"tags": [t for t in tags if isinstance(t, str)],
                                 "nncourse": course}})
    return out


@dataclass
class Answer:
    exercise: str
    source: str
    how: str  # "id", "tags", "order" or "missing"


@dataclass
class Rebuilt:
    notebook: nbformat.NotebookNode
    answers: list[Answer]
    notes: list[str] = field(default_factory=list)


def instructor_trees(master):
    """Parsed source of the master's instructor code cells (setup, imports; not Colab's cell,
    which the grader never runs)."""
    for cell in master.cells:
        if cell.cell_type == "code" and nbs.role(cell) is None and not is_colab_cell(cell):
            try:
                yield ast.parse(cell.source)
            except SyntaxError:
                continue


def check_bindings(master) -> list[tuple[str, str, str | None]]:
    """``(name, module, attribute)`` for every check import in the master's instructor cells.

    ``from nncourse.checks import ch03 as check`` gives ``("check", "nncourse.checks.ch03",
    None)``; ``from nncourse.checks.ch03 import ex3_1 as f`` gives ``("f", "nncourse.checks.ch03",
    "ex3_1")``.
    """
    found = []
    for tree in instructor_trees(master):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nncourse"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if node.module == "nncourse.checks":
                        found.append((a.asname or a.name, full, None))
                    elif node.module.startswith("nncourse.checks."):
                        found.append((a.asname or a.name, node.module, a.name))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("nncourse.checks.") and a.asname:
                        found.append((a.asname, a.name, None))
    return found


def defined_names(source: str) -> list[str]:
    """Top-level function and class names an answer cell defines."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n.name for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


_SNAPSHOT = '''\
def _nncourse_grader_snapshot():
    import sys, types
    snap = {}
    roots = ("builtins", "numpy", "torch", "nncourse", "math", "random", "functools",
             "operator", "sklearn", "scipy")
    for name, mod in list(sys.modules.items()):
        if name.split(".")[0] not in roots:
            continue
        d = getattr(mod, "__dict__", None)
        if isinstance(d, dict):
            snap[name] = (mod, {k: v for k, v in list(d.items())
                                if callable(v) or isinstance(v, types.ModuleType)})
    sys._nncourse_grader_snapshot = snap


_nncourse_grader_snapshot()
del _nncourse_grader_snapshot
'''

_GUARD = '''\
def _nncourse_grader_guard(bindings, names, exercise):
    import importlib, json, sys
    ns = get_ipython().user_ns
    found = []
    snap = getattr(sys, "_nncourse_grader_snapshot", None)
    if not isinstance(snap, dict):
        found.append("the grader's snapshot of the libraries was removed")
        snap = {}
    for modname, (mod, entries) in snap.items():
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict) or modname.startswith("nncourse.checks"):
            continue
        for key, value in entries.items():
            if key in ("input", "raw_input", "getpass") or (
                    getattr(value, "__name__", "").startswith("nncourse.checks")):
                continue  # ipykernel rebinds input() for every cell; checks are re-imported
            if d.get(key, value) is not value:
                # importing torch._dynamo wraps torch.manual_seed (functools.wraps): put back,
                # not flagged -- a wrapper is restored like any replacement, so it gains nothing
                if not (modname.split(".")[0] == "torch"
                        and getattr(d.get(key), "__wrapped__", None) is value):
                    found.append(f"{modname}.{key} was replaced (restored)")
                d[key] = value
    old = {k: m for k, m in sys.modules.items()
           if k == "nncourse.checks" or k.startswith("nncourse.checks.")}
    for k in old:
        del sys.modules[k]
    importlib.import_module("nncourse.checks")

    def code_of(obj):
        obj = getattr(obj, "__func__", obj)
        return getattr(obj, "__code__", None)

    def compare(before, after, label):
        for key, value in vars(after).items():
            if key.startswith("__") or getattr(value, "__module__", None) != after.__name__:
                continue
            mine = getattr(before, key, None) if before is not None else None
            if isinstance(value, type):
                if not isinstance(mine, type):
                    found.append(f"{label}.{key} was replaced")
                    continue
                for k2, v2 in vars(value).items():
                    if code_of(v2) is not None and code_of(v2) != code_of(mine.__dict__.get(k2)):
                        found.append(f"{label}.{key}.{k2} was patched")
            elif code_of(value) is not None and code_of(value) != code_of(mine):
                found.append(f"{label}.{key} was patched or replaced")

    for name, module, attr in bindings:
        fresh = importlib.import_module(module)
        compare(old.get(module), fresh, module)
        target = getattr(fresh, attr) if attr else fresh
        before = getattr(old.get(module), attr, None) if attr else old.get(module)
        if ns.get(name) is not before:
            found.append(f"the name {name!r} was rebound")
        ns[name] = target
    if "nncourse.checks" in old:
        compare(old["nncourse.checks"], sys.modules["nncourse.checks"], "nncourse.checks")
    for name in names:
        fn = ns.get(name)
        mod = getattr(fn, "__module__", None) or ""
        if mod == "nncourse" or mod.startswith("nncourse."):
            found.append(f"{name} is nncourse's own {mod}.{getattr(fn, '__qualname__', name)}")
    print(MARK + json.dumps({"exercise": exercise, "found": sorted(set(found))}))


_nncourse_grader_guard(BINDINGS, NAMES, EXERCISE)
del _nncourse_grader_guard
'''


def trusted_call(source: str, bindings) -> dict | None:
    """``check.ex0_1_relu(relu)`` -> what the grader's own process needs to run that check.

    Only a check cell that is one call of a check module's function on names qualifies; any other
    check cell runs in the kernel as before.
    """
    modules = {name: module for name, module, attr in bindings if attr is None}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name) and call.func.value.id in modules
            and not call.keywords and all(isinstance(a, ast.Name) for a in call.args)):
        return None
    return {"module": modules[call.func.value.id], "function": call.func.attr,
            "args": [a.id for a in call.args]}


def _guard_cell(bindings, names: list[str], exercise: str, n: int):
    source = (_GUARD.replace("MARK", repr(GUARD_MARK)).replace("BINDINGS", repr(bindings))
              .replace("NAMES", repr(names)).replace("EXERCISE", repr(exercise)))
    cell = nbformat.v4.new_code_cell(source)
    cell["id"] = f"{GUARD_ID}-{n}"
    return cell


def _snapshot_cell():
    cell = nbformat.v4.new_code_cell(_SNAPSHOT)
    cell["id"] = f"{GUARD_ID}-snapshot"
    return cell


def _pick_answers(master, cells: list[dict]) -> list[Answer]:
    """The student's source for each master answer cell: by id, by tags, or by order."""
    by_id = {c["id"]: c for c in cells if c["id"] and c["cell_type"] == "code"}
    tagged: dict[str, list[dict]] = {}
    for c in cells:
        if c["cell_type"] == "code" and nbs.ANSWER in c["metadata"]["tags"]:
            tagged.setdefault(str(c["metadata"]["nncourse"].get("exercise")), []).append(c)
    master_code = [c for c in master.cells if c.cell_type == "code"]
    student_code = [c for c in cells if c["cell_type"] == "code"]
    same_shape = len(master_code) == len(student_code)
    seen: dict[str, int] = {}
    answers = []
    for k, cell in enumerate(master_code):
        if nbs.role(cell) != nbs.ANSWER:
            continue
        ex = nbs.exercise_id(cell)
        nth = seen[ex] = seen.get(ex, -1) + 1
        if cell.get("id") in by_id:
            answers.append(Answer(ex, by_id[cell["id"]]["source"], "id"))
        elif nth < len(tagged.get(ex, [])):
            answers.append(Answer(ex, tagged[ex][nth]["source"], "tags"))
        elif same_shape:
            answers.append(Answer(ex, student_code[k]["source"], "order"))
        else:
            answers.append(Answer(ex, stub_source(cell.source, ex), "missing"))
    return answers


def rebuild(master, cells: list[dict], skip: dict[str, str] | None = None) -> Rebuilt:
    """The notebook to execute: the master with the student's answers and guard cells.

    ``skip`` maps exercise ids whose answers must not run again (they hung or killed the kernel
    in an earlier attempt) to the reason; their answer cells get the release stub instead.
    """
    skip = skip or {}
    answers = _pick_answers(master, cells)
    bindings = check_bindings(master)
    nb = copy.deepcopy(master)
    nb.metadata = {"kernelspec": dict(nbs.KERNELSPEC), "language_info": {"name": "python"}}
    new_cells, it = [], iter(answers)
    names_of: dict[str, list[str]] = {}
    for cell in nb.cells:
        if is_colab_cell(cell):
            continue  # Google Colab's install cell: it does nothing outside Colab
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
            r = nbs.role(cell)
            if r == nbs.ANSWER:
                if not any(c.get("id") == f"{GUARD_ID}-snapshot" for c in new_cells):
                    new_cells.append(_snapshot_cell())
                ex = nbs.exercise_id(cell)
                names_of.setdefault(ex, []).extend(defined_names(cell.source))
                ans = next(it)
                cell.source = stub_source(cell.source, ex) if ex in skip else ans.source
            elif r == nbs.CHECK:
                ex = nbs.exercise_id(cell)
                new_cells.append(_guard_cell(bindings, names_of.get(ex, []), ex, len(new_cells)))
                trusted = trusted_call(cell.source, bindings)
                if trusted:
                    cell.metadata["grader"] = {"trusted": trusted}
        new_cells.append(cell)
    nb.cells = new_cells
    notes = []
    for a in answers:
        if a.how == "missing":
            notes.append(f"Exercise {a.exercise}: no answer cell was found in your notebook "
                         "(graded as not attempted)")
        elif a.how == "order":
            notes.append(f"Exercise {a.exercise}: your answer cell was found by its position "
                         "(its id and tags were gone)")
    by_id = {c["id"]: c for c in cells if c["id"]}
    master_ids = {c.get("id") for c in master.cells}
    for cell in master.cells:
        if nbs.role(cell) == nbs.CHECK:
            mine = by_id.get(cell.get("id"))
            ex = nbs.exercise_id(cell)
            if mine is None:
                notes.append(f"Exercise {ex}: the check cell was missing from your notebook; "
                             "the instructor's check was run")
            elif mine["source"].strip() != cell.source.strip():
                notes.append(f"Exercise {ex}: the check cell was edited in your notebook; the "
                             "instructor's check was run")
    extra = sum(1 for c in cells if c["cell_type"] == "code" and c["id"] not in master_ids
                and nbs.ANSWER not in c["metadata"]["tags"])
    if extra:
        notes.append(f"{extra} code cell{'s' if extra != 1 else ''} you added "
                     f"{'were' if extra != 1 else 'was'} not run: only answer cells are graded, "
                     "so put helper code inside the answer cell")
    return Rebuilt(nb, answers, notes)


# --- static flags --------------------------------------------------------------------------------

_SUSPECT_NAMES = {"__builtins__": "touches __builtins__", "__code__": "rewrites function code",
                  "__globals__": "reaches into a function's globals",
                  "sys.modules": "edits sys.modules"}
_SUSPECT_MODULES = {"builtins", "ctypes", "gc", "importlib"}
_HARMLESS_MAGICS = {"time", "timeit", "matplotlib", "precision", "pprint", "who", "whos"}
_OVERRIDES = {"__array_function__", "__array_ufunc__", "__torch_function__", "__array__",
              "__array_priority__"}


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def nncourse_aliases(master) -> set[str]:
    """Names the master's instructor cells bind to nncourse modules
    (``from nncourse import init``)."""
    names = {"nncourse"}
    for tree in instructor_trees(master):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "nncourse":
                names.update(a.asname or a.name for a in node.names if a.name != "checks")
            elif isinstance(node, ast.Import):
                names.update(a.asname for a in node.names
                             if a.asname and a.name.startswith("nncourse.")
                             and not a.name.startswith("nncourse.checks"))
    return names


def static_flags(source: str, exercise: str, check_names: set[str], reference_names: set[str],
                 module_names: set[str], nncourse_names: frozenset = frozenset({"nncourse"})
                 ) -> list[str]:
    """Reasons an instructor should read this answer; empty for an ordinary answer.

    ``check_names``: names the notebook binds to check modules (``check``);
    ``reference_names``: functions the master's answer defines (the reference has the same name in
    nncourse); ``module_names``: names bound to imported modules (``np``, ``torch``...);
    ``nncourse_names``: names bound to nncourse or its modules (``nncourse``, ``init``).
    """
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return []
    flags: set[str] = set()
    modules = set(module_names)
    if "get_ipython" in source:
        flags.add("uses get_ipython() (can change how the notebook runs)")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mod = node.module if isinstance(node, ast.ImportFrom) else None
            for a in node.names:
                full = f"{mod}.{a.name}" if mod else a.name
                top = full.split(".")[0]
                if isinstance(node, ast.Import):
                    modules.add(a.asname or top)
                if full.startswith("nncourse.checks") or (mod == "nncourse" and a.name == "checks"):
                    flags.add(f"imports the course's checks ({full})")
                elif top == "nncourse" and (a.name in reference_names
                                            or full.split(".")[-1] in reference_names):
                    flags.add(f"imports nncourse's reference implementation ({full})")
                elif top in _SUSPECT_MODULES:
                    flags.add(f"imports {top}")
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node) or ""
            if dotted.split(".")[0] in nncourse_names and "." in dotted and \
                    dotted.split(".")[-1] in reference_names:
                flags.add(f"calls nncourse's reference implementation ({dotted})")
            if "nncourse.checks" in dotted:
                flags.add("uses the course's checks (nncourse.checks)")
            for key, why in _SUSPECT_NAMES.items():
                if dotted.endswith(key) or node.attr == key:
                    flags.add(why)
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                base = dotted.split(".")[0]
                if base in modules or base in check_names:
                    flags.add(f"assigns to {dotted} (patches a module)")
        elif isinstance(node, ast.Name):
            if node.id in check_names:
                flags.add(f"uses the check module {node.id!r}")
            elif node.id in _SUSPECT_NAMES:
                flags.add(_SUSPECT_NAMES[node.id])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("setattr", "delattr", "exec", "eval", "__import__"):
            flags.add(f"calls {node.func.id}()")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                _dotted(node.func.value) is None and isinstance(node.func.value, ast.Call) and \
                _dotted(node.func.value.func) == "get_ipython":
            # what IPython made of `!cmd`, `%magic`, `%%magic` (an explicit get_ipython() in the
            # source is flagged above)
            what = node.func.attr
            name = (node.args[0].value if node.args and isinstance(node.args[0], ast.Constant)
                    else None)
            if what in ("system", "getoutput"):
                flags.add("runs a shell command (!...)")
            elif what in ("run_line_magic", "run_cell_magic") and name not in _HARMLESS_MAGICS:
                flags.add(f"uses the IPython magic %{name}")
        elif isinstance(node, ast.ClassDef):
            over = sorted(_OVERRIDES & {n.name for n in node.body if isinstance(
                n, (ast.FunctionDef, ast.Assign)) and hasattr(n, "name")})
            bases = [_dotted(b) or "" for b in node.bases]
            if over or any(b.endswith(("ndarray", "Tensor")) for b in bases):
                flags.add(f"defines class {node.name} that changes how numpy/torch treat it")
    return sorted(f"{exercise}: {f}" for f in flags)
