"""Regularization from scratch: weight penalties, dropout, max-norm and early stopping.

Everything a chapter-08 experiment needs, written so each piece can be read in a few lines and
checked against the torch function it mirrors:

* :func:`l1_penalty`, :func:`l2_penalty` and their gradients :func:`l1_grad`, :func:`l2_grad`;
  :class:`WeightPenalty` adds them to training (the L1 variant can take a *proximal* step, which
  is what produces exact zeros);
* :func:`dropout` / :class:`Dropout` -- inverted dropout, like ``nn.functional.dropout``;
  :func:`mc_dropout_predict` keeps it on at inference (Monte Carlo dropout);
* :func:`max_norm_` -- the max-norm projection, like ``torch.renorm``; :class:`MaxNorm` applies
  it after every optimizer step;
* :func:`early_stopping_epochs` and :class:`EarlyStopping` -- patience, ``min_delta`` and
  restoring the best weights.

Convention: the L2 penalty is :math:`\\frac{\\lambda}{2}\\lVert w\\rVert^2`, so its gradient is
:math:`\\lambda w` and SGD with it is exactly SGD with ``weight_decay=lambda``.
Penalties and constraints apply to the weights of ``nn.Linear`` layers, not to biases.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from nncourse._validate import check_int, check_number
from nncourse.models import linear_layers
from nncourse.training import Callback, History, eval_mode

__all__ = ["l1_penalty", "l2_penalty", "l1_grad", "l2_grad", "soft_threshold_", "WeightPenalty",
           "dropout", "Dropout", "mc_dropout_predict", "expected_calibration_error", "max_norm_",
           "MaxNorm", "early_stopping_epochs", "EarlyStopping", "weight_stats"]


def _lam(lam) -> float:
    return check_number(lam, "lam", 0)


def _weights(weights) -> list[torch.Tensor]:
    if isinstance(weights, nn.Module):
        return [layer.weight for layer in linear_layers(weights)]
    if isinstance(weights, torch.Tensor):
        return [weights]
    return list(weights)


# --- L1 and L2 penalties ------------------------------------------------------------------------

def l1_penalty(weights: nn.Module | torch.Tensor | Iterable[torch.Tensor],
               lam: float) -> torch.Tensor:
    """:math:`\\lambda \\sum_i |w_i|` over a model's Linear weights (or given tensors)."""
    lam = _lam(lam)
    return lam * sum(w.abs().sum() for w in _weights(weights))


def l2_penalty(weights: nn.Module | torch.Tensor | Iterable[torch.Tensor],
               lam: float) -> torch.Tensor:
    """:math:`\\frac{\\lambda}{2} \\sum_i w_i^2` over a model's Linear weights (or tensors)."""
    lam = _lam(lam)
    return 0.5 * lam * sum((w * w).sum() for w in _weights(weights))


def l1_grad(w: torch.Tensor, lam: float) -> torch.Tensor:
    """Gradient (subgradient at 0) of the L1 penalty: :math:`\\lambda\\,\\mathrm{sign}(w)`."""
    return _lam(lam) * torch.sign(w)


def l2_grad(w: torch.Tensor, lam: float) -> torch.Tensor:
    """Gradient of the L2 penalty: :math:`\\lambda w` (what ``weight_decay`` adds)."""
    return _lam(lam) * w


@torch.no_grad()
def soft_threshold_(w: torch.Tensor, threshold: float) -> torch.Tensor:
    """Proximal step of the L1 penalty, in place: shrink every entry toward 0 by ``threshold``.

    :math:`w \\leftarrow \\mathrm{sign}(w)\\max(|w| - t, 0)`. Entries smaller than ``t`` become
    *exactly* 0 -- a plain (sub)gradient step only makes them oscillate around 0.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be non-negative, got {threshold!r}")
    return w.copy_(torch.sign(w) * (w.abs() - threshold).clamp_min(0.0))


class WeightPenalty(Callback):
    """Add an L1 or L2 penalty on the Linear weights to training.

    The penalty's gradient is added to each weight's gradient just before the optimizer step
    (``on_before_step``, i.e. after any gradient clipping, which is where SGD's
    ``weight_decay`` adds it too), so the loss the history reports is the data loss alone
    (comparable with the validation loss).
    With ``proximal=True`` (L1 only) the gradient step is followed instead by
    :func:`soft_threshold_` with threshold ``lr * lam`` -- proximal gradient descent (ISTA),
    which sets small weights exactly to zero. Meant for plain SGD: under momentum :math:`\beta`
    the subgradient ``lam * sign(w)`` passes through the velocity and pulls up to
    :math:`1/(1-\beta)` times harder (10x at 0.9), while the soft threshold ``lr * lam`` is
    applied once per step -- so at equal ``lam`` the two are not equally strong.
    """

    def __init__(self, kind: str = "l2", lam: float = 1e-3, proximal: bool = False):
        if kind not in ("l1", "l2"):
            raise ValueError(f"kind must be 'l1' or 'l2', got {kind!r}")
        if proximal and kind != "l1":
            raise ValueError("proximal=True is the L1 proximal step; use it with kind='l1'")
        self.kind, self.lam, self.proximal = kind, _lam(lam), proximal
        self._optimizer = None

    def on_train_begin(self, model, optimizer, history):
        self._optimizer = optimizer

    @torch.no_grad()
    def on_before_step(self, model, step):
        if self.proximal or self.lam == 0:
            return
        grad = l1_grad if self.kind == "l1" else l2_grad
        for layer in linear_layers(model):
            if layer.weight.grad is not None:
                layer.weight.grad.add_(grad(layer.weight, self.lam))

    def on_step_end(self, model, step, loss):
        if self.proximal and self.lam > 0:
            lr = self._optimizer.param_groups[0]["lr"]
            for layer in linear_layers(model):
                soft_threshold_(layer.weight, lr * self.lam)


# --- Dropout ------------------------------------------------------------------------------------

def _check_p(p) -> float:
    return check_number(p, "dropout p", 0, 1, high_open=True)


def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout, like ``torch.nn.functional.dropout``.

    In training, each entry is zeroed with probability ``p`` and the survivors are scaled by
    :math:`1/(1-p)`, so :math:`\\mathbb{E}[\\mathrm{dropout}(x)] = x`; in evaluation it is the
    identity (nothing to rescale at test time -- that is the point of *inverted* dropout).
    """
    p = _check_p(p)
    if not training or p == 0:
        return x
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) >= p
    return x * keep / (1 - p)


