"""Chapter 06's experiments: optimizers, from gradient descent on a bowl to Adam on digits.

Every run uses the from-scratch optimizers of :mod:`nncourse.optimizers` (tested equal to
``torch.optim``) on the surfaces of :mod:`nncourse.surfaces` or on digits.

* :func:`quadratic_runs` / :func:`rates` / :func:`rate_vs_momentum` -- gradient descent and
  momentum on a quadratic: converge or diverge, and the measured rate vs the predicted one;
* :func:`constant_gradient_steps` -- step sizes of SGD, AdaGrad, RMSProp and Adam when the
  gradient never changes (AdaGrad's :math:`1/\\sqrt t`);
* :func:`adam_bias_steps` -- Adam's steps with and without bias correction;
* :func:`decay_per_coordinate` -- Adam's L2 term vs AdamW's decoupled decay, per coordinate;
* :func:`decay_grid` / :func:`decay_edges` / :func:`plot_decay_grid` -- an lr x weight-decay grid
  for Adam + L2 and AdamW (every run at once, as one stacked model with :class:`GridAdam`);
* :func:`reddi` -- AMSGrad on Reddi et al.'s counterexample;
* :func:`surface_runs` / :func:`plot_trajectories` -- every optimizer on the test surfaces;
* :func:`digits_runs` / :func:`digits_table` -- the same network on digits, over seeds;
* :func:`mislabelled_baseline` -- a "plain SGD" baseline that silently uses momentum;
* the widget :func:`explore_optimizer`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from nncourse import optimizers as O
from nncourse import surfaces as S
from nncourse._validate import check_choice, check_int, check_number
from nncourse.data import load_digits
from nncourse.env import progress
from nncourse.models import make_mlp
from nncourse.plotting import color
from nncourse.stacked import StackedMLP, train_stacked
from nncourse.training import mean_sd, train
from nncourse.widgets import interactive_figure, set_limits

__all__ = ["quadratic_runs", "momentum_conventions", "measured_rate", "optimal", "rates",
           "predicted_rate", "rate_vs_momentum", "plot_rates",
           "constant_gradient_steps", "adam_bias_steps", "decay_per_coordinate", "GridAdam",
           "DECAY_GRID", "decay_grid", "tolerated_decay", "decay_edges", "decay_table",
           "plot_decay_grid",
           "reddi",
           "NAMES", "make", "SURFACE_LR", "surface_runs", "steps_table", "plot_trajectories",
           "DIGITS_SETTINGS", "digits_runs", "digits_table", "mislabelled_baseline",
           "explore_optimizer"]

#: The optimizers of this chapter, in the order they are introduced.
NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "nadam")


def make(name: str, lr: float, beta: float | None = None):
    """``params -> optimizer`` for one of :data:`NAMES` at learning rate ``lr``.

    ``beta`` is the optimizer's memory: the momentum of ``momentum``/``nesterov`` (default
    0.9), RMSProp's ``alpha`` (0.99) and Adam's/NAdam's ``beta1`` (0.9); SGD and AdaGrad have
    none and ignore it.
    """
    name = check_choice(name, "optimizer", NAMES, fn="make")
    lr = check_number(lr, "lr", 0, low_open=True, fn="make")
    if beta is not None:
        beta = check_number(beta, "beta", 0, 1, high_open=True, fn="make")
    b = {"momentum": 0.9, "nesterov": 0.9, "rmsprop": 0.99}.get(name, 0.9) if beta is None else beta
    return {
        "sgd": lambda p: O.SGD(p, lr=lr),
        "momentum": lambda p: O.SGD(p, lr=lr, momentum=b),
        "nesterov": lambda p: O.SGD(p, lr=lr, momentum=b, nesterov=b > 0),
        "adagrad": lambda p: O.Adagrad(p, lr=lr),
        "rmsprop": lambda p: O.RMSprop(p, lr=lr, alpha=b),
        "adam": lambda p: O.Adam(p, lr=lr, betas=(b, 0.999)),
        "nadam": lambda p: O.NAdam(p, lr=lr, betas=(b, 0.999)),
    }[name]


# --- 1. gradient descent and momentum on a quadratic ----------------------------------------

def quadratic_runs(settings: Sequence[tuple[float, float]] = ((0.4, 0.0), (0.6, 0.0),
                                                             (0.6, 0.5)),
                   steps: int = 20) -> dict[tuple[float, float], np.ndarray]:
    r"""Paths of SGD (``momentum`` 0) or heavy-ball momentum on d2l's
    :math:`f = 0.1 x_1^2 + 2 x_2^2` from (-5, -2): ``{(lr, momentum): path}``."""
    return {(lr, mu): S.trajectory("quadratic", lambda p, lr=lr, mu=mu: O.SGD(
        p, lr=lr, momentum=mu), steps=steps) for lr, mu in settings}


def momentum_conventions(lr: float = 0.1, new_lr: float = 0.01, momentum: float = 0.9,
                         steps: int = 20, change_at: int = 10) -> dict[str, tuple[float, float]]:
    r"""torch's momentum (:class:`nncourse.optimizers.SGD`: :math:`v = \mu v + g`,
    :math:`\theta \mathrel{-}= \eta v`) vs Sutskever's (:math:`v = \mu v + \eta g`,
    :math:`\theta \mathrel{-}= v`) on :math:`f = \theta^2` from 1: the final
    :math:`\theta` of each, with a constant rate and with the rate dropped to ``new_lr`` after
    ``change_at`` steps. ``{"constant": (torch, sutskever), "changed": (torch, sutskever)}``."""
    out = {}
    for case in ("constant", "changed"):
        theta = torch.ones(1, dtype=torch.float64, requires_grad=True)
        opt = O.SGD([theta], lr=lr, momentum=momentum)
        th_s, v_s = 1.0, 0.0
        for t in range(steps):
            rate = new_lr if (case == "changed" and t >= change_at) else lr
            opt.param_groups[0]["lr"] = rate
            theta.grad = 2 * theta.detach()
            opt.step()
            v_s = momentum * v_s + rate * 2 * th_s
            th_s -= v_s
        out[case] = (theta.item(), th_s)
    return out


def _bowl(mu: float, L: float) -> S.Surface:
    """:math:`f = (\\mu x^2 + L y^2)/2`: Hessian eigenvalues mu and L."""
    q = S.get("quadratic")
    return S.Surface("bowl", lambda xy: S.quadratic(xy, mu / 2, L / 2),
                     lambda xy: torch.stack([mu * xy[0], L * xy[1]]), (1.0, 1.0), (0.0, 0.0),
                     q.xlim, q.ylim, False)


def measured_rate(mu: float, L: float, lr: float, momentum: float = 0.0,
                  steps: int = 100) -> float:
    r"""The measured convergence rate of (heavy-ball) SGD on :math:`(\mu x^2 + L y^2)/2` from
    (1, 1): :math:`(\lVert x_{2T}\rVert / \lVert x_T\rVert)^{1/T}` with :math:`T` = ``steps``,
    i.e. the factor by which the distance to the minimum shrinks per step once the start is
    forgotten. Above 1: diverging."""
    steps = check_int(steps, "steps", fn="measured_rate")
    path = S.trajectory(_bowl(mu, L), lambda p: O.SGD(p, lr=lr, momentum=momentum),
                        steps=2 * steps, bound=1e150)
    d = np.linalg.norm(path, axis=1)
    if not np.isfinite(d[-1]):
        return math.inf
    return float((d[2 * steps] / d[steps]) ** (1 / steps))


def optimal(mu: float, L: float) -> dict[str, dict[str, float]]:
    """The best constant settings on a quadratic with curvatures in [mu, L] and their predicted
    rates (Polyak, 1964; Goh, "Why Momentum Really Works", Distill 2017)."""
    kappa = L / mu
    rk = math.sqrt(kappa)
    return {"gd": {"lr": 2 / (mu + L), "momentum": 0.0, "rate": (kappa - 1) / (kappa + 1)},
            "momentum": {"lr": (2 / (math.sqrt(L) + math.sqrt(mu))) ** 2,
                         "momentum": ((rk - 1) / (rk + 1)) ** 2, "rate": (rk - 1) / (rk + 1)}}


def rates(mu: float = 0.2, L: float = 4.0, steps: int = 100) -> dict[str, dict[str, float]]:
    """For gradient descent and momentum at their optimal settings on d2l's quadratic
    (curvatures 0.2 and 4, condition number 20): the settings, the predicted and the measured
    rate."""
    out = optimal(mu, L)
    for o in out.values():
        o["measured"] = measured_rate(mu, L, o["lr"], o["momentum"], steps=steps)
    return out


def predicted_rate(mu: float, L: float, lr: float, momentum: float) -> float:
    """The slowest mode's rate: the largest |eigenvalue| of the heavy-ball iteration matrix
    ``[[1 + b - lr h, -b], [1, 0]]`` over the curvatures h = mu and h = L."""
    return max(float(np.abs(np.linalg.eigvals(np.array([[1 + momentum - lr * h, -momentum],
                                                         [1.0, 0.0]]))).max())
               for h in (mu, L))


def rate_vs_momentum(mu: float = 0.2, L: float = 4.0,
                     betas: Sequence[float] = tuple(np.round(np.linspace(0.0, 0.9, 19), 3)),
                     steps: int = 100) -> dict[str, np.ndarray]:
    """At momentum's optimal learning rate, the measured and the predicted rate for each
    momentum in ``betas`` and at the optimal momentum itself (the minimum should be there)."""
    best = optimal(mu, L)["momentum"]
    lr = best["lr"]
    betas = np.unique(np.append(np.asarray(betas, dtype=float), best["momentum"]))
    return {"beta": betas,
            "measured": np.array([measured_rate(mu, L, lr, b, steps) for b in betas]),
            "predicted": np.array([predicted_rate(mu, L, lr, b) for b in betas])}


def plot_rates(paths: dict, scan: dict, mu: float = 0.2, L: float = 4.0):
    """Left: the quadratic's contours and the paths of :func:`quadratic_runs`. Right: the scan of
    :func:`rate_vs_momentum` (measured dots on the predicted curve)."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    s = S.get("quadratic")
    X, Y, Z = s.grid(100)
    ax1.contour(X, Y, Z, levels=15, colors="0.75", linewidths=0.7)
    for (lr, m), path in paths.items():
        name = "momentum" if m else "sgd"
        style = "--" if (name == "sgd" and lr > 0.5) else "-"
        ax1.plot(path[:, 0], path[:, 1], style, marker="o", ms=3, color=color(name), lw=1,
                 label=f"lr {lr}, momentum {m}")
    ax1.plot(0, 0, "k*", ms=10)
    ax1.set(xlim=s.xlim, ylim=s.ylim, xlabel="$x_1$", ylabel="$x_2$",
            title="$f = 0.1 x_1^2 + 2 x_2^2$, 20 steps")
    ax1.legend(loc="lower right")
    ax2.plot(scan["beta"], scan["predicted"], "-", color="0.4", label="predicted")
    ax2.plot(scan["beta"], scan["measured"], "o", color=color("momentum"), label="measured")
    best = optimal(mu, L)["momentum"]
    ax2.axvline(best["momentum"], color="k", lw=0.7, ls=":",
                label=f"optimal momentum {best['momentum']:.3f}")
    ax2.set(xlabel="momentum β", ylabel="rate per step (lower = faster)",
            title=f"heavy ball at lr = {best['lr']:.3f}, κ = {L / mu:g}")
    ax2.legend()
    plt.show()


