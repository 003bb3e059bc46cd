import numpy as np
import pytest
import torch
from torch import nn

from nncourse import data, diagnostics, models, training


def test_activation_stats_dead_and_saturated():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2), nn.Tanh())
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]))
        m[0].bias.copy_(torch.tensor([0.0, -5.0, 0.0]))  # unit 2 and 3 never fire
        m[2].weight.fill_(100.0)
        m[2].bias.zero_()
    X = torch.rand(20, 2) + 0.5
    relu, tanh = diagnostics.activation_stats(m, X, keep_values=True)
    assert relu["kind"] == "relu" and relu["dead"] == pytest.approx(2 / 3)
    assert tanh["saturated"] == 1.0 and relu["saturated"] == 0.0
    assert relu["values"].shape == (60,)
    assert relu["mean"] == pytest.approx(m[1](m[0](X)).mean().item(), rel=1e-6)


def test_gradient_norms_match_manual_backward_and_leave_grads_alone():
    torch.manual_seed(0)
    m = models.make_mlp(4, 3, width=5, depth=2)
    X, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    m[0].weight.grad = torch.ones_like(m[0].weight)
    norms = diagnostics.gradient_norms(m, X, y)
    assert torch.equal(m[0].weight.grad, torch.ones_like(m[0].weight))
    m.zero_grad()
    nn.functional.cross_entropy(m(X), y).backward()
    expected = [lay.weight.grad.norm().item() for lay in models.linear_layers(m)]
    assert norms == pytest.approx(expected)


def test_has_nonfinite():
    m = nn.Linear(2, 2)
    assert not diagnostics.has_nonfinite(m)
    with torch.no_grad():
        m.weight[0, 0] = float("nan")
    assert diagnostics.has_nonfinite(m)


def test_gradient_monitor_records_norms_and_update_ratios():
    d = data.load_moons(n_samples=200)
    m = models.make_mlp(2, 1, width=8, depth=2, seed=0)
    monitor = diagnostics.GradientMonitor(every=2)
    lr = 0.1
    h = training.train(m, d, epochs=2, lr=lr, batch_size=None, callbacks=[monitor], progress=False)
    assert monitor.steps == [0] and monitor.grad_norms.shape == (1, 3)
    assert h.extra["update_ratios"].shape == (1, 3)
    # For plain SGD the update is lr * grad, so the ratio is lr * ||g|| / ||w_before||.
    m2 = models.make_mlp(2, 1, width=8, depth=2, seed=0)
    w0 = [lay.weight.norm().item() for lay in models.linear_layers(m2)]
    expected = lr * monitor.grad_norms[0] / np.array(w0)
    assert monitor.update_ratios[0] == pytest.approx(expected, rel=1e-4)


def test_gradient_monitor_rejects_bad_every():
    with pytest.raises(ValueError, match="every must be a positive integer, got 0"):
        diagnostics.GradientMonitor(every=0)


def test_layer_outputs_restores_mode_and_orders_layers():
    m = models.make_mlp(3, 2, width=4, depth=2, activation="tanh", dropout=0.5, seed=0)
    m.train()
    X = torch.randn(6, 3)
    outs = diagnostics.layer_outputs(m, X)
    assert m.training and list(outs) == ["1", "4"]  # the two Tanh modules, input to output
    m.eval()
    assert torch.equal(outs["4"], m[:5](X))
