"""Chapter 02's checks pass on the reference answers and fail, with one clear sentence, on wrong
ones."""

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from nncourse import clipping
from nncourse.checks import NotAttempted
from nncourse.checks import ch02 as check
from nncourse.labs import ch02 as lab
from tests.checks.helpers import check_fails, stub


def fails(fn, answer, pattern):
    return check_fails(2, fn, answer, match=pattern)


@pytest.mark.parametrize("fn", [check.ex2_1_layer_grad_norms, check.ex2_2_clip_grad_norm,
                                check.ex2_3_clip_grad_value, check.ex2_4_diagnose])
def test_stub_is_not_attempted(fn):
    with pytest.raises(NotAttempted, match="not attempted yet"):
        fn(stub)


# --- 2.1 ----------------------------------------------------------------------------------------

def test_2_1_passes_on_reference_and_variants(capsys):
    check.ex2_1_layer_grad_norms(lab.layer_grad_norms)
    check.ex2_1_layer_grad_norms(lambda m: [p.grad.norm() for p in m.parameters() if p.ndim == 2])
    check.ex2_1_layer_grad_norms(lambda m: torch.stack(
        [lay.weight.grad.norm() for lay in m.modules() if isinstance(lay, nn.Linear)]))
    assert capsys.readouterr().out.count("Exercise 2.1 passed (2 points)") == 3


def test_2_1_fails_on_wrong_answers():
    linears = lambda m: [lay for lay in m.modules() if isinstance(lay, nn.Linear)]  # noqa: E731
    fails(check.ex2_1_layer_grad_norms, lambda m: [p.grad.norm().item() for p in m.parameters()],
          "expected 4 norms")
    fails(check.ex2_1_layer_grad_norms,
          lambda m: [(lay.weight.grad ** 2).sum().item() for lay in linears(m)], "is wrong")
    fails(check.ex2_1_layer_grad_norms,
          lambda m: [lay.weight.grad.norm().item() for lay in linears(m)][::-1],
          "input layer first")
    fails(check.ex2_1_layer_grad_norms,
          lambda m: [lay.weight.norm().item() for lay in linears(m)], "is wrong")
    fails(check.ex2_1_layer_grad_norms, lambda m: None, "returned None")
    fails(check.ex2_1_layer_grad_norms, lambda m: [float("nan")] * 4, "NaN")

    def zeroes_grads(m):
        out = lab.layer_grad_norms(m)
        m.zero_grad()
        return out
    fails(check.ex2_1_layer_grad_norms, zeroes_grads, "changed the model's gradients")


# --- 2.2 ----------------------------------------------------------------------------------------

def _no_eps(params, max_norm):
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.sqrt(sum((g ** 2).sum() for g in grads))
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / total)
    return total


def test_2_2_passes_on_reference_torch_and_without_epsilon(capsys):
    check.ex2_2_clip_grad_norm(clipping.clip_grad_norm_)
    check.ex2_2_clip_grad_norm(torch.nn.utils.clip_grad_norm_)
    check.ex2_2_clip_grad_norm(lambda ps, m: _no_eps(ps, m).item())
    assert capsys.readouterr().out.count("Exercise 2.2 passed (3 points)") == 3


def test_2_2_fails_on_wrong_answers():
    def per_tensor(params, max_norm):
        total = 0.0
        for p in params:
            if p.grad is not None:
                n = p.grad.norm()
                total += n.item() ** 2
                if n > max_norm:
                    p.grad.mul_(max_norm / n)
        return math.sqrt(total)
    fails(check.ex2_2_clip_grad_norm, per_tensor, "clipped to max_norm on its own")

    def not_in_place(params, max_norm):
        grads = [p.grad for p in params if p.grad is not None]
        total = torch.sqrt(sum((g ** 2).sum() for g in grads))
        _ = [g * min(1.0, max_norm / total.item()) for g in grads]
        return total
    fails(check.ex2_2_clip_grad_norm, not_in_place, "left every p.grad unchanged")

    def returns_norm_after(params, max_norm):
        clipping.clip_grad_norm_(params, max_norm)
        return torch.sqrt(sum((p.grad ** 2).sum() for p in params if p.grad is not None))
    fails(check.ex2_2_clip_grad_norm, returns_norm_after, "before\\* clipping")

    def always_rescale(params, max_norm):
        grads = [p.grad for p in params if p.grad is not None]
        total = torch.sqrt(sum((g ** 2).sum() for g in grads))
        for g in grads:
            g.mul_(max_norm / (total + 1e-6))
        return total
    fails(check.ex2_2_clip_grad_norm, always_rescale, "already below max_norm")

    def nan_on_zero(params, max_norm):
        grads = [p.grad for p in params if p.grad is not None]
        total = torch.sqrt(sum((g ** 2).sum() for g in grads))
        for g in grads:
            g.mul_(torch.clamp(max_norm / total, max=1.0) if total > 0 else total / total)
        return total
    fails(check.ex2_2_clip_grad_norm, nan_on_zero, "must stay zero, not NaN")

    def crashes_on_none(params, max_norm):
        total = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
        return total
    fails(check.ex2_2_clip_grad_norm, crashes_on_none, "raised TypeError")
    fails(check.ex2_2_clip_grad_norm, lambda ps, m: clipping.clip_grad_norm_(ps, m) and None,
          "returned None")
    fails(check.ex2_2_clip_grad_norm,
          lambda ps, m: torch.stack([clipping.clip_grad_norm_(ps, m)] * 2), "single number")


# --- 2.3 ----------------------------------------------------------------------------------------

def test_2_3_passes_on_reference_and_torch(capsys):
    check.ex2_3_clip_grad_value(clipping.clip_grad_value_)
    check.ex2_3_clip_grad_value(torch.nn.utils.clip_grad_value_)
    assert capsys.readouterr().out.count("Exercise 2.3 passed (1 point)") == 2


