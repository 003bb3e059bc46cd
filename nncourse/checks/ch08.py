"""Checks for chapter 08's exercises (``exercises/08_regularization.ipynb``)."""

from __future__ import annotations

import numpy as np
import torch

from nncourse.checks import exercise
from nncourse.regularization import early_stopping_epochs

__all__ = ["ex8_1_penalty", "ex8_2_dropout", "ex8_3_early_stopping", "ex8_4_max_norm",
           "ex8_5_dropout_noise"]


def _weights(seed: int, shape=(4, 6)) -> torch.Tensor:
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w[0, :2] = 0.0  # exact zeros: the L1 gradient there is 0, not NaN
    return w


def ex8_1_penalty(penalty) -> None:
    """Exercise 8.1: ``penalty(w, lam, kind) -> (value, grad)`` for ``kind`` "l1" or "l2"."""
    with exercise("8.1", points=2, name="L1/L2 penalty and gradient") as ex:
        expected = {
            "l1": (lambda w, lam: lam * w.abs().sum(), lambda w, lam: lam * torch.sign(w),
                   "the L1 penalty is lam * sum(|w|) over all entries",
                   "the L1 gradient is lam * sign(w), and 0 where w is exactly 0"),
            "l2": (lambda w, lam: 0.5 * lam * (w ** 2).sum(), lambda w, lam: lam * w,
                   "the L2 penalty is (lam / 2) * sum(w ** 2) -- mind the 1/2",
                   "with the 1/2 in (lam / 2) * sum(w ** 2) the gradient is lam * w"),
        }
        for seed, lam in ((81, 0.1), (82, 0.003)):
            w = _weights(seed)
            for kind, (value_fn, grad_fn, value_hint, hint) in expected.items():
                call = f"penalty(w, {lam}, {kind!r})"
                out = ex.call(penalty, w.clone(), lam, kind, call=call)
                ex.true(isinstance(out, (tuple, list)) and len(out) == 2,
                        f"{call} must return a pair (value, grad), got "
                        f"{type(out).__name__ if out is not None else 'None'}",
                        "end with `return value, grad`")
                value = ex.number(out[0], f"the value of {call}")
                ex.close(value, value_fn(w, lam).item(), f"the value of {call}",
                         hint=value_hint)
                grad = ex.array(out[1], f"the gradient of {call}", shape=tuple(w.shape))
                ex.close(grad, grad_fn(w, lam).numpy(), f"the gradient of {call}", hint=hint)


def ex8_2_dropout(dropout) -> None:
    """Exercise 8.2: inverted dropout ``dropout(x, p, training) -> tensor``."""
    with exercise("8.2", points=2, name="inverted dropout") as ex:
        x = torch.rand(200, 500, generator=torch.Generator().manual_seed(8)) + 0.5
        original = x.clone()
        with torch.random.fork_rng(devices=[]):  # the student's torch.rand is seeded, not ours
            torch.manual_seed(2)
            out = ex.array(ex.call(dropout, x, 0.3, False, call="dropout(x, 0.3, training=False)"),
                           "dropout(x, 0.3, training=False)", shape=tuple(x.shape))
            ex.close(out, original.numpy(), "dropout(x, 0.3, training=False)",
                     hint="in evaluation mode inverted dropout returns x unchanged -- the "
                          "scaling already happened during training")
            for p in (0.25, 0.6):
                call = f"dropout(x, {p}, training=True)"
                out = ex.array(ex.call(dropout, x, p, True, call=call), call,
                               shape=tuple(x.shape))
                ex.true(torch.equal(x, original), f"{call} changed its input x in place",
                        "build a new tensor, e.g. x * mask / (1 - p)")
                zero = out == 0
                ex.true(not all(np.array_equal(zero[0], row) for row in zero[1:]),
                        f"{call} zeroed the same columns in all {len(zero)} rows of the batch",
                        "draw one random number per entry of x (a mask with x's full shape), "
                        "not one mask shared by every example")
                dropped = float(np.mean(zero))
                by_col, by_row = zero.mean(axis=0), zero.mean(axis=1)
                # 200 rows: a column's drop rate has sd <= 0.035; 500 columns: a row's <= 0.023
                worst = max(float(np.abs(by_col - dropped).max()),
                            float(np.abs(by_row - dropped).max()))
                ex.true(worst < 0.2,
                        f"{call} drops some positions far more often than others (a row's or "
                        f"a column's drop rate is {worst:.0%} away from the overall "
                        f"{dropped:.0%})",
                        "every entry must have the same chance p of being dropped, wherever it "
                        "is in x, drawn afresh on every call")
                ex.true(abs(dropped - p) < 0.015,
                        f"{call} zeroed {dropped:.1%} of the entries, expected about {p:.0%}",
                        "an entry is dropped with probability p, so it is kept with probability "
                        "1 - p")
                again = ex.array(ex.call(dropout, x, p, True, call=call), call,
                                 shape=tuple(x.shape)) == 0
                ex.true(not np.array_equal(again, zero),
                        f"two calls of {call} zeroed exactly the same positions",
                        "dropout draws a fresh random mask on every call (torch.rand_like(x))")
                kept = ~zero
                ex.close(out[kept], (original.numpy() / (1 - p))[kept],
                         f"the output of {call} at the kept positions", rtol=1e-5,
                         hint="inverted dropout scales the kept entries by 1 / (1 - p)")
            out = ex.array(ex.call(dropout, x, 0.0, True, call="dropout(x, 0.0, training=True)"),
                           "dropout(x, 0.0, training=True)", shape=tuple(x.shape))
            ex.close(out, original.numpy(), "dropout(x, 0.0, training=True)",
                     hint="with p = 0 nothing is dropped and nothing is rescaled")


