"""Each from-scratch optimizer equals its torch.optim twin, step for step, in float64: random
problems, 120+ steps, two parameter groups, weight decay and a learning rate changed mid-run."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from nncourse import optimizers as O
from nncourse import surfaces as S

CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-3)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=1e-2, weight_decay=1e-2, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.8, weight_decay=1e-2)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=1e-2)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=1e-3)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("NAdam", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01, weight_decay=1e-2, momentum_decay=1e-2)),
    ("NAdam", dict(lr=0.01, weight_decay=1e-2, decoupled_weight_decay=True)),
]


def _problem(seed):
    """A small regression MLP in float64 and its data (random per seed)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    return model, X, y


def _groups(model, kwargs):
    """Two parameter groups: the second with half the rate (and, if any, twice the decay)."""
    second = {"params": list(model[2].parameters()), "lr": kwargs["lr"] / 2}
    if kwargs.get("weight_decay"):
        second["weight_decay"] = kwargs["weight_decay"] * 2
    return [{"params": list(model[0].parameters())}, second]


def _run(cls, kwargs, seed, steps=120):
    model, X, y = _problem(seed)
    opt = cls(_groups(model, kwargs), **kwargs)
    gen = torch.Generator().manual_seed(seed + 100)
    for t in range(steps):
        idx = torch.randint(0, len(X), (16,), generator=gen)  # minibatches: gradients change
        opt.zero_grad()
        nn.functional.mse_loss(model(X[idx]), y[idx]).backward()
        if t == 60:  # a schedule: change every group's rate mid-run
            for group in opt.param_groups:
                group["lr"] *= 0.3
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_torch(name, kwargs, seed):
    ours, opt = _run(getattr(O, name), kwargs, seed)
    theirs, ref = _run(getattr(torch.optim, name), kwargs, seed)
    moved = max((a - b).abs().max().item() for a, b in zip(ours, _problem(seed)[0].parameters()))
    assert moved > 1e-3  # the run did something
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # the same state keys, so a state dict moves between the two
    assert ({k for s in opt.state.values() for k in s}
            == {k for s in ref.state.values() for k in s})


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam"])
def test_defaults_match_torch(name):
    p = [nn.Parameter(torch.zeros(2))]
    ours, theirs = getattr(O, name)(p), getattr(torch.optim, name)(p)
    for key, value in ours.defaults.items():
        assert theirs.defaults[key] == value, key


def test_state_dict_loads_into_torch():
    model, X, y = _problem(3)
    ours = O.Adam(model.parameters(), lr=0.01, amsgrad=True)
    for _ in range(5):
        ours.zero_grad()
        nn.functional.mse_loss(model(X), y).backward()
        ours.step()
    twin = torch.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    twin.load_state_dict(copy.deepcopy(ours.state_dict()))  # load may share tensors
    saved = [p.detach().clone() for p in model.parameters()]
    ours.step()
    after_ours = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, c in zip(model.parameters(), saved):
            p.copy_(c)
    twin.step()
    for a, b in zip(after_ours, model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_momentum_conventions_agree_at_constant_lr_and_differ_after_a_change():
    """torch's v = mu v + g, theta -= lr v vs Sutskever's v = mu v + lr g, theta -= v."""
    g = lambda th: 2 * th  # noqa: E731  (the gradient of th^2)
    for change in (False, True):
        th_t, v_t, th_s, v_s = 1.0, 0.0, 1.0, 0.0
        for t in range(20):
            lr = 0.1 if (t < 10 or not change) else 0.01
            v_t = 0.9 * v_t + g(th_t)
            th_t -= lr * v_t
            v_s = 0.9 * v_s + lr * g(th_s)
            th_s -= v_s
        assert (abs(th_t - th_s) < 1e-12) == (not change)
    # and our SGD is torch's convention
    th = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = O.SGD([th], lr=0.1, momentum=0.9)
    th_t, v_t = 1.0, 0.0
    for t in range(20):
        if t == 10:
            opt.param_groups[0]["lr"] = 0.01
        opt.zero_grad()
        (th ** 2).sum().backward()
        opt.step()
        v_t = 0.9 * v_t + 2 * th_t
        th_t -= (0.1 if t < 10 else 0.01) * v_t
        assert th.item() == pytest.approx(th_t, abs=1e-12)


def test_adam_first_step_is_lr_per_coordinate():
    th = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    opt = O.Adam([th], lr=0.1)
    (th ** 3).sum().backward()
    opt.step()
    np.testing.assert_allclose((th.detach() - torch.tensor([1.0, -2.0, 3.0],
                                                           dtype=torch.float64)).abs(), 0.1,
                               rtol=1e-6)
    assert (1 - 0.9) / math.sqrt(1 - 0.999) == pytest.approx(3.162, abs=1e-3)


@pytest.mark.parametrize("call,match", [
    (lambda p: O.SGD(p, lr=-1), "SGD: lr must be a non-negative number, got -1"),
    (lambda p: O.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum > 0"),
    (lambda p: O.Adam(p, betas=(0.9, 1.0)), r"Adam: beta2 must be in \[0, 1\), got 1.0"),
    (lambda p: O.Adam(p, betas=0.9), "Adam: betas must be a pair"),
    (lambda p: O.RMSprop(p, eps=float("nan")), "RMSprop: eps must be a non-negative number"),
    (lambda p: O.NAdam(p, momentum_decay=-1), "NAdam: momentum_decay must be"),
])
def test_bad_arguments_one_sentence(call, match):
    with pytest.raises(ValueError, match=match):
        call([nn.Parameter(torch.zeros(2))])


def test_closure_and_missing_grads():
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = O.Adam([a, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a ** 2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(2.0)
    assert torch.equal(b.detach(), torch.ones(2))  # no gradient, no step, no state
    assert b not in opt.state


# --- surfaces -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(S.SURFACES))
def test_surface_minimum_and_gradient(name):
    s = S.get(name)
    if s.minimum is not None:
        assert s(torch.tensor(s.minimum, dtype=torch.float64)).item() == pytest.approx(0, abs=1e-12)
        np.testing.assert_allclose(s.grad(s.minimum), 0, atol=1e-12)
    # the written-out gradient == autograd's, at a few points
    gen = torch.Generator().manual_seed(0)
    for p in torch.randn(5, 2, generator=gen, dtype=torch.float64) + torch.tensor(s.start):
        q = p.clone().requires_grad_(True)
        s(q).backward()
        np.testing.assert_allclose(s.grad(p), q.grad.numpy(), rtol=1e-12, atol=1e-12)
    X, Y, Z = s.grid(20)
    assert X.shape == Y.shape == Z.shape == (20, 20)


def test_trajectory_and_steps_to():
    path = S.trajectory("quadratic", lambda p: torch.optim.SGD(p, lr=0.4), steps=200)
    assert path.shape == (201, 2)
    n = S.steps_to(path, (0, 0), tol=1e-3)
    assert n is not None and 0 < n < 200
    diverged = S.trajectory("quadratic", lambda p: torch.optim.SGD(p, lr=0.6), steps=200)
    assert np.isnan(diverged[-1]).all()
    assert S.steps_to(diverged, (0, 0)) is None
    assert S.steps_to(path, None) is None
    with pytest.raises(ValueError, match="surface must be one of quadratic"):
        S.get("himmelblau")
