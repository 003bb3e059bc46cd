"""Chapter 12's experiments: planted faults for the training doctor, a broken recipe fixed one
finding at a time, and Karpathy's recipe as code.

* :func:`plant` builds one case -- a healthy recipe on a scikit-learn data set with one fault
  planted (or none) -- as keyword arguments for :func:`nncourse.doctor.diagnose`;
* :func:`benchmark` diagnoses every planted fault on several data sets and seeds and returns the
  confusion of planted vs first-named cause; :func:`confusion_table` prints it;
* :func:`broken_recipe` / :func:`fix_steps` / :func:`run_recipe`: the chapter's broken recipe and
  its repair;
* :func:`overfit_one_batch` and :func:`input_independent_baseline`: two steps of the recipe.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nncourse import data as datasets
from nncourse import doctor
from nncourse.models import linear_layers, make_mlp
from nncourse.training import evaluate, loss_function, train

__all__ = ["DATASETS", "FAULTS", "RECIPES", "Case", "load", "plant", "benchmark",
           "confusion_table", "accuracy_of", "no_zero_grad_step", "zero_grad_step",
           "RECIPE_KEYS", "BROKEN", "EXERCISE_BROKEN", "EXERCISE_BUDGET", "check_recipe",
           "recipe_data", "build", "run_recipe", "diagnose_recipe",
           "repair", "overfit_one_batch", "input_independent_baseline"]

DATASETS = ("digits", "breast_cancer", "wine", "moons")
#: Every planted fault: one per cause of :data:`nncourse.doctor.CAUSES`.
FAULTS = tuple(doctor.CAUSES)
#: Healthy recipes, cycled by seed: a fault is planted into one of them.
RECIPES = (
    {"activation": "relu", "depth": 2, "width": 64, "init": "default", "optimizer": "adam",
     "lr": 1e-3},
    {"activation": "tanh", "depth": 3, "width": 64, "init": "xavier_normal", "optimizer": "sgd",
     "lr": 0.1},
    {"activation": "relu", "depth": 2, "width": 128, "init": "he_normal", "optimizer": "sgd",
     "lr": 0.05},
)


@functools.lru_cache(maxsize=None)
def load(name: str, standardize: bool = True, seed: int = 0) -> datasets.Dataset:
    """One of :data:`DATASETS`, standardized (digits: pixels in [0, 1]) unless told otherwise."""
    if name == "digits":
        return datasets.load_digits(seed=seed)
    if name == "moons":
        return datasets.load_moons(seed=seed, noise=0.25)
    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[name]
    return loader(standardize=standardize, seed=seed)


@dataclass
class Case:
    """One planted case: what was planted and the arguments of ``diagnose``."""

    dataset: str
    fault: str | None
    seed: int
    kwargs: dict

    def diagnose(self) -> doctor.Report:
        return doctor.diagnose(**self.kwargs)


def zero_grad_step(model, optimizer, xb, yb):
    """A correct training step: zero the gradient, forward, backward, step."""
    optimizer.zero_grad()
    out = model(xb)
    loss = loss_function(out.shape[-1])(out, yb)
    loss.backward()
    optimizer.step()
    return loss.item()


def no_zero_grad_step(model, optimizer, xb, yb):
    """The same step without ``optimizer.zero_grad()``: gradients pile up across steps."""
    out = model(xb)
    loss = loss_function(out.shape[-1])(out, yb)
    loss.backward()
    optimizer.step()
    return loss.item()


def _unscaled(name: str, d: datasets.Dataset, seed: int) -> datasets.Dataset:
    """The data as it often arrives: raw measurements (breast cancer, wine), pixel values 0-255
    (digits), or one coordinate in other units (moons)."""
    if name in ("breast_cancer", "wine"):
        return load(name, standardize=False, seed=seed)
    factor = torch.tensor([255.0]) if name == "digits" else torch.tensor([1000.0, 1.0])
    return datasets.Dataset(d.name + "_unscaled", d.X_train * factor, d.y_train, d.X_val * factor,
                            d.y_val, d.X_test * factor, d.y_test, d.n_classes)


def plant(dataset: str, fault: str | None, seed: int = 0) -> Case:
    """A healthy recipe (:data:`RECIPES`, cycled by ``seed``) on ``dataset`` with ``fault``
    planted (None: healthy). The planted faults are the textbook ways each cause arises:

    ``vanishing_gradients`` 8 sigmoid layers (torch's default init); ``exploding_gradients`` N(0, 1)
    weights in 4 ReLU layers; ``saturated_units`` N(0, 1) weights on tanh/sigmoid units;
    ``dead_units`` hidden biases at -10; ``unscaled_inputs`` raw features; ``lr_too_high`` /
    ``lr_too_low`` the learning rate x1000 / /1000; ``symmetric_init`` constant weights;
    ``softmax_before_cross_entropy`` a final ``nn.Softmax``; ``frozen_layer`` the first layer's
    ``requires_grad=False``; ``labels_not_learnable`` labels permuted apart from their inputs;
    ``overfitting`` 10 examples per class, 256 units, 100 epochs of Adam; ``missing_zero_grad``
    a ``train_step`` without ``optimizer.zero_grad()``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"plant: dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"plant: fault must be None or one of {', '.join(FAULTS)}; got {fault!r}")
    recipe = dict(RECIPES[seed % len(RECIPES)])
    d = load(dataset, seed=seed)
    k = d.n_classes
    gen = torch.Generator().manual_seed(1000 + seed)
    kw = {"optimizer": recipe.pop("optimizer"), "lr": recipe.pop("lr"), "seed": seed}
    X, y, Xv, yv = d.X_train, d.y_train, d.X_val, d.y_val
    if fault == "vanishing_gradients":
        recipe.update(activation="sigmoid", depth=8, init="default")
    elif fault in ("exploding_gradients", "dead_units"):
        recipe.update(activation="relu", depth=4 if fault == "exploding_gradients" else 2)
    elif fault == "saturated_units":
        recipe.update(activation="sigmoid" if seed % 2 else "tanh", depth=2)
    elif fault == "overfitting":
        idx = torch.cat([torch.nonzero(y == c).reshape(-1)[:5] for c in range(k)])
        X, y = X[idx], y[idx]
        recipe.update(width=256)
        kw.update(optimizer="adam", lr=1e-2, epochs=60, batch_size=32)
    model = make_mlp(d.n_features, k, width=recipe["width"], depth=recipe["depth"],
                     activation=recipe["activation"], init=recipe["init"], seed=seed)
    if fault in ("exploding_gradients", "saturated_units"):
        # torch.randn weights; a sigmoid, (1 + tanh(z / 2)) / 2, needs 4x the weights of a tanh
        # to saturate as much: twice the pre-activation, and its outputs swing half as far
        std = 4.0 if recipe["activation"] == "sigmoid" else 1.0
        with torch.no_grad():
            for layer in linear_layers(model):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * std)
    elif fault == "dead_units":
        with torch.no_grad():
            for layer in linear_layers(model)[:-1]:
                layer.bias.fill_(-10.0)
    elif fault == "unscaled_inputs":
        raw = _unscaled(dataset, d, seed)
        X, Xv = raw.X_train, raw.X_val
    elif fault == "lr_too_high":
        kw["lr"] *= 1000
    elif fault == "lr_too_low":
        kw["lr"] /= 1000
    elif fault == "symmetric_init":
        with torch.no_grad():
            for layer in linear_layers(model):
                layer.weight.fill_(0.0 if seed % 2 == 0 else 0.05)
                layer.bias.fill_(0.0)
    elif fault == "softmax_before_cross_entropy":
        model = nn.Sequential(*model, nn.Softmax(dim=1))
    elif fault == "frozen_layer":
        linear_layers(model)[0].requires_grad_(False)
    elif fault == "labels_not_learnable":
        y = y[torch.randperm(len(y), generator=gen)]
        yv = yv[torch.randperm(len(yv), generator=gen)]
    elif fault == "missing_zero_grad":
        kw["train_step"] = no_zero_grad_step
    kw.update(model=model, X_train=X, y_train=y, X_val=Xv, y_val=yv)
    return Case(dataset, fault, seed, kw)


