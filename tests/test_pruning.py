"""nncourse.pruning: from-scratch masks equal torch.nn.utils.prune's; neuron removal is exact."""

import copy
import warnings

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

from nncourse import pruning as P
from nncourse.models import linear_layers


def mlp(seed=0, widths=(12, 16, 9, 3), batch_norm=False):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.25, 0.35, 0.5, 0.9, 0.99, 1.0])
def test_magnitude_mask_equals_l1_unstructured(amount):
    torch.manual_seed(1)
    layer = nn.Linear(13, 7)
    ours = P.magnitude_mask(layer.weight, amount)
    prune.l1_unstructured(layer, "weight", amount)
    assert torch.equal(ours, layer.weight_mask)
    assert P.n_to_prune(amount, 91) == int((ours == 0).sum())


@pytest.mark.parametrize("amount", [0.2, 0.6, 0.95])
def test_global_masks_equal_global_unstructured(amount):
    model = mlp(2)
    with torch.no_grad():
        linear_layers(model)[1].weight.mul_(0.3)  # different scales: global treats layers unequally
    ours = P.magnitude_masks(model, amount, "global")
    layers = linear_layers(model)
    prune.global_unstructured([(m, "weight") for m in layers], prune.L1Unstructured, amount=amount)
    for mask, m in zip(ours, layers):
        assert torch.equal(mask, m.weight_mask)
    total = sum(int((m == 0).sum()) for m in ours)
    assert total == round(amount * sum(m.weight.numel() for m in layers))
    assert len({round(P.sparsity(m), 3) for m in ours}) > 1  # layers lose different fractions


def test_layerwise_masks_prune_every_layer_equally_and_apply_like_prune_remove():
    model = mlp(3)
    pruned = P.prune_magnitude(model, 0.5, "layer")
    # the last layer has 27 weights: round(13.5) = 14 pruned
    assert [round(r["sparsity"], 2) for r in P.sparsity_report(pruned)] == [0.5, 0.5, 0.52]
    for m in linear_layers(model):
        prune.l1_unstructured(m, "weight", 0.5)
        prune.remove(m, "weight")
    for a, b in zip(linear_layers(pruned), linear_layers(model)):
        assert torch.equal(a.weight, b.weight)


def test_ln_structured_uses_the_weight_criterion():
    model = mlp(4)
    scores = P.neuron_scores(model, 0, "weight")
    first = copy.deepcopy(model[0])
    prune.ln_structured(first, "weight", amount=0.25, n=2, dim=0)
    pruned_rows = set(torch.nonzero((first.weight_mask == 0).all(1)).reshape(-1).tolist())
    assert pruned_rows == set(torch.argsort(scores)[:4].tolist())


def test_keep_masks_holds_pruned_weights_at_zero_while_training():
    from nncourse.training import train

    model = mlp(5)
    masks = P.magnitude_masks(model, 0.7, "global")
    X, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    train(model, (X, y), epochs=3, lr=0.1, optimizer="sgd", momentum=0.9,
          callbacks=[P.KeepMasks(masks)], progress=False)
    for m, mask in zip(linear_layers(model), masks):
        assert torch.all(m.weight[mask == 0] == 0)
        assert torch.count_nonzero(m.weight) == mask.sum()


@pytest.mark.parametrize("batch_norm", [False, True])
def test_removing_inert_neurons_leaves_outputs_unchanged(batch_norm):
    model = mlp(6, batch_norm=batch_norm)
    if batch_norm:
        for m in model:
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    nxt = linear_layers(model)[2]
    with torch.no_grad():
        nxt.weight[:, [0, 4, 7]] = 0  # neurons 0, 4, 7 of hidden layer 1 pass nothing on
    assert P.inert_neurons(model, 1) == [0, 4, 7]
    small = P.remove_neurons(model, 1, [0, 4, 7])
    assert [m.weight.shape for m in linear_layers(small)] == [(16, 12), (6, 16), (3, 6)]
    X = torch.randn(20, 12)
    torch.testing.assert_close(small(X), model(X), rtol=0, atol=1e-6)
    assert linear_layers(model)[1].out_features == 9  # the original is untouched
    # a neuron that is not inert does change the outputs
    busy = int(P.hidden_activations(model, X)[1].abs().sum(0).argmax())
    assert not torch.allclose(P.remove_neurons(model, 1, [busy])(X), model(X), atol=1e-4)


def test_compensation_folds_dead_and_duplicate_neurons_exactly():
    model = mlp(7)
    X = torch.randn(200, 12)
    with torch.no_grad():
        first = linear_layers(model)[0]
        first.weight[3] = first.weight[5] * 2.0  # neuron 3 = 2 x neuron 5 (ReLU is homogeneous)
        first.bias[3] = first.bias[5] * 2.0
        first.weight[8], first.bias[8] = 0.0, 0.7  # neuron 8 always outputs 0.7: a constant
    acts = P.hidden_activations(model, X)[0]
    plain = P.remove_neurons(model, 0, [3, 8])
    folded = P.remove_neurons(model, 0, [3, 8], activations=acts, ridge=0.0)
    assert not torch.allclose(plain(X), model(X), atol=1e-3)
    torch.testing.assert_close(folded(X), model(X), rtol=0, atol=1e-4)


