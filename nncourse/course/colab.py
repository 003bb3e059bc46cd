"""Google Colab: the first cell that installs the course there, and the README's badge table.

Colab opens a notebook straight from GitHub, with none of this repository around it. The first
code cell of every chapter and solution notebook (exercises get it from their solution through
``python -m nncourse release``) therefore installs the course when, and only when, it runs on Colab:

* ``pip install "nncourse @ git+<repository>@<ref>"``: this repository's package at one branch,
  tag or commit, with its dependency ranges (Colab keeps what already satisfies them);
* ``google.colab.output.enable_custom_widget_manager()``, without which Colab shows no
  ipywidgets sliders or ipympl figures.

Anywhere else ``google.colab`` is not imported and the cell does nothing. It is tagged
``nbval-skip`` (nbval never runs it) and marked ``metadata.nncourse.role = "colab"``, so the
notebook rules (setup cell first, every cell executed) can recognise it with
:func:`is_colab_cell`.

Apply or refresh the cell, and the README's table::

    python -m nncourse.course.colab chapters/*.ipynb solutions/*.ipynb   # then: make release
    python -m nncourse.course.colab --readme README.md
    python -m nncourse.course.colab --check chapters/*.ipynb solutions/*.ipynb  # changes nothing

What was left out: the cell installs no pinned versions (constraints.txt) on Colab, because
replacing Colab's own IPython, ipykernel or numpy breaks its runtime; numbers there may differ in
the last digits, and the environment check in chapter 00 says so.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

#: The repository on GitHub, ``owner/name``: the one place to change when it moves.
REPO = "nncourse/nncourse"
REPO_URL = f"https://github.com/{REPO}"
#: The branch (or tag, or commit) the Colab cell installs and the badges open.
REF = "main"

CELL_ID = "colab-setup"
TAGS = ["nbval-skip"]
ROLE = "colab"
BADGES_BEGIN = "<!-- colab-badges:begin (python -m nncourse.course.colab --readme README.md) -->"
BADGES_END = "<!-- colab-badges:end -->"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def cell_source(repo_url: str = REPO_URL, ref: str = REF) -> str:
    """The Colab cell's code: plain Python (no ``%pip`` magic), a no-op outside Colab."""
    if not re.fullmatch(r"[\w.\-/]+", ref):
        raise ValueError(f"ref must be a branch, tag or commit name, got {ref!r}")
    return f'''\
# Google Colab only (does nothing anywhere else): install this course and turn on
# interactive widgets. If Colab then asks to restart the session, do so and run from the top.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "nncourse @ git+{repo_url}@{ref}"], check=True)
    from google.colab import output

    output.enable_custom_widget_manager()'''


def is_colab_cell(cell) -> bool:
    """Whether ``cell`` is the Colab cell (by its metadata, not its text)."""
    return cell.get("metadata", {}).get("nncourse", {}).get("role") == ROLE


def new_cell(repo_url: str = REPO_URL, ref: str = REF) -> dict:
    """The Colab cell as an nbformat 4 code cell (plain dicts; nbformat accepts them)."""
    return {"cell_type": "code", "id": CELL_ID, "execution_count": None, "outputs": [],
            "metadata": {"tags": list(TAGS), "nncourse": {"role": ROLE}},
            "source": cell_source(repo_url, ref)}


def add_colab_cell(nb: dict, repo_url: str = REPO_URL, ref: str = REF) -> bool:
    """Insert the Colab cell before the first code cell of ``nb``, or refresh it; in place.

    Returns whether ``nb`` changed. A stale copy (other text, tags or position) is replaced;
    a second copy is removed. The cell stores no output and no execution count.
    """
    want = new_cell(repo_url, ref)
    cells = nb["cells"]
    found = [i for i, c in enumerate(cells) if is_colab_cell(c)]
    first_code = next((i for i, c in enumerate(cells)
                       if c["cell_type"] == "code" and not is_colab_cell(c)), len(cells))
    if len(found) == 1 and found[0] == first_code - 1 and _same(cells[found[0]], want):
        return False
    for i in reversed(found):
        del cells[i]
    first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
    if nb.get("nbformat", 4) == 4 and nb.get("nbformat_minor", 5) < 5:
        want.pop("id")  # cell ids exist from nbformat 4.5 on
    cells.insert(first_code, nbformat.from_dict(want) if isinstance(nb, nbformat.NotebookNode)
                 else want)
    return True


def _same(cell, want) -> bool:
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    return (source == want["source"] and cell.get("outputs") == []
            and cell.get("execution_count") is None
            and cell["metadata"].get("tags") == want["metadata"]["tags"])


def colab_url(path: str, repo: str = REPO, ref: str = REF) -> str:
    """The address that opens ``path`` (relative to the repository root) in Colab."""
    return f"https://colab.research.google.com/github/{repo}/blob/{ref}/{path}"


def badge(path: str, repo: str = REPO, ref: str = REF) -> str:
    return f"[![Open in Colab]({COLAB_BADGE})]({colab_url(path, repo, ref)})"


def badge_table(root: Path, repo: str = REPO, ref: str = REF) -> str:
    """A Markdown table: one row per chapter, its Colab badge and its exercise's."""
    rows = ["| # | chapter | exercises |", "|---|---|---|"]
    for chapter in sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb")):
        nn = chapter.name[:2]
        exercise = sorted((root / "exercises").glob(f"{nn}_*.ipynb"))
        ex = (f"{badge(f'exercises/{exercise[0].name}', repo, ref)} `{exercise[0].stem}`"
              if exercise else "")
        rows.append(f"| {nn} | {badge(f'chapters/{chapter.name}', repo, ref)} "
                    f"`{chapter.stem}` | {ex} |")
    return "\n".join(rows)


def update_readme(text: str, table: str) -> str:
    """``text`` with the table between the badge markers replaced by ``table``."""
    pattern = re.compile(re.escape(BADGES_BEGIN) + r".*?" + re.escape(BADGES_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"README has no {BADGES_BEGIN!r} ... {BADGES_END!r} markers")
    return pattern.sub(lambda _: f"{BADGES_BEGIN}\n{table}\n{BADGES_END}", text)


def main(argv: list[str] | None = None) -> int:
    from nncourse.course import notebooks as nbs

    parser = argparse.ArgumentParser(prog="python -m nncourse.course.colab",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--readme", type=Path, help="refresh the badge table of this README")
    parser.add_argument("--ref", default=REF,
                        help=f"branch, tag or commit to install (default {REF})")
    parser.add_argument("--check", action="store_true", help="change nothing; fail if stale")
    args = parser.parse_args(argv)
    stale = []
    for path in args.notebooks:
        nb = nbs.read(path)
        if add_colab_cell(nb, ref=args.ref):
            stale.append(str(path))
            if not args.check:
                nbs.write(nb, path)
    if args.readme:
        root = args.readme.resolve().parent
        text = args.readme.read_text(encoding="utf-8")
        new = update_readme(text, badge_table(root, ref=args.ref))
        if new != text:
            stale.append(str(args.readme))
            if not args.check:
                args.readme.write_text(new, encoding="utf-8")
    verb = "stale" if args.check else "updated"
    for s in stale:
        print(f"{verb}: {s}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
