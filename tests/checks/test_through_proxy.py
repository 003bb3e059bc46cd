"""Issue 19's new and changed checks run unchanged when the grader calls the student's functions
through its JSON proxy (docs/grading.md, "What is graded" item 2): arguments and results cross a
JSON boundary both ways, as they would to the sandboxed kernel."""

import json

import numpy as np
import pytest
import torch

from nncourse import pruning, regularization
from nncourse.checks import ExerciseError, ch01, ch02, ch03, ch04, ch08, ch10, ch11
from nncourse.course.grading.proxy import Proxy, serve
from tests.checks import test_ch03, test_ch04, test_ch08, test_ch10, test_ch11


def proxies(**functions):
    def transport(name, payload, on_callback):
        reply = serve(functions[name], json.loads(json.dumps(payload)), on_callback)
        return json.loads(json.dumps(reply))

    return [Proxy(name, transport) for name in functions]


def test_predict_and_measure_checks_pass_through_the_proxy(capsys):
    err, best = proxies(gradcheck_error=ch01.gradcheck_error_reference,
                        best_eps=lambda: min(ch01.EPS_GRID, key=ch01.gradcheck_error_reference))
    ch01.ex1_5_step_size(err, best)
    ratio, smallest = proxies(grad_ratio=ch02.gradient_ratio_reference,
                              smallest_scale=ch02.smallest_scale_reference)
    ch02.ex2_5_gradient_ratio(ratio, smallest)
    spread, scheme = proxies(gradient_spread=test_ch03._spread,
                             best_scheme=lambda: "xavier_normal")
    ch03.ex3_5_deep_tanh(spread, scheme)
    (std,) = proxies(deep_activation_std=test_ch04._deep_std)
    ch04.ex4_5_deep_std(std)
    (noise,) = proxies(dropout_std=test_ch08._dropout_std)
    ch08.ex8_5_dropout_noise(noise)
    acc, losing = proxies(pruned_accuracy=test_ch10._pruned_accuracy,
                          sparsity_losing=test_ch10._sparsity_losing)
    ch10.ex10_5_pruning_budget(acc, losing)
    (hits,) = proxies(top_hit_rate=test_ch11.top_hit_rate)
    ch11.ex11_4_random_hits(hits)
    out = capsys.readouterr().out
    for ex in ("1.5", "2.5", "3.5", "4.5", "8.5", "10.5", "11.4"):
        assert f"Exercise {ex} passed" in out


def test_changed_checks_pass_and_fail_through_the_proxy():
    (dropout,) = proxies(dropout=lambda x, p, training=True: regularization.dropout(x, p, training))
    ch08.ex8_2_dropout(dropout)

    def batch_shared(x, p, training=True):
        return x * (torch.rand(x.shape[1]) >= p) / (1 - p) if training else x

    (wrong,) = proxies(dropout=batch_shared)
    with pytest.raises(ExerciseError, match="zeroed the same columns"):
        ch08.ex8_2_dropout(wrong)
    (mask,) = proxies(magnitude_mask=pruning.magnitude_mask)
    ch10.ex10_1_magnitude_mask(mask)

    def ceil_mask(w, amount):
        m = torch.ones_like(w)
        m.view(-1)[torch.argsort(w.abs().flatten())[:int(np.ceil(amount * w.numel()))]] = 0
        return m

    (wrong,) = proxies(magnitude_mask=ceil_mask)
    with pytest.raises(ExerciseError, match="prunes 7 weights, expected 6"):
        ch10.ex10_1_magnitude_mask(wrong)
    (wrong,) = proxies(pruned_accuracy=lambda m, X, y, a: 0.5)
    with pytest.raises(ExerciseError, match="pruned_accuracy"):
        ch10.ex10_5_pruning_budget(wrong, test_ch10._sparsity_losing)
