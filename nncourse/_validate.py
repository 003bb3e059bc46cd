"""Argument checks shared by the whole package, so every message has one form.

Each check names the function it guards, the argument, what was expected and what came, in one
sentence -- ``make_mlp: init must be one of default, zeros, ...; got 'glorot'`` -- and raises
``ValueError``. (The pattern of ``torch.nn.utils.prune._validate_pruning_amount_init``: one helper,
not the same ``isinstance`` ladder in thirty places.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

__all__ = ["check_int", "check_number", "check_choice"]


def _where(fn: str | None) -> str:
    return f"{fn}: " if fn else ""


def check_int(value, name: str, low: int = 1, fn: str | None = None) -> int:
    """``value`` as an ``int`` if it is an integer >= ``low`` (``bool`` is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        kind = {1: "a positive integer", 0: "a non-negative integer"}.get(
            low, f"an integer >= {low}")
        raise ValueError(f"{_where(fn)}{name} must be {kind}, got {value!r}")
    return int(value)


def check_number(value, name: str, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False,
                 fn: str | None = None) -> float:
    """``value`` as a ``float`` if it is a finite real number in the given range.

    ``low_open`` / ``high_open`` exclude the bound itself: ``check_number(p, "p", 0, 1,
    high_open=True)`` accepts [0, 1).
    """
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            want = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low == 0:
            want = "a positive number" if low_open else "a non-negative number"
        elif low is not None:
            want = f"a number {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            want = f"a number {'<' if high_open else '<='} {high:g}"
        else:
            want = "a finite number"
        raise ValueError(f"{_where(fn)}{name} must be {want}, got {value!r}")
    return float(value)


def check_choice(value, name: str, choices: Iterable[str], fn: str | None = None) -> str:
    """``value`` lower-cased if it is one of ``choices`` (case-insensitive)."""
    choices = tuple(choices)
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{_where(fn)}{name} must be one of {', '.join(choices)}; got {value!r}")
    return value.lower()
