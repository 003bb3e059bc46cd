"""Checks for chapter 04's exercises (``exercises/04_activation_functions.ipynb``)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nncourse.checks import exercise, single_threaded

__all__ = ["ex4_1_leaky_relu", "ex4_2_elu_selu", "ex4_3_softmax", "ex4_4_dead_fraction",
           "ex4_5_deep_std"]

_LARGE = [-1e4, -1000.0, -50.0, -1.0, -1e-3, 0.5, 50.0, 1000.0, 1e4]


def _inputs(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 7, generator=gen, dtype=torch.float64) * 3
    return torch.cat([x.reshape(-1), torch.tensor(_LARGE, dtype=torch.float64)])


def _autograd(fn, x, **kw) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    fn(x, **kw).sum().backward()
    return x.grad


def ex4_1_leaky_relu(leaky_relu, leaky_relu_grad) -> None:
    """Exercise 4.1: ``leaky_relu(x, negative_slope)`` and its derivative, for torch tensors."""
    with exercise("4.1", points=2, name="leaky ReLU") as ex:
        # 0 itself is an input: torch's slope there is negative_slope (x > 0 is the test)
        x = torch.cat([_inputs(41), torch.zeros(2, dtype=torch.float64)])
        for a in (0.01, 0.2):
            ex.matches(leaky_relu, x.clone(), a, expected=F.leaky_relu(x, a).numpy(),
                       call=f"leaky_relu(x, negative_slope={a})",
                       hint="positive inputs pass unchanged, negative ones are multiplied by "
                            "negative_slope -- use the argument, not a fixed 0.01")
            ex.matches(leaky_relu_grad, x.clone(), a,
                       expected=_autograd(F.leaky_relu, x, negative_slope=a).numpy(),
                       call=f"leaky_relu_grad(x, negative_slope={a})",
                       hint="the derivative is 1 where x > 0 and negative_slope elsewhere -- "
                            "x = 0 included, as in torch -- never 0, which is the whole point")


def ex4_2_elu_selu(elu, elu_grad, selu) -> None:
    """Exercise 4.2: ``elu(x, alpha)``, ``elu_grad(x, alpha)`` and ``selu(x)`` for torch tensors."""
    with exercise("4.2", points=2, name="ELU and SELU") as ex:
        x = _inputs(42)
        for a in (1.0, 0.5):
            ex.matches(elu, x.clone(), a, expected=F.elu(x, a).numpy(), call=f"elu(x, alpha={a})",
                       hint="x for x > 0, alpha * (exp(x) - 1) otherwise; torch.expm1 computes "
                            "exp(x) - 1 accurately")
            ex.matches(elu_grad, x.clone(), a, expected=_autograd(F.elu, x, alpha=a).numpy(),
                       call=f"elu_grad(x, alpha={a})", hint="1 for x > 0, alpha * exp(x) otherwise")
        ex.matches(selu, x.clone(), expected=F.selu(x).numpy(), call="selu(x)",
                   hint="selu(x) = SCALE * elu(x, ALPHA) with SCALE = 1.0507009873554805 and "
                        "ALPHA = 1.6732632423543772 (both constants, 10 digits at least)")


def ex4_3_softmax(softmax) -> None:
    """Exercise 4.3: a numerically stable ``softmax(logits)`` over the last dimension."""
    with exercise("4.3", points=2, name="stable softmax") as ex:
        gen = torch.Generator().manual_seed(43)
        cases = [
            ("random logits of shape (5, 4)",
             torch.randn(5, 4, generator=gen, dtype=torch.float64)),
            ("one vector of shape (3,)", torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)),
            ("logits [1000, 999, 0]", torch.tensor([[1000.0, 999.0, 0.0]], dtype=torch.float64)),
            ("logits [1000, 0, -1000]",
             torch.tensor([[1000.0, 0.0, -1000.0]], dtype=torch.float64)),
            ("logits [-1000, -1000, -1001]",
             torch.tensor([[-1000.0, -1000.0, -1001.0]], dtype=torch.float64)),
            ("rows on very different scales [[1000, 999], [0, -1]]",
             torch.tensor([[1000.0, 999.0], [0.0, -1.0]], dtype=torch.float64)),
        ]
        for what, z in cases:
            ex.matches(softmax, z.clone(), expected=torch.softmax(z, dim=-1).numpy(),
                       call=f"softmax({what})", rtol=1e-6, atol=1e-9,
                       hint="subtract each row's own maximum (x.amax(dim=-1, keepdim=True)) before "
                          "exp, then divide by the sum over the last dimension")


def _known_net(seed: int) -> tuple[nn.Sequential, torch.Tensor, list[float]]:
    """A ReLU network whose dead units are known: a bias of -100 kills a unit for every input in
    [-1, 1]^n; units with bias 0 are 0 for *some* examples only, which is not dead."""
    gen = torch.Generator().manual_seed(seed)
    sizes, dead = [6, 8, 10, 4], [3, 4, 1]
    layers: list[nn.Module] = []
    with torch.no_grad():
        for i, ((n_in, n_out), k) in enumerate(zip(zip(sizes[:-1], sizes[1:]), dead)):
            lin = nn.Linear(n_in, n_out)
            w = torch.randn(n_out, n_in, generator=gen) / math.sqrt(n_in)
            # first layer: alive units are 0 for part of the inputs; later layers see inputs
            # >= 0, so positive weights and bias keep every unit we do not kill alive
            lin.weight.copy_(w if i == 0 else w.abs())
            lin.bias.fill_(0.0 if i == 0 else 0.1)
            lin.bias[torch.randperm(n_out, generator=gen)[:k]] = -100.0
            layers += [lin, nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 3))
    X = torch.rand(64, sizes[0], generator=gen) * 2 - 1
    return nn.Sequential(*layers), X, [k / n for k, n in zip(dead, sizes[1:])]


def ex4_4_dead_fraction(dead_fraction) -> None:
    """Exercise 4.4: per ReLU layer, the fraction of units that output 0 for every example."""
    with exercise("4.4", points=2, name="dead ReLU fraction") as ex:
        model, X, expected = _known_net(44)
        before = [p.detach().clone() for p in model.parameters()]
        out = _as_list(ex.call(dead_fraction, model, X, call="dead_fraction(model, X)"))
        got = ex.array(out, "dead_fraction(model, X)", shape=(len(expected),), dtype="float")
        ex.true(bool(np.all((got >= 0) & (got <= 1))),
                f"dead_fraction(model, X) must return fractions in [0, 1], got {got.tolist()}",
                "divide the number of dead units by the layer's width")
        ex.close(got, expected, "dead_fraction(model, X)", rtol=1e-6,
                 hint="a unit is dead only when its ReLU outputs 0 for *every* example of the "
                      "batch -- not on average, not for most of them -- and the fraction is over "
                      "the units of one layer")
        ex.true(all(torch.equal(a, b) for a, b in zip(before, model.parameters())),
                "dead_fraction(model, X) changed the model's parameters",
                "only run the model forward, under torch.no_grad()")
        # a healthy network: fresh He-initialized ReLU net on centred inputs has no dead unit
        gen = torch.Generator().manual_seed(440)
        healthy = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
        with torch.no_grad():
            healthy[0].weight.copy_(torch.randn(16, 5, generator=gen))
            healthy[0].bias.fill_(0.5)
        Xh = torch.randn(200, 5, generator=gen)
        got = ex.array(_as_list(ex.call(dead_fraction, healthy, Xh,
                                        call="dead_fraction(healthy_model, X)")),
                       "dead_fraction(healthy_model, X)", shape=(1,), dtype="float")
        ex.close(got, [0.0], "dead_fraction(healthy_model, X)",
                 hint="a unit that is 0 for some examples but positive for others is alive")


def _as_list(out):
    """A list of one-element tensors (a natural answer) as a list of floats."""
    if isinstance(out, (list, tuple)) and all(
            isinstance(v, torch.Tensor) and v.numel() == 1 for v in out):
        return [v.item() for v in out]
    return out


# --- 4.5 predict, measure and explain ----------------------------------------------------------

@single_threaded
def deep_std_reference(activation: str, init: str) -> float:
    """Exercise 4.5's experiment: std of the last hidden activation of a 50-layer MLP."""
    from nncourse.diagnostics import layer_outputs
    from nncourse.models import make_mlp

    model = make_mlp(2, 2, width=64, depth=50, activation=activation, init=init, seed=0)
    X = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    outputs = layer_outputs(model, X)
    return list(outputs.values())[-1].std().item()