# --- 2. adaptive methods --------------------------------------------------------------------

def constant_gradient_steps(steps: int = 1000, lr: float = 0.1) -> dict[str, np.ndarray]:
    r"""Size of each step when the gradient is always 1 (the loss :math:`f(\theta) = \theta`),
    for SGD, AdaGrad, RMSProp and Adam at the same ``lr``: ``{name: |step_t|}``."""
    out = {}
    for name in ("sgd", "adagrad", "rmsprop", "adam"):
        theta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = make(name, lr)([theta])
        sizes = np.empty(steps)
        for t in range(steps):
            before = theta.item()
            theta.grad = torch.ones(1, dtype=torch.float64)
            opt.step()
            sizes[t] = abs(theta.item() - before)
        out[name] = sizes
    return out


def adam_bias_steps(steps: int = 1000, lr: float = 0.1,
                    betas: tuple[float, float] = (0.9, 0.999)) -> dict[str, np.ndarray]:
    r"""Adam's step per unit learning rate under a constant gradient, with bias correction
    (:class:`nncourse.optimizers.Adam`) and without it (the same update with
    :math:`1 - \beta^t` left out: :math:`\eta\, m_t / (\sqrt{v_t} + \epsilon)`)."""
    b1, b2 = betas
    theta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = O.Adam([theta], lr=lr, betas=betas)
    with_bc = np.empty(steps)
    m = v = 0.0
    without = np.empty(steps)
    for t in range(steps):
        before = theta.item()
        theta.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        with_bc[t] = abs(theta.item() - before) / lr
        m, v = b1 * m + (1 - b1), b2 * v + (1 - b2)
        without[t] = m / (math.sqrt(v) + 1e-8)
    return {"with": with_bc, "without": without}


