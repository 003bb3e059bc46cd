"""Exercise checks: the machinery every chapter's checks are built on.

A check cell in an exercise notebook calls one check function, e.g.
``check.ex0_1_relu(relu)``. On success it prints one stable line::

    Exercise 0.1 passed (1 point)

On failure it raises :class:`ExerciseError` whose message names the exercise, what was expected,
what was received and one hint -- and, in Jupyter, is shown as that one message, without a
traceback into nncourse. Write a check with :func:`exercise`::

    def ex0_1_relu(relu):
        with exercise("0.1", points=1, name="relu") as ex:
            x = np.array([-2.0, 0.0, 3.0])
            # calls relu(x) (student errors become messages), checks None / type / shape / dtype /
            # NaN, then compares with the expected values:
            ex.matches(relu, x, expected=np.maximum(x, 0), call="relu(x)",
                       hint="negative inputs map to 0")

Anything unexpected inside the block (a student object the check did not foresee) also becomes an
:class:`ExerciseError` naming the exercise. Per-chapter checks live in ``nncourse/checks/chNN.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import numpy as np

__all__ = ["ExerciseError", "NotAttempted", "Exercise", "exercise", "passed_line", "one_thread",
           "single_threaded"]


class ExerciseError(Exception):
    """A check failed. The message says which exercise, what was expected and a hint."""


class NotAttempted(ExerciseError):
    """The answer is still the stub (it raised ``NotImplementedError``)."""


def passed_line(exercise_id: str, points: int) -> str:
    """The line a passing check prints, e.g. ``Exercise 1.2 passed (2 points)``."""
    return f"Exercise {exercise_id} passed ({points} point{'s' if points != 1 else ''})"


def _describe(value) -> str:
    """A short description of a value for error messages."""
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"


def _to_numpy(value):
    """Convert a tensor / array / list / number to a NumPy array, or None if not numeric."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, int, float, np.number, list, tuple)):
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):
            return None
        return arr if arr.dtype != object else None
    return None


class Exercise:
    """Helpers for one exercise's check; create it with :func:`exercise`."""

    def __init__(self, exercise_id: str, points: int, name: str):
        self.id = exercise_id
        self.points = points
        self.name = name
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        """A line printed just before the pass line (only when the check passes): what the
        measured number means, for predict-and-measure exercises. Keep it deterministic."""
        self.notes.append(text)

    def fail(self, message: str, hint: str | None = None):
        """Raise :class:`ExerciseError` with ``Exercise X.Y (name): message. Hint: hint``."""
        text = f"Exercise {self.id} ({self.name}): {_sentence(message)}"
        if hint:
            text += f" Hint: {_sentence(hint)}"
        raise ExerciseError(text)

    def call(self, fn: Callable, *args, call: str | None = None, **kwargs):
        """Call the student's ``fn``; turn the stub and any error it raises into a clear message."""
        label = call or f"{getattr(fn, '__name__', 'your function')}(...)"
        if not callable(fn):
            self.fail(f"expected a function, got {_describe(fn)}",
                      "define it with `def ...` in the answer cell above and run that cell")
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            raise NotAttempted(f"Exercise {self.id} ({self.name}): not attempted yet -- "
                               f"{label} still raises NotImplementedError. Hint: replace the "
                               "`raise NotImplementedError` line in the answer cell with your "
                               "code, then run that cell and this one.") from None
        except ExerciseError:
            raise
        except Exception as exc:  # the student's code failed: report it, not our internals
            self.fail(f"{label} raised {type(exc).__name__}: {exc}",
                      "run your function on a small input in a new cell to see where it fails")

    def array(self, value, what: str, shape: Sequence[int] | None = None,
              dtype: str | None = None, allow_nan: bool = False) -> np.ndarray:
        """Check ``value`` is numeric (tensor / array / number), of ``shape``, finite; return it.

        ``dtype`` is ``"float"``, ``"int"`` or ``"bool"`` (the kind, not the exact width).
        """
        if value is None:
            self.fail(f"{what} returned None, expected "
                      f"{'an array' if shape is None else f'an array of shape {tuple(shape)}'}",
                      "did you forget a `return` statement?")
        arr = _to_numpy(value)
        if arr is None:
            self.fail(f"expected {what} to be a numpy array or torch tensor, "
                      f"got {_describe(value)}")
        if shape is not None and tuple(arr.shape) != tuple(shape):
            self.fail(f"expected {what} to have shape {tuple(shape)}, got shape {tuple(arr.shape)}",
                      "check which axis you summed or averaged over, and keep the batch axis")
        if dtype is not None:
            kinds = {"float": "f", "int": "iu", "bool": "b"}[dtype]
            if arr.dtype.kind not in kinds:
                self.fail(f"expected {what} to hold {dtype} values, got dtype {arr.dtype}")
        if not allow_nan and arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            self.fail(f"{what} contains {bad} NaN or infinite value{'s' if bad != 1 else ''}",
                      "look for exp() of a large number or a division by zero; "
                      "the numerically stable form avoids both")
        return arr

    def number(self, value, what: str) -> float:
        """Check ``value`` is one finite real number (a 0-d or 1-element tensor is fine)."""
        arr = self.array(value, what)
        if arr.size != 1:
            self.fail(f"expected {what} to be a single number, got shape {tuple(arr.shape)}",
                      "reduce it with .sum() or .mean()")
        return float(arr.reshape(()))

    def close(self, got, expected, what: str, rtol: float = 1e-5, atol: float = 1e-8,
              hint: str | None = None) -> None:
        """Fail unless ``got`` equals ``expected`` within tolerance (shapes must match)."""
        got_a = self.array(got, what, allow_nan=True)
        exp_a = np.asarray(expected, dtype=float)
        if got_a.shape != exp_a.shape:
            self.fail(f"expected {what} to have shape {exp_a.shape}, got {got_a.shape}", hint)
        if not np.allclose(got_a.astype(float), exp_a, rtol=rtol, atol=atol, equal_nan=True):
            if exp_a.ndim == 0:
                e, g = _fmt_pair(exp_a, got_a)
                self.fail(f"{what} is wrong: expected {e}, got {g}", hint)
            diff = np.abs(got_a.astype(float) - exp_a)
            i = np.unravel_index(int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))),
                                 diff.shape)
            e, g = _fmt_pair(exp_a[i], got_a[i])
            self.fail(f"{what} is wrong: at index {tuple(int(k) for k in i)} expected "
                      f"{e}, got {g}", hint)

    def matches(self, fn: Callable, *args, expected, call: str, hint: str | None = None,
                rtol: float = 1e-5, atol: float = 1e-8, dtype: str | None = "float") -> np.ndarray:
        """Call the student's ``fn(*args)`` and require a result equal to ``expected``.

        The usual sequence in one step: :meth:`call`, then :meth:`array` (shape of ``expected``,
        ``dtype`` kind, finite), then :meth:`close`. Returns the result as an array.
        """
        expected = np.asarray(expected)
        got = self.array(self.call(fn, *args, call=call), call, shape=expected.shape, dtype=dtype)
        self.close(got, expected, call, rtol=rtol, atol=atol, hint=hint)
        return got

    def true(self, condition: bool, message: str, hint: str | None = None) -> None:
        """Fail with ``message`` unless ``condition``."""
        if not condition:
            self.fail(message, hint)


