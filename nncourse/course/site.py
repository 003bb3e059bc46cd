"""``make site`` (``python -m nncourse site``): the course as a static HTML site, built offline.

Sphinx with myst-nb and sphinx-book-theme renders every notebook of ``chapters/``,
``exercises/`` and ``solutions/`` from its **stored** outputs -- execution is off, so the site
shows exactly what strict nbval checked, and building needs no kernel and no network. The pages:

* ``index.html``: the landing page, a chapter map (each chapter with its exercises, its
  solutions, and Colab and Binder links);
* one page per chapter, per exercise notebook and per solution notebook, in three sections of
  the navigation sidebar (solutions on pages of their own, never on the chapter's page);
* on each notebook page, the theme's launch buttons open the notebook in Colab or Binder
  (:data:`nncourse.course.colab.REPO` at :data:`nncourse.course.colab.REF`).

The notebooks are copied into a staging folder (``OUT-src``, beside the output) that mirrors the
repository's layout, so the launch buttons and the notebooks' own relative links
(``../exercises/03_x.ipynb``) point where they do in the repository. A link to a notebook that
does not exist yet becomes plain text, with a warning in the build log.

    python -m nncourse site [--out build/site]     # then open build/site/index.html
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from nncourse.course.colab import REF, REPO, REPO_URL, colab_url, is_colab_cell

__all__ = ["SECTIONS", "title_of", "landing_page", "conf_py", "stage", "build", "broken_links",
           "add_arguments", "run"]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path("build/site")
#: The folders rendered, in the order of the navigation, with their sidebar captions.
SECTIONS = (("chapters", "Chapters"), ("exercises", "Exercises"), ("solutions", "Solutions"))
BINDER = "https://mybinder.org"


def title_of(path: Path) -> str:
    """The notebook's title: the text of its first ``# `` heading, else its file name."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for line in source.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return path.stem


def binder_url(path: str, repo: str = REPO, ref: str = REF) -> str:
    return f"{BINDER}/v2/gh/{repo}/{ref}?labpath={path}"


def _notebooks(root: Path, folder: str) -> list[Path]:
    return sorted((root / folder).glob("[0-9][0-9]_*.ipynb"))


def landing_page(root: Path) -> str:
    """``index.md``: the course, its chapter map and the navigation's table of contents."""
    lines = ["# Training deep neural networks, hands-on", "",
             "Why deep networks fail to train, and the fixes that make them train: every claim "
             "shown by an experiment that runs on a laptop CPU. These pages show each notebook "
             "with the outputs stored in the repository (checked by the test suite); to run and "
             "change them, open a notebook in Colab or Binder (the launch buttons at the top of "
             "each page), or clone the repository and run `make lab`.", "",
             "## Chapter map", "",
             "| # | chapter | exercises | solutions | run it |", "|---|---|---|---|---|"]
    exercises = {p.name[:2]: p for p in _notebooks(root, "exercises")}
    solutions = {p.name[:2]: p for p in _notebooks(root, "solutions")}
    for chapter in _notebooks(root, "chapters"):
        nn = chapter.name[:2]
        ex = exercises.get(nn)
        sol = solutions.get(nn)
        path = f"chapters/{chapter.name}"
        lines.append(
            f"| {nn} | [{title_of(chapter)}]({path}) "
            f"| {f'[{ex.stem}](exercises/{ex.name})' if ex else ''} "
            f"| {f'[solutions](solutions/{sol.name})' if sol else ''} "
            f"| [Colab]({colab_url(path)}) · [Binder]({binder_url(path)}) |")
    # exercise notebooks without a chapter of their own (00_warmup)
    chapters = {p.name[:2] for p in _notebooks(root, "chapters")}
    for nn, ex in sorted(exercises.items()):
        if nn not in chapters:
            sol = solutions.get(nn)
            lines.append(f"| {nn} | | [{ex.stem}](exercises/{ex.name}) "
                         f"| {f'[solutions](solutions/{sol.name})' if sol else ''} "
                         f"| [Colab]({colab_url(f'exercises/{ex.name}')}) |")
    lines += ["", "Source, issues and the full instructions: "
              f"[the repository]({REPO_URL}).", ""]
    for folder, caption in SECTIONS:
        lines += ["```{toctree}", f":caption: {caption}", ":maxdepth: 1", ""]
        lines += [f"{folder}/{p.stem}" for p in _notebooks(root, folder)]
        lines += ["```", ""]
    return "\n".join(lines)


