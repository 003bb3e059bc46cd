"""Checks for chapter 03's exercises (``exercises/03_weight_initialization.ipynb``).

Initializers draw random numbers, so their checks test what the formulas promise on large tensors
the student has not seen: the bound of a uniform, the standard deviation, the shape of the
distribution, in-place filling, and that a seeded generator reproduces the weights.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from nncourse.checks import Exercise, exercise, single_threaded

__all__ = ["ex3_1_fans", "ex3_2_xavier_uniform", "ex3_3_kaiming_normal",
           "ex3_4_distinct_units", "distinct_units_reference",
           "ex3_5_deep_tanh", "CANDIDATES"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(ex: Exercise, value, what: str) -> tuple[int, int]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        arr = ex.array(value, what)
        ex.true(arr.size == 2, f"expected {what} to return two numbers (fan_in, fan_out), got "
                f"{arr.size}", "return fan_in, fan_out")
        value = arr.reshape(-1).tolist()
    out = []
    for v in value:
        number = ex.number(v, what)
        ex.true(number == int(number), f"expected {what} to return whole numbers, got {number:g}",
                "multiply the sizes of the dimensions; no division is needed")
        out.append(int(number))
    return out[0], out[1]


def ex3_1_fans(calculate_fans) -> None:
    """Exercise 3.1: ``calculate_fans(tensor) -> (fan_in, fan_out)`` for Linear and conv weights."""
    with exercise("3.1", points=1, name="calculate_fans") as ex:
        cases = [((20, 7), "a Linear(7, 20) weight"), ((1, 1), "a Linear(1, 1) weight"),
                 ((8, 4, 3), "a Conv1d(4, 8, kernel_size=3) weight"),
                 ((16, 3, 5, 5), "a Conv2d(3, 16, kernel_size=5) weight"),
                 ((2, 6, 3, 3, 3), "a Conv3d(6, 2, kernel_size=3) weight")]
        for shape, what in cases:
            call = f"calculate_fans(torch.empty{shape})"
            got = _pair(ex, ex.call(calculate_fans, torch.empty(shape), call=call), call)
            rf = math.prod(shape[2:])
            expected = (shape[1] * rf, shape[0] * rf)
            if got == expected[::-1] and expected[0] != expected[1]:
                ex.fail(f"{call} for {what} returned {got}, expected {expected} -- fan_in and "
                        "fan_out are swapped",
                        "a weight is stored as (out, in, *kernel): fan_in comes from dimension 1")
            ex.true(got == expected, f"{call} for {what} returned {got}, expected {expected}",
                    "for a convolution each unit sees in_channels * (product of the kernel "
                    "sizes) inputs: multiply both fans by the receptive field")
        _expect_value_error(ex, lambda: calculate_fans(torch.empty(5)),
                            "calculate_fans(torch.empty(5))",
                            "a 1-D tensor has no fan_in/fan_out: raise ValueError when "
                            "tensor.dim() < 2")


def _expect_value_error(ex: Exercise, thunk, call: str, hint: str) -> None:
    """Fail unless ``thunk()`` raises ValueError (invalid input must be refused, not guessed)."""
    try:
        thunk()
    except ValueError:
        return
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - report what the student raised
        ex.fail(f"{call} raised {type(exc).__name__}, expected ValueError", hint)
    ex.fail(f"{call} did not raise ValueError", hint)


def _filled(ex: Exercise, fn, tensor: torch.Tensor, call: str, **kwargs) -> np.ndarray:
    """Call an in-place initializer and check it filled ``tensor`` and returned it."""
    out = ex.call(fn, tensor, call=call, **kwargs)
    ex.true(out is not None, f"{call} returned None, expected the filled tensor",
            "end with `return tensor` (torch.nn.init functions return their argument)")
    ex.true(out is tensor, f"{call} returned a new tensor instead of filling its argument in place",
            "fill the argument with an in-place method such as tensor.uniform_(...) and return it")
    return ex.array(tensor, call, shape=tuple(tensor.shape), dtype="float").astype(np.float64)


def _check_generator(ex: Exercise, fn, shape, call: str, **kwargs) -> None:
    a = _filled(ex, fn, torch.empty(shape), call, generator=_gen(5), **kwargs)
    b = _filled(ex, fn, torch.empty(shape), call, generator=_gen(5), **kwargs)
    c = _filled(ex, fn, torch.empty(shape), call, generator=_gen(6), **kwargs)
    ex.true(np.array_equal(a, b), f"{call} with two generators seeded alike gave different weights",
            "pass generator=generator on to the in-place sampling method")
    ex.true(not np.array_equal(a, c), f"{call} gave the same weights for different generator seeds",
            "draw random values with the generator, do not fill a fixed pattern")


def ex3_2_xavier_uniform(xavier_uniform_) -> None:
    """Exercise 3.2: ``xavier_uniform_(tensor, gain=1.0, generator=None)``, in place."""
    with exercise("3.2", points=2, name="xavier_uniform_") as ex:
        cases = [((500, 300), 1.0), ((32, 16, 3, 3), 2.5), ((300, 500), 5 / 3)]
        for shape, gain in cases:
            call = f"xavier_uniform_(torch.empty{shape}, gain={gain:.4g})"
            w = _filled(ex, xavier_uniform_, torch.empty(shape), call, gain=gain,
                        generator=_gen(11))
            rf = math.prod(shape[2:])
            fan_in, fan_out = shape[1] * rf, shape[0] * rf
            bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
            biggest = float(np.abs(w).max())
            hint = "a = gain * sqrt(6 / (fan_in + fan_out)), then fill with U(-a, a)"
            ex.true(biggest <= bound * (1 + 1e-6),
                    f"{call} has a weight of magnitude {biggest:.4g}, above the bound "
                    f"a = {bound:.4g}", hint + "; a normal distribution has no bound")
            ex.true(biggest >= 0.98 * bound,
                    f"{call}: the largest |weight| is {biggest:.4g}, expected close to the bound "
                    f"a = {bound:.4g}", hint)
            std = bound / math.sqrt(3)
            ex.true(abs(w.std() - std) <= 0.03 * std,
                    f"{call}: weights have std {w.std():.4g}, expected a / sqrt(3) = {std:.4g}",
                    "U(-a, a) has variance a^2 / 3; draw uniformly from -a to a")
            ex.true(abs(w.mean()) <= 0.03 * std,
                    f"{call}: weights have mean {w.mean():.3g}, expected 0", "U(-a, a) is centred")
        _check_generator(ex, xavier_uniform_, (40, 30), "xavier_uniform_(torch.empty(40, 30))")


def ex3_3_kaiming_normal(kaiming_normal_) -> None:
    """Exercise 3.3: ``kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu",
    generator=None)``, in place."""
    with exercise("3.3", points=2, name="kaiming_normal_") as ex:
        cases = [((400, 600), {"mode": "fan_in", "nonlinearity": "relu"}, 2 / 600),
                 ((400, 600), {"mode": "fan_out", "nonlinearity": "relu"}, 2 / 400),
                 ((400, 600), {"a": 0.2, "nonlinearity": "leaky_relu"}, 2 / 1.04 / 600),
                 ((500, 500), {"nonlinearity": "tanh"}, (5 / 3) ** 2 / 500),
                 ((64, 32, 3, 3), {"nonlinearity": "relu"}, 2 / (32 * 9)),
                 ((300, 200), {}, 2 / (1 + 0.0) / 200)]
        for shape, kwargs, var in cases:
            args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
            call = f"kaiming_normal_(torch.empty{shape}{args})"
            w = _filled(ex, kaiming_normal_, torch.empty(shape), call, generator=_gen(12),
                        **kwargs)
            std = math.sqrt(var)
            ex.true(abs(w.std() - std) <= 0.015 * std,
                    f"{call}: weights have std {w.std():.4g}, expected {std:.4g}",
                    "std = gain / sqrt(fan), with gain = calculate_gain(nonlinearity, a) and fan "
                    "= fan_in or fan_out as mode says")
            ex.true(abs(w.mean()) <= 0.02 * std,
                    f"{call}: weights have mean {w.mean():.3g}, expected 0",
                    "draw from N(0, std^2)")
            tails = float((np.abs(w) > 2 * std).mean())
            ex.true(0.035 <= tails <= 0.056,
                    f"{call}: {tails:.1%} of weights lie beyond 2 std, a normal distribution has "
                    "4.6%", "draw from a normal distribution (tensor.normal_), not a uniform one")
        _expect_value_error(ex, lambda: kaiming_normal_(torch.empty(10, 10), mode="fan_avg"),
                            "kaiming_normal_(..., mode='fan_avg')",
                            "check mode and raise ValueError naming the valid modes fan_in and "
                            "fan_out")
        _check_generator(ex, kaiming_normal_, (40, 30), "kaiming_normal_(torch.empty(40, 30))",
                         nonlinearity="relu")


@torch.no_grad()
def distinct_units_reference(layer: nn.Linear, tol: float = 1e-6) -> int:
    """Number of distinct units: a unit counts unless an earlier one has the same incoming weights
    and bias within ``tol`` (largest absolute difference)."""
    params = layer.weight if layer.bias is None else torch.cat([layer.weight,
                                                               layer.bias[:, None]], 1)
    distinct = 0
    for i in range(params.shape[0]):
        if i == 0 or (params[:i] - params[i]).abs().amax(1).min().item() > tol:
            distinct += 1
    return distinct


def _layer(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _test_layers() -> list[tuple[str, nn.Linear]]:
    gen = _gen(31)
    rows = torch.randn(3, 5, generator=gen)
    groups = torch.tensor([0, 1, 0, 2, 1, 1, 0, 2])
    # Rounding noise, as training leaves it: below tol, but enough to defeat exact equality.
    tiny = 4e-7 * torch.rand(8, 5, generator=gen)
    layers = [
        ("8 units in 3 groups of equal weights (up to 4e-7) and equal biases",
         _layer(rows[groups] + tiny, torch.zeros(8))),
        ("8 units with equal weights and biases", _layer(rows[[0] * 8], torch.full((8,), 0.3))),
        ("8 random units", _layer(torch.randn(8, 5, generator=gen), torch.zeros(8))),
        ("8 units whose weights form 2 groups but whose biases form 4",
         _layer(rows[[0, 0, 0, 0, 1, 1, 1, 1]], torch.tensor([0., 0., 1., 1., 0., 0., 2., 2.]))),
        ("8 units differing by 1e-3 in one weight",
         _layer(rows[[0] * 8] + torch.eye(8, 5) * 1e-3, torch.zeros(8))),
        ("a layer without bias, 6 units in 2 groups", _layer(rows[[1, 2, 1, 2, 2, 1]], None)),
    ]
    # A trained layer: constant init keeps its 6 hidden units identical through training.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1))
    for p in model.parameters():
        nn.init.constant_(p, 0.2)
    x, y = torch.randn(64, 3, generator=gen), torch.randn(64, 1, generator=gen)
    for _ in range(30):  # plain gradient descent
        model.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    layers.append(("the first layer of a constant-initialized net after 30 training steps",
                   model[0]))
    return layers


def ex3_4_distinct_units(count_distinct_units) -> None:
    """Exercise 3.4: ``count_distinct_units(layer, tol=1e-6) -> int``."""
    with exercise("3.4", points=2, name="count_distinct_units") as ex:
        for what, layer in _test_layers():
            before = [p.detach().clone() for p in layer.parameters()]
            call = f"count_distinct_units(layer) for {what}"
            got = ex.number(ex.call(count_distinct_units, layer, call=call),
                            "count_distinct_units(layer)")
            ex.true(all(torch.equal(p, b) for p, b in zip(layer.parameters(), before)),
                    "count_distinct_units(layer) changed the layer's parameters",
                    "only read layer.weight and layer.bias; do not modify them")
            expected = distinct_units_reference(layer)
            hint = ("two units are the same when their rows of layer.weight and their biases "
                    "differ by at most tol; count the units not equal to any earlier unit")
            if layer.bias is not None and "biases form 4" in what:
                hint = "the bias is part of a unit: compare weights *and* bias"
            elif "4e-7" in what:
                hint = "compare with a tolerance (tol), not exact equality"
            elif layer.bias is None:
                hint = "layer.bias can be None: then compare the weights only"
            ex.true(got == expected,
                    f"count_distinct_units(layer) for {what} returned {got:g}, expected {expected}",
                    hint)


# --- 3.5 predict, measure and explain ----------------------------------------------------------

#: The initializers exercise 3.5 compares on a 30-layer tanh network.
CANDIDATES = ("default", "xavier_normal", "he_normal", "lecun_normal")


@single_threaded
def gradient_spread_reference(scheme: str, seed: int = 0) -> float:
    """Exercise 3.5's experiment: max / min of the per-layer gradient norms of a 30-layer tanh
    MLP initialized with ``scheme``."""
    from nncourse.data import load_moons
    from nncourse.diagnostics import gradient_norms
    from nncourse.models import make_mlp

    data = load_moons(n_samples=400, seed=0)
    model = make_mlp(2, 2, width=64, depth=30, activation="tanh", init=scheme, seed=seed)
    norms = gradient_norms(model, data.X_train, data.y_train)
    return max(norms) / min(norms)


@functools.lru_cache(maxsize=None)
def best_scheme_reference() -> str:
    spread = {s: math.exp(sum(math.log(gradient_spread_reference(s, k)) for k in range(3)) / 3)
              for s in CANDIDATES}
    return min(spread, key=spread.get)


def ex3_5_deep_tanh(gradient_spread, best_scheme) -> None:
    """Exercise 3.5: which initializer keeps a 30-layer tanh net's gradients even -- measured."""
    with exercise("3.5", points=2, name="measure a deep tanh net's gradients") as ex:
        hint = ("build make_mlp(2, 2, width=64, depth=30, activation='tanh', init=scheme, "
                "seed=seed), take diagnostics.gradient_norms on the training split of "
                "load_moons(n_samples=400, seed=0) and return max(norms) / min(norms)")
        refs = {}
        for scheme, seed in (("xavier_normal", 1), ("default", 0), ("he_normal", 2)):
            call = f"gradient_spread({scheme!r}, seed={seed})"
            got = ex.number(ex.call(gradient_spread, scheme, seed, call=call), call)
            refs[scheme] = gradient_spread_reference(scheme, seed)
            ex.close(got, refs[scheme], call, rtol=0.01, atol=0.0, hint=hint)
        call = "best_scheme()"
        got = ex.call(best_scheme, call=call)
        expected = best_scheme_reference()
        ex.true(isinstance(got, str) and got in CANDIDATES,
                f"{call} must return one of {list(CANDIDATES)}, got {got!r}")
        ex.true(got == expected, f"{call} returned {got!r}; re-running the experiment over seeds "
                f"0, 1, 2, the smallest spread (geometric mean) belongs to {expected!r}",
                "average over the three seeds before comparing (one seed can mislead), and "
                "pick the smallest spread")
        ex.note(f"Measured: spread {refs['default']:.3g} with PyTorch's default init (seed 0), "
                f"{refs['he_normal']:.3g} with He (seed 2), {refs['xavier_normal']:.3g} with "
                f"Xavier (seed 1); the smallest over seeds 0-2: {expected}.")
        ex.note("Why: tanh is linear near 0 with slope 1, so the variance-preserving scale for "
                "it is Xavier's (about 1 / fan); PyTorch's default draws weights 3x smaller in "
                "variance and the gradient shrinks layer by layer; He with tanh's gain 5/3 draws "
                "them 2.8x larger and pushes units toward saturation.")
