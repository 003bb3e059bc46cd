"""Checks for chapter 10's exercises (``exercises/10_pruning.ipynb``).

Every reference answer is what ``torch.nn.utils.prune`` or torch's sparse formats do, computed
on inputs the student has not seen.
"""

from __future__ import annotations

import copy
import functools
import warnings

import torch
import torch.nn.utils.prune as prune
from torch import nn

from nncourse.checks import exercise, single_threaded

__all__ = ["ex10_1_magnitude_mask", "ex10_2_global_masks", "ex10_3_remove_weakest_neurons",
           "ex10_4_size_report", "ex10_5_pruning_budget", "AMOUNTS", "trained_digits_model"]


def _weights(seed: int, *shapes, scales=None) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scales = scales or [1.0] * len(shapes)
    return [torch.randn(*s, generator=gen) * c for s, c in zip(shapes, scales)]


def _mask(ex, value, what, shape):
    arr = ex.array(value, what, shape=shape)
    ex.true(bool(((arr == 0) | (arr == 1)).all()),
            f"{what} must hold only 0 (pruned) and 1 (kept), got other values",
            "build it with torch.ones_like(weight) and set the pruned positions to 0")
    return torch.as_tensor(arr).float()


def _compare_mask(ex, got, expected, what, extra_hint=""):
    n_exp, n_got = int((expected == 0).sum()), int((got == 0).sum())
    ex.true(n_got == n_exp, f"{what} prunes {n_got} weights, expected {n_exp}",
            "prune k = round(amount * n) weights, the rule torch.nn.utils.prune uses: Python's "
            "round, which sends a .5 to the even neighbour (round(6.5) == 6), not math.ceil or "
            "int(x + 0.5)" + extra_hint)
    wrong = int((got != expected).sum())
    ex.true(wrong == 0, f"{what} prunes the right number of weights but {wrong} of the "
            "positions differ from torch.nn.utils.prune's mask",
            "zero the weights with the *smallest absolute value* |w|" + extra_hint)


def ex10_1_magnitude_mask(magnitude_mask) -> None:
    """Exercise 10.1: ``magnitude_mask(weight, amount)`` == ``prune.l1_unstructured``'s mask."""
    with exercise("10.1", points=2, name="magnitude_mask") as ex:
        # amount * n = 7.5, 7.5, 20, 57.6, 0, then 6.5 and 2.5: torch rounds half to even (6, 2),
        # so math.ceil, int(x + 0.5) and floor each miss at least one case
        cases = [((6, 5), 0.25), ((10, 3), 0.25), ((40,), 0.5), ((8, 8), 0.9), ((4, 7), 0.0),
                 ((13,), 0.5), ((5, 1), 0.5)]
        for seed, (shape, amount) in enumerate(cases):
            w = _weights(100 + seed, shape)[0]
            original = w.clone()
            call = f"magnitude_mask(weight of shape {shape}, amount={amount})"
            got = _mask(ex, ex.call(magnitude_mask, w, amount, call=call), call, shape)
            ex.true(torch.equal(w, original), f"{call} changed the weight it was given",
                    "compute a new mask; do not prune the weight in place")
            layer = nn.Linear(1, 1, bias=False)
            layer.weight = nn.Parameter(original.clone())
            prune.l1_unstructured(layer, "weight", amount)
            _compare_mask(ex, got, layer.weight_mask, call)


def ex10_2_global_masks(global_masks) -> None:
    """Exercise 10.2: ``global_masks(weights, amount)`` == ``prune.global_unstructured``'s masks."""
    with exercise("10.2", points=2, name="global_masks") as ex:
        for seed, amount in ((7, 0.6), (8, 0.85)):
            ws = _weights(200 + seed, (12, 6), (9, 12), (3, 9), scales=[1.0, 0.3, 2.0])
            call = f"global_masks(3 weight tensors, amount={amount})"
            got = ex.call(global_masks, [w.clone() for w in ws], amount, call=call)
            length = f" of length {len(got)}" if hasattr(got, "__len__") else ""
            ex.true(isinstance(got, (list, tuple)) and len(got) == 3,
                    f"{call} must return a list of 3 masks, one per tensor, got "
                    f"{type(got).__name__}{length}",
                    "return one mask per weight tensor, in the same order")
            layers = []
            for w in ws:
                layer = nn.Linear(1, 1, bias=False)
                layer.weight = nn.Parameter(w.clone())
                layers.append(layer)
            prune.global_unstructured([(m, "weight") for m in layers], prune.L1Unstructured,
                                      amount=amount)
            for i, (mask, layer) in enumerate(zip(got, layers)):
                what = f"mask {i} of {call}"
                mask = _mask(ex, mask, what, tuple(layer.weight.shape))
                exp = layer.weight_mask
                got_frac = (mask == 0).float().mean().item()
                exp_frac = (exp == 0).float().mean().item()
                ex.true(abs(got_frac - exp_frac) < 1e-9,
                        f"{what} prunes {got_frac:.1%} of its tensor, expected {exp_frac:.1%}",
                        "global pruning ranks the weights of *all* tensors together with one "
                        "threshold, so each tensor loses a different fraction")
                _compare_mask(ex, mask, exp, what)


