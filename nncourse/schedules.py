r"""Learning-rate schedules as plain functions of the step, and the learning-rate range test.

Each schedule gives the learning rate used at optimizer step ``step`` (0, 1, 2, ...) and equals
its ``torch.optim.lr_scheduler`` counterpart step by step (``tests/test_schedules.py``); train
with the real scheduler, read the formula here:

=========================  ==========================================  ===========================
function                   formula                                     torch
=========================  ==========================================  ===========================
:func:`power_lr`           :math:`\eta_0 / (1 + t/s)^c`                ``LambdaLR``
:func:`exponential_lr`     :math:`\eta_0 \gamma^t`                     ``ExponentialLR``
:func:`piecewise_lr`       :math:`\eta_0 \gamma^{\#\{m \le t\}}`       ``MultiStepLR``
:func:`cosine_lr`          :math:`\eta_{min} + (\eta_0 - \eta_{min})   ``CosineAnnealingLR``
                           (1 + \cos(\pi t / T)) / 2`
:func:`one_cycle_lr`       warm up to ``max_lr``, anneal far below      ``OneCycleLR``
:func:`one_cycle_momentum` momentum (or Adam's beta1) cycled inversely  ``OneCycleLR``
:func:`warmup_lr`          :math:`\eta_0 \min(1, (t + 1) / W)`          ``LinearLR``
=========================  ==========================================  ===========================

Performance scheduling has no formula -- it reacts to the validation loss -- so the course uses
torch's ``ReduceLROnPlateau`` directly.

:func:`lr_range_test` is Smith's range test (fastai's ``lr_find``): raise the learning rate
exponentially batch by batch, record the smoothed loss, stop when it diverges, and suggest a
rate by named rules. Unlike some popular finders it leaves the model and optimizer exactly as it
found them. :func:`guard_step_order` turns "``scheduler.step()`` before ``optimizer.step()``"
(torch only warns, once) into a clear error.

Left out: cyclic (triangular) and warm-restart schedules -- torch has them
(``CyclicLR``, ``CosineAnnealingWarmRestarts``) and the chapter does not need them.
"""

from __future__ import annotations

import copy
import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nncourse._validate import check_choice, check_int, check_number

__all__ = ["power_lr", "exponential_lr", "piecewise_lr", "cosine_lr", "one_cycle_lr",
           "one_cycle_momentum", "warmup_lr", "RangeTest", "lr_range_test", "RULES",
           "suggest_lr", "smooth", "guard_step_order", "ScheduleOrderError"]


def _step(step, fn: str) -> int:
    return check_int(step, "step", low=0, fn=fn)


def power_lr(step: int, lr0: float, s: float, c: float = 1.0) -> float:
    r"""Power scheduling: :math:`\eta(t) = \eta_0 / (1 + t/s)^c`.

    The rate halves after ``s`` steps when ``c = 1``, then falls ever more slowly (like
    :math:`1/t`). torch: ``LambdaLR(opt, lambda t: (1 + t / s) ** -c)``.
    """
    fn = "power_lr"
    t = _step(step, fn)
    lr0 = check_number(lr0, "lr0", 0, low_open=True, fn=fn)
    s = check_number(s, "s", 0, low_open=True, fn=fn)
    c = check_number(c, "c", 0, fn=fn)
    return lr0 * (1 + t / s) ** -c


def exponential_lr(step: int, lr0: float, gamma: float) -> float:
    r"""Exponential scheduling: :math:`\eta(t) = \eta_0 \gamma^t` (a factor ``gamma`` per step).

    With ``gamma = 0.1 ** (1 / s)`` the rate falls 10x every ``s`` steps. torch:
    ``ExponentialLR(opt, gamma)``.
    """
    fn = "exponential_lr"
    t = _step(step, fn)
    lr0 = check_number(lr0, "lr0", 0, low_open=True, fn=fn)
    gamma = check_number(gamma, "gamma", 0, 1, low_open=True, fn=fn)
    return lr0 * gamma ** t


