"""Checks for chapter 02's exercises (``exercises/02_vanishing_exploding_gradients.ipynb``).

Each check uses networks, gradients and profiles the chapter never shows, and compares with torch
(``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``) or with :mod:`nncourse.labs.ch02`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nncourse.checks import exercise, single_threaded
from nncourse.models import make_mlp

__all__ = ["ex2_1_layer_grad_norms", "ex2_2_clip_grad_norm", "ex2_3_clip_grad_value",
           "ex2_4_diagnose", "ex2_5_gradient_ratio", "SCALES"]


def _model_with_grads(seed: int, widths, activation: str, batch_norm: bool) -> nn.Module:
    model = make_mlp(5, 3, width=list(widths), activation=activation, batch_norm=batch_norm,
                     seed=seed)
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 5, generator=gen)
    y = torch.randint(0, 3, (40,), generator=gen)
    nn.functional.cross_entropy(model(X), y).backward()
    return model


def _as_floats(value):
    """A list/tuple of numbers or 0-d tensors -> list of floats; anything else unchanged."""
    if isinstance(value, (list, tuple)):
        try:
            return [float(v) for v in value]
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


def ex2_1_layer_grad_norms(layer_grad_norms) -> None:
    """Exercise 2.1: the L2 norm of each nn.Linear weight's gradient, input to output."""
    with exercise("2.1", points=2, name="layer_grad_norms") as ex:
        for seed, widths, act, bn in ((21, (7, 6, 4), "tanh", True), (22, (8,) * 5, "relu", False)):
            model = _model_with_grads(seed, widths, act, bn)
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            expected = [m.weight.grad.norm().item() for m in linears]
            grads_before = [p.grad.clone() for p in model.parameters()]
            got = ex.call(layer_grad_norms, model, call="layer_grad_norms(model)")
            out = ex.array(_as_floats(got), "layer_grad_norms(model)")
            ex.true(out.ndim == 1 and out.size == len(expected),
                    f"expected {len(expected)} norms for a model with {len(expected)} nn.Linear "
                    f"layers, got {out.size}",
                    "one number per nn.Linear layer, from its .weight.grad only -- skip biases "
                    "and BatchNorm parameters")
            ex.true(all(p.grad is not None and torch.equal(p.grad, g)
                        for p, g in zip(model.parameters(), grads_before)),
                    "layer_grad_norms(model) changed the model's gradients",
                    "only read p.grad -- no backward(), zero_grad() or in-place operations")
            ex.close(out, expected, "layer_grad_norms(model)", rtol=1e-4,
                     hint="the L2 norm of each weight gradient, layer.weight.grad.norm() (not "
                          "squared), ordered input layer first")


def _params_with_grads(seed: int, scale: float, shapes=((4, 3), (4,), (2, 5), (6,))):
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = nn.Parameter(torch.randn(shape, generator=gen))
        p.grad = torch.randn(shape, generator=gen) * scale
        params.append(p)
    return params


def _grads_close(got, expected) -> bool:
    return all((a.grad is None and b.grad is None) or
               (a.grad is not None and b.grad is not None and
                torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7, equal_nan=False))
               for a, b in zip(got, expected))


