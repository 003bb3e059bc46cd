"""nncourse.transfer: reuse copies, freezing really freezes (batch norm included), groups carry
their rates, the pretext tasks are what they say."""

import copy

import pytest
import torch
from torch import nn

from nncourse import transfer as T
from nncourse.models import make_mlp


def bn_net(seed=0):
    return make_mlp(10, 3, width=[12, 8], batch_norm=True, seed=seed)


def data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 10, generator=g) * 2 + 1, torch.randint(0, 3, (n,), generator=g)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def steps(model, optimizer, n=5, seed=0):
    X, y = data(seed=seed)
    for _ in range(n):
        model.train()  # what every training loop does: must not unfreeze batch norm
        loss = nn.functional.cross_entropy(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_blocks_split_at_each_linear_and_share_layers():
    m = bn_net()
    bl = T.blocks(m)
    assert [len(b) for b in bl] == [3, 3, 1]
    assert bl[0][0] is m[0] and bl[2][0] is m[-1]


def test_reuse_copies_and_does_not_share_storage():
    src = bn_net()
    before = snapshot(src)
    new = T.reuse(src, 2, head=5, seed=1)
    assert isinstance(new[-1], nn.Linear) and new[-1].in_features == 8
    assert new[-1].out_features == 5
    src_ptrs = {t.data_ptr() for t in src.state_dict().values()}
    assert all(t.data_ptr() not in src_ptrs for t in new.state_dict().values())
    for (k, a), b in zip(list(new.state_dict().items())[:-2], src.state_dict().values()):
        assert torch.equal(a, b), k
    steps(new, torch.optim.SGD(new.parameters(), lr=0.5))
    after = snapshot(src)
    assert all(torch.equal(before[k], after[k]) for k in before)  # training new left src alone
    assert not torch.equal(new[0].weight, src[0].weight)


def test_reuse_validates():
    src = bn_net()
    with pytest.raises(ValueError, match="n_layers must be at most 2"):
        T.reuse(src, 3, head=2)
    with pytest.raises(TypeError, match="nn.Sequential"):
        T.reuse(nn.Linear(2, 2), 1, head=2)
    with pytest.raises(TypeError, match="head must be"):
        T.reuse(src, 1, head="linear")
    assert len(T.reuse(src, 0, head=2)) == 1  # nothing reused: the head alone


def test_reuse_seeded_head_is_reproducible():
    a, b = T.reuse(bn_net(), 1, 2, seed=3), T.reuse(bn_net(), 1, 2, seed=3)
    assert torch.equal(a[-1].weight, b[-1].weight)


@pytest.mark.parametrize("optimizer", ["sgd_momentum_wd", "adamw"])
def test_frozen_weights_and_bn_buffers_bit_identical_unfrozen_move(optimizer):
    m = bn_net()
    steps(m, torch.optim.SGD(m.parameters(), lr=0.1))  # stale gradients left behind
    body = nn.Sequential(*m[:-1])
    T.freeze(body)
    assert all(p.grad is None for p in body.parameters())
    before_body, before_head = snapshot(body), snapshot(m[-1])
    opt = (torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
           if optimizer == "sgd_momentum_wd" else
           torch.optim.AdamW(m.parameters(), lr=0.01, weight_decay=0.1))
    steps(m, opt, n=10)
    after = snapshot(body)
    assert set(after) >= {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    for k in before_body:
        assert torch.equal(before_body[k], after[k]), k
    assert not torch.equal(before_head["weight"], m[-1].weight)
    assert not m[1].training and m[-1].training  # BN held in eval, the rest in train mode


def test_requires_grad_alone_lets_bn_statistics_move():
    # the trap freeze() avoids -- if this ever stops failing, the chapter's point is moot
    m = bn_net()
    for p in m[:-1].parameters():
        p.requires_grad_(False)
    before = m[1].running_mean.clone()
    steps(m, torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1))
    assert not torch.equal(before, m[1].running_mean)


def test_unfreeze_restores_training_and_bn_mode():
    m = bn_net()
    T.freeze(m)
    assert T.is_frozen(m)
    T.unfreeze(m)
    assert not T.is_frozen(m)
    m.train()
    assert m[1].training
    before = m[1].running_mean.clone()
    steps(m, torch.optim.SGD(m.parameters(), lr=0.1), n=1)
    assert not torch.equal(before, m[1].running_mean)


def test_frozen_model_can_be_copied():
    m = T.freeze(bn_net())
    c = copy.deepcopy(m)
    assert torch.equal(c[0].weight, m[0].weight)


def test_param_groups_carry_their_rates():
    m = bn_net()
    lrs = T.layerwise_lrs(1e-2, 0.1, 3)
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2])
    groups = T.param_groups(m, lrs)
    opt = torch.optim.SGD(groups, lr=123.0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(lrs)
    ids = [{id(p) for p in g["params"]} for g in opt.param_groups]
    assert ids[0] == {id(m[0].weight), id(m[1].weight), id(m[1].bias)}  # BN goes with its Linear
    assert ids[2] == {id(m[-1].weight), id(m[-1].bias)}
    assert sum(len(i) for i in ids) == len(list(m.parameters()))
    # one plain SGD step moves each parameter by exactly its group's lr times its gradient
    X, y = data()
    nn.functional.cross_entropy(m(X), y).backward()
    old = [p.detach().clone() for p in m.parameters()]
    grads = [p.grad.clone() for p in m.parameters()]
    opt.step()
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    for p, o, g in zip(m.parameters(), old, grads):
        torch.testing.assert_close(p.detach(), o - lr_of[id(p)] * g)


def test_param_groups_see_layers_unfrozen_later():
    m = bn_net()
    T.freeze(nn.Sequential(*m[:-1]))
    seen = torch.optim.SGD(T.param_groups(m, [0.1, 0.1, 0.1]))
    blind = torch.optim.SGD(T.trainable_parameters(m), lr=0.1)
    T.unfreeze(m)
    w = m[0].weight.detach().clone()
    steps(m, blind, n=2)
    assert torch.equal(w, m[0].weight)  # the optimizer built on trainable params never moves it
    steps(m, seen, n=2)
    assert not torch.equal(w, m[0].weight)


def test_param_groups_validate():
    with pytest.raises(ValueError, match="3 learning rates"):
        T.param_groups(bn_net(), [0.1, 0.1])
    with pytest.raises(ValueError, match=r"lrs\[1\]"):
        T.param_groups(bn_net(), [0.1, -1.0, 0.1])


def test_autoencoder_encoder_is_reusable_and_learns():
    X = data(64)[0].sigmoid()
    ae = T.autoencoder(10, [8, 4], seed=0)
    assert ae[0].out_features == 8 and ae[-1].out_features == 10
    losses = T.pretrain_autoencoder(ae, X, epochs=40, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0]
    enc = T.reuse(ae, 2, head=2)
    assert enc[-1].in_features == 4


def test_rotations_are_exact_and_labelled():
    X = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 64)
    Xr, yr = T.rotations(X)
    assert Xr.shape == (8, 64) and yr.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    img = X[1].reshape(8, 8)
    assert torch.equal(Xr[3].reshape(8, 8), torch.rot90(img, 1))
    assert torch.equal(Xr[7].reshape(8, 8), img.T.flip(0).T.flip(0).T.flip(0))  # 270 degrees
    with pytest.raises(ValueError, match="flattened 8x8"):
        T.rotations(torch.zeros(3, 10))


def test_pretrain_rotations_learns():
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(64, 64, generator=g) > 0.7).float()
    X[:, :8] = 1.0  # a bar at the top: the rotation is visible
    m = make_mlp(64, 4, width=16, depth=1, seed=0)
    losses = T.pretrain_rotations(m, X, epochs=10)
    assert losses[-1] < 0.3 * losses[0]


def test_freeze_validates():
    with pytest.raises(TypeError, match="freeze: expected an nn.Module"):
        T.freeze([1, 2])
