"""Chapter 06's experiments measure what the chapter says they measure."""

import math

import numpy as np
import pytest
import torch

from nncourse import optimizers as O
from nncourse.labs import ch06 as lab


def test_quadratic_runs_converge_and_diverge():
    runs = lab.quadratic_runs(steps=30)
    dist = {k: np.linalg.norm(v[-1]) for k, v in runs.items()}
    assert dist[(0.4, 0.0)] < np.linalg.norm(runs[(0.4, 0.0)][0])
    assert dist[(0.6, 0.0)] > 100  # the x2 mode multiplies by |1 - 0.6 * 4| = 1.4 each step
    assert dist[(0.6, 0.5)] < 1e-2


def test_rates_match_theory():
    r = lab.rates()
    assert r["gd"]["measured"] == pytest.approx(19 / 21, rel=1e-6)
    # at the optimum the slowest modes are double roots (t r^t): measured a little above r
    assert r["momentum"]["rate"] < r["momentum"]["measured"] < r["momentum"]["rate"] * 1.02
    assert r["momentum"]["momentum"] == pytest.approx(((math.sqrt(20) - 1)
                                                       / (math.sqrt(20) + 1)) ** 2)


def test_rate_vs_momentum_minimum_near_optimum():
    scan = lab.rate_vs_momentum(betas=(0.2, 0.3, 0.4, 0.5, 0.6), steps=100)
    best = lab.optimal(0.2, 4.0)["momentum"]["momentum"]
    assert scan["beta"][np.argmin(scan["measured"])] == best
    away = np.abs(scan["beta"] - best) > 0.05
    np.testing.assert_allclose(scan["measured"][away], scan["predicted"][away], rtol=0.02)


def test_predicted_rate_is_gd_rate_without_momentum():
    assert lab.predicted_rate(1.0, 10.0, 2 / 11, 0.0) == pytest.approx(9 / 11)


def test_constant_gradient_steps():
    s = lab.constant_gradient_steps(steps=100, lr=0.1)
    np.testing.assert_allclose(s["adagrad"], 0.1 / np.sqrt(np.arange(1, 101)), rtol=1e-8)
    np.testing.assert_allclose(s["sgd"], 0.1)
    np.testing.assert_allclose(s["adam"], 0.1, rtol=1e-6)
    assert s["rmsprop"][0] == pytest.approx(1.0, rel=1e-6)  # 0.1 / sqrt(1 - 0.99)


def test_adam_bias_steps():
    b = lab.adam_bias_steps(steps=50)
    np.testing.assert_allclose(b["with"], 1.0, rtol=1e-6)
    assert b["without"][0] == pytest.approx(0.1 / math.sqrt(0.001), rel=1e-6)


def test_decay_per_coordinate():
    d = lab.decay_per_coordinate()
    np.testing.assert_allclose(d["adamw"], 1.0, atol=0.05)
    assert d["adam"][0] > 5 and abs(d["adam"][1]) < 0.05


def test_reddi_counterexample():
    assert lab.reddi(False, steps=600)[-1] == pytest.approx(1.0)
    assert lab.reddi(True, steps=600)[-1] < -0.9


