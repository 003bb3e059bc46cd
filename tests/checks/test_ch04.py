"""Each chapter 04 check passes on the reference answer and fails, with one clear sentence, on
plausible wrong answers, None, wrong shapes and NaN."""

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from nncourse import activations as A
from nncourse.checks import NotAttempted
from nncourse.checks import ch04 as check
from tests.checks.helpers import check_fails, stub

fails = partial(check_fails, 4)


# --- 4.1 ----------------------------------------------------------------------------------

def test_ex4_1_passes_on_reference(capsys):
    check.ex4_1_leaky_relu(A.leaky_relu, A.leaky_relu_grad)
    assert capsys.readouterr().out == "Exercise 4.1 passed (2 points)\n"


def test_ex4_1_fails_on_wrong_answers():
    # issue 19: x >= 0 gives slope 1 at x = 0, torch gives negative_slope
    fails(check.ex4_1_leaky_relu, A.leaky_relu,
          lambda x, a=0.01: torch.where(x >= 0, torch.ones_like(x), torch.full_like(x, a)),
          match=r"leaky_relu_grad\(x, negative_slope=0.01\) is wrong: at index \(\d+,\) "
                r"expected 0.01, got 1.*x = 0 included")
    fails(check.ex4_1_leaky_relu, lambda x, a=0.01: A.relu(x), A.leaky_relu_grad,
          match=r"4\.1 .*leaky_relu\(x, negative_slope=0.01\) is wrong.*Hint")
    fails(check.ex4_1_leaky_relu, lambda x, a=0.01: A.leaky_relu(x, 0.01), A.leaky_relu_grad,
          match=r"negative_slope=0.2\) is wrong.*use the argument")
    fails(check.ex4_1_leaky_relu, A.leaky_relu, lambda x, a=0.01: A.relu_grad(x),
          match=r"leaky_relu_grad\(x, negative_slope=0.01\) is wrong.*never 0")
    fails(check.ex4_1_leaky_relu, lambda x, a=0.01: None, A.leaky_relu_grad,
          match="returned None")
    fails(check.ex4_1_leaky_relu, lambda x, a=0.01: x.sum(), A.leaky_relu_grad,
          match="shape")
    fails(check.ex4_1_leaky_relu, lambda x, a=0.01: x * float("nan"), A.leaky_relu_grad,
          match="NaN")
    with pytest.raises(NotAttempted, match="not attempted"):
        check.ex4_1_leaky_relu(stub, stub)


# --- 4.2 ----------------------------------------------------------------------------------

def test_ex4_2_passes_on_reference(capsys):
    check.ex4_2_elu_selu(A.elu, A.elu_grad, A.selu)
    assert capsys.readouterr().out == "Exercise 4.2 passed (2 points)\n"


def naive_elu(x, alpha=1.0):
    return torch.where(x > 0, x, alpha * (torch.exp(x) - 1))  # exp(1e4) = inf, but not selected


def test_ex4_2_fails_on_wrong_answers():
    # forgetting alpha
    fails(check.ex4_2_elu_selu, lambda x, a=1.0: A.elu(x), A.elu_grad, A.selu,
          match=r"elu\(x, alpha=0.5\) is wrong")
    # derivative of the negative branch without alpha
    fails(check.ex4_2_elu_selu, A.elu, lambda x, a=1.0: A.elu_grad(x), A.selu,
          match=r"elu_grad\(x, alpha=0.5\) is wrong")
    # selu with ELU's alpha = 1, or without the scale
    fails(check.ex4_2_elu_selu, A.elu, A.elu_grad, lambda x: A.SELU_SCALE * A.elu(x),
          match=r"selu\(x\) is wrong.*SCALE")
    fails(check.ex4_2_elu_selu, A.elu, A.elu_grad, lambda x: A.elu(x, A.SELU_ALPHA),
          match=r"selu\(x\) is wrong")
    # a derivative that overflows for large x
    fails(check.ex4_2_elu_selu, A.elu, lambda x, a=1.0: a * torch.exp(x) * (x <= 0) + (x > 0),
          A.selu, match="NaN or infinite")
    fails(check.ex4_2_elu_selu, A.elu, A.elu_grad, lambda x: None, match="returned None")


def test_ex4_2_accepts_the_naive_but_correct_forward():
    check.ex4_2_elu_selu(naive_elu, A.elu_grad, lambda x: A.SELU_SCALE * naive_elu(x, A.SELU_ALPHA))


# --- 4.3 ----------------------------------------------------------------------------------

def test_ex4_3_passes_on_reference(capsys):
    check.ex4_3_softmax(A.softmax)
    assert capsys.readouterr().out == "Exercise 4.3 passed (2 points)\n"


