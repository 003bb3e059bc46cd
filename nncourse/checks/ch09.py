"""Checks for chapter 09's exercises (``exercises/09_transfer_learning.ipynb``).

Every check passes the student's function only what the grader's JSON proxy carries: tensors,
numbers, strings and ``nn.Sequential`` models of ``Linear``, ``BatchNorm1d`` and ``ReLU`` layers.
Through the proxy, a module's parameter and buffer *values* come back from the student's kernel,
but not its ``requires_grad`` flags nor each layer's train/eval mode: so exercise 9.1 asks for the
training steps themselves and the check compares the weights and batch-norm statistics they leave.
Exercise 9.2's test that the reused layers are copies (not the source's own) can only see shared
tensors when the function runs in the same process as the check (a student's own
``pytest --nbval-lax``); a model that crossed the proxy is a copy whatever the function did.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from nncourse import transfer
from nncourse.checks import exercise

__all__ = ["ex9_1_fit_head", "ex9_2_transfer_model", "ex9_3_discriminative_groups",
           "ex9_4_measure"]


def _bn_net(seed: int, widths=(12, 8), n_in: int = 10, n_out: int = 3) -> nn.Sequential:
    """A small Linear-BatchNorm-ReLU net with non-trivial batch-norm parameters and statistics
    (so that every tensor of it has distinct values)."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    fan_in = n_in
    for w in widths:
        layers += [nn.Linear(fan_in, w, bias=False), nn.BatchNorm1d(w), nn.ReLU()]
        fan_in = w
    layers.append(nn.Linear(fan_in, n_out))
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (1.0 if p.ndim == 1 else 0.0))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def _data(seed: int, n: int = 40, n_in: int = 10, n_out: int = 3):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n_in, generator=gen) * 1.5 + 0.7  # not the running statistics' data
    return X, torch.randint(0, n_out, (n,), generator=gen)


def _reference_fit_head(model, X, y, steps, lr):
    """The intended answer: freeze all but the head (batch norm included), plain SGD steps."""
    transfer.freeze(nn.Sequential(*model[:-1]))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        model.train()
        loss = nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def ex9_1_fit_head(fit_head) -> None:
    """Exercise 9.1: ``fit_head(model, X, y, steps, lr)`` freezes everything below the last
    ``nn.Linear`` (batch norm included) and takes ``steps`` full-batch SGD steps on the
    cross-entropy; the model is changed in place."""
    with exercise("9.1", points=2, name="freeze all but the head") as ex:
        for seed, steps, lr in ((91, 5, 0.1), (92, 12, 0.05)):
            model = _bn_net(seed)
            X, y = _data(seed)
            expected = _reference_fit_head(copy.deepcopy(model), X, y, steps, lr)
            before = {k: v.clone() for k, v in model.state_dict().items()}
            call = f"fit_head(model, X, y, steps={steps}, lr={lr})"
            ex.call(fit_head, model, X, y, steps, lr, call=call)
            got, want = model.state_dict(), expected.state_dict()
            head = f"{len(model) - 1}."
            for k in before:
                if k.startswith(head):
                    continue
                if torch.equal(before[k], got[k]):
                    continue
                if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
                    ex.fail(f"after {call} the batch-norm statistic {k} of the frozen body "
                            "changed", "requires_grad=False does not stop a batch-norm layer in "
                            "training mode from updating its running statistics: put every "
                            "BatchNorm1d of the body in eval mode, after each model.train()")
                ex.fail(f"after {call} the frozen parameter {k} changed",
                        "set requires_grad=False on every parameter below the head -- the "
                        "batch-norm layers' weight and bias included")
            ex.true(not torch.equal(before[f"{head}weight"], got[f"{head}weight"]),
                    f"after {call} the head's weight did not change",
                    "the last nn.Linear must stay trainable, and you must take optimizer steps")
            for k in (f"{head}weight", f"{head}bias"):
                ex.close(got[k], want[k].numpy(), f"the head's {k.split('.')[-1]} after {call}",
                         rtol=1e-4, atol=1e-6,
                         hint="plain torch.optim.SGD(..., lr=lr) on the full batch, "
                              "cross-entropy loss, `steps` steps; the frozen batch-norm layers "
                              "must normalize with their running statistics (eval mode)")


