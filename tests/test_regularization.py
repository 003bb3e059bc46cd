"""nncourse.regularization against the torch functions it mirrors, on random inputs."""

import math

import pytest
import torch
from torch import nn

from nncourse import regularization as R
from nncourse.models import linear_layers, make_mlp
from nncourse.training import History, train


def _model(seed=0):
    return make_mlp(3, 2, width=8, depth=2, init="he_normal", seed=seed)


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g), torch.randint(0, 2, (n,), generator=g)


# --- penalties ---------------------------------------------------------------------------------

def test_penalty_values_and_gradients_match_autograd():
    w = torch.randn(5, 4, requires_grad=True)
    for penalty, grad in ((R.l1_penalty, R.l1_grad), (R.l2_penalty, R.l2_grad)):
        w.grad = None
        penalty(w, 0.3).backward()
        assert torch.allclose(w.grad, grad(w.detach(), 0.3))
    assert math.isclose(R.l1_penalty(w, 0.3).item(), 0.3 * w.abs().sum().item(), rel_tol=1e-6)
    assert math.isclose(R.l2_penalty(w, 0.3).item(), 0.15 * (w ** 2).sum().item(), rel_tol=1e-6)


def test_penalty_of_a_model_covers_linear_weights_only():
    model = _model()
    weights = [layer.weight for layer in linear_layers(model)]
    assert math.isclose(R.l2_penalty(model, 1.0).item(),
                        0.5 * sum((w ** 2).sum() for w in weights).item(), rel_tol=1e-6)
    with pytest.raises(ValueError, match="lam must be a non-negative number"):
        R.l1_penalty(model, -1.0)


def _sgd_step(model, weight_decay, penalty_lam, momentum=0.9, steps=3):
    X, y = _data()
    weights = [layer.weight for layer in linear_layers(model)]
    others = [p for p in model.parameters() if all(p is not w for w in weights)]
    opt = torch.optim.SGD([{"params": weights, "weight_decay": weight_decay},
                           {"params": others}], lr=0.1, momentum=momentum)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        if penalty_lam:
            loss = loss + R.l2_penalty(model, penalty_lam)
        loss.backward()
        opt.step()
    return model


def test_l2_loss_term_equals_sgd_weight_decay():
    a = _sgd_step(_model(), weight_decay=0.05, penalty_lam=0.0)
    b = _sgd_step(_model(), weight_decay=0.0, penalty_lam=0.05)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def _weight_decay_and_penalty_runs(lam: float, **train_kw):
    """The same model trained twice: SGD weight_decay on the weights vs the WeightPenalty
    callback (both leave the biases alone)."""
    X, y = _data()
    a, b = _model(), _model()
    weights = [layer.weight for layer in linear_layers(a)]
    others = [p for p in a.parameters() if all(p is not w for w in weights)]
    opt = torch.optim.SGD([{"params": weights, "weight_decay": lam}, {"params": others}], lr=0.1)
    train(a, (X, y), epochs=3, optimizer=opt, batch_size=8, progress=False, **train_kw)
    train(b, (X, y), epochs=3, lr=0.1, batch_size=8, progress=False,
          callbacks=[R.WeightPenalty("l2", lam)], **train_kw)
    return a, b


def test_weight_penalty_callback_equals_weight_decay():
    a, b = _weight_decay_and_penalty_runs(0.05)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_weight_penalty_callback_equals_weight_decay_when_clipping_fires():
    # SGD adds weight_decay * w inside opt.step, after clipping: the callback must do the same
    a, b = _weight_decay_and_penalty_runs(0.5, clip_norm=0.01)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_proximal_l1_gives_exact_zeros_and_subgradient_does_not():
    X, y = _data(64)
    runs = {}
    for proximal in (True, False):
        model = _model()
        train(model, (X, y), epochs=30, lr=0.1, batch_size=None, progress=False,
              callbacks=[R.WeightPenalty("l1", 0.05, proximal=proximal)])
        runs[proximal] = R.weight_stats(model)["zeros"]
    assert runs[True] > 20 and runs[False] == 0


def test_soft_threshold():
    w = torch.tensor([-1.0, -0.05, 0.0, 0.05, 2.0])
    R.soft_threshold_(w, 0.1)
    assert torch.equal(w, torch.tensor([-0.9, 0.0, 0.0, 0.0, 1.9]))


# --- dropout -----------------------------------------------------------------------------------

def test_dropout_train_statistics_match_nn_dropout():
    x = torch.rand(200_000) + 0.5
    for p in (0.2, 0.5, 0.8):
        torch.manual_seed(0)
        ours = R.dropout(x, p)
        theirs = nn.functional.dropout(x, p, training=True)
        for out in (ours, theirs):
            kept = out != 0
            assert abs((~kept).float().mean().item() - p) < 0.01          # drop rate p
            assert torch.allclose(out[kept], x[kept] / (1 - p))          # survivors scaled
            assert abs(out.mean().item() / x.mean().item() - 1) < 0.02   # expectation kept
        assert abs((ours == 0).float().mean() - (theirs == 0).float().mean()).item() < 0.01


def test_dropout_eval_is_identity_and_module_mirrors_nn_dropout():
    x = torch.randn(4, 6)
    assert torch.equal(R.dropout(x, 0.5, training=False), x)
    assert torch.equal(R.dropout(x, 0.0), x)
    m = R.Dropout(0.3).eval()
    assert torch.equal(m(x), nn.Dropout(0.3).eval()(x))
    m.train()
    assert not torch.equal(m(torch.ones(1000)), torch.ones(1000))
    with pytest.raises(ValueError, match=r"dropout p must be in \[0, 1\), got 1.5"):
        R.dropout(x, 1.5)


