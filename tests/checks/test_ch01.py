"""Each chapter 01 check passes on the reference answer and fails, with one clear sentence, on
plausible wrong answers."""

import re
from functools import partial

import numpy as np
import pytest

from nncourse import backprop as bp
from nncourse import gradcheck as gc
from nncourse.checks import NotAttempted
from nncourse.checks import ch01 as check
from tests.checks.helpers import check_fails, stub

fails = partial(check_fails, 1)


# --- 1.1 sigmoid ---------------------------------------------------------------------------------

def naive_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_1_1_reference_passes(capsys):
    check.ex1_1_sigmoid(bp.sigmoid, bp.sigmoid_prime)
    assert capsys.readouterr().out == "Exercise 1.1 passed (1 point)\n"


def test_1_1_wrong_answers():
    fails(check.ex1_1_sigmoid, lambda z: 1 / (1 + np.exp(z)), bp.sigmoid_prime,
          match=r"sigmoid\(z\) is wrong")
    fails(check.ex1_1_sigmoid, bp.sigmoid, lambda z: z * (1 - z),
          match=r"sigmoid_prime\(z\) is wrong.*apply it to sigma\(z\), not to z")
    fails(check.ex1_1_sigmoid, naive_sigmoid, bp.sigmoid_prime,
          match=r"sigmoid\(z\) is not numerically stable: NumPy reported 'overflow")
    fails(check.ex1_1_sigmoid, bp.sigmoid, lambda z: naive_sigmoid(z) * (1 - naive_sigmoid(z)),
          match=r"sigmoid_prime\(z\) is not numerically stable")
    fails(check.ex1_1_sigmoid, lambda z: None, bp.sigmoid_prime, match="returned None")
    fails(check.ex1_1_sigmoid, lambda z: bp.sigmoid(z).ravel(), bp.sigmoid_prime,
          match=r"to have shape \(3, 5\)")
    fails(check.ex1_1_sigmoid, lambda z: z * np.nan, bp.sigmoid_prime, match="NaN")
    with pytest.raises(NotAttempted):
        check.ex1_1_sigmoid(stub, stub)


# --- 1.2 dense backward --------------------------------------------------------------------------

def test_1_2_reference_passes(capsys):
    check.ex1_2_dense_backward(bp.dense_backward)
    assert capsys.readouterr().out == "Exercise 1.2 passed (2 points)\n"


def test_1_2_wrong_answers():
    fails(check.ex1_2_dense_backward, lambda x, w, g: (g @ w, x.T @ g, g.sum(0)),
          match=r"grad_weight .* to have shape \(4, 3\), got \(3, 4\).*grad_out.T @ x")
    fails(check.ex1_2_dense_backward, lambda x, w, g: (g @ w, g.T @ x, g.mean(0)),
          match=r"grad_bias .* is wrong.*do not average")
    fails(check.ex1_2_dense_backward, lambda x, w, g: (g @ w.T, g.T @ x, g.sum(0)),
          match=r"raised ValueError: matmul")
    fails(check.ex1_2_dense_backward, lambda x, w, g: (g @ w, g.T @ x),
          match=r"should return a tuple \(grad_x, grad_weight, grad_bias\), got tuple of length 2")
    fails(check.ex1_2_dense_backward, lambda x, w, g: None, match="got None")
    fails(check.ex1_2_dense_backward, lambda x, w, g: (g @ w, g.T @ x, g.sum(0) * np.nan),
          match="NaN")
    with pytest.raises(NotAttempted):
        check.ex1_2_dense_backward(stub)


# --- 1.3 BCE from logits -------------------------------------------------------------------------

def naive_bce(z, y):
    p = naive_sigmoid(z)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def test_1_3_reference_passes(capsys):
    check.ex1_3_bce_with_logits(bp.binary_cross_entropy_with_logits,
                                bp.binary_cross_entropy_with_logits_grad)
    assert capsys.readouterr().out == "Exercise 1.3 passed (2 points)\n"


def test_1_3_wrong_answers():
    grad = bp.binary_cross_entropy_with_logits_grad
    fails(check.ex1_3_bce_with_logits, naive_bce, grad,
          match=r"bce_with_logits is not numerically stable.*log1p")
    fails(check.ex1_3_bce_with_logits, bp.binary_cross_entropy_with_logits,
          lambda z, y: bp.sigmoid(z) - y, match=r"grad\(logits, y\) is wrong.*/ N")
    fails(check.ex1_3_bce_with_logits, bp.binary_cross_entropy_with_logits,
          lambda z, y: (y - bp.sigmoid(z)) / z.size, match=r"grad\(logits, y\) is wrong")
    fails(check.ex1_3_bce_with_logits, bp.binary_cross_entropy_with_logits,
          lambda z, y: (naive_sigmoid(z) - y) / z.size,
          match=r"bce_with_logits_grad is not numerically stable.*exercise 1.1")
    fails(check.ex1_3_bce_with_logits,
          lambda z, y: float(np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-abs(z))))), grad,
          match=r"bce_with_logits\(logits, y\) is wrong")
    fails(check.ex1_3_bce_with_logits, lambda z, y: np.ones(3), grad, match="single number")
    fails(check.ex1_3_bce_with_logits, bp.binary_cross_entropy_with_logits,
          lambda z, y: grad(z, y).ravel(), match=r"to have shape \(7, 1\)")
    with pytest.raises(NotAttempted):
        check.ex1_3_bce_with_logits(stub, stub)


