import math

import pytest
import torch
from torch import nn

from nncourse import models


def test_structure():
    m = models.make_mlp(4, 3, width=8, depth=2, activation="tanh", batch_norm=True, dropout=0.5)
    kinds = [type(x) for x in m]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout,
                     nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout, nn.Linear]
    assert m[0].bias is None  # batch norm's shift makes the bias redundant
    assert m(torch.zeros(5, 4)).shape == (5, 3)


def test_widths_list_and_depth_zero():
    m = models.make_mlp(4, 2, width=[16, 8])
    assert [lay.out_features for lay in models.linear_layers(m)] == [16, 8, 2]
    assert len(models.linear_layers(models.make_mlp(4, 2, depth=0))) == 1


def test_seed_makes_weights_reproducible():
    a = models.make_mlp(10, 2, init="he_normal", seed=1)
    b = models.make_mlp(10, 2, init="he_normal", seed=1)
    c = models.make_mlp(10, 2, init="he_normal", seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)


@pytest.mark.parametrize("scheme, activation, expected_std", [
    ("he_normal", "relu", math.sqrt(2 / 400)),
    ("he_uniform", "relu", math.sqrt(2 / 400)),
    ("xavier_normal", "tanh", math.sqrt(2 / (400 + 300))),  # gain 1 whatever the activation
    ("xavier_uniform", "sigmoid", math.sqrt(2 / (400 + 300))),
    ("lecun_normal", "selu", math.sqrt(1 / 400)),
    ("normal", "relu", 0.01),
])
def test_init_std_matches_formula(scheme, activation, expected_std):
    m = nn.Sequential(nn.Linear(400, 300))
    models.init_weights_(m, scheme, activation=activation, seed=0)
    w = m[0].weight
    assert w.std().item() == pytest.approx(expected_std, rel=0.03)
    assert abs(w.mean().item()) < 0.05 * expected_std + 1e-4
    assert torch.count_nonzero(m[0].bias) == 0


def test_xavier_gain_is_explicit_and_he_follows_the_activation():
    tanh = models.make_mlp(400, 1, width=300, depth=1, activation="tanh", init="xavier_normal",
                           init_gain=5 / 3, seed=0)
    assert tanh[0].weight.std().item() == pytest.approx(5 / 3 * math.sqrt(2 / 700), rel=0.03)
    leaky = models.make_mlp(400, 1, width=300, depth=1, activation="leaky_relu",
                            init="he_normal", seed=0)
    ref = torch.empty(300, 400)
    nn.init.kaiming_normal_(ref, a=0.01, nonlinearity="leaky_relu",
                            generator=torch.Generator().manual_seed(0))
    assert torch.equal(leaky[0].weight, ref)
    prelu = models.make_mlp(400, 1, width=300, depth=1, activation="prelu", init="he_normal",
                            seed=0)  # He et al.'s rule with PReLU's initial slope 0.25
    assert prelu[0].weight.std().item() == pytest.approx(math.sqrt(2 / (1.0625 * 400)), rel=0.03)


def test_init_matches_torch_for_the_same_generator():
    ours = nn.Linear(50, 40)
    models.init_weights_(nn.Sequential(ours), "he_normal", activation="relu", seed=7)
    ref = torch.empty(40, 50)
    nn.init.kaiming_normal_(ref, nonlinearity="relu", generator=torch.Generator().manual_seed(7))
    assert torch.equal(ours.weight, ref)


def test_zeros_constant_and_scale():
    m = models.make_mlp(3, 1, width=4, init="zeros")
    assert all(torch.count_nonzero(p) == 0 for p in m.parameters())
    small = models.make_mlp(3, 1, width=4, init="he_normal", seed=0, init_scale=0.01)
    base = models.make_mlp(3, 1, width=4, init="he_normal", seed=0)
    assert torch.allclose(small[0].weight, base[0].weight * 0.01)


@pytest.mark.parametrize("kwargs, message", [
    ({"activation": "relux"}, "make_mlp: activation must be one of .*relu.*got 'relux'"),
    ({"activation": "step"}, "make_mlp: activation must be one of"),
    ({"init": "glorot"}, "make_mlp: init must be one of .*xavier_normal.*got 'glorot'"),
    ({"init_gain": 0}, "make_mlp: init_gain must be a positive number"),
    ({"dropout": 1.5}, r"dropout p must be in \[0, 1\), got 1.5"),
    ({"depth": -1}, "depth must be a non-negative integer, got -1"),
    ({"width": [4, 0]}, "width must be a positive integer or a list of them"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.make_mlp(2, 1, **kwargs)


def test_count_parameters():
    m = models.make_mlp(2, 1, width=3, depth=1)
    assert models.count_parameters(m) == (2 * 3 + 3) + (3 * 1 + 1)
