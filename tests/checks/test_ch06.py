"""Each chapter 06 check passes on the reference answer and fails, with one clear sentence, on the
most plausible wrong answers, None and the stub."""

import math
from functools import partial

import numpy as np
import pytest
import torch

from nncourse.checks import NotAttempted
from nncourse.checks import ch06 as check
from nncourse.labs import ch06 as lab
from tests.checks.helpers import check_fails, stub

fails = partial(check_fails, 6)


# --- 6.1 ----------------------------------------------------------------------------------

def momentum_step(param, grad, velocity, lr, momentum):
    velocity = momentum * velocity + grad
    return param - lr * velocity, velocity


def test_ex6_1_passes_on_reference(capsys):
    check.ex6_1_momentum_step(momentum_step)
    assert capsys.readouterr().out == "Exercise 6.1 passed (2 points)\n"


def test_ex6_1_fails_on_wrong_answers():
    def sutskever(param, grad, velocity, lr, momentum):  # v = mu v + lr g: equal until lr changes
        velocity = momentum * velocity + lr * grad
        return param - velocity, velocity

    def dampened(param, grad, velocity, lr, momentum):  # an average, (1 - mu) g
        velocity = momentum * velocity + (1 - momentum) * grad
        return param - lr * velocity, velocity

    def nesterov(param, grad, velocity, lr, momentum):
        velocity = momentum * velocity + grad
        return param - lr * (grad + momentum * velocity), velocity

    def old_velocity(param, grad, velocity, lr, momentum):  # steps with the previous velocity
        return param - lr * velocity, momentum * velocity + grad

    msg = fails(check.ex6_1_momentum_step, sutskever, match=r"after step 4 .* is wrong.*Hint")
    assert "lr changes" in msg
    fails(check.ex6_1_momentum_step, dampened, match=r"after step 1 .* is wrong")
    fails(check.ex6_1_momentum_step, nesterov, match=r"after step 1 .* is wrong")
    fails(check.ex6_1_momentum_step, old_velocity, match=r"after step 1 .* is wrong")
    fails(check.ex6_1_momentum_step, lambda *a: None, match="tuple of 2 tensors, got NoneType")
    fails(check.ex6_1_momentum_step, lambda p, g, v, lr, mu: p - lr * g,
          match="tuple of 2 tensors")
    with pytest.raises(NotAttempted, match="not attempted"):
        check.ex6_1_momentum_step(stub)


# --- 6.2 ----------------------------------------------------------------------------------

