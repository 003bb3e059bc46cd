r"""Several small MLPs trained at once, as one batched ("stacked") model.

Training K small networks one after the other costs K times the Python overhead of a training
step, and for a 64-unit MLP that overhead is most of the time. Stacking the members' weights --
layer :math:`i` of every member in one tensor of shape ``(K, fan_in, fan_out)`` -- turns K matrix
products into one batched product (``torch.baddbmm``), so K runs cost little more than one.

Each member keeps its own initial weights (copied from a :func:`nncourse.models.make_mlp` model),
its own mini-batch order (the one :func:`nncourse.training.train` draws for its seed) and its own
loss. The loss minimised is the *sum* of the members' losses, whose gradient with respect to
member :math:`k`'s weights is member :math:`k`'s own gradient; an element-wise optimizer over the
stacked tensors (``torch.optim.SGD``, ``Adam``... with the same settings for every member) then
performs each member's own update. ``tests/test_stacked.py`` trains members both ways in float64
and finds them equal to ~1e-10.

What was left out, and why: batch norm and dropout (they would need per-member statistics and
masks; the chapters that stack train plain MLPs), losses other than cross-entropy, callbacks and
early stopping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nncourse._validate import check_int
from nncourse.training import History, _unpack

__all__ = ["StackedMLP", "train_stacked"]


class StackedMLP(nn.Module):
    """K MLPs of the same shape as one module: input ``(K, batch, n_in)``, output
    ``(K, batch, n_out)``.

    ``models`` are ``nn.Sequential`` stacks of ``nn.Linear`` layers and parameter-free
    element-wise activations (what :func:`nncourse.models.make_mlp` builds without batch norm or
    dropout); their weights are copied, so the members start exactly where the models do.
    :meth:`member` gives member ``k`` back as an ordinary ``nn.Sequential``.
    """

    def __init__(self, models: Sequence[nn.Sequential]):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("StackedMLP: models must be a non-empty sequence of nn.Sequential")
        first = models[0]
        kinds = [type(m) for m in first]
        for model in models:
            if [type(m) for m in model] != kinds:
                raise ValueError("StackedMLP: every model must have the same layers in the same "
                                 "order")
            for m in model:
                if not isinstance(m, nn.Linear) and any(True for _ in m.parameters()):
                    raise ValueError(f"StackedMLP: only nn.Linear and parameter-free activations "
                                     f"can be stacked, got {type(m).__name__}")
        self.layout = [m if not isinstance(m, nn.Linear) else None for m in first]
        linear = [[m for m in model if isinstance(m, nn.Linear)] for model in models]
        with torch.no_grad():
            self.weights = nn.ParameterList(
                [nn.Parameter(torch.stack([ls[i].weight.detach().T for ls in linear]).clone())
                 for i in range(len(linear[0]))])
            self.biases = nn.ParameterList(
                [nn.Parameter(torch.stack([ls[i].bias.detach()[None] for ls in linear]).clone())
                 for i in range(len(linear[0]))])

    @property
    def k(self) -> int:
        """The number of members."""
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        for layer in self.layout:
            if layer is None:
                x = torch.baddbmm(self.biases[i], x, self.weights[i])
                i += 1
            else:
                x = layer(x)
        return x

    def member(self, k: int) -> nn.Sequential:
        """Member ``k`` as an ordinary ``nn.Sequential`` (a copy of its current weights)."""
        k = check_int(k, "k", low=0, fn="StackedMLP.member")
        if k >= self.k:
            raise ValueError(f"StackedMLP.member: k must be below {self.k}, got {k}")
        layers, i = [], 0
        for layer in self.layout:
            if layer is None:
                w = self.weights[i][k].detach()
                lin = nn.Linear(w.shape[0], w.shape[1], dtype=w.dtype)
                with torch.no_grad():
                    lin.weight.copy_(w.T)
                    lin.bias.copy_(self.biases[i][k, 0])
                layers.append(lin)
                i += 1
            else:
                layers.append(type(layer)())
        return nn.Sequential(*layers)


def train_stacked(model: StackedMLP, data, seeds: Sequence[int], epochs: int,
                  optimizer: torch.optim.Optimizer, batch_size: int = 64,
                  scheduler: Callable | None = None, scheduler_interval: str = "epoch",
                  record_steps: bool = False) -> list[History]:
    """Train every member of ``model`` on ``data`` (cross-entropy), member ``k`` with the
    mini-batch order :func:`nncourse.training.train` uses for ``seeds[k]``.

    ``optimizer`` holds ``model.parameters()``; ``scheduler(optimizer)`` is stepped each epoch
    or, with ``scheduler_interval="step"``, after each ``optimizer.step()``. Returns one
    :class:`~nncourse.training.History` per member, as ``train`` would; with ``record_steps``
    its ``extra`` holds ``step_loss`` and ``step_lr`` (one per step). A member whose loss
    becomes NaN or infinite is marked ``diverged`` and its history stops there; the others go
    on (members share no arithmetic).
    """
    check_int(epochs, "epochs", fn="train_stacked")
    check_int(batch_size, "batch_size", fn="train_stacked")
    seeds = [int(s) for s in seeds]
    K = model.k
    if len(seeds) != K:
        raise ValueError(f"train_stacked: one seed per member needed ({K}), got {len(seeds)}")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError("train_stacked: scheduler_interval must be 'epoch' or 'step', "
                         f"got {scheduler_interval!r}")
    X, y, X_val, y_val = _unpack(data)
    n = len(X)
    bs = min(batch_size, n)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    sched = scheduler(optimizer) if scheduler is not None else None
    histories = [History() for _ in range(K)]
    steps: list[torch.Tensor] = []
    step_lr: list[float] = []
    alive = torch.ones(K, dtype=torch.bool)
    for epoch in range(1, epochs + 1):
        order = torch.stack([torch.randperm(n, generator=g) for g in generators])
        total = torch.zeros(K, dtype=torch.float64)
        correct = torch.zeros(K, dtype=torch.int64)
        for start in range(0, n, bs):
            idx = order[:, start:start + bs]
            xb, yb = X[idx], y[idx]
            out = model(xb)
            losses = F.cross_entropy(out.reshape(-1, out.shape[-1]), yb.reshape(-1),
                                     reduction="none").reshape(yb.shape).mean(1)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            if record_steps:
                step_lr.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if sched is not None and scheduler_interval == "step":
                sched.step()
            with torch.no_grad():
                total += losses.detach().double() * idx.shape[1]
                correct += (out.argmax(-1) == yb).sum(1)
            if record_steps:
                steps.append(losses.detach().double())
        if X_val is not None:
            with torch.no_grad():
                out = model(X_val.expand(K, *X_val.shape))
                val_loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y_val.repeat(K),
                                           reduction="none").reshape(K, -1).mean(1)
                val_acc = (out.argmax(-1) == y_val).double().mean(1)
        lr = optimizer.param_groups[0]["lr"]
        for k, h in enumerate(histories):
            if not alive[k]:
                continue
            h.train_loss.append(total[k].item() / n)
            h.train_acc.append(correct[k].item() / n)
            h.lr.append(lr)
            if X_val is not None:
                h.val_loss.append(val_loss[k].item())
                h.val_acc.append(val_acc[k].item())
            h.epochs_run = epoch
            if not math.isfinite(h.train_loss[-1]):
                h.diverged = True
                alive[k] = False
        if sched is not None and scheduler_interval == "epoch":
            sched.step()
        if not alive.any():
            break
    if record_steps:
        per_step = torch.stack(steps).T if steps else torch.empty(K, 0)
        per_epoch = math.ceil(n / bs)
        for k, h in enumerate(histories):
            last = h.epochs_run * per_epoch  # as train(): a diverged run stops after that epoch
            h.extra["step_loss"] = per_step[k, :last].tolist()
            h.extra["step_lr"] = step_lr[:last]
    model.eval()
    return histories