def benchmark(datasets_: Sequence[str] = DATASETS, seeds: Sequence[int] = (0, 1, 2),
              faults: Sequence[str | None] = FAULTS + (None,)) -> dict:
    """Diagnose every planted case; return ``{"cases": [(dataset, fault, seed, first cause or
    None, all causes)], "faults": [...]}``."""
    rows = []
    for fault in faults:
        for name in datasets_:
            for seed in seeds:
                report = plant(name, fault, seed).diagnose()
                rows.append((name, fault, seed, report.first, report.causes))
    return {"cases": rows, "faults": list(faults)}


def accuracy_of(result: dict) -> dict[str, float]:
    """The share of planted faults whose first cause is right, and the healthy runs' false
    alarms."""
    planted = [r for r in result["cases"] if r[1] is not None]
    healthy = [r for r in result["cases"] if r[1] is None]
    right = sum(r[3] == r[1] for r in planted)
    return {"right": right, "planted": len(planted),
            "right_fraction": right / len(planted) if planted else math.nan,
            "false_alarms": sum(r[3] is not None for r in healthy), "healthy": len(healthy)}


_SHORT = {"labels_not_learnable": "labels", "unscaled_inputs": "unscaled",
          "softmax_before_cross_entropy": "softmax", "frozen_layer": "frozen",
          "missing_zero_grad": "zero_grad", "symmetric_init": "symmetric",
          "saturated_units": "saturated", "exploding_gradients": "exploding",
          "dead_units": "dead", "vanishing_gradients": "vanishing", "lr_too_high": "lr_high",
          "lr_too_low": "lr_low", "overfitting": "overfit", None: "healthy"}


