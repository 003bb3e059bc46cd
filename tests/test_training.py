import math

import pytest
import torch

from nncourse import data, models, training


@pytest.fixture(scope="module")
def moons():
    return data.load_moons(n_samples=400)


def fresh(seed=0, **kw):
    return models.make_mlp(2, 1, width=16, depth=2, init="he_normal", seed=seed, **kw)


def test_training_learns_moons(moons):
    h = training.train(fresh(), moons, epochs=30, lr=0.3, progress=False)
    assert h.epochs_run == 30 and len(h.val_acc) == 30
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert h.val_acc[-1] > 0.85
    assert "val acc" in h.summary()


def test_training_is_deterministic(moons):
    a = training.train(fresh(), moons, epochs=5, lr=0.1, progress=False)
    b = training.train(fresh(), moons, epochs=5, lr=0.1, progress=False)
    c = training.train(fresh(), moons, epochs=5, lr=0.1, seed=1, progress=False)
    assert a.train_loss == b.train_loss
    assert a.train_loss != c.train_loss  # the shuffling seed matters


def test_full_batch_and_tuple_data(moons):
    h = training.train(fresh(), (moons.X_train, moons.y_train), epochs=3, batch_size=None,
                       progress=False)
    assert len(h.train_loss) == 3 and h.val_loss == []


def test_multiclass_uses_cross_entropy():
    d = data.load_digits()
    m = models.make_mlp(64, 10, width=32, depth=1, seed=0)
    h = training.train(m, d, epochs=3, lr=0.1, progress=False)
    assert h.val_acc[-1] > 0.5
    loss, acc = training.evaluate(m, d.X_val, d.y_val)
    assert loss == pytest.approx(h.val_loss[-1]) and acc == pytest.approx(h.val_acc[-1])
    assert training.accuracy(m, d.X_val, d.y_val) == pytest.approx(acc)


def test_clip_norm_bounds_each_sgd_step(moons):
    m = fresh()

    class StepSize(training.Callback):
        def __init__(self):
            self.sizes = []

        def on_after_backward(self, model, step):
            self.before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])

        def on_step_end(self, model, step, loss):
            after = torch.cat([p.detach().flatten() for p in model.parameters()])
            self.sizes.append((after - self.before).norm().item())

    probe = StepSize()
    training.train(m, moons, epochs=2, lr=1.0, clip_norm=0.01, callbacks=[probe], progress=False)
    assert max(probe.sizes) <= 0.01 * 1.0 + 1e-6
    unclipped = StepSize()
    training.train(fresh(), moons, epochs=2, lr=1.0, callbacks=[unclipped], progress=False)
    assert max(unclipped.sizes) > 0.05


def test_scheduler_steps_per_epoch_and_plateau(moons):
    h = training.train(fresh(), moons, epochs=4, lr=0.1, progress=False,
                       scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5))
    assert h.lr == [0.1, 0.1, 0.05, 0.05]
    h = training.train(fresh(), moons, epochs=6, lr=1e-3, progress=False,
                       scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
                           opt, patience=0, factor=0.1, threshold=0.5))
    assert h.lr[-1] < 1e-3


def test_step_scheduler(moons):
    steps = math.ceil(len(moons.y_train) / 64) * 2
    h = training.train(fresh(), moons, epochs=2, lr=0.1, progress=False, scheduler_interval="step",
                       scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(
                           opt, max_lr=0.5, total_steps=steps))
    assert h.lr[0] > 0.1  # mid-cycle after the first epoch


def test_callback_can_stop_training(moons):
    class StopAt(training.Callback):
        def on_epoch_end(self, model, epoch, history):
            return epoch == 3

    h = training.train(fresh(), moons, epochs=10, callbacks=[StopAt()], progress=False)
    assert h.epochs_run == 3 and len(h.train_loss) == 3


def test_divergence_is_detected(moons):
    m = fresh(init_scale=10.0)
    h = training.train(m, moons, epochs=20, lr=1e6, loss="mse", progress=False)
    assert h.diverged and h.epochs_run < 20
    assert "DIVERGED" in h.summary()


def test_best_epoch():
    h = training.History(val_loss=[3.0, 1.0, 2.0], val_acc=[0.1, 0.5, 0.9])
    assert h.best_epoch() == 2 and h.best_epoch("val_acc") == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"batch_size": 0}, "batch_size must be a positive integer or None, got 0"),
    ({"optimizer": "adamm"}, "optimizer must be one of sgd, adam"),
    ({"lr": -1}, "lr must be a positive number, got -1"),
    ({"clip_norm": 0}, "clip_norm must be a positive number or None, got 0"),
    ({"loss": "hinge"}, "loss must be 'auto', 'bce', 'ce', 'mse' or a callable"),
])
def test_bad_arguments(moons, kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.train(fresh(), moons, **{"epochs": 1, **kwargs}, progress=False)


def test_bad_data_type():
    with pytest.raises(TypeError, match="data must be an nncourse Dataset"):
        training.train(fresh(), "moons", progress=False)


def test_progress_bar_runs(moons, capsys):
    training.train(fresh(), moons, epochs=2, progress=True)


def test_on_before_step_sees_clipped_gradients(moons):
    class Norms(training.Callback):
        def __init__(self):
            self.after_backward, self.before_step = [], []

        def _norm(self, model):
            return torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()

        def on_after_backward(self, model, step):
            self.after_backward.append(self._norm(model))

        def on_before_step(self, model, step):
            self.before_step.append(self._norm(model))

    n = Norms()
    training.train(fresh(), moons, epochs=1, lr=0.1, clip_norm=0.01, callbacks=[n], progress=False)
    assert max(n.before_step) <= 0.01 + 1e-6 < min(n.after_backward)


def test_mean_sd_over_runs():
    import numpy as np

    from nncourse.training import mean_sd

    assert mean_sd([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_sd(v for v in [0.5]) == (0.5, 0.0)
    mean, sd = mean_sd([[0.5, 1.0], [0.7, 1.0], [0.9, 1.0]])
    np.testing.assert_allclose(mean, [0.7, 1.0])
    np.testing.assert_allclose(sd, [0.2, 0.0], atol=1e-12)
    mean, sd = mean_sd([[0.5, 1.0]])
    assert sd.tolist() == [0.0, 0.0]
