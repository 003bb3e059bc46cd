"""Each chapter 05 check passes on the reference answer and fails, with one clear sentence, on
the most plausible wrong answers."""

from functools import partial

import numpy as np
import pytest
import torch

from nncourse.checks import NotAttempted
from nncourse.checks import ch05 as check
from tests.checks.helpers import check_fails, stub

fails = partial(check_fails, 5)


# --- 5.1 ----------------------------------------------------------------------------------

def make_bn(unbiased_running=True, new_weight=True, eval_running=True, biased_norm=True):
    """A batchnorm_forward with one switch per plausible mistake."""
    def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
                          eps=1e-5):
        if training or not eval_running:
            mean = x.mean(0)
            var = x.var(0, unbiased=not biased_norm) if len(x) > 1 else torch.zeros_like(mean)
            if training:
                m = len(x)
                stored = x.var(0, unbiased=False) * (m / (m - 1) if unbiased_running else 1)
                a = momentum if new_weight else 1 - momentum
                running_mean = (1 - a) * running_mean + a * mean
                running_var = (1 - a) * running_var + a * stored
        else:
            mean, var = running_mean, running_var
        y = gamma * (x - mean) / torch.sqrt(var + eps) + beta
        return y, running_mean, running_var
    return batchnorm_forward


def test_ex5_1_passes_on_reference(capsys):
    check.ex5_1_batchnorm_forward(make_bn())
    assert capsys.readouterr().out == "Exercise 5.1 passed (3 points)\n"


def test_ex5_1_fails_on_wrong_answers():
    fails(check.ex5_1_batchnorm_forward, make_bn(unbiased_running=False),
          match=r"running_var returned by .*step 1.*is wrong.*\*unbiased\* one")
    fails(check.ex5_1_batchnorm_forward, make_bn(new_weight=False),
          match=r"running_mean returned by .*step 1.*weight of the \*new\* batch")
    fails(check.ex5_1_batchnorm_forward, make_bn(eval_running=False),
          match=r"y of .*step 3 \(eval mode.*running_mean and running_var")
    fails(check.ex5_1_batchnorm_forward, make_bn(biased_norm=False),
          match=r"y of .*step 1 \(training mode.*biased\* variance")
    fails(check.ex5_1_batchnorm_forward, lambda *a: a[0], match="must return three things")
    with pytest.raises(NotAttempted):
        check.ex5_1_batchnorm_forward(stub)


# --- 5.2 ----------------------------------------------------------------------------------

def make_std(leak=False, ddof=0, zero_rule=True):
    def standardize(X_train, X_other):
        source = np.concatenate([X_train, X_other]) if leak else X_train
        mean, std = source.mean(0), source.std(0, ddof=ddof)
        if zero_rule:
            std = np.where(std == 0, 1.0, std)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (X_train - mean) / std, (X_other - mean) / std
    return standardize


def test_ex5_2_passes_on_reference(capsys):
    check.ex5_2_standardize(make_std())
    assert capsys.readouterr().out == "Exercise 5.2 passed (2 points)\n"


def test_ex5_2_accepts_tensors():
    def standardize(X_train, X_other):
        a, b = torch.as_tensor(X_train), torch.as_tensor(X_other)
        mean, std = a.mean(0), a.std(0, unbiased=False)
        std[std == 0] = 1.0
        return (a - mean) / std, (b - mean) / std
    check.ex5_2_standardize(standardize)


def test_ex5_2_fails_on_wrong_answers():
    fails(check.ex5_2_standardize, make_std(leak=True), match=r"mean 0.*X_train only")
    fails(check.ex5_2_standardize, make_std(ddof=1), match=r"population standard deviation")
    fails(check.ex5_2_standardize, make_std(zero_rule=False),
          match=r"NaN or infinite values in column 2 -- the column that is constant.*divide it "
                r"by 1")

    def zero_everywhere(X_train, X_other):  # constant column set to 0 in both splits
        a, b = make_std()(X_train, X_other)
        b[:, 2] = 0.0
        return a, b
    fails(check.ex5_2_standardize, zero_everywhere,
          match=r"second result .* is wrong.*\*training\* mean")
    fails(check.ex5_2_standardize, lambda a, b: a, match="must return two arrays")