def confusion_table(result: dict) -> str:
    """Planted fault (rows) vs the doctor's first cause (columns), as text."""
    faults = result["faults"]
    named = list(dict.fromkeys(list(faults) + [r[3] for r in result["cases"]]))
    cols = [c for c in named if any(r[3] == c for r in result["cases"])]
    width = max(len(_SHORT[c]) for c in cols) + 1
    lines = ["planted \\ found".ljust(12) + "".join(_SHORT[c].rjust(width) for c in cols)]
    for f in faults:
        counts = [sum(1 for r in result["cases"] if r[1] == f and r[3] == c) for c in cols]
        lines.append(_SHORT[f].ljust(12) + "".join(
            (str(n) if n else ".").rjust(width) for n in counts))
    return "\n".join(lines)


# --- a recipe: everything that decides whether a network trains, as a plain dict ---------------

#: The keys of a recipe and what each may be. A recipe is plain numbers and strings, so it can be
#: printed, compared, stored -- and graded.
RECIPE_KEYS = {
    "inputs": ("raw", "standardized"),
    "activation": ("relu", "leaky_relu", "tanh", "sigmoid", "elu", "gelu"),
    "depth": (1, 2, 3, 4, 5, 6),
    "width": (8, 16, 32, 64, 128),
    "init": ("default", "zeros", "constant", "normal", "xavier_normal", "he_normal"),
    "init_scale": "a positive number",
    "output": ("logits", "softmax"),
    "optimizer": ("sgd", "adam"),
    "lr": "a positive number",
}

#: The chapter's broken recipe: it sits near chance on the digits. Pixels 0-255, four sigmoid
#: layers with randn * 10 weights (``normal`` is N(0, 0.01^2), times 1000), a softmax before the
#: cross-entropy and SGD at a learning rate of 3.
BROKEN = {"inputs": "raw", "activation": "sigmoid", "depth": 4, "width": 64, "init": "normal",
          "init_scale": 1000.0, "output": "softmax", "optimizer": "sgd", "lr": 3.0}

#: Exercise 12.1's broken recipe (breast cancer) and its budget.
EXERCISE_BROKEN = {"inputs": "raw", "activation": "tanh", "depth": 3, "width": 32,
                   "init": "zeros", "init_scale": 1.0, "output": "softmax", "optimizer": "sgd",
                   "lr": 1e-4}
