import numpy as np
import pytest
import torch

import nncourse
from nncourse import env


def test_setup_makes_random_draws_repeat():
    nncourse.setup(seed=3, style=False)
    a = (torch.randn(5), np.random.rand(3))
    nncourse.setup(seed=3, style=False)
    b = (torch.randn(5), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    nncourse.setup(seed=4, style=False)
    assert not torch.equal(a[0], torch.randn(5))


def test_setup_fixes_threads_and_determinism():
    nncourse.setup(threads=1, style=False)
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"seed": 1.5}, "seed must be a non-negative integer, got 1.5"),
    ({"threads": 0}, "threads must be a positive integer, got 0"),
])
def test_setup_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nncourse.setup(**kwargs)


def test_environment_report_says_ok_in_the_course_environment():
    report = env.environment_report()
    assert report.endswith("Environment OK: numbers you get will match the ones in the text.")
    assert "torch 2.13.0" in report


def test_environment_report_warns_on_other_versions(monkeypatch):
    monkeypatch.setitem(env.EXPECTED_VERSIONS, "numpy", "1.26")
    report = env.environment_report()
    assert "WARNING: numpy 1.26 expected" in report


def test_environment_report_names_a_python_other_than_the_texts(monkeypatch):
    import sys

    monkeypatch.setattr(env, "TEXT_PYTHON", (3, 99))
    report = env.environment_report()
    you = "{}.{}".format(*sys.version_info[:2])
    assert f"WARNING: the text was produced with Python 3.99, you have {you}" in report
    assert "numbers may differ from the text" in report


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("NNCOURSE_PROGRESS", "0")
    assert not env.progress_enabled()
    assert env.progress_enabled(True)
    monkeypatch.setenv("NNCOURSE_PROGRESS", "1")
    assert env.progress_enabled()
    monkeypatch.delenv("NNCOURSE_PROGRESS")
    # unset: on in a terminal, off when stderr is a pipe or a file (pytest captures it here)
    monkeypatch.setattr(env, "_stderr_is_terminal", lambda: True)
    assert env.progress_enabled()
    monkeypatch.setattr(env, "_stderr_is_terminal", lambda: False)
    assert not env.progress_enabled()


def test_progress_off_is_the_iterable_itself_and_prints_nothing(monkeypatch, capfd):
    monkeypatch.setenv("NNCOURSE_PROGRESS", "0")
    items = [1, 2, 3]
    assert nncourse.progress(items, desc="sweep", delay=0) is items
    with nncourse.progress(total=3, desc="by hand") as bar:
        bar.update(1)
        bar.set_postfix(loss="0.1")
    assert capfd.readouterr() == ("", "")


def test_progress_on_draws_a_bar_on_stderr(monkeypatch, capsys):
    monkeypatch.setenv("NNCOURSE_PROGRESS", "1")
    assert list(nncourse.progress(range(4), desc="sweep", delay=0)) == [0, 1, 2, 3]
    err = capsys.readouterr().err
    assert "sweep:" in err and "/4 [" in err
    bar = nncourse.progress(total=2, desc="by hand", delay=0)
    bar.update(2)
    bar.close()
    assert "by hand:" in capsys.readouterr().err


def test_progress_waits_before_drawing(monkeypatch, capsys):
    # a loop shorter than `delay` (a cached sweep) shows nothing at all
    monkeypatch.setenv("NNCOURSE_PROGRESS", "1")
    assert list(nncourse.progress(range(3), desc="fast", delay=60)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_setup_leaves_torch_dynamo_unimported_yet_inductor_deterministic():
    # importing torch._inductor.config (what torch.use_deterministic_algorithms does) pulls in
    # torch._dynamo, 1-2 s of every notebook's start; setup() gets the same outcome without it
    code = ("import sys, nncourse, torch; nncourse.setup(style=False)\n"
            "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')\n"
            "print(torch.are_deterministic_algorithms_enabled())\n"
            "import torch._inductor.config as c; print(c.deterministic)\n")
    out = _fresh_python(code)
    assert out == ["no", "dynamo", "True", "True"], out


def test_setup_applies_the_style_without_importing_pyplot():
    # pyplot is half a second of every kernel start (and of every notebook the grader runs);
    # the style is rcParams, so a notebook that plots later gets it all the same
    code = ("import sys, nncourse; nncourse.setup()\n"
            "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'no-pyplot')\n"
            "import matplotlib.pyplot as plt; fig = plt.figure()\n"
            "print(fig.dpi, plt.rcParams['axes.grid'], plt.rcParams['axes.prop_cycle']"
            ".by_key()['color'][1])\n")
    out = _fresh_python(code)
    assert out == ["no-pyplot", "80.0", "True", "#ff7f0e"], out


def _fresh_python(code: str) -> list[str]:
    """What ``code`` prints in a new Python process (what a kernel starts from), as words."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300).stdout.split()