def piecewise_lr(step: int, lr0: float, milestones: Sequence[int], gamma: float = 0.1) -> float:
    r"""Piecewise-constant scheduling: multiply by ``gamma`` at each milestone passed.

    :math:`\eta(t) = \eta_0 \gamma^{k}` with :math:`k` the number of milestones :math:`\le t`.
    torch: ``MultiStepLR(opt, milestones, gamma)``.
    """
    fn = "piecewise_lr"
    t = _step(step, fn)
    lr0 = check_number(lr0, "lr0", 0, low_open=True, fn=fn)
    gamma = check_number(gamma, "gamma", 0, 1, low_open=True, fn=fn)
    ms = list(milestones) if isinstance(milestones, Sequence) else None
    if (not ms and ms != []) or any(isinstance(m, bool) or not isinstance(m, int) or m < 1
                                    for m in ms) or ms != sorted(ms):
        raise ValueError(f"{fn}: milestones must be an increasing list of positive integers, "
                         f"got {milestones!r}")
    return lr0 * gamma ** bisect_right(ms, t)


def cosine_lr(step: int, lr0: float, total_steps: int, eta_min: float = 0.0) -> float:
    r"""Cosine annealing: :math:`\eta_{min} + (\eta_0 - \eta_{min})(1 + \cos(\pi t/T))/2`.

    From ``lr0`` at step 0 down to ``eta_min`` at step ``T = total_steps``. torch:
    ``CosineAnnealingLR(opt, T_max=total_steps, eta_min)`` -- which, stepped on past ``T_max``,
    climbs back up (half a period of a cosine); here that is an error, since a schedule for
    ``total_steps`` steps has no step after the last (restarts: ``CosineAnnealingWarmRestarts``).
    """
    fn = "cosine_lr"
    t = _step(step, fn)
    lr0 = check_number(lr0, "lr0", 0, low_open=True, fn=fn)
    total = check_int(total_steps, "total_steps", fn=fn)
    eta_min = check_number(eta_min, "eta_min", 0, lr0, fn=fn)
    if t > total:
        raise ValueError(f"{fn}: step {t} is past total_steps = {total}; the schedule ends there")
    return eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * t / total)) / 2


def warmup_lr(step: int, lr0: float, warmup_steps: int) -> float:
    r"""Linear warm-up: :math:`\eta(t) = \eta_0 \min(1, (t + 1)/W)`, then constant ``lr0``.

    Step 0 uses ``lr0 / W``; from step ``W - 1`` on the full rate. torch:
    ``LinearLR(opt, start_factor=1 / W, end_factor=1, total_iters=W - 1)`` (or the same
    ``min`` in a ``LambdaLR``). Chain it with a decay with ``SequentialLR``.
    """
    fn = "warmup_lr"
    t = _step(step, fn)
    lr0 = check_number(lr0, "lr0", 0, low_open=True, fn=fn)
    w = check_int(warmup_steps, "warmup_steps", fn=fn)
    return lr0 * min(1.0, (t + 1) / w)


# --- 1cycle ------------------------------------------------------------------------------------

def _one_cycle_phases(total_steps, pct_start, three_phase):
    """(end_step, lr from, lr to, momentum from, momentum to) per phase, as in ``OneCycleLR``."""
    if three_phase:
        return [(float(pct_start * total_steps) - 1, "initial", "max", "max_m", "base_m"),
                (float(2 * pct_start * total_steps) - 2, "max", "initial", "base_m", "max_m"),
                (total_steps - 1, "initial", "min", "max_m", "max_m")]
    return [(float(pct_start * total_steps) - 1, "initial", "max", "max_m", "base_m"),
            (total_steps - 1, "max", "min", "base_m", "max_m")]


def _anneal(start, end, pct, strategy):
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def _one_cycle(step, total_steps, pct_start, anneal_strategy, three_phase, values, fn):
    t = _step(step, fn)
    total = check_int(total_steps, "total_steps", fn=fn)
    pct_start = check_number(pct_start, "pct_start", 0, 1, low_open=True, high_open=True, fn=fn)
    strategy = check_choice(anneal_strategy, "anneal_strategy", ("cos", "linear"), fn=fn)
    if t > total:
        # torch: "Tried to step N times. The specified number of total steps is T"
        raise ValueError(f"{fn}: step {t} is past total_steps = {total} (OneCycleLR raises "
                         "here too); make total_steps = epochs * batches per epoch")
    phases = _one_cycle_phases(total, pct_start, three_phase)
    start_step = 0.0
    for i, (end_step, a, b, ma, mb) in enumerate(phases):
        if t <= end_step or i == len(phases) - 1:
            if end_step <= start_step:
                raise ValueError(f"{fn}: pct_start = {pct_start:g} leaves a phase of "
                                 f"{total} steps empty; use more steps or a larger pct_start")
            pct = (t - start_step) / (end_step - start_step)
            return _anneal(values[a], values[b], pct, strategy), (
                _anneal(values[ma], values[mb], pct, strategy) if "max_m" in values else None)
        start_step = end_step
    raise AssertionError("unreachable")  # pragma: no cover