def ex2_2_clip_grad_norm(clip_grad_norm_) -> None:
    """Exercise 2.2: clip all gradients together to a global L2 norm, in place; return the norm."""
    with exercise("2.2", points=3, name="clip_grad_norm_") as ex:
        for case, (seed, scale, max_norm) in enumerate(((31, 5.0, 2.0), (32, 0.05, 3.0),
                                                        (33, 0.0, 1.0))):
            params = _params_with_grads(seed, scale)
            reference = _params_with_grads(seed, scale)
            if case == 0:  # a parameter without a gradient must be skipped
                params[1].grad = reference[1].grad = None
            before = [None if p.grad is None else p.grad.clone() for p in params]
            expected_total = torch.nn.utils.clip_grad_norm_(reference, max_norm).item()
            call = f"clip_grad_norm_(params, max_norm={max_norm})"
            got = ex.number(ex.call(clip_grad_norm_, params, max_norm, call=call), call)
            if case == 0:
                changed = any(p.grad is not None and not torch.equal(p.grad, b)
                              for p, b in zip(params, before))
                ex.true(changed, f"{call} left every p.grad unchanged although the global norm "
                        f"is {expected_total:.4g} > {max_norm}",
                        "scale the gradients in place, e.g. p.grad.mul_(factor): the optimizer "
                        "reads p.grad")
                per_tensor = [torch.linalg.vector_norm(p.grad).item() for p in params
                              if p.grad is not None]
                ex.true(not all(abs(n - max_norm) < 1e-4 * max_norm for n in per_tensor),
                        "every gradient tensor was clipped to max_norm on its own",
                        "compute ONE norm over all gradients together (the global norm) and "
                        "scale every gradient by the same factor")
            ex.close(got, expected_total, f"the total norm returned by {call}", rtol=1e-4,
                     hint="return the global norm measured *before* clipping: "
                          "sqrt(sum of squared entries of every p.grad)")
            ex.true(_grads_close(params, reference),
                    f"after {call} the gradients differ from torch.nn.utils.clip_grad_norm_'s"
                    + (" (the norm was already below max_norm, so they must stay unchanged)"
                       if case == 1 else "")
                    + (" (all-zero gradients must stay zero, not NaN)" if case == 2 else ""),
                    "multiply every p.grad by min(1, max_norm / (total_norm + 1e-6))")


def ex2_3_clip_grad_value(clip_grad_value_) -> None:
    """Exercise 2.3: clamp every gradient component to [-clip_value, clip_value], in place."""
    with exercise("2.3", points=1, name="clip_grad_value_") as ex:
        for seed, clip_value in ((41, 0.5), (42, 2.0)):
            params = _params_with_grads(seed, 3.0)
            reference = _params_with_grads(seed, 3.0)
            params[2].grad = reference[2].grad = None
            torch.nn.utils.clip_grad_value_(reference, clip_value)
            call = f"clip_grad_value_(params, clip_value={clip_value})"
            ex.call(clip_grad_value_, params, clip_value, call=call)
            for k, (p, r) in enumerate(zip(params, reference)):
                if r.grad is None:
                    ex.true(p.grad is None, f"{call} gave params[{k}] a gradient it did not have",
                            "skip parameters whose .grad is None")
                    continue
                ex.true(p.grad is not None, f"{call} removed the gradient of params[{k}]")
                ex.close(p.grad, r.grad, f"params[{k}].grad after {call}", rtol=1e-6,
                         hint=f"clamp every component to [-{clip_value}, {clip_value}] in place "
                              "(p.grad.clamp_(-c, c)) -- negative components too")


def _profiles() -> list[tuple[np.ndarray, str]]:
    """Gradient-norm profiles the chapter never shows, each with its label."""
    rng = np.random.default_rng(2024)

    def noisy(values):
        return np.asarray(values) * np.exp(rng.normal(0, 0.15, len(values)))

    n = 9
    cases = [
        (np.geomspace(3e-7, 0.4, n), "vanishing"),             # shrinks toward the input
        (np.geomspace(2e-3, 0.8, 6), "vanishing"),              # by a factor 400
        (np.full(7, 3e-5) * np.linspace(1, 2, 7), "vanishing"),  # every layer tiny
        (np.geomspace(40.0, 0.02, n), "exploding"),             # grows toward the input (2000x)
        (noisy(np.full(n, 400.0)), "exploding"),                # flat but huge
        (np.array([0.3, 0.2, np.nan, 0.4, 0.5]), "exploding"),
        (np.array([0.3, np.inf, 0.2, 0.4]), "exploding"),
        (noisy(np.full(n, 0.3)), "healthy"),
        (np.geomspace(0.02, 0.6, n), "healthy"),                # a factor 30: within 100
        (np.geomspace(5.0, 0.1, 6), "healthy"),                 # a factor 50 growth: within 100
        # both rules fire: the order decides (exploding is checked first)
        (np.geomspace(5e-4, 2e-7, 6), "exploding"),   # all below min_norm, but 2500x growth
        (np.geomspace(0.5, 300.0, 5), "exploding"),   # shrinks 600x toward the input, but > 100
    ]
    return cases


def _short(profile: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.2g}" for v in profile) + "]"