class Dropout(nn.Module):
    """``nn.Dropout`` from scratch: :func:`dropout` in training mode, identity in eval mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@torch.no_grad()
def mc_dropout_predict(model: nn.Module, X: torch.Tensor, n_samples: int = 50,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo dropout: average ``n_samples`` predictions with dropout left on.

    Every other layer (e.g. batch norm) stays in eval mode. Returns the mean and the standard
    deviation over samples of the predicted probabilities: of class 1 for a one-logit model
    (shape ``(n,)``), of every class for a softmax model (shape ``(n, k)``). The global random
    state is left untouched.
    """
    check_int(n_samples, "n_samples", fn="mc_dropout_predict")
    with eval_mode(model), torch.random.fork_rng(devices=[]):
        for m in model.modules():
            if isinstance(m, (nn.Dropout, Dropout)):
                m.train()
        torch.manual_seed(seed)
        outs = torch.stack([_probabilities(model(X)) for _ in range(n_samples)])
    return outs.mean(0), outs.std(0) if n_samples > 1 else torch.zeros_like(outs[0])


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    if logits.ndim == 1 or logits.shape[1] == 1:
        return torch.sigmoid(logits.reshape(-1))
    return torch.softmax(logits, 1)


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 10) -> float:
    """Expected calibration error: how far confidence is from accuracy, averaged over bins.

    ``probs`` are class-1 probabilities (shape ``(n,)``) or class probabilities (``(n, k)``).
    Predictions are binned by confidence; ECE is :math:`\\sum_b \\frac{n_b}{n}
    |\\mathrm{acc}_b - \\mathrm{conf}_b|`. 0 means "when it says 80 %, it is right 80 % of the
    time".
    """
    probs = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(y).reshape(-1)
    if probs.ndim == 1:
        pred = (probs > 0.5).long()
        conf = torch.where(pred == 1, probs, 1 - probs)
    else:
        conf, pred = probs.max(1)
    correct = (pred == y).double()
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.double().mean().item() * abs(correct[mask].mean().item()
                                                     - conf[mask].mean().item())
    return ece


# --- Max-norm -----------------------------------------------------------------------------------

@torch.no_grad()
def max_norm_(weight: torch.Tensor, max_norm: float, dim: int = 0,
              eps: float = 1e-7) -> torch.Tensor:
    """Project in place so every slice ``weight.select(dim, i)`` has L2 norm at most ``max_norm``.

    For an ``nn.Linear`` weight of shape ``(out, in)`` and ``dim=0`` each row -- the incoming
    weights of one unit -- is rescaled by :math:`c / \\lVert w \\rVert` when its norm exceeds
    :math:`c`, and left alone otherwise. Same result as
    ``torch.renorm(weight, 2, dim, max_norm)`` (including its ``1e-7``).
    """
    check_number(max_norm, "max_norm", 0, low_open=True, fn="max_norm_")
    other = [d for d in range(weight.ndim) if d != dim % weight.ndim]
    norms = weight.norm(dim=other, keepdim=True)
    scale = torch.where(norms > max_norm, max_norm / (norms + eps), torch.ones_like(norms))
    return weight.mul_(scale)


