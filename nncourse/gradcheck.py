"""Gradient checking: compare a backward pass with central finite differences (chapter 01).

For each entry :math:`\\theta_i` of a parameter array,

.. math:: \\frac{\\partial L}{\\partial \\theta_i} \\approx
          \\frac{L(\\theta + \\varepsilon e_i) - L(\\theta - \\varepsilon e_i)}{2\\varepsilon},

whose error shrinks like :math:`\\varepsilon^2` (a one-sided difference only like
:math:`\\varepsilon`). The analytic gradient :math:`a` and the numerical one :math:`n` are compared
with the relative error :math:`\\lVert a - n\\rVert / (\\lVert a\\rVert + \\lVert n\\rVert)`, which
does not care whether the gradient is large or tiny.

**Tolerance.** In float64 with :math:`\\varepsilon = 10^{-6}` a correct backward pass gives
relative errors around :math:`10^{-9}` or below (rounding error
:math:`\\approx 10^{-16}/\\varepsilon` plus truncation error :math:`\\approx \\varepsilon^2`).
:data:`TOLERANCE` is :math:`10^{-6}`: below it the gradient is right; a bug gives errors of
:math:`10^{-2}` to 1. ReLU's kink can spoil a check when an input sits within
:math:`\\varepsilon` of 0 -- rare with random data. Never gradient-check in float32: its rounding
error alone is about :math:`10^{-7}/\\varepsilon`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nncourse.backprop import MLP, loss_and_backward, loss_value

__all__ = ["TOLERANCE", "EPS", "numerical_gradient", "relative_error", "check_gradients", "verdict"]

#: A relative error below this means the analytic gradient is right (float64, EPS = 1e-6).
TOLERANCE = 1e-6
#: Default finite-difference step.
EPS = 1e-6


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = EPS
                       ) -> np.ndarray:
    """Central finite-difference gradient of the scalar function ``f`` at ``x``.

    ``x`` is perturbed *in place*, one entry at a time, and restored afterwards, so ``f`` may
    ignore its argument and read ``x`` through a closure -- that is how a network's own
    parameter arrays are checked. ``x`` must be a float64 array.

    Returns an array of the shape of ``x``.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise ValueError("x must be a float64 numpy array (finite differences need double "
                         f"precision), got {type(x).__name__} of dtype {getattr(x, 'dtype', None)}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        f_plus = float(f(x))
        x[i] = old - eps
        f_minus = float(f(x))
        x[i] = old  # restore: the next entry must be checked at the original point
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numerical: np.ndarray) -> float:
    """:math:`\\lVert a - n\\rVert_2 / (\\lVert a\\rVert_2 + \\lVert n\\rVert_2)`, 0 if both
    are 0."""
    a, n = np.asarray(analytic, float), np.asarray(numerical, float)
    if a.shape != n.shape:
        raise ValueError(f"analytic and numerical gradients must have the same shape, got "
                         f"{a.shape} and {n.shape}")
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - n) / denom)


def check_gradients(net: MLP, x: np.ndarray, y: np.ndarray, loss: str = "bce",
                    eps: float = EPS) -> dict[str, float]:
    """Relative error between ``net``'s backward pass and finite differences, per parameter.

    Returns ``{"0.weight": error, ...}`` (names of ``net.parameters()``); compare each with
    :data:`TOLERANCE`.
    """
    loss_and_backward(net, x, y, loss)
    analytic = {k: g.copy() for k, g in net.gradients().items()}

    def f(_):
        return loss_value(net, x, y, loss)

    errors = {name: relative_error(analytic[name], numerical_gradient(f, p, eps))
              for name, p in net.parameters().items()}
    loss_and_backward(net, x, y, loss)  # leave the gradients of the unperturbed net behind
    return errors


def verdict(error: float, bound: float = 1e-7) -> str:
    """A printable verdict for one relative error: ``"< 1e-07   ok"`` or ``"1.2e-01   WRONG"``.

    A correct gradient's relative error is rounding noise: its digits change with the CPU's
    arithmetic library, so below ``bound`` only the bound is printed (stable output for a
    notebook). Errors above it are printed to two digits and judged against :data:`TOLERANCE`.
    """
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound!r}")
    if error < bound:
        return f"< {bound:.0e}   ok"
    return f"{error:.1e}   {'ok' if error < TOLERANCE else 'WRONG'}"