def ex8_3_early_stopping(early_stopping) -> None:
    """Exercise 8.3: ``early_stopping(val_losses, patience, min_delta) -> (stop, best)``."""
    cases = [
        ([0.9, 0.7, 0.72, 0.71, 0.73, 0.5], 3, 0.0),      # stops at 5, never sees the 0.5
        ([1.0, 0.8, 0.6, 0.55, 0.5], 2, 0.0),            # always improves: runs to the end
        ([0.8, 0.8, 0.8, 0.7], 2, 0.0),                  # a tie is not an improvement
        ([1.0, 0.9, 0.87, 0.86, 0.855, 0.6], 3, 0.05),   # gains below min_delta do not count
        ([0.5, 0.6, 0.4, 0.45, 0.46, 0.47, 0.3], 4, 0.0),
    ]
    with exercise("8.3", points=2, name="early stopping") as ex:
        for losses, patience, min_delta in cases:
            call = f"early_stopping({losses}, patience={patience}, min_delta={min_delta})"
            out = ex.call(early_stopping, list(losses), patience, min_delta, call=call)
            ex.true(isinstance(out, (tuple, list)) and len(out) == 2,
                    f"{call} must return a pair (stop_epoch, best_epoch), got "
                    f"{type(out).__name__ if out is not None else 'None'}",
                    "end with `return stop_epoch, best_epoch`")
            got = tuple(int(v) for v in out)
            want = early_stopping_epochs(losses, patience, min_delta)
            hint = ("epochs count from 1; an epoch improves only when its loss is below "
                    "best - min_delta; stop at the epoch that makes `patience` epochs in a row "
                    "without improvement, or at the last epoch")
            ex.true(got == want, f"{call} returned (stop, best) = {got}, expected {want}", hint)


def ex8_4_max_norm(max_norm_) -> None:
    """Exercise 8.4: ``max_norm_(W, c)`` rescales, in place, each row of W whose norm exceeds c."""
    with exercise("8.4", points=1, name="max-norm projection") as ex:
        for seed, c in ((84, 2.0), (85, 3.5)):
            W = torch.randn(7, 5, generator=torch.Generator().manual_seed(seed)) * 1.5
            W[1] *= 0.1  # a row already inside the ball must not change
            expected = torch.renorm(W, 2, 0, c)
            call = f"max_norm_(W, {c})"
            out = ex.call(max_norm_, W, c, call=call)
            out = ex.array(out, call, shape=(7, 5))
            ex.close(W, expected.numpy(), f"W after {call} (it must be changed in place)",
                     rtol=1e-4, atol=1e-6,
                     hint="rows are the incoming weights of a unit: compute W.norm(dim=1), "
                          "scale only the rows whose norm exceeds c by c / norm, and write the "
                          "result into W itself, e.g. with W.mul_(scale)")
            ex.close(out, expected.numpy(), f"the tensor {call} returns", rtol=1e-4, atol=1e-6,
                     hint="return W at the end")


# --- 8.5 predict, measure and explain ----------------------------------------------------------

def ex8_5_dropout_noise(dropout_std) -> None:
    """Exercise 8.5: the standard deviation inverted dropout adds to a constant input."""
    with exercise("8.5", points=2, name="measure dropout's noise") as ex:
        for p in (0.1, 0.5, 0.8):
            call = f"dropout_std({p})"
            got = ex.number(ex.call(dropout_std, p, call=call), call)
            # the check's own measurement, 200000 draws of torch's dropout on ones
            gen_state = torch.random.get_rng_state()
            try:
                torch.manual_seed(85)
                measured = torch.nn.functional.dropout(torch.ones(200_000), p,
                                                       training=True).std().item()
            finally:
                torch.random.set_rng_state(gen_state)
            theory = float(np.sqrt(p / (1 - p)))
            ex.true(abs(measured - theory) < 0.02 * theory, "internal: the check's own "
                    "measurement disagrees with sqrt(p / (1 - p))")
            ex.true(abs(got - theory) < 0.03 * theory,
                    f"{call} returned {got:.4g}; re-running the experiment gives {measured:.4g} "
                    "(within 3% is accepted)",
                    "apply torch.nn.Dropout(p) in training mode to torch.ones(200_000) and "
                    "return the standard deviation of the result -- the output, not the mask")
        ex.note("Measured = sqrt(p / (1 - p)): 0.333 at p = 0.1, 1 at p = 0.5, 2 at p = 0.8. "
                "Inverted dropout keeps the mean (1) but multiplies each unit by a random 0 or "
                "1 / (1 - p): large p means large noise, which is the regularization -- and why "
                "the activations' variance differs between training and evaluation.")
