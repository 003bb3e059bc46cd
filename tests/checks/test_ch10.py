"""Chapter 10's checks pass on the reference answers and fail, clearly, on plausible wrong ones."""

import copy
import math
from functools import partial

import pytest
import torch
from torch import nn

from nncourse import pruning as P
from nncourse.checks import NotAttempted
from nncourse.checks import ch10 as check
from tests.checks.helpers import check_fails


def fails(fn, answer, match):
    return check_fails(10, fn, answer, match=match)


# --- 10.1 -----------------------------------------------------------------------------------------

def test_magnitude_mask_passes_on_the_reference(capsys):
    check.ex10_1_magnitude_mask(P.magnitude_mask)
    assert capsys.readouterr().out == "Exercise 10.1 passed (2 points)\n"


def test_magnitude_mask_wrong_answers():
    def truncating(w, amount):  # int() instead of round(): one weight too few
        mask = torch.ones_like(w)
        mask.view(-1)[torch.argsort(w.abs().flatten())[:int(amount * w.numel())]] = 0
        return mask

    def signed(w, amount):  # smallest values instead of smallest magnitudes
        mask = torch.ones_like(w)
        mask.view(-1)[torch.argsort(w.flatten())[:round(amount * w.numel())]] = 0
        return mask

    def in_place(w, amount):
        mask = P.magnitude_mask(w, amount)
        w.mul_(mask)
        return mask

    def rounding_up(how):  # issue 19: ceil / half-up differ from torch's round at 6.5 and 2.5
        def mask_fn(w, amount):
            mask = torch.ones_like(w)
            mask.view(-1)[torch.argsort(w.abs().flatten())[:how(amount * w.numel())]] = 0
            return mask
        return mask_fn

    fails(check.ex10_1_magnitude_mask, rounding_up(math.ceil),
          r"amount=0.5\) prunes 7 weights, expected 6.*round\(6.5\) == 6")
    fails(check.ex10_1_magnitude_mask, rounding_up(lambda v: int(v + 0.5)),
          r"prunes 7 weights, expected 6")
    fails(check.ex10_1_magnitude_mask, truncating, r"prunes 7 weights, expected 8.*round")
    fails(check.ex10_1_magnitude_mask, signed, r"positions differ.*smallest absolute value")
    fails(check.ex10_1_magnitude_mask, in_place, "changed the weight")
    fails(check.ex10_1_magnitude_mask, lambda w, a: None, "returned None")
    fails(check.ex10_1_magnitude_mask, lambda w, a: torch.ones(3), r"shape")
    fails(check.ex10_1_magnitude_mask, lambda w, a: w * float("nan"), "NaN")
    fails(check.ex10_1_magnitude_mask, lambda w, a: w.abs(), "only 0 .* and 1")
    with pytest.raises(NotAttempted):
        check.ex10_1_magnitude_mask(lambda w, a: (_ for _ in ()).throw(NotImplementedError()))


# --- 10.2 -----------------------------------------------------------------------------------------

def test_global_masks_passes_on_the_reference(capsys):
    check.ex10_2_global_masks(P.global_masks)
    assert capsys.readouterr().out == "Exercise 10.2 passed (2 points)\n"


def test_global_masks_wrong_answers():
    def layerwise(ws, amount):
        return [P.magnitude_mask(w, amount) for w in ws]

    def concatenated(ws, amount):  # forgets to split back
        return P.magnitude_mask(torch.cat([w.flatten() for w in ws]), amount)

    def signed(ws, amount):  # ranks signed values: the threshold is in the wrong place
        flat = torch.cat([w.flatten() for w in ws])
        mask = torch.ones_like(flat)
        mask[torch.argsort(flat)[:round(amount * flat.numel())]] = 0
        return [m.reshape(w.shape) for m, w in zip(mask.split([w.numel() for w in ws]), ws)]

    fails(check.ex10_2_global_masks, layerwise,
          r"mask 0 .* prunes 59\.7% .* expected 34\.7%.*one threshold")
    fails(check.ex10_2_global_masks, concatenated, "list of 3 masks")
    fails(check.ex10_2_global_masks, signed, r"prunes .*% of its tensor|positions differ")
    fails(check.ex10_2_global_masks, lambda ws, a: [w.T for w in ws], "shape")


# --- 10.3 -----------------------------------------------------------------------------------------

def reference_remove(model, k):
    scores = model[2].weight.norm(dim=0)
    drop = torch.argsort(scores)[:k].tolist()
    return P.remove_neurons(model, 0, drop)


def test_remove_weakest_neurons_passes_on_the_reference(capsys):
    check.ex10_3_remove_weakest_neurons(reference_remove)
    assert capsys.readouterr().out == "Exercise 10.3 passed (3 points)\n"


