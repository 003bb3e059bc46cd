"""Each schedule equals its torch.optim.lr_scheduler counterpart step by step; the range test
restores what it trains; bad input gets one clear sentence."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as S

from nncourse import schedules as sch
from nncourse.data import load_digits
from nncourse.models import make_mlp


def torch_lrs(make, steps, opt_cls=torch.optim.SGD, lr=0.5, **opt_kw):
    """Learning rates (and momentum or beta1) torch uses for optimizer steps 0..steps-1."""
    p = nn.Parameter(torch.zeros(1))
    opt = opt_cls([p], lr=lr, **opt_kw)
    sched = make(opt)
    lrs, moms = [], []
    for _ in range(steps):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["betas"][0] if "betas" in g else g.get("momentum"))
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
    return np.array(lrs), moms


def ours(fn, steps, *args, **kw):
    return np.array([fn(t, *args, **kw) for t in range(steps)])


@pytest.mark.parametrize("s, c", [(10, 1.0), (3, 0.5), (50, 2.0)])
def test_power_equals_lambda_lr(s, c):
    ref, _ = torch_lrs(lambda o: S.LambdaLR(o, lambda t: (1 + t / s) ** -c), 60)
    np.testing.assert_allclose(ours(sch.power_lr, 60, 0.5, s, c), ref, rtol=1e-14)


@pytest.mark.parametrize("gamma", [0.9, 0.99, 0.5])
def test_exponential_equals_exponential_lr(gamma):
    ref, _ = torch_lrs(lambda o: S.ExponentialLR(o, gamma), 80)
    # torch multiplies step by step, we take the power: equal to rounding
    np.testing.assert_allclose(ours(sch.exponential_lr, 80, 0.5, gamma), ref, rtol=1e-12)


@pytest.mark.parametrize("milestones, gamma", [([10, 25, 40], 0.1), ([1], 0.5), ([5, 6], 0.3)])
def test_piecewise_equals_multistep_lr(milestones, gamma):
    ref, _ = torch_lrs(lambda o: S.MultiStepLR(o, milestones, gamma), 50)
    np.testing.assert_allclose(ours(sch.piecewise_lr, 50, 0.5, milestones, gamma), ref,
                               rtol=1e-12)


@pytest.mark.parametrize("total, eta_min", [(40, 0.0), (17, 0.01), (1, 0.0)])
def test_cosine_equals_cosine_annealing_lr(total, eta_min):
    ref, _ = torch_lrs(lambda o: S.CosineAnnealingLR(o, T_max=total, eta_min=eta_min), total + 1)
    np.testing.assert_allclose(ours(sch.cosine_lr, total + 1, 0.5, total, eta_min), ref,
                               rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("w", [1, 5, 200])
def test_warmup_equals_linear_lr_and_lambda(w):
    steps = w + 10
    if w > 1:
        ref, _ = torch_lrs(lambda o: S.LinearLR(o, start_factor=1 / w, end_factor=1.0,
                                                total_iters=w - 1), steps)
        np.testing.assert_allclose(ours(sch.warmup_lr, steps, 0.5, w), ref, rtol=1e-12)
    ref, _ = torch_lrs(lambda o: S.LambdaLR(o, lambda t: min(1.0, (t + 1) / w)), steps)
    np.testing.assert_allclose(ours(sch.warmup_lr, steps, 0.5, w), ref, rtol=1e-15)


ONE_CYCLE = [
    dict(total_steps=100, max_lr=0.5),
    dict(total_steps=97, max_lr=2.0, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
    dict(total_steps=60, max_lr=0.1, anneal_strategy="linear"),
    dict(total_steps=90, max_lr=0.3, three_phase=True),
    dict(total_steps=73, max_lr=0.3, three_phase=True, anneal_strategy="linear", pct_start=0.4),
]


@pytest.mark.parametrize("kw", ONE_CYCLE)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_one_cycle_equals_one_cycle_lr_with_momentum(kw, opt):
    total = kw["total_steps"]
    if opt == "sgd":
        ref, moms = torch_lrs(lambda o: S.OneCycleLR(o, **kw), total, momentum=0.9)
    else:
        ref, moms = torch_lrs(lambda o: S.OneCycleLR(o, **kw), total, torch.optim.Adam)
    lrs = [sch.one_cycle_lr(t, **kw) for t in range(total)]
    assert lrs == pytest.approx(list(ref), rel=1e-15, abs=0)  # same formula, same operations
    mkw = {k: v for k, v in kw.items() if k in ("pct_start", "anneal_strategy", "three_phase")}
    ours_m = [sch.one_cycle_momentum(t, total, **mkw) for t in range(total)]
    assert ours_m == pytest.approx(moms, rel=1e-15, abs=0)


def test_one_cycle_past_the_end_is_an_error_like_torch():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    for _ in range(10):
        opt.step()
        sched.step()  # reaches last_epoch = 10 = total_steps: torch allows it
    assert sch.one_cycle_lr(10, 10, 1.0) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-15)
    opt.step()
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        sched.step()
    with pytest.raises(ValueError, match="one_cycle_lr: step 11 is past total_steps = 10"):
        sch.one_cycle_lr(11, 10, 1.0)


@pytest.mark.parametrize("call, match", [
    (lambda: sch.power_lr(-1, 0.1, 10), "power_lr: step must be a non-negative integer"),
    (lambda: sch.power_lr(1.5, 0.1, 10), "power_lr: step must be a non-negative integer"),
    (lambda: sch.power_lr(1, 0.1, 0), "power_lr: s must be a positive number"),
    (lambda: sch.exponential_lr(1, 0.1, 1.5), r"exponential_lr: gamma must be in \(0, 1\]"),
    (lambda: sch.exponential_lr(1, -0.1, 0.9), "exponential_lr: lr0 must be a positive number"),
    (lambda: sch.piecewise_lr(1, 0.1, [20, 10]), "increasing list of positive integers"),
    (lambda: sch.piecewise_lr(1, 0.1, 10), "increasing list of positive integers"),
    (lambda: sch.cosine_lr(11, 0.1, 10), "cosine_lr: step 11 is past total_steps = 10"),
    (lambda: sch.cosine_lr(1, 0.1, 10, eta_min=0.2), r"eta_min must be in \[0, 0.1\]"),
    (lambda: sch.warmup_lr(1, 0.1, 0), "warmup_lr: warmup_steps must be a positive integer"),
    (lambda: sch.one_cycle_lr(1, 10, 1.0, pct_start=1.0), r"pct_start must be in \(0, 1\)"),
    (lambda: sch.one_cycle_lr(1, 10, 1.0, anneal_strategy="cosine"),
     "anneal_strategy must be one of cos, linear"),
    (lambda: sch.one_cycle_momentum(1, 10, base_momentum=1.5), "base_momentum must be in"),
    (lambda: sch.suggest_lr([1, 2, 3], [1, 2, 3], rule="fastest"), "rule must be one of"),
    (lambda: sch.suggest_lr([1, 2], [1, 2]), "same length >= 3"),
])
def test_bad_arguments_get_one_clear_sentence(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_guard_step_order():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = S.ExponentialLR(opt, 0.5)
    sch.guard_step_order(sched)
    with pytest.raises(sch.ScheduleOrderError, match=r"ExponentialLR.step\(\) was called before "
                       r"optimizer.step\(\)"):
        sched.step()
    p.grad = torch.ones(1)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(sch.ScheduleOrderError):
        sched.step()  # twice without an optimizer step in between
    for _ in range(3):  # several optimizer steps per scheduler step (per-epoch) are fine
        opt.step()
    sched.step()
    with pytest.raises(ValueError, match="guard_step_order: scheduler must be"):
        sch.guard_step_order(opt)


def test_smooth_is_bias_corrected_ema():
    x = np.array([4.0, 2.0, 3.0])
    assert np.allclose(sch.smooth(x, 0.0), x)
    assert sch.smooth(x, 0.9)[0] == pytest.approx(4.0)  # bias correction: no pull toward 0
    a = 0.9 * 0.1 * 4.0 + 0.1 * 2.0
    assert sch.smooth(x, 0.9)[1] == pytest.approx(a / (1 - 0.9 ** 2))


def test_rules_on_a_known_curve():
    lrs = np.logspace(-4, 0, 41)
    u = np.log10(lrs)  # -4 .. 0
    # falls fastest at u = -2.5 (lr 3.2e-3), bottoms out at u = -1 (lr 0.1), then rises
    losses = 2 - np.tanh((u + 2.5) * 2) + np.where(u > -1, 10 * (u + 1) ** 2, 0)
    assert sch.suggest_lr(lrs, losses, "min/10") == pytest.approx(
        lrs[np.argmin(losses)] / 10)
    assert sch.suggest_lr(lrs, losses, "steepest") == pytest.approx(10 ** -2.5, rel=0.3)
    v = sch.suggest_lr(lrs, losses, "valley")
    assert 1e-4 < v < lrs[np.argmin(losses)]


def _setup(opt_name="adam"):
    data = load_digits()
    model = make_mlp(64, 10, width=32, depth=2, seed=0)
    if opt_name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # a few real steps first, so the optimizer has state worth restoring
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(data.X_train[:64]), data.y_train[:64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return data, model, opt


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_range_test_restores_model_and_optimizer(opt_name):
    data, model, opt = _setup(opt_name)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in s.items()}
             for k, s in opt.state_dict()["state"].items()}
    groups = [dict(g) for g in opt.state_dict()["param_groups"]]
    rng = torch.get_rng_state()
    model.eval()
    result = sch.lr_range_test(model, data, opt, start_lr=1e-5, end_lr=1e3, num_steps=60)
    assert result.diverged and len(result.lrs) < 60  # it did blow the model up on the way
    assert not model.training  # mode restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k]), k
    after = opt.state_dict()
    assert after["param_groups"] == groups
    for k, s in state.items():
        for n, t in s.items():
            assert torch.equal(after["state"][k][n], t) if torch.is_tensor(t) else \
                after["state"][k][n] == t
    assert torch.equal(torch.get_rng_state(), rng)
    # the optimizer still drives the model's own parameters (not copies)
    assert opt.param_groups[0]["params"][0] is next(model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_range_test_curve_and_suggestions():
    data, model, _ = _setup()
    r = sch.lr_range_test(make_mlp(64, 10, width=32, depth=2, seed=0), data, "sgd",
                          num_steps=80, start_lr=1e-4, end_lr=1e3, momentum=0.9)
    assert set(r.suggestions) == set(sch.RULES)
    ratios = np.diff(np.log(r.lrs))
    assert np.allclose(ratios, math.log(1e7) / 79)  # exponential in the step
    assert np.allclose(r.smoothed, sch.smooth(r.losses, 0.98))
    assert r.diverged
    for lr in r.suggestions.values():
        assert r.lrs[0] / 10 <= lr <= r.lrs[-1]
    assert "min/10" in repr(r)
    # without smoothing the rules see the raw curve
    raw = sch.lr_range_test(make_mlp(64, 10, width=32, depth=2, seed=0), data, "sgd",
                            num_steps=80, start_lr=1e-4, end_lr=1e3, beta=0.0, momentum=0.9)
    assert np.allclose(raw.smoothed, raw.losses)


def test_range_test_bad_input():
    data, model, _ = _setup()
    with pytest.raises(ValueError, match="lr_range_test: end_lr must be a number > 0.1"):
        sch.lr_range_test(model, data, start_lr=0.1, end_lr=0.01)
    with pytest.raises(ValueError, match="lr_range_test: model must be a torch.nn.Module"):
        sch.lr_range_test("model", data)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 3"):
        sch.lr_range_test(model, data, num_steps=2)


def test_torch_warns_when_the_scheduler_steps_first():
    # what guard_step_order replaces: torch only warns, and the schedule runs one step ahead
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = S.ExponentialLR(opt, 0.5)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        sched.step()
    assert any("before `optimizer.step()`" in str(x.message) for x in w)
    assert opt.param_groups[0]["lr"] == 0.5  # the first rate, 1.0, is never used
