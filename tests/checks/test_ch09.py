"""Each chapter 09 check passes on the reference answer -- in process and through the grader's
JSON proxy -- and fails, with one clear sentence, on the most plausible wrong answers."""

import copy
import json
from functools import partial

import pytest
import torch
from torch import nn

from nncourse import transfer
from nncourse.checks import ExerciseError, NotAttempted
from nncourse.checks import ch09 as check
from nncourse.course.grading.proxy import Proxy, serve
from tests.checks.helpers import check_fails, stub

fails = partial(check_fails, 9)


def proxied(fn, name="f"):
    """``fn`` behind the grader's proxy: arguments and results cross a JSON boundary both ways."""
    def transport(name, payload, on_callback):
        return json.loads(json.dumps(serve(fn, json.loads(json.dumps(payload)), on_callback)))

    return Proxy(name, transport)


def _sgd_head(model, X, y, steps, lr, params=None):
    opt = torch.optim.SGD(params if params is not None else
                          [p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        model.train()
        loss = nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


# --- 9.1 ----------------------------------------------------------------------------------

def fit_head(model, X, y, steps, lr):
    transfer.freeze(nn.Sequential(*model[:-1]))
    return _sgd_head(model, X, y, steps, lr)


def fit_head_eval_all(model, X, y, steps, lr):
    """Also right: the whole model in eval mode (the head has no batch norm or dropout)."""
    for p in model[:-1].parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD(model[-1].parameters(), lr=lr)
    model.eval()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_ex9_1_passes_on_reference(capsys):
    check.ex9_1_fit_head(fit_head)
    check.ex9_1_fit_head(fit_head_eval_all)
    check.ex9_1_fit_head(proxied(fit_head, "fit_head"))
    assert capsys.readouterr().out == "Exercise 9.1 passed (2 points)\n" * 3


def test_ex9_1_fails_on_wrong_answers():
    def requires_grad_only(model, X, y, steps, lr):
        for p in model[:-1].parameters():
            p.requires_grad_(False)
        return _sgd_head(model, X, y, steps, lr)

    def linear_only(model, X, y, steps, lr):  # batch norm in eval, but its weight and bias train
        for m in model[:-1]:
            if isinstance(m, nn.Linear):
                m.weight.requires_grad_(False)
        model.train()
        for m in model[:-1]:
            if isinstance(m, nn.BatchNorm1d):
                m.eval()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
        for _ in range(steps):
            loss = nn.functional.cross_entropy(model(X), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model

    def nothing_frozen(model, X, y, steps, lr):
        return _sgd_head(model, X, y, steps, lr)

    def everything_frozen(model, X, y, steps, lr):
        transfer.freeze(model)
        return model

    for wrong in (requires_grad_only, proxied(requires_grad_only, "fit_head")):
        fails(check.ex9_1_fit_head, wrong, match=r"batch-norm statistic 1\.running_mean.*eval")
    fails(check.ex9_1_fit_head, linear_only, match=r"frozen parameter 1\.weight changed")
    fails(check.ex9_1_fit_head, nothing_frozen, match="frozen parameter 0.weight changed")
    fails(check.ex9_1_fit_head, everything_frozen, match="head's weight did not change")
    fails(check.ex9_1_fit_head, lambda m, X, y, s, lr: _sgd_head(
        fit_head(m, X, y, 0, lr), X, y, s, lr * 2), match=r"head's weight after .* is wrong")
    with pytest.raises(NotAttempted):
        check.ex9_1_fit_head(stub)


# --- 9.2 ----------------------------------------------------------------------------------

def transfer_model(source, n_layers, n_out):
    return transfer.reuse(source, n_layers, head=n_out)


def test_ex9_2_passes_on_reference(capsys):
    check.ex9_2_transfer_model(transfer_model)
    check.ex9_2_transfer_model(proxied(transfer_model, "transfer_model"))
    assert capsys.readouterr().out == "Exercise 9.2 passed (2 points)\n" * 2


def _count_modules(source, n_layers, n_out):
    """Counts modules, not blocks."""
    layers = [copy.deepcopy(m) for m in source[:n_layers]]
    width = [m for m in layers if isinstance(m, nn.Linear)][-1].out_features
    return nn.Sequential(*layers, nn.Linear(width, n_out))


def test_ex9_2_fails_on_wrong_answers():
    def shared(source, n_layers, n_out):
        reused = transfer.reuse(source, n_layers, head=n_out)
        return nn.Sequential(*source[:len(reused) - 1], reused[-1])

    def fresh_layers(source, n_layers, n_out):  # right shapes, re-created (untrained) layers
        new = transfer.reuse(source, n_layers, head=n_out)
        for m in new:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        return new

    def source_head(source, n_layers, n_out):  # keeps the source's next Linear as the "head"
        return nn.Sequential(*[copy.deepcopy(m) for m in source[:3 * n_layers + 1]])

    fails(check.ex9_2_transfer_model, shared, match="source's own layer, not a copy.*deepcopy")
    fails(check.ex9_2_transfer_model, _count_modules, match="returned 3 layers, expected 7")
    fails(check.ex9_2_transfer_model, fresh_layers, match="differs from the source's")
    fails(check.ex9_2_transfer_model, source_head,
          match=r"head of transfer_model\(source, n_layers=2, n_out=2\) is Linear\(in_features=8")
    with pytest.raises(NotAttempted):
        check.ex9_2_transfer_model(stub)


# --- 9.3 ----------------------------------------------------------------------------------

def groups(model, head_lr, decay):
    return transfer.param_groups(model, transfer.layerwise_lrs(head_lr, decay,
                                                               len(transfer.blocks(model))))


def test_ex9_3_passes_on_reference(capsys):
    check.ex9_3_discriminative_groups(groups)
    check.ex9_3_discriminative_groups(proxied(groups, "discriminative_groups"))
    assert capsys.readouterr().out == "Exercise 9.3 passed (2 points)\n" * 2


def test_ex9_3_fails_on_wrong_answers():
    def reversed_rates(model, head_lr, decay):
        g = groups(model, head_lr, decay)
        rates = [x["lr"] for x in g][::-1]
        return [{"params": x["params"], "lr": r} for x, r in zip(g, rates)]

    def linear_only(model, head_lr, decay):
        g = groups(model, head_lr, decay)
        return [{"params": [p for p in x["params"] if p.ndim == 2 or x is g[-1]], "lr": x["lr"]}
                for x in g]

    def one_rate(model, head_lr, decay):
        return [{"params": x["params"], "lr": head_lr} for x in groups(model, head_lr, decay)]

    def off_by_one(model, head_lr, decay):
        return [{"params": x["params"], "lr": x["lr"] * decay}
                for x in groups(model, head_lr, decay)]

    fails(check.ex9_3_discriminative_groups, reversed_rates,
          match=r"learning rates .* is wrong: at index \(0,\).*lower layers move least")
    fails(check.ex9_3_discriminative_groups, proxied(linear_only, "discriminative_groups"),
          match=r"leaves out the parameters 1\.bias, 1\.weight.*batch-norm")
    fails(check.ex9_3_discriminative_groups, one_rate, match="learning rates .* is wrong")
    fails(check.ex9_3_discriminative_groups, off_by_one,
          match=r"at index \(\d,\) expected 0\.01, got 0\.001")
    fails(check.ex9_3_discriminative_groups, lambda m, h, d: [{"params": list(m.parameters()),
                                                              "lr": h}],
          match="returned 1 groups for a model of 3 blocks")
    with pytest.raises(NotAttempted):
        check.ex9_3_discriminative_groups(stub)


# --- 9.4 ----------------------------------------------------------------------------------

def measure(n, k, kind):
    from nncourse.labs import ch09 as lab

    return float(lab.runs(n, k, "frozen", kind).mean())


def test_ex9_4_passes_on_reference(capsys):
    check.ex9_4_measure(measure)
    check.ex9_4_measure(proxied(measure, "measure"))
    assert capsys.readouterr().out == "Exercise 9.4 passed (2 points)\n" * 2


def test_ex9_4_fails_on_wrong_answers():
    from nncourse.labs import ch09 as lab

    fails(check.ex9_4_measure, lambda n, k, kind: 100 * measure(n, k, kind),
          match="expected an accuracy in \\[0, 1\\].*fraction")
    fails(check.ex9_4_measure, lambda n, k, kind: float(lab.runs(n, 0, "scratch").mean()),
          match=r"measure\(50, 2, 'supervised'\) is wrong")
    fails(check.ex9_4_measure, lambda n, k, kind: lab.fit_target(n, k, "frozen", 0, kind),
          match=r"is wrong.*average over the 5 seeds")
    with pytest.raises(ExerciseError, match="returned None"):
        check.ex9_4_measure(lambda n, k, kind: None)