def adam_step(param, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v


def test_ex6_2_passes_on_reference(capsys):
    check.ex6_2_adam_step(adam_step)
    assert capsys.readouterr().out == "Exercise 6.2 passed (3 points)\n"


def test_ex6_2_fails_on_wrong_answers():
    def no_correction(param, grad, m, v, t, lr, beta1, beta2, eps):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad ** 2
        return param - lr * m / (v.sqrt() + eps), m, v

    def eps_inside(param, grad, m, v, t, lr, beta1, beta2, eps):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad ** 2
        return param - lr * (m / (1 - beta1 ** t)) / (v / (1 - beta2 ** t) + eps).sqrt(), m, v

    def t_from_zero(param, grad, m, v, t, lr, beta1, beta2, eps):
        return adam_step(param, grad, m, v, t + 1, lr, beta1, beta2, eps)

    def only_m_corrected(param, grad, m, v, t, lr, beta1, beta2, eps):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad ** 2
        return param - lr * (m / (1 - beta1 ** t)) / (v.sqrt() + eps), m, v

    fails(check.ex6_2_adam_step, no_correction, match=r"after step t=1 .* is wrong.*Hint")
    fails(check.ex6_2_adam_step, eps_inside, match=r"eps=0.001\) is wrong.*outside")
    fails(check.ex6_2_adam_step, t_from_zero, match=r"after step t=1 .* is wrong")
    fails(check.ex6_2_adam_step, only_m_corrected, match=r"after step t=1 .* is wrong")
    fails(check.ex6_2_adam_step, lambda *a: (a[0], a[2]), match="tuple of 3 tensors")
    fails(check.ex6_2_adam_step, lambda *a: (a[0] * math.nan, a[2], a[3]), match="NaN")
    with pytest.raises(NotAttempted):
        check.ex6_2_adam_step(stub)


# --- 6.3 ----------------------------------------------------------------------------------

def rmsprop_step(param, grad, square_avg, lr, alpha, eps):
    square_avg = alpha * square_avg + (1 - alpha) * grad ** 2
    return param - lr * grad / (square_avg.sqrt() + eps), square_avg


def test_ex6_3_passes_on_reference(capsys):
    check.ex6_3_rmsprop_step(rmsprop_step)
    assert capsys.readouterr().out == "Exercise 6.3 passed (2 points)\n"


def test_ex6_3_fails_on_wrong_answers():
    def eps_inside(param, grad, s, lr, alpha, eps):
        s = alpha * s + (1 - alpha) * grad ** 2
        return param - lr * grad / (s + eps).sqrt(), s

    def no_one_minus_alpha(param, grad, s, lr, alpha, eps):
        s = alpha * s + grad ** 2
        return param - lr * grad / (s.sqrt() + eps), s

    def adagrad(param, grad, s, lr, alpha, eps):
        s = s + grad ** 2
        return param - lr * grad / (s.sqrt() + eps), s

    def no_root(param, grad, s, lr, alpha, eps):
        s = alpha * s + (1 - alpha) * grad ** 2
        return param - lr * grad / (s + eps), s

    fails(check.ex6_3_rmsprop_step, eps_inside, match=r"is wrong.*outside the root")
    fails(check.ex6_3_rmsprop_step, no_one_minus_alpha, match=r"after step 1 .* is wrong")
    fails(check.ex6_3_rmsprop_step, adagrad, match=r"after step 1 .* is wrong")
    fails(check.ex6_3_rmsprop_step, no_root, match=r"after step 1 .* is wrong")
    fails(check.ex6_3_rmsprop_step, lambda *a: None, match="tuple of 2 tensors")
    with pytest.raises(NotAttempted):
        check.ex6_3_rmsprop_step(stub)


# --- 6.4 ----------------------------------------------------------------------------------

def measured_rate(kappa, lr, momentum, steps):
    xy = torch.ones(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([xy], lr=lr, momentum=momentum)
    h = torch.tensor([1.0, kappa], dtype=torch.float64)
    norms = [xy.norm().item()]
    for _ in range(2 * steps):
        opt.zero_grad()
        (0.5 * (h * xy ** 2).sum()).backward()
        opt.step()
        norms.append(xy.norm().item())
    return (norms[2 * steps] / norms[steps]) ** (1 / steps)


def best_momentum(kappa):
    r = math.sqrt(kappa)
    return ((r - 1) / (r + 1)) ** 2


def test_reference_rates_is_the_lab_experiment():
    for kappa, lr, mu in ((20.0, 0.1, 0.3), (100.0, 0.03, 0.7)):
        got = check.reference_rates(kappa, lr, [mu])[0]
        assert got == pytest.approx(lab.measured_rate(1.0, kappa, lr, mu), rel=1e-9)
        assert got == pytest.approx(measured_rate(kappa, lr, mu, 100), rel=1e-9)


def test_ex6_4_passes_on_formula_and_on_a_scan(capsys):
    check.ex6_4_best_momentum(measured_rate, best_momentum)

    def scanned(kappa):
        lr = (2 / (1 + math.sqrt(kappa))) ** 2
        grid = np.arange(0.0, 0.95, 0.01)
        return float(grid[np.argmin([measured_rate(kappa, lr, b, 60) for b in grid])])

    check.ex6_4_best_momentum(measured_rate, scanned)
    assert capsys.readouterr().out == "Exercise 6.4 passed (3 points)\n" * 2


def test_ex6_4_fails_on_wrong_answers():
    def from_start(kappa, lr, momentum, steps):  # the average rate from the start
        xy = np.ones(2)
        v = np.zeros(2)
        for _ in range(2 * steps):
            v = momentum * v + np.array([1.0, kappa]) * xy
            xy = xy - lr * v
        return (np.linalg.norm(xy) / math.sqrt(2)) ** (1 / (2 * steps))

    fails(check.ex6_4_best_momentum, from_start, best_momentum,
          match=r"measured_rate\(50, 0.05, 0.5, 60\) is wrong.*Hint")
    # the gradient-descent rate, the momentum *rate* instead of the momentum, no momentum
    fails(check.ex6_4_best_momentum, measured_rate, lambda k: (k - 1) / (k + 1),
          match=r"best_momentum\(10\) returned 0.8182.*measured best momentum .* is 0.27")
    fails(check.ex6_4_best_momentum, measured_rate,
          lambda k: (math.sqrt(k) - 1) / (math.sqrt(k) + 1), match=r"best_momentum\(10\)")
    fails(check.ex6_4_best_momentum, measured_rate, lambda k: 0.0, match=r"best_momentum\(10\)")
    fails(check.ex6_4_best_momentum, measured_rate, lambda k: None, match="returned None")
    with pytest.raises(NotAttempted):
        check.ex6_4_best_momentum(stub, best_momentum)