def test_mc_dropout_predict():
    model = make_mlp(3, 1, width=16, depth=2, dropout=0.5, seed=0).eval()
    X, _ = _data(10)
    mean, std = R.mc_dropout_predict(model, X, n_samples=20, seed=1)
    mean2, _ = R.mc_dropout_predict(model, X, n_samples=20, seed=1)
    assert mean.shape == (10,) and std.shape == (10,)
    assert torch.equal(mean, mean2)                    # seeded
    assert (std > 0).all() and not model.training      # dropout was on; mode restored
    plain = make_mlp(3, 1, width=16, depth=2, seed=0)  # no dropout: no spread
    assert torch.allclose(R.mc_dropout_predict(plain, X, 5)[1], torch.zeros(10))


def test_expected_calibration_error():
    y = torch.tensor([1, 1, 0, 0])
    assert R.expected_calibration_error(torch.tensor([1.0, 1.0, 0.0, 0.0]), y) == 0.0
    # always 90 % sure, right half the time -> ECE = |0.5 - 0.9|
    assert math.isclose(R.expected_calibration_error(torch.tensor([0.9, 0.1, 0.9, 0.1]), y), 0.4,
                        rel_tol=1e-6)


# --- max-norm ----------------------------------------------------------------------------------

def test_max_norm_equals_torch_renorm():
    g = torch.Generator().manual_seed(0)
    for shape, dim, c in (((6, 5), 0, 1.0), ((6, 5), 1, 0.7), ((3, 4, 5), 2, 2.0)):
        w = torch.randn(shape, generator=g) * 2
        expected = torch.renorm(w, 2, dim, c)
        out = R.max_norm_(w, c, dim=dim)
        assert out is w and torch.allclose(w, expected, rtol=1e-6, atol=1e-7)


def test_max_norm_callback_bounds_every_row():
    model = _model()
    X, y = _data()
    train(model, (X, y), epochs=3, lr=0.5, batch_size=8, progress=False,
          callbacks=[R.MaxNorm(0.5)])
    for layer in linear_layers(model):
        assert layer.weight.norm(dim=1).max().item() <= 0.5 + 1e-6
    with pytest.raises(ValueError, match="max_norm must be a positive number"):
        R.MaxNorm(0)


# --- early stopping ----------------------------------------------------------------------------

@pytest.mark.parametrize("values, patience, min_delta, expected", [
    ([1.0, 0.8, 0.6, 0.7, 0.65, 0.9], 3, 0.0, (6, 3)),     # 3 epochs without beating 0.6
    ([1.0, 0.8, 0.6, 0.7, 0.65, 0.9], 4, 0.0, (6, 3)),     # never fires: runs to the end
    ([1.0, 0.9, 0.8, 0.7], 1, 0.0, (4, 4)),                # always improving
    ([1.0, 0.95, 0.94, 0.93, 0.5], 2, 0.1, (3, 1)),        # small gains do not count
    ([1.0, 0.95, 0.94, 0.93, 0.5], 2, 0.0, (5, 5)),
    ([0.5, 0.5, 0.5], 2, 0.0, (3, 1)),                     # ties are not improvements
    ([2.0], 1, 0.0, (1, 1)),
])
def test_early_stopping_epochs(values, patience, min_delta, expected):
    assert R.early_stopping_epochs(values, patience, min_delta) == expected


def test_early_stopping_epochs_max_mode_and_validation():
    assert R.early_stopping_epochs([0.5, 0.7, 0.6, 0.65], 2, mode="max") == (4, 2)
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        R.early_stopping_epochs([1.0], 0)
    with pytest.raises(ValueError, match="values is empty"):
        R.early_stopping_epochs([], 3)


class _Scripted(nn.Module):
    """A model whose 'validation loss' is scripted, to test the callback alone."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))


def test_early_stopping_callback_stops_and_restores_best_weights():
    losses = [1.0, 0.8, 0.6, 0.7, 0.65, 0.9, 0.4]
    model, history = _Scripted(), History()
    cb = R.EarlyStopping(patience=3)
    cb.on_train_begin(model, None, history)
    stopped_at = None
    for epoch, loss in enumerate(losses, start=1):
        with torch.no_grad():
            model.w.fill_(epoch)  # the weights "are" the epoch number
        history.val_loss.append(loss)
        if cb.on_epoch_end(model, epoch, history):
            stopped_at = epoch
            break
    cb.on_train_end(model, history)
    assert (stopped_at, cb.stopped_epoch, cb.best_epoch) == (6, 6, 3)
    assert R.early_stopping_epochs(losses, 3) == (6, 3)
    assert model.w.item() == 3.0
    assert history.extra == {"best_epoch": 3, "stopped_epoch": 6}


def test_early_stopping_in_the_training_loop():
    X, y = _data(64)
    model = _model()
    cb = R.EarlyStopping(patience=2)
    h = train(model, (X[:32], y[:32], X[32:], y[32:]), epochs=200, lr=0.5, batch_size=None,
              progress=False, callbacks=[cb])
    assert cb.stopped_epoch == h.epochs_run < 200
    assert (h.epochs_run, cb.best_epoch) == R.early_stopping_epochs(h.val_loss, 2)
