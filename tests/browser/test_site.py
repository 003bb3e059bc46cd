"""``make site``: the static course builds offline, every internal link resolves, and the landing
page and a chapter render in headless Chromium (screenshots in tests/browser/artifacts/).

The site is built once for the module (~30-70 s: Sphinx renders every stored notebook).
"""

import re
import time
from pathlib import Path

import pytest

from nncourse.course import site
from tests.browser import lab

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the site's tools are not installed ({exc}); make venv-dev installs them")
    out = tmp_path_factory.mktemp("site") / "html"
    t0 = time.monotonic()
    proc = site.build(ROOT, out, jobs=2)
    seconds = time.monotonic() - t0
    print(f"site built in {seconds:.0f} s")
    return out, proc


def test_every_notebook_has_its_page_and_the_landing_page_maps_them(built):
    out, _ = built
    for folder, _caption in site.SECTIONS:
        for nb in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb")):
            assert (out / folder / f"{nb.stem}.html").is_file(), f"no page for {folder}/{nb.name}"
    index = (out / "index.html").read_text(encoding="utf-8")
    for chapter in sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")):
        assert f'href="chapters/{chapter.stem}.html"' in index
        assert f"colab.research.google.com/github/nncourse/nncourse/blob/main/chapters/" \
               f"{chapter.name}" in index
        assert f"mybinder.org/v2/gh/nncourse/nncourse/main?labpath=chapters/{chapter.name}" \
            in index
    for nb in sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")):
        assert f'href="exercises/{nb.stem}.html"' in index
    assert index.count('href="solutions/') >= len(list((ROOT / "solutions").glob("*.ipynb")))
    for caption in ("Chapters", "Exercises", "Solutions"):
        assert re.search(rf"caption-text\">{caption}<", index), f"no {caption} in the navigation"


def test_solutions_are_on_their_own_pages_and_outputs_are_the_stored_ones(built):
    out, _ = built
    chapter = (out / "chapters" / "04_activation_functions.html").read_text(encoding="utf-8")
    solution = (out / "solutions" / "04_activation_functions.html").read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in chapter and "BEGIN SOLUTION" in solution
    assert "Exercise 4.1 passed" in solution  # a stored check output, rendered, not re-run
    exercise = (out / "exercises" / "04_activation_functions.html").read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in exercise and "NotImplementedError" in exercise
    # the theme's launch buttons on a notebook page
    assert "colab.research.google.com/github/nncourse/nncourse/blob/main/chapters/" \
           "04_activation_functions.ipynb" in chapter
    assert "mybinder.org/v2/gh/nncourse/nncourse/main" in chapter


def test_every_internal_link_resolves(built):
    out, _ = built
    assert site.broken_links(out) == []


def test_the_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#x">b</a> <a href="c.html">c</a>'
                                     '<img src="img/p.png"> <a href="https://example.org/">e</a>')
    (tmp_path / "b.html").write_text('<h1 id="y">b</h1>')
    assert site.broken_links(tmp_path) == ["a.html: b.html#x (no element with that id)",
                                           "a.html: c.html (no such file)",
                                           "a.html: img/p.png (no such file)"]


def test_landing_page_and_a_chapter_render_in_chromium(built, artifacts):
    reason = lab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    out, _ = built
    with lab.browser(out.parent / "chromium-profile") as ctx:
        page = ctx.new_page()
        page.goto((out / "index.html").as_uri())
        assert "Chapter map" in page.inner_text("main")
        assert page.locator("nav.bd-docs-nav a").count() >= 3 * 11
        page.screenshot(path=str(artifacts / "site-index.png"))
        page.click("nav.bd-docs-nav >> text=04 · Activation functions")
        page.wait_for_load_state()
        assert page.url.endswith("chapters/04_activation_functions.html")
        main = page.inner_text("main")
        assert "Exercise" in main or "Key takeaways" in main
        assert page.locator("main img").count() >= 1, "the stored figures are on the page"
        page.screenshot(path=str(artifacts / "site-chapter-04.png"), full_page=False)


def test_staging_leaves_out_the_colab_cell_and_unlinks_missing_notebooks(tmp_path):
    import json

    import nbformat

    from nncourse.course import colab
    from nncourse.course import notebooks as nbs

    nb = nbs.read(ROOT / "chapters" / "00_start_here.ipynb")
    colab.add_colab_cell(nb)
    nb.cells.append(nbformat.v4.new_markdown_cell(
        "[next](99_not_yet.ipynb) and [here](00_start_here.ipynb#top) and "
        "[web](https://example.org/x.ipynb)"))
    path = tmp_path / "00_start_here.ipynb"
    nbs.write(nb, path)
    assert "99_not_yet.ipynb" in site._unlink_missing(path)
    staged = json.loads(path.read_text())
    assert not any(colab.is_colab_cell(c) for c in staged["cells"])
    last = staged["cells"][-1]["source"]
    assert last == ("next and [here](00_start_here.ipynb#top) and "
                    "[web](https://example.org/x.ipynb)")


def test_make_site_runs_the_builder():
    import subprocess

    dry = subprocess.run(["make", "-n", "site"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "-m nncourse site --out build/site" in dry
