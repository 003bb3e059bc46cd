"""Chapter 12's experiments: the planted cases, the repair loop and Karpathy's checks."""

import pytest
import torch

from nncourse import doctor
from nncourse.labs import ch12 as lab


def test_plant_covers_every_cause_and_refuses_unknown_names():
    assert set(lab.FAULTS) == set(doctor.CAUSES)
    case = lab.plant("wine", "labels_not_learnable", 0)
    clean = lab.plant("wine", None, 0)
    assert not torch.equal(case.kwargs["y_train"], clean.kwargs["y_train"])
    assert torch.equal(case.kwargs["y_train"].sort().values, clean.kwargs["y_train"].sort().values)
    with pytest.raises(ValueError, match="dataset must be one of digits"):
        lab.plant("mnist", None)
    with pytest.raises(ValueError, match="fault must be None or one of"):
        lab.plant("wine", "bad_luck")


def test_confusion_table_and_score_count_what_they_are_given():
    result = {"faults": ["dead_units", None],
              "cases": [("wine", "dead_units", 0, "dead_units", ["dead_units"]),
                        ("wine", "dead_units", 1, "lr_too_high", ["lr_too_high"]),
                        ("wine", None, 0, None, []), ("wine", None, 1, "overfitting", [])]}
    score = lab.accuracy_of(result)
    assert (score["right"], score["planted"], score["false_alarms"], score["healthy"]) == (1, 2, 1,
                                                                                         2)
    table = lab.confusion_table(result).splitlines()
    assert table[0].split()[-4:] == ["dead", "healthy", "lr_high", "overfit"]
    assert table[1].split() == ["dead", "1", ".", "1", "."]
    assert table[2].split() == ["healthy", ".", "1", ".", "1"]


def test_repair_walks_the_broken_recipe_to_a_healthy_one():
    rows = lab.repair(lab.BROKEN)
    assert rows[0]["val_acc"] < 0.2 and rows[0]["first"] == "unscaled_inputs"
    assert rows[-1]["first"] is None and rows[-1]["val_acc"] > 0.9
    firsts = [r["first"] for r in rows]
    assert firsts.index("softmax_before_cross_entropy") < firsts.index("lr_too_high")


def test_karpathy_checks_separate_broken_from_fixed():
    fixed = lab.repair(lab.BROKEN)[-1]["recipe"]
    assert lab.overfit_one_batch(fixed)[1] < 0.05
    assert lab.overfit_one_batch(lab.BROKEN)[1] > 2.0
    base = lab.input_independent_baseline(fixed)
    assert base["real"] < 0.5 * base["zeroed"]
    assert base["zeroed"] == pytest.approx(base["prior_entropy"], abs=0.05)


def test_check_recipe_names_the_problem():
    assert lab.check_recipe(dict(lab.BROKEN)) == lab.BROKEN
    with pytest.raises(ValueError, match="depth must be one of 1, 2"):
        lab.check_recipe(dict(lab.BROKEN, depth=2.0))
    with pytest.raises(ValueError, match="unknown epochs"):
        lab.check_recipe(dict(lab.BROKEN, epochs=3))
