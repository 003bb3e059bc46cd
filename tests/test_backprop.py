"""The NumPy reference network equals torch autograd (float64) on random shapes and data."""

import warnings
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nncourse import backprop as bp


def random_problem(rng, loss, n_out):
    n = int(rng.integers(1, 9))
    n_in = int(rng.integers(1, 6))
    x = rng.normal(size=(n, n_in))
    if loss == "bce":
        y = rng.integers(0, 2, n).astype(float)
    elif loss == "mse":
        y = rng.normal(size=(n, n_out))
    else:
        y = rng.integers(0, n_out, n)
    return x, y


def torch_loss(loss, logits, y):
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y).reshape(logits.shape))
    if loss == "mse":
        return F.mse_loss(logits, torch.from_numpy(y))
    return F.cross_entropy(logits, torch.from_numpy(y))


@pytest.mark.parametrize("activation", sorted(bp.ACTIVATIONS))
@pytest.mark.parametrize("loss", sorted(bp.LOSSES))
def test_gradients_equal_torch_autograd(activation, loss):
    rng = np.random.default_rng(zlib.crc32(f"{activation}-{loss}".encode()))
    for trial in range(3):
        n_out = 1 if loss == "bce" else int(rng.integers(2, 5))
        hidden = [int(h) for h in rng.integers(1, 7, size=int(rng.integers(0, 3)))]
        x, y = random_problem(rng, loss, n_out)
        net = bp.MLP([x.shape[1], *hidden, n_out], activation, seed=trial)
        value = bp.loss_and_backward(net, x, y, loss)
        model = bp.to_torch(net)
        out = model(torch.from_numpy(x))
        ref = torch_loss(loss, out, y)
        ref.backward()
        assert value == pytest.approx(ref.item(), abs=1e-12)
        grads = net.gradients()
        named = dict(model.named_parameters())
        assert set(named) == set(grads)
        for name, p in named.items():
            np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=0, atol=1e-10,
                                       err_msg=name)


def test_forward_equals_torch_and_parameter_names_match():
    net = bp.MLP([3, 5, 4, 2], "relu", seed=1)
    x = np.random.default_rng(0).normal(size=(6, 3))
    model = bp.to_torch(net)
    np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).detach().numpy(), atol=1e-12)
    assert list(net.parameters()) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight",
                                      "4.bias"]
    assert net.parameters()["2.weight"].shape == (4, 5)  # (out, in) like nn.Linear


@pytest.mark.parametrize("name, fn", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                                      ("relu", torch.relu), ("identity", lambda t: t)])
def test_activation_derivatives_equal_autograd(name, fn):
    z = np.random.default_rng(2).normal(size=(4, 5)) * 3
    f, f_prime = bp.ACTIVATIONS[name]
    t = torch.tensor(z, requires_grad=True)
    fn(t).sum().backward()
    np.testing.assert_allclose(f(z), fn(torch.from_numpy(z)).numpy(), atol=1e-15)
    np.testing.assert_allclose(f_prime(z), t.grad.numpy(), atol=1e-15)


def test_sigmoid_is_stable_for_huge_inputs():
    z = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = bp.sigmoid(z)
        ds = bp.sigmoid_prime(z)
    np.testing.assert_allclose(s, torch.sigmoid(torch.from_numpy(z)).numpy(), rtol=1e-15, atol=0)
    assert ds[2] == 0.25 and ds[0] == 0 and ds[-1] == 0


def test_dense_backward_equals_autograd():
    rng = np.random.default_rng(3)
    x, w, b, g = (rng.normal(size=s) for s in ((7, 3), (4, 3), (4,), (7, 4)))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    F.linear(tx, tw, tb).backward(torch.from_numpy(g))
    for got, ref in zip(bp.dense_backward(x, w, g), (tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(got, ref.numpy(), atol=1e-12)


def test_losses_are_finite_and_exact_for_huge_logits():
    z = np.array([[-1000.0], [1000.0], [800.0], [-800.0]])
    y = np.array([[1.0], [0.0], [1.0], [0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = bp.binary_cross_entropy_with_logits(z, y)
        grad = bp.binary_cross_entropy_with_logits_grad(z, y)
        ce = bp.cross_entropy(np.array([[1000.0, -1000.0, 0.0]]), np.array([1]))
    assert value == pytest.approx(500.0)  # (1000 + 1000 + 0 + 0) / 4
    np.testing.assert_allclose(grad, [[-0.25], [0.25], [0.0], [0.0]])
    assert ce == pytest.approx(2000.0)


def test_mse_and_softmax_match_torch():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    assert bp.mse_loss(a, b) == pytest.approx(F.mse_loss(torch.from_numpy(a),
                                                         torch.from_numpy(b)).item(), rel=1e-14)
    np.testing.assert_allclose(bp.softmax(a), torch.softmax(torch.from_numpy(a), 1).numpy(),
                               atol=1e-15)


def test_step_is_gradient_descent_in_place():
    net = bp.MLP([2, 3, 1], seed=0)
    x, y = np.random.default_rng(5).normal(size=(4, 2)), np.array([0, 1, 1, 0])
    bp.loss_and_backward(net, x, y)
    before = {k: v.copy() for k, v in net.parameters().items()}
    params = net.parameters()
    net.step(0.1)
    for k, p in net.parameters().items():
        assert p is params[k]
        np.testing.assert_allclose(p, before[k] - 0.1 * net.gradients()[k])


def test_fit_learns_and_calls_back():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)  # XOR-like: needs the hidden layer
    seen = []
    net = bp.MLP([2, 8, 1], "tanh", seed=0)
    h = bp.fit(net, x, y, lr=1.0, epochs=300, x_val=x, y_val=y,
               callback=lambda e, n: seen.append(e))
    assert seen == list(range(301)) and len(h.train_loss) == len(h.val_acc) == 301
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert h.train_acc[-1] >= 0.9
    assert h.val_loss[-1] == pytest.approx(h.train_loss[-1])


@pytest.mark.parametrize("call, message", [
    (lambda: bp.MLP([2], "tanh"), "at least an input and an output"),
    (lambda: bp.MLP([2, 1], "swish"), "activation must be one of"),
    (lambda: bp.Dense(0, 3), "n_in must be a positive integer"),
    (lambda: bp.MLP([2, 1])(np.ones((3, 3))), r"expected input of shape \(n, 2\)"),
    (lambda: bp.mse_loss(np.ones(3), np.ones(4)), "same shape"),
    (lambda: bp.cross_entropy(np.ones((2, 3)), np.array([0, 3])), r"class indices must be in"),
    (lambda: bp.cross_entropy(np.ones((2, 3)), np.array([0.0, 1.0])), "integer class indices"),
    (lambda: bp.fit(bp.MLP([2, 1]), np.ones((2, 2)), np.ones(2), lr=-1), "lr must be a positive"),
    (lambda: bp.fit(bp.MLP([2, 1]), np.ones((2, 2)), np.ones(2), loss="hinge"), "loss must be"),
])
def test_bad_arguments_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="forward before backward"):
        bp.Dense(2, 2).backward(np.ones((1, 2)))
