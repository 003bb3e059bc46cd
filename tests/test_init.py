import math

import pytest
import torch
from torch import nn

from nncourse import init

SHAPES = [(300, 200), (16, 8, 3, 3), (6, 5, 7), (4, 3, 2, 2, 2)]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name, param", [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
    ("conv_transpose2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 1), ("selu", None)])
def test_gain_matches_torch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(nn.init.calculate_gain(name, param))


def test_gain_formulas():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))


@pytest.mark.parametrize("shape", SHAPES + [(7, 1)])
def test_fans_match_torch(shape):
    t = torch.empty(shape)
    assert init.calculate_fan_in_and_fan_out(t) == nn.init._calculate_fan_in_and_fan_out(t)


def test_fans_by_hand():
    assert init.calculate_fan_in_and_fan_out(torch.empty(64, 32)) == (32, 64)
    assert init.calculate_fan_in_and_fan_out(torch.empty(64, 32, 3, 3)) == (32 * 9, 64 * 9)
    assert init.calculate_correct_fan(torch.empty(64, 32, 5), "fan_out") == 64 * 5
    assert init.calculate_correct_fan(torch.empty(64, 32, 5), "FAN_IN") == 32 * 5


def test_bad_arguments_list_the_valid_values():
    with pytest.raises(ValueError, match="nonlinearity must be one of linear, .*relu.*got 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="mode must be one of fan_in, fan_out; got 'fan_avg'"):
        init.kaiming_normal_(torch.empty(3, 4), mode="fan_avg")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(torch.empty(5))
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "0.1")
    with pytest.raises(ValueError, match="std must be a non-negative number"):
        init.normal_(torch.empty(3), std=-1.0)
    with pytest.raises(ValueError, match="a <= b"):
        init.uniform_(torch.empty(3), 1.0, 0.0)
    with pytest.raises(ValueError,
                       match="init_model_: scheme must be one of default, zeros, .*got 'glorot'"):
        init.init_model_(nn.Linear(2, 2), "glorot")


CASES = [
    ("xavier_uniform_", {"gain": 1.3}), ("xavier_normal_", {}), ("xavier_normal_", {"gain": 2.0}),
    ("kaiming_uniform_", {"a": 0.2, "mode": "fan_out"}), ("kaiming_uniform_", {}),
    ("kaiming_normal_", {"nonlinearity": "relu"}),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "tanh"}),
    ("normal_", {"mean": 0.5, "std": 0.3}), ("uniform_", {"a": -2.0, "b": 1.0}),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name, kwargs", CASES)
