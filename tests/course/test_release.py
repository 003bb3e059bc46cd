import nbformat
import pytest

from nncourse.__main__ import main
from nncourse.course import notebooks as nbs
from nncourse.course import release


def test_stub_keeps_indentation_and_removes_the_solution():
    src = ("def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n")
    out = release.stub_source(src, "1.2")
    assert out == ('def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError('
                   '"Exercise 1.2: replace this line with your code")')
    assert "return x + y" not in out
    compile(out, "answer", "exec")


def test_several_regions_and_bad_markers():
    src = ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n\n"
           "def g():\n    ### BEGIN SOLUTION\n    return 2\n    ### END SOLUTION")
    assert release.stub_source(src, "1.1").count("raise NotImplementedError") == 2
    with pytest.raises(ValueError, match="has no '### BEGIN SOLUTION'"):
        release.stub_source("def f(): pass", "1.1")
    with pytest.raises(ValueError, match="unbalanced"):
        release.stub_source("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "1.1")


def _tiny_solution(executed=True):
    nb = nbs.new([
        nbs.code("import nncourse\nnncourse.setup()"),
        nbs.answer("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", "1.1"),
        nbs.check("print('Exercise 1.1 passed (1 point)')", "1.1", 1),
    ])
    for i, cell in enumerate(nb.cells, 1):
        cell.execution_count = i if executed else None
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="out\n")]
    nb.cells[2].outputs[0].text = "Exercise 1.1 passed (1 point)\n"
    return nb


def test_make_exercise_clears_every_output_check_cells_included():
    """Issue 19: a released notebook never shows "passed" before the learner solved it."""
    sol = _tiny_solution()
    ex = release.make_exercise(sol)
    setup, answer, check = ex.cells
    assert setup.outputs == [] and setup.execution_count is None
    assert answer.outputs == [] and "NotImplementedError" in answer.source
    assert check.outputs == [] and check.execution_count is None
    assert check.source == sol.cells[2].source and check.metadata == sol.cells[2].metadata
    assert not any(c.get("outputs") for c in ex.cells)
    assert ([c.id for c in ex.cells] == [c.id for c in sol.cells]
            == ["code-1", "answer-1-1", "check-1-1"])
    assert "return 1" in sol.cells[1].source  # the solution is untouched


def test_unexecuted_check_cell_is_refused():
    with pytest.raises(ValueError, match="must store its passing output"):
        release.make_exercise(_tiny_solution(executed=False))
    failing = _tiny_solution()
    failing.cells[2].outputs[0].text = "something else\n"
    with pytest.raises(ValueError, match="must store its passing output"):
        release.make_exercise(failing)


def test_structure_errors():
    nb = _tiny_solution()
    del nb.cells[2].metadata["nncourse"]["points"]
    with pytest.raises(ValueError, match="needs positive integer points"):
        nbs.exercises(nb)
    nb = _tiny_solution()
    nb.cells[2].metadata["tags"] = ["check"]
    with pytest.raises(ValueError, match="must be tagged nbval-check-output"):
        nbs.exercises(nb)
    nb = _tiny_solution()
    nb.cells = nb.cells[:2]
    with pytest.raises(ValueError, match="exercise 1.1 has answer cells .* but no check cell"):
        nbs.exercises(nb)


def test_cli_release_and_check(tmp_path, capsys):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nbs.write(_tiny_solution(), sol / "01_tiny.ipynb")
    args = ["release", "--solutions", str(sol), "--exercises", str(ex)]
    assert main(args) == 0
    assert main(args + ["--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    (ex / "01_tiny.ipynb").write_text("{}")
    assert main(args + ["--check"]) == 1
    assert "is stale" in capsys.readouterr().err
