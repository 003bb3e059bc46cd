"""``python -m nncourse bench`` names where a notebook's time goes (issue 28, item 5)."""

import nbformat

from nncourse.course import bench


def test_the_slowest_cell_is_listed_under_its_notebook(tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("import time\ntime.sleep(1.5)"),
                nbformat.v4.new_code_cell("y = x + 1")]
    path = tmp_path / "slow.ipynb"
    nbformat.write(nb, path)
    rows = bench.bench([path], timeout=60, cells=2)
    out = capsys.readouterr().out
    assert rows[0][2] == "ok" and rows[0][1] >= 1.5
    listed = [ln for ln in out.splitlines() if ln.startswith("    cell")]
    assert len(listed) == 2 and listed[0].startswith("    cell [ 1]") and "import time" in listed[0]
    assert float(listed[0].split("]")[1].split()[0]) >= 1.4
    assert nbformat.read(path, as_version=4).cells[1].metadata == {}  # the file is not written