def _two_layer(seed: int, n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out)).eval()


def _reference_remove(model: nn.Sequential, k: int) -> nn.Sequential:
    first, last = model[0], model[2]
    keep = torch.sort(torch.argsort(last.weight.norm(dim=0), stable=True)[k:]).values
    small = nn.Sequential(nn.Linear(first.in_features, len(keep)), nn.ReLU(),
                          nn.Linear(len(keep), last.out_features))
    with torch.no_grad():
        small[0].weight.copy_(first.weight[keep])
        small[0].bias.copy_(first.bias[keep])
        small[2].weight.copy_(last.weight[:, keep])
        small[2].bias.copy_(last.bias)
    return small.eval()


def _hidden_width(ex, small, call) -> int:
    ex.true(isinstance(small, nn.Module), f"{call} must return an nn.Module (a new "
            f"nn.Sequential), got {type(small).__name__}", "did you forget a `return`?")
    linears = [m for m in small.modules() if isinstance(m, nn.Linear)]
    ex.true(len(linears) == 2, f"{call} must return a model with 2 Linear layers, got "
            f"{len(linears)}", "nn.Sequential(nn.Linear(...), nn.ReLU(), nn.Linear(...))")
    ex.true(linears[0].out_features == linears[1].in_features,
            f"in the model {call} returned, the first Linear has {linears[0].out_features} "
            f"outputs but the second expects {linears[1].in_features} inputs",
            "remove the same neurons from the rows of the first layer and the columns of the "
            "second")
    return linears[0].out_features


def ex10_3_remove_weakest_neurons(remove_weakest_neurons) -> None:
    """Exercise 10.3: remove the ``k`` hidden neurons with the weakest outgoing weights."""
    with exercise("10.3", points=3, name="remove_weakest_neurons") as ex:
        X = torch.randn(32, 7, generator=torch.Generator().manual_seed(300))
        # 1) inert neurons: zero outgoing weights -> outputs must not change at all
        model = _two_layer(301, 7, 12, 4)
        with torch.no_grad():
            model[2].weight[:, [1, 5, 6, 10]] = 0.0
            model[0].weight[[1, 5, 6, 10]] *= 5  # large incoming weights: only outgoing matter
        before = copy.deepcopy(model.state_dict())
        call = "remove_weakest_neurons(model, k=4)"
        small = ex.call(remove_weakest_neurons, model, 4, call=call)
        width = _hidden_width(ex, small, call)
        ex.true(all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()),
                f"{call} changed the model it was given",
                "build new Linear layers (or copy.deepcopy the model) and leave the input alone")
        ex.true(width == 8, f"{call} on a 12-neuron hidden layer must leave 8 neurons, got {width}")
        with torch.no_grad():
            diff = (small.eval()(X) - model(X)).abs().max().item()
        ex.true(diff < 1e-5, f"{call} removed 4 neurons whose outgoing weights are all zero, yet "
                f"the outputs changed by up to {diff:.3g}",
                "score each neuron by the norm of its *outgoing* weights (a column of the second "
                "layer's weight) and keep the same neurons' rows, biases and columns")
        # 2) weak but not inert: the right neurons must go
        model = _two_layer(302, 7, 10, 3)
        with torch.no_grad():
            model[2].weight[:, [0, 3, 8]] *= 0.05
        call = "remove_weakest_neurons(model, k=3)"
        small = ex.call(remove_weakest_neurons, model, 3, call=call)
        width = _hidden_width(ex, small, call)
        ex.true(width == 7, f"{call} on a 10-neuron hidden layer must leave 7 neurons, got {width}")
        with torch.no_grad():
            ex.close(small.eval()(X), _reference_remove(model, 3)(X), f"the outputs of {call}",
                     rtol=1e-4, atol=1e-5,
                     hint="remove the k neurons with the smallest L2 norm of outgoing weights, "
                          "keeping the others in their original order")