def one_cycle_lr(step: int, total_steps: int, max_lr: float, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 anneal_strategy: str = "cos", three_phase: bool = False) -> float:
    r"""Smith's 1cycle policy, exactly as ``torch.optim.lr_scheduler.OneCycleLR`` computes it.

    Two phases (default): from ``max_lr / div_factor`` up to ``max_lr`` over the first
    ``pct_start`` of the steps, then down to ``max_lr / div_factor / final_div_factor`` at step
    ``total_steps - 1``. Each phase is a half cosine (``anneal_strategy="cos"``) or a straight
    line (``"linear"``). ``three_phase=True`` is Smith's original shape: up, back down to the
    initial rate symmetrically, then a short final anneal far below it.

    Phase ``k`` ends at step ``pct_start * total_steps - 1`` (then ``2 * pct_start *
    total_steps - 2`` for three phases), and within a phase
    :math:`\eta = \mathrm{anneal}(\eta_{start}, \eta_{end}, (t - t_{start})/(t_{end} -
    t_{start}))`. Step ``total_steps`` is still allowed (torch's last ``step()`` call); beyond
    it is an error, as in torch.

    Reference: L. N. Smith and N. Topin, "Super-Convergence", 2017 (arXiv:1708.07120).
    """
    fn = "one_cycle_lr"
    max_lr = check_number(max_lr, "max_lr", 0, low_open=True, fn=fn)
    div = check_number(div_factor, "div_factor", 0, low_open=True, fn=fn)
    final = check_number(final_div_factor, "final_div_factor", 0, low_open=True, fn=fn)
    initial = max_lr / div
    values = {"initial": initial, "max": max_lr, "min": initial / final}
    return _one_cycle(step, total_steps, pct_start, anneal_strategy, bool(three_phase), values,
                      fn)[0]


def one_cycle_momentum(step: int, total_steps: int, pct_start: float = 0.3,
                       base_momentum: float = 0.85, max_momentum: float = 0.95,
                       anneal_strategy: str = "cos", three_phase: bool = False) -> float:
    """The momentum (SGD) or ``beta1`` (Adam) that ``OneCycleLR`` sets at ``step``.

    It moves opposite to the learning rate: from ``max_momentum`` down to ``base_momentum`` while
    the rate rises, back up while it falls (in the third phase of ``three_phase`` it stays at
    ``max_momentum``). A high rate with high momentum is an even larger effective step; Smith
    lowers one while raising the other.
    """
    fn = "one_cycle_momentum"
    base = check_number(base_momentum, "base_momentum", 0, 1, fn=fn)
    top = check_number(max_momentum, "max_momentum", 0, 1, fn=fn)
    values = {"initial": 0.0, "max": 0.0, "min": 0.0, "max_m": top, "base_m": base}
    return _one_cycle(step, total_steps, pct_start, anneal_strategy, bool(three_phase), values,
                      fn)[1]


# --- scheduler.step() before optimizer.step() -------------------------------------------------

class ScheduleOrderError(RuntimeError):
    """``scheduler.step()`` was called without an ``optimizer.step()`` since its last call."""


def guard_step_order(scheduler) -> None:
    """Make ``scheduler.step()`` raise :class:`ScheduleOrderError` unless ``optimizer.step()``
    ran since the scheduler's previous step (or its creation).

    torch warns once ("Detected call of `lr_scheduler.step()` before `optimizer.step()`") and
    then runs the whole schedule one step ahead: the first rate is never used, and a
    ``OneCycleLR`` fails with "Tried to step ..." on the last batch. Uses only public hooks
    (``Optimizer.register_step_post_hook``). ``ReduceLROnPlateau`` is guarded the same way.
    """
    opt = getattr(scheduler, "optimizer", None)
    if not isinstance(opt, torch.optim.Optimizer) or not callable(getattr(scheduler, "step", None)):
        raise ValueError("guard_step_order: scheduler must be a torch.optim.lr_scheduler "
                         f"scheduler (with .optimizer and .step), got {type(scheduler).__name__}")
    count = {"optimizer": 0, "seen": 0}

    def hook(*_):
        count["optimizer"] += 1

    opt.register_step_post_hook(hook)
    step = scheduler.step

    def guarded_step(*args, **kwargs):
        if count["optimizer"] == count["seen"]:
            raise ScheduleOrderError(
                f"{type(scheduler).__name__}.step() was called before optimizer.step(): the "
                "schedule would run one step ahead and skip its first rate; call "
                "optimizer.step() first, then scheduler.step()")
        count["seen"] = count["optimizer"]
        return step(*args, **kwargs)

    scheduler.step = guarded_step