EXERCISE_BUDGET = {"dataset": "breast_cancer", "epochs": 15, "batch_size": 32,
                   "seeds": (0, 1, 2), "target": 0.93}


def check_recipe(recipe, fn: str = "recipe") -> dict:
    """``recipe`` if it is a dict with exactly :data:`RECIPE_KEYS`, each an allowed value;
    otherwise ValueError naming the first problem."""
    if not isinstance(recipe, dict):
        raise ValueError(f"{fn}: a recipe must be a dict, got {type(recipe).__name__}")
    missing = [k for k in RECIPE_KEYS if k not in recipe]
    extra = [k for k in recipe if k not in RECIPE_KEYS]
    if missing or extra:
        raise ValueError(f"{fn}: a recipe needs exactly the keys {', '.join(RECIPE_KEYS)}; "
                         + (f"missing {', '.join(missing)}" if missing else
                            f"unknown {', '.join(map(str, extra))}"))
    for key, allowed in RECIPE_KEYS.items():
        value = recipe[key]
        if isinstance(allowed, str):
            ok = (not isinstance(value, bool) and isinstance(value, (int, float))
                  and math.isfinite(value) and value > 0)
        else:
            ok = value in allowed and type(value) is type(allowed[0])
        if not ok:
            want = allowed if isinstance(allowed, str) else "one of " + ", ".join(map(str, allowed))
            raise ValueError(f"{fn}: {key} must be {want}; got {value!r}")
    return recipe


def recipe_data(dataset: str, inputs: str, seed: int = 0) -> datasets.Dataset:
    """``dataset`` as a recipe's ``inputs`` say: ``"raw"`` is how the file stores it (digits as
    0-255 pixel intensities, breast cancer and wine as raw measurements), ``"standardized"`` is
    scaled with the training split's statistics (digits: pixels in [0, 1])."""
    if inputs == "standardized":
        return load(dataset, seed=seed)
    d = load(dataset, seed=seed)
    return _unscaled(dataset, d, seed) if dataset in ("digits", "moons") else load(
        dataset, standardize=False, seed=seed)


def build(recipe: dict, n_in: int, n_out: int, seed: int = 0) -> nn.Module:
    """The model a recipe describes (``init="normal"`` draws N(0, 0.01^2) before
    ``init_scale``; ``output="softmax"`` appends an ``nn.Softmax``)."""
    model = make_mlp(n_in, n_out, width=int(recipe["width"]), depth=int(recipe["depth"]),
                     activation=recipe["activation"], init=recipe["init"],
                     init_scale=float(recipe.get("init_scale", 1.0)), seed=seed)
    if recipe["output"] == "softmax":
        model = nn.Sequential(*model, nn.Softmax(dim=1))
    return model


def run_recipe(recipe: dict, dataset: str = "digits", epochs: int = 10, seed: int = 0,
               batch_size: int = 64) -> float:
    """Train a recipe for ``epochs`` (seeded) and return its validation accuracy (0 when the
    loss became NaN)."""
    d = recipe_data(dataset, recipe["inputs"], seed)
    model = build(recipe, d.n_features, d.n_classes, seed)
    history = train(model, d, epochs=epochs, lr=float(recipe["lr"]),
                    optimizer=recipe["optimizer"], batch_size=batch_size, seed=seed,
                    progress=False)
    return 0.0 if history.diverged else history.val_acc[-1]


def diagnose_recipe(recipe: dict, dataset: str = "digits", seed: int = 0,
                    epochs: int = 3) -> doctor.Report:
    """Run the doctor on a recipe (its model, data, optimizer and learning rate)."""
    d = recipe_data(dataset, recipe["inputs"], seed)
    model = build(recipe, d.n_features, d.n_classes, seed)
    return doctor.diagnose(model, d.X_train, d.y_train, d.X_val, d.y_val,
                           optimizer=recipe["optimizer"], lr=float(recipe["lr"]), epochs=epochs,
                           seed=seed)