def decay_per_coordinate(grad_scale: Sequence[float] = (0.0, 1.0), lr: float = 1e-3,
                         weight_decay: float = 0.1, steps: int = 50) -> dict[str, np.ndarray]:
    r"""How much weight decay each coordinate actually gets, Adam (L2 in the gradient) vs AdamW.

    Two weights start at 1; the loss's gradient is constant, ``grad_scale`` per coordinate (by
    default a weight the loss does not use and one it does). The decay applied is the
    difference between runs with and without ``weight_decay``, divided by AdamW's intended
    :math:`\eta \lambda \theta` per step. AdamW: about 1 for every coordinate. Adam: the L2
    term :math:`\lambda\theta` joins the gradient and is divided by :math:`\sqrt{v}`, so where
    it is the whole gradient it becomes a full step of size :math:`\eta` (far more than
    :math:`\eta\lambda\theta`) and where the loss's gradient dominates it nearly vanishes.
    """
    g = torch.tensor(grad_scale, dtype=torch.float64)

    def final(cls, wd):
        theta = torch.ones(len(g), dtype=torch.float64, requires_grad=True)
        opt = cls([theta], lr=lr, weight_decay=wd)
        for _ in range(steps):
            theta.grad = g.clone()
            opt.step()
        return theta.detach().numpy()

    intended = lr * weight_decay * steps  # theta stays ~1: the decay is ~ lr wd theta per step
    return {name: (final(cls, 0.0) - final(cls, weight_decay)) / intended
            for name, cls in (("adam", O.Adam), ("adamw", O.AdamW))}