# --- the learning-rate range test ---------------------------------------------------------------

def smooth(losses: Sequence[float], beta: float = 0.98) -> np.ndarray:
    r"""Bias-corrected exponential moving average, as fastai's finder smooths the loss:
    :math:`a_i = \beta a_{i-1} + (1 - \beta) \ell_i`, reported as :math:`a_i / (1 - \beta^{i+1})`.

    ``beta = 0`` returns the raw losses. The average lags behind the raw curve by about
    :math:`1/(1-\beta)` steps, which moves its minimum to a higher learning rate.
    """
    beta = check_number(beta, "beta", 0, 1, high_open=True, fn="smooth")
    out, avg = [], 0.0
    for i, v in enumerate(np.asarray(losses, dtype=float)):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)))
    return np.array(out)


def _min_over_10(lrs, losses):
    return float(lrs[int(np.argmin(losses))] / 10)


def _steepest(lrs, losses):
    slope = np.gradient(losses, np.log10(lrs))
    return float(lrs[int(np.argmin(slope))])


def _valley(lrs, losses):
    """fastai's ``valley``: the longest stretch over which the loss keeps falling (longest
    decreasing subsequence), then a point about halfway along it."""
    n = len(losses)
    lds, start, end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[end] < lds[i]:
            end, start = i, i - lds[i]
    sections = (end - start) / 3
    return float(lrs[start + int(sections) + int(sections / 2)])


#: Range-test rules by name: ``rule(lrs, smoothed_losses) -> lr``.
RULES: dict[str, Callable] = {"min/10": _min_over_10, "steepest": _steepest, "valley": _valley}


def suggest_lr(lrs, losses, rule: str = "min/10") -> float:
    """A learning rate from a range-test curve by a named rule of :data:`RULES`:

    * ``"min/10"`` -- a tenth of the rate at the lowest loss (Smith's and fastai's ``minimum``
      rule: at the minimum the loss is about to blow up);
    * ``"steepest"`` -- where the loss falls fastest per decade of learning rate;
    * ``"valley"`` -- fastai's default: about halfway along the longest run of falling loss.
    """
    rule = check_choice(rule, "rule", RULES, fn="suggest_lr")
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if lrs.ndim != 1 or lrs.shape != losses.shape or len(lrs) < 3:
        raise ValueError("suggest_lr: lrs and losses must be 1-D of the same length >= 3, got "
                         f"shapes {lrs.shape} and {losses.shape}")
    if not (np.all(np.isfinite(losses)) and np.all(lrs > 0)):
        raise ValueError("suggest_lr: losses must be finite and lrs positive")
    return RULES[rule](lrs, losses)


@dataclass
class RangeTest:
    """The result of :func:`lr_range_test`: the curve and the rules' suggestions."""

    lrs: np.ndarray
    losses: np.ndarray  #: raw mini-batch losses
    smoothed: np.ndarray  #: what the rules read
    suggestions: dict[str, float] = field(default_factory=dict)
    diverged: bool = False  #: stopped early because the smoothed loss blew up

    def __repr__(self) -> str:
        picks = ", ".join(f"{k} {v:.3g}" for k, v in self.suggestions.items())
        return (f"RangeTest({len(self.lrs)} steps, lr {self.lrs[0]:.2g} to {self.lrs[-1]:.2g}"
                f"{', diverged' if self.diverged else ''}; {picks})")


