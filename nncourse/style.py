"""The course's matplotlib style, apart from :mod:`nncourse.plotting` so that
:func:`nncourse.setup` applies it without importing pyplot (about half a second of every kernel
start, and of every notebook the grader runs, that does not plot)."""

from __future__ import annotations

import matplotlib as mpl

_CYCLE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]


def use_style() -> None:
    """Apply the course's matplotlib style (small PNGs, grid, readable fonts)."""
    mpl.rcParams.update({
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 80,
        "savefig.dpi": 80,
        "figure.constrained_layout.use": True,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "axes.prop_cycle": mpl.cycler(color=_CYCLE),
        "image.cmap": "viridis",
    })
