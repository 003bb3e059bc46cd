"""Checks for chapter 06's exercises (``exercises/06_optimizers.ipynb``).

Each update exercise is run for several steps beside ``torch.optim`` on inputs the student has not
seen, with the learning rate changed part-way (which is what tells torch's momentum convention
from Sutskever's).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nncourse.checks import Exercise, exercise

__all__ = ["ex6_1_momentum_step", "ex6_2_adam_step", "ex6_3_rmsprop_step",
           "ex6_4_best_momentum", "reference_rates"]

_STEPS = 6


def _stream(seed: int, shape=(3, 4)):
    """Random parameters and a sequence of gradients (float64)."""
    gen = torch.Generator().manual_seed(seed)
    param = torch.randn(*shape, generator=gen, dtype=torch.float64)
    grads = [torch.randn(*shape, generator=gen, dtype=torch.float64) * (1 + t)
             for t in range(_STEPS)]
    return param, grads


def _lrs(lr: float) -> list[float]:
    return [lr] * 3 + [lr / 10] * (_STEPS - 3)  # a schedule: the rate drops after step 3


def _torch_run(make_opt, param, grads, lrs):
    """Parameters after each step of ``torch.optim``, and the optimizer's state at the end."""
    p = param.clone().requires_grad_(True)
    opt = make_opt([p])
    out = []
    for g, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"] = lr
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone())
    return out, opt.state[p]


def _pair(ex: Exercise, result, n: int, call: str):
    if not isinstance(result, (tuple, list)) or len(result) != n:
        ex.fail(f"{call} must return a tuple of {n} tensors, got "
                f"{type(result).__name__}" + (f" of length {len(result)}"
                                              if isinstance(result, (tuple, list)) else ""),
                "end the function with `return " + ", ".join(
                    ["new_param", "new_velocity"] if n == 2 else ["new_param", "m", "v"]) + "`")
    return [torch.as_tensor(np.array(ex.array(r, call, dtype="float"))) for r in result]


def ex6_1_momentum_step(momentum_step) -> None:
    """Exercise 6.1: ``momentum_step(param, grad, velocity, lr, momentum)`` ->
    ``(new_param, new_velocity)``, torch's convention."""
    with exercise("6.1", points=2, name="momentum step") as ex:
        for seed, mu in ((61, 0.9), (610, 0.5)):
            param, grads = _stream(seed)
            lrs = _lrs(0.1)
            expected, _ = _torch_run(lambda p, mu=mu: torch.optim.SGD(p, lr=0.1, momentum=mu),
                                     param, grads, lrs)
            p, v = param.clone(), torch.zeros_like(param)
            for t, (g, lr) in enumerate(zip(grads, lrs), 1):
                call = f"momentum_step(...) at step {t} (lr={lr:g}, momentum={mu})"
                p, v = _pair(ex, ex.call(momentum_step, p.clone(), g.clone(), v.clone(), lr, mu,
                                         call=call), 2, call)
                ex.close(p, expected[t - 1].numpy(), f"the parameter after step {t} "
                         f"(lr={lr:g}, momentum={mu})", rtol=1e-7, atol=1e-10,
                         hint="torch's convention: velocity = momentum * velocity + grad, then "
                              "param - lr * velocity (the lr multiplies the whole velocity, so "
                              "it matters when the lr changes, as it does after step 3)")


def ex6_2_adam_step(adam_step) -> None:
    """Exercise 6.2: ``adam_step(param, grad, m, v, t, lr, beta1, beta2, eps)`` ->
    ``(new_param, m, v)`` with bias correction; ``t`` counts from 1."""
    with exercise("6.2", points=3, name="Adam step") as ex:
        for seed, (b1, b2), eps in ((62, (0.9, 0.999), 1e-8), (620, (0.8, 0.9), 1e-3)):
            param, grads = _stream(seed)
            lrs = _lrs(0.01)
            expected, _ = _torch_run(lambda p, b1=b1, b2=b2, eps=eps: torch.optim.Adam(
                p, lr=0.01, betas=(b1, b2), eps=eps), param, grads, lrs)
            p, m, v = param.clone(), torch.zeros_like(param), torch.zeros_like(param)
            for t, (g, lr) in enumerate(zip(grads, lrs), 1):
                call = f"adam_step(...) at t={t} (betas=({b1}, {b2}), eps={eps:g})"
                p, m, v = _pair(ex, ex.call(adam_step, p.clone(), g.clone(), m.clone(),
                                            v.clone(), t, lr, b1, b2, eps, call=call), 3, call)
                ex.close(p, expected[t - 1].numpy(), f"the parameter after step t={t} "
                         f"(betas=({b1}, {b2}), eps={eps:g})", rtol=1e-7, atol=1e-10,
                         hint="m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2; "
                              "param - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) "
                              "+ eps) -- eps outside the square root, t starting at 1")


