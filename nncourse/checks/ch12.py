"""Checks for chapter 12's exercises (``exercises/12_capstone_debugging.ipynb``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from nncourse.checks import exercise, single_threaded

__all__ = ["ex12_1_fix_recipe", "ex12_2_softmax_floor", "softmax_floor_reference"]


# --- 12.1 fix a broken recipe -------------------------------------------------------------------

@single_threaded
def _accuracies(recipe: dict) -> list[float]:
    from nncourse.labs import ch12 as lab

    b = lab.EXERCISE_BUDGET
    return [lab.run_recipe(recipe, b["dataset"], b["epochs"], seed, b["batch_size"])
            for seed in b["seeds"]]


@single_threaded
def _first_finding(recipe: dict) -> str | None:
    from nncourse.labs import ch12 as lab

    return lab.diagnose_recipe(recipe, lab.EXERCISE_BUDGET["dataset"]).first


def ex12_1_fix_recipe(fixed_recipe) -> None:
    """Exercise 12.1: a recipe (a dict of numbers and strings) that reaches the target mean
    validation accuracy on breast cancer within the budget."""
    from nncourse.labs import ch12 as lab

    with exercise("12.1", points=3, name="fix the broken recipe") as ex:
        recipe = ex.call(fixed_recipe, call="fixed_recipe()")
        try:
            recipe = lab.check_recipe(recipe, "fixed_recipe()")
        except ValueError as err:
            ex.fail(str(err), "start from BROKEN (a dict with the same keys) and change values")
        ex.true(recipe["depth"] <= 3 and recipe["width"] <= 64,
                f"fixed_recipe() uses depth {recipe['depth']} and width {recipe['width']}; the "
                "budget allows at most 3 hidden layers of at most 64 units",
                "a bigger network is not the fix: the broken one has the capacity it needs")
        b = lab.EXERCISE_BUDGET
        accs = _accuracies(recipe)
        mean = sum(accs) / len(accs)
        if mean < b["target"]:
            first = _first_finding(recipe)
            hint = (f"run doctor.diagnose on it: its first finding is {first}" if first else
                    "the doctor finds nothing in a 3-epoch look: try a larger learning rate or "
                    "Adam, within the same budget")
            ex.fail(f"your recipe reaches a mean validation accuracy of {mean:.3f} over seeds "
                    f"{', '.join(map(str, b['seeds']))} ({', '.join(f'{a:.3f}' for a in accs)}), "
                    f"below the target {b['target']}", hint)
        ex.note(f"Validation accuracy after {b['epochs']} epochs: "
                f"{', '.join(f'{a:.3f}' for a in accs)} (seeds {', '.join(map(str, b['seeds']))});"
                f" the broken recipe stays at 0.623, always answering the larger class.")


# --- 12.2 predict, measure and explain: the loss floor of a softmax before cross-entropy ---------

@single_threaded
def softmax_floor_reference(k: int) -> float:
    """Exercise 12.2's experiment: the training loss a softmax-ended net reaches on K blobs."""
    from sklearn.datasets import make_blobs

    from nncourse.models import make_mlp
    from nncourse.training import train

    X, y = make_blobs(n_samples=40 * k, centers=k, cluster_std=0.5, center_box=(-20, 20),
                      random_state=0)
    X = torch.tensor((X - X.mean(0)) / X.std(0), dtype=torch.float32)
    y = torch.tensor(y)
    model = nn.Sequential(*make_mlp(2, k, width=32, depth=1, seed=0), nn.Softmax(dim=1))
    train(model, (X, y), epochs=300, lr=0.01, optimizer="adam", batch_size=None, loss="ce",
          progress=False)
    with torch.no_grad():
        return nn.functional.cross_entropy(model(X), y).item()


def ex12_2_softmax_floor(softmax_floor_loss) -> None:
    """Exercise 12.2: the lowest training loss with a softmax before CrossEntropyLoss, measured."""
    with exercise("12.2", points=2, name="measure the softmax floor") as ex:
        hint = ("follow the recipe above exactly: make_blobs(n_samples=40 * k, centers=k, "
                "cluster_std=0.5, center_box=(-20, 20), random_state=0), standardized; "
                "make_mlp(2, k, width=32, depth=1, seed=0) followed by nn.Softmax(dim=1); "
                "300 full-batch Adam steps at lr 0.01 on loss='ce'; return the final training "
                "cross-entropy")
        refs = {}
        for k in (2, 5, 10):
            call = f"softmax_floor_loss({k})"
            got = ex.number(ex.call(softmax_floor_loss, k, call=call), call)
            refs[k] = softmax_floor_reference(k)
            ex.close(got, refs[k], call, rtol=0, atol=0.02, hint=hint)
        floors = {k: math.log(1 + (k - 1) / math.e) for k in refs}
        ex.note("Measured: " + ", ".join(f"K={k}: {v:.3f}" for k, v in refs.items())
                + " -- ln(1 + (K-1)/e) gives " + ", ".join(f"{v:.3f}" for v in floors.values())
                + ".")
        ex.note("Why: the second softmax sees probabilities in [0, 1]; at best the right class "
                "gets e^1 and every other class e^0, so the loss cannot fall below "
                "-ln(e / (e + K - 1)) = ln(1 + (K-1)/e) -- a floor that grows with K, and a loss "
                "that 'plateaus' there is the signature of this bug.")