def _blocks_equal(ex, got: nn.Sequential, source: nn.Sequential, n_layers: int, call: str):
    src_blocks = transfer.blocks(source)
    want = [m for b in src_blocks[:n_layers] for m in b]
    ex.true(isinstance(got, nn.Sequential), f"{call} must return an nn.Sequential, got "
            f"{type(got).__name__ if got is not None else 'None'}",
            "return nn.Sequential(*layers, head)")
    ex.true(len(got) == len(want) + 1,
            f"{call} returned {len(got)} layers, expected {len(want) + 1} (the {len(want)} "
            f"layers of the first {n_layers} blocks, then the head)",
            "a block is a Linear with the BatchNorm1d and ReLU after it; count blocks, not "
            "modules")
    for i, (g, w) in enumerate(zip(got, want)):
        ex.true(type(g) is type(w), f"layer {i} of {call} is a {type(g).__name__}, expected "
                f"a {type(w).__name__} as in the source", "keep the source's layers in order")
        gs, ws = g.state_dict(), w.state_dict()
        for k in ws:
            ex.true(k in gs and torch.equal(gs[k], ws[k]),
                    f"layer {i}'s {k} in {call} differs from the source's",
                    "copy the trained layers (copy.deepcopy), do not re-create them")
        if g is w or any(a.data_ptr() == b.data_ptr() for a, b in zip(gs.values(),
                                                                      ws.values())):
            ex.fail(f"layer {i} of {call} is the source's own layer, not a copy: training the "
                    "new model would change the source", "use copy.deepcopy on each layer")


def ex9_2_transfer_model(transfer_model) -> None:
    """Exercise 9.2: ``transfer_model(source, n_layers, n_out)`` -- copies of the first
    ``n_layers`` blocks of ``source`` under a new ``nn.Linear`` head with ``n_out`` outputs."""
    with exercise("9.2", points=2, name="build the transfer model") as ex:
        source = _bn_net(93, widths=(12, 8, 6))
        snapshot = {k: v.clone() for k, v in source.state_dict().items()}
        for n_layers, n_out, width in ((2, 2, 8), (1, 5, 12), (3, 4, 6)):
            call = f"transfer_model(source, n_layers={n_layers}, n_out={n_out})"
            got = ex.call(transfer_model, source, n_layers, n_out, call=call)
            _blocks_equal(ex, got, source, n_layers, call)
            head = got[-1]
            ex.true(isinstance(head, nn.Linear) and head.in_features == width
                    and head.out_features == n_out,
                    f"the head of {call} is {head}, expected Linear({width}, {n_out})",
                    "the head takes the width of the last reused block and has n_out outputs")
            old = transfer.blocks(source)[n_layers][0]
            ex.true(old.weight.shape != head.weight.shape
                    or not torch.equal(old.weight, head.weight),
                    f"the head of {call} has the source's next layer's weights",
                    "the head is a new nn.Linear, freshly initialized")
            ex.true(head.weight.requires_grad,
                    f"the head of {call} is frozen", "leave the new head trainable")
        ex.true(all(torch.equal(v, source.state_dict()[k]) for k, v in snapshot.items()),
                "transfer_model changed the source model", "only read the source; copy its layers")


def _named(model: nn.Module) -> dict:
    return dict(model.named_parameters())


