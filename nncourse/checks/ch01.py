"""Checks for chapter 01's exercises (``exercises/01_backprop_from_scratch.ipynb``).

Each check compares the student's function with the reference in :mod:`nncourse.backprop` /
:mod:`nncourse.gradcheck` (and torch autograd) on inputs the notebook never showed, including
logits large enough to overflow a naive ``np.exp``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from nncourse import backprop
from nncourse.checks import Exercise, exercise
from nncourse.gradcheck import TOLERANCE

__all__ = ["ex1_1_sigmoid", "ex1_2_dense_backward", "ex1_3_bce_with_logits",
           "ex1_4_gradient_checker", "ex1_5_step_size", "EPS_GRID"]


def _no_overflow(ex: Exercise, fn, label: str, hint: str):
    """``fn`` with NumPy's overflow / invalid / divide-by-zero turned into a clear failure."""
    def strict(*args):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            try:
                return fn(*args)
            except FloatingPointError as exc:
                ex.fail(f"{label} is not numerically stable: NumPy reported '{exc}' for the "
                        "large inputs in the check", hint)
    strict.__name__ = getattr(fn, "__name__", "your function")
    return strict


def ex1_1_sigmoid(sigmoid, sigmoid_prime) -> None:
    """Exercise 1.1: ``sigmoid(z)`` (stable for any z) and ``sigmoid_prime(z)`` for NumPy arrays."""
    with exercise("1.1", points=1, name="sigmoid and its derivative") as ex:
        z = np.random.default_rng(11).normal(size=(3, 5)) * 4
        s = ex.array(ex.call(sigmoid, z.copy(), call="sigmoid(z)"), "sigmoid(z)", shape=z.shape,
                     dtype="float")
        ex.close(s, backprop.sigmoid(z), "sigmoid(z)", rtol=1e-9, atol=1e-12,
                 hint="sigma(z) = 1 / (1 + exp(-z))")
        ds = ex.array(ex.call(sigmoid_prime, z.copy(), call="sigmoid_prime(z)"),
                      "sigmoid_prime(z)", shape=z.shape, dtype="float")
        ex.close(ds, backprop.sigmoid_prime(z), "sigmoid_prime(z)", rtol=1e-9, atol=1e-12,
                 hint="sigma'(z) = sigma(z) * (1 - sigma(z)): apply it to sigma(z), not to z")
        big = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
        hint = ("np.exp(-z) overflows for z < -709 (and np.where evaluates both branches, so "
                "it does not help on its own); find a form of sigma that only exponentiates "
                "numbers <= 0 -- sigma(z) for z < 0 can be written with exp(z) instead")
        s = ex.array(ex.call(_no_overflow(ex, sigmoid, "sigmoid(z)", hint), big.copy(),
                             call="sigmoid(z)"), "sigmoid(z) for |z| up to 1000", shape=big.shape)
        ex.close(s, backprop.sigmoid(big), "sigmoid(z) for |z| up to 1000", rtol=1e-9,
                 atol=1e-300, hint=hint)
        ds = ex.array(ex.call(_no_overflow(ex, sigmoid_prime, "sigmoid_prime(z)", hint),
                              big.copy(), call="sigmoid_prime(z)"),
                      "sigmoid_prime(z) for |z| up to 1000", shape=big.shape)
        ex.close(ds, backprop.sigmoid_prime(big), "sigmoid_prime(z) for |z| up to 1000",
                 rtol=1e-9, atol=1e-12, hint="build sigmoid_prime on your stable sigmoid")


def _triple(ex: Exercise, out, label: str):
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        ex.fail(f"{label} should return a tuple (grad_x, grad_weight, grad_bias), got "
                f"{'None' if out is None else type(out).__name__}"
                f"{'' if not isinstance(out, (tuple, list)) else f' of length {len(out)}'}",
                "end the function with `return grad_x, grad_weight, grad_bias`")
    return out