def ex4_5_deep_std(deep_activation_std) -> None:
    """Exercise 4.5: does SELU keep a 50-layer net's activations at unit scale? Measured."""
    with exercise("4.5", points=2, name="measure self-normalization") as ex:
        hint = ("build make_mlp(2, 2, width=64, depth=50, activation=activation, init=init, "
                "seed=0), feed X = torch.randn(500, 2, generator=torch.Generator()."
                "manual_seed(0)) and return the standard deviation (.std()) of the LAST "
                "activation layer's output, e.g. the last value of diagnostics.layer_outputs")
        refs = {}
        for act, init in (("selu", "lecun_normal"), ("relu", "lecun_normal"),
                          ("relu", "he_normal"), ("tanh", "xavier_normal")):
            call = f"deep_activation_std({act!r}, {init!r})"
            got = ex.number(ex.call(deep_activation_std, act, init, call=call), call)
            refs[act, init] = deep_std_reference(act, init)
            ex.close(got, refs[act, init], call, rtol=0.01, atol=1e-12, hint=hint)
        ex.note("Measured std after 50 layers: SELU + LeCun "
                f"{refs['selu', 'lecun_normal']:.3g}, ReLU + LeCun "
                f"{refs['relu', 'lecun_normal']:.2g}, ReLU + He {refs['relu', 'he_normal']:.3g}, "
                f"tanh + Xavier {refs['tanh', 'xavier_normal']:.3g}.")
        ex.note("Why: SELU's constants make mean 0 / variance 1 a fixed point of each layer "
                "(with LeCun-normal weights), so the scale stays near 1 at any depth. ReLU "
                "halves the variance at each layer unless He's factor 2 restores it; even then "
                "the scale drifts with depth, and with LeCun's weights it decays geometrically.")