# --- 5.3 ----------------------------------------------------------------------------------

def make_fold(eps=True, subtract_mean=True, sqrt=True):
    def fold(weight, bias, gamma, beta, running_mean, running_var, eps_value=1e-5):
        v = running_var + (eps_value if eps else 0.0)
        scale = gamma / (torch.sqrt(v) if sqrt else v)
        new_bias = ((bias - running_mean) if subtract_mean else bias) * scale + beta
        return weight * scale[:, None], new_bias
    return fold


def test_ex5_3_passes_on_reference(capsys):
    check.ex5_3_fold(make_fold())
    assert capsys.readouterr().out == "Exercise 5.3 passed (2 points)\n"


def test_ex5_3_fails_on_wrong_answers():
    fails(check.ex5_3_fold, make_fold(eps=False), match=r"new_weight .* is wrong.*with eps")
    fails(check.ex5_3_fold, make_fold(sqrt=False),
          match=r"new_weight .* is wrong.*a standard deviation")
    fails(check.ex5_3_fold, make_fold(subtract_mean=False),
          match=r"new_bias .* is wrong.*bias - running_mean")

    def columns(weight, bias, gamma, beta, running_mean, running_var, eps_value=1e-5):
        scale = gamma / torch.sqrt(running_var + eps_value)
        return weight * scale, bias  # broadcasting over the 5 inputs fails: shape (3,) vs (3, 5)
    fails(check.ex5_3_fold, columns, match=r"raised RuntimeError")


# --- 5.4 ----------------------------------------------------------------------------------

def test_ex5_4_passes_on_reference_and_reference_values(capsys):
    check.ex5_4_halfway(check.halfway_passes)
    assert capsys.readouterr().out == "Exercise 5.4 passed (2 points)\n"
    assert check.halfway_passes(0.1, seed=0) in (6, 7, 8)  # (0.9)^7 = 0.48 < 1/2
    assert check.halfway_passes(0.01, seed=0) in (68, 69, 70)  # (0.99)^69 = 0.4998


def test_ex5_4_tolerates_one_pass():
    check.ex5_4_halfway(lambda m, seed: check.halfway_passes(m, seed) + 1)


def test_ex5_4_fails_on_wrong_answers():
    # Keras's convention: momentum taken as the weight of the old average
    fails(check.ex5_4_halfway, lambda m, seed: check.halfway_passes(1 - m, seed),
          match=r"momentum=0.1, seed=540\) is 1.*PyTorch's convention")
    # "evaluation" in eval mode: the buffers never move
    fails(check.ex5_4_halfway, lambda m, seed: 1000, match="never got past 2.5.*training mode")
    # the momentum argument ignored (always torch's default 0.1)
    fails(check.ex5_4_halfway, lambda m, seed: check.halfway_passes(0.1, seed),
          match=r"momentum=0.01, seed=541\) is [0-9]+, but re-running")
    with pytest.raises(NotAttempted):
        check.ex5_4_halfway(stub)


# --- the grader calls the answers through a JSON proxy ---------------------------------------

def test_checks_pass_through_the_grading_proxy(capsys):
    import json

    from nncourse.course.grading.proxy import Proxy, serve

    answers = {"batchnorm_forward": make_bn(), "standardize": make_std(), "fold": make_fold(),
               "measure_halfway": check.halfway_passes}

    def transport(name, payload, on_callback):
        return json.loads(json.dumps(serve(answers[name], json.loads(json.dumps(payload)),
                                           on_callback)))

    bn, std, fold, halfway = (Proxy(name, transport) for name in answers)
    check.ex5_1_batchnorm_forward(bn)
    check.ex5_2_standardize(std)
    check.ex5_3_fold(fold)
    check.ex5_4_halfway(halfway)
    assert capsys.readouterr().out.count("passed") == 4
