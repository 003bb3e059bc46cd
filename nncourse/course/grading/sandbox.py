"""Run one untrusted notebook in a locked-down kernel: the grader's execution engine.

Run by path, never imported as part of the package, so that neither this process nor the sandbox
imports course code it does not need::

    python -I nncourse/course/grading/sandbox.py run JOB.json      # the worker: executes a notebook
    python -I nncourse/course/grading/sandbox.py launch JOB.json CONNECTION_FILE [kernel args]

``run`` starts a kernel whose command is ``launch``; ``launch`` starts as the grader's user, locks
itself down and then *becomes* the ipykernel process (``execve``), so every limit applies to the
student's code and to everything it starts:

* resource limits: address space (``RLIMIT_AS``), CPU seconds (``RLIMIT_CPU``), size of any file it
  writes (``RLIMIT_FSIZE``), open files, no core dumps; as root also the number of processes
  (``RLIMIT_NPROC``), which is exact because each kernel gets a user id of its own;
* as root: a fresh network namespace (no network, not even loopback: the kernel talks to the
  worker over Unix sockets), a private mount namespace in which the instructor's solutions, the
  git history, the submissions and the gradebook are covered by empty read-only file systems,
  and a throwaway user id that owns nothing but the kernel's working directory;
* without root: a user + network namespace when the OS allows unprivileged ones; the rest is
  reported as not enforced;
* one thread (``OMP_NUM_THREADS=1`` and friends), its own working directory, ``HOME`` and
  ``TMPDIR``, no terminal output (the kernel's own stdout/stderr go to /dev/null; what the student
  prints arrives as capped notebook output), killed with its parent.

``run`` caps what it keeps of each cell's output, stops at the first cell that times out, kills the
kernel or passes the notebook's deadline, kills everything the throwaway user still runs, removes
files that user left in the shared temporary directories, and writes the executed notebook plus a
``result.json`` (execute-reply status of every cell, why it stopped, what the sandbox enforced).

A check cell the grader marked ``trusted`` (one call ``check.exN_M(f, ...)``) is not sent to the
kernel: ``run`` -- a trusted process -- imports the check and runs it itself, with proxies for
the student's functions whose calls are executed in the kernel (:mod:`proxy`). The verdict, the
expected values and the printed pass line or error are produced here and written into the
executed notebook as that cell's outputs.

With bubblewrap (``mode: bwrap``) ``launch`` execs ``bwrap`` instead of ipykernel directly: an
allow-list file system, private tmpfs, and new user/mount/network/PID/IPC/UTS namespaces.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import resource
import signal
import sys
import time

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 1 << 12, 1 << 14, 1 << 18
PR_SET_PDEATHSIG = 1
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")
KERNEL_NAME = "nncourse-sandbox"


# --- the kernel launcher (runs as root or as the grader's user, then execs ipykernel) ----------

def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _unshare(libc, flags: int) -> str | None:
    """None on success, else the error text."""
    if libc.unshare(flags) == 0:
        return None
    return os.strerror(ctypes.get_errno())


def _isolate(cfg: dict, info: dict) -> None:
    libc = _libc()
    if os.geteuid() == 0:
        err = _unshare(libc, CLONE_NEWNET)
        info["network"] = "isolated (empty network namespace)" if err is None else (
            f"NOT isolated (unshare: {err})")
        err = _unshare(libc, CLONE_NEWNS)
        if err is None and libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0:
            hidden = []
            for path in cfg.get("hide", []):
                if os.path.isdir(path) and libc.mount(
                        b"none", path.encode(), b"tmpfs",
                        MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=555") == 0:
                    hidden.append(path)
            info["hidden"] = hidden
            if cfg.get("uid") is not None:
                _expose(libc, cfg.get("expose", []), cfg["stage"])
        else:
            info["hidden"] = f"NOT hidden (mount namespace: {err or 'mount failed'})"
    else:  # unprivileged: a user namespace mapping only ourselves, plus a network namespace
        uid, gid = os.getuid(), os.getgid()
        err = _unshare(libc, CLONE_NEWUSER | CLONE_NEWNET)
        if err is None:
            try:
                for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                                   ("gid_map", f"{gid} {gid} 1")):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
            except OSError as exc:
                err = str(exc)
        info["network"] = ("isolated (user + network namespace)" if err is None
                           else f"NOT isolated (unprivileged namespaces unavailable: {err})")
        info["hidden"] = "NOT hidden (needs root or bubblewrap)"


def _blocked_ancestor(path: str) -> str | None:
    """The first directory above ``path`` that other users may not enter, if any."""
    parts = os.path.realpath(path).split(os.sep)
    for i in range(2, len(parts)):
        d = os.sep.join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def _expose(libc, paths: list[str], stage: str) -> None:
    """Let the throwaway user reach ``paths`` (e.g. a Python under root's private home).

    Inside the private mount namespace, each closed ancestor is covered with an empty tmpfs that
    others may enter, and only the children on the way to ``paths`` are bind-mounted back: the
    rest of that directory stays invisible.
    """
    wanted: dict[str, set[str]] = {}
    for path in paths:
        blocked = _blocked_ancestor(path)
        if blocked is not None:
            child = os.path.realpath(path)[len(blocked) + 1:].split(os.sep)[0]
            wanted.setdefault(blocked, set()).add(child)
    for n, (blocked, children) in enumerate(sorted(wanted.items())):
        staged = []
        for child in sorted(children):
            st = os.path.join(stage, f"{n}-{child}")
            os.makedirs(st, exist_ok=True)
            if libc.mount(os.path.join(blocked, child).encode(), st.encode(), None,
                          MS_BIND | MS_REC, None) == 0:
                staged.append((child, st))
        if libc.mount(b"none", blocked.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                      b"size=16k,mode=711") != 0:
            continue
        for child, st in staged:
            os.mkdir(os.path.join(blocked, child), 0o711)
            libc.mount(st.encode(), os.path.join(blocked, child).encode(), None,
                       MS_BIND | MS_REC, None)
            libc.umount2(st.encode(), 2)  # MNT_DETACH


def _set_limits(cfg: dict, info: dict) -> None:
    lim = cfg["limits"]
    applied = {}
    pairs = [("RLIMIT_AS", lim.get("memory")), ("RLIMIT_CPU", lim.get("cpu")),
             ("RLIMIT_FSIZE", lim.get("file_size")), ("RLIMIT_NOFILE", lim.get("open_files")),
             ("RLIMIT_CORE", 0)]
    if cfg.get("uid") is not None:  # per-user count: only meaningful for a user id of our own
        pairs.append(("RLIMIT_NPROC", lim.get("processes")))
    else:
        applied["RLIMIT_NPROC"] = "NOT set (counts every process of the grader's user)"
    for name, value in pairs:
        if value is None:
            continue
        hard = value + 5 if name == "RLIMIT_CPU" else value  # SIGXCPU first, SIGKILL 5 s later
        try:
            resource.setrlimit(getattr(resource, name), (value, hard))
            applied[name] = value
        except (ValueError, OSError) as exc:
            applied[name] = f"NOT set ({exc})"
    info["limits"] = applied


PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/mime.types")
_SYSTEM_TREES = ("/etc/ld.so.conf.d", "/etc/fonts", "/etc/alternatives", "/etc/ssl/certs")


def bwrap_argv(bwrap: str, prefixes: list[str], package: str, work: str,
               tmp_size: int = 256 * 2**20) -> list[str]:
    """bubblewrap's command line: a file system built from an allow-list, all namespaces new.

    Visible: ``/usr`` and the system's library links, a few files of ``/etc``, the Python
    installations in ``prefixes`` (read-only), the package copy (read-only), the kernel's work
    directory (read-write), a private ``/proc`` and minimal ``/dev``, and private tmpfs for
    ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/lock``. Nothing else exists: no checkout, no
    ``solutions/``, no ``.git``, no submissions, no home directories.
    """
    argv = [bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
            "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    for f in _SYSTEM_FILES + _SYSTEM_TREES:
        argv += ["--ro-bind-try", f, f]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for t in PRIVATE_TMP:
        argv += ["--perms", "1777", "--size", str(tmp_size), "--tmpfs", t]
    for prefix in prefixes:
        real = os.path.realpath(prefix)
        if not real.startswith("/usr/"):
            argv += ["--ro-bind", real, real]
            if real != prefix:
                argv += ["--ro-bind", real, prefix]
    argv += ["--ro-bind", package, package, "--bind", work, work, "--chdir", work,
             "--cap-drop", "ALL", "--"]
    return argv


def _expose_for_uid(expose: list[str], stage: str) -> str | None:
    """As root, before becoming a throwaway user: let that user reach ``expose`` (a Python under
    root's private home...) in a private mount namespace. None on success, else the error."""
    libc = _libc()
    err = _unshare(libc, CLONE_NEWNS)
    if err is None and libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0:
        _expose(libc, expose, stage)
        return None
    return err or "mount failed"


def _become(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def bwrap_works(bwrap: str, uid: int | None = None) -> bool:
    """True if ``bwrap`` can build the sandbox here (as ``uid``, when running as root)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        cfg = {"bwrap": bwrap, "uid": uid, "prefixes": sorted({sys.base_prefix, sys.prefix}),
               "package": d, "workdir": d, "stage": os.path.join(d, "stage"),
               "expose": [sys.base_prefix, sys.prefix]}
        with open(os.path.join(d, "probe.json"), "w") as f:
            json.dump(cfg, f)
        try:
            return subprocess.run([sys.executable, "-I", os.path.abspath(__file__), "probe",
                                   os.path.join(d, "probe.json")], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def _probe(cfg_path: str) -> None:
    with open(cfg_path) as f:
        cfg = json.load(f)
    if cfg["uid"] is not None:
        if _expose_for_uid(cfg["expose"], cfg["stage"]) is not None:
            os._exit(1)
        _become(cfg["uid"])
    argv = bwrap_argv(cfg["bwrap"], cfg["prefixes"], cfg["package"], cfg["workdir"])
    argv += [sys.executable, "-I", "-c", "import encodings"]
    os.execv(argv[0], argv)


def _bwrap_info(cfg: dict, info: dict) -> None:
    info["mode"] = "bubblewrap"
    info["network"] = "isolated (empty network namespace)"
    info["files"] = ("allow-list: /usr, system libraries, Python, a copy of the package "
                     "(read-only) and the work directory; no checkout, solutions/, .git, "
                     "submissions or home directories")
    info["hidden"] = "everything not on the allow-list"
    info["tmp"] = "private tmpfs: " + ", ".join(PRIVATE_TMP)
    info["ipc"] = "own IPC namespace (SysV shared memory, semaphores, queues die with it)"
    info["pid"] = "own PID namespace (sees only its own processes; all die with the kernel)"
    info["environment"] = f"allow-list ({len(cfg['env'])} variables)"


def launch(job_path: str, connection_file: str, kernel_args: list[str]) -> None:
    with open(job_path) as f:
        cfg = json.load(f)
    work, uid = cfg["workdir"], cfg.get("uid")
    info: dict = {"uid": "own user id" if uid is not None else "grader's user (not root)"}
    bwrap = cfg.get("mode") == "bwrap"
    if bwrap:
        _bwrap_info(cfg, info)
        if uid is not None:
            err = _expose_for_uid(cfg.get("expose", []), cfg["stage"])
            if err is not None:
                info["files"] = f"NOT isolated (mount namespace: {err})"
    else:
        info["mode"] = "unshare (bubblewrap not available)"
        info["environment"] = f"allow-list ({len(cfg['env'])} variables)"
        info["tmp"] = "shared /tmp, /var/tmp, /dev/shm (files left there are removed as root)"
        info["ipc"] = "NOT isolated"
        info["pid"] = "NOT isolated"
        _isolate(cfg, info)
    with open(connection_file) as f:  # the worker's copy is private to root: give the kernel one
        conn = f.read()
    own_conn = os.path.join(work, ".kernel-connection.json")
    with open(own_conn, "w") as f:
        f.write(conn)
    _set_limits(cfg, info)
    with open(cfg["launch_info"], "w") as f:
        json.dump(info, f)
    env = dict(cfg["env"])
    if "JPY_PARENT_PID" in os.environ and not bwrap:  # ipykernel exits with its parent
        env["JPY_PARENT_PID"] = os.environ["JPY_PARENT_PID"]
    env.update({"HOME": work, "TMPDIR": work, "IPYTHONDIR": os.path.join(work, ".ipython"),
                "MPLCONFIGDIR": os.path.join(work, ".matplotlib"),
                "JUPYTER_RUNTIME_DIR": os.path.join(work, ".jupyter"),
                "JUPYTER_CONFIG_DIR": os.path.join(work, ".jupyter"),
                "JUPYTER_DATA_DIR": os.path.join(work, ".jupyter")})
    log = os.open(cfg["kernel_log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if uid is not None:
        os.chown(own_conn, uid, uid)
        _become(uid)
    os.chmod(own_conn, 0o600)
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
    if os.getppid() == 1:  # the worker died before we could ask to die with it
        os._exit(1)
    os.chdir(work)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd in (1, 2):  # ipykernel's own messages; what the student prints goes to the notebook
        os.dup2(log, fd)
    py = cfg["python"]
    argv = [py, "-m", "ipykernel_launcher", "-f", own_conn, *kernel_args]
    if bwrap:
        argv = bwrap_argv(cfg["bwrap"], cfg["prefixes"], cfg["package"], work,
                          cfg.get("tmp_size", 256 * 2**20)) + argv
    os.execve(argv[0], argv, env)


# --- the worker ---------------------------------------------------------------------------------

def _processes_of(uid: int) -> list[int]:
    """The live processes of ``uid``. Zombies are left out: they have exited and hold nothing
    but a table entry until their parent (often this worker, for the kernel's launcher) reaps
    them -- waiting for them to vanish cost about a second per notebook."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid != uid:
                    continue
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split(None, 1)[0]
            except (OSError, IndexError):
                continue
            if state not in (b"Z", b"X"):
                pids.append(int(name))
    return pids


def _cpu_of(uid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of ``uid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _processes_of(uid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return round(total / tick, 2)


def kill_user(uid: int) -> int:
    """SIGKILL every process of ``uid`` until none is left; return how many were killed."""
    killed = 0
    for _ in range(50):
        pids = _processes_of(uid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.02)
    return killed


def remove_files_of(uid: int, keep: str, roots=SHARED_TMP) -> list[str]:
    """Delete what ``uid`` left in the shared temporary directories, except under ``keep``.

    Only directories ``uid`` could write to are searched: world-writable ones and its own.
    """
    removed: list[str] = []
    keep = os.path.realpath(keep)

    def sweep(d: str) -> None:
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for e in entries:
            path = e.path
            if path == keep:
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            is_dir = e.is_dir(follow_symlinks=False)
            if is_dir and (st.st_uid == uid or st.st_mode & 0o002):
                sweep(path)
            if st.st_uid == uid:
                try:
                    os.rmdir(path) if is_dir else os.unlink(path)
                    removed.append(path)
                except OSError:
                    pass

    for root in roots:
        if os.path.isdir(root):
            sweep(root)
    return removed


def _client_class():
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Keeps at most ``output_cap`` characters of output per cell; never drops an error."""

        output_cap = 100_000
        notebook_output_cap = 4_000_000

        def reset_execution_trackers(self):
            super().reset_execution_trackers()
            self.used: dict[int, int] = {}
            self.total = 0
            self.truncated: set[int] = set()

        def _update_display_id(self, display_id, msg):
            # one update rewrites every output showing display_id: charge it for each of them
            # (display() 10 000 times, then update with 50 kB = 500 MB of notebook otherwise)
            refs = sum(len(v) for v in self._display_id_map.get(display_id, {}).values())
            data = msg.get("content", {}).get("data", {}) or {}
            size = sum(len(v) if isinstance(v, str) else len(json.dumps(v))
                       for v in data.values())
            if refs and (size > self.output_cap
                         or self.total + size * refs > self.notebook_output_cap):
                for cells in self._display_id_map.get(display_id, {}):
                    self.truncated.add(cells)
                return None
            self.total += size * refs
            return super()._update_display_id(display_id, msg)

        def output(self, outs, msg, display_id, cell_index):
            content = msg["content"]
            used = self.used.get(cell_index, 0)
            if msg["msg_type"] == "error":  # never dropped, but bounded
                room = max(2_000, min(self.output_cap, self.notebook_output_cap - self.total))
                content["evalue"] = str(content.get("evalue", ""))[:room]
                tb = [str(t)[:room // 4] for t in content.get("traceback", [])[-20:]]
                while sum(map(len, tb)) > room and len(tb) > 1:
                    tb.pop(0)
                content["traceback"] = tb
                self.total += len(content["evalue"]) + sum(map(len, tb))
                return super().output(outs, msg, display_id, cell_index)
            if msg["msg_type"] == "stream":
                size = len(content.get("text", ""))
            else:
                size = sum(len(v) if isinstance(v, str) else len(json.dumps(v))
                           for v in content.get("data", {}).values())
            if used + size > self.output_cap or self.total + size > self.notebook_output_cap:
                self.truncated.add(cell_index)
                room = min(self.output_cap - used, self.notebook_output_cap - self.total)
                if msg["msg_type"] != "stream" or room <= 0:
                    self.used[cell_index] = self.output_cap
                    return None
                content["text"] = content["text"][:room]
                size = room
            self.used[cell_index] = used + size
            self.total += size
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


class _Fallback(Exception):
    """The check cannot run in the trusted process: run its cell in the kernel instead."""


async def _kernel_call(client, name: str, payload: dict, on_callback=None) -> dict:
    """Call the notebook's function ``name`` in the kernel (proxy.serve_named); its reply.

    While the call runs, the kernel's ``input()`` requests that carry a call-back of an object
    the check lent (proxy.CALLBACK_MARK) are answered by ``on_callback`` in this process; any
    other ``input()`` gets an empty line.
    """
    import queue

    from jupyter_core.utils import ensure_async

    _here_on_path()
    import proxy as px

    code = (f"_nncourse_reply = __import__('_nncourse_proxy').serve_named("
            f"{name!r}, {json.dumps(payload)!r})")
    msg_id = client.kc.execute(code, silent=False, store_history=False, allow_stdin=True,
                               user_expressions={"r": "_nncourse_reply"}, stop_on_error=False)
    waiting = asyncio.ensure_future(ensure_async(client.async_wait_for_reply(msg_id)))
    loop = asyncio.get_running_loop()
    while not waiting.done():
        try:
            msg = await ensure_async(client.kc.get_stdin_msg(timeout=0.05))
        except (queue.Empty, TimeoutError, asyncio.TimeoutError):
            continue
        if msg.get("header", {}).get("msg_type") != "input_request":
            continue
        prompt = str(msg.get("content", {}).get("prompt", ""))
        text = ""
        if on_callback is not None and prompt.startswith(px.CALLBACK_MARK):
            text = await loop.run_in_executor(None, on_callback, prompt[len(px.CALLBACK_MARK):])
        client.kc.input(text)
    reply = await waiting
    if reply is None:
        raise TimeoutError("the kernel did not answer")
    content = reply.get("content", {})
    expr = (content.get("user_expressions") or {}).get("r") or {}
    if content.get("status") != "ok" or expr.get("status") != "ok":
        return {"error": {"type": "RuntimeError", "message": "the kernel could not run the "
                          "call (was the grader's helper removed?)"}}
    import ast

    try:
        return json.loads(ast.literal_eval(expr["data"]["text/plain"]))
    except (KeyError, ValueError, SyntaxError, TypeError, MemoryError):
        return {"error": {"type": "RuntimeError", "message": "the kernel sent a malformed reply"}}


async def _trusted_check(client, cell, spec: dict, limit: float) -> tuple[str, list]:
    """Run a check in *this* process, calling the student's functions in the kernel.

    Returns the execute-reply-like status and the cell's outputs. The expected values, the
    comparison and the verdict never exist in the student's process.
    """
    import contextlib
    import importlib
    import io

    _here_on_path()
    import proxy as px

    loop = asyncio.get_running_loop()
    failure: list[BaseException] = []

    def transport(name, payload, on_callback):
        fut = asyncio.run_coroutine_threadsafe(_kernel_call(client, name, payload, on_callback),
                                               loop)
        try:
            return fut.result(timeout=limit + 10)
        except BaseException as exc:  # a timeout or a dead kernel: stop the check there
            failure.append(exc)
            raise

    proxies = [px.Proxy(name, transport) for name in spec["args"]]

    def run():
        fn = getattr(importlib.import_module(spec["module"]), spec["function"])
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                fn(*proxies)
        except Exception as exc:  # noqa: BLE001 - the check's verdict
            return buf.getvalue(), exc
        return buf.getvalue(), None

    printed, exc = await loop.run_in_executor(None, run)
    if failure:
        raise failure[0]
    if any(p.cannot for p in proxies):
        raise _Fallback("; ".join(p.cannot for p in proxies if p.cannot))
    outputs = [nbformat_output("stream", name="stdout", text=printed)] if printed else []
    if exc is None:
        return "ok", outputs
    ename = type(exc).__name__
    outputs.append(nbformat_output("error", ename=ename, evalue=str(exc),
                                   traceback=[f"{ename}: {exc}"]))
    return "error", outputs


def nbformat_output(kind: str, **fields):
    import nbformat

    return nbformat.v4.new_output(kind, **fields)


async def _execute(job: dict, nb, result: dict, started: float) -> None:
    import zmq
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_core.utils import ensure_async
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    deadline = time.monotonic() + job["notebook_timeout"]
    ksm = KernelSpecManager(kernel_dirs=[job["kernels"]], ensure_native_kernel=False)
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm, transport="ipc",
                            ip=os.path.join(job["workdir"], ".k"),
                            connection_file=os.path.join(job["jobdir"], "connection.json"))
    km.context.setsockopt(zmq.MAXMSGSIZE, job["max_message"])  # a 1 GB print is refused whole

    def timeout_for(cell):
        return max(1, min(job["cell_timeout"], int(deadline - time.monotonic()) + 1))

    client = _client_class()(nb, km=km, timeout_func=timeout_for, allow_errors=True,
                             record_timing=False, interrupt_on_timeout=False,
                             startup_timeout=job["startup_timeout"], iopub_timeout=4,
                             shutdown_kernel="immediate", kernel_name=KERNEL_NAME)
    client.output_cap = job["output_cap"]
    client.notebook_output_cap = job.get("notebook_output_cap", 4_000_000)
    replies = result["replies"]

    async def on_executed(cell, cell_index, execute_reply):
        replies[str(cell_index)] = (execute_reply or {}).get("content", {}).get("status", "none")

    client.on_cell_executed = on_executed
    client.reset_execution_trackers()
    timing = result["timing"] = {"cells": []}
    t0 = time.monotonic()
    timing["setup"] = round(t0 - started, 3)
    try:
        async with client.async_setup_kernel(cwd=job["workdir"], env=job["env"]):
            await client.async_wait_for_reply(await ensure_async(client.kc.kernel_info()))
            timing["kernel_start"] = round(time.monotonic() - t0, 3)
            count = 0
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                t_cell = time.monotonic()
                if time.monotonic() >= deadline:
                    result["stopped"] = {"cell": i, "reason": "deadline"}
                    break
                try:
                    count += 1
                    spec = (cell.get("metadata", {}).get("grader") or {}).get("trusted")
                    if spec and job.get("trusted_checks", True):
                        try:
                            status, outputs = await asyncio.wait_for(
                                _trusted_check(client, cell, spec, timeout_for(cell)),
                                timeout_for(cell) + 5)
                            cell.outputs, cell.execution_count = outputs, count
                            replies[str(i)] = status
                            result.setdefault("trusted", []).append(i)
                            continue
                        except _Fallback as why:
                            result.setdefault("in_kernel", []).append([i, str(why)])
                        except (asyncio.TimeoutError, TimeoutError):
                            raise CellTimeoutError.error_from_timeout_and_cell(
                                "check timed out", timeout_for(cell), cell) from None
                    await client.async_execute_cell(cell, i, execution_count=count)
                except CellTimeoutError:
                    reason = "deadline" if time.monotonic() >= deadline - 1 else "timeout"
                    result["stopped"] = {"cell": i, "reason": reason}
                    break
                except DeadKernelError:
                    proc = getattr(km.provisioner, "process", None)
                    code = proc.poll() if proc is not None else None
                    if code is None and proc is not None:
                        try:
                            code = proc.wait(timeout=2)
                        except Exception:
                            code = None
                    if job.get("mode") == "bwrap" and isinstance(code, int) and 128 < code < 160:
                        code = 128 - code  # bubblewrap exits 128 + N when the kernel got signal N
                    result["stopped"] = {"cell": i, "reason": "died", "exit_code": code}
                    break
                finally:
                    timing["cells"].append([i, round(time.monotonic() - t_cell, 3)])
            result["truncated"] = sorted(client.truncated)
            t_end = time.monotonic()
        timing["shutdown"] = round(time.monotonic() - t_end, 3)
    finally:
        timing["kernel_cpu"] = _cpu_of(job["uid"]) if job.get("uid") is not None else None
        if job.get("uid") is not None:
            kill_user(job["uid"])
        elif getattr(km, "provisioner", None) is not None and km.provisioner.pgid:
            try:
                os.killpg(km.provisioner.pgid, signal.SIGKILL)
            except OSError:
                pass


def _here_on_path() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)


def run(job_path: str) -> int:
    import nbformat

    t_start = time.monotonic()
    with open(job_path) as f:
        job = json.load(f)
    nb = nbformat.read(job["notebook"], as_version=4)
    result: dict = {"replies": {}, "stopped": None, "truncated": [], "error": None}
    os.makedirs(job["kernels"] + "/" + KERNEL_NAME, exist_ok=True)
    with open(os.path.join(job["kernels"], KERNEL_NAME, "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, "-I", os.path.abspath(__file__), "launch", job_path,
                            "{connection_file}"],
                   "display_name": "nncourse grading sandbox", "language": "python"}, f)
    os.environ["JUPYTER_RUNTIME_DIR"] = job["jobdir"]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        asyncio.run(_execute(job, nb, result, t_start))
    except Exception as exc:  # kernel would not start, ...: the parent reports it
        result["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    t_clean = time.monotonic()
    result.setdefault("timing", {})["worker_cpu"] = round(
        cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2)
    if job.get("uid") is not None:
        kill_user(job["uid"])
        result["outside_files"] = remove_files_of(job["uid"], keep=job["scratch"])
    try:
        with open(job["launch_info"]) as f:
            result["sandbox"] = json.load(f)
    except (OSError, ValueError):
        result["sandbox"] = {}
    text = nbformat.writes(nb)
    cap = 2 * job.get("notebook_output_cap", 4_000_000) + 2**20
    if len(text) > cap:  # a last resort: the caps above should make this impossible
        for i, cell in enumerate(nb.cells):
            if cell.get("outputs"):
                cell.outputs = [o for o in cell.outputs if o.get("output_type") == "error"][-1:]
                result["truncated"] = sorted(set(result["truncated"]) | {i})
        text = nbformat.writes(nb)
        result["oversize"] = True
    with open(job["executed"], "w", encoding="utf-8") as f:
        f.write(text)
    result["timing"]["cleanup"] = round(time.monotonic() - t_clean, 3)
    with open(job["result"], "w") as f:
        json.dump(result, f)
    return 0


def serve() -> int:
    """Run jobs one after another: ``serve`` reads a JOB.json path per line on stdin, runs it as
    ``run`` would and answers ``done`` on stdout.

    One worker serves one of the grader's job slots for the whole batch, so the worker's own
    start -- Python, jupyter_client, zmq, torch and the checks the trusted side imports, about 3
    CPU-seconds -- is paid once per slot instead of once per notebook. Each notebook still gets
    a fresh sandboxed kernel (a new process, namespaces, user id): only this trusted process,
    which never runs student code, is reused. The random generators of the checks' side are put
    back to the worker's starting state before every job, so a check sees the same generators
    for every student. While a job runs, the worker's stdout and stderr (inherited by the
    kernel's launcher) go to that job's ``worker.log``; the answers go through a private copy of
    the original stdout.
    """
    import random

    if "jsonschema" not in sys.modules:  # as nncourse.course.notebooks does: ~1.5 s less
        sys.modules.setdefault("rfc3987_syntax", None)
    import nbclient  # noqa: F401 - imported once here, not per notebook
    import nbformat  # noqa: F401
    import numpy as np
    import torch

    _here_on_path()
    import proxy  # noqa: F401

    answer = os.fdopen(os.dup(1), "w")  # os.dup: not inherited by the kernels
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    for line in sys.stdin:
        job_path = line.strip()
        if not job_path:
            continue
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        try:
            with open(job_path) as f:
                log_path = os.path.join(json.load(f)["jobdir"], "worker.log")
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except (OSError, ValueError, KeyError):
            log = os.dup(null)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        try:
            run(job_path)
        except BaseException as exc:  # noqa: BLE001 - the grader sees no result.json and says so
            print(f"the worker failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(null, 1)
        os.dup2(null, 2)
        answer.write("done\n")
        answer.flush()
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "launch":
        launch(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 3 and sys.argv[1] == "probe":
        _probe(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "run":
        sys.exit(run(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "serve":
        sys.exit(serve())
    else:
        sys.exit("usage: sandbox.py run JOB.json | launch JOB.json CONNECTION_FILE [args]")