def test_ex4_3_fails_on_wrong_answers():
    def naive(x):
        e = torch.exp(x)
        return e / e.sum(dim=-1, keepdim=True)

    def global_max(x):
        e = torch.exp(x - x.max())
        return e / e.sum(dim=-1, keepdim=True)

    def mean_shift(x):
        e = torch.exp(x - x.mean(dim=-1, keepdim=True))
        return e / e.sum(dim=-1, keepdim=True)

    def wrong_axis(x):
        e = torch.exp(x - x.amax(dim=0, keepdim=True))
        return e / e.sum(dim=0, keepdim=True)

    msg = fails(check.ex4_3_softmax, naive, match=r"4\.3 .*\[1000, 999, 0\].*NaN")
    assert "Hint" in msg
    fails(check.ex4_3_softmax, global_max, match="very different scales")
    fails(check.ex4_3_softmax, mean_shift, match=r"\[1000, 0, -1000\].*NaN")
    fails(check.ex4_3_softmax, wrong_axis, match="is wrong")
    fails(check.ex4_3_softmax, lambda x: x.argmax(-1), match="shape")
    fails(check.ex4_3_softmax, lambda x: None, match="returned None")


# --- 4.4 ----------------------------------------------------------------------------------

@torch.no_grad()
def reference_dead_fraction(model, X):
    fractions, h = [], X
    for layer in model:
        h = layer(h)
        if isinstance(layer, nn.ReLU):
            fractions.append((h == 0).all(dim=0).float().mean().item())
    return fractions


def test_ex4_4_passes_on_reference(capsys):
    check.ex4_4_dead_fraction(reference_dead_fraction)
    assert capsys.readouterr().out == "Exercise 4.4 passed (2 points)\n"


def test_ex4_4_known_network_is_what_it_claims():
    model, X, expected = check._known_net(44)
    assert reference_dead_fraction(model, X) == pytest.approx(expected)
    # and some alive units really are 0 for part of the examples (so "mean of zeros" is wrong)
    h = model[1](model[0](X))
    alive = ~(h == 0).all(0)
    assert ((h[:, alive] == 0).any(0)).any()


def test_ex4_4_fails_on_wrong_answers():
    @torch.no_grad()
    def zeros_mean(model, X):  # fraction of zero *outputs*, not of dead units
        out, h = [], X
        for layer in model:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                out.append((h == 0).float().mean().item())
        return out

    @torch.no_grad()
    def counts(model, X):
        out, h = [], X
        for layer in model:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                out.append(float((h == 0).all(dim=0).sum()))
        return out

    @torch.no_grad()
    def overall(model, X):
        return [float(np.mean(reference_dead_fraction(model, X)))]

    def mutating(model, X):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.0 * p + 1e-3)
        return reference_dead_fraction(model, X)

    fails(check.ex4_4_dead_fraction, zeros_mean, match=r"is wrong.*\*every\* example")
    fails(check.ex4_4_dead_fraction, counts, match=r"fractions in \[0, 1\]")
    fails(check.ex4_4_dead_fraction, overall, match="shape")
    fails(check.ex4_4_dead_fraction, mutating, match="changed the model's parameters|is wrong")
    fails(check.ex4_4_dead_fraction, lambda m, X: None, match="returned None")
    fails(check.ex4_4_dead_fraction, lambda m, X: [float("nan")] * 3, match="NaN")


# --- 4.5 predict, measure and explain ---------------------------------------------------------

def _deep_std(activation, init, which=-1, stat="std"):
    from nncourse.diagnostics import layer_outputs
    from nncourse.models import make_mlp
    m = make_mlp(2, 2, width=64, depth=50, activation=activation, init=init, seed=0)
    X = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    if which == "logits":
        h = m(X)
    else:
        h = list(layer_outputs(m, X).values())[which]
    return h.var().item() if stat == "var" else h.std().item()


def test_4_5_passes_and_explains(capsys):
    check.ex4_5_deep_std(_deep_std)
    out = capsys.readouterr().out
    assert out.endswith("Exercise 4.5 passed (2 points)\n") and "SELU + LeCun 1.05" in out


def test_4_5_wrong_answers():
    fails(check.ex4_5_deep_std, partial(_deep_std, which="logits"),
          match=r"deep_activation_std\('selu', 'lecun_normal'\) is wrong")
    fails(check.ex4_5_deep_std, partial(_deep_std, which=0),
          match=r"deep_activation_std\('relu', 'lecun_normal'\) is wrong|selu.* is wrong")
    fails(check.ex4_5_deep_std, partial(_deep_std, stat="var"), match=r"is wrong.*LAST")
