"""nncourse.activations against torch.nn.functional (values) and torch autograd (derivatives)."""

import math

import pytest
import torch
import torch.nn.functional as F

from nncourse import activations as A

# (our f, our f', torch reference, keyword arguments)
CASES = [
    ("sigmoid", A.sigmoid, A.sigmoid_grad, torch.sigmoid, {}),
    ("tanh", A.tanh, A.tanh_grad, torch.tanh, {}),
    ("relu", A.relu, A.relu_grad, F.relu, {}),
    ("leaky_relu", A.leaky_relu, A.leaky_relu_grad, F.leaky_relu, {}),
    ("leaky_relu_0.2", A.leaky_relu, A.leaky_relu_grad, F.leaky_relu, {"negative_slope": 0.2}),
    ("elu", A.elu, A.elu_grad, F.elu, {}),
    ("elu_0.5", A.elu, A.elu_grad, F.elu, {"alpha": 0.5}),
    ("selu", A.selu, A.selu_grad, F.selu, {}),
    ("gelu", A.gelu, A.gelu_grad, F.gelu, {}),
    ("gelu_tanh", A.gelu, A.gelu_grad, F.gelu, {"approximate": "tanh"}),
    ("silu", A.silu, A.silu_grad, F.silu, {}),
    ("softplus", A.softplus, A.softplus_grad, F.softplus, {}),
    ("softplus_beta2", A.softplus, A.softplus_grad, F.softplus, {"beta": 2.0}),
]
IDS = [c[0] for c in CASES]
LARGE = torch.tensor([-1e4, -1000.0, -100.0, -30.0, -20.0, -0.5, 0.0, 1e-8, 0.5, 20.0, 30.0,
                      100.0, 1000.0, 1e4], dtype=torch.float64)


def inputs(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(500, generator=gen, dtype=torch.float64) * 3, LARGE])
    return x.to(dtype)


def autograd_derivative(fn, x, **kw):
    x = x.clone().requires_grad_(True)
    fn(x, **kw).sum().backward()
    return x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,f,df,ref,kw", CASES, ids=IDS)
def test_values_and_derivatives_match_torch(name, f, df, ref, kw, dtype):
    x = inputs(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    got = f(x, **kw)
    assert got.dtype == dtype
    assert torch.isfinite(got).all(), f"{name} gives non-finite values"
    torch.testing.assert_close(got, ref(x, **kw), **tol)
    expected_grad = autograd_derivative(ref, x, **kw)
    got_grad = df(x, **kw)
    assert torch.isfinite(got_grad).all(), f"{name}' gives non-finite values"
    torch.testing.assert_close(got_grad, expected_grad, **tol)
    # our functions are differentiable torch code: autograd through them agrees too
    torch.testing.assert_close(autograd_derivative(f, x, **kw), expected_grad, **tol)


def test_derivatives_at_zero_are_the_true_ones():
    zero = torch.zeros(1, dtype=torch.float64)
    assert autograd_derivative(A.sigmoid, zero).item() == pytest.approx(0.25)
    assert autograd_derivative(A.tanh, zero).item() == pytest.approx(1.0)
    assert autograd_derivative(A.softplus, zero).item() == pytest.approx(0.5)
    assert A.sigmoid_grad(zero).item() == pytest.approx(0.25)


def test_naive_formulas_would_overflow():
    """The reason for the stable forms: the textbook formula gives nan/inf here."""
    x = torch.tensor([-1000.0, 1000.0])
    assert not torch.isfinite(torch.exp(x) / (1 + torch.exp(x))).all()
    assert torch.isfinite(A.sigmoid(x)).all()
    assert A.sigmoid(x).tolist() == [0.0, 1.0]


def test_step_and_identity():
    x = torch.tensor([-2.0, 0.0, 3.0])
    assert A.step(x).tolist() == [0.0, 0.0, 1.0]
    assert A.step_grad(x).tolist() == [0.0, 0.0, 0.0]
    assert A.identity(x).tolist() == x.tolist()
    assert A.identity_grad(x).tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(A.step(x), torch.heaviside(x, torch.tensor(0.0)))


@pytest.mark.parametrize("weight", [torch.tensor([0.25]), torch.tensor([0.1, -0.3, 0.7])])
def test_prelu_matches_torch_for_input_and_weight(weight):
    gen = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(40, 3, generator=gen, dtype=torch.float64) * 3,
                   LARGE[:, None].expand(-1, 3)])
    w = weight.to(torch.float64).clone().requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    F.prelu(xr, w).sum().backward()
    torch.testing.assert_close(A.prelu(x, w.detach()), F.prelu(x, w.detach()))
    torch.testing.assert_close(A.prelu_grad(x, w.detach()), xr.grad)
    dw = A.prelu_grad_weight(x, w.detach())
    dw = dw.sum() if w.numel() == 1 else dw.sum(0)
    torch.testing.assert_close(dw.reshape(w.shape), w.grad)