def test_2_3_fails_on_wrong_answers():
    def upper_only(params, c):
        for p in params:
            if p.grad is not None:
                p.grad.clamp_(max=c)
    fails(check.ex2_3_clip_grad_value, upper_only, "negative components too")

    def not_in_place(params, c):
        return [p.grad.clamp(-c, c) for p in params if p.grad is not None]
    fails(check.ex2_3_clip_grad_value, not_in_place, "is wrong")

    def by_norm(params, c):
        clipping.clip_grad_norm_(params, c)
    fails(check.ex2_3_clip_grad_value, by_norm, "is wrong")

    def invents_grads(params, c):
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.clamp_(-c, c)
    fails(check.ex2_3_clip_grad_value, invents_grads, "gradient it did not have")

    def nan_grads(params, c):
        for p in params:
            if p.grad is not None:
                p.grad.fill_(float("nan"))
    fails(check.ex2_3_clip_grad_value, nan_grads, "got nan")


# --- 2.4 ----------------------------------------------------------------------------------------

def test_2_4_table_agrees_with_reference():
    cases = check._profiles()
    assert {label for _, label in cases} == {"vanishing", "exploding", "healthy"}
    for profile, label in cases:
        assert lab.diagnose(profile) == label


def test_2_4_passes_on_reference(capsys):
    check.ex2_4_diagnose(lab.diagnose)
    assert "Exercise 2.4 passed (2 points)" in capsys.readouterr().out


def test_2_4_fails_on_wrong_answers():
    def ratio_only(norms):
        g = np.asarray(norms, dtype=float)
        if not np.all(np.isfinite(g)) or g[0] > 100 * g[-1]:
            return "exploding"
        return "vanishing" if g[0] * 100 < g[-1] else "healthy"
    msg = fails(check.ex2_4_diagnose, ratio_only, "expected 'exploding'|expected 'vanishing'")
    assert re.search(r"diagnose\(\[.*\]\) returned", msg)

    def reversed_ratio(norms):
        g = np.asarray(norms, dtype=float)
        if not np.all(np.isfinite(g)) or g.max() > 100 or g[-1] > 100 * g[0]:
            return "exploding"
        if g.max() < 1e-3 or g[-1] * 100 < g[0]:
            return "vanishing"
        return "healthy"
    fails(check.ex2_4_diagnose, reversed_ratio, "returned 'exploding', expected 'vanishing'")

    def ignores_nan(norms):
        g = np.asarray(norms, dtype=float)
        g = g[np.isfinite(g)]
        return lab.diagnose(g)
    fails(check.ex2_4_diagnose, ignores_nan, "expected 'exploding'")
    fails(check.ex2_4_diagnose, lambda norms: "Vanishing", "one of the strings")
    fails(check.ex2_4_diagnose, lambda norms: None, "one of the strings")
    fails(check.ex2_4_diagnose, lambda norms: "healthy", "expected 'vanishing'")

    def vanishing_first(norms):  # issue 19: the rules checked in the wrong order
        g = np.asarray(norms, dtype=float)
        if np.all(np.isfinite(g)) and (g.max() < 1e-3 or g[0] * 100 < g[-1]):
            return "vanishing"
        return lab.diagnose(g)
    msg = fails(check.ex2_4_diagnose, vanishing_first,
                "returned 'vanishing', expected 'exploding' -- both the exploding and the "
                "vanishing rule fire")
    assert "exploding first" in msg


# --- 2.5 predict, measure and explain ---------------------------------------------------------

def _smallest(ratio_fn):
    return lambda thr: next(s for s in check.SCALES if ratio_fn(s) > thr)


def test_2_5_passes_and_explains(capsys):
    check.ex2_5_gradient_ratio(check.gradient_ratio_reference,
                               _smallest(check.gradient_ratio_reference))
    out = capsys.readouterr().out
    assert out.endswith("Exercise 2.5 passed (2 points)\n") and "exceeds 1e-2 at scale 8" in out


def test_2_5_the_answer_is_away_from_the_edge():
    """The scale found is not decided by a last-bit difference: neighbours are > 20 % away."""
    for thr in (1e-2, 1e-4):
        s = check.smallest_scale_reference(thr)
        i = check.SCALES.index(s)
        assert check.gradient_ratio_reference(s) > 1.2 * thr
        assert check.gradient_ratio_reference(check.SCALES[i - 1]) < thr / 1.2


def test_2_5_wrong_answers():
    ref = check.gradient_ratio_reference

    def inverted(scale):  # last / first
        return 1 / ref(scale)

    def default_init(scale):  # PyTorch's default init instead of Xavier
        from nncourse.data import load_moons
        from nncourse.diagnostics import gradient_norms
        from nncourse.models import make_mlp
        d = load_moons(n_samples=400, seed=0)
        m = make_mlp(2, 2, width=32, depth=15, activation="sigmoid", init_scale=scale, seed=0)
        g = gradient_norms(m, d.X_train, d.y_train)
        return g[0] / g[-1]

    def closest(thr):  # the scale whose ratio is closest to the threshold (6 for 1e-2)
        return min(check.SCALES, key=lambda s: abs(np.log(ref(s) / thr)))

    check_fails(2, check.ex2_5_gradient_ratio, inverted, _smallest(ref),
                match=r"grad_ratio\(1\) is wrong")
    check_fails(2, check.ex2_5_gradient_ratio, default_init, _smallest(ref),
                match=r"grad_ratio\(1\) is wrong")
    check_fails(2, check.ex2_5_gradient_ratio, ref, closest,
                match=r"smallest_scale\(0.01\) returned 6; .* is 8.*first scale")