def test_remove_weakest_neurons_wrong_answers():
    def by_incoming(model, k):  # scores by the rows of the first layer instead
        drop = torch.argsort(model[0].weight.norm(dim=1))[:k].tolist()
        return P.remove_neurons(model, 0, drop)

    def rows_only(model, k):  # forgets the second layer's columns
        small = copy.deepcopy(model)
        keep = torch.sort(torch.argsort(model[2].weight.norm(dim=0))[k:]).values
        small[0] = nn.Linear(model[0].in_features, len(keep))
        return small

    def zeroes_instead(model, k):  # masks the neurons but keeps the shape
        small = copy.deepcopy(model)
        drop = torch.argsort(model[2].weight.norm(dim=0))[:k]
        with torch.no_grad():
            small[2].weight[:, drop] = 0
        return small

    def in_place(model, k):
        with torch.no_grad():
            model[0].weight.mul_(1.0)
            model[0].bias.zero_()
        return reference_remove(model, k)

    def shuffled(model, k):  # keeps the right neurons, but not the rows that go with the columns
        small = reference_remove(model, k)
        with torch.no_grad():
            small[0].weight.copy_(small[0].weight.flip(0))
        return small

    fails(check.ex10_3_remove_weakest_neurons, by_incoming, r"outputs changed .*outgoing")
    fails(check.ex10_3_remove_weakest_neurons, rows_only, "expects 12 inputs")
    fails(check.ex10_3_remove_weakest_neurons, zeroes_instead, "must leave 8 neurons, got 12")
    fails(check.ex10_3_remove_weakest_neurons, in_place, "changed the model it was given")
    fails(check.ex10_3_remove_weakest_neurons, shuffled, "outputs changed")
    fails(check.ex10_3_remove_weakest_neurons, lambda m, k: None, "nn.Module")


# --- 10.4 -----------------------------------------------------------------------------------------

def reference_size(w):
    r = {"sparsity": P.sparsity(w), "dense_bytes": P.dense_bytes(w), "csr_bytes": P.csr_bytes(w),
         "coo_bytes": P.coo_bytes(w)}
    return r


def test_size_report_passes_on_the_reference(capsys):
    check.ex10_4_size_report(reference_size)
    assert capsys.readouterr().out == "Exercise 10.4 passed (2 points)\n"


@pytest.mark.parametrize("key, wrong, match", [
    ("csr_bytes", lambda w: P.csr_bytes(w) - (w.shape[0] + 1) * 8,
     r"'csr_bytes'\] is wrong.*row pointers"),
    ("coo_bytes", lambda w: torch.count_nonzero(w).item() * 12, r"'coo_bytes'\] is wrong.*two"),
    ("sparsity", lambda w: 1 - P.sparsity(w), r"'sparsity'\] is wrong.*exactly zero"),
    ("dense_bytes", lambda w: torch.count_nonzero(w).item() * 4, r"'dense_bytes'\] is wrong"),
    ("csr_bytes", lambda w: float("nan"), "NaN"),
])
def test_size_report_wrong_answers(key, wrong, match):
    def answer(w):
        r = reference_size(w)
        r[key] = wrong(w)
        return r

    fails(check.ex10_4_size_report, answer, match)


def test_size_report_wrong_type_and_missing_key():
    fails(check.ex10_4_size_report, lambda w: [1, 2, 3, 4], "must return a dict")
    fails(check.ex10_4_size_report,
          lambda w: {k: v for k, v in reference_size(w).items() if k != "coo_bytes"},
          "no key 'coo_bytes'")


# --- 10.5 predict, measure and explain --------------------------------------------------------

def _pruned_accuracy(model, X, y, amount, scope="global"):
    from nncourse.training import accuracy
    return accuracy(P.prune_magnitude(model, amount, scope=scope), X, y)


def _sparsity_losing(model, X, y, points, acc=_pruned_accuracy, below=False):
    from nncourse.training import accuracy
    base = accuracy(model, X, y)
    lost = [a for a in check.AMOUNTS if acc(model, X, y, a) <= base - points / 100]
    if below:  # the last amount that still costs less than `points`
        return max(a for a in check.AMOUNTS if a < lost[0])
    return lost[0]


def test_10_5_passes_and_explains(capsys):
    check.ex10_5_pruning_budget(_pruned_accuracy, _sparsity_losing)
    out = capsys.readouterr().out
    assert out.endswith("Exercise 10.5 passed (2 points)\n")
    assert "loses 5 points first at 75 %" in out


def test_10_5_the_answer_is_away_from_the_edge():
    from nncourse.training import accuracy
    model, X, y = check.trained_digits_model()
    base = accuracy(model, X, y)
    drops = {a: base - _pruned_accuracy(model, X, y, a) for a in check.AMOUNTS}
    assert drops[0.7] < 0.04 and drops[0.75] > 0.06, drops  # >= 3 validation examples each side


def test_10_5_wrong_answers():
    def in_place(model, X, y, amount):
        from nncourse.training import accuracy
        P.apply_masks_(model, P.magnitude_masks(model, amount, "global"))
        return accuracy(model, X, y)

    layerwise = partial(_pruned_accuracy, scope="layer")
    fails(lambda a: check.ex10_5_pruning_budget(a, _sparsity_losing), layerwise,
          r"pruned_accuracy\(model, X_val, y_val, 0.6\) is wrong|0.8\) is wrong")
    fails(lambda a: check.ex10_5_pruning_budget(a, _sparsity_losing), in_place,
          r"pruned the model it was given")
    fails(lambda s: check.ex10_5_pruning_budget(_pruned_accuracy, s),
          partial(_sparsity_losing, below=True), r"returned 0.7; .* is 0.75")