# --- 1.4 gradient checker ------------------------------------------------------------------------

def forward_difference(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        f0 = f(x)
        old = x[i]
        x[i] = old + eps
        grad[i] = (f(x) - f0) / eps
        x[i] = old
    return grad


def not_restored(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        x[i] += eps
        fp = f(x)
        x[i] -= 2 * eps
        grad[i] = (fp - f(x)) / (2 * eps)
    return grad


def on_a_copy(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        grad[i] = (f(xp) - f(xm)) / (2 * eps)
    return grad


def test_1_4_reference_passes(capsys):
    check.ex1_4_gradient_checker(gc.numerical_gradient, gc.relative_error)
    assert capsys.readouterr().out == "Exercise 1.4 passed (2 points)\n"


# one wrong answer divides 0 by 0 on purpose: NumPy warns, the check must still catch it
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_1_4_wrong_answers():
    rel = gc.relative_error
    msg = fails(check.ex1_4_gradient_checker, forward_difference, rel,
                match=r"numerical_gradient\(f, x\) of f = sum\(exp\(c \* x\)\) is wrong.*central")
    # issue 19: enough digits to see the difference (not "expected 9.35043, got 9.35043")
    expected, got = re.search(r"expected (\S+), got (\S+?)\.? Hint", msg).groups()
    assert expected != got and float(expected) != float(got), msg
    fails(check.ex1_4_gradient_checker, not_restored, rel, match=r"left x changed")
    fails(check.ex1_4_gradient_checker, on_a_copy, rel,
          match=r"flags a correct backward pass: relative error 1, expected below 1e-06")
    fails(check.ex1_4_gradient_checker, gc.numerical_gradient,
          lambda a, n: float(np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n))),
          match=r"relative_error of two zero arrays .*got nan|NaN")
    fails(check.ex1_4_gradient_checker, gc.numerical_gradient,
          lambda a, n: float(np.max(np.abs(a - n))), match=r"relative_error.* is wrong")
    fails(check.ex1_4_gradient_checker, gc.numerical_gradient, lambda a, n: 0.0,
          match=r"relative_error.* is wrong")
    with pytest.raises(NotAttempted):
        check.ex1_4_gradient_checker(stub, stub)


def test_1_4_a_checker_that_never_flags_misses_the_bug():
    # right on the small formula cases, but never reports more than 1e-4 on the network
    def capped(a, n):
        return min(gc.relative_error(a, n), 1e-4) if np.size(a) > 6 else gc.relative_error(a, n)

    fails(check.ex1_4_gradient_checker, gc.numerical_gradient, capped,
          match=r"missed the planted bug: .* relative error of 0.0001, expected above 1e-3")


# --- 1.5 predict, measure and explain ---------------------------------------------------------

def _best_eps(error_fn):
    return lambda: min(check.EPS_GRID, key=error_fn)


def test_1_5_passes_and_explains(capsys):
    ref = check.gradcheck_error_reference
    check.ex1_5_step_size(ref, _best_eps(ref))
    out = capsys.readouterr().out
    assert out.endswith("Exercise 1.5 passed (2 points)\n") and "eps^2" in out


def test_1_5_wrong_answers():
    ref = check.gradcheck_error_reference

    def forward(eps):  # one-sided difference: error ~ eps, not eps^2
        rng = np.random.default_rng(15)
        xb, yb = rng.normal(size=(10, 3)), rng.integers(0, 2, 10)
        net = bp.MLP([3, 4, 1], "tanh", seed=15)
        bp.loss_and_backward(net, xb, yb)
        a = net.gradients()["0.weight"].copy()
        w = net.parameters()["0.weight"]
        f0 = bp.loss_value(net, xb, yb)
        n = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + eps
            n[i] = (bp.loss_value(net, xb, yb) - f0) / eps
            w[i] = old
        return gc.relative_error(a, n)

    fails(check.ex1_5_step_size, forward, _best_eps(ref),
          match=r"gradcheck_error\(0.01\) returned .* re-running the experiment gives")
    # "smaller is always more accurate": the prediction the exercise exists to test
    fails(check.ex1_5_step_size, ref, lambda: min(check.EPS_GRID),
          match=r"best_eps\(\) returned 1e-12; .* smallest error is at eps = 1e-05")
    fails(check.ex1_5_step_size, lambda eps: ref(eps) * 7, _best_eps(ref),  # e.g. a max-abs error
          match=r"gradcheck_error\(0.01\) returned")
    fails(check.ex1_5_step_size, ref, lambda: 3e-5, match=r"must return one of EPS_GRID")
