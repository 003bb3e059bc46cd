"""The warm-up's checks fail, with one clear sentence, on the three most plausible wrong answers
of each exercise (issue 19); tests/checks/test_checks.py covers the machinery and more cases."""

import numpy as np
import pytest
import torch

from nncourse.checks import ch00
from tests.checks.helpers import check_fails


def fails(check, answer, match):
    return check_fails(0, check, answer, match=match)


@pytest.mark.parametrize("answer", [np.abs, lambda x: np.where(x > 0, x, 0.01 * x),
                                    lambda x: np.clip(x, 0, 1)], ids=["abs", "leaky", "clipped"])
def test_0_1_wrong_answers(answer):
    fails(ch00.ex0_1_relu, answer, r"relu\(x\) is wrong")


@pytest.mark.parametrize("answer", [lambda p, t: ((p - t) ** 2).sum(),
                                    lambda p, t: np.sqrt(((p - t) ** 2).mean()),
                                    lambda p, t: np.abs(p - t).mean()],
                         ids=["sum", "rmse", "mae"])
def test_0_2_wrong_answers(answer):
    fails(ch00.ex0_2_mse, answer, r"mse\(y_pred, y_true\) is wrong.*average")


def test_0_3_wrong_answers():
    fails(ch00.ex0_3_accuracy, lambda lo, y: (lo.argmax(1) == y).sum(), r"fraction in \[0, 1\]")
    fails(ch00.ex0_3_accuracy, lambda lo, y: (lo.argmax(1) != y).float().mean(),
          r"accuracy\(logits, labels\) is wrong")
    fails(ch00.ex0_3_accuracy, lambda lo, y: (lo.argmax(0)[: len(y)] == y[: lo.shape[1]])
          .float().mean(), r"is wrong")
    fails(ch00.ex0_3_accuracy, lambda lo, y: (torch.sigmoid(lo).round() == 1).float().mean(),
          r"is wrong")