_HINTS = {
    "exploding": "a profile explodes if any norm is NaN/inf, or above max_norm=100, or the first "
                 "layer's norm is more than 100 times the last layer's",
    "vanishing": "a profile vanishes if every norm is below min_norm=1e-3, or the first layer's "
                 "norm is less than the last layer's divided by 100",
    "healthy": "a profile is healthy when neither rule fires -- growth or decay by less than a "
               "factor 100 is fine",
}


def ex2_4_diagnose(diagnose) -> None:
    """Exercise 2.4: label a gradient-norm profile 'vanishing', 'exploding' or 'healthy'."""
    with exercise("2.4", points=2, name="diagnose") as ex:
        profiles = _profiles()
        for k, (profile, expected) in enumerate(profiles):
            arg = torch.tensor(profile, dtype=torch.float32) if k % 3 == 2 else profile.copy()
            call = f"diagnose({_short(profile)})"
            got = ex.call(diagnose, arg, call="diagnose(norms)")
            ex.true(isinstance(got, str) and got in _HINTS,
                    f"{call} returned {got!r}; expected one of the strings 'vanishing', "
                    "'exploding', 'healthy'", "return the label as a lowercase string")
            both = k >= len(profiles) - 2
            ex.true(got == expected, f"{call} returned {got!r}, expected {expected!r}"
                    + (" -- both the exploding and the vanishing rule fire on this profile"
                       if both else ""),
                    "check the rules in the order given: exploding first, then vanishing"
                    if both else _HINTS[expected])


# --- 2.5 predict, measure and explain ----------------------------------------------------------

#: The weight scales exercise 2.5 scans, smallest first.
SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)


@single_threaded
def gradient_ratio_reference(scale: float) -> float:
    """Exercise 2.5's experiment: first / last layer gradient norm of a 15-layer sigmoid net."""
    from nncourse.data import load_moons
    from nncourse.diagnostics import gradient_norms

    data = load_moons(n_samples=400, seed=0)
    model = make_mlp(2, 2, width=32, depth=15, activation="sigmoid", init="xavier_normal",
                     init_scale=scale, seed=0)
    norms = gradient_norms(model, data.X_train, data.y_train)
    return norms[0] / norms[-1]


def smallest_scale_reference(threshold: float) -> float:
    return next((s for s in SCALES if gradient_ratio_reference(s) > threshold), float("nan"))


def ex2_5_gradient_ratio(grad_ratio, smallest_scale) -> None:
    """Exercise 2.5: measure how weight scale sets the vanishing of a deep sigmoid net."""
    with exercise("2.5", points=2, name="measure the vanishing gradient") as ex:
        hint = ("build exactly the network of the statement -- make_mlp(2, 2, width=32, "
                "depth=15, activation='sigmoid', init='xavier_normal', init_scale=scale, seed=0) "
                "-- and divide the FIRST layer's gradient norm by the LAST layer's, with "
                "diagnostics.gradient_norms on the training split of load_moons(n_samples=400, "
                "seed=0)")
        refs = {}
        for scale in (1.0, 6.0, 10.0):
            call = f"grad_ratio({scale:g})"
            got = ex.number(ex.call(grad_ratio, scale, call=call), call)
            refs[scale] = gradient_ratio_reference(scale)
            ex.close(got, refs[scale], call, rtol=0.01, atol=0.0, hint=hint)
        for threshold in (1e-2, 1e-4):
            call = f"smallest_scale({threshold:g})"
            got = ex.number(ex.call(smallest_scale, threshold, call=call), call)
            expected = smallest_scale_reference(threshold)
            ex.true(got == expected, f"{call} returned {got:g}; re-running the experiment, the "
                    f"first scale of SCALES whose ratio exceeds {threshold:g} is {expected:g}",
                    "scan SCALES from the smallest and return the first scale whose measured "
                    "ratio is above the threshold (not the one closest to it)")
        ex.note(f"Measured: with Xavier's scale the input layer gets {refs[1.0]:.1e} of the "
                f"output layer's gradient; the ratio first exceeds 1e-2 at scale "
                f"{smallest_scale_reference(1e-2):g} ({refs[10.0]:.2f} at scale 10).")
        ex.note("Why: each sigmoid layer multiplies the gradient by w * sigma'(z) with "
                "sigma' <= 0.25, so only weights several times larger than Xavier's keep the "
                "product near 1 -- and weights that large saturate the units. Scaling weights up "
                "is not the cure; ReLU with He init or normalization is.")
