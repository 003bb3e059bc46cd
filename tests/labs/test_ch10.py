"""nncourse.labs.ch10: the chapter's helpers and the widget's precomputed states (no browser)."""

import matplotlib
import numpy as np
import pytest
import torch

from nncourse.labs import ch10 as lab

matplotlib.use("Agg")


def test_noisy_digits_is_seeded_and_stays_in_range():
    X = torch.rand(10, 64)
    a, b = lab.noisy_digits(X, 0.2, seed=1), lab.noisy_digits(X, 0.2, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, X)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(lab.noisy_digits(X, 0.0), X.clamp(0, 1))
    with pytest.raises(ValueError, match="std must be"):
        lab.noisy_digits(X, -1)


def test_mask_picture_prunes_weights_vs_whole_rows():
    w = torch.randn(20, 20)
    unstructured, structured = lab.mask_picture(w, 0.5, rows=12, cols=16)
    assert unstructured.shape == structured.shape == (12, 16)
    assert unstructured.sum() == 96 and structured.sum() == 96
    assert set(structured.min(1)) == {0.0, 1.0} and all(len(set(r)) == 1 for r in structured)


def test_storage_table_lists_each_model():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    table = lab.storage_table({"a": model, "b": model}).splitlines()
    assert len(table) == 3 and table[1].split()[:3] == ["a", "15", table[1].split()[2]]


@pytest.fixture(scope="module")
def states():
    # one thread, as nncourse.setup() sets in the notebook: on a busy machine torch's default
    # thread pool makes this small training many times slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield lab.widget_states()
    finally:
        torch.set_num_threads(threads)


def test_widget_states_cover_every_method_and_amount(states):
    edges = states["edges"]
    for method in lab.METHODS.values():
        rows = states["methods"][method]
        assert len(rows) == len(lab.WIDGET_AMOUNTS)
        assert rows[0]["removed"] == 0 and rows[0]["acc"] > 0.9  # the trained baseline
        removed = [r["removed"] for r in rows]
        assert removed == sorted(removed)
        for r in rows:
            assert len(r["per_layer"]) == 3 and len(r["hist"]) == len(edges) - 1
    magnitude = states["methods"]["layer"][lab.WIDGET_AMOUNTS.index(0.9)]
    assert np.allclose(magnitude["per_layer"], 0.9, atol=0.01)
    glob = states["methods"]["global"][lab.WIDGET_AMOUNTS.index(0.9)]
    assert magnitude["removed"] == pytest.approx(glob["removed"], abs=1e-3)
    assert len({round(x, 2) for x in glob["per_layer"]}) == 3  # global: a different share per layer
    assert glob["hist"][len(glob["hist"]) // 2] == 0  # the hole around zero


def test_widget_redraws_for_every_control_value(states):
    box = lab.explore_sparsity()
    method, amount = box.children[0].children
    amount.value = 0.99
    for name in lab.METHODS:
        method.value = name
        assert box.children[1].value == ""  # no error shown
    amount.value = 0.0
    title = box.figure.axes[0].get_title()
    assert title.startswith("accuracy") and "removed" in title
