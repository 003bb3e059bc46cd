"""Each chapter 12 check passes on the reference answer and fails, with one clear sentence, on
plausible wrong answers -- also when the student's function is called through the grader's JSON
proxy."""

import json
from functools import partial

import pytest
import torch
from sklearn.datasets import make_blobs
from torch import nn

from nncourse.checks import NotAttempted
from nncourse.checks import ch12 as check
from nncourse.course.grading.proxy import Proxy, serve
from nncourse.labs import ch12 as lab
from nncourse.models import make_mlp
from nncourse.training import train
from tests.checks.helpers import check_fails, stub

fails = partial(check_fails, 12)

FIXED = dict(lab.EXERCISE_BROKEN, inputs="standardized", init="xavier_normal", output="logits",
             optimizer="adam", lr=0.01)


def proxies(**functions):
    def transport(name, payload, on_callback):
        reply = serve(functions[name], json.loads(json.dumps(payload)), on_callback)
        return json.loads(json.dumps(reply))

    return [Proxy(name, transport) for name in functions]


# --- 12.1 ----------------------------------------------------------------------------------

def test_ex12_1_passes_on_reference(capsys):
    check.ex12_1_fix_recipe(lambda: dict(FIXED))
    out = capsys.readouterr().out
    assert out.endswith("Exercise 12.1 passed (3 points)\n")
    assert "Validation accuracy after 15 epochs" in out


def test_ex12_1_fails_on_partial_fixes_with_the_doctors_next_finding():
    # only the inputs standardized: the softmax, the zero init and the low lr remain
    fails(check.ex12_1_fix_recipe, lambda: dict(lab.EXERCISE_BROKEN, inputs="standardized"),
          match=r"mean validation accuracy of 0\.6\d\d.*below the target 0\.93.*first finding "
                r"is softmax_before_cross_entropy")
    # everything fixed but the symmetric (all-zero) initialization
    fails(check.ex12_1_fix_recipe, lambda: dict(FIXED, init="zeros"),
          match="below the target.*first finding is symmetric_init")
    # everything fixed but the learning rate: SGD at 1e-4 crawls
    fails(check.ex12_1_fix_recipe, lambda: dict(FIXED, optimizer="sgd", lr=1e-4),
          match="below the target.*first finding is lr_too_low")


def test_ex12_1_enforces_the_budget_and_the_recipe_format():
    fails(check.ex12_1_fix_recipe, lambda: dict(FIXED, depth=5),
          match="depth 5 and width 32; the budget allows at most 3 hidden layers")
    fails(check.ex12_1_fix_recipe, lambda: {k: v for k, v in FIXED.items() if k != "lr"},
          match="needs exactly the keys.*missing lr")
    fails(check.ex12_1_fix_recipe, lambda: dict(FIXED, activation="swish"),
          match="activation must be one of relu")
    fails(check.ex12_1_fix_recipe, lambda: dict(FIXED, lr=0), match="lr must be a positive")
    fails(check.ex12_1_fix_recipe, lambda: None, match="a recipe must be a dict, got NoneType")
    with pytest.raises(NotAttempted, match="not attempted"):
        check.ex12_1_fix_recipe(stub)


# --- 12.2 ----------------------------------------------------------------------------------

def _floor(k, softmax=True, epochs=300):
    X, y = make_blobs(n_samples=40 * k, centers=k, cluster_std=0.5, center_box=(-20, 20),
                      random_state=0)
    X = torch.tensor((X - X.mean(0)) / X.std(0), dtype=torch.float32)
    y = torch.tensor(y)
    layers = list(make_mlp(2, k, width=32, depth=1, seed=0)) + [nn.Softmax(dim=1)] * softmax
    model = nn.Sequential(*layers)
    train(model, (X, y), epochs=epochs, lr=0.01, optimizer="adam", batch_size=None, loss="ce",
          progress=False)
    with torch.no_grad():
        return nn.functional.cross_entropy(model(X), y).item()


def test_ex12_2_passes_on_reference(capsys):
    check.ex12_2_softmax_floor(_floor)
    out = capsys.readouterr().out
    assert "ln(1 + (K-1)/e) gives 0.313, 0.905, 1.461" in out
    assert out.endswith("Exercise 12.2 passed (2 points)\n")


def test_ex12_2_fails_on_wrong_answers():
    # no softmax: the loss goes to ~0, not to the floor
    fails(check.ex12_2_softmax_floor, lambda k: _floor(k, softmax=False),
          match=r"softmax_floor_loss\(2\) is wrong.*Hint: follow the recipe")
    # stopped early: 30 steps are far from the floor
    fails(check.ex12_2_softmax_floor, lambda k: _floor(k, epochs=30),
          match=r"softmax_floor_loss\(\d+\) is wrong")
    # the accuracy instead of the loss
    fails(check.ex12_2_softmax_floor, lambda k: 1.0, match=r"softmax_floor_loss\(2\) is wrong")
    fails(check.ex12_2_softmax_floor, lambda k: [0.3, 0.3], match="single number")
    fails(check.ex12_2_softmax_floor, lambda k: float("nan"), match="NaN")
    with pytest.raises(NotAttempted):
        check.ex12_2_softmax_floor(stub)


def test_checks_pass_and_fail_through_the_proxy(capsys):
    recipe, floor = proxies(fixed_recipe=lambda: dict(FIXED), softmax_floor_loss=_floor)
    check.ex12_1_fix_recipe(recipe)
    check.ex12_2_softmax_floor(floor)
    out = capsys.readouterr().out
    assert "Exercise 12.1 passed" in out and "Exercise 12.2 passed" in out
    (wrong,) = proxies(fixed_recipe=lambda: dict(FIXED, init="zeros"))
    fails(check.ex12_1_fix_recipe, wrong, match="symmetric_init")