def ex10_4_size_report(size_report) -> None:
    """Exercise 10.4: sparsity and bytes dense / CSR / COO (int64 indices) of a 2-D tensor."""
    with exercise("10.4", points=2, name="size_report") as ex:
        for seed, (shape, cut) in enumerate((((20, 30), 1.0), ((7, 50), 1.8))):
            w = _weights(400 + seed, shape)[0]
            w[w.abs() < cut] = 0.0
            call = f"size_report(weight of shape {shape})"
            got = ex.call(size_report, w.clone(), call=call)
            ex.true(isinstance(got, dict), f"{call} must return a dict, got {type(got).__name__}",
                    "return {'sparsity': ..., 'dense_bytes': ..., 'csr_bytes': ..., "
                    "'coo_bytes': ...}")
            for key in ("sparsity", "dense_bytes", "csr_bytes", "coo_bytes"):
                ex.true(key in got, f"{call} has no key {key!r} (keys: {sorted(map(str, got))})")
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta")
                csr = w.to_sparse_csr()
            coo = w.to_sparse()
            nbytes = lambda *ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
            expected = {
                "sparsity": (w == 0).float().mean().item(),
                "dense_bytes": nbytes(w),
                "csr_bytes": nbytes(csr.values(), csr.col_indices(), csr.crow_indices()),
                "coo_bytes": nbytes(coo._values(), coo._indices()),
            }
            hints = {
                "sparsity": "the fraction of entries that are exactly zero (not the non-zeros)",
                "dense_bytes": "every entry counts, zero or not: numel * element_size "
                               "(4 for float32)",
                "csr_bytes": "per non-zero a 4-byte value and an 8-byte column index, plus "
                             "(rows + 1) 8-byte row pointers",
                "coo_bytes": "per non-zero a 4-byte value and *two* 8-byte indices "
                             "(row and column)",
            }
            for key, exp in expected.items():
                ex.close(ex.number(got[key], f"{call}[{key!r}]"), exp, f"{call}[{key!r}]",
                         rtol=1e-6, atol=1e-9, hint=hints[key])


# --- 10.5 predict, measure and explain ---------------------------------------------------------

#: The sparsities exercise 10.5 scans, smallest first.
AMOUNTS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@functools.lru_cache(maxsize=1)
@single_threaded
def trained_digits_model():
    """Exercise 10.5's network: a 64-64-64-10 ReLU MLP trained 15 epochs on the digits (seeded).

    Returns ``(model, X_val, y_val)``; the notebook builds the same with the same calls.
    """
    from nncourse.data import load_digits
    from nncourse.models import make_mlp
    from nncourse.training import train

    data = load_digits(seed=0)
    model = make_mlp(64, 10, width=64, depth=2, seed=0)
    train(model, data, epochs=15, lr=0.01, optimizer="adam", seed=0, progress=False,
          evaluate_val=False)
    return model.eval(), data.X_val, data.y_val


@single_threaded
def pruned_accuracy_reference(model, X, y, amount: float) -> float:
    from nncourse.pruning import prune_magnitude
    from nncourse.training import accuracy

    return accuracy(prune_magnitude(model, amount, scope="global"), X, y)


def sparsity_losing_reference(model, X, y, points: float) -> float:
    from nncourse.training import accuracy

    base = accuracy(model, X, y)
    return next((a for a in AMOUNTS
                 if pruned_accuracy_reference(model, X, y, a) <= base - points / 100),
                float("nan"))


def ex10_5_pruning_budget(pruned_accuracy, sparsity_losing) -> None:
    """Exercise 10.5: at what sparsity does one-shot global pruning cost 5 points? Measured."""
    with exercise("10.5", points=2, name="measure the pruning budget") as ex:
        model, X, y = trained_digits_model()
        model = copy.deepcopy(model)
        before = copy.deepcopy(model.state_dict())
        refs = {}
        for amount in (0.6, 0.8):
            call = f"pruned_accuracy(model, X_val, y_val, {amount})"
            got = ex.number(ex.call(pruned_accuracy, model, X, y, amount, call=call), call)
            ex.true(all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()),
                    f"{call} pruned the model it was given",
                    "prune a copy (copy.deepcopy(model)), so that every amount starts from the "
                    "same trained weights")
            refs[amount] = pruned_accuracy_reference(model, X, y, amount)
            ex.close(got, refs[amount], call, rtol=0.0, atol=0.003,
                     hint="prune the weights of every nn.Linear together (global magnitude "
                          "pruning: one threshold over all layers, biases kept), then measure "
                          "the accuracy on (X_val, y_val)")
        call = "sparsity_losing(model, X_val, y_val, points=5)"
        got = ex.number(ex.call(sparsity_losing, model, X, y, 5, call=call), call)
        expected = sparsity_losing_reference(model, X, y, 5)
        ex.true(got == expected, f"{call} returned {got:g}; re-running the experiment, the "
                f"first sparsity of AMOUNTS that costs at least 5 points is {expected:g}",
                "compare each pruned accuracy with the *unpruned* model's, in points "
                "(0.05 of accuracy), and return the first amount of AMOUNTS that loses that much")
        from nncourse.training import accuracy
        base = accuracy(model, X, y)
        ex.note(f"Measured: unpruned {base:.3f}; global pruning keeps {refs[0.6]:.3f} at 60 % "
                f"sparsity, loses 5 points first at {expected * 100:.0f} %, and falls to "
                f"{refs[0.8]:.3f} at 80 %.")
        ex.note("Why: most weights of a trained network are small and redundant, so the first "
                "half costs almost nothing; past a point pruning removes weights the function "
                "needs, and accuracy collapses within a few percent of sparsity. Without "
                "fine-tuning this is the budget; pruning gradually with retraining moves it up.")
