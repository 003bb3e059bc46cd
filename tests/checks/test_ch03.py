"""Each chapter-03 check passes on the reference answer and fails, with one clear sentence, on
plausible wrong answers."""

import math
from functools import partial

import pytest
import torch
from torch import nn

from nncourse import init
from nncourse.checks import ExerciseError, NotAttempted
from nncourse.checks import ch03 as check


def fails(check_fn, answer, *fragments):
    with pytest.raises(ExerciseError) as info:
        check_fn(answer)
    message = str(info.value)
    assert message.startswith("Exercise 3.") and message.count("\n") == 0
    for fragment in fragments:
        assert fragment in message, message
    return message


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise 3.x: replace this line with your code")


# --- 3.1 fans ---------------------------------------------------------------------------------

def test_fans_reference_passes(capsys):
    check.ex3_1_fans(init.calculate_fan_in_and_fan_out)
    assert capsys.readouterr().out == "Exercise 3.1 passed (1 point)\n"


def test_fans_wrong_answers():
    fails(check.ex3_1_fans, lambda t: (t.shape[0], t.shape[1]), "swapped")
    fails(check.ex3_1_fans, lambda t: (t.shape[1], t.shape[0]) if t.dim() >= 2 else
          (_ for _ in ()).throw(ValueError()), "Conv1d", "receptive field")
    fails(check.ex3_1_fans, lambda t: None, "returned None")
    fails(check.ex3_1_fans, lambda t: (float(t.shape[1]) / 2, t.shape[0]), "whole numbers")

    def no_validation(t):
        rf = math.prod(t.shape[2:])
        return t.shape[1] * rf, t.shape[0] * rf

    fails(check.ex3_1_fans, no_validation, "raised IndexError, expected ValueError")
    fails(check.ex3_1_fans, lambda t: (1, 1) if t.dim() < 2 else no_validation(t), "did not raise")
    with pytest.raises(NotAttempted, match="not attempted"):
        check.ex3_1_fans(stub)


# --- 3.2 xavier_uniform_ ----------------------------------------------------------------------

def test_xavier_uniform_reference_and_torch_pass(capsys):
    check.ex3_2_xavier_uniform(init.xavier_uniform_)
    check.ex3_2_xavier_uniform(nn.init.xavier_uniform_)
    assert capsys.readouterr().out == "Exercise 3.2 passed (2 points)\n" * 2


def test_xavier_uniform_wrong_answers():
    def fan_in_only(t, gain=1.0, generator=None):
        fan_in, _ = init.calculate_fan_in_and_fan_out(t)
        a = gain * math.sqrt(6 / fan_in)
        return t.uniform_(-a, a, generator=generator)

    def normal(t, gain=1.0, generator=None):
        return init.xavier_normal_(t, gain, generator)

    def no_sqrt3(t, gain=1.0, generator=None):
        fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
        a = gain * math.sqrt(2 / (fan_in + fan_out))
        return t.uniform_(-a, a, generator=generator)

    def ignores_gain(t, gain=1.0, generator=None):
        return init.xavier_uniform_(t, 1.0, generator)

    def new_tensor(t, gain=1.0, generator=None):
        return init.xavier_uniform_(torch.empty_like(t), gain, generator)

    def no_return(t, gain=1.0, generator=None):
        init.xavier_uniform_(t, gain, generator)

    def ignores_generator(t, gain=1.0, generator=None):
        return init.xavier_uniform_(t, gain)

    def nan(t, gain=1.0, generator=None):
        return init.xavier_uniform_(t, gain, generator).fill_(float("nan"))

    fails(check.ex3_2_xavier_uniform, fan_in_only, "above the bound")
    fails(check.ex3_2_xavier_uniform, normal, "above the bound", "normal distribution has no bound")
    fails(check.ex3_2_xavier_uniform, no_sqrt3, "expected close to the bound")
    fails(check.ex3_2_xavier_uniform, ignores_gain, "gain=2.5", "expected close to the bound")
    fails(check.ex3_2_xavier_uniform, new_tensor, "in place")
    fails(check.ex3_2_xavier_uniform, no_return, "returned None")
    fails(check.ex3_2_xavier_uniform, ignores_generator, "seeded alike gave different weights")
    fails(check.ex3_2_xavier_uniform, nan, "NaN")
    with pytest.raises(NotAttempted):
        check.ex3_2_xavier_uniform(stub)


# --- 3.3 kaiming_normal_ ----------------------------------------------------------------------

def test_kaiming_normal_reference_and_torch_pass(capsys):
    check.ex3_3_kaiming_normal(init.kaiming_normal_)
    check.ex3_3_kaiming_normal(nn.init.kaiming_normal_)
    assert capsys.readouterr().out == "Exercise 3.3 passed (2 points)\n" * 2