def test_make_and_surface_runs():
    opt = lab.make("nesterov", 0.1, 0.5)([torch.zeros(1, requires_grad=True)])
    assert isinstance(opt, O.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.5
    with pytest.raises(ValueError, match="make: optimizer must be one of sgd"):
        lab.make("lbfgs", 0.1)
    with pytest.raises(ValueError, match="make: lr must be a positive number"):
        lab.make("sgd", 0)
    runs = lab.surface_runs("quadratic", steps=150)
    assert set(runs) == set(lab.NAMES) and all(p.shape == (151, 2) for p in runs.values())
    lines = lab.steps_table(("quadratic",), steps=150)
    assert len(lines) == 1 + len(lab.NAMES)


def test_digits_runs_shapes_and_table():
    runs = lab.digits_runs(seeds=(0,), epochs=1)
    assert set(runs) == set(lab.DIGITS_SETTINGS)
    assert runs["adam"]["train_loss"].shape == (1, 1)
    assert "over 1 seeds" in lab.digits_table(runs)[-1]
    with pytest.raises(ValueError, match="seeds"):
        lab.digits_runs(seeds=())


def test_mislabelled_baseline():
    d = lab.mislabelled_baseline(epochs=1)
    assert d["baseline vs momentum"] == 0.0
    assert d["baseline vs plain SGD"] > 1e-3


def test_widget_draws_every_surface_and_optimizer():
    import matplotlib

    matplotlib.use("Agg")
    box = lab.explore_optimizer(steps=20)
    surface, optimizer, lr, beta = box.children[0].children
    for s in ("quadratic", "saddle", "beale"):
        surface.value = s
        for name in lab.NAMES:
            optimizer.value = name
    assert not beta.disabled and beta.description == "beta1"  # NAdam's
    optimizer.value = "adagrad"
    assert beta.disabled
    lr.value = 1.0
    optimizer.value = "sgd"
    assert "diverged" in box.figure.axes[0].get_title()  # beale at lr 1


def test_momentum_conventions():
    c = lab.momentum_conventions()
    assert c["constant"][0] == pytest.approx(c["constant"][1], abs=1e-12)
    assert abs(c["changed"][0] - c["changed"][1]) > 1e-2


@pytest.mark.parametrize("decoupled", [False, True])
def test_grid_adam_equals_torch_run_by_run(decoupled):
    from nncourse.models import make_mlp
    from nncourse.stacked import StackedMLP

    lrs, wds = [1e-3, 1e-2, 3e-2], [1e-2, 1.0, 0.3]
    models = [make_mlp(8, 3, width=5, depth=1, seed=s).double() for s in range(3)]
    stack = StackedMLP(models)
    opt = lab.GridAdam(stack.parameters(), lrs, wds, decoupled)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    refs = [cls(m.parameters(), lr=lr, weight_decay=wd) for m, lr, wd in zip(models, lrs, wds)]
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        x = torch.randn(6, 8, dtype=torch.float64, generator=gen)
        y = torch.randint(0, 3, (6,), generator=gen)
        out = stack(x.expand(3, 6, 8))
        loss = sum(torch.nn.functional.cross_entropy(out[k], y) for k in range(3))
        opt.zero_grad()
        loss.backward()
        opt.step()
        for m, ref in zip(models, refs):
            ref.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            ref.step()
    for k, m in enumerate(models):
        for p, q in zip(m.parameters(), stack.member(k).parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_grid_adam_rejects_mismatched_hyperparameters():
    with pytest.raises(ValueError, match="same length"):
        lab.GridAdam([torch.zeros(2, 3, requires_grad=True)], torch.tensor([1e-3, 1e-2]),
                     torch.tensor([0.1]), decoupled=True)


def test_tolerated_decay_interpolates_the_edge():
    loss = np.array([[1.0, 1.0, 1.5, 3.0],       # reaches 1.25 halfway between decays 2 and 3
                     [1.0, 1.1, 1.2, 1.24],      # never gets there
                     [1.0, np.nan, 2.0, 2.0]])   # a diverged run counts as past the edge
    edge = lab.tolerated_decay(loss, [1e-3, 1e-2, 1e-1, 1.0])
    assert edge[0] == pytest.approx(10 ** -1.5)
    assert np.isnan(edge[1])
    assert edge[2] == pytest.approx(1e-2)


def test_decay_grid_small_and_its_table():
    grid = lab.decay_grid(seeds=(0, 1), epochs=2, n_train=100)
    for name in ("adam", "adamw"):
        assert grid[name]["val_loss"].shape == (len(lab.DECAY_GRID["lrs"]),
                                                len(lab.DECAY_GRID[name]), 2)
        # the largest decays wreck the network: loss far above the smallest decay's
        assert np.all(np.nanmean(grid[name]["val_loss"][:, -1], 1)
                      > np.nanmean(grid[name]["val_loss"][:, 0], 1))
    edges = lab.decay_edges(grid)
    assert edges["adam"]["seeds"].shape == (len(lab.DECAY_GRID["lrs"]), 2)
    lines = lab.decay_table(grid, edges)
    assert any(line.strip().startswith("moves") for line in lines) and "2 seeds" in lines[-1]
