"""One small training loop for the whole course.

``history = train(model, data, epochs=50, lr=0.1)`` trains with mini-batch SGD (or any
``torch.optim`` optimizer) and returns a :class:`History` of train/validation loss and accuracy per
epoch. Hooks let chapters add gradient clipping, a learning-rate scheduler, early stopping and
per-step diagnostics without writing their own loop:

* ``clip_norm=`` / ``clip_value=`` call ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``
  after each backward pass;
* ``scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 10)`` steps once per epoch
  (``ReduceLROnPlateau`` gets the validation loss; ``scheduler_interval="step"`` for 1cycle);
* ``callbacks=[...]``: objects with any of ``on_train_begin``, ``on_after_backward`` (before
  clipping), ``on_before_step`` (after clipping), ``on_step_end``, ``on_epoch_end`` (return
  ``True`` to stop), ``on_train_end``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nncourse._validate import check_int
from nncourse.env import progress as progress_bar

__all__ = ["History", "Callback", "train", "evaluate", "eval_mode", "predict", "accuracy",
           "mean_sd", "make_optimizer", "loss_function"]

OPTIMIZERS = {
    "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad, "nadam": torch.optim.NAdam,
    "adadelta": torch.optim.Adadelta,
}


@dataclass
class History:
    """What happened during training, one entry per epoch (lists of floats)."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    #: Number of epochs actually run (smaller than requested when a callback stopped training).
    epochs_run: int = 0
    #: True when the loss became NaN or infinite and training stopped.
    diverged: bool = False
    #: Anything callbacks want to record (e.g. per-step gradient norms).
    extra: dict = field(default_factory=dict)

    def best_epoch(self, metric: str = "val_loss") -> int:
        """1-based epoch with the best value of ``metric`` (lowest loss, highest accuracy)."""
        values = getattr(self, metric)
        if not values:
            raise ValueError(f"history has no {metric} values")
        pick = min if metric.endswith("loss") else max
        return 1 + values.index(pick(values))

    def summary(self) -> str:
        """One line: final train/validation loss and accuracy, rounded."""
        if not self.train_loss:
            return "no epochs run"
        parts = [f"epochs {self.epochs_run}", f"train loss {self.train_loss[-1]:.3f}",
                 f"train acc {self.train_acc[-1]:.1%}"]
        if self.val_loss:
            parts += [f"val loss {self.val_loss[-1]:.3f}", f"val acc {self.val_acc[-1]:.1%}"]
        if self.diverged:
            parts.append("DIVERGED (loss is NaN/inf)")
        return ", ".join(parts)


class Callback:
    """Base class for training-loop hooks; override what you need."""

    def on_train_begin(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                       history: History) -> None: ...

    def on_after_backward(self, model: nn.Module, step: int) -> None:
        """Gradients are computed, not yet clipped."""

    def on_before_step(self, model: nn.Module, step: int) -> None:
        """Gradients are final (after clipping); the optimizer steps next."""

    def on_step_end(self, model: nn.Module, step: int, loss: float) -> None: ...

    def on_epoch_end(self, model: nn.Module, epoch: int, history: History) -> bool | None: ...

    def on_train_end(self, model: nn.Module, history: History) -> None: ...


def loss_function(model_output_dim: int, loss: str | Callable = "auto") -> Callable:
    """Pick the loss: one output -> ``BCEWithLogitsLoss``, several -> ``CrossEntropyLoss``.

    Both take raw logits: torch fuses the sigmoid/softmax into the loss for numerical stability.
    ``loss`` may also be ``"mse"`` or any callable ``loss(output, target)``.
    """
    if callable(loss):
        return loss
    if loss == "auto":
        loss = "bce" if model_output_dim == 1 else "ce"
    if loss == "bce":
        bce = nn.BCEWithLogitsLoss()
        return lambda out, y: bce(out.reshape(-1), y.float().reshape(-1))
    if loss == "ce":
        return nn.CrossEntropyLoss()
    if loss == "mse":
        mse = nn.MSELoss()
        return lambda out, y: mse(out.reshape(y.shape), y.float())
    raise ValueError(f"loss must be 'auto', 'bce', 'ce', 'mse' or a callable, got {loss!r}")


def _predicted_class(out: torch.Tensor) -> torch.Tensor:
    if out.ndim == 1 or out.shape[1] == 1:
        return (out.reshape(-1) > 0).long()
    return out.argmax(1)


def mean_sd(values, axis: int = 0):
    """Mean and sample standard deviation (``ddof=1``) of runs over ``axis``: one run per seed.

    ``values`` is anything NumPy turns into an array (a generator is read once): a number per run
    gives scalars, a row per run gives one mean and one deviation per column. A single run has
    deviation 0 -- no spread can be measured from it.
    """
    v = np.asarray(list(values), dtype=float)
    mean = v.mean(axis)
    sd = v.std(axis, ddof=1) if v.shape[axis] > 1 else np.zeros_like(mean)
    return mean, sd


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode inside the block and restore its train/eval mode afterwards::

        with eval_mode(model):
            logits = model(X)   # dropout off, batch norm uses its running statistics
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """Predicted class indices, in eval mode (the model's mode is restored)."""
    with eval_mode(model):
        return _predicted_class(model(X))


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correctly classified examples (eval mode)."""
    return (predict(model, X) == y.reshape(-1)).float().mean().item()


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
             loss: str | Callable = "auto") -> tuple[float, float]:
    """``(loss, accuracy)`` of ``model`` on ``X, y`` in eval mode."""
    with eval_mode(model):
        out = model(X)
    fn = loss_function(out.shape[1] if out.ndim > 1 else 1, loss)
    acc = (_predicted_class(out) == y.reshape(-1)).float().mean().item()
    return fn(out, y).item(), acc


def make_optimizer(name: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimizer by name (sgd, adam, adamw, rmsprop, adagrad, nadam, adadelta)."""
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    return OPTIMIZERS[name.lower()](params, lr=lr, **kwargs)