def reddi(amsgrad: bool, steps: int = 1500, C: float = 3.0, lr: float = 0.5) -> np.ndarray:
    r"""Reddi, Kale & Kumar (2018), Theorem 1: online losses :math:`f_t(x) = C x` every third
    step and :math:`-x` otherwise, :math:`x \in [-1, 1]`. The sum is minimized at :math:`x=-1`.
    Adam with :math:`\beta_1 = 0`, :math:`\beta_2 = 1/(1 + C^2)` and :math:`\eta_t = \eta/\sqrt t`
    drifts to +1: the rare large gradient is quickly forgotten by :math:`v`, so its step is small.
    AMSGrad keeps the largest :math:`v`. Returns :math:`x_t`, ``steps + 1`` values."""
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = O.Adam([x], lr=lr, betas=(0.0, 1 / (1 + C ** 2)), amsgrad=amsgrad)
    path = np.empty(steps + 1)
    path[0] = 0.0
    for t in range(1, steps + 1):
        opt.param_groups[0]["lr"] = lr / math.sqrt(t)
        x.grad = torch.tensor([C if t % 3 == 1 else -1.0], dtype=torch.float64)
        opt.step()
        with torch.no_grad():
            x.clamp_(-1.0, 1.0)  # projection onto the feasible set
        path[t] = x.item()
    return path


