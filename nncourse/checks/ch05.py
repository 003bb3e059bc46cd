"""Checks for chapter 05's exercises (``exercises/05_normalization.ipynb``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nncourse.checks import exercise
from nncourse.normalization import Standardizer, fold_batchnorm

__all__ = ["ex5_1_batchnorm_forward", "ex5_2_standardize", "ex5_3_fold", "ex5_4_halfway",
           "halfway_passes"]

F64 = torch.float64


def ex5_1_batchnorm_forward(batchnorm_forward) -> None:
    """Exercise 5.1: ``batchnorm_forward(x, gamma, beta, running_mean, running_var, training,
    momentum, eps) -> (y, new_running_mean, new_running_var)``, checked against
    ``nn.BatchNorm1d`` over a sequence of training and evaluation steps."""
    with exercise("5.1", points=3, name="batch norm forward") as ex:
        gen = torch.Generator().manual_seed(51)
        momentum, eps, features = 0.2, 1e-3, 4
        ref = nn.BatchNorm1d(features, eps=eps, momentum=momentum, dtype=F64)
        with torch.no_grad():
            ref.weight.copy_(torch.rand(features, generator=gen, dtype=F64) + 0.5)
            ref.bias.copy_(torch.randn(features, generator=gen, dtype=F64))
        # (training?, batch size): small batches make m/(m-1) matter; eval with one example
        for step, (training, n) in enumerate([(True, 5), (True, 3), (False, 6), (True, 2),
                                              (False, 1), (True, 8)], start=1):
            x = torch.randn(n, features, generator=gen, dtype=F64) * 3 + 1
            rm, rv = ref.running_mean.clone(), ref.running_var.clone()
            ref.train(training)
            with torch.no_grad():
                expected = ref(x)
            mode = "training" if training else "eval"
            call = (f"batchnorm_forward(x, ..., training={training}, momentum={momentum}, "
                    f"eps={eps}) at step {step} ({mode} mode, batch of {n})")
            out = ex.call(batchnorm_forward, x.clone(), ref.weight.detach().clone(),
                          ref.bias.detach().clone(), rm, rv, training, momentum, eps, call=call)
            ex.true(isinstance(out, (tuple, list)) and len(out) == 3,
                    f"{call} must return three things (y, running_mean, running_var), got "
                    f"{type(out).__name__}", "return y, new_running_mean, new_running_var")
            y, new_mean, new_var = out
            ex.close(y, expected.numpy(), f"y of {call}", rtol=1e-6, atol=1e-9,
                     hint=("normalize with this batch's mean and its *biased* variance "
                           "(divide by m, unbiased=False), then scale by gamma and add beta"
                           if training else
                           "in eval mode normalize with running_mean and running_var, not with "
                           "the batch's own statistics"))
            ex.close(new_mean, ref.running_mean.numpy(), f"running_mean returned by {call}",
                     rtol=1e-6, atol=1e-9,
                     hint=("momentum is the weight of the *new* batch: (1 - momentum) * old + "
                           "momentum * batch mean" if training else
                           "eval mode does not change the running statistics"))
            ex.close(new_var, ref.running_var.numpy(), f"running_var returned by {call}",
                     rtol=1e-6, atol=1e-9,
                     hint=("PyTorch normalizes with the biased variance but stores the "
                           "*unbiased* one, m/(m-1) times larger, in running_var" if training
                           else "eval mode does not change the running statistics"))


def _std_data():
    gen = np.random.default_rng(52)
    X_train = gen.normal(0, 1, (40, 5)) * [1.0, 100.0, 1.0, 0.01, 5.0] + [0, 500, 0, 0.1, -3]
    X_train[:, 2] = 3.0  # constant on the training split
    X_other = gen.normal(0, 1, (15, 5)) * [2.0, 100.0, 1.0, 0.01, 5.0] + [1, 450, 0, 0.1, 0]
    X_other[:, 2] = np.where(np.arange(15) % 2 == 0, 3.0, 4.0)
    return X_train, X_other


def ex5_2_standardize(standardize) -> None:
    """Exercise 5.2: ``standardize(X_train, X_other) -> (X_train_std, X_other_std)`` with the
    training split's mean and population std; constant features centred with scale 1."""
    with exercise("5.2", points=2, name="standardization fitted on the training split") as ex:
        X_train, X_other = _std_data()
        ref = Standardizer().fit(X_train)
        call = "standardize(X_train, X_other)"
        out = ex.call(standardize, X_train.copy(), X_other.copy(), call=call)
        ex.true(isinstance(out, (tuple, list)) and len(out) == 2,
                f"{call} must return two arrays (X_train_std, X_other_std), got "
                f"{type(out).__name__}", "return both transformed arrays")
        got_train = ex.array(out[0], f"the first result of {call}", shape=X_train.shape,
                             dtype="float", allow_nan=True)
        got_other = ex.array(out[1], f"the second result of {call}", shape=X_other.shape,
                             dtype="float", allow_nan=True)
        bad = ~np.isfinite(got_train).all(0) | ~np.isfinite(got_other).all(0)
        if bad.any():
            column = int(np.flatnonzero(bad)[0])
            ex.fail(f"{call} returned NaN or infinite values in column {column}"
                    + (" -- the column that is constant on the training split"
                       if ref.constant_[bad].any() else ""),
                    "a feature constant on the training split has standard deviation 0: divide "
                    "it by 1 instead (centre it, do not scale it)")
        varying = ~ref.constant_
        if not np.allclose(got_train[:, varying].mean(0), 0, atol=1e-8):
            ex.fail(f"the first result of {call} does not have mean 0 in every column",
                    "compute the mean and standard deviation on X_train only -- not on X_train "
                    "and X_other together -- and apply the same numbers to both")
        if np.allclose(got_train[:, varying].std(0), np.sqrt((40 - 1) / 40), rtol=1e-6):
            ex.fail(f"the first result of {call} has standard deviation "
                    f"{got_train[:, varying].std(0).mean():.6f}, not 1",
                    "use the population standard deviation (divide by n: np.std's default, "
                    "torch's unbiased=False), as StandardScaler does")
        ex.close(got_train, ref.transform(X_train), f"the first result of {call}",
                 rtol=1e-6, atol=1e-9, hint="(x - mean) / std, column by column")
        ex.close(got_other, ref.transform(X_other), f"the second result of {call}",
                 rtol=1e-6, atol=1e-9,
                 hint="transform X_other with the *training* mean and std; a column that is "
                      "constant in X_train becomes x - that constant (scale 1), which is not 0 "
                      "where X_other differs from it")