def _matched_init(activation: str) -> str:
    return "xavier_normal" if activation in ("sigmoid", "tanh") else "he_normal"


def _fix(recipe: dict, cause: str) -> tuple[dict, str]:
    """The textbook fix of ``cause`` applied to ``recipe``: (new recipe, what changed)."""
    r = dict(recipe)
    if cause == "unscaled_inputs":
        r["inputs"] = "standardized"
        return r, "standardize the inputs"
    if cause == "softmax_before_cross_entropy":
        r["output"] = "logits"
        return r, "drop the final softmax"
    if cause in ("saturated_units", "exploding_gradients", "symmetric_init", "dead_units"):
        r["init"], r["init_scale"] = _matched_init(r["activation"]), 1.0
        return r, f"{r['init']} initialization"
    if cause == "vanishing_gradients":
        r["activation"], r["init"], r["init_scale"] = "relu", "he_normal", 1.0
        return r, "ReLU units, He initialization"
    if cause == "lr_too_high":
        r["lr"] = r["lr"] / 10
        return r, f"learning rate / 10 = {r['lr']:g}"
    if cause == "lr_too_low":
        r["lr"] = r["lr"] * 10
        return r, f"learning rate x 10 = {r['lr']:g}"
    raise ValueError(f"no automatic fix for {cause}")


def repair(recipe: dict, dataset: str = "digits", epochs: int = 10, seed: int = 0,
           max_fixes: int = 8) -> list[dict]:
    """Diagnose, fix the first finding, measure; repeat until the doctor finds nothing.

    Returns one row per step: the recipe, the doctor's first finding (None when healthy), the fix
    applied next and the validation accuracy after ``epochs`` (the fixed budget)."""
    rows = []
    for _ in range(max_fixes + 1):
        report = diagnose_recipe(recipe, dataset, seed)
        row = {"recipe": recipe, "first": report.first, "causes": report.causes,
               "evidence": report.findings[0].evidence if report.findings else "",
               "val_acc": run_recipe(recipe, dataset, epochs, seed)}
        rows.append(row)
        if report.healthy:
            break
        recipe, row["fix"] = _fix(recipe, report.first)
    return rows


# --- Karpathy's recipe, executable ---------------------------------------------------------------

def overfit_one_batch(recipe: dict, dataset: str = "digits", n: int = 32, steps: int = 200,
                      seed: int = 0) -> tuple[float, float]:
    """Train a recipe on one batch of ``n`` examples for ``steps`` full-batch steps: return the
    loss (start, end). A network that cannot drive one batch's loss to ~0 has a bug."""
    d = recipe_data(dataset, recipe["inputs"], seed)
    model = build(recipe, d.n_features, d.n_classes, seed)
    X, y = d.X_train[:n], d.y_train[:n]
    start = evaluate(model, X, y)[0]
    train(model, (X, y), epochs=steps, lr=float(recipe["lr"]), optimizer=recipe["optimizer"],
          batch_size=None, seed=seed, progress=False)
    return start, evaluate(model, X, y)[0]


def input_independent_baseline(recipe: dict, dataset: str = "digits", epochs: int = 10,
                               seed: int = 0) -> dict[str, float]:
    """Train the recipe on the real inputs and on all-zero inputs (the same labels): validation
    loss of each, and the entropy of the class frequencies (the best input-free loss)."""
    d = recipe_data(dataset, recipe["inputs"], seed)
    out = {}
    for name, (X, Xv) in {"real": (d.X_train, d.X_val),
                          "zeroed": (torch.zeros_like(d.X_train), torch.zeros_like(d.X_val))
                          }.items():
        model = build(recipe, d.n_features, d.n_classes, seed)
        train(model, (X, d.y_train, Xv, d.y_val), epochs=epochs, lr=float(recipe["lr"]),
              optimizer=recipe["optimizer"], seed=seed, progress=False)
        out[name] = evaluate(model, Xv, d.y_val)[0]
    p = torch.bincount(d.y_train).double() / len(d.y_train)
    out["prior_entropy"] = float(-(p * p.log()).sum())
    return out
