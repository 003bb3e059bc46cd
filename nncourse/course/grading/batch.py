"""Grade a batch of submissions: find them, run each in the sandbox, score the executed notebook.

:func:`grade_batch` never raises for anything a submission does: each one becomes a :class:`Grade`
(a gradebook row), whatever the file is or does.
"""

from __future__ import annotations

import compileall
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

import nncourse
from nncourse.course import notebooks as nbs
from nncourse.course import scoreboard
from nncourse.course.grading import rebuild as rb
from nncourse.course.grading import sandbox, withhold

__all__ = ["Limits", "ExerciseGrade", "Grade", "Entry", "find_master", "find_submissions",
           "read_submission", "grade_submission", "grade_batch", "OK", "FLAGGED", "UNREADABLE",
           "ERROR", "SKIPPED", "DUPLICATE", "NOT_GRADED"]

SANDBOX_SCRIPT = Path(sandbox.__file__).resolve()
# where the kernel imports nncourse from (replaced by a copy of the package in the sandbox)
PACKAGE_ROOT = Path(nncourse.__file__).resolve().parent.parent
OK, FLAGGED, UNREADABLE, ERROR = "graded", "graded, flagged for review", "unreadable", "error"
SKIPPED, DUPLICATE = "skipped", "duplicate student"
NOT_GRADED = (UNREADABLE, ERROR, SKIPPED, DUPLICATE)
TIMED_OUT, CRASHED = "timed out", "crashed"


@dataclass
class Limits:
    """What one submission may use. Times in seconds, sizes in bytes."""

    cell_timeout: int = 120
    notebook_timeout: int = 600
    memory: int = 4 * 2**30
    file_size: int = 64 * 2**20
    processes: int = 64
    open_files: int = 1024
    output_cap: int = 100_000
    notebook_output_cap: int = 4_000_000
    max_message: int = 32 * 2**20
    startup_timeout: int = 120

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {f.name} must be a positive integer, got {value!r}")


@dataclass
class ExerciseGrade:
    exercise: str
    points: int
    earned: int
    status: str
    message: str = ""


@dataclass
class Grade:
    """One submission's result: a gradebook row, a feedback file and a JSON record."""

    student: str
    file: str
    sha256: str
    status: str
    exercises: list[ExerciseGrade] = field(default_factory=list)
    reason: str = ""
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output_truncated: bool = False
    sandbox: dict = field(default_factory=dict)
    attempts: int = 0
    seconds: float = 0.0
    timing: dict = field(default_factory=dict)  # where the seconds went (see _add_timing)

    @property
    def total(self) -> int:
        return sum(e.earned for e in self.exercises)



# --- finding the master and the submissions -----------------------------------------------------

def find_master(exercise: str, solutions: Path) -> Path:
    """``solutions/NN_*.ipynb`` for ``--exercise NN`` (``3`` and ``03`` both work)."""
    if not str(exercise).isdigit():
        raise ValueError(f"--exercise must be a chapter number such as 03, got {exercise!r}")
    matches = sorted(solutions.glob(f"{int(exercise):02d}_*.ipynb"))
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        raise ValueError(f"expected one master notebook {int(exercise):02d}_*.ipynb in "
                         f"{solutions}, found {found}")
    return matches[0]


