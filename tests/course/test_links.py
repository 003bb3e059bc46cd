"""Chapter cross-references: every plain "chapter NN" in prose becomes a relative link."""

from pathlib import Path

import pytest

from nncourse.course import links

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = {"02": "02_vanishing.ipynb", "05": "05_normalization.ipynb"}


def link(text, notebook="chapters/03_init.ipynb"):
    return links.link_text(text, Path(notebook), CHAPTERS)


def test_first_mention_in_a_cell_becomes_a_relative_link():
    text, linked = link("see chapter 05 and again chapter 05; Chapter 02's scale")
    assert text == ("see [chapter 05](05_normalization.ipynb) and again chapter 05; "
                    "[Chapter 02](02_vanishing.ipynb)'s scale")
    assert linked == ["05", "02"]


def test_links_from_solutions_and_exercises_point_into_chapters():
    text, _ = link("Exercises for chapter 05.", "solutions/05_normalization.ipynb")
    assert text == "Exercises for [chapter 05](../chapters/05_normalization.ipynb)."


@pytest.mark.parametrize("text", [
    "Géron, *Hands-on Machine Learning*, chapter 05 -- schedules",  # another book's chapter
    "already [chapter 05](05_normalization.ipynb), then chapter 05 again",
    "in code `chapter 05` and maths $chapter 05$",
    "chapter 07 does not exist yet",
    "chapter 03 is this notebook",
    "chapters 02-05 as a range",
])
def test_mentions_left_alone(text):
    assert link(text) == (text, [])


def test_apply_rewrites_only_markdown_and_is_idempotent(tmp_path):
    import nbformat

    from nncourse.course import notebooks

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("as chapter 05 shows"),
                nbformat.v4.new_code_cell("# chapter 05 in a comment")]
    (tmp_path / "chapters").mkdir()
    path = tmp_path / "chapters" / "03_init.ipynb"
    notebooks.write(nb, path)
    assert links.apply(path, CHAPTERS) == 1
    assert links.apply(path, CHAPTERS) == 0
    cells = notebooks.read(path).cells
    assert cells[0].source == "as [chapter 05](05_normalization.ipynb) shows"
    assert cells[1].source == "# chapter 05 in a comment"
    assert links.unlinked(path, CHAPTERS) == []


def test_chapter_files_lists_the_repository_chapters():
    found = links.chapter_files(ROOT)
    assert found["05"] == "05_normalization.ipynb"
    assert all((ROOT / "chapters" / name).is_file() for name in found.values())


@pytest.mark.parametrize("notebook", sorted(
    [p.relative_to(ROOT).as_posix() for p in (ROOT / "chapters").glob("*.ipynb")]
    + [p.relative_to(ROOT).as_posix() for p in (ROOT / "solutions").glob("*.ipynb")]))
def test_every_chapter_mention_in_the_course_is_a_link(notebook):
    missing = links.unlinked(ROOT / notebook, links.chapter_files(ROOT))
    assert not missing, (f"{notebook}: run python -m nncourse.course.links {notebook} "
                         f"(unlinked mentions: {missing})")
