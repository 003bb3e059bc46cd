"""nncourse.stacked: K members trained at once equal K ordinary runs of nncourse.training.train."""

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler

from nncourse.data import load_digits
from nncourse.models import make_mlp
from nncourse.stacked import StackedMLP, train_stacked
from nncourse.training import train


def _digits64(n=200):
    d = load_digits().subset_train(n, seed=0)
    return type(d)(d.name, d.X_train.double(), d.y_train, d.X_val.double(), d.y_val,
                   d.X_test.double(), d.y_test, d.n_classes)


def _models(seeds, width=16, depth=2):
    return [make_mlp(64, 10, width=width, depth=depth, init="he_normal", seed=s).double()
            for s in seeds]


def test_forward_equals_each_member():
    models = _models((0, 1, 2))
    stack = StackedMLP(models)
    x = torch.randn(5, 64, dtype=torch.float64)
    out = stack(x.expand(3, 5, 64))
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stack.member(k)(x), m(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_training_equals_separate_runs(opt):
    data, seeds = _digits64(), (0, 1, 2)
    stack = StackedMLP(_models(seeds))

    def make(params):
        if opt == "sgd":
            return torch.optim.SGD(params, lr=0.1, momentum=0.9)
        return torch.optim.Adam(params, lr=0.01, betas=(0.9, 0.99))

    def sched(o):
        return lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=9)

    hs = train_stacked(stack, data, seeds, 3, make(stack.parameters()), batch_size=32,
                       scheduler=sched, scheduler_interval="step", record_steps=True)
    for k, (seed, model) in enumerate(zip(seeds, _models(seeds))):
        h = train(model, data, epochs=3, optimizer=make(model.parameters()), batch_size=32,
                  scheduler=sched, scheduler_interval="step", seed=seed, progress=False)
        for p, q in zip(model.parameters(), stack.member(k).parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(hs[k].train_loss, h.train_loss, rtol=1e-10)
        np.testing.assert_allclose(hs[k].val_loss, h.val_loss, rtol=1e-10)
        np.testing.assert_allclose(hs[k].val_acc, h.val_acc, atol=1e-6)
        assert hs[k].train_acc == h.train_acc
        assert len(hs[k].extra["step_loss"]) == 3 * 7 == len(hs[k].extra["step_lr"])


def test_a_diverged_member_stops_alone():
    data, seeds = _digits64(), (0, 1)
    stack = StackedMLP(_models(seeds))
    with torch.no_grad():
        stack.weights[0][1].fill_(float("nan"))
    hs = train_stacked(stack, data, seeds, 2, torch.optim.SGD(stack.parameters(), lr=0.1),
                       record_steps=True)
    assert hs[1].diverged and hs[1].epochs_run == 1 and len(hs[1].extra["step_loss"]) == 4
    assert not hs[0].diverged and hs[0].epochs_run == 2 and np.isfinite(hs[0].train_loss).all()


def test_clear_errors():
    with pytest.raises(ValueError, match="non-empty"):
        StackedMLP([])
    with pytest.raises(ValueError, match="same layers"):
        StackedMLP(_models((0,), depth=1) + _models((1,), depth=2))
    with pytest.raises(ValueError, match="only nn.Linear"):
        StackedMLP([make_mlp(64, 10, width=8, depth=1, batch_norm=True, seed=0)])
    stack = StackedMLP(_models((0, 1)))
    with pytest.raises(ValueError, match="one seed per member"):
        train_stacked(stack, _digits64(), (0,), 1, torch.optim.SGD(stack.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="below 2"):
        stack.member(2)