@dataclass
class Entry:
    """One entry of the submissions folder: a notebook to grade, or why it is not graded.

    ``status`` is None for a notebook to grade, else the gradebook status (``skipped``,
    ``unreadable``, ``duplicate``) with ``reason``.
    """

    student: str
    path: Path
    status: str | None = None
    reason: str = ""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _scan(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Notebook-like entries under ``folder`` (never following links), and odd entries found.

    Hidden names (``.ipynb_checkpoints``...) are skipped. Any entry whose name ends in ``.ipynb``
    is returned whatever it is (a FIFO, a link...): reading it says why it cannot be graded.
    """
    found, odd = [], []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        return [], [(folder, f"the folder cannot be read: {exc.strerror or exc}")]
    for e in entries:
        if e.name.startswith("."):
            continue
        path = Path(e.path)
        if e.is_dir(follow_symlinks=False):
            sub, sub_odd = _scan(path)
            found += sub
            odd += sub_odd
        elif e.name.endswith(".ipynb"):
            found.append(path)
        elif e.is_symlink() and os.path.isdir(path):
            odd.append((path, "a symbolic link to a folder (not followed)"))
    return found, odd


def top_level(folder: Path) -> list[os.DirEntry]:
    """The entries of a submissions folder by name, without hidden ones (.ipynb_checkpoints,
    .DS_Store, .git: never submissions); ValueError when it cannot be listed."""
    try:
        top = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise ValueError(f"cannot list {folder}: {exc.strerror or exc}") from None
    return [e for e in top if not e.name.startswith(".")]


def find_submissions(folder: Path, master: Path) -> list[Entry]:
    """One :class:`Entry` per student notebook under ``folder``, and one per entry not graded.

    ``folder/alice.ipynb`` is student ``alice``; ``folder/alice/03_x.ipynb`` (the master's file
    name inside a per-student folder) is student ``alice`` too; other notebooks in a folder are
    ``alice/other``. Symbolic links are never followed. A student folder without a notebook, a
    top-level file that is not a notebook, and a student id claimed by two files each get an
    entry saying why they are not graded.
    """
    out: list[Entry] = []
    for e in top_level(folder):
        path = Path(e.path)
        if e.is_symlink():
            if not e.name.endswith(".ipynb"):
                what = "folder" if os.path.isdir(path) else "file"
                out.append(Entry(e.name, path, UNREADABLE, f"a symbolic link to a {what}, not "
                                 "a folder or file of its own (links are not followed)"))
                continue
        elif e.is_dir(follow_symlinks=False):
            notebooks, odd = _scan(path)
            for p, why in odd:
                out.append(Entry(p.relative_to(folder).as_posix(), p, SKIPPED, why))
            if not notebooks and not odd:
                out.append(Entry(e.name, path, SKIPPED, "the folder holds no notebook (.ipynb)"))
            for p in notebooks:
                rel = p.relative_to(folder)
                student = ("/".join(rel.parts[:-1]) if rel.name == master.name
                           else rel.with_suffix("").as_posix())
                out.append(Entry(student, p))
            continue
        elif not e.name.endswith(".ipynb"):
            out.append(Entry(e.name, path, SKIPPED, "not a notebook (.ipynb), so not graded"))
            continue
        out.append(Entry(path.relative_to(folder).with_suffix("").as_posix(), path))
    claimed: dict[str, list[Entry]] = {}
    for entry in out:
        if entry.status is None:
            claimed.setdefault(entry.student, []).append(entry)
    for student, entries in claimed.items():
        if len(entries) > 1:
            files = ", ".join(x.path.relative_to(folder).as_posix() for x in entries)
            for x in entries:
                x.status, x.reason = DUPLICATE, (f"{len(entries)} files claim student "
                                                 f"{student!r} ({files}); none was graded: keep "
                                                 "one and grade again")
    return sorted(out, key=lambda x: (x.student, str(x.path)))


def read_submission(path: Path, limit: int = rb.MAX_SUBMISSION_BYTES) -> bytes:
    """The bytes of a submission: a regular file, not a link, at most ``limit`` bytes.

    Checked with ``lstat`` before opening, opened ``O_NONBLOCK | O_NOFOLLOW`` (a FIFO or a link
    swapped in meanwhile cannot block or redirect the read), checked again on the open file and
    never read past ``limit``. Raises :class:`rebuild.SubmissionError` saying why.
    """
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise rb.SubmissionError(f"cannot read the file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise rb.SubmissionError(f"the submission is {_kind(st.st_mode)}, not a file")
    if st.st_size > limit:
        raise rb.SubmissionError(f"the file is {st.st_size / 2**20:.0f} MB, larger than the "
                                 f"{limit // 2**20} MB a notebook may be")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise rb.SubmissionError(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        st2 = os.fstat(fd)
        if not stat.S_ISREG(st2.st_mode) or (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
            raise rb.SubmissionError("the file was replaced while it was being read")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise rb.SubmissionError(f"the file is larger than the {limit // 2**20} MB a "
                                     "notebook may be")
        return b"".join(chunks)
    except OSError as exc:
        raise rb.SubmissionError(f"cannot read the file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


# --- running one notebook in the sandbox --------------------------------------------------------

class _Scratch:
    """Private working space: ``jobs/`` for the grader (root only), ``work/`` for kernels."""

    def __init__(self, hide: list[Path], mode: str | None = None, master=None):
        self.root = Path(tempfile.mkdtemp(prefix="nncourse-grade-"))
        self.as_root = os.geteuid() == 0
        os.chmod(self.root, 0o711)
        (self.root / "jobs").mkdir(mode=0o700)
        (self.root / "work").mkdir(mode=0o711)
        self.hide = [str(p) for p in hide if p.is_dir()]
        self._lock = threading.Lock()
        self._local = threading.local()
        self._workers: list[_Worker] = []
        self._n = 0
        self._uid_base = 2_000_000_000 + (os.getpid() % 100_000) * 1_000
        # the kernel imports a copy of the package (no course tools, nothing beside it), never
        # the checkout or site-packages the grader runs from; built once per master and kind
        # (the preflight's copy serves the batch)
        key = (hashlib.sha256(nbformat.writes(master).encode()).hexdigest()
               if master is not None else None)
        with _BUILT_LOCK:
            if key not in _BUILT:
                _BUILT[key] = _build_package(master)
        built, self.withheld, self.withhold_note = _BUILT[key]
        self.package = self.root / "pkg"
        shutil.copytree(built, self.package, symlinks=True)
        self.bwrap = shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")
        if mode is None:
            mode = os.environ.get("NNCOURSE_SANDBOX") or (
                "bwrap" if self.bwrap and sandbox.bwrap_works(
                    self.bwrap, self._uid_base if self.as_root else None) else "unshare")
        if mode not in ("bwrap", "unshare"):
            raise ValueError(f"sandbox mode must be bwrap or unshare, got {mode!r}")
        self.mode = mode

    def new_job(self) -> tuple[Path, Path, int | None]:
        with self._lock:
            self._n += 1
            n = self._n
        job = self.root / "jobs" / f"{n:05d}"
        work = self.root / "work" / f"{n:05d}"
        job.mkdir(mode=0o700)
        work.mkdir(mode=0o700)
        uid = None
        if self.as_root:
            uid = self._uid_base + n % 1_000
            while sandbox._processes_of(uid):  # never share a user id with a live process
                uid += 1
            os.chown(work, uid, uid)
        return job, work, uid

    def worker(self) -> _Worker:
        """This thread's worker (one per job slot, started on first use, restarted when lost)."""
        w = getattr(self._local, "worker", None)
        if w is None or not w.alive():
            w = self._local.worker = _Worker(self.root / "jobs" / "workers.log")
            with self._lock:
                self._workers.append(w)
        return w

    def cleanup(self) -> None:
        for w in self._workers:
            w.stop()
        shutil.rmtree(self.root, ignore_errors=True)


_BUILT: dict = {}  # master digest (None: the whole package) -> (package, withheld, note)
_BUILT_LOCK = threading.Lock()


def _build_package(master) -> tuple[Path, list[str], str]:
    """The sandbox's copy of nncourse for ``master`` (None: whole); removed when the grader
    exits. Returns its folder (holding ``nncourse/``), what was withheld and a note saying so."""
    import atexit

    top = Path(tempfile.mkdtemp(prefix="nncourse-pkg-"))  # private; each batch copies it
    atexit.register(shutil.rmtree, top, True)
    package = top / "pkg"
    shutil.copytree(Path(nncourse.__file__).resolve().parent, package / "nncourse",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "course"))
    # the kernel's end of the trusted checks' calls (proxy.serve_named)
    shutil.copy(Path(__file__).with_name("proxy.py"), package / "_nncourse_proxy.py")
    # the reference implementations the exercises ask for are not in the kernel's copy
    withheld: list[str] = []
    note = ("reference implementations: NOT withheld (the master's own answers need them in "
            "the sandbox)")
    if master is not None:
        try:
            the_plan = withhold.plan(master)
            withheld = withhold.withhold(package, the_plan, env=kernel_env(package))
        except Exception as exc:  # noqa: BLE001 - grading goes on; the summary says what held
            note = f"reference implementations: NOT withheld ({exc})"
        else:
            kept = "".join(f"; NOT withheld: exercise {ex}'s check runs in the kernel ({why}) "
                           "and needs the whole package there"
                           for ex, why in sorted(the_plan.in_kernel.items()))
            note = ("reference implementations withheld from the kernel: "
                    + (", ".join(withheld) or "none") + kept)
    compileall.compile_dir(package, quiet=2)  # kernels start faster; they write none
    for d, _, files in os.walk(package):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    return package, withheld, note


