"""Chapter 08 checks pass on the reference answers and fail, with one clear sentence, on
plausible wrong ones."""

import numpy as np
import pytest
import torch

from nncourse import regularization as R
from nncourse.checks import NotAttempted
from nncourse.checks import ch08 as check
from tests.checks.helpers import check_fails


def fails(fn, answer, match):
    return check_fails(8, fn, answer, match=match)


# --- 8.1 penalty ------------------------------------------------------------------------------

def penalty(w, lam, kind):
    if kind == "l1":
        return R.l1_penalty(w, lam), R.l1_grad(w, lam)
    return R.l2_penalty(w, lam), R.l2_grad(w, lam)


def test_8_1_passes(capsys):
    check.ex8_1_penalty(penalty)
    assert capsys.readouterr().out == "Exercise 8.1 passed (2 points)\n"


def test_8_1_failures():
    def no_half(w, lam, kind):
        if kind == "l2":
            return lam * (w ** 2).sum(), 2 * lam * w
        return penalty(w, lam, kind)

    def nan_at_zero(w, lam, kind):
        if kind == "l1":
            return lam * w.abs().sum(), lam * w / w.abs()
        return penalty(w, lam, kind)

    fails(check.ex8_1_penalty, no_half, r"the value of penalty\(w, 0.1, 'l2'\) is wrong.*1/2")
    fails(check.ex8_1_penalty, nan_at_zero, r"gradient .* contains 2 NaN")
    fails(check.ex8_1_penalty, lambda w, lam, kind: None, r"must return a pair \(value, grad\)")
    fails(check.ex8_1_penalty, lambda w, lam, kind: (penalty(w, lam, kind)[0], w[0]),
          r"gradient of penalty\(w, 0.1, 'l1'\) to have shape \(4, 6\)")
    fails(check.ex8_1_penalty, 3, r"expected a function")

    def stub(w, lam, kind):
        raise NotImplementedError
    with pytest.raises(NotAttempted):
        check.ex8_1_penalty(stub)


# --- 8.2 dropout ------------------------------------------------------------------------------

def dropout(x, p, training=True):
    return R.dropout(x, p, training)


def test_8_2_passes(capsys):
    state = torch.get_rng_state()
    check.ex8_2_dropout(dropout)
    assert capsys.readouterr().out == "Exercise 8.2 passed (2 points)\n"
    assert torch.equal(torch.get_rng_state(), state)  # the check leaves the global RNG alone


def test_8_2_failures():
    def not_inverted(x, p, training=True):
        return x * (torch.rand_like(x) >= p) if training else x

    def keeps_with_p(x, p, training=True):
        return x * (torch.rand_like(x) < p) / (1 - p) if training else x

    def scales_in_eval(x, p, training=True):
        return x * (torch.rand_like(x) >= p) / (1 - p) if training else x * (1 - p)

    def in_place(x, p, training=True):
        return x.mul_(torch.rand_like(x) >= p).div_(1 - p) if training else x

    fails(check.ex8_2_dropout, not_inverted,
          r"output of dropout\(x, 0.25.* kept positions is wrong.*1 / \(1 - p\)")
    fails(check.ex8_2_dropout, keeps_with_p, r"zeroed 75\.\d% of the entries, expected about 25%")
    fails(check.ex8_2_dropout, scales_in_eval, r"training=False\) is wrong.*unchanged")
    fails(check.ex8_2_dropout, in_place, r"changed its input x in place")
    fails(check.ex8_2_dropout, lambda x, p, training=True: None, r"returned None")
    fails(check.ex8_2_dropout, lambda x, p, training=True: x * float("nan"), r"NaN")