def ex1_2_dense_backward(dense_backward) -> None:
    """Exercise 1.2: gradients of ``Z = X W^T + b`` for a batch, compared with torch autograd."""
    with exercise("1.2", points=2, name="backward pass of a dense layer") as ex:
        rng = np.random.default_rng(12)
        hints = {
            "grad_x": "dL/dX = grad_out @ weight, shape (n, in)",
            "grad_weight": "weight has shape (out, in) like nn.Linear, so dL/dW = grad_out.T @ x",
            "grad_bias": "every example adds to the same bias: sum grad_out over the batch "
                         "axis (axis 0), do not average",
        }
        for n, n_in, n_out in ((6, 3, 4), (1, 5, 2)):
            x, w, b, g = (rng.normal(size=s) for s in ((n, n_in), (n_out, n_in), (n_out,),
                                                         (n, n_out)))
            label = f"dense_backward(x, weight, grad_out) for a batch of {n}"
            out = _triple(ex, ex.call(dense_backward, x.copy(), w.copy(), g.copy(),
                                      call="dense_backward(x, weight, grad_out)"), label)
            tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
            F.linear(tx, tw, tb).backward(torch.from_numpy(g))
            for (name, hint), got, ref in zip(hints.items(), out, (tx.grad, tw.grad, tb.grad)):
                what = f"{name} (batch of {n}, in={n_in}, out={n_out})"
                arr = ex.array(got, what, dtype="float")
                ex.true(arr.shape == tuple(ref.shape),
                        f"expected {what} to have shape {tuple(ref.shape)}, got {arr.shape}", hint)
                ex.close(arr, ref.numpy(), what, rtol=1e-9, atol=1e-12, hint=hint)


def ex1_3_bce_with_logits(bce_with_logits, bce_with_logits_grad) -> None:
    """Exercise 1.3: mean binary cross-entropy from logits and its gradient, stable for any
    logit."""
    with exercise("1.3", points=2, name="binary cross-entropy from logits") as ex:
        rng = np.random.default_rng(13)
        z = rng.normal(size=(7, 1)) * 3
        y = rng.integers(0, 2, size=(7, 1)).astype(float)
        tz = torch.tensor(z, requires_grad=True)
        ref = F.binary_cross_entropy_with_logits(tz, torch.from_numpy(y))
        ref.backward()
        loss = ex.number(ex.call(bce_with_logits, z.copy(), y.copy(),
                                 call="bce_with_logits(logits, y)"), "bce_with_logits(logits, y)")
        ex.close(loss, ref.item(), "bce_with_logits(logits, y)", rtol=1e-9, atol=1e-12,
                 hint="the mean over the batch of -[y log(sigma(z)) + (1 - y) log(1 - sigma(z))]")
        grad_hint = ("the loss is a mean, so dL/dz = (sigmoid(z) - y) / N with N the number of "
                     "elements")
        grad = ex.array(ex.call(bce_with_logits_grad, z.copy(), y.copy(),
                                call="bce_with_logits_grad(logits, y)"),
                        "bce_with_logits_grad(logits, y)", shape=z.shape, dtype="float")
        ex.close(grad, tz.grad.numpy(), "bce_with_logits_grad(logits, y)", rtol=1e-9,
                 atol=1e-12, hint=grad_hint)

        big = np.array([-1000.0, 1000.0, 40.0, -40.0])  # confidently wrong, twice; right, twice
        yb = np.array([1.0, 0.0, 1.0, 0.0])
        hint = ("rewrite the loss as max(z, 0) - z * y + log(1 + exp(-|z|)) (np.log1p), which "
                "never exponentiates a large number or takes log(0)")
        what = "bce_with_logits(logits, y) for logits of +-1000"
        loss = ex.number(ex.call(_no_overflow(ex, bce_with_logits, "bce_with_logits", hint),
                                 big.copy(), yb.copy(), call="bce_with_logits(logits, y)"), what)
        ex.close(loss, backprop.binary_cross_entropy_with_logits(big, yb), what, rtol=1e-9,
                 hint=hint)
        what = "bce_with_logits_grad(logits, y) for logits of +-1000"
        grad = ex.array(ex.call(_no_overflow(ex, bce_with_logits_grad, "bce_with_logits_grad",
                                             "use a sigmoid that is stable for large |z| "
                                             "(exercise 1.1)"),
                                big.copy(), yb.copy(), call="bce_with_logits_grad(logits, y)"),
                        what, shape=big.shape)
        ex.close(grad, backprop.binary_cross_entropy_with_logits_grad(big, yb), what, rtol=1e-9,
                 atol=1e-12, hint=grad_hint)