class MaxNorm(Callback):
    """Apply :func:`max_norm_` to every Linear weight after each optimizer step."""

    def __init__(self, max_norm: float = 3.0):
        max_norm_(torch.zeros(1, 1), max_norm)  # validates the value
        self.max_norm = float(max_norm)

    def on_train_begin(self, model, optimizer, history):
        self.on_step_end(model, -1, 0.0)  # start inside the constraint too

    def on_step_end(self, model, step, loss):
        for layer in linear_layers(model):
            max_norm_(layer.weight, self.max_norm)


# --- Early stopping ----------------------------------------------------------------------------

class _Patience:
    """The early-stopping rule, shared by the function and the callback."""

    def __init__(self, patience: int, min_delta: float, mode: str):
        check_int(patience, "patience", fn="early stopping")
        check_number(min_delta, "min_delta", 0, fn="early stopping")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience, self.min_delta, self.sign = patience, float(min_delta), \
            (1.0 if mode == "min" else -1.0)
        self.best_value = math.inf
        self.best_epoch = 0
        self.wait = 0

    def update(self, epoch: int, value: float) -> tuple[bool, bool]:
        """Record ``value`` at ``epoch``; return ``(improved, stop)``."""
        v = self.sign * value
        improved = v < self.best_value - self.min_delta
        if improved:
            self.best_value, self.best_epoch, self.wait = v, epoch, 0
        else:
            self.wait += 1
        return improved, self.wait >= self.patience


def early_stopping_epochs(values: Sequence[float], patience: int = 10, min_delta: float = 0.0,
                          mode: str = "min") -> tuple[int, int]:
    """When early stopping would stop on a sequence of per-epoch values, and its best epoch.

    An epoch *improves* when its value beats the best so far by more than ``min_delta`` (lower
    for ``mode="min"``, higher for ``"max"``). Training stops at the epoch that makes
    ``patience`` epochs in a row without improvement. Returns ``(stop_epoch, best_epoch)``, both
    1-based; ``stop_epoch`` is ``len(values)`` when the rule never fires, and ``best_epoch`` is
    the last improving epoch (the weights early stopping restores).
    """
    if len(values) == 0:
        raise ValueError("values is empty: need at least one epoch")
    rule = _Patience(patience, min_delta, mode)
    for epoch, v in enumerate(values, start=1):
        if rule.update(epoch, float(v))[1]:
            return epoch, rule.best_epoch
    return len(values), rule.best_epoch


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    After training, ``best_epoch`` is the last improving epoch, ``stopped_epoch`` the epoch
    training stopped at (None if it ran all epochs), and with ``restore_best=True`` the model
    holds the weights of ``best_epoch``. Both epochs are also put in ``history.extra``.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0, monitor: str = "val_loss",
                 restore_best: bool = True):
        if monitor not in ("val_loss", "val_acc", "train_loss", "train_acc"):
            raise ValueError("monitor must be one of val_loss, val_acc, train_loss, train_acc; "
                             f"got {monitor!r}")
        mode = "min" if monitor.endswith("loss") else "max"
        _Patience(patience, min_delta, mode)  # validates the arguments
        self.patience, self.min_delta, self.monitor, self.mode = patience, min_delta, monitor, mode
        self.restore_best = restore_best
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._rule: _Patience | None = None
        self._best_state = None

    def on_train_begin(self, model, optimizer, history):
        self._rule = _Patience(self.patience, self.min_delta, self.mode)
        self.best_epoch, self.stopped_epoch, self._best_state = None, None, None

    def on_epoch_end(self, model, epoch, history: History):
        values = getattr(history, self.monitor)
        if not values:
            raise ValueError(f"EarlyStopping monitors {self.monitor} but the history has none "
                             "(no validation data?)")
        improved, stop = self._rule.update(epoch, values[-1])
        if improved:
            self.best_epoch = epoch
            self._best_state = copy.deepcopy(model.state_dict())
        if stop:
            self.stopped_epoch = epoch
        return stop

    def on_train_end(self, model, history):
        if self.restore_best and self._best_state is not None:
            model.load_state_dict(self._best_state)
        history.extra["best_epoch"] = self.best_epoch
        history.extra["stopped_epoch"] = self.stopped_epoch


# --- Looking at weights ----------------------------------------------------------------------

@torch.no_grad()
def weight_stats(model: nn.Module, tol: float = 1e-3) -> dict[str, float]:
    """Summary of a model's Linear weights: how many, exact zeros, near-zeros, norms.

    Keys: ``n``, ``zeros`` (exactly 0), ``small`` (``|w| < tol``), ``l1``, ``l2`` (whole-model
    norms) and ``max_row_norm`` (largest incoming-weight norm of any unit).
    """
    ws = [layer.weight for layer in linear_layers(model)]
    flat = torch.cat([w.reshape(-1) for w in ws])
    return {"n": flat.numel(), "zeros": int((flat == 0).sum()),
            "small": int((flat.abs() < tol).sum()), "l1": flat.abs().sum().item(),
            "l2": flat.norm().item(), "max_row_norm": max(w.norm(dim=1).max().item() for w in ws)}
