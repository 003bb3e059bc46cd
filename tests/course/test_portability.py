"""The portability report: which checked cells differ, and whether only digits moved (no kernel)."""

import argparse

import nbformat
import pytest

from nncourse import fp_pin
from nncourse.course import portability as port


def notebook(*cells):
    """A fake executed notebook: each cell is (stdout text, tags)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter")]
    for text, tags in cells:
        cell = nbformat.v4.new_code_cell("result = lab.run()\nprint(result)")
        cell.execution_count = 1
        cell.metadata["tags"] = list(tags)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nb.cells.append(cell)
    return nb


def test_word_diff_marks_only_the_changed_words():
    assert port.word_diff("ReLU: val acc 72.5% after 20 epochs",
                          "ReLU: val acc 27.5% after 20 epochs") \
        == "ReLU: val acc {72.5→27.5}% after 20 epochs"
    assert port.word_diff("loss 0.051, stuck", "loss 0.050") == "loss {0.051, stuck→0.050}"


@pytest.mark.parametrize("old, new, verdict", [
    ("loss 0.051\nacc 93.6%", "loss 0.050\nacc 93.6%", "CHECK"),   # 2 % relative: at the edge
    ("loss 0.5051\nacc 93.6%", "loss 0.5050\nacc 93.6%", "digits"),
    ("val acc 72.5%", "val acc 27.5%", "CHECK"),                     # a conclusion flipped
    ("best: tanh", "best: relu", "CHECK"),                            # a ranking flipped
    ("diverged at step 12", "diverged at step 12\nnan", "CHECK"),    # a line appeared
    ("grad norms 1.2e-05 3.4e-03", "grad norms 1.21e-05 3.4e-03", "digits"),
])
def test_classify(old, new, verdict):
    assert port.classify(old, new, rtol=0.015) == verdict


def test_diff_skips_ignored_cells_and_reports_the_rest():
    a = notebook(("acc 72.5%\n", ()), ("timing 1.23 s\n", ("nbval-ignore-output",)),
                 ("loss 0.5051\n", ()), ("same\n", ()), ("skipped 1\n", ("nbval-skip",)))
    b = notebook(("acc 27.5%\n", ()), ("timing 9.99 s\n", ("nbval-ignore-output",)),
                 ("loss 0.5050\n", ()), ("same\n", ()), ("skipped 2\n", ("nbval-skip",)))
    diffs = port.diff_notebooks(a, b)
    assert [(d.cell, d.verdict) for d in diffs] == [(1, "CHECK"), (3, "digits")]
    assert diffs[0].lines == ["[stdout] acc {72.5→27.5}%"]
    report = port.format_report("chapters/02_x.ipynb", ("pinned", "best"), diffs,
                                len(port.checked_outputs(a)))
    assert report.splitlines() == [
        "chapters/02_x.ipynb: 2 of 3 checked cells differ (pinned vs best)",
        "  cell 1   [CHECK]  result = lab.run()",
        "      acc {72.5→27.5}%",
        "  cell 3   [digits]  result = lab.run()",
        "      loss {0.5051→0.5050}",
    ]


def test_checked_outputs_compare_text_not_images_and_sanitize_addresses():
    nb = notebook(("x\n", ()))
    nb.cells[1].outputs.append(nbformat.v4.new_output(
        "display_data", data={"image/png": "AAAA", "text/plain": "<Figure at 0x7f00deadbeef>"}))
    nb.cells[1].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="bad",
                                                      traceback=[]))
    assert port.checked_outputs(nb) == {
        1: "[stdout] x\n\n[text/plain] <Figure at 0xADDRESS>\n[error] ValueError: bad"}


def test_path_env(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    pinned = port.path_env("pinned")
    assert {k: pinned[k] for k in fp_pin.PIN} == fp_pin.PIN
    best = port.path_env("best")
    assert best[fp_pin.OPT_OUT] == "0" and not set(fp_pin.PIN) & set(best)
    assert port.path_env("default")["ATEN_CPU_CAPABILITY"] == "default"
    with pytest.raises(ValueError, match="path must be one of"):
        port.path_env("sse9")


def test_run_rejects_a_bad_pair_of_paths(capsys):
    args = argparse.Namespace(paths="pinned,pinned", notebooks=[], rtol=0.02, save=None, timeout=1)
    assert port.run(args) == 2
    assert "--paths needs two different paths" in capsys.readouterr().err


def test_command_reports_flags_and_saves(tmp_path, capsys, monkeypatch):
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook(("acc 72.5%\n", ())), path)
    # The command's loop, with a fake executor standing in for the kernel run of "best".
    args = argparse.Namespace(paths="stored,best", notebooks=[path], rtol=0.02, save=tmp_path / "s",
                              timeout=1)
    real = port._run
    monkeypatch.setattr(port, "_run", lambda p, name, timeout: real(p, "stored", timeout)
                        if name == "stored" else notebook(("acc 27.5%\n", ())))
    assert port.run(args) == 1
    out = capsys.readouterr().out
    assert "1 of 1 checked cells differ (stored vs best)" in out and "{72.5→27.5}" in out
    assert (tmp_path / "s" / f"{tmp_path.name}-nb.best.ipynb").exists()


def test_the_two_paths_reach_the_kernel(tmp_path):
    # The one integration test: two real kernels, each reporting the ATen path it runs on.
    path = tmp_path / "nb.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import nncourse, torch\n"
                                          "print(torch.backends.cpu.get_cpu_capability())")]
    nbformat.write(nb, path)
    pinned, default = (port._run(path, name, timeout=120) for name in ("pinned", "default"))
    assert (port.checked_outputs(pinned) == port.checked_outputs(default)
            == {0: "[stdout] DEFAULT\n"})
    assert "nncourse WARNING" not in str(pinned.cells[0].outputs)


def test_stream_chunks_are_joined_as_nbval_does():
    a, b = notebook(("a\nb\n", ())), notebook(("a\n", ()))
    b.cells[1].outputs.append(nbformat.v4.new_output("stream", name="stdout", text="b\n"))
    assert port.checked_outputs(a) == port.checked_outputs(b) == {1: "[stdout] a\nb\n"}
    assert port.diff_notebooks(a, b) == []