def test_prelu_rejects_wrong_weight_shape():
    with pytest.raises(ValueError, match="one per channel"):
        A.prelu(torch.zeros(4, 3), torch.ones(2))


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_softmax_matches_torch_and_survives_large_logits(scale):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(8, 5, generator=gen) * scale
    s = A.softmax(x, dim=1)
    assert torch.isfinite(s).all()
    torch.testing.assert_close(s, torch.softmax(x, dim=1))
    torch.testing.assert_close(s.sum(1), torch.ones(8))
    torch.testing.assert_close(A.log_softmax(x, dim=1), torch.log_softmax(x, dim=1))
    torch.testing.assert_close(A.softmax(x, dim=0), torch.softmax(x, dim=0))
    torch.testing.assert_close(A.argmax(x, dim=1), torch.argmax(x, dim=1))
    assert torch.equal(A.argmax(s, dim=1), A.argmax(x, dim=1))


def test_softmax_of_logits_1000():
    s = A.softmax(torch.tensor([1000.0, 999.0, 0.0]))
    expected = torch.tensor([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1)), 0.0])
    torch.testing.assert_close(s, expected)


def test_softmax_jacobian_matches_autograd():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, generator=gen, dtype=torch.float64)
    expected = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, 0), x)
    torch.testing.assert_close(A.softmax_jacobian(x), expected)
    with pytest.raises(ValueError, match="one vector"):
        A.softmax_jacobian(torch.zeros(2, 3))


def test_argument_validation():
    with pytest.raises(ValueError, match="approximate must be"):
        A.gelu(torch.zeros(2), approximate="fast")
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        A.elu(torch.zeros(2), alpha=float("nan"))
    with pytest.raises(ValueError, match="beta must be positive"):
        A.softplus(torch.zeros(2), beta=0)
    with pytest.raises(ValueError, match="activation must be one of"):
        A.get("relu6")


def test_numpy_and_int_inputs_are_accepted():
    out = A.relu([-1, 2])
    assert out.dtype == torch.float32 and out.tolist() == [0.0, 2.0]


def test_zoo_registry_and_properties():
    assert A.get("swish") is A.ZOO["silu"]
    for name, act in A.ZOO.items():
        x = torch.linspace(-3, 3, 7, dtype=torch.float64)
        assert act(x).shape == x.shape and act.derivative(x).shape == x.shape, name
    relu = A.properties("relu")
    assert relu["range"] == (0.0, math.inf)
    assert relu["mean_gauss"] == pytest.approx(1 / math.sqrt(2 * math.pi), abs=1e-6)
    assert A.properties("tanh")["mean_gauss"] == pytest.approx(0.0, abs=1e-9)
    assert A.properties("sigmoid")["range"] == (0.0, 1.0)
    assert A.properties("sigmoid")["grad_at_0"] == pytest.approx(0.25)
    assert A.properties("elu", 2.0)["range"][0] == pytest.approx(-2.0)
    # SELU keeps a standard normal at mean ~0: that is its point
    assert abs(A.properties("selu")["mean_gauss"]) < 0.01