def ex6_3_rmsprop_step(rmsprop_step) -> None:
    """Exercise 6.3: ``rmsprop_step(param, grad, square_avg, lr, alpha, eps)`` ->
    ``(new_param, new_square_avg)``, as ``torch.optim.RMSprop`` (no momentum, not centered)."""
    with exercise("6.3", points=2, name="RMSProp step") as ex:
        for seed, alpha, eps in ((63, 0.99, 1e-8), (630, 0.9, 0.1)):
            param, grads = _stream(seed)
            lrs = _lrs(0.01)
            expected, _ = _torch_run(lambda p, alpha=alpha, eps=eps: torch.optim.RMSprop(
                p, lr=0.01, alpha=alpha, eps=eps), param, grads, lrs)
            p, s = param.clone(), torch.zeros_like(param)
            for t, (g, lr) in enumerate(zip(grads, lrs), 1):
                call = f"rmsprop_step(...) at step {t} (alpha={alpha}, eps={eps:g})"
                p, s = _pair(ex, ex.call(rmsprop_step, p.clone(), g.clone(), s.clone(), lr, alpha,
                                         eps, call=call), 2, call)
                ex.close(p, expected[t - 1].numpy(), f"the parameter after step {t} "
                         f"(alpha={alpha}, eps={eps:g})", rtol=1e-7, atol=1e-10,
                         hint="square_avg = alpha * square_avg + (1 - alpha) * grad**2, then "
                              "param - lr * grad / (sqrt(square_avg) + eps): eps outside the root")


# --- 6.4: predict, then measure -------------------------------------------------------------

def reference_rates(kappa: float, lr: float, momenta, steps: int = 100) -> np.ndarray:
    """The measured rate :math:`(\\lVert x_{2T}\\rVert/\\lVert x_T\\rVert)^{1/T}` of heavy-ball
    SGD (torch's convention) on :math:`(x^2 + \\kappa y^2)/2` from (1, 1), for many momenta at
    once (the same experiment as ``nncourse.labs.ch06.measured_rate``, vectorized)."""
    mu = np.asarray(momenta, dtype=float)[:, None]
    h = np.array([1.0, kappa])
    x = np.ones((len(mu), 2))
    v = np.zeros_like(x)
    norms = []
    for t in range(2 * steps + 1):
        norms.append(np.linalg.norm(x, axis=1))
        g = h * x
        v = g if t == 0 else mu * v + g
        x = x - lr * v
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return (norms[2 * steps] / norms[steps]) ** (1 / steps)


def _optimal_lr(kappa: float) -> float:
    return (2 / (1 + math.sqrt(kappa))) ** 2


def ex6_4_best_momentum(measured_rate, best_momentum) -> None:
    """Exercise 6.4: ``measured_rate(kappa, lr, momentum, steps)`` measures the rate on the
    quadratic; ``best_momentum(kappa)`` is the momentum that minimizes it at
    ``lr = (2 / (1 + sqrt(kappa)))**2``. The check re-runs the scan and requires
    ``best_momentum`` within 0.03 of the measured best."""
    with exercise("6.4", points=3, name="the best momentum, measured") as ex:
        for kappa, lr, mu in ((50.0, 0.05, 0.5), (8.0, 0.3, 0.2), (200.0, _optimal_lr(200), 0.8)):
            call = f"measured_rate({kappa:g}, {lr:.4g}, {mu}, 60)"
            got = ex.number(ex.call(measured_rate, kappa, lr, mu, 60, call=call), call)
            ex.close(got, float(reference_rates(kappa, lr, [mu], 60)[0]), call, rtol=1e-6,
                     hint="run torch.optim.SGD(momentum=...) for 2 * steps steps from (1, 1) on "
                          "f = (x**2 + kappa * y**2) / 2 and return "
                          "(norm at step 2*steps / norm at step steps) ** (1 / steps)")
        grid = np.round(np.arange(0.0, 0.96, 0.005), 3)
        for kappa in (10.0, 100.0):
            rates = reference_rates(kappa, _optimal_lr(kappa), grid)
            measured = float(grid[np.nanargmin(rates)])
            call = f"best_momentum({kappa:g})"
            got = ex.number(ex.call(best_momentum, kappa, call=call), call)
            ex.true(abs(got - measured) <= 0.03,
                    f"{call} returned {got:.4g}, but the measured best momentum at "
                    f"lr = (2 / (1 + sqrt(kappa)))**2 is {measured:.3g} (tolerance 0.03)",
                    "scan the momentum with your measured_rate and take the smallest rate, or "
                    "use the theory of this chapter's section 1 -- and check the two agree")