def _sentence(text: str) -> str:
    """End ``text`` with exactly one full stop (or its own ? or !)."""
    text = text.rstrip().rstrip(".")
    return text if text.endswith(("?", "!")) else text + "."


def _fmt(x) -> str:
    x = float(x)
    return repr(x) if not math.isfinite(x) else f"{x:.6g}"


def _fmt_pair(expected, got) -> tuple[str, str]:
    """Both numbers with the fewest significant digits (at least 6) that tell them apart."""
    e, g = float(expected), float(got)
    for digits in range(6, 18):
        if not (math.isfinite(e) and math.isfinite(g)):
            break
        a, b = f"{e:.{digits}g}", f"{g:.{digits}g}"
        if a != b:
            return a, b
    return _fmt(e), _fmt(g)


@contextmanager
def exercise(exercise_id: str, points: int, name: str):
    """Run one exercise's check; print the pass line on success.

    Unexpected errors inside the block become an :class:`ExerciseError` that names the exercise,
    so a student never sees a traceback from inside nncourse.
    """
    ex = Exercise(exercise_id, points, name)
    try:
        yield ex
    except ExerciseError as err:
        raise type(err)(str(err)) from None
    except Exception as exc:
        raise ExerciseError(
            f"Exercise {exercise_id} ({name}): the check could not use your answer "
            f"({type(exc).__name__}: {exc}). Hint: compare what your answer returns with the "
            "description above the answer cell (type, shape, dtype).") from None
    for line in ex.notes:
        print(line)
    print(passed_line(exercise_id, points))


@contextmanager
def one_thread():
    """Run torch on one thread inside the block, as ``nncourse.setup()`` does in a notebook.

    A check that re-runs an experiment does it in whatever process calls it -- the grader's own,
    for trusted checks, whose thread count nobody pinned. One thread gives the numbers the
    learner's pinned kernel gives, and avoids the 20-70x slowdown measured for two OpenMP threads
    on a loaded 2-core machine (a 1.4 s training took 109 s).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(fn):
    """Decorator: run ``fn`` inside :func:`one_thread`."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_thread():
            return fn(*args, **kwargs)
    return wrapper


def _show_exercise_error(shell, etype, value, tb, tb_offset=None):
    """IPython handler: show an ExerciseError as its one-line message, no traceback."""
    shell._showtraceback(etype, value, [f"{etype.__name__}: {value}"])


def _install_ipython_handler() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    shell = get_ipython()
    if shell is not None and ExerciseError not in getattr(shell, "custom_exceptions", ()):
        shell.set_custom_exc((ExerciseError,), _show_exercise_error)


_install_ipython_handler()
