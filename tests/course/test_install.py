"""The install step (nncourse/course/install.py, the Makefile): torch's CPU build, no long
retries."""

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nncourse.course import install

ROOT = Path(__file__).resolve().parents[2]


def report(*packages):
    return {"install": [{"metadata": {"name": n, "version": v}} for n, v in packages]}


def test_cuda_packages_finds_a_cuda_torch():
    cuda = report(("torch", "2.13.0"), ("nvidia-cublas-cu12", "12.8.4.1"), ("triton", "3.5.0"),
                  ("numpy", "2.4.0"))
    assert install.cuda_packages(cuda) == ["nvidia-cublas-cu12==12.8.4.1", "triton==3.5.0"]
    assert install.cuda_packages(report(("torch", "2.13.0+cu128"))) == ["torch==2.13.0+cu128"]
    assert install.cuda_packages(report(("torch", "2.13.0+cpu"), ("numpy", "2.4.0"))) == []


def test_install_args_carry_the_pins_and_the_index_only_when_given():
    args = install.pip_install_args("dev", install.CPU_TORCH_INDEX)
    assert args[:2] == ["-c", str(ROOT / "constraints.txt")]
    assert args[args.index("--extra-index-url") + 1] == install.CPU_TORCH_INDEX
    assert args[-2:] == ["-e", ".[dev]"]
    assert "--extra-index-url" not in install.pip_install_args("", None)
    assert install.pip_install_args("", None)[-2:] == ["-e", "."]


def test_default_index_is_the_cpu_one_on_linux_only():
    assert install.default_torch_index("Linux") == install.CPU_TORCH_INDEX
    assert install.default_torch_index("Darwin") == ""


@pytest.fixture
def local_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path.startswith("/whl/") else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_probe_accepts_any_answer(local_server):
    assert install.probe(f"{local_server}/whl/cpu") is None
    assert install.probe(f"{local_server}/missing") is None  # a 404 is an answer too


def test_unreachable_index_is_dropped_at_once_with_a_warning(local_server, capsys):
    port = int(local_server.rsplit(":", 1)[1])
    closed = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/whl/cpu"
    start = time.monotonic()
    assert install.resolve_torch_index(closed, timeout=2) is None
    assert time.monotonic() - start < 3
    assert "does not answer" in capsys.readouterr().err
    assert install.resolve_torch_index(f"{local_server}/whl/cpu") == f"{local_server}/whl/cpu"
    assert install.resolve_torch_index("") is None