def train(model: nn.Module, data, epochs: int = 20, lr: float = 0.1,
          optimizer: str | torch.optim.Optimizer = "sgd", batch_size: int | None = 64,
          loss: str | Callable = "auto", clip_norm: float | None = None,
          clip_value: float | None = None, scheduler: Callable | None = None,
          scheduler_interval: str = "epoch", callbacks: Sequence[Callback] = (),
          seed: int = 0, progress: bool | None = None, evaluate_val: bool = True,
          **optimizer_kwargs) -> History:
    """Train ``model`` on ``data`` and return its :class:`History`.

    Parameters
    ----------
    model : nn.Module
        Any module mapping ``X`` to logits.
    data : Dataset or tuple
        A :class:`nncourse.data.Dataset`, or ``(X_train, y_train)`` /
        ``(X_train, y_train, X_val, y_val)``.
    epochs : int
        Passes over the training data.
    lr : float
        Learning rate (ignored when ``optimizer`` is an optimizer instance).
    optimizer : str or torch.optim.Optimizer
        A name for :func:`make_optimizer` or a ready optimizer over ``model``'s parameters.
    batch_size : int or None
        Mini-batch size; ``None`` for full-batch gradient descent.
    loss : str or callable
        See :func:`loss_function`.
    clip_norm, clip_value : float, optional
        Clip gradients by global norm / by value after each backward pass (torch's own functions).
    scheduler : callable, optional
        ``scheduler(optimizer) -> lr_scheduler``; stepped each epoch (or each step with
        ``scheduler_interval="step"``). ``ReduceLROnPlateau`` is stepped with the validation loss.
    callbacks : sequence of Callback
        Hooks, called in order.
    seed : int
        Seeds the mini-batch shuffling (independent of the global random state).
    progress : bool, optional
        Show a progress bar; default on except when ``NNCOURSE_PROGRESS=0`` (tests).
    evaluate_val : bool
        Compute validation loss/accuracy each epoch.
    **optimizer_kwargs
        Passed to the optimizer (e.g. ``momentum=0.9``, ``weight_decay=1e-4``).
    """
    check_int(epochs, "epochs", fn="train")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError("scheduler_interval must be 'epoch' or 'step', "
                         f"got {scheduler_interval!r}")
    for name, v in (("clip_norm", clip_norm), ("clip_value", clip_value)):
        if v is not None and not (isinstance(v, (int, float)) and v > 0):
            raise ValueError(f"{name} must be a positive number or None, got {v!r}")
    X, y, X_val, y_val = _unpack(data)
    opt = (optimizer if isinstance(optimizer, torch.optim.Optimizer)
           else make_optimizer(optimizer, model.parameters(), lr, **optimizer_kwargs))
    sched = scheduler(opt) if scheduler is not None else None
    plateau = isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    with torch.no_grad():
        out_dim = model(X[:2]).reshape(2, -1).shape[1] if len(X) > 1 else 1
    loss_fn = loss_function(out_dim, loss)
    generator = torch.Generator().manual_seed(seed)
    n = len(X)
    bs = n if batch_size is None else min(batch_size, n)

    history = History()
    for cb in callbacks:
        cb.on_train_begin(model, opt, history)
    bar = progress_bar(total=epochs, desc="training", unit="epoch", enabled=progress)
    step = 0
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator)
            total, correct = 0.0, 0
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                xb, yb = X[idx], y[idx]
                out = model(xb)
                batch_loss = loss_fn(out, yb)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                for cb in callbacks:
                    cb.on_after_backward(model, step)
                if clip_value is not None:
                    nn.utils.clip_grad_value_(model.parameters(), clip_value)
                if clip_norm is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                for cb in callbacks:
                    cb.on_before_step(model, step)
                opt.step()
                if sched is not None and scheduler_interval == "step" and not plateau:
                    sched.step()
                value = batch_loss.item()
                total += value * len(idx)
                with torch.no_grad():
                    correct += (_predicted_class(out) == yb.reshape(-1)).sum().item()
                for cb in callbacks:
                    cb.on_step_end(model, step, value)
                step += 1
            history.train_loss.append(total / n)
            history.train_acc.append(correct / n)
            history.lr.append(opt.param_groups[0]["lr"])
            if X_val is not None and evaluate_val:
                vl, va = evaluate(model, X_val, y_val, loss_fn)
                history.val_loss.append(vl)
                history.val_acc.append(va)
            history.epochs_run = epoch
            if sched is not None and (plateau or scheduler_interval == "epoch"):
                if plateau:
                    sched.step(history.val_loss[-1] if history.val_loss else history.train_loss[-1])
                else:
                    sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3g}", refresh=False)
            if not math.isfinite(history.train_loss[-1]):
                history.diverged = True
                break
            stop = False
            for cb in callbacks:
                stop = bool(cb.on_epoch_end(model, epoch, history)) or stop
            if stop:
                break
    finally:
        bar.close()
    for cb in callbacks:
        cb.on_train_end(model, history)
    model.eval()
    return history


def _unpack(data):
    if hasattr(data, "X_train"):
        return data.X_train, data.y_train, data.X_val, data.y_val
    if isinstance(data, (tuple, list)) and len(data) in (2, 4):
        if len(data) == 2:
            return data[0], data[1], None, None
        return tuple(data)
    raise TypeError("data must be an nncourse Dataset, (X, y) or (X, y, X_val, y_val); "
                    f"got {type(data).__name__}")
