"""Latency benchmark: move every widget control N times in JupyterLab and print median/p95.

    .venv/bin/python -m tests.browser.bench_widgets [--moves 20] [--raw] [--drag] [--dpr 2]
                                                    [chapters/NN_x.ipynb ...]

``--drag`` also drags every slider across its track and back with the mouse (about 2 s) and
prints how many frames the figure showed and when the last one came relative to the mouse-up.

Targets (COURSE_DESIGN.md): p95 <= 150 ms for widgets that only compute curves or statistics,
<= 1.5 s for widgets that retrain a small network. A benchmark, not a test: run it on an idle
machine.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from tests.browser import lab


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--raw", action="store_true", help="also print every move's latency")
    parser.add_argument("--drag", action="store_true", help="also drag every slider")
    parser.add_argument("--dpr", type=float, default=1,
                        help="device pixel ratio: 2 is a high-DPI (retina) laptop screen")
    args = parser.parse_args(argv)
    reason = lab.unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    notebooks = [p.resolve() for p in args.notebooks] or lab.widget_notebooks()
    server = lab.LabServer(notebooks)
    server.start()
    rows, drags = [], []
    try:
        with tempfile.TemporaryDirectory() as profile, lab.browser(Path(profile), args.dpr) as ctx:
            for nb in notebooks:
                page = lab.NotebookPage(ctx.new_page(), server, nb.name)
                page.open()
                page.run_all()
                new = lab.exercise_widgets(page, None, moves=args.moves)
                if args.drag:
                    drags += lab.drag_sliders(page)
                rows += new
                page.page.close()
                if args.raw:
                    for r in new:
                        print(f"{nb.name} {r['widget']} {r['control']}:",
                              " ".join(f"{x:.0f}" for x in r["latencies_ms"]))
                print(lab.latency_table([r for r in rows if r["notebook"] == nb.name]), flush=True)
    finally:
        server.stop()
    print("\nall widgets:\n" + lab.latency_table(rows))
    if drags:
        print("\nslider drags:\n" + lab.drag_table(drags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
