"""Look inside a network: per-layer activation statistics and gradient norms.

Everything here returns plain data (lists of dicts, lists of floats, NumPy arrays) recorded with
forward/backward hooks; :mod:`nncourse.plotting` draws it.

* :func:`layer_outputs` -- each activation layer's output on a batch;
* :func:`activation_stats` -- mean, std, saturated and dead fractions after each activation;
* :func:`gradient_norms` -- the norm of each Linear layer's weight gradient for one batch;
* :class:`GradientMonitor` -- a training callback recording per-layer gradient norms and the
  update-to-data ratio at every step (the "~1e-3" rule of thumb).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from nncourse._validate import check_int
from nncourse.activations import MODULE_TYPES
from nncourse.models import linear_layers
from nncourse.training import Callback, eval_mode, loss_function

__all__ = ["record_activations", "layer_outputs", "activation_stats", "gradient_norms",
           "weight_grad_norms", "weight_changes", "GradientMonitor", "has_nonfinite"]

_ACTIVATION_TYPES = MODULE_TYPES
# Output ranges at which an activation counts as saturated (gradient ~ 0).
_SATURATION = {nn.Sigmoid: (0.0, 1.0), nn.Tanh: (-1.0, 1.0)}


def _activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _ACTIVATION_TYPES)]


@contextmanager
def record_activations(model: nn.Module):
    """Record the output of every activation module during forward passes in the block.

    Yields a dict ``{module name: tensor}`` (detached) filled as the model runs.
    """
    records: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, name=name: records.__setitem__(
        name, out.detach())) for name, m in _activation_modules(model)]
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def layer_outputs(model: nn.Module, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each activation layer's output on ``X``, by module name, input to output (eval mode).

    The model's train/eval mode is restored afterwards.
    """
    with eval_mode(model), record_activations(model) as records:
        model(X)
    return records


@torch.no_grad()
def activation_stats(model: nn.Module, X: torch.Tensor, eps: float = 0.01,
                     keep_values: bool = False) -> list[dict]:
    """Statistics of each activation layer's output on inputs ``X`` (model in eval mode).

    Returns one dict per activation layer, input to output, with keys ``layer``, ``kind``,
    ``mean``, ``std``, ``saturated`` (fraction of outputs within ``eps`` of a sigmoid/tanh bound),
    ``dead`` (fraction of units that output exactly 0 for every example -- dead ReLUs), and
    ``values`` (a flat NumPy array) when ``keep_values`` is True.
    """
    records = layer_outputs(model, X)
    modules = dict(model.named_modules())
    stats = []
    for name, out in records.items():
        kind = type(modules[name])
        row = {"layer": name, "kind": kind.__name__.lower(), "mean": out.mean().item(),
               "std": out.std().item() if out.numel() > 1 else 0.0}
        lo_hi = _SATURATION.get(kind)
        row["saturated"] = (((out - lo_hi[0]).abs() < eps) | ((out - lo_hi[1]).abs() < eps)
                            ).float().mean().item() if lo_hi else 0.0
        flat = out.reshape(out.shape[0], -1)
        row["dead"] = (flat == 0).all(0).float().mean().item()
        if keep_values:
            row["values"] = out.reshape(-1).numpy().copy()
        stats.append(row)
    return stats


def gradient_norms(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                   loss: str = "auto") -> list[float]:
    """L2 norm of each Linear layer's weight gradient after one backward pass on ``(X, y)``.

    The model's existing gradients are left as they were. Layers are ordered input to output.
    """
    saved = [p.grad for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    try:
        out = model(X)
        fn = loss_function(out.shape[1] if out.ndim > 1 else 1, loss)
        fn(out, y).backward()
        return weight_grad_norms(model)
    finally:
        for p, g in zip(model.parameters(), saved):
            p.grad = g


def weight_grad_norms(model: nn.Module) -> list[float]:
    """L2 norm of each ``nn.Linear`` weight's ``.grad``, input to output (0 for a layer without
    one).

    .. math:: \\lVert \\partial L / \\partial W_l \\rVert_F = \\sqrt{\\textstyle\\sum_{ij}
              (\\partial L / \\partial W_{l,ij})^2}

    Biases are left out: the weights are what vanishes. Call it after ``backward()``.
    """
    return [layer.weight.grad.norm().item() if layer.weight.grad is not None else 0.0
            for layer in linear_layers(model)]


@torch.no_grad()
def weight_changes(before: Sequence[torch.Tensor], model: nn.Module,
                   eps: float = 0.0) -> list[float]:
    """``||W_now - W_before|| / (||W_before|| + eps)`` for each ``nn.Linear`` of ``model``.

    ``before`` holds the layers' weights at an earlier moment (a step or a whole training run
    ago), input to output.
    """
    now = [layer.weight for layer in linear_layers(model)]
    if len(before) != len(now):
        raise ValueError(f"before has {len(before)} Linear layers, the model has {len(now)}")
    return [((n - b).norm() / (b.norm() + eps)).item() for b, n in zip(before, now)]


def has_nonfinite(model: nn.Module) -> bool:
    """True if any parameter or gradient holds NaN or inf."""
    for p in model.parameters():
        if not torch.isfinite(p).all() or (p.grad is not None and not torch.isfinite(p.grad).all()):
            return True
    return False


class GradientMonitor(Callback):
    """Record, every ``every`` steps, each Linear layer's gradient norm and update-to-data ratio.

    The update-to-data ratio is ``||lr * grad|| / ||weight||`` for plain SGD, measured here as
    ``||w_after - w_before|| / ||w_before||`` so it is right for any optimizer. Around ``1e-3``
    is healthy; much smaller means the layer barely learns, much larger means it thrashes.

    After training, ``grad_norms`` and ``update_ratios`` are arrays of shape
    ``(records, layers)`` and ``steps`` lists the recorded step numbers.
    """

    def __init__(self, every: int = 1):
        check_int(every, "every", fn="GradientMonitor")
        self.every = every
        self.steps: list[int] = []
        self._grads: list[list[float]] = []
        self._ratios: list[list[float]] = []
        self._before: list[torch.Tensor] | None = None

    def on_after_backward(self, model, step):
        if step % self.every:
            return
        self.steps.append(step)
        self._grads.append(weight_grad_norms(model))
        self._before = [lay.weight.detach().clone() for lay in linear_layers(model)]

    def on_step_end(self, model, step, loss):
        if self._before is None:
            return
        self._ratios.append(weight_changes(self._before, model, eps=1e-12))
        self._before = None

    def on_train_end(self, model, history):
        history.extra["grad_norms"] = self.grad_norms
        history.extra["update_ratios"] = self.update_ratios

    @property
    def grad_norms(self) -> np.ndarray:
        return np.array(self._grads)

    @property
    def update_ratios(self) -> np.ndarray:
        return np.array(self._ratios)