def conf_py(repo_url: str = REPO_URL, ref: str = REF) -> str:
    """Sphinx's ``conf.py``: myst-nb with execution off, sphinx-book-theme, launch buttons."""
    return f'''\
# Written by `python -m nncourse site` (nncourse/course/site.py); not edited by hand.
project = "nncourse"
author = "The nncourse contributors"
extensions = ["myst_nb"]
nb_execution_mode = "off"          # render the stored, nbval-checked outputs; no kernel
myst_enable_extensions = ["dollarmath", "amsmath"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]
html_theme = "sphinx_book_theme"
html_title = "nncourse: training deep neural networks"
html_theme_options = {{
    "repository_url": {repo_url!r},
    "repository_branch": {ref!r},
    "path_to_docs": "",
    "use_repository_button": True,
    "launch_buttons": {{
        "colab_url": "https://colab.research.google.com",
        "binderhub_url": {BINDER!r},
        "notebook_interface": "jupyterlab",
    }},
    "show_navbar_depth": 1,
}}
'''


def stage(root: Path, src: Path) -> Path:
    """Lay out the Sphinx source folder ``src``: conf.py, index.md and copies of the
    notebooks."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for folder, _ in SECTIONS:
        (src / folder).mkdir()
        for nb in _notebooks(root, folder):
            shutil.copy2(nb, src / folder / nb.name)
    for nb in sorted(src.glob("*/*.ipynb")):
        for target in _unlink_missing(nb):
            print(f"site: {nb.relative_to(src)} links to {target}, which does not exist: "
                  "shown as plain text", file=sys.stderr)
    (src / "conf.py").write_text(conf_py(), encoding="utf-8")
    (src / "index.md").write_text(landing_page(root), encoding="utf-8")
    return src


_MD_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+\.ipynb)(#[^)\s]*)?\)")


def _unlink_missing(path: Path) -> list[str]:
    """Prepare the staged notebook ``path``: leave out the Colab set-up cell (the page has its
    own launch buttons), and turn each Markdown link to a notebook that does not exist (a chapter
    announced before it lands) into its plain text. Returns those missing targets."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    missing: list[str] = []

    def fix(m: re.Match) -> str:
        target = m.group(2)
        if "://" in target or (path.parent / target).exists():
            return m.group(0)
        missing.append(target)
        return m.group(1)

    cells = [c for c in nb.get("cells", []) if not is_colab_cell(c)]
    changed = len(cells) != len(nb.get("cells", []))
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            cell["source"] = _MD_LINK.sub(fix, source)
    if missing or changed:
        nb["cells"] = cells
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return missing


def build(root: Path = ROOT, out: Path = DEFAULT_OUT, jobs: int = 1,
          log: Path | None = None) -> subprocess.CompletedProcess:
    """Build the site into ``out`` (``out/index.html``); the build log goes to ``log``
    (default ``out-build.log``). Raises RuntimeError when Sphinx fails."""
    out = Path(out).resolve()
    src = stage(root, out.with_name(out.name + "-src"))
    log = log or out.with_name(out.name + "-build.log")
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", str(jobs),
           "-d", str(src / "_doctrees"), str(src), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode:
        raise RuntimeError(f"sphinx-build failed (exit {proc.returncode}); its log: {log}\n"
                           + proc.stderr[-3000:])
    return proc


class _Links(HTMLParser):
    """The link targets (``href``/``src``) and element ids of one HTML page."""

    def __init__(self):
        super().__init__()
        self.targets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            elif name in ("href", "src") and value and tag in ("a", "link", "script", "img"):
                self.targets.append(value)


def broken_links(out: Path) -> list[str]:
    """Every internal link of the site in ``out`` that does not resolve: a missing file, or a
    ``#fragment`` that is no element id of its page. External (``https:``...) links are not
    followed: the site is checked offline."""
    out = Path(out)
    # _static/ holds the theme's template fragments ({{ pathto(...) }}), not pages
    pages = {p: _Links() for p in out.rglob("*.html") if "_static" not in p.relative_to(out).parts}
    for p, parser in pages.items():
        parser.feed(p.read_text(encoding="utf-8"))
    broken = []
    for page, parser in pages.items():
        for target in parser.targets:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc:
                continue  # https:, mailto:, data:...
            path = unquote(parts.path)
            dest = (page.parent / path).resolve() if path else page.resolve()
            if dest.is_dir():
                dest = dest / "index.html"
            where = f"{page.relative_to(out)}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and dest.suffix == ".html":
                ids = pages[dest].ids if dest in pages else _Links().ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where} (no element with that id)")
    return sorted(set(broken))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--jobs", type=int, default=2, help="Sphinx's parallel jobs (default 2)")


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        proc = build(ROOT, args.out, args.jobs)
    except (RuntimeError, OSError) as exc:
        print(f"site: {exc}", file=sys.stderr)
        return 1
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    broken = broken_links(args.out)
    for b in broken:
        print(f"site: broken link: {b}", file=sys.stderr)
    print(f"site built in {time.monotonic() - t0:.0f} s: {args.out / 'index.html'}"
          + (f" ({len(warnings)} warning(s), see {args.out}-build.log)" if warnings else ""))
    return 1 if broken else 0
