"""Each chapter 07 check passes on the reference answer and fails, with one clear sentence, on the
three most plausible wrong answers, None and the stub."""

import math
from functools import partial

import numpy as np
import pytest

from nncourse import schedules as sch
from nncourse.checks import NotAttempted
from nncourse.checks import ch07 as check
from tests.checks.helpers import check_fails, stub

fails = partial(check_fails, 7)


# --- 7.1 ------------------------------------------------------------------------------------

def power(t, lr0, s, c=1.0):
    return sch.power_lr(t, lr0, s, c)


def exponential(t, lr0, gamma):
    return sch.exponential_lr(t, lr0, gamma)


def test_ex7_1_passes_on_reference(capsys):
    check.ex7_1_power_exponential(power, exponential)
    assert capsys.readouterr().out == "Exercise 7.1 passed (2 points)\n"


def test_ex7_1_fails_on_wrong_answers():
    fails(check.ex7_1_power_exponential, lambda t, lr0, s, c=1: lr0 / (1 + t / s) ** 1,
          exponential, match=r"7\.1 .*power_lr.*c=0.5.*is wrong.*use both s and c")
    fails(check.ex7_1_power_exponential, lambda t, lr0, s, c=1: lr0 / (1 + t) ** c,
          exponential, match=r"power_lr\(step, lr0=0.4, s=7, c=1.0\).*is wrong")
    fails(check.ex7_1_power_exponential, power, lambda t, lr0, g: lr0 * g ** (t + 1),
          match=r"exponential_lr.*is wrong.*step 0 uses lr0")
    fails(check.ex7_1_power_exponential, power, lambda t, lr0, g: lr0 * math.exp(-g * t),
          match=r"exponential_lr.*is wrong")
    fails(check.ex7_1_power_exponential, lambda t, lr0, s, c=1: None, exponential,
          match="returned None")
    with pytest.raises(NotAttempted, match="not attempted"):
        check.ex7_1_power_exponential(stub, stub)


# --- 7.2 ------------------------------------------------------------------------------------

def pick(lrs, losses, beta=0.98):
    return float(lrs[np.argmin(sch.smooth(losses, beta))] / 10)


def test_ex7_2_passes_on_reference(capsys):
    check.ex7_2_range_pick(pick)
    assert capsys.readouterr().out == "Exercise 7.2 passed (2 points)\n"


def test_ex7_2_fails_on_wrong_answers():
    def no_bias_correction(lrs, losses, beta=0.98):
        a, out = 0.0, []
        for v in losses:
            a = beta * a + (1 - beta) * v
            out.append(a)
        return float(lrs[np.argmin(out)] / 10)

    fails(check.ex7_2_range_pick, lambda lrs, losses, beta: float(lrs[np.argmin(losses)] / 10),
          match=r"7\.2 .*is wrong.*raw losses: smooth them first")
    fails(check.ex7_2_range_pick, lambda lrs, losses, beta: 10 * pick(lrs, losses, beta),
          match=r"is wrong.*a tenth of the rate")
    fails(check.ex7_2_range_pick, no_bias_correction, match=r"is wrong.*1 - beta \*\* \(i \+ 1\)")
    fails(check.ex7_2_range_pick, lambda lrs, losses, beta: pick(lrs, losses, 1 - beta),
          match="is wrong")
    fails(check.ex7_2_range_pick, lambda lrs, losses, beta: lrs, match="single number")
    with pytest.raises(NotAttempted):
        check.ex7_2_range_pick(stub)


# --- 7.3 ------------------------------------------------------------------------------------

def one_cycle(t, total, max_lr, pct=0.3, div=25.0, final=1e4):
    return sch.one_cycle_lr(t, total, max_lr, pct, div, final)


def test_ex7_3_passes_on_reference(capsys):
    check.ex7_3_one_cycle(one_cycle)
    assert capsys.readouterr().out == "Exercise 7.3 passed (3 points)\n"


def naive_one_cycle(t, total, max_lr, pct=0.3, div=25.0, final=1e4, shift=1, final_min=None,
                    linear=False):
    start, low = max_lr / div, (final_min if final_min is not None else max_lr / div / final)
    up_end = pct * total - shift
    anneal = (lambda a, b, x: a + (b - a) * x) if linear else \
        (lambda a, b, x: b + (a - b) / 2 * (math.cos(math.pi * x) + 1))
    if t <= up_end:
        return anneal(start, max_lr, t / up_end)
    return anneal(max_lr, low, (t - up_end) / (total - shift - up_end))


def test_ex7_3_reference_form_equals_torch():
    check.ex7_3_one_cycle(naive_one_cycle)


def test_ex7_3_fails_on_wrong_answers():
    fails(check.ex7_3_one_cycle, partial(naive_one_cycle, shift=0),
          match=r"7\.3 .*is wrong.*pct_start \* total_steps - 1")
    fails(check.ex7_3_one_cycle,
          lambda t, total, max_lr, pct=0.3, div=25.0, final=1e4: naive_one_cycle(
              t, total, max_lr, pct, div, final, final_min=max_lr / final), match="is wrong")
    fails(check.ex7_3_one_cycle, partial(naive_one_cycle, linear=True), match="is wrong")
    fails(check.ex7_3_one_cycle, lambda *a: float("nan"), match="NaN")
    with pytest.raises(NotAttempted):
        check.ex7_3_one_cycle(stub)


# --- 7.4 ------------------------------------------------------------------------------------

def shift(seed):
    from nncourse.labs import ch07 as lab

    t = lab.range_tests(seeds=(seed,))[seed]
    return t.lrs[np.argmin(t.smoothed)] / t.lrs[np.argmin(t.losses)]


def test_ex7_4_passes_on_reference(capsys):
    check.ex7_4_smoothing_shift(shift)
    assert capsys.readouterr().out == "Exercise 7.4 passed (2 points)\n"


def test_ex7_4_fails_on_wrong_answers():
    fails(check.ex7_4_smoothing_shift, lambda seed: 1 / shift(seed),
          match=r"7\.4 .*is wrong.*divided the other way round")
    fails(check.ex7_4_smoothing_shift, lambda seed: shift(0), match=r"smoothing_shift\(3\)|"
          r"smoothing_shift\(4\)")  # the notebook's seed, not the one asked for
    fails(check.ex7_4_smoothing_shift, lambda seed: 3.0, match="is wrong")  # a guess, unmeasured
    fails(check.ex7_4_smoothing_shift, lambda seed: None, match="returned None")
    with pytest.raises(NotAttempted):
        check.ex7_4_smoothing_shift(stub)