class _ForgetfulTanh(backprop.Activation):
    """The planted bug: backward forgets to multiply by tanh'(z)."""

    def backward(self, grad_out):
        return grad_out


def ex1_4_gradient_checker(numerical_gradient, relative_error) -> None:
    """Exercise 1.4: central differences and the relative error; they must catch a planted bug."""
    with exercise("1.4", points=2, name="gradient checker") as ex:
        rng = np.random.default_rng(14)
        # relative_error first: the bug test below depends on it
        a, n = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
        cases = [(a, n, np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n))),
                 (a, a.copy(), 0.0), (a, -a, 1.0), (np.zeros(3), np.zeros(3), 0.0)]
        for a_, n_, expected in cases:
            got = ex.number(ex.call(relative_error, a_.copy(), n_.copy(),
                                    call="relative_error(analytic, numerical)"),
                            "relative_error(analytic, numerical)")
            label = ("relative_error of two zero arrays" if not np.any(a_) else
                     "relative_error(analytic, numerical)")
            ex.close(got, expected, label, rtol=1e-9, atol=1e-15,
                     hint="||a - n|| / (||a|| + ||n||) with np.linalg.norm, and 0 when both "
                          "norms are 0")

        # numerical_gradient on a curved function, where a one-sided difference is visibly off
        coef = rng.uniform(1, 3, size=(3, 4))
        x = rng.normal(size=(3, 4)) * 0.5
        x0 = x.copy()
        got = ex.array(ex.call(numerical_gradient, lambda v: float(np.sum(np.exp(coef * v))), x,
                               1e-6, call="numerical_gradient(f, x, eps=1e-6)"),
                       "numerical_gradient(f, x)", shape=x.shape, dtype="float")
        ex.true(np.array_equal(x, x0), "numerical_gradient(f, x) left x changed: after the call "
                "some entries differ from their original values",
                "after computing the two differences for x[i], set x[i] back to its old value")
        ex.close(got, coef * np.exp(coef * x0), "numerical_gradient(f, x) of f = sum(exp(c * x))",
                 rtol=1e-7, atol=1e-9,
                 hint="use the central difference (f(x + eps) - f(x - eps)) / (2 * eps); the "
                      "one-sided (f(x + eps) - f(x)) / eps is only accurate to about eps")

        # the planted bug: a network whose tanh layer forgets its derivative
        xb, yb = rng.normal(size=(10, 3)), rng.integers(0, 2, 10)
        for buggy in (False, True):
            net = backprop.MLP([3, 4, 1], "tanh", seed=14)
            if buggy:
                net.layers[1] = _ForgetfulTanh("tanh")
            backprop.loss_and_backward(net, xb, yb)
            analytic = net.gradients()["0.weight"].copy()
            weight = net.parameters()["0.weight"]
            numeric = ex.array(ex.call(numerical_gradient,
                                       lambda _, net=net: backprop.loss_value(net, xb, yb),
                                       weight, 1e-6, call="numerical_gradient(f, weight)"),
                               "numerical_gradient(f, weight)", shape=weight.shape)
            err = ex.number(ex.call(relative_error, analytic, numeric,
                                    call="relative_error(analytic, numerical)"),
                            "relative_error(analytic, numerical)")
            if buggy:
                ex.true(err > 1e-3, f"your checker missed the planted bug: for a backward pass "
                        f"that forgets tanh'(z) it gives a relative error of {err:.2g}, expected "
                        "above 1e-3", "numerical_gradient must perturb the array it is given in "
                        "place and call f after each change; relative_error must grow with "
                        "the difference")
            else:
                ex.true(err < TOLERANCE, f"your checker flags a correct backward pass: relative "
                        f"error {err:.2g}, expected below {TOLERANCE:g}",
                        "perturb the array you were given in place (f reads it through the "
                        "network) and use the central difference with eps = 1e-6")