class _Worker:
    """A trusted worker process (``sandbox.py serve``) that runs one job slot's notebooks in
    turn, each in a fresh sandboxed kernel; killed with its process group on a missed deadline."""

    def __init__(self, log: Path):
        with open(log, "ab") as err:  # what goes wrong before the first job starts
            self.proc = subprocess.Popen([sys.executable, "-I", str(SANDBOX_SCRIPT), "serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job_json: Path, timeout: float) -> bool:
        """Run one job; False (and the worker killed) when it did not finish in ``timeout``."""
        import selectors

        try:
            self.proc.stdin.write(f"{job_json}\n".encode())
            self.proc.stdin.flush()
        except OSError:
            self.kill()
            return False
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if sel.select(timeout=max(1.0, timeout)) and self.proc.stdout.readline() == b"done\n":
                return True
        self.kill()
        return False

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


def kernel_env(package: Path) -> dict[str, str]:
    """The kernel's whole environment: an allow-list, never a copy of the grader's."""
    threads = "1"
    return {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "USER": "student", "LOGNAME": "student",
            "PYTHONPATH": str(package), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0", "NNCOURSE_PROGRESS": "0", "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline"}


def _execute(nb, scratch: _Scratch, limits: Limits, budget: float) -> dict:
    """Run ``nb`` in a fresh sandboxed kernel; return the worker's result with the executed nb."""
    t0 = time.monotonic()
    job, work, uid = scratch.new_job()
    nbformat.write(nb, job / "notebook.ipynb")
    spec = {
        "notebook": str(job / "notebook.ipynb"), "executed": str(job / "executed.ipynb"),
        "result": str(job / "result.json"), "launch_info": str(job / "launch.json"),
        "kernel_log": str(job / "kernel.log"), "kernels": str(job / "kernels"),
        "stage": str(job / "stage"), "jobdir": str(job), "workdir": str(work),
        "scratch": str(scratch.root), "uid": uid, "python": sys.executable,
        "hide": scratch.hide, "expose": [sys.base_prefix, sys.prefix, str(scratch.package)],
        "mode": scratch.mode, "bwrap": scratch.bwrap, "package": str(scratch.package),
        "prefixes": sorted({sys.base_prefix, sys.prefix}),
        "env": kernel_env(scratch.package),
        "notebook_output_cap": limits.notebook_output_cap, "tmp_size": limits.file_size * 4,
        "limits": {"memory": limits.memory, "cpu": int(limits.notebook_timeout),
                   "file_size": limits.file_size, "open_files": limits.open_files,
                   "processes": limits.processes},
        "cell_timeout": limits.cell_timeout, "notebook_timeout": max(1, int(budget)),
        "startup_timeout": limits.startup_timeout, "output_cap": limits.output_cap,
        "max_message": limits.max_message,
    }
    (job / "job.json").write_text(json.dumps(spec))
    t1 = time.monotonic()
    # the worker enforces the deadline itself; this is the backstop
    scratch.worker().run(job / "job.json", budget + limits.startup_timeout + 30)
    t2 = time.monotonic()
    if uid is not None:
        sandbox.kill_user(uid)
    try:
        result = json.loads((job / "result.json").read_text())
        size = os.stat(job / "executed.ipynb").st_size
        if size > 2 * limits.notebook_output_cap + 2**21:
            raise ValueError(f"the executed notebook is {size} bytes, over the cap")
        result["notebook"] = nbformat.read(job / "executed.ipynb", as_version=4)
        timing = result.setdefault("timing", {})
        timing["job_write"], timing["worker"], timing["result_read"] = (
            round(t1 - t0, 3), round(t2 - t1, 3), round(time.monotonic() - t2, 3))
    except (OSError, ValueError) as exc:
        tail = ""
        for log in (job / "worker.log", scratch.root / "jobs" / "workers.log"):
            try:
                tail += log.read_bytes()[-800:].decode("utf-8", "replace")
            except OSError:
                pass
        return {"error": f"the grading worker failed ({type(exc).__name__}): {tail.strip()}"}
    return result


# --- grading ------------------------------------------------------------------------------------

def _signal_name(code) -> str:
    if isinstance(code, int) and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = {"SIGXCPU": " -- out of CPU time", "SIGXFSZ": " -- a file grew past the size limit",
               "SIGKILL": " -- killed, e.g. out of CPU time or memory",
               "SIGSEGV": " -- a segmentation fault"}.get(name, "")
        return f"killed by {name}{why}"
    return f"exit code {code}" if code is not None else "no exit code"


def _owner(nb, index: int) -> tuple[str | None, str]:
    """Exercise a cell belongs to (answer/check cells), else the last exercise whose answer ran."""
    cell = nb.cells[index]
    if nbs.role(cell) is not None:
        return nbs.exercise_id(cell), f"its {nbs.role(cell)}"
    for i in range(index - 1, -1, -1):
        if nbs.role(nb.cells[i]) == nbs.ANSWER:
            return nbs.exercise_id(nb.cells[i]), "a later"
    return None, "an instructor's"


def _guard_reports(nb, stopped_at: int | None = None) -> tuple[list[dict], list[str]]:
    """The guards' reports, and problems with the guards (not for the cell the run stopped at)."""
    reports, problems = [], []
    for i, cell in enumerate(nb.cells):
        if not str(cell.get("id", "")).startswith(rb.GUARD_ID) or i == stopped_at:
            continue
        if cell.get("id") == f"{rb.GUARD_ID}-snapshot":
            if nbs.cell_error(cell) is not None:
                problems.append("the grader's snapshot of the libraries could not be taken")
            continue
        text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                       if o.get("output_type") == "stream")
        lines = [ln for ln in text.splitlines() if ln.startswith(rb.GUARD_MARK)]
        if lines:
            try:
                reports.append(json.loads(lines[-1][len(rb.GUARD_MARK):]))
            except ValueError:
                problems.append("the grader's guard printed garbage")
        elif cell.get("execution_count") is not None:
            err = nbs.cell_error(cell)
            problems.append("the grader's guard before a check could not run"
                            + (f" ({nbs.error_text(err)[:200]})" if err else ""))
    return reports, problems


def _score(result: dict) -> tuple[list[ExerciseGrade], list[str], list[str]]:
    """Exercise grades from an executed notebook; verdicts from execute replies only."""
    nb = result["notebook"]
    replies = result.get("replies", {})
    reports, problems = _guard_reports(nb, (result.get("stopped") or {}).get("cell"))
    flags = [f"{r['exercise']}: {f}" for r in reports for f in r.get("found", [])]
    answer_errors: dict[str, str] = {}
    for cell in nb.cells:
        if nbs.role(cell) == nbs.ANSWER and nbs.cell_error(cell) is not None:
            answer_errors.setdefault(nbs.exercise_id(cell), nbs.error_text(nbs.cell_error(cell)))
    graded = []
    plain = copy_without_guards(nb)
    for r in scoreboard.score(plain):
        graded.append(ExerciseGrade(r.exercise, r.points, r.earned, r.status, r.message))
    # the execute reply is the verdict: an error hidden from the outputs still fails
    checks = {nbs.exercise_id(c): i for i, c in enumerate(nb.cells) if nbs.role(c) == nbs.CHECK}
    for g in graded:
        status = replies.get(str(checks[g.exercise]))
        if g.status == scoreboard.PASSED and status != "ok":
            g.earned, g.status = 0, scoreboard.FAILED
            g.message = "the check cell did not complete normally (its error output was hidden)"
        if g.status != scoreboard.PASSED and g.exercise in answer_errors:
            g.message = (f"your answer cell raised {answer_errors[g.exercise]}"
                         + (f" -- then the check said: {g.message}" if g.message else ""))
    return graded, flags, problems


def copy_without_guards(nb):
    plain = nbformat.from_dict(dict(nb))
    plain.cells = [c for c in nb.cells if not str(c.get("id", "")).startswith(rb.GUARD_ID)]
    return plain


def grade_submission(student: str, path: Path, master, scratch: _Scratch,
                     limits: Limits, base: Path | None = None) -> Grade:
    """Grade one submission; never raises for anything the submission does."""
    start = time.monotonic()
    grade = Grade(student, _shown(path, base), "", OK)
    try:
        data = read_submission(path)
        grade.sha256 = hashlib.sha256(data).hexdigest()
        if os.lstat(path).st_nlink > 1:
            grade.flags.append("the file has other hard links (is it someone else's file?)")
        cells = rb.load_submission(data)
        del data
        grade.exercises, grade.notes, more = _grade_cells(cells, master, scratch, limits, grade)
        grade.flags += more
    except rb.SubmissionError as exc:
        grade.status, grade.reason = UNREADABLE, str(exc)
    except Exception as exc:  # a grader bug or MemoryError must not stop the batch: say so
        grade.status, grade.reason = ERROR, f"the grader failed: {type(exc).__name__}: {exc}"
    if grade.status == OK and grade.flags:
        grade.status = FLAGGED
    grade.seconds = round(time.monotonic() - start, 1)
    return grade


def _grade_cells(cells, master, scratch, limits, grade: Grade):
    exercises = nbs.exercises(master)
    skip: dict[str, tuple[str, str]] = {}  # exercise -> (status, message) from an earlier run
    deadline = time.monotonic() + limits.notebook_timeout
    flags: set[str] = set()
    killed_once = False
    while True:
        t_rebuild = time.monotonic()
        built = rb.rebuild(master, cells, skip={e: m for e, (_, m) in skip.items()})
        grade.timing["rebuild"] = round(grade.timing.get("rebuild", 0)
                                        + time.monotonic() - t_rebuild, 3)
        grade.attempts += 1
        result = _execute(built.notebook, scratch, limits, budget=deadline - time.monotonic())
        if result.get("error") and "notebook" not in result:
            raise RuntimeError(result["error"])
        grade.sandbox = dict(result.get("sandbox", {}))
        grade.sandbox["references"] = scratch.withhold_note
        grade.sandbox["verdicts"] = (
            f"{len(result.get('trusted', []))} check(s) run in the grader's own process"
            + "".join(f"; NOT: check cell {i} ran in the kernel ({why})"
                      for i, why in result.get("in_kernel", [])))
        _add_timing(grade.timing, built.notebook, result.get("timing") or {})
        graded, guard_flags, problems = _score(result)
        flags.update(guard_flags)
        flags.update(problems)
        grade.output_truncated |= bool(result.get("truncated"))
        if result.get("outside_files"):
            flags.add(f"wrote {len(result['outside_files'])} file(s) outside its working "
                      "directory (removed)")
        stopped = result.get("stopped")
        if result.get("error") and not stopped:
            raise RuntimeError(result["error"])
        if not stopped:
            break
        nb = result["notebook"]
        ex, where = _owner(nb, stopped["cell"])
        if stopped.get("exit_code") == -signal.SIGKILL and not killed_once and \
                deadline - time.monotonic() > 5:
            # SIGKILL comes from outside (an administrator, the OOM killer) more often than from
            # the submission: run it once more unchanged before blaming an exercise
            killed_once = True
            grade.notes.append("The kernel was killed (SIGKILL) during grading; the notebook was "
                               "run once more to rule out an outside cause")
            continue
        if stopped["reason"] == "timeout":
            status, msg = TIMED_OUT, (f"{where} cell ran longer than the {limits.cell_timeout} s "
                                      "limit -- an infinite loop?")
        elif stopped["reason"] == "died":
            status, msg = CRASHED, (f"the Python kernel died while running {where} cell "
                                    f"({_signal_name(stopped.get('exit_code'))}) -- does the "
                                    "code call os._exit() or exit(), or crash Python?")
        else:
            status, msg = TIMED_OUT, (f"the notebook ran past its {limits.notebook_timeout} s "
                                      "limit")
            ex = None
        if ex is not None and ex not in skip and deadline - time.monotonic() > 5:
            skip[ex] = (status, f"{msg} (the other exercises were graded in a fresh run)")
            continue
        for g in graded:  # nothing more to retry: say why the rest did not run
            if g.status == scoreboard.NOT_RUN:
                g.message = f"did not run: {msg}"
        break
    for g in graded:
        if g.exercise in skip:
            g.earned, g.status, g.message = 0, skip[g.exercise][0], skip[g.exercise][1]
    t_flags = time.monotonic()
    ref_names = {}
    for cell in master.cells:
        if nbs.role(cell) == nbs.ANSWER:
            ref_names.setdefault(nbs.exercise_id(cell), set()).update(
                rb.defined_names(cell.source))
    check_names = {b[0] for b in rb.check_bindings(master)}
    module_names = _module_names(master)
    ours = frozenset(rb.nncourse_aliases(master))
    for ans in built.answers:
        flags.update(rb.static_flags(ans.source, ans.exercise, check_names,
                                     ref_names.get(ans.exercise, set()), module_names, ours))
    grade.timing["static_flags"] = round(time.monotonic() - t_flags, 3)
    assert [g.exercise for g in graded] == [e.id for e in exercises]
    return graded, built.notes + grade.notes, sorted(flags)


#: The parts of one notebook's wall time (``Grade.timing``), in the order they happen, with the
#: label the summary prints: the grader's own work, then the worker's and the kernel's.
TIME_PARTS = (("rebuild", "rebuild"), ("job_write", "job files"), ("setup", "worker setup"),
              ("kernel_start", "kernel start"), ("instructor", "instructor cells"),
              ("answers", "answers"), ("guards", "guards"), ("checks", "checks"),
              ("shutdown", "kernel shutdown"), ("cleanup", "cleanup"),
              ("result_read", "result read"), ("static_flags", "static flags"))


def _add_timing(acc: dict, nb, timing: dict) -> None:
    """Add one run's times to ``acc``: wall seconds of the :data:`TIME_PARTS` the worker and
    ``_execute`` measured, with its cells summed by kind (instructor's, answers, guards,
    checks); CPU seconds of the kernel and of the worker (the checks' trusted side)."""
    def add(key, value):
        if isinstance(value, (int, float)):
            acc[key] = round(acc.get(key, 0) + value, 3)

    for key in ("worker", "kernel_cpu", "worker_cpu", *(k for k, _ in TIME_PARTS)):
        add(key, timing.get(key))  # the grader's own parts (rebuild...) are not in ``timing``
    for i, seconds in timing.get("cells", []):
        cell = nb.cells[i] if 0 <= i < len(nb.cells) else {}
        if str(cell.get("id", "")).startswith(rb.GUARD_ID):
            kind = "guards"
        else:
            kind = {nbs.ANSWER: "answers", nbs.CHECK: "checks"}.get(nbs.role(cell), "instructor")
        add(kind, seconds)


def _module_names(master) -> set[str]:
    import ast

    names = {"nncourse", "sys", "os"}
    for tree in rb.instructor_trees(master):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.asname or a.name.split(".")[0] for a in node.names)
    return names


def grade_batch(submissions: list, master_path: Path, jobs: int = 1,
                limits: Limits | None = None, hide: list[Path] | None = None,
                progress=None, base: Path | None = None, withhold: bool = True) -> list[Grade]:
    """Grade every :class:`Entry` (or ``(student, path)``); the grades are in the same order.

    Entries that are not to be graded get their row straight away. ``base``: the submissions
    folder, so the gradebook shows paths relative to it.
    """
    limits = limits or Limits()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    entries = [x if isinstance(x, Entry) else Entry(*x) for x in submissions]
    master = nbs.read(master_path)
    nbs.exercises(master)
    # withhold=False: the preflight found the master losing points without the references
    scratch = _Scratch(hide or [], master=master if withhold else None)
    done = [0]
    lock = threading.Lock()

    def one(entry: Entry) -> Grade:
        try:
            if entry.status is not None:
                g = Grade(entry.student, _shown(entry.path, base), "", entry.status,
                          reason=entry.reason)
            else:
                g = grade_submission(entry.student, entry.path, master, scratch, limits, base)
        except Exception as exc:  # noqa: BLE001 - one row lost, never the batch
            g = Grade(entry.student, str(entry.path), "", ERROR,
                      reason=f"the grader failed: {type(exc).__name__}: {exc}")
        with lock:
            done[0] += 1
            if progress:
                try:
                    progress(done[0], len(entries), g)
                except Exception:  # noqa: BLE001 - a progress line is not worth a batch
                    pass
        return g

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(one, entries))
    finally:
        scratch.cleanup()


def _shown(path: Path, base: Path | None) -> str:
    try:
        return path.relative_to(base).as_posix() if base else str(path)
    except ValueError:
        return str(path)