def lr_range_test(model: nn.Module, data, optimizer: str | torch.optim.Optimizer = "sgd",
                  start_lr: float = 1e-5, end_lr: float = 10.0, num_steps: int = 100,
                  batch_size: int = 64, beta: float = 0.98, diverge: float = 4.0, seed: int = 0,
                  skip_end: int = 5, loss: str | Callable = "auto",
                  **optimizer_kwargs) -> RangeTest:
    r"""Smith's learning-rate range test, leaving ``model`` and ``optimizer`` untouched.

    Trains for up to ``num_steps`` mini-batches while the rate grows exponentially,
    :math:`\eta_i = \eta_{start} (\eta_{end}/\eta_{start})^{i/(n-1)}`; records each batch loss
    and its :func:`smooth`\ ed value, and stops once the smoothed loss exceeds ``diverge`` times
    its minimum (or is not finite). Suggestions by every rule of :data:`RULES` are computed on
    the smoothed curve without its first ``num_steps // 10`` and last ``skip_end`` points, as
    fastai's ``lr_find`` does (the start is noise, the end is the blow-up).

    The test *trains* the model it tests; finders that forget to undo that hand back a model
    wrecked by the last, divergent rates. Here the parameters, buffers, the optimizer's state
    (momentum buffers, Adam moments, its learning rates) and the global random state are restored.

    Parameters
    ----------
    model : nn.Module
    data : Dataset or tuple
        As for :func:`nncourse.training.train` (only the training split is used).
    optimizer : str or torch.optim.Optimizer
        A name for :func:`nncourse.training.make_optimizer` or an optimizer over ``model``.
    beta : float
        Smoothing of :func:`smooth` (0 = raw losses).

    Reference: L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", 2017.
    """
    from nncourse.training import _unpack, loss_function, make_optimizer

    fn = "lr_range_test"
    if not isinstance(model, nn.Module):
        raise ValueError(f"{fn}: model must be a torch.nn.Module, got {type(model).__name__}")
    start_lr = check_number(start_lr, "start_lr", 0, low_open=True, fn=fn)
    end_lr = check_number(end_lr, "end_lr", start_lr, low_open=True, fn=fn)
    n = check_int(num_steps, "num_steps", low=3, fn=fn)
    bs = check_int(batch_size, "batch_size", fn=fn)
    beta = check_number(beta, "beta", 0, 1, high_open=True, fn=fn)
    diverge = check_number(diverge, "diverge", 1, low_open=True, fn=fn)
    skip_end = check_int(skip_end, "skip_end", low=0, fn=fn)
    X, y, _, _ = _unpack(data)
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        opt = make_optimizer(optimizer, model.parameters(), start_lr, **optimizer_kwargs)

    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    was_training = model.training
    lrs, losses, smoothed = [], [], []
    avg, best, diverged = 0.0, math.inf, False
    with torch.random.fork_rng(devices=[]):
        try:
            with torch.no_grad():
                out_dim = model(X[:2]).reshape(2, -1).shape[1]
            loss_fn = loss_function(out_dim, loss)
            gen = torch.Generator().manual_seed(seed)
            order, pos = torch.randperm(len(X), generator=gen), 0
            model.train()
            for i in range(n):
                if pos + bs > len(X):  # next epoch: reshuffle
                    order, pos = torch.randperm(len(X), generator=gen), 0
                idx = order[pos:pos + min(bs, len(X))]
                pos += len(idx)
                lr = start_lr * (end_lr / start_lr) ** (i / (n - 1))
                for group in opt.param_groups:
                    group["lr"] = lr
                batch_loss = loss_fn(model(X[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                opt.step()
                value = batch_loss.item()
                avg = beta * avg + (1 - beta) * value
                s = avg / (1 - beta ** (i + 1))
                lrs.append(lr)
                losses.append(value)
                smoothed.append(s)
                if not math.isfinite(s) or s > diverge * best:
                    diverged = True
                    break
                best = min(best, s)
        finally:
            model.load_state_dict(saved_model)
            opt.load_state_dict(saved_opt)
            opt.zero_grad(set_to_none=True)
            model.train(was_training)
    result = RangeTest(np.array(lrs), np.array(losses), np.array(smoothed), diverged=diverged)
    # As fastai's lr_find: the rules skip the first tenth of the planned steps (where the
    # smoothed curve is still settling, its slope mostly noise) and the last 5 points.
    lo, hi = n // 10, len(lrs) - skip_end
    if hi - lo >= 3:
        result.suggestions = {rule: suggest_lr(result.lrs[lo:hi], result.smoothed[lo:hi], rule)
                              for rule in RULES}
    return result