def ex9_3_discriminative_groups(discriminative_groups) -> None:
    """Exercise 9.3: ``discriminative_groups(model, head_lr, decay)`` -- a list of optimizer
    parameter groups ``{"params": [...], "lr": ...}``, one per block, input block first; the
    head at ``head_lr``, each block below at ``decay`` times the rate of the block above it."""
    with exercise("9.3", points=2, name="discriminative parameter groups") as ex:
        for seed, widths, head_lr, decay in ((94, (12, 8), 0.01, 0.1), (95, (10, 8, 6), 0.2, 0.5)):
            model = _bn_net(seed, widths=widths)
            call = f"discriminative_groups(model, head_lr={head_lr}, decay={decay})"
            groups = ex.call(discriminative_groups, model, head_lr, decay, call=call)
            n_blocks = len(widths) + 1
            ex.true(isinstance(groups, (list, tuple)) and all(
                isinstance(g, dict) and "params" in g and "lr" in g for g in groups),
                f"{call} must return a list of dicts with keys 'params' and 'lr'",
                'build each group as {"params": [...], "lr": rate}')
            ex.true(len(groups) == n_blocks,
                    f"{call} returned {len(groups)} groups for a model of {n_blocks} blocks",
                    "one group per block: each nn.Linear with the BatchNorm1d after it")
            named = _named(model)
            seen: dict[str, int] = {}
            for i, g in enumerate(groups):
                for p in list(g["params"]):
                    ex.true(isinstance(p, torch.Tensor),
                            f"group {i} of {call} holds a {type(p).__name__}, not a parameter",
                            "put the tensors themselves in the list (block.parameters())")
                    match = [k for k, q in named.items()
                             if q.shape == p.shape and torch.equal(q.detach(), p.detach())]
                    ex.true(len(match) == 1, f"group {i} of {call} holds a tensor that is not "
                            "one of the model's parameters", "use the model's own parameters")
                    ex.true(match[0] not in seen, f"the parameter {match[0]} is in two groups "
                            f"of {call}", "each parameter belongs to exactly one group")
                    seen[match[0]] = i
            missing = sorted(set(named) - set(seen))
            ex.true(not missing, f"{call} leaves out the parameters {', '.join(missing)}",
                    "an optimizer never updates a parameter it was not given -- the batch-norm "
                    "weight and bias belong to the block of the Linear before them")
            for i, b in enumerate(transfer.blocks(model)):
                names = [k for k, q in named.items() if any(q is r for r in b.parameters())]
                ex.true(len({seen[k] for k in names}) == 1 and seen[names[0]] == i,
                        f"block {i}'s parameters ({', '.join(names)}) are not all in group {i} "
                        f"of {call}", "list the groups input block first, head last")
            want = transfer.layerwise_lrs(head_lr, decay, n_blocks)
            got = [float(g["lr"]) for g in groups]
            ex.close(got, want, f"the learning rates of {call} (input block first)", rtol=1e-6,
                     hint="the head gets head_lr, the block below it head_lr * decay, the next "
                          "head_lr * decay ** 2, ...: lower layers move least")
            torch.optim.SGD([{"params": list(g["params"]), "lr": g["lr"]} for g in groups])


def ex9_4_measure(measure) -> None:
    """Exercise 9.4: ``measure(n, k, kind)`` -- the mean held-out accuracy over ``lab.SEEDS`` of
    chapter 09's frozen reuse of ``k`` blocks of the ``kind`` source, trained on ``n`` labels
    (the chapter's recipe). Checked against the lab's own runs within 0.005 (one image of the
    142 held-out is 0.007)."""
    from nncourse.labs import ch09 as lab

    with exercise("9.4", points=2, name="predict, measure, explain") as ex:
        for n, k, kind in ((50, 2, "supervised"), (50, 2, "autoencoder")):
            call = f"measure({n}, {k}, {kind!r})"
            got = ex.number(ex.call(measure, n, k, kind, call=call), call)
            want = float(lab.runs(n, k, "frozen", kind).mean())
            ex.true(0.0 <= got <= 1.0, f"{call} returned {got:.4g}, expected an accuracy in "
                    "[0, 1]", "return a fraction, not a percentage")
            ex.close(got, want, call, atol=0.005, rtol=0.0,
                     hint="average over the 5 seeds of lab.SEEDS: for each, "
                          "lab.target_model(k, seed, kind) (already frozen), "
                          "lab.target_data(n, seed), 60 full-batch Adam steps at lr 1e-2 over "
                          "lab.transfer.param_groups, then lab.accuracy on the held-out set")