class GridAdam(torch.optim.Optimizer):
    r"""Adam (``decoupled=False``: L2 in the gradient, as :class:`nncourse.optimizers.Adam`) or
    AdamW (``decoupled=True``, :class:`nncourse.optimizers.AdamW`) over the stacked members of a
    :class:`nncourse.stacked.StackedMLP`, member :math:`k` with its own learning rate ``lr[k]``
    and weight decay ``weight_decay[k]`` (1-D tensors).

    The update is :class:`nncourse.optimizers.Adam`'s, written with tensors where that has
    numbers, so one call updates every member of a hyper-parameter grid at once;
    ``tests/labs/test_ch06.py`` checks each member against ``torch.optim.Adam`` /
    ``torch.optim.AdamW`` trained alone."""

    def __init__(self, params, lr: torch.Tensor, weight_decay: torch.Tensor, decoupled: bool,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        # float64, so float32 rounding of the settings never enters a float64 run
        lr = torch.as_tensor(lr, dtype=torch.float64)
        weight_decay = torch.as_tensor(weight_decay, dtype=torch.float64)
        if lr.ndim != 1 or lr.shape != weight_decay.shape:
            raise ValueError("GridAdam: lr and weight_decay must be 1-D tensors of the same "
                             f"length (one per member), got shapes {tuple(lr.shape)} and "
                             f"{tuple(weight_decay.shape)}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, decoupled=decoupled,
                                      betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                shape = (-1,) + (1,) * (p.ndim - 1)  # member k's value on its slice p[k]
                lr = group["lr"].to(p.dtype).reshape(shape)
                wd = group["weight_decay"].to(p.dtype).reshape(shape)
                g = p.grad
                if group["decoupled"]:
                    p.mul_(1 - lr * wd)
                else:
                    g = g + wd * p
                m = state["exp_avg"].lerp_(g, 1 - beta1)
                v = state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(group["eps"])
                p.sub_(lr / (1 - beta1 ** t) * m / denom)


#: The lr x weight-decay grid: learning rates (rows) and, per optimizer, the decays (columns).
DECAY_GRID = {"lrs": (3e-3, 1e-2, 3e-2),
              "adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
              "adamw": (1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)}


@lru_cache(maxsize=2)
def _decay_grid(name, lrs, wds, seeds, epochs, n_train, width, batch_size):
    data = load_digits(seed=0).subset_train(n_train, seed=0)
    combos = [(lr, wd, s) for lr in lrs for wd in wds for s in seeds]
    stack = StackedMLP([make_mlp(64, 10, width=width, depth=1, seed=s) for *_, s in combos])
    opt = GridAdam(stack.parameters(), torch.tensor([c[0] for c in combos]),
                   torch.tensor([c[1] for c in combos]), decoupled=name == "adamw")
    hs = train_stacked(stack, data, [c[2] for c in combos], epochs, opt, batch_size=batch_size)
    shape = (len(lrs), len(wds), len(seeds))
    loss = np.array([h.val_loss[-1] if not h.diverged else math.nan for h in hs]).reshape(shape)
    acc = np.array([h.val_acc[-1] if not h.diverged else 0.1 for h in hs]).reshape(shape)
    return loss, acc


def decay_grid(seeds: Sequence[int] = (0, 1, 2), epochs: int = 16, n_train: int = 400,
               width: int = 32, batch_size: int = 64) -> dict:
    r"""Adam with L2 (``Adam(weight_decay=λ)``) and AdamW (torch's: :math:`\theta \leftarrow
    (1 - \eta\lambda)\theta`) on the lr x weight-decay grid of :data:`DECAY_GRID`: a digits
    MLP (64-``width``-10) on ``n_train`` training images, ``epochs`` epochs, once per seed.

    Every run of the grid trains at once, as one stacked model (:mod:`nncourse.stacked`, with
    :class:`GridAdam` giving each member its own lr and decay). Returns ``{"lrs": ..., name:
    {"wds": ..., "val_loss": (lrs, wds, seeds), "val_acc": ...}}``; a diverged run has
    validation loss NaN and accuracy 0.1.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("decay_grid: seeds must be a non-empty sequence of ints")
    epochs = check_int(epochs, "epochs", fn="decay_grid")
    out = {"lrs": np.array(DECAY_GRID["lrs"])}
    for name in ("adam", "adamw"):
        loss, acc = _decay_grid(name, DECAY_GRID["lrs"], DECAY_GRID[name], seeds, epochs,
                                n_train, width, batch_size)
        out[name] = {"wds": np.array(DECAY_GRID[name]), "val_loss": loss, "val_acc": acc}
    return out


def tolerated_decay(loss: np.ndarray, wds: Sequence[float], factor: float = 1.25) -> np.ndarray:
    """Per row of ``loss`` (learning rates x decays), the decay at which the validation loss
    first reaches ``factor`` times the row's loss at the smallest decay: the edge of the good
    region. Interpolated linearly in log(decay); NaN where the row never gets there."""
    logw = np.log10(np.asarray(wds, dtype=float))
    out = np.full(loss.shape[0], math.nan)
    for i, row in enumerate(np.asarray(loss, dtype=float)):
        limit = factor * row[0]
        above = np.flatnonzero(~(row < limit))  # NaN (diverged) counts as above
        if len(above) and above[0] > 0:
            j = above[0]
            hi = row[j] if np.isfinite(row[j]) else limit
            frac = (limit - row[j - 1]) / (hi - row[j - 1]) if hi > row[j - 1] else 1.0
            out[i] = 10 ** (logw[j - 1] + frac * (logw[j] - logw[j - 1]))
    return out


def decay_edges(grid: dict, factor: float = 1.25) -> dict[str, dict[str, np.ndarray]]:
    """For each optimizer of :func:`decay_grid`, the edge of the good region per learning rate
    (:func:`tolerated_decay` of the mean over seeds, and of each seed alone: ``(lrs, seeds)``)."""
    out = {}
    for name in ("adam", "adamw"):
        loss, wds = grid[name]["val_loss"], grid[name]["wds"]
        out[name] = {"mean": tolerated_decay(np.nanmean(loss, 2), wds, factor),
                     "seeds": np.stack([tolerated_decay(loss[:, :, s], wds, factor)
                                        for s in range(loss.shape[2])], 1)}
    return out


def decay_table(grid: dict, edges: dict) -> list[str]:
    """Lines: the edge per learning rate in both parametrisations, how far it moves over the
    grid's learning rates (decades; 0 = aligned with the axes) and its spread over seeds."""
    lrs = grid["lrs"]
    lines = [f"{'lr':>6}   {'Adam + L2: edge λ':>17}{'lr x λ':>10}   {'AdamW: edge wd':>15}"
             f"{'lr x wd':>10}"]
    a, w = edges["adam"]["mean"], edges["adamw"]["mean"]
    for i, lr in enumerate(lrs):
        lines.append(f"{lr:>6g}   {a[i]:>17.2g}{lr * a[i]:>10.2g}   {w[i]:>15.2g}"
                     f"{lr * w[i]:>10.2g}")

    def moves(v):  # decades between the edge's extremes; NaN without two edges
        v = np.log10(v[np.isfinite(v)])
        return v.max() - v.min() if len(v) > 1 else math.nan

    lines.append(f"{'moves':>6}   {moves(a):>14.2f} dec{moves(lrs * a):>6.2f} dec   "
                 f"{moves(w):>12.2f} dec{moves(lrs * w):>6.2f} dec")
    per_seed = np.concatenate([np.ptp(np.log10(edges[n]["seeds"]), axis=1)
                               for n in ("adam", "adamw")])
    spread = per_seed[np.isfinite(per_seed)].max() if np.isfinite(per_seed).any() else math.nan
    for name, label in (("adam", "Adam + L2"), ("adamw", "AdamW")):
        loss = np.nanmean(grid[name]["val_loss"], 2)
        i, j = np.unravel_index(np.nanargmin(loss), loss.shape)
        lines.append(f"{label}: lowest mean val loss {loss[i, j]:.3f} (lr {lrs[i]:g}, decay "
                     f"{grid[name]['wds'][j]:g}); at the smallest decay, best lr: "
                     f"{np.nanmin(loss[:, 0]):.3f}")
    n = grid["adam"]["val_loss"].shape[2]
    lines.append(f"(edge: decay where the mean val loss of {n} seeds reaches 1.25x its value at "
                 f"the smallest decay; one seed alone moves it by at most {spread:.2f} decades)")
    return lines


def plot_decay_grid(grid: dict, edges: dict):
    """Mean validation loss over the grid as heatmaps: Adam + L2 and AdamW against (lr, decay)
    in torch's parametrisation (left pair) and against (lr, lr x decay), the decay per step that
    Loshchilov & Hutter hold fixed (right pair, the same runs sheared). White dots: the edge of
    the good region (:func:`decay_edges`)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    lrs = np.log10(grid["lrs"])
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), layout="constrained")
    norm = LogNorm(0.15, 2.5)
    for col, (product, name) in enumerate([(False, "adam"), (False, "adamw"), (True, "adam"),
                                           (True, "adamw")]):
        ax = axes[col]
        wds = np.log10(grid[name]["wds"])
        loss = np.nanmean(grid[name]["val_loss"], 2)
        loss = np.where(np.isfinite(loss), loss, 2.5)
        # cell corners in log10 space; the product view shifts each column by log10(lr)
        xe = np.concatenate([lrs - 0.25, [lrs[-1] + 0.25]])
        ye = np.concatenate([wds - 0.25, [wds[-1] + 0.25]])
        X, Y = np.meshgrid(xe, ye, indexing="ij")
        if product:
            Y = Y + X
        mesh = ax.pcolormesh(10 ** X, 10 ** Y, loss, norm=norm, cmap="viridis_r",
                             shading="flat")
        edge = edges[name]["mean"]
        ax.plot(grid["lrs"], edge * (grid["lrs"] if product else 1), "o-", color="w", ms=5,
                lw=1.2, label="edge: loss 1.25x")
        label = "λ" if name == "adam" else "wd"
        ax.set(xscale="log", yscale="log", xlabel="learning rate",
               ylabel=f"lr x {label} (decay per step)" if product else f"weight decay {label}",
               title=f"{'Adam + L2' if name == 'adam' else 'AdamW'}"
                     f"{', sheared' if product else ''}")
        ax.set_xticks(grid["lrs"], [f"{v:g}" for v in grid["lrs"]])
        ax.minorticks_off()
    axes[0].legend(loc="lower left", fontsize=7)
    fig.colorbar(mesh, ax=axes, label="val loss (mean of seeds, log scale)", shrink=0.9)
    plt.show()


# --- 3. trajectories on the test surfaces ---------------------------------------------------

#: One learning rate per optimizer and surface (default beta), each picked from a scan of
#: half-decades (3e-4, 1e-3, ..., 1) as the fastest to reach the minimum within 400 steps, or
#: the closest after them where none arrives (Rosenbrock's long curved valley).
SURFACE_LR: dict[str, dict[str, float]] = {
    "quadratic": {"sgd": 0.3, "momentum": 0.1, "nesterov": 0.3, "adagrad": 1.0,
                  "rmsprop": 0.1, "adam": 0.3, "nadam": 0.3},
    "rosenbrock": {"sgd": 1e-3, "momentum": 1e-3, "nesterov": 1e-3, "adagrad": 0.3,
                   "rmsprop": 0.1, "adam": 0.3, "nadam": 0.1},
    "saddle": {"sgd": 0.03, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.1,
               "rmsprop": 0.01, "adam": 0.03, "nadam": 0.03},
    "beale": {"sgd": 0.03, "momentum": 3e-3, "nesterov": 3e-3, "adagrad": 1.0,
              "rmsprop": 0.01, "adam": 0.3, "nadam": 0.3},
}


@lru_cache(maxsize=8)
def _surface_runs(surface: str, steps: int) -> dict[str, np.ndarray]:
    return {name: S.trajectory(surface, make(name, lr), steps=steps)
            for name, lr in SURFACE_LR[surface].items()}


def surface_runs(surface: str, steps: int = 400) -> dict[str, np.ndarray]:
    """The path of each optimizer of :data:`SURFACE_LR` on ``surface`` (cached)."""
    surface = check_choice(surface, "surface", S.SURFACES, fn="surface_runs")
    return dict(_surface_runs(surface, check_int(steps, "steps", fn="surface_runs")))


def steps_table(surfaces: Sequence[str] = ("quadratic", "rosenbrock", "beale"),
                steps: int = 400, tol: float = 1e-2) -> list[str]:
    """Lines of a table: steps until each optimizer stays within ``tol`` of each surface's
    minimum or, where it does not within ``steps``, its distance to the minimum at the end in
    brackets (``diverged`` if it left the plane)."""
    lines = [f"{'':<10}" + "".join(f"{s:>14}" for s in surfaces)]
    for name in NAMES:
        cells = []
        for s in surfaces:
            path = surface_runs(s, steps)[name]
            n = S.steps_to(path, S.get(s).minimum, tol)
            d = float(np.linalg.norm(path[-1] - np.asarray(S.get(s).minimum)))
            text = str(n) if n is not None else ("diverged" if not np.isfinite(d)
                                                  else f"({d:.2g})")
            cells.append(f"{text:>14}")
        lines.append(f"{name:<10}" + "".join(cells))
    return lines


def _draw_surface(ax, s: S.Surface, n: int = 100):
    X, Y, Z = s.grid(n)
    if s.log_levels:
        levels = np.logspace(-1, math.log10(max(Z.max(), 1.0)), 14)
        cs = ax.contour(X, Y, Z, levels=levels, colors="0.75", linewidths=0.7)
    else:
        cs = ax.contour(X, Y, Z, levels=15, colors="0.75", linewidths=0.7)
    ax.plot(*s.start, "ko", ms=5)
    if s.minimum is not None:
        ax.plot(*s.minimum, "k*", ms=11)
    ax.set(xlim=s.xlim, ylim=s.ylim, xlabel="x", ylabel="y")
    return cs


def plot_trajectories(surfaces: Sequence[str] = ("quadratic", "rosenbrock", "saddle", "beale"),
                      steps: int = 400, names: Sequence[str] = NAMES):
    """One panel per surface: contours, start (dot), minimum (star) and each optimizer's path."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(surfaces), figsize=(3.6 * len(surfaces), 3.6))
    for ax, sname in zip(np.atleast_1d(axes), surfaces):
        s = S.get(sname)
        _draw_surface(ax, s)
        for name, path in surface_runs(sname, steps).items():
            if name in names:
                ax.plot(path[:, 0], path[:, 1], "-", color=color(name), lw=1.3, label=name)
        ax.set_title(f"{sname}, {steps} steps")
    np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=7, ncols=2)
    plt.show()


# --- 4. digits on a fixed budget ------------------------------------------------------------

#: The practitioners' defaults: torch's defaults for the adaptive methods, a usual rate for SGD.
DIGITS_SETTINGS: dict[str, tuple[type, dict]] = {
    "sgd": (O.SGD, dict(lr=0.1)),
    "momentum": (O.SGD, dict(lr=0.01, momentum=0.9)),
    "nesterov": (O.SGD, dict(lr=0.01, momentum=0.9, nesterov=True)),
    "adagrad": (O.Adagrad, dict(lr=0.01)),
    "rmsprop": (O.RMSprop, dict(lr=1e-3)),
    "adam": (O.Adam, dict(lr=1e-3)),
    "adamw": (O.AdamW, dict(lr=1e-3, weight_decay=1e-2)),
    "nadam": (O.NAdam, dict(lr=2e-3)),
}


@lru_cache(maxsize=4)
def _digits_runs(seeds: tuple[int, ...], epochs: int, width: int, depth: int):
    data = load_digits(seed=0)  # one split; the seed changes the initial weights and batches
    out = {}
    for name, (cls, kwargs) in progress(DIGITS_SETTINGS.items(), desc="optimizers"):
        # the seeds train at once as one stacked model: every optimizer here is element-wise,
        # so one optimizer over the stacked weights is each seed's own (nncourse.stacked)
        stack = StackedMLP([make_mlp(64, 10, width=width, depth=depth, seed=s) for s in seeds])
        hs = train_stacked(stack, data, seeds, epochs, cls(stack.parameters(), **kwargs),
                           batch_size=32)
        out[name] = {"train_loss": np.array([h.train_loss for h in hs]),
                     "val_acc": np.array([h.val_acc[-1] for h in hs])}
    return out


def digits_runs(seeds: Sequence[int] = (0, 1, 2), epochs: int = 8, width: int = 64,
                depth: int = 2) -> dict[str, dict[str, np.ndarray]]:
    """Train the same digits MLP with each optimizer of :data:`DIGITS_SETTINGS` for ``epochs``
    (batch 32), once per seed: ``{name: {"train_loss": (seeds, epochs), "val_acc": (seeds,)}}``."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("digits_runs: seeds must be a non-empty sequence of ints")
    return dict(_digits_runs(seeds, check_int(epochs, "epochs", fn="digits_runs"), width, depth))


def digits_table(runs: dict) -> list[str]:
    """Final training loss and validation accuracy, mean ± standard deviation over seeds."""
    n = len(next(iter(runs.values()))["val_acc"])
    lines = [f"{'':<10}{'settings':<38}{'train loss':>14}{'val acc (%)':>14}"]
    for name, r in runs.items():
        kw = ", ".join(f"{k}={v}" for k, v in DIGITS_SETTINGS[name][1].items())
        lm, ls = mean_sd(r["train_loss"][:, -1])
        am, asd = mean_sd(r["val_acc"] * 100)
        lines.append(f"{name:<10}{kw:<38}{f'{lm:.3f} ± {ls:.3f}':>14}"
                     f"{f'{am:.1f} ± {asd:.1f}':>14}")
    lines.append(f"(mean ± standard deviation over {n} seeds, after the same number of epochs)")
    return lines


def mislabelled_baseline(lr: float = 0.01, momentum: float = 0.9, epochs: int = 3,
                         seed: int = 0) -> dict[str, float]:
    """The pitfall: a "plain SGD" baseline built from the momentum run's settings dict.

    Both runs then use ``torch.optim.SGD(..., momentum=0.9)`` and their curves are identical;
    nothing looks wrong. The from-scratch comparison catches it: plain SGD written from its
    equation (:class:`nncourse.optimizers.SGD` without momentum) on the same model and batches
    ends elsewhere. Returns the largest differences between final weights.
    """
    data = load_digits(seed=0)
    settings = {"lr": lr, "momentum": momentum}  # meant for the momentum run only

    def run(make_opt):
        model = make_mlp(64, 10, width=64, depth=2, seed=seed)
        train(model, data, epochs=epochs, optimizer=make_opt(model.parameters()),
              batch_size=32, seed=seed, progress=False)
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    baseline = run(lambda p: torch.optim.SGD(p, **settings))   # labelled "plain SGD"
    momentum_run = run(lambda p: torch.optim.SGD(p, **settings))
    plain = run(lambda p: O.SGD(p, lr=lr))                     # what plain SGD is
    return {"baseline vs momentum": (baseline - momentum_run).abs().max().item(),
            "baseline vs plain SGD": (baseline - plain).abs().max().item()}


# --- 5. the widget --------------------------------------------------------------------------

_BETA_NAME = {"momentum": "momentum", "nesterov": "momentum", "rmsprop": "alpha",
              "adam": "beta1", "nadam": "beta1"}


def explore_optimizer(static: bool = False, surface: str = "rosenbrock",
                      optimizer: str = "momentum", lr: float = 1e-3, beta: float = 0.9,
                      steps: int = 150):
    """Pick a surface, an optimizer, its learning rate and its memory ``beta`` (momentum,
    RMSProp's alpha, Adam's beta1); the path of ``steps`` steps is recomputed and redrawn."""
    import ipywidgets as W

    surf = W.Dropdown(options=list(S.SURFACES), value=surface, description="surface")
    opt = W.Dropdown(options=list(NAMES), value=optimizer, description="optimizer")
    lr_s = W.FloatLogSlider(value=lr, base=10, min=-5, max=0.5, step=0.25, description="lr",
                            readout_format=".1e", continuous_update=True)
    beta_s = W.FloatSlider(value=beta, min=0.0, max=0.99, step=0.01, description="beta",
                           continuous_update=True, readout_format=".2f")

    def sync(change=None):
        beta_s.disabled = opt.value not in _BETA_NAME
        beta_s.description = _BETA_NAME.get(opt.value, "(none)")

    sync()
    opt.observe(sync, names="value")

    def draw(axes, state, surface, optimizer, lr, beta):
        (ax,) = axes
        s = S.get(surface)
        path = S.trajectory(s, make(optimizer, lr, beta if optimizer in _BETA_NAME else None),
                            steps=steps, bound=1e3)
        if state.get("surface") != surface:
            for artist in state.get("background", []):
                artist.remove()
            before = set(ax.get_children())
            _draw_surface(ax, s)
            state["background"] = [a for a in ax.get_children() if a not in before]
            state["surface"] = surface
            set_limits(ax, xlim=s.xlim, ylim=s.ylim)
        state["scene"] = surface  # the contours: drawn once per surface, then kept
        if "line" not in state:
            state["line"], = ax.plot(path[:, 0], path[:, 1], "-o", ms=2, lw=1.2, zorder=5)
            state["end"], = ax.plot(*path[-1], "s", ms=6, zorder=6)
        state["line"].set_data(path[:, 0], path[:, 1])
        last = path[~np.isnan(path).any(1)][-1]
        state["end"].set_data([last[0]], [last[1]])
        c = color(optimizer)
        state["line"].set_color(c)
        state["end"].set_color(c)
        n = S.steps_to(path, s.minimum, 1e-2)
        if np.isnan(path[-1]).any():
            verdict = "diverged"
        elif s.minimum is None:
            verdict = f"f = {s(torch.tensor(path[-1])).item():.3g} after {steps} steps"
        else:
            verdict = (f"within 0.01 of the minimum after {n} steps" if n is not None
                       else f"not there after {steps} steps")
        ax.set_title(f"{optimizer} on {surface}: {verdict}")

    return interactive_figure(draw, {"surface": surf, "optimizer": opt, "lr": lr_s,
                                     "beta": beta_s}, figsize=(6.4, 4.2), static=static)
