"""nncourse.normalization against torch.nn.BatchNorm1d / LayerNorm and sklearn's StandardScaler."""

import itertools

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler
from torch import nn

from nncourse import normalization as N

TOL = {"rtol": 1e-12, "atol": 1e-12}
OPTIONS = [opts + (True,) for opts in itertools.product(
    [0.1, 0.5, 1.0, 0.0, None], [True, False], [True, False], [1e-5, 1e-3])]
OPTIONS += [(0.1, True, True, 1e-5, False), (None, True, False, 1e-5, False)]  # bias=False


def _pair(momentum, affine, track, eps, bias=True, features=5):
    kw = {"eps": eps, "momentum": momentum, "affine": affine, "track_running_stats": track,
          "dtype": torch.float64, "bias": bias}
    ours, ref = N.BatchNorm1d(features, **kw), nn.BatchNorm1d(features, **kw)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial gamma and beta, the same in both
        for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
            p.copy_(torch.rand(features, generator=gen, dtype=torch.float64) + 0.5)
            q.copy_(p)
    return ours, ref


def _assert_same_state(ours, ref):
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        torch.testing.assert_close(a[k], b[k], **TOL)


@pytest.mark.parametrize("momentum,affine,track,eps,bias", OPTIONS)
@pytest.mark.parametrize("three_d", [False, True])
def test_batchnorm_equals_torch_over_many_steps(momentum, affine, track, eps, bias, three_d):
    ours, ref = _pair(momentum, affine, track, eps, bias)
    _assert_same_state(ours, ref)
    gen = torch.Generator().manual_seed(0)
    for step in range(12):
        train = step % 4 != 3  # three training steps, then an evaluation step
        ours.train(train)
        ref.train(train)
        n = 2 + step % 5  # batch sizes 2..6: the unbiased factor m/(m-1) matters
        shape = (n, 5, 3) if three_d else (n, 5)
        x = (torch.randn(*shape, generator=gen, dtype=torch.float64) * 3 + 2 + step)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = ours(xa), ref(xb)
        torch.testing.assert_close(ya, yb, **TOL)
        g = torch.randn(*shape, generator=gen, dtype=torch.float64)
        (ya * g).sum().backward()
        (yb * g).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, **TOL)
        for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, **TOL)
        ours.zero_grad()
        ref.zero_grad()
        _assert_same_state(ours, ref)
    if track:
        assert ours.num_batches_tracked.item() == 9  # eval steps do not count


def test_running_var_is_unbiased_and_momentum_is_the_new_batch_weight():
    bn = N.BatchNorm1d(1, momentum=0.1, affine=False, dtype=torch.float64)
    x = torch.tensor([[1.0], [2.0], [3.0], [6.0]], dtype=torch.float64)
    bn(x)
    assert bn.running_mean.item() == pytest.approx(0.9 * 0 + 0.1 * 3.0)
    assert bn.running_var.item() == pytest.approx(0.9 * 1 + 0.1 * x.var(unbiased=True).item())
    assert bn.num_batches_tracked.item() == 1


def test_momentum_none_is_the_cumulative_average():
    bn = N.BatchNorm1d(2, momentum=None, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randn(8, 2, generator=gen, dtype=torch.float64) + k for k in range(5)]
    for b in batches:
        bn(b)
    torch.testing.assert_close(bn.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([b.var(0) for b in batches]).mean(0))


def test_eval_uses_running_stats_and_train_forward_moves_buffers():
    bn = N.BatchNorm1d(3)
    x = torch.randn(10, 3) * 5 + 3
    bn.eval()
    torch.testing.assert_close(bn(x), x / torch.sqrt(torch.tensor(1 + 1e-5)))  # mean 0, var 1
    assert bn.running_mean.abs().sum().item() == 0
    bn.train()
    with torch.no_grad():
        bn(x)  # no gradient, no optimizer, yet the buffers move
    assert bn.running_mean.abs().sum().item() > 0


def test_state_dict_loads_both_ways():
    ours, ref = _pair(0.1, True, True, 1e-5)
    ref.train()
    ref(torch.randn(7, 5, dtype=torch.float64))
    ours.load_state_dict(ref.state_dict())
    _assert_same_state(ours, ref)
    ref2 = nn.BatchNorm1d(5, dtype=torch.float64)
    ref2.load_state_dict(ours.state_dict())
    _assert_same_state(ours, ref2)


def test_parameter_count_is_two_trainable_and_two_buffers_per_feature():
    bn = N.BatchNorm1d(64)
    assert sum(p.numel() for p in bn.parameters()) == 128
    assert bn.running_mean.numel() + bn.running_var.numel() == 128
    assert sum(p.numel() for p in N.BatchNorm1d(64, affine=False).parameters()) == 0


def test_batch_of_one_in_training_is_a_clear_error_like_torch():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel.*variance"):
        N.BatchNorm1d(3)(torch.randn(1, 3))
    bn = N.BatchNorm1d(3).eval()
    assert bn(torch.randn(1, 3)).shape == (1, 3)  # eval mode: running statistics, fine
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        N.BatchNorm1d(3, track_running_stats=False).eval()(torch.randn(1, 3))