def test_same_generator_gives_the_same_weights_as_torch(name, kwargs, shape):
    ours, theirs = torch.empty(shape), torch.empty(shape)
    out = getattr(init, name)(ours, generator=gen(1), **kwargs)
    getattr(nn.init, name)(theirs, generator=gen(1), **kwargs)
    assert out is ours  # in place, and returned
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_lecun_normal_is_kaiming_normal_linear():
    a, b = torch.empty(50, 40), torch.empty(50, 40)
    init.lecun_normal_(a, generator=gen(3))
    nn.init.kaiming_normal_(b, nonlinearity="linear", generator=gen(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("fn, kwargs, std, bound", [
    (init.xavier_uniform_, {}, math.sqrt(2 / 1000), math.sqrt(6 / 1000)),
    (init.xavier_uniform_, {"gain": 5 / 3}, 5 / 3 * math.sqrt(2 / 1000),
     5 / 3 * math.sqrt(6 / 1000)),
    (init.xavier_normal_, {}, math.sqrt(2 / 1000), None),
    (init.kaiming_uniform_, {"nonlinearity": "relu"}, math.sqrt(2 / 400), math.sqrt(6 / 400)),
    (init.kaiming_normal_, {"nonlinearity": "relu"}, math.sqrt(2 / 400), None),
    (init.kaiming_normal_, {"nonlinearity": "relu", "mode": "fan_out"}, math.sqrt(2 / 600), None),
    (init.kaiming_normal_, {"a": 0.2}, math.sqrt(2 / 1.04 / 400), None),
    (init.lecun_normal_, {}, math.sqrt(1 / 400), None),
])
def test_empirical_statistics_match_the_formulas(fn, kwargs, std, bound):
    w = fn(torch.empty(600, 400), generator=gen(0), **kwargs)  # fan_in 400, fan_out 600
    assert abs(w.mean().item()) < 0.01 * std
    assert w.std().item() == pytest.approx(std, rel=0.01)
    if bound is not None:
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() > 0.999 * bound


def test_conv_weights_use_the_receptive_field():
    w = init.kaiming_normal_(torch.empty(64, 32, 5, 5), nonlinearity="relu", generator=gen(0))
    assert w.std().item() == pytest.approx(math.sqrt(2 / (32 * 25)), rel=0.02)


def test_zeros_constant_and_no_grad():
    w = nn.Parameter(torch.ones(3, 4))
    assert init.zeros_(w) is w and not w.any()
    init.constant_(w, 0.5)
    assert torch.equal(w, torch.full((3, 4), 0.5)) and w.requires_grad
    init.xavier_normal_(w)  # a leaf that requires grad can be filled in place
    assert w.grad_fn is None


def test_zero_element_tensor_is_left_alone():
    assert init.kaiming_normal_(torch.empty(0, 3)).shape == (0, 3)


def test_init_model_initializes_every_layer_reproducibly():
    def net():
        return nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Conv1d(2, 4, 3), nn.Linear(20, 1))

    a = init.init_model_(net(), "he_normal", seed=5)
    b = init.init_model_(net(), "he_normal", seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not a[0].bias.any()
    assert torch.equal(init.init_model_(net(), "constant", value=0.5)[3].weight,
                       torch.full((1, 20), 0.5))
    m = init.init_model_(net(), "normal", std=10.0, bias="normal", seed=0)
    assert m[0].bias.std().item() > 1.0
    # Xavier's gain is explicit: 1 unless given, whatever the nonlinearity.
    m = init.init_model_(net(), "xavier_normal", nonlinearity="tanh", seed=0)
    assert m[0].weight.std().item() == pytest.approx(math.sqrt(2 / 50), rel=0.15)
    m = init.init_model_(net(), "xavier_normal", gain=init.calculate_gain("tanh"), seed=0)
    assert m[0].weight.std().item() == pytest.approx(5 / 3 * math.sqrt(2 / 50), rel=0.15)
    kept = net()
    before = [p.clone() for p in kept.parameters()]
    init.init_model_(kept, "default", scale=2.0)
    assert torch.equal(kept[0].weight, 2 * before[0]) and torch.equal(kept[0].bias, before[1])


@pytest.mark.parametrize("shape", [(30, 20), (8, 4, 3, 3)])
def test_variance_scaling_is_each_named_scheme(shape):
    def draw(fn, *args, **kwargs):
        return fn(torch.empty(shape), *args, generator=torch.Generator().manual_seed(3), **kwargs)

    vs = init.variance_scaling_
    # fan_avg with scale 1 is Glorot/Xavier, in both distributions, bit for bit with torch
    assert torch.equal(draw(vs, 1.0, "fan_avg"), draw(torch.nn.init.xavier_normal_))
    assert torch.equal(draw(vs, 1.0, "fan_avg", "uniform"), draw(torch.nn.init.xavier_uniform_))
    # fan_in with scale 2 is He for ReLU; fan_out picks Kaiming's backward mode
    he = draw(torch.nn.init.kaiming_normal_, nonlinearity="relu")
    assert torch.allclose(draw(vs, 2.0, "fan_in"), he, rtol=1e-6, atol=0)
    he_out = draw(torch.nn.init.kaiming_normal_, mode="fan_out", nonlinearity="relu")
    assert torch.allclose(draw(vs, 2.0, "fan_out"), he_out, rtol=1e-6, atol=0)
    assert torch.allclose(draw(vs, 1.0, "fan_in"), draw(init.lecun_normal_), rtol=1e-6, atol=0)


def test_variance_scaling_statistics_and_arguments():
    w = init.variance_scaling_(torch.empty(400, 600), 1.0, "fan_avg",
                               generator=torch.Generator().manual_seed(0))
    assert w.var().item() == pytest.approx(1 / 500, rel=0.02)
    with pytest.raises(ValueError, match="fan_in, fan_out, fan_avg"):
        init.variance_scaling_(torch.empty(3, 3), mode="avg")
    with pytest.raises(ValueError, match="'normal' or 'uniform'"):
        init.variance_scaling_(torch.empty(3, 3), distribution="truncated")
    with pytest.raises(ValueError):
        init.variance_scaling_(torch.empty(3, 3), scale=-1.0)
