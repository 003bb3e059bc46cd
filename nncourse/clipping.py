"""Gradient clipping from scratch: by value and by (global) norm.

Two flavours, as in the literature and the frameworks:

* on one gradient vector, returning a new tensor (:func:`clip_by_value`, :func:`clip_by_norm`,
  the formulas of ``tf.clip_by_value`` / ``tf.clip_by_norm``);
* in place on the ``.grad`` of a model's parameters, mirroring
  ``torch.nn.utils.clip_grad_value_`` and ``torch.nn.utils.clip_grad_norm_`` (same names, same
  arguments, same result -- see ``tests/test_clipping.py``).

Clipping by value clamps every component to ``[-c, c]``: cheap, but it changes the gradient's
*direction*. Clipping by norm rescales the whole gradient so that its norm is at most
``max_norm``: the direction is kept, only the step length shrinks. Neither helps a gradient that
is too *small* (vanishing): clipping can only shrink.

:class:`ClipGradients` is a training callback that clips with these functions and records the
global gradient norm before clipping at every step.
"""

from __future__ import annotations

import math

import torch

from nncourse._validate import check_number
from nncourse.training import Callback

__all__ = ["clip_by_value", "clip_by_norm", "clip_grad_value_", "clip_grad_norm_", "with_grad",
           "ClipGradients", "plot_total_norms"]

# torch adds this to the total norm before dividing, so an all-zero gradient gives 0, not NaN.
_EPS = 1e-6


def _positive(name: str, value) -> float:
    return check_number(value, name, 0, low_open=True)


def _grads(parameters) -> list[torch.Tensor]:
    """The existing ``.grad`` tensors of ``parameters`` (a tensor or an iterable of tensors)."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_by_value(grad: torch.Tensor, clip_value: float) -> torch.Tensor:
    """Clamp every component of ``grad`` to ``[-clip_value, clip_value]`` (a new tensor).

    .. math:: g_i \\leftarrow \\max(-c, \\min(c, g_i))
    """
    c = _positive("clip_value", clip_value)
    return grad.clamp(-c, c)


def clip_by_norm(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Rescale ``grad`` to L2 norm ``max_norm`` if its norm is larger (a new tensor).

    .. math:: g \\leftarrow g \\cdot \\frac{\\text{max\\_norm}}{\\max(\\lVert g \\rVert_2,
              \\text{max\\_norm})}

    This is the exact formula (``tf.clip_by_norm``); :func:`clip_grad_norm_` adds torch's
    ``1e-6`` to the norm, which changes the result by about ``1e-8`` relative.
    """
    m = _positive("max_norm", max_norm)
    norm = torch.linalg.vector_norm(grad)
    return grad * (m / torch.clamp(norm, min=m))


@torch.no_grad()
def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp the gradient of each parameter to ``[-clip_value, clip_value]``, in place.

    Mirrors ``torch.nn.utils.clip_grad_value_``. Parameters without a gradient are skipped.
    """
    c = _positive("clip_value", clip_value)
    for g in _grads(parameters):
        g.clamp_(-c, c)


@torch.no_grad()
def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> torch.Tensor:
    """Rescale all gradients together so that their *global* norm is at most ``max_norm``.

    Mirrors ``torch.nn.utils.clip_grad_norm_``. The global norm treats every gradient of every
    parameter as one long vector:

    .. math:: \\lVert g \\rVert = \\Big(\\sum_k \\lVert g_k \\rVert_p^p\\Big)^{1/p}, \\qquad
              g_k \\leftarrow g_k \\cdot \\min\\Big(1, \\frac{\\text{max\\_norm}}
              {\\lVert g \\rVert + 10^{-6}}\\Big)

    Parameters
    ----------
    parameters : tensor or iterable of tensors
        Parameters whose ``.grad`` is clipped in place (those without a gradient are skipped).
    max_norm : float
        Largest allowed global norm.
    norm_type : float
        ``p`` of the p-norm; ``float("inf")`` for the largest absolute value.
    error_if_nonfinite : bool
        Raise ``RuntimeError`` if the global norm is NaN or infinite.

    Returns
    -------
    torch.Tensor
        The global norm *before* clipping (0-d tensor) -- worth logging: it is the quantity that
        spikes when training is about to blow up.
    """
    m = _positive("max_norm", max_norm)
    p = float(norm_type)
    if not p > 0:
        raise ValueError(f"norm_type must be positive or inf, got {norm_type!r}")
    grads = _grads(parameters)
    if not grads:
        return torch.tensor(0.0)
    norms = torch.stack([torch.linalg.vector_norm(g, p) for g in grads])
    total = norms.max() if math.isinf(p) else torch.linalg.vector_norm(norms, p)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is non-finite, "
                           "so it cannot be clipped")
    coef = torch.clamp(m / (total + _EPS), max=1.0)
    for g in grads:
        # Multiply even when coef == 1 (exact no-op), as torch does: a NaN norm then shows up as
        # NaN gradients instead of silently passing through.
        g.mul_(coef.to(g.dtype))
    return total


def with_grad(grad, dtype: torch.dtype | None = None) -> torch.nn.Parameter:
    """A parameter (of zeros) whose ``.grad`` is ``grad`` -- to try clipping on a given vector."""
    g = torch.as_tensor(grad, dtype=dtype).clone()
    p = torch.nn.Parameter(torch.zeros_like(g))
    p.grad = g
    return p


class ClipGradients(Callback):
    """Training callback: clip gradients after each backward pass with this module's functions.

    ``by="norm"`` uses :func:`clip_grad_norm_` (``threshold`` = max_norm), ``by="value"``
    :func:`clip_grad_value_`. ``total_norms`` lists the global L2 gradient norm *before* clipping
    at every step, so a plot shows how often clipping acted. Use it instead of (not together with)
    ``train(clip_norm=...)``.
    """

    def __init__(self, threshold: float, by: str = "norm"):
        if by not in ("norm", "value"):
            raise ValueError(f"by must be 'norm' or 'value', got {by!r}")
        self.threshold = _positive("threshold", threshold)
        self.by = by
        self.total_norms: list[float] = []

    def on_after_backward(self, model, step):
        params = [p for p in model.parameters() if p.grad is not None]
        if self.by == "norm":
            self.total_norms.append(clip_grad_norm_(params, self.threshold).item())
        else:
            norms = torch.stack([torch.linalg.vector_norm(p.grad) for p in params])
            self.total_norms.append(torch.linalg.vector_norm(norms).item())
            clip_grad_value_(params, self.threshold)

    def on_train_end(self, model, history):
        history.extra["total_grad_norms"] = list(self.total_norms)


def plot_total_norms(runs, threshold: float | None = None, ax=None,
                     title: str = "Global gradient norm per step"):
    """Global gradient norm per training step (log scale), one line per run.

    ``runs`` maps a name to a list of norms (e.g. :attr:`ClipGradients.total_norms`); the dotted
    line marks the clipping ``threshold``. Non-finite values are left out.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from nncourse.plotting import color

    if ax is None:
        _, ax = plt.subplots()
    for name, norms in runs.items():
        v = np.asarray(norms, dtype=float)
        ax.plot(np.arange(1, len(v) + 1), np.where(np.isfinite(v), v, np.nan), lw=1,
                color=color(name), label=name)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls=":", lw=1, label=f"threshold {threshold:g}")
    ax.set_yscale("log")
    ax.set(xlabel="training step", ylabel="global gradient norm (log scale)", title=title)
    ax.legend()
    return ax
