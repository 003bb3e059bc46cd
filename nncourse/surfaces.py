r"""Two-dimensional test surfaces for optimizers, with their gradients.

Each surface is a function of a tensor ``xy`` of shape ``(..., 2)`` (so the same function draws a
contour grid and scores one point), differentiable by autograd, and has a known minimum:

* ``quadratic`` -- :math:`0.1 x^2 + 2 y^2` (d2l's ill-conditioned bowl, condition number 20);
* ``rosenbrock`` -- :math:`(1 - x)^2 + 100 (y - x^2)^2`, a curved narrow valley, minimum (1, 1);
* ``saddle`` -- :math:`x^2 - y^2`: the origin is a stationary point but not a minimum;
  unbounded below, so "steps to the minimum" do not exist (we report none);
* ``beale`` -- :math:`(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2`,
  flat plateaus and steep walls, minimum (3, 0.5).

:func:`trajectory` runs any ``torch.optim``-style optimizer on a surface.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nncourse._validate import check_choice, check_int

__all__ = ["Surface", "SURFACES", "get", "quadratic", "rosenbrock", "saddle", "beale",
           "trajectory", "steps_to"]


def quadratic(xy: torch.Tensor, a: float = 0.1, b: float = 2.0) -> torch.Tensor:
    """:math:`a x^2 + b y^2`; Hessian diag(2a, 2b), condition number b/a."""
    return a * xy[..., 0] ** 2 + b * xy[..., 1] ** 2


def rosenbrock(xy: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """:math:`(a - x)^2 + b (y - x^2)^2`; minimum 0 at (a, a^2)."""
    x, y = xy[..., 0], xy[..., 1]
    return (a - x) ** 2 + b * (y - x ** 2) ** 2


def saddle(xy: torch.Tensor) -> torch.Tensor:
    """:math:`x^2 - y^2`; a saddle point at the origin."""
    return xy[..., 0] ** 2 - xy[..., 1] ** 2


def beale(xy: torch.Tensor) -> torch.Tensor:
    """Beale's function; minimum 0 at (3, 0.5)."""
    x, y = xy[..., 0], xy[..., 1]
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2
            + (2.625 - x + x * y ** 3) ** 2)


# Gradients written out: a trajectory step then costs a few tensor operations instead of an
# autograd graph (3x faster, which is what keeps the widget's redraw quick). The tests compare
# each with autograd.

def _quadratic_grad(xy, a=0.1, b=2.0):
    return torch.stack([2 * a * xy[0], 2 * b * xy[1]])


def _rosenbrock_grad(xy, a=1.0, b=100.0):
    x, y = xy[0], xy[1]
    return torch.stack([-2 * (a - x) - 4 * b * x * (y - x * x), 2 * b * (y - x * x)])


def _saddle_grad(xy):
    return torch.stack([2 * xy[0], -2 * xy[1]])


def _beale_grad(xy):
    x, y = xy[0], xy[1]
    r1, r2, r3 = 1.5 - x + x * y, 2.25 - x + x * y ** 2, 2.625 - x + x * y ** 3
    return torch.stack([2 * (r1 * (y - 1) + r2 * (y ** 2 - 1) + r3 * (y ** 3 - 1)),
                        2 * (r1 * x + r2 * 2 * x * y + r3 * 3 * x * y ** 2)])


@dataclass(frozen=True)
class Surface:
    """A named surface: its function, where trajectories start, its minimum (None for the saddle)
    and the window to draw."""

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    gradient: Callable[[torch.Tensor], torch.Tensor]  # of one point, shape (2,)
    start: tuple[float, float]
    minimum: tuple[float, float] | None
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    log_levels: bool  # contour levels on a log scale (values span decades)

    def __call__(self, xy: torch.Tensor) -> torch.Tensor:
        return self.f(xy)

    def grad(self, xy) -> np.ndarray:
        """The gradient at one point (float64)."""
        return self.gradient(torch.as_tensor(xy, dtype=torch.float64)).numpy()

    def grid(self, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``X, Y, Z`` on an ``n`` x ``n`` grid over the window (for contour plots)."""
        xs = np.linspace(*self.xlim, n)
        ys = np.linspace(*self.ylim, n)
        X, Y = np.meshgrid(xs, ys)
        Z = self.f(torch.from_numpy(np.stack([X, Y], -1))).numpy()
        return X, Y, Z


SURFACES: dict[str, Surface] = {
    "quadratic": Surface("quadratic", quadratic, _quadratic_grad, (-5.0, -2.0), (0.0, 0.0),
                         (-5.5, 5.5), (-3.0, 3.0), False),
    "rosenbrock": Surface("rosenbrock", rosenbrock, _rosenbrock_grad, (-1.5, 2.0), (1.0, 1.0),
                          (-2.0, 2.0), (-1.0, 3.0), True),
    "saddle": Surface("saddle", saddle, _saddle_grad, (-1.5, 1e-3), None, (-2.0, 2.0),
                      (-2.0, 2.0), False),
    "beale": Surface("beale", beale, _beale_grad, (1.0, 1.5), (3.0, 0.5), (-1.0, 4.5),
                     (-1.5, 2.0), True),
}


def get(name: str) -> Surface:
    """The surface called ``name`` (one of :data:`SURFACES`)."""
    return SURFACES[check_choice(name, "surface", SURFACES, fn="surfaces.get")]


def trajectory(surface: str | Surface, make_optimizer: Callable, steps: int = 100,
               start: tuple[float, float] | None = None, bound: float = 1e6) -> np.ndarray:
    """Run ``make_optimizer([xy])`` for ``steps`` steps on ``surface`` from ``start`` (the
    surface's own start by default) in float64; return the points, shape ``(steps + 1, 2)``.

    A run that leaves the box ``|x|, |y| <= bound`` (diverged) stops there: the remaining rows
    are NaN, so a plot shows where it left and a count of steps sees it never arrived.
    """
    s = get(surface) if isinstance(surface, str) else surface
    steps = check_int(steps, "steps", low=0, fn="trajectory")
    # a leaf tensor that takes gradients, as a model parameter; its .grad is set directly
    xy = torch.tensor(start if start is not None else s.start, dtype=torch.float64,
                      requires_grad=True)
    opt = make_optimizer([xy])
    path = torch.full((steps + 1, 2), math.nan, dtype=torch.float64)
    path[0] = xy.detach()
    checked = 0  # rows up to here are known to be inside the box
    with torch.no_grad():
        for t in range(1, steps + 1):
            xy.grad = s.gradient(xy)
            opt.step()
            path[t] = xy
            if t % 16 == 0 or t == steps:  # look for divergence in blocks: fewer tiny ops
                block = path[checked + 1:t + 1]
                outside = ~(block.abs() <= bound).all(1)  # NaN counts as outside
                if outside.any():
                    path[checked + 1 + int(outside.nonzero()[0]):] = math.nan
                    break
                checked = t
    return path.numpy()


def steps_to(path: np.ndarray, target: tuple[float, float] | None, tol: float = 1e-2) -> int | None:
    """The first step at which ``path`` is within ``tol`` (Euclidean) of ``target`` and stays
    within it to the end; None if it never settles (or there is no target)."""
    if target is None:
        return None
    dist = np.linalg.norm(np.asarray(path) - np.asarray(target), axis=1)
    inside = dist <= tol  # NaN (diverged) compares False
    if not inside[-1]:
        return None
    outside = np.flatnonzero(~inside)
    return int(outside[-1] + 1) if outside.size else 0