@pytest.mark.parametrize("kwargs,match", [
    ({"num_features": 0}, "num_features must be a positive integer"),
    ({"num_features": 3, "eps": 0}, "eps must be a positive number"),
    ({"num_features": 3, "momentum": 1.5}, r"momentum must be in \[0, 1\]"),
])
def test_batchnorm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        N.BatchNorm1d(**kwargs)


def test_batchnorm_bad_input_shape():
    with pytest.raises(ValueError, match="expected 4 features"):
        N.BatchNorm1d(4)(torch.randn(5, 3))
    with pytest.raises(ValueError, match="2-D"):
        N.BatchNorm1d(4)(torch.randn(5))


@pytest.mark.parametrize("shape,affine,bias", [
    (6, True, True), ((4, 6), True, True), (6, False, True), (6, True, False)])
def test_layernorm_equals_torch(shape, affine, bias):
    ours = N.LayerNorm(shape, eps=1e-4, elementwise_affine=affine, bias=bias, dtype=torch.float64)
    ref = nn.LayerNorm(shape, eps=1e-4, elementwise_affine=affine, bias=bias, dtype=torch.float64)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p, q in zip(ours.parameters(), ref.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
            q.copy_(p)
    full = (3, 2) + ((shape,) if isinstance(shape, int) else shape)
    x = torch.randn(*full, generator=gen, dtype=torch.float64) * 4 + 1
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = ours(xa), ref(xb)
    torch.testing.assert_close(ya, yb, **TOL)
    g = torch.randn(*full, generator=gen, dtype=torch.float64)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **TOL)


def test_layernorm_same_in_train_and_eval_and_with_one_example():
    ln = N.LayerNorm(5)
    x = torch.randn(1, 5)
    torch.testing.assert_close(ln.train()(x), ln.eval()(x))
    with pytest.raises(ValueError, match="last dimensions must be"):
        ln(torch.randn(2, 4))


@pytest.mark.parametrize("bn_cls", [nn.BatchNorm1d, N.BatchNorm1d])
@pytest.mark.parametrize("affine,bias", [(True, True), (False, True), (True, False)])
def test_fold_batchnorm_equals_linear_then_bn_in_eval(bn_cls, affine, bias):
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    linear = nn.Linear(7, 4, bias=bias, dtype=torch.float64)
    bn = bn_cls(4, affine=affine, dtype=torch.float64)
    for _ in range(5):  # train the running statistics away from 0 / 1
        bn(linear(torch.randn(16, 7, generator=gen, dtype=torch.float64) * 2 + 1))
    if affine:
        with torch.no_grad():
            bn.weight.copy_(torch.rand(4, generator=gen, dtype=torch.float64) + 0.5)
            bn.bias.copy_(torch.randn(4, generator=gen, dtype=torch.float64))
    bn.eval()
    folded = N.fold_batchnorm(linear, bn)
    assert isinstance(folded, nn.Linear) and folded.weight.dtype == torch.float64
    x = torch.randn(50, 7, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(linear(x)), **TOL)


def test_fold_batchnorm_errors():
    with pytest.raises(ValueError, match="4 features but the Linear layer has 3"):
        N.fold_batchnorm(nn.Linear(2, 3), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="no running statistics"):
        N.fold_batchnorm(nn.Linear(2, 3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(TypeError, match="nn.Linear"):
        N.fold_batchnorm(nn.ReLU(), nn.BatchNorm1d(3))
    with pytest.raises(TypeError, match="BatchNorm1d"):
        N.fold_batchnorm(nn.Linear(2, 3), nn.LayerNorm(3))


def test_standardizer_equals_sklearn_including_constant_features():
    from sklearn.datasets import load_digits

    X = load_digits().data[:1000]
    X_new = load_digits().data[1000:]
    assert (X.std(0) == 0).any()  # digits has constant pixels
    ours = N.Standardizer().fit(X)
    ref = StandardScaler().fit(X)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.transform(X_new), ref.transform(X_new), rtol=1e-12,
                               atol=1e-12)
    assert np.all(ours.transform(X)[:, ours.constant_] == 0)
    assert ours.constant_.sum() == (X.max(0) == X.min(0)).sum()


def test_standardizer_keeps_tensor_type_and_uses_train_statistics_only():
    gen = torch.Generator().manual_seed(6)
    X_train = torch.randn(100, 3, generator=gen) * 10 + 5
    X_val = torch.randn(40, 3, generator=gen) * 10 + 50
    s = N.Standardizer().fit(X_train)
    out = s.transform(X_val)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.mean().item() > 3  # shifted val data stays shifted: no peeking at its statistics
    torch.testing.assert_close(s.fit_transform(X_train).mean(0), torch.zeros(3), atol=1e-5,
                               rtol=0)


def test_standardizer_errors():
    with pytest.raises(RuntimeError, match="call fit"):
        N.Standardizer().transform(np.ones((2, 2)))
    with pytest.raises(ValueError, match="3 features, the Standardizer was fitted on 2"):
        N.Standardizer().fit(np.random.rand(5, 2)).transform(np.ones((2, 3)))
    with pytest.raises(ValueError, match="2-D"):
        N.Standardizer().fit(np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        N.Standardizer().fit(np.array([[1.0, np.nan]]))
