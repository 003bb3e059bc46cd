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
        info["hidden"] = "NOT hidden (needs root)"


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


def launch(job_path: str, connection_file: str, kernel_args: list[str]) -> None:
    with open(job_path) as f:
        cfg = json.load(f)
    work, uid = cfg["workdir"], cfg.get("uid")
    info: dict = {"uid": "own user id" if uid is not None else "grader's user (not root)"}
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
    if "JPY_PARENT_PID" in os.environ:  # ipykernel exits when this process's parent goes away
        env["JPY_PARENT_PID"] = os.environ["JPY_PARENT_PID"]
    env.update({"HOME": work, "TMPDIR": work, "IPYTHONDIR": os.path.join(work, ".ipython"),
                "MPLCONFIGDIR": os.path.join(work, ".matplotlib"),
                "JUPYTER_RUNTIME_DIR": os.path.join(work, ".jupyter"),
                "JUPYTER_CONFIG_DIR": os.path.join(work, ".jupyter"),
                "JUPYTER_DATA_DIR": os.path.join(work, ".jupyter")})
    log = os.open(cfg["kernel_log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if uid is not None:
        os.chown(own_conn, uid, uid)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
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
    os.execve(py, [py, "-m", "ipykernel_launcher", "-f", own_conn, *kernel_args], env)


# --- the worker ---------------------------------------------------------------------------------

def _processes_of(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    pids.append(int(name))
            except OSError:
                pass
    return pids


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

        def reset_execution_trackers(self):
            super().reset_execution_trackers()
            self.used: dict[int, int] = {}
            self.truncated: set[int] = set()

        def output(self, outs, msg, display_id, cell_index):
            content = msg["content"]
            used = self.used.get(cell_index, 0)
            if msg["msg_type"] == "error":
                content["evalue"] = str(content.get("evalue", ""))[:self.output_cap]
                content["traceback"] = [str(t)[:self.output_cap]
                                        for t in content.get("traceback", [])[-20:]]
                return super().output(outs, msg, display_id, cell_index)
            if msg["msg_type"] == "stream":
                size = len(content.get("text", ""))
            else:
                size = sum(len(v) if isinstance(v, str) else len(json.dumps(v))
                           for v in content.get("data", {}).values())
            if used + size > self.output_cap:
                self.truncated.add(cell_index)
                room = self.output_cap - used
                if msg["msg_type"] != "stream" or room <= 0:
                    self.used[cell_index] = self.output_cap
                    return None
                content["text"] = content["text"][:room]
                size = room
            self.used[cell_index] = used + size
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


async def _execute(job: dict, nb, result: dict) -> None:
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
    replies = result["replies"]

    async def on_executed(cell, cell_index, execute_reply):
        replies[str(cell_index)] = (execute_reply or {}).get("content", {}).get("status", "none")

    client.on_cell_executed = on_executed
    client.reset_execution_trackers()
    try:
        async with client.async_setup_kernel(cwd=job["workdir"], env=job["env"]):
            await client.async_wait_for_reply(await ensure_async(client.kc.kernel_info()))
            count = 0
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if time.monotonic() >= deadline:
                    result["stopped"] = {"cell": i, "reason": "deadline"}
                    break
                try:
                    count += 1
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
                    result["stopped"] = {"cell": i, "reason": "died", "exit_code": code}
                    break
            result["truncated"] = sorted(client.truncated)
    finally:
        if job.get("uid") is not None:
            kill_user(job["uid"])
        elif getattr(km, "provisioner", None) is not None and km.provisioner.pgid:
            try:
                os.killpg(km.provisioner.pgid, signal.SIGKILL)
            except OSError:
                pass


def run(job_path: str) -> int:
    import nbformat

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
    try:
        asyncio.run(_execute(job, nb, result))
    except Exception as exc:  # kernel would not start, ...: the parent reports it
        result["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
    if job.get("uid") is not None:
        kill_user(job["uid"])
        result["outside_files"] = remove_files_of(job["uid"], keep=job["scratch"])
    try:
        with open(job["launch_info"]) as f:
            result["sandbox"] = json.load(f)
    except (OSError, ValueError):
        result["sandbox"] = {}
    nbformat.write(nb, job["executed"])
    with open(job["result"], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "launch":
        launch(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 3 and sys.argv[1] == "run":
        sys.exit(run(sys.argv[2]))
    else:
        sys.exit("usage: sandbox.py run JOB.json | launch JOB.json CONNECTION_FILE [args]")