def test_8_2_non_random_dropout_fails():
    """Issue 19: masks that are not independent random draws per entry and per call."""
    def first_entries(x, p, training=True):  # always zeroes the first p * n entries
        if not training:
            return x
        mask = torch.ones(x.numel())
        mask[:round(p * x.numel())] = 0
        return x * mask.reshape(x.shape) / (1 - p)

    def batch_shared(x, p, training=True):  # one mask for every example
        return x * (torch.rand(x.shape[1]) >= p) / (1 - p) if training else x

    def reseeded(x, p, training=True):  # the same "random" mask on every call
        gen = torch.Generator().manual_seed(0)
        return x * (torch.rand(x.shape, generator=gen) >= p) / (1 - p) if training else x

    def striped(x, p, training=True):  # random per call, but whole columns at a time
        keep = torch.rand(x.shape[1]) >= p
        return x * keep.expand_as(x) / (1 - p) if training else x

    fails(check.ex8_2_dropout, first_entries, r"drops some positions far more often")
    msg = fails(check.ex8_2_dropout, batch_shared, r"zeroed the same columns in all 200 rows")
    assert "rand >= p" not in msg and "one random number per entry" in msg
    fails(check.ex8_2_dropout, striped, r"zeroed the same columns")
    fails(check.ex8_2_dropout, reseeded, r"two calls of dropout\(x, 0.25.* exactly the same")


# --- 8.3 early stopping -----------------------------------------------------------------------

def test_8_3_passes(capsys):
    check.ex8_3_early_stopping(R.early_stopping_epochs)
    assert capsys.readouterr().out == "Exercise 8.3 passed (2 points)\n"


def _rule(losses, patience, min_delta, *, zero_based=False, ties=False, delta=True, extra=0):
    best, best_epoch, wait = float("inf"), 0, 0
    for epoch, v in enumerate(losses, start=0 if zero_based else 1):
        better = v <= best - min_delta if ties else v < best - (min_delta if delta else 0)
        if better:
            best, best_epoch, wait = v, epoch, 0
        else:
            wait += 1
            if wait >= patience + extra:
                return epoch, best_epoch
    return len(losses) - (1 if zero_based else 0), best_epoch


@pytest.mark.parametrize("wrong", [dict(zero_based=True), dict(ties=True), dict(delta=False),
                                   dict(extra=1)], ids=["0-based", "ties", "no-min-delta",
                                                        "off-by-one"])
def test_8_3_failures(wrong):
    fails(check.ex8_3_early_stopping, lambda losses, p, d: _rule(losses, p, d, **wrong),
          r"returned \(stop, best\) = \(\d+, \d+\), expected \(\d+, \d+\)")


def test_8_3_wrong_type():
    fails(check.ex8_3_early_stopping, lambda losses, p, d: 5, r"must return a pair")


# --- 8.4 max-norm -----------------------------------------------------------------------------

def test_8_4_passes(capsys):
    check.ex8_4_max_norm(R.max_norm_)
    assert capsys.readouterr().out == "Exercise 8.4 passed (1 point)\n"


def test_8_4_failures():
    def columns(W, c):
        return R.max_norm_(W, c, dim=1)

    def every_row(W, c):
        return W.mul_(c / W.norm(dim=1, keepdim=True))

    def clamp(W, c):
        return W.clamp_(-c, c)

    def not_in_place(W, c):
        return torch.renorm(W, 2, 0, c)

    def no_return(W, c):
        R.max_norm_(W, c)

    for wrong in (columns, every_row, clamp, not_in_place):
        fails(check.ex8_4_max_norm, wrong, r"W after max_norm_\(W, 2.0\) .* is wrong")
    fails(check.ex8_4_max_norm, no_return, r"max_norm_\(W, 2.0\) returned None")
    fails(check.ex8_4_max_norm, lambda W, c: np.zeros(3), r"shape \(7, 5\)")


# --- 8.5 predict, measure and explain ---------------------------------------------------------

def _dropout_std(p, kind="inverted"):
    torch.manual_seed(0)
    ones = torch.ones(200_000)
    out = torch.nn.functional.dropout(ones, p, training=kind != "eval")
    if kind == "mask":
        return (out != 0).float().std().item()
    if kind == "var":
        return out.var().item()
    return out.std().item()


def test_8_5_passes_and_explains(capsys):
    check.ex8_5_dropout_noise(_dropout_std)
    out = capsys.readouterr().out
    assert out.endswith("Exercise 8.5 passed (2 points)\n") and "sqrt(p / (1 - p))" in out


@pytest.mark.parametrize("kind", ["mask", "var", "eval"])
def test_8_5_wrong_answers(kind):
    fails(check.ex8_5_dropout_noise, lambda p: _dropout_std(p, kind),
          r"dropout_std\(0.1\) returned .* re-running the experiment gives 0.33")
