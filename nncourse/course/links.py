"""Cross-references between chapters: every "chapter NN" in a notebook's prose is a link.

A learner who reads "batch normalization (chapter 05)" should be one click from chapter 05, in
JupyterLab, on GitHub and on the course site alike, so the link is a relative path to the notebook
(``05_normalization.ipynb`` from ``chapters/``, ``../chapters/05_normalization.ipynb`` from
``solutions/`` and ``exercises/``).

What is linked: the first plain mention of each chapter in a markdown cell, written
``chapter NN`` or ``Chapter NN`` (two digits), when that chapter's notebook exists. What is not:
a notebook's mention of itself, mentions already inside a link, inline code or maths, and book
citations such as ``*Hands-on Machine Learning*, chapter 11`` (the chapter of another book).

    python -m nncourse.course.links chapters/*.ipynb solutions/*.ipynb     # add the links
    python -m nncourse.course.links --check chapters/*.ipynb solutions/*.ipynb   # list only
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from nncourse.course import notebooks

MENTION = re.compile(r"\b([Cc]hapter) (\d\d)\b")
# Spans left alone: existing links (and images), inline code, inline and display maths.
_PROTECTED = re.compile(r"!?\[[^\]]*\]\([^)]*\)|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$", re.S)
# "*Title*, chapter 11": a chapter of a cited book, not of this course.
_CITATION = re.compile(r"\*,\s*$")


def chapter_files(root: str | os.PathLike) -> dict[str, str]:
    """``{"05": "05_normalization.ipynb", ...}`` for the notebooks in ``root/chapters``."""
    found = {}
    for path in sorted(Path(root, "chapters").glob("[0-9][0-9]_*.ipynb")):
        found[path.name[:2]] = path.name
    return found


def _target(notebook: Path, name: str) -> str:
    return name if notebook.parent.name == "chapters" else f"../chapters/{name}"


def link_text(text: str, notebook: Path, chapters: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` with each chapter's first unlinked mention made a link, and the chapters linked."""
    own = notebook.name[:2] if notebook.parent.name == "chapters" else None
    protected = [(m.start(), m.end()) for m in _PROTECTED.finditer(text)]
    already = {m.group(2) for span in protected for m in MENTION.finditer(text[span[0]:span[1]])
               if text[span[0]] == "["}
    out, pos, linked = [], 0, []
    for m in MENTION.finditer(text):
        number = m.group(2)
        if number == own or number not in chapters or number in already or number in linked:
            continue
        if any(a <= m.start() < b for a, b in protected):
            continue
        line_start = text.rfind("\n", 0, m.start()) + 1
        if _CITATION.search(text[line_start:m.start()]):
            continue
        out.append(text[pos:m.start()])
        out.append(f"[{m.group(0)}]({_target(notebook, chapters[number])})")
        pos = m.end()
        linked.append(number)
    out.append(text[pos:])
    return "".join(out), linked


def unlinked(path: str | os.PathLike, chapters: dict[str, str]) -> list[tuple[int, str]]:
    """``(cell index, chapter)`` for every mention :func:`link_text` would link."""
    nb = notebooks.read(path)
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            missing += [(i, n) for n in link_text(cell.source, Path(path), chapters)[1]]
    return missing


def apply(path: str | os.PathLike, chapters: dict[str, str]) -> int:
    """Link the mentions in one notebook; returns how many links were added."""
    nb = notebooks.read(path)
    added = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source, linked = link_text(cell.source, Path(path), chapters)
            added += len(linked)
    if added:
        notebooks.write(nb, path)
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nncourse.course.links", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--check", action="store_true",
                        help="list unlinked mentions, change nothing")
    parser.add_argument("--root", default=".",
                        help="the repository (its chapters/ are the targets)")
    args = parser.parse_args(argv)
    chapters = chapter_files(args.root)
    status = 0
    for path in args.notebooks:
        if args.check:
            for cell, number in unlinked(path, chapters):
                print(f"{path}: cell {cell} mentions chapter {number} without a link")
                status = 1
        else:
            added = apply(path, chapters)
            if added:
                print(f"{path}: {added} link(s) added")
    return status


if __name__ == "__main__":
    sys.exit(main())
