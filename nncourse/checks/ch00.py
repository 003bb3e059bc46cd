"""Checks for the warm-up exercises (``exercises/00_warmup.ipynb``)."""

from __future__ import annotations

import numpy as np
import torch

from nncourse.checks import exercise

__all__ = ["ex0_1_relu", "ex0_2_mse", "ex0_3_accuracy"]


def ex0_1_relu(relu) -> None:
    """Exercise 0.1: ``relu(x)`` for a NumPy array, elementwise max(0, x)."""
    with exercise("0.1", points=1, name="relu") as ex:
        rng = np.random.default_rng(1)
        for x in (np.array([-2.0, -0.0, 0.0, 0.5, 3.0]), rng.normal(size=(4, 7)) * 10):
            ex.matches(relu, x.copy(), expected=np.maximum(x, 0.0), call="relu(x)",
                       hint="np.maximum(x, 0) keeps positives and maps negatives to 0")


def ex0_2_mse(mse) -> None:
    """Exercise 0.2: mean squared error of two equal-shape arrays, one number."""
    with exercise("0.2", points=1, name="mse") as ex:
        rng = np.random.default_rng(2)
        for shape in ((5,), (3, 4)):
            y_pred, y_true = rng.normal(size=shape), rng.normal(size=shape)
            got = ex.number(ex.call(mse, y_pred, y_true, call="mse(y_pred, y_true)"),
                            "mse(y_pred, y_true)")
            expected = float(np.mean((y_pred - y_true) ** 2))
            ex.close(got, expected, "mse(y_pred, y_true)",
                     hint="square the differences, then average over *all* elements")
        got = ex.number(ex.call(mse, np.ones(3), np.ones(3), call="mse(a, a)"), "mse(a, a)")
        ex.close(got, 0.0, "mse(a, a) for identical arrays", hint="identical inputs give 0")


def ex0_3_accuracy(accuracy) -> None:
    """Exercise 0.3: accuracy of class logits (torch, shape (n, k)) against labels (n,)."""
    with exercise("0.3", points=2, name="accuracy") as ex:
        gen = torch.Generator().manual_seed(3)
        logits = torch.randn(50, 4, generator=gen)
        labels = torch.randint(0, 4, (50,), generator=gen)
        got = ex.number(ex.call(accuracy, logits, labels, call="accuracy(logits, labels)"),
                        "accuracy(logits, labels)")
        expected = (logits.argmax(1) == labels).float().mean().item()
        ex.true(0.0 <= got <= 1.0, f"accuracy must be a fraction in [0, 1], got {got:.4g}",
                "divide the number of correct predictions by the number of examples")
        ex.close(got, expected, "accuracy(logits, labels)",
                 hint="the predicted class is logits.argmax(dim=1); compare it with labels")
        perfect = torch.nn.functional.one_hot(labels, 4).float()
        ex.close(ex.number(ex.call(accuracy, perfect, labels, call="accuracy(one_hot, labels)"),
                           "accuracy(one_hot, labels)"),
                 1.0, "accuracy when every prediction is right")