def test_lab_settings_are_written_into_the_environment(tmp_path):
    path = install.write_lab_settings(tmp_path)
    assert path == tmp_path / "share/jupyter/lab/settings/overrides.d/nncourse.json"
    settings = json.loads(path.read_text())
    assert settings["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    # ... and this environment (.venv) has them: the install step wrote them.
    assert json.loads(install.lab_settings_path().read_text()) == install.LAB_SETTINGS


def make_n(*args):
    # Run as a top-level make even under `make test` (MAKELEVEL would add "Entering directory").
    env = {k: v for k, v in os.environ.items()
           if k not in ("TORCH_INDEX", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", "-n", "-B", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout


def test_make_lab_installs_the_course_only_and_make_test_adds_dev():
    lab = make_n(".venv/.installed")
    assert "-m nncourse.course.install" in lab and "--extras" not in lab
    dev = make_n(".venv/.installed-dev")
    assert "--extras dev" in dev
    if sys.platform.startswith("linux"):
        assert f'--torch-index "{install.CPU_TORCH_INDEX}"' in lab
    assert '--torch-index ""' in make_n(".venv/.installed", "TORCH_INDEX=")


def test_make_lab_runs_the_launcher():
    assert make_n("lab").strip().splitlines()[-1].endswith("-m nncourse.course.lab")


def test_every_install_route_uses_the_same_cpu_index_and_pins():
    # (.binder/environment.yml installs only Python; CI runs `make test`, i.e. the Makefile's.)
    for name in ("Makefile", "environment.yml", ".binder/postBuild"):
        assert install.CPU_TORCH_INDEX in (ROOT / name).read_text(), f"{name}: not the CPU index"
    assert "-c constraints.txt" in (ROOT / "environment.yml").read_text()
    assert "nncourse.course.install" in (ROOT / ".binder/postBuild").read_text()


def dry_run(args: list[str], tmp_path: Path) -> dict:
    """pip's resolution of ``pip install ARGS`` as if nothing were installed (its --report)."""
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--report", str(out), *args]
    r = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


def assert_cpu_only(resolved: dict) -> None:
    assert install.cuda_packages(resolved) == [], "a clean install would pull CUDA packages"
    torch = [i["metadata"]["version"] for i in resolved["install"]
             if i["metadata"]["name"] == "torch"]
    assert torch and torch[0].endswith("+cpu"), f"torch resolved to {torch}, not the CPU build"


def test_clean_install_resolves_no_cuda_package(tmp_path):
    """What a clean `make lab` would install, resolved by pip against the configured indexes."""
    index = os.environ.get("TORCH_INDEX", install.default_torch_index())
    if not index:
        pytest.skip("TORCH_INDEX is empty here (not Linux, or disabled): "
                    "PyPI's torch is used as is")
    reason = install.probe(index)
    if reason:
        pytest.skip(f"the torch index {index} cannot be reached from this machine ({reason}), so "
                    "which torch build a clean install resolves cannot be checked here")
    assert_cpu_only(dry_run(install.pip_install_args("", index), tmp_path))


def fake_wheel(index: Path, name: str, version: str, requires: list[str]) -> None:
    """A metadata-only wheel in a PEP 503 file index (enough for pip's resolver)."""
    import zipfile

    project = name.replace("_", "-")
    folder = index / project
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\n" f"Name: {project}\n"
                   f"Version: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires))
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                   "Tag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    (folder / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>')


def test_dry_run_check_fails_when_the_index_serves_a_cuda_torch(tmp_path):
    """The check above can fail: an index whose torch 2.13.0 is a CUDA build (a local fake)."""
    index = tmp_path / "simple"
    fake_wheel(index, "torch", "2.13.0+cu999", ["nvidia-fake-cu12"])
    fake_wheel(index, "nvidia_fake_cu12", "12.0", [])
    resolved = dry_run(["-c", str(ROOT / "constraints.txt"), "--extra-index-url", index.as_uri(),
                        "torch"], tmp_path)
    with pytest.raises(AssertionError, match="CUDA packages"):
        assert_cpu_only(resolved)
    assert install.cuda_packages(resolved) == ["torch==2.13.0+cu999", "nvidia-fake-cu12==12.0"]


def test_binder_and_conda_files_parse():
    import yaml

    binder = yaml.safe_load((ROOT / ".binder/environment.yml").read_text())
    assert "python=3.11" in binder["dependencies"]
    assert not any(isinstance(d, dict) for d in binder["dependencies"]), (
        "repo2docker builds this before the repository is there: install the course in postBuild")
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert f"--extra-index-url {install.CPU_TORCH_INDEX}" in pip and "-e ." in pip
    post = ROOT / ".binder/postBuild"
    assert os.access(post, os.X_OK), "postBuild must be executable"
    subprocess.run(["bash", "-n", str(post)], check=True)
    workflow = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    assert any(s.get("run") == "bash .ci/run" for s in steps)


def test_metadata_has_one_version_and_the_licenses_and_citation_agree():
    import tomllib

    import yaml

    import nncourse

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert project["license"] == "MIT AND CC-BY-4.0"
    assert all((ROOT / f).exists() for f in project["license-files"])
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == nncourse.__version__
    assert citation["license"] == ["MIT", "CC-BY-4.0"]
    assert citation["repository-code"] == project["urls"]["Source"]
    assert project["requires-python"] == ">=3.11"
    assert any(d.startswith("torch>=2.13,<3") for d in project["dependencies"])
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in pins


def test_a_learner_install_can_self_grade_but_has_no_browser_tooling():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]]
    assert "pytest" in names and "nbval" in names  # `pytest --nbval-lax exercises/...` (chapter 00)
    dev = " ".join(project["optional-dependencies"]["dev"])
    assert "playwright" in dev and "playwright" not in " ".join(project["dependencies"])