def test_kaiming_normal_wrong_answers():
    def ignores_mode(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
        return init.kaiming_normal_(t, a, "fan_in", nonlinearity, generator)

    def uniform(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
        return init.kaiming_uniform_(t, a, mode, nonlinearity, generator)

    def always_relu_gain(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
        return init.kaiming_normal_(t, 0, mode, "relu", generator)

    def no_gain(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
        fan = init.calculate_correct_fan(t, mode)
        return t.normal_(0, 1 / math.sqrt(fan), generator=generator)

    def no_mode_check(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
        fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
        fan = fan_in if mode == "fan_in" else fan_out
        std = init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
        return t.normal_(0, std, generator=generator)

    def variance_as_std(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
        fan = init.calculate_correct_fan(t, mode)
        return t.normal_(0, init.calculate_gain(nonlinearity, a) ** 2 / fan, generator=generator)

    fails(check.ex3_3_kaiming_normal, ignores_mode, "mode='fan_out'", "expected 0.07071")
    fails(check.ex3_3_kaiming_normal, uniform, "beyond 2 std", "not a uniform")
    fails(check.ex3_3_kaiming_normal, always_relu_gain, "a=0.2")
    fails(check.ex3_3_kaiming_normal, no_gain, "expected 0.05774")
    fails(check.ex3_3_kaiming_normal, no_mode_check, "mode='fan_avg'", "did not raise ValueError")
    fails(check.ex3_3_kaiming_normal, variance_as_std, "std")
    with pytest.raises(NotAttempted):
        check.ex3_3_kaiming_normal(stub)


# --- 3.4 count_distinct_units -----------------------------------------------------------------

def reference(layer, tol=1e-6):
    return check.distinct_units_reference(layer, tol)


def test_distinct_units_reference_passes(capsys):
    check.ex3_4_distinct_units(reference)
    assert capsys.readouterr().out == "Exercise 3.4 passed (2 points)\n"


def test_the_test_layers_cover_the_cases():
    counts = [reference(layer) for _, layer in check._test_layers()]
    assert counts == [3, 1, 8, 4, 6, 2, 1]


def test_distinct_units_matches_unique_on_exact_copies():
    w = torch.randn(4, 3)[torch.tensor([0, 1, 1, 3, 0, 2])]
    layer = nn.Linear(3, 6, bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    assert reference(layer) == len(torch.unique(w, dim=0)) == 4


def test_distinct_units_wrong_answers():
    def exact(layer, tol=1e-6):
        return len(torch.unique(torch.cat([layer.weight, layer.bias[:, None]], 1), dim=0))

    def weights_only(layer, tol=1e-6):
        return len(torch.unique(layer.weight.round(decimals=5), dim=0))

    def needs_bias(layer, tol=1e-6):
        params = torch.cat([layer.weight, layer.bias[:, None]], 1)
        return len(torch.unique(params.round(decimals=5), dim=0))

    def modifies(layer, tol=1e-6):
        n = reference(layer, tol)
        with torch.no_grad():
            layer.weight.zero_()
        return n

    fails(check.ex3_4_distinct_units, exact, "up to 4e-7", "tolerance")
    fails(check.ex3_4_distinct_units, weights_only, "biases form 4", "weights *and* bias")
    fails(check.ex3_4_distinct_units, needs_bias, "without bias", "raised TypeError")
    fails(check.ex3_4_distinct_units, modifies, "changed the layer's parameters")
    fails(check.ex3_4_distinct_units, lambda layer, tol=1e-6: layer.weight.shape[0], "returned 8")
    fails(check.ex3_4_distinct_units, lambda layer, tol=1e-6: None, "returned None")
    fails(check.ex3_4_distinct_units, lambda layer, tol=1e-6: float("nan"), "NaN")
    with pytest.raises(NotAttempted):
        check.ex3_4_distinct_units(stub)


# --- 3.5 predict, measure and explain ---------------------------------------------------------

def _spread(scheme, seed=0, ratio=lambda g: max(g) / min(g), width=64):
    from nncourse.data import load_moons
    from nncourse.diagnostics import gradient_norms
    from nncourse.models import make_mlp
    d = load_moons(n_samples=400, seed=0)
    m = make_mlp(2, 2, width=width, depth=30, activation="tanh", init=scheme, seed=seed)
    return ratio(gradient_norms(m, d.X_train, d.y_train))


def test_3_5_passes_and_explains(capsys):
    check.ex3_5_deep_tanh(_spread, lambda: "xavier_normal")
    out = capsys.readouterr().out
    assert out.endswith("Exercise 3.5 passed (2 points)\n") and "xavier_normal" in out


def test_3_5_the_winner_is_clear():
    """Xavier's spread is below half of every other candidate's, on every seed measured."""
    for seed in range(3):
        x = check.gradient_spread_reference("xavier_normal", seed)
        assert all(check.gradient_spread_reference(s, seed) > 1.5 * x
                   for s in check.CANDIDATES if s != "xavier_normal")


def test_3_5_wrong_answers():
    def run(spread, best):
        with pytest.raises(ExerciseError) as info:
            check.ex3_5_deep_tanh(spread, best)
        msg = str(info.value)
        assert msg.startswith("Exercise 3.5") and "\n" not in msg
        return msg

    first_last = partial(_spread, ratio=lambda g: g[0] / g[-1])  # a ratio, not the spread
    assert "gradient_spread('xavier_normal', seed=1) is wrong" in run(first_last,
                                                                      lambda: "xavier_normal")
    narrow = partial(_spread, width=32)  # another network than the statement's
    assert "is wrong" in run(narrow, lambda: "xavier_normal")
    # "He is the modern default, so it must be best": the prediction to measure
    msg = run(_spread, lambda: "he_normal")
    assert "returned 'he_normal'" in msg and "'xavier_normal'" in msg
    assert "must return one of" in run(_spread, lambda: "xavier")