# --- 1.5 predict, measure and explain ----------------------------------------------------------

#: The step sizes exercise 1.5 scans, largest first.
EPS_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12)


def gradcheck_error_reference(eps: float) -> float:
    """Exercise 1.5's experiment: the relative error of central differences with step ``eps``
    on the first weight of a small tanh network (float64)."""
    from nncourse import gradcheck

    rng = np.random.default_rng(15)
    xb, yb = rng.normal(size=(10, 3)), rng.integers(0, 2, 10)
    net = backprop.MLP([3, 4, 1], "tanh", seed=15)
    backprop.loss_and_backward(net, xb, yb)
    analytic = net.gradients()["0.weight"].copy()
    weight = net.parameters()["0.weight"]
    numeric = gradcheck.numerical_gradient(lambda _: backprop.loss_value(net, xb, yb), weight,
                                           eps)
    return gradcheck.relative_error(analytic, numeric)


def ex1_5_step_size(gradcheck_error, best_eps) -> None:
    """Exercise 1.5: how the gradient check's error depends on the step, measured."""
    with exercise("1.5", points=2, name="measure the best step size") as ex:
        hint = ("use the network and batch of the statement (MLP([3, 4, 1], 'tanh', seed=15), "
                "rng = np.random.default_rng(15) for x then y), the gradient of '0.weight' from "
                "loss_and_backward, and your numerical_gradient and relative_error from 1.4")
        refs = {eps: gradcheck_error_reference(eps) for eps in EPS_GRID}
        for eps, rtol in ((1e-2, 0.01), (1e-4, 0.05), (1e-9, 2.0)):
            call = f"gradcheck_error({eps:g})"
            got = ex.number(ex.call(gradcheck_error, eps, call=call), call)
            # truncation error (large eps) is exact arithmetic; round-off (small eps) varies
            # with the order of operations, so it is accepted within a factor 3
            ok = (abs(got - refs[eps]) <= rtol * refs[eps] if rtol < 1
                  else refs[eps] / 3 <= got <= refs[eps] * 3)
            accepted = f"within {rtol:.0%}" if rtol < 1 else "within a factor 3"
            ex.true(ok, f"{call} returned {got:.3g}; re-running the experiment gives "
                    f"{refs[eps]:.3g} ({accepted} is accepted)", hint)
        best = min(refs, key=refs.get)
        call = "best_eps()"
        got = ex.number(ex.call(best_eps, call=call), call)
        ex.true(any(math.isclose(got, e) for e in EPS_GRID),
                f"{call} must return one of EPS_GRID, got {got:g}")
        ex.true(best / 10.5 <= got <= best * 10.5,
                f"{call} returned {got:g}; re-running the experiment the smallest error is at "
                f"eps = {best:g} (one decade either side is accepted)",
                "return the eps of EPS_GRID whose gradcheck_error is smallest")
        def order(x):  # round-off values vary in their last digits: print the decade only
            return f"~1e{round(math.log10(x)):+03d}"

        ex.note(f"Measured: error {refs[1e-2]:.1e} at eps = 1e-2, {refs[1e-4]:.1e} at 1e-4, "
                f"smallest ({order(refs[best])}) at eps = {best:g}, back up to "
                f"{order(refs[1e-9])} at 1e-9 and {order(refs[1e-12])} at 1e-12.")
        ex.note("Why: the central difference's truncation error shrinks like eps^2 (100x per "
                "decade), while round-off in f(x + eps) - f(x - eps) grows like 1e-16 / eps; "
                "they balance near the cube root of float64's 1e-16, around 1e-5. In float32 "
                "(1e-7) the best eps is near 1e-2 or 1e-3: gradient checks run in float64.")
