"""Latency benchmark: every widget control against the floor of JupyterLab + ipympl.

    .venv/bin/python -m tests.browser.bench_widgets [--moves 10] [-k 03] [--dpr 1 2] [--raw]
                                                    [--drag] [chapters/NN_x.ipynb ...]

For each device pixel ratio (``--dpr``; 2 is a high-DPI laptop screen, where ipympl sends four
times the pixels), in one JupyterLab server and one headless Chromium:

1. the **floor**: a trivial ipympl widget (one line, ``set_ydata`` + ``draw_idle`` on each move of
   a slider; ``lab.FLOOR_CELLS``) is moved ``3 x --moves`` times (at least 30);
2. every control of every widget of the chosen chapters is moved ``--moves`` times (slider: one
   arrow key; dropdown: the next option), timing input -> redrawn figure;
3. the floor again, at the end: the floor is both runs pooled, so a load that changes during the
   run shows as a gap between them (printed) and weighs on both sides of the ratio.

Each control prints its median and p95 in ms and as ratios to the floor's median and p95.
Targets (issue #28): median <= 1.3x and p95 <= 2x the floor's, at every dpr. Ratios are meant to
carry across machines and loads; milliseconds do not. A benchmark, not a test: the numbers are
most meaningful on an idle machine. ``--drag`` also drags every slider across its track and back
(about 2 s) and prints how many frames the figure showed and when the last one came relative to
the mouse-up. Exit status 0 whatever the verdicts (2 with ``--strict`` if a control misses).
"""

import argparse
import sys
import tempfile
from pathlib import Path

from tests.browser import lab


def pick(notebooks: list[Path], patterns: list[str]) -> list[Path]:
    """Notebooks whose file name contains any of ``patterns`` (all when none is given); "03" and
    "ch03" both pick chapters/03_*.ipynb."""
    pats = [p.lower().removeprefix("ch") for p in patterns]
    return [nb for nb in notebooks if not pats or any(p in nb.name.lower() for p in pats)]


def run(notebooks: list[Path], server, dpr: float, moves: int, raw: bool, drag: bool) -> dict:
    """One pass at device pixel ratio ``dpr``: floor, every control, floor again."""
    rows, drags = [], []
    floor_moves = max(30, 3 * moves)
    with tempfile.TemporaryDirectory() as profile, lab.browser(Path(profile), dpr) as ctx:
        before = lab.measure_floor(ctx, server, floor_moves)
        print(f"\n[dpr {dpr:g}] " + lab.floor_line(before) + " (before)", flush=True)
        for nb in notebooks:
            page = lab.NotebookPage(ctx.new_page(), server, nb.name)
            try:
                page.open()
                page.run_all()
                new = lab.exercise_widgets(page, None, moves=moves)
                if drag:
                    drags += lab.drag_sliders(page)
            finally:
                page.page.close()
                server.shutdown_kernels()
            rows += new
            for r in new:
                if raw:
                    print(f"  {nb.name} {r['widget']} {r['control']}:",
                          " ".join(f"{x:.0f}" for x in r["latencies_ms"]))
            print(lab.latency_table(new, before, header=False), flush=True)
        after = lab.measure_floor(ctx, server, floor_moves)
        print(f"[dpr {dpr:g}] " + lab.floor_line(after) + " (after)", flush=True)
    floor = {**lab.stats(before["latencies_ms"] + after["latencies_ms"]),
             "latencies_ms": before["latencies_ms"] + after["latencies_ms"],
             "pipeline": lab.stats(before["pipeline"]["latencies_ms"]
                                   + after["pipeline"]["latencies_ms"]),
             "before": before, "after": after}
    return {"dpr": dpr, "floor": floor, "rows": rows, "drags": drags}


def summary(passes: list[dict]) -> tuple[str, int]:
    """One line per control, one column group per dpr; and how many (control, dpr) miss."""
    lines, misses, lost_note = [], 0, 0
    for p in passes:
        f = p["floor"]
        lines.append(f"dpr {p['dpr']:g}: " + lab.floor_line(f)
                     + f" (before {f['before']['median']:.0f}/{f['before']['p95']:.0f}, "
                     f"after {f['after']['median']:.0f}/{f['after']['p95']:.0f})")
    lines.append(f"targets: median <= {lab.TARGET_MEDIAN}x the floor's median, "
                 f"p95 <= {lab.TARGET_P95}x the floor's p95 (x med/p95); for reference, "
                 "xpipe = median / the course-pipeline reference's median")
    head = f"{'notebook':<30} {'w':>2} {'control':<26}"
    for p in passes:
        head += f" | dpr {p['dpr']:g}: {'ms med/p95':>11} {'x med/p95':>10} {'':4} {'xpipe':>5}"
    lines.append(head)
    keys = []
    for p in passes:
        for r in p["rows"]:
            k = (r["notebook"], r["widget"], r["control"])
            if k not in keys:
                keys.append(k)
    for k in keys:
        line = f"{k[0][:30]:<30} {k[1]:>2} {k[2][:26]:<26}"
        for p in passes:
            r = next((r for r in p["rows"] if (r["notebook"], r["widget"], r["control"]) == k),
                     None)
            if r is None:
                line += f" | {'(not run)':>40}"
                continue
            st = lab.stats(r["latencies_ms"])
            rm, rp, ok = lab.verdict(st, p["floor"])
            misses += ok != "ok"
            lost = len(r["latencies_ms"]) - st["n"]
            lost_note += lost
            line += (f" | {'':7}{st['median']:5.0f}/{st['p95']:<5.0f} "
                     f"{rm:4.2f}/{rp:<5.2f} {ok + '*' * (lost > 0):4} "
                     f"{st['median'] / p['floor']['pipeline']['median']:5.2f}")
        lines.append(line)
    if lost_note:
        lines.append(f"*: {lost_note} move(s) did not redraw within 15 s and are left out")
    return "\n".join(lines), misses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to bench (default: every chapter with a widget)")
    parser.add_argument("-k", dest="patterns", action="append", default=[],
                        help="only chapters whose file name contains this (e.g. 03 or ch03); "
                             "repeatable")
    parser.add_argument("--moves", type=int, default=10, help="moves per control (default 10)")
    parser.add_argument("--dpr", type=float, nargs="+", default=[1, 2],
                        help="device pixel ratios to run (default: 1 2)")
    parser.add_argument("--raw", action="store_true", help="also print every move's latency")
    parser.add_argument("--drag", action="store_true", help="also drag every slider")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 2 if a control misses a target")
    args = parser.parse_args(argv)
    reason = lab.unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    notebooks = pick([p.resolve() for p in args.notebooks] or lab.widget_notebooks(),
                     args.patterns)
    if not notebooks:
        print(f"no widget notebook matches {args.patterns}", file=sys.stderr)
        return 1
    server = lab.LabServer(notebooks)
    server.start()
    try:
        passes = [run(notebooks, server, dpr, args.moves, args.raw, args.drag)
                  for dpr in args.dpr]
    finally:
        server.stop()
    table, misses = summary(passes)
    print("\nall widgets (ms and ratio to the floor):\n" + table)
    print(f"\n{misses} (control, dpr) pair(s) miss a target" if misses
          else "\nevery control meets the targets")
    for p in passes:
        if p["drags"]:
            print(f"\nslider drags at dpr {p['dpr']:g}:\n" + lab.drag_table(p["drags"]))
    return 2 if args.strict and misses else 0


if __name__ == "__main__":
    sys.exit(main())