def ex5_3_fold(fold) -> None:
    """Exercise 5.3: ``fold(weight, bias, gamma, beta, running_mean, running_var, eps) ->
    (new_weight, new_bias)``, the Linear layer equal to Linear + eval-mode BN."""
    with exercise("5.3", points=2, name="folding batch norm into a Linear layer") as ex:
        gen = torch.Generator().manual_seed(53)
        linear = nn.Linear(5, 3, dtype=F64)
        bn = nn.BatchNorm1d(3, eps=1e-3, dtype=F64).eval()
        with torch.no_grad():
            linear.weight.copy_(torch.randn(3, 5, generator=gen, dtype=F64))
            linear.bias.copy_(torch.randn(3, generator=gen, dtype=F64))
            bn.weight.copy_(torch.rand(3, generator=gen, dtype=F64) + 0.5)
            bn.bias.copy_(torch.randn(3, generator=gen, dtype=F64))
            bn.running_mean.copy_(torch.randn(3, generator=gen, dtype=F64) * 2)
            bn.running_var.copy_(torch.rand(3, generator=gen, dtype=F64) * 3 + 0.05)
        expected = fold_batchnorm(linear, bn)
        args = [t.detach().clone() for t in (linear.weight, linear.bias, bn.weight, bn.bias,
                                             bn.running_mean, bn.running_var)]
        call = "fold(weight, bias, gamma, beta, running_mean, running_var, eps=0.001)"
        out = ex.call(fold, *args, 1e-3, call=call)
        ex.true(isinstance(out, (tuple, list)) and len(out) == 2,
                f"{call} must return (new_weight, new_bias), got {type(out).__name__}",
                "return both tensors")
        ex.close(out[0], expected.weight.detach().numpy(), f"new_weight of {call}",
                 rtol=1e-6, atol=1e-9,
                 hint="multiply row i of the weight (output unit i) by "
                      "gamma_i / sqrt(running_var_i + eps) -- a standard deviation, with eps")
        ex.close(out[1], expected.bias.detach().numpy(), f"new_bias of {call}",
                 rtol=1e-6, atol=1e-9,
                 hint="the bias goes through the same map as the output: "
                      "(bias - running_mean) * scale + beta")


@torch.no_grad()
def halfway_passes(momentum: float, seed: int = 0, batch: int = 32, shift: float = 5.0,
                   limit: int = 1000) -> int:
    """The reference measurement of exercise 5.4: forward passes in train mode on batches from
    N(shift, 1) until a fresh ``nn.BatchNorm1d(1, momentum=momentum)``'s running mean exceeds
    ``shift / 2`` (``limit`` if it never does)."""
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm1d(1, momentum=momentum)
    for k in range(1, limit + 1):
        bn(torch.randn(batch, 1, generator=gen) + shift)
        if bn.running_mean.item() > shift / 2:
            return k
    return limit


def ex5_4_halfway(measure_halfway) -> None:
    """Exercise 5.4 (predict, measure, explain): ``measure_halfway(momentum, seed)``, the number
    of train-mode forward passes until the running mean is past halfway to the new data's."""
    with exercise("5.4", points=2, name="how fast running statistics forget") as ex:
        for momentum, seed in [(0.1, 540), (0.01, 541), (0.3, 542)]:
            call = f"measure_halfway(momentum={momentum}, seed={seed})"
            got = ex.number(ex.call(measure_halfway, momentum, seed, call=call), call)
            want = halfway_passes(momentum, seed)
            if got == 1000:
                ex.fail(f"{call} returned 1000: the running mean never got past 2.5",
                        "the layer must be in training mode (nn.BatchNorm1d starts in it; do "
                        "not call .eval()) and be the same layer on every pass")
            if abs(got - want) > 1:  # the stated tolerance: one pass either way
                ex.fail(f"{call} is {got:g}, but re-running the experiment takes {want} passes "
                        "(tolerance: 1 pass)",
                        "after k passes a fraction (1 - momentum)^k of the old running mean "
                        "remains; use the momentum argument, with PyTorch's convention "
                        "(the weight of the new batch)")