def test_neuron_scores_find_dead_and_redundant_neurons():
    model = mlp(8)
    X = torch.randn(300, 12)
    with torch.no_grad():
        first = linear_layers(model)[0]
        first.weight[2], first.bias[2] = 0.0, -1.0  # dead ReLU
        first.weight[9], first.bias[9] = first.weight[4] * 0.5, first.bias[4] * 0.5  # half of 4
    act = P.neuron_scores(model, 0, "activation", X)
    assert act[2] == 0 and act.argmin() == 2
    red = P.neuron_scores(model, 0, "redundancy", X)
    assert red[2] == 0  # constant first
    assert red[9] == 1  # then the smaller of the identical pair
    assert sorted(red.tolist()) == list(range(16))
    rnd = P.neuron_scores(model, 0, "random")
    assert torch.equal(rnd, P.neuron_scores(model, 0, "random"))


def test_prune_neurons_shrinks_every_hidden_layer():
    model = mlp(9)
    X = torch.randn(100, 12)
    for method in P.NEURON_CRITERIA:
        small = P.prune_neurons(model, 0.5, method, X=X, compensate=method == "weight")
        # 9 neurons in the second hidden layer: round(4.5) = 4 removed
        assert [m.weight.shape for m in linear_layers(small)] == [(8, 12), (5, 8), (3, 5)]
    assert P.prune_neurons(model, 0.0).state_dict().keys() == model.state_dict().keys()


def test_cubic_schedule_and_iterative_prune_reach_the_target():
    s = P.cubic_schedule(0.9, 4)
    assert s[-1] == pytest.approx(0.9) and all(a < b for a, b in zip(s, s[1:]))
    assert s[0] == pytest.approx(0.9 * (1 - 0.75 ** 3))
    model = mlp(10)
    X, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    pruned = P.iterative_prune(model, (X, y), 0.8, steps=3, epochs=3, lr=0.05)
    total = sum(r["nonzero"] for r in P.sparsity_report(pruned))
    assert total == sum(m.weight.numel() for m in linear_layers(model)) - round(
        0.8 * sum(m.weight.numel() for m in linear_layers(model)))


def test_bytes_match_torch_sparse_storage():
    torch.manual_seed(11)
    W = torch.randn(30, 20)
    W[W.abs() < 1.0] = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta")
        csr = W.to_sparse_csr()
    coo = W.to_sparse()
    assert P.csr_bytes(W) == sum(t.numel() * t.element_size() for t in
                                 (csr.values(), csr.col_indices(), csr.crow_indices()))
    assert P.coo_bytes(W) == sum(t.numel() * t.element_size()
                                 for t in (coo._values(), coo._indices()))
    assert P.dense_bytes(W) == 30 * 20 * 4
    assert P.csr_bytes(W, index_bytes=4) < P.csr_bytes(W)


def test_size_report_and_sparse_model():
    model = P.prune_magnitude(mlp(12), 0.9, "layer")
    r = P.size_report(model)
    n_bias = sum(m.bias.numel() for m in linear_layers(model))
    assert r["params"] == sum(p.numel() for p in model.parameters())
    assert r["dense_bytes"] == 4 * r["params"]
    assert r["csr_bytes"] < r["dense_bytes"]
    assert r["nonzero"] <= r["params"] - 0.9 * (r["params"] - n_bias) + 3
    sparse = P.to_sparse(model)
    X = torch.randn(5, 12)
    torch.testing.assert_close(sparse(X), model(X), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="saved_bytes"):
        P.size_report(sparse)
    big = P.prune_magnitude(nn.Sequential(nn.Linear(100, 100)), 0.9, "layer")
    assert P.saved_bytes(P.to_sparse(big).state_dict()) < P.saved_bytes(big.state_dict())


def test_arguments_are_validated():
    model = mlp(13)
    with pytest.raises(ValueError, match=r"amount .* must be in \[0, 1\], got 1.5"):
        P.magnitude_mask(model[0].weight, 1.5)
    with pytest.raises(ValueError, match="scope must be"):
        P.magnitude_masks(model, 0.5, "local")
    with pytest.raises(ValueError, match="hidden layer index"):
        P.remove_neurons(model, 2, [0])
    with pytest.raises(ValueError, match="cannot remove all"):
        P.remove_neurons(model, 0, range(16))
    with pytest.raises(ValueError, match="needs inputs X"):
        P.neuron_scores(model, 0, "activation")
    with pytest.raises(ValueError, match="steps must be"):
        P.cubic_schedule(0.5, 0)


def test_time_inference_one_model_or_several_in_turn():
    small, big = nn.Linear(4, 2), nn.Linear(4, 512)
    X = torch.randn(64, 4)
    assert P.time_inference(small, X, repeats=3, number=2) > 0
    times = P.time_inference({"small": small, "big": big}, X, repeats=3, number=2)
    assert list(times) == ["small", "big"] and all(t > 0 for t in times.values())


def test_saved_bytes_compressed_shrinks_zeros():
    zeros = nn.Linear(64, 64)
    nn.init.zeros_(zeros.weight)
    assert (P.saved_bytes(zeros.state_dict(), compressed=True)
            < P.saved_bytes(zeros.state_dict()) / 2)
