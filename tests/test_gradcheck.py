"""Finite differences agree with analytic gradients, and catch a wrong backward pass."""

import numpy as np
import pytest
import torch

from nncourse import backprop as bp
from nncourse import gradcheck as gc


def test_numerical_gradient_of_a_known_function_and_x_is_restored():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4))
    x = rng.normal(size=(3, 4))
    x0 = x.copy()
    grad = gc.numerical_gradient(lambda v: float(np.sum(np.exp(a * v))), x)
    np.testing.assert_allclose(grad, a * np.exp(a * x0), rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(x, x0)


def test_numerical_gradient_matches_torch_autograd_gradcheck_function():
    rng = np.random.default_rng(1)
    x = rng.normal(size=5)
    t = torch.tensor(x, requires_grad=True)
    (torch.sin(t) * t ** 2).sum().backward()
    grad = gc.numerical_gradient(lambda v: float(np.sum(np.sin(v) * v ** 2)), x)
    assert gc.relative_error(t.grad.numpy(), grad) < 1e-9


def test_relative_error():
    assert gc.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert gc.relative_error(np.ones(2), -np.ones(2)) == pytest.approx(1.0)
    assert gc.relative_error([3.0, 4.0], [3.0, 4.0 + 1e-6]) == pytest.approx(1e-7)
    with pytest.raises(ValueError, match="same shape"):
        gc.relative_error(np.ones(2), np.ones(3))


@pytest.mark.parametrize("activation", sorted(bp.ACTIVATIONS))
@pytest.mark.parametrize("loss, n_out", [("bce", 1), ("mse", 2), ("cross_entropy", 3)])
def test_correct_backward_passes(activation, loss, n_out):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 3))
    y = {"bce": rng.integers(0, 2, 6), "mse": rng.normal(size=(6, 2)),
         "cross_entropy": rng.integers(0, 3, 6)}[loss]
    net = bp.MLP([3, 4, n_out], activation, seed=3)
    errors = gc.check_gradients(net, x, y, loss)
    assert list(errors) == list(net.parameters())
    assert max(errors.values()) < gc.TOLERANCE
    # the net is left unperturbed, with the gradients of the unperturbed net
    value = bp.loss_value(net, x, y, loss)
    assert value == pytest.approx(bp.loss_and_backward(bp.MLP([3, 4, n_out], activation, seed=3),
                                                       x, y, loss), abs=1e-15)


def test_a_planted_bug_is_caught_where_it_is():
    class ForgetfulTanh(bp.Activation):
        def backward(self, grad_out):  # forgets to multiply by tanh'(z)
            return grad_out

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(8, 2)), rng.integers(0, 2, 8)
    net = bp.MLP([2, 5, 1], "tanh", seed=0)
    net.layers[1] = ForgetfulTanh("tanh")
    errors = gc.check_gradients(net, x, y)
    assert errors["2.weight"] < gc.TOLERANCE and errors["2.bias"] < gc.TOLERANCE  # above the bug
    assert errors["0.weight"] > 1e-2 and errors["0.bias"] > 1e-2  # below it


def test_numerical_gradient_wants_float64():
    with pytest.raises(ValueError, match="float64"):
        gc.numerical_gradient(lambda v: 0.0, np.ones(2, dtype=np.float32))
    with pytest.raises(ValueError, match="eps must be positive"):
        gc.numerical_gradient(lambda v: 0.0, np.ones(2), eps=0)


def test_verdict_prints_the_bound_for_rounding_noise_and_the_value_for_a_bug():
    from nncourse.gradcheck import verdict
    assert verdict(7.3e-10) == "< 1e-07   ok"
    assert verdict(3.2e-7) == "3.2e-07   ok"
    assert verdict(0.1234) == "1.2e-01   WRONG"
    assert verdict(5e-9, bound=1e-8) == "< 1e-08   ok"
    with pytest.raises(ValueError, match="bound must be positive"):
        verdict(1e-9, bound=0)
