"""Tests for nncourse/course/tune.py: the ``python -m nncourse tune`` worker command."""

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import optuna
import pytest

from nncourse import search
from nncourse.__main__ import main

search.quiet()


@pytest.mark.parametrize("storage, message", [
    ("study.db", "must be a database URL"),
    ("sqlite:////no/such/dir/x.db", "cannot open storage"),
    ("postgresql://me:secret@localhost/db", "cannot open storage postgresql://me:***@"),
])
def test_worker_rejects_bad_storage(storage, message, capsys):
    assert main(["tune", "--study", "s", "--storage", storage, "--create"]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret" not in err


def test_worker_rejects_unknown_study(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    search.create_study("exists", url)
    assert main(["tune", "--study", "typo", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "no study named 'typo'" in err and "studies there: exists" in err


def test_worker_without_create_leaves_no_database_file(tmp_path, capsys):
    db = tmp_path / "typo.db"
    assert main(["tune", "--study", "s", "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert "no study database at" in err and "--create" in err
    assert not db.exists()


def test_missing_driver_is_named(capsys):
    assert main(["tune", "--study", "s", "--storage", "nosuchdb://u@h/d", "--create"]) == 2
    assert "cannot open storage nosuchdb://" in capsys.readouterr().err


# --- several workers on one study, started at the same moment ----------------------------------

ROOT = Path(__file__).resolve().parents[2]
N_TRIALS = 3  # per worker


def _workers(url: str, n: int = 2) -> list[subprocess.CompletedProcess]:
    """``n`` tune workers with --create started together on one study; wait for all of them."""
    cmd = [sys.executable, "-m", "nncourse", "tune", "--study", "shared", "--storage", url,
           "--create", "--n-trials", str(N_TRIALS), "--epochs", "2", "--dataset", "moons"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([*cmd, "--seed", str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for i in range(n)]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def _check_shared(url: str, runs: list[subprocess.CompletedProcess]) -> None:
    """Every worker succeeded; the study holds each worker's trials once: none lost, none twice."""
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    study = search.load_study("shared", url)
    trials = study.trials
    n = N_TRIALS * len(runs)
    assert len(trials) == n
    assert sorted(t.number for t in trials) == list(range(n))  # no gap, no duplicate
    finished = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert all(t.state in finished for t in trials), [t.state for t in trials]
    by_worker = Counter(t.user_attrs["worker"] for t in trials)
    assert sorted(by_worker.values()) == [N_TRIALS] * len(runs)  # each worker: its own trials
    # shared: the worker that finished last saw the other workers' trials in the same study
    counts = [int(re.search(r"has (\d+) trials", r.stdout).group(1)) for r in runs]
    assert max(counts) == n


def test_two_workers_create_one_sqlite_study_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _check_shared(url, _workers(url))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server (Debian's ``postgresql`` package) on a free loopback port.

    initdb refuses to run as root, so as root the server runs as the ``postgres`` user (or
    ``nobody``) through setpriv; its data lives in a temporary directory removed afterwards.
    """
    pytest.importorskip("psycopg", reason="skipped: the PostgreSQL driver psycopg is not "
                        "installed (pip install psycopg; it is in the [dev] extra)")
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = shutil.which("initdb") or (bins[-1] if bins else None)
    if initdb is None:
        pytest.skip("skipped: PostgreSQL's initdb is not installed (apt-get install postgresql; "
                    ".ci/run does this when it runs as root)")
    bindir = Path(initdb).parent
    base = Path(tempfile.mkdtemp(prefix="nncourse-pg-", dir="/tmp"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "nobody") if _uid(u) is not None), None)
        setpriv = shutil.which("setpriv")
        if user is None or setpriv is None:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip("skipped: running as root, and there is no unprivileged user (postgres "
                        "or nobody) or no setpriv to run PostgreSQL as (initdb refuses root)")
        pw = pwd.getpwnam(user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = [setpriv, f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                  "--reset-env", "--"]
    data, port = base / "data", _free_port()
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(base)}

    def run(*cmd):
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, env=env,
                              cwd=base, timeout=300)

    r = run(str(bindir / "initdb"), "-D", str(data), "-U", "nncourse", "--auth=trust",
            "--no-sync", "-E", "UTF8")
    if r.returncode:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed: {r.stderr[-2000:]}")
    opts = f"-p {port} -h 127.0.0.1 -k {base} -c fsync=off"
    r = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-o", opts,
            "-w", "-t", "120", "start")
    try:
        assert r.returncode == 0, (r.stdout + r.stderr)[-2000:] + _tail(base / "log")
        yield f"postgresql+psycopg://nncourse@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _uid(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def test_two_workers_share_one_postgresql_study(postgres_url):
    _check_shared(postgres_url, _workers(postgres_url))


def test_postgresql_message_hides_password_and_says_why(postgres_url, capsys):
    bad = postgres_url.replace("nncourse@", "nncourse:hunter2@").rsplit("/", 1)[0] + "/nosuchdb"
    assert main(["tune", "--study", "s", "--storage", bad, "--create"]) == 2
    err = capsys.readouterr().err
    assert "cannot open storage" in err and "nosuchdb" in err and "hunter2" not in err
