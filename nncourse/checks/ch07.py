"""Checks for chapter 07's exercises (``exercises/07_learning_rates.ipynb``).

Each schedule is compared with the rates the real ``torch.optim.lr_scheduler`` gives an optimizer,
step by step, on settings the notebook does not show.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.optim import lr_scheduler as S

from nncourse import schedules as sch
from nncourse.checks import exercise

__all__ = ["ex7_1_power_exponential", "ex7_2_range_pick", "ex7_3_one_cycle",
           "ex7_4_smoothing_shift"]


def _torch_rates(make, steps: int, lr: float) -> np.ndarray:
    """The rate a torch scheduler gives optimizer steps 0..steps-1."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9)
    sched = make(opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
    return np.array(rates)


def _values(ex, fn, steps, args, call):
    out = [ex.number(ex.call(fn, t, *args, call=call.format(t=t)), call.format(t=t))
           for t in range(steps)]
    return np.array(out)


def ex7_1_power_exponential(power_lr, exponential_lr) -> None:
    """Exercise 7.1: ``power_lr(step, lr0, s, c)`` and ``exponential_lr(step, lr0, gamma)``."""
    with exercise("7.1", points=2, name="power and exponential schedules") as ex:
        for lr0, s, c in ((0.4, 7, 1.0), (0.05, 20, 0.5)):
            expected = _torch_rates(
                lambda o, s=s, c=c: S.LambdaLR(o, lambda t: (1 + t / s) ** -c), 40, lr0)
            got = _values(ex, power_lr, 40, (lr0, s, c), f"power_lr(step={{t}}, lr0={lr0}, s={s}, "
                          f"c={c})")
            ex.close(got, expected, f"power_lr(step, lr0={lr0}, s={s}, c={c}) for steps 0..39",
                     rtol=1e-9, hint="lr0 / (1 + step / s) ** c: at step 0 it is lr0, at step s "
                                     "lr0 / 2**c -- use both s and c")
        for lr0, gamma in ((0.3, 0.93), (0.01, 0.5)):
            expected = _torch_rates(lambda o, g=gamma: S.ExponentialLR(o, g), 40, lr0)
            got = _values(ex, exponential_lr, 40, (lr0, gamma),
                          f"exponential_lr(step={{t}}, lr0={lr0}, gamma={gamma})")
            ex.close(got, expected, f"exponential_lr(step, lr0={lr0}, gamma={gamma}) for steps "
                     "0..39", rtol=1e-9,
                     hint="lr0 * gamma ** step: step 0 uses lr0 itself (gamma to the power 0)")


def _curve(kind: int) -> tuple[np.ndarray, np.ndarray]:
    """A range-test-like curve: flat, falling, a noisy bottom, then a blow-up."""
    gen = np.random.default_rng(72 + kind)
    lrs = np.logspace(-5, 1, 90)
    u = np.log10(lrs)
    centre = -1.6 + 0.4 * kind
    base = 2.3 - 1.8 / (1 + np.exp(-(u - centre + 1.2) * 3))
    base = base + np.where(u > centre, 6 * (u - centre) ** 2, 0.0)
    noise = gen.normal(0, 0.25, size=len(u))
    return lrs, np.clip(base + noise, 0.05, None)


def ex7_2_range_pick(pick_lr) -> None:
    """Exercise 7.2: the min/10 rule on the bias-corrected smoothed loss."""
    with exercise("7.2", points=2, name="range-test pick") as ex:
        for kind, beta in ((0, 0.98), (1, 0.9), (2, 0.95)):
            lrs, losses = _curve(kind)
            expected = sch.suggest_lr(lrs, sch.smooth(losses, beta), "min/10")
            call = f"pick_lr(lrs, losses, beta={beta})"
            got = ex.number(ex.call(pick_lr, lrs.copy(), losses.copy(), beta, call=call), call)
            raw = lrs[int(np.argmin(losses))] / 10
            hint = "smooth with a = beta * a + (1 - beta) * loss, divide by 1 - beta ** (i + 1), " \
                   "then take a tenth of the rate at the smallest smoothed value"
            if np.isclose(got, raw, rtol=1e-9) and not np.isclose(raw, expected):
                hint = "you read the raw losses: smooth them first"
            elif np.isclose(got, 10 * expected, rtol=1e-9):
                hint = "the rule is a tenth of the rate at the minimum"
            ex.close(got, expected, call, rtol=1e-9, hint=hint)


def ex7_3_one_cycle(one_cycle_lr) -> None:
    """Exercise 7.3: two-phase cosine 1cycle, equal to ``OneCycleLR``."""
    with exercise("7.3", points=3, name="1cycle") as ex:
        for total, max_lr, pct, div, final in ((50, 0.8, 0.3, 25.0, 1e4),
                                               (37, 2.0, 0.25, 10.0, 100.0)):
            args = (total, max_lr, pct, div, final)
            expected = _torch_rates(lambda o, a=args: S.OneCycleLR(
                o, max_lr=a[1], total_steps=a[0], pct_start=a[2], div_factor=a[3],
                final_div_factor=a[4]), total, max_lr)
            got = _values(ex, one_cycle_lr, total, args,
                          f"one_cycle_lr(step={{t}}, total_steps={total}, max_lr={max_lr}, "
                          f"pct_start={pct}, div_factor={div}, final_div_factor={final})")
            ex.close(got, expected, f"one_cycle_lr(step, total_steps={total}, max_lr={max_lr}, "
                     f"pct_start={pct}, div_factor={div}, final_div_factor={final}) for steps "
                     f"0..{total - 1}", rtol=1e-9,
                     hint="the rise ends at step pct_start * total_steps - 1 and the fall at "
                          "total_steps - 1; the final rate is max_lr / div_factor / "
                          "final_div_factor; each phase is a half cosine")


def _measured_shift(seed: int) -> float:
    from nncourse.labs import ch07 as lab

    t = lab.range_tests(seeds=(seed,))[seed]
    return float(t.lrs[np.argmin(t.smoothed)] / t.lrs[np.argmin(t.losses)])


def ex7_4_smoothing_shift(smoothing_shift) -> None:
    """Exercise 7.4: measure how far smoothing moves the range test's minimum (re-run here)."""
    with exercise("7.4", points=2, name="smoothing moves the minimum") as ex:
        for seed in (3, 4):
            expected = _measured_shift(seed)
            call = f"smoothing_shift({seed})"
            got = ex.number(ex.call(smoothing_shift, seed, call=call), call)
            hint = "run lab.range_tests(seeds=(seed,))[seed], then divide the rate at the " \
                   "smallest smoothed loss by the rate at the smallest raw loss"
            if np.isclose(got, 1 / expected, rtol=0.05):
                hint = "you divided the other way round: smoothed minimum over raw minimum"
            ex.close(got, expected, f"{call} (re-measured here: tolerance 5 %)", rtol=0.05,
                     hint=hint)
