"""nncourse.labs.ch09: the transfer task, its runs, tables and widget, on a small budget."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nncourse import transfer  # noqa: E402
from nncourse.labs import ch09 as lab  # noqa: E402


def test_split_separates_source_and_target_classes():
    s = lab.digits_split()
    assert set(s["y_source"].tolist()) == set(range(8))
    assert set(s["y_pool"].tolist()) == set(s["y_eval"].tolist()) == {0, 1}
    assert len(s["X_eval"]) == 142 and len(s["X_unlabelled"]) == len(s["X_source"]) + len(
        s["X_pool"])


def test_target_data_is_balanced_seeded_and_validated():
    X, y = lab.target_data(10, seed=3)
    assert X.shape == (10, 64) and y.sum().item() == 5
    assert torch.equal(lab.target_data(10, seed=3)[0], X)
    assert not torch.equal(lab.target_data(10, seed=4)[0], X)
    with pytest.raises(ValueError, match="n must be at most"):
        lab.target_data(1000, 0)


def test_source_learns_its_task():
    s = lab.digits_split()
    assert lab.accuracy(lab.source("supervised", 0), s["X_source_eval"],
                        s["y_source_eval"]) > 0.9
    with pytest.raises(ValueError, match="kind must be one of"):
        lab.source("imagenet", 0)


def test_target_model_copies_and_freezes_the_reused_blocks():
    src = lab.source("supervised", 0)
    m = lab.target_model(2, seed=0)
    assert torch.equal(m[0].weight, src[0].weight) and m[0].weight is not src[0].weight
    assert transfer.is_frozen(torch.nn.Sequential(*m[:6])) and m[-1].weight.requires_grad
    assert m[-1].out_features == 2
    scratch = lab.target_model(0, seed=0)
    assert all(p.requires_grad for p in scratch.parameters())
    with pytest.raises(ValueError, match="k must be at most 2"):
        lab.target_model(3, 0)


def test_fit_target_leaves_the_source_alone_and_validates():
    src = lab.source("supervised", 1)
    before = {k: v.clone() for k, v in src.state_dict().items()}
    acc = lab.fit_target(20, 2, "fine-tuned", 1, steps=6)
    assert 0.0 <= acc <= 1.0
    assert all(torch.equal(before[k], v) for k, v in src.state_dict().items())
    with pytest.raises(ValueError, match="scratch means k = 0"):
        lab.fit_target(20, 1, "scratch", 0)


def test_grid_tables_and_best():
    g = lab.grid((10, 20), (0, 1))
    assert set(g) == {(n, k, m) for n in (10, 20) for k, m in lab.CONFIGS}
    assert all(v.shape == (2,) for v in g.values())
    text = lab.grid_table(g)
    assert text.splitlines()[0].split() == ["n", "=", "10", "n", "=", "20"]
    assert len(text.splitlines()) == 1 + len(lab.CONFIGS)
    best = lab.best_per_n(g)
    for n in (10, 20):
        name, ties = best[n]
        means = {lab._label(k, m): g[n, k, m].mean() for k, m in lab.CONFIGS}
        assert means[name] == max(means.values()) and name not in ties
    assert "scratch" in lab.seed_table({"scratch": g[10, 0, "scratch"]})


def test_freeze_first_measures_each_way():
    res = lab.freeze_first(seeds=(0,), steps=3)
    assert set(res) == set(lab.WAYS)
    for r in res.values():
        assert {k: v.shape for k, v in r.items()} == {"grad": (1,), "drift": (1,), "acc": (1,)}
    # the smaller body rate moves the reused layer less
    assert res["head first, body at lr/10"]["drift"][0] < res["head first"]["drift"][0]
    assert res["head first"]["grad"][0] == res["head first, body at lr/10"]["grad"][0]
    assert "at once" in lab.freeze_first_table(res)


def test_coadaptation_shapes_and_table():
    res = lab.coadaptation(seeds=(0,), steps=5)
    assert set(res) == {("baseB", 0)} | {(w, k) for w in ("BnB", "AnB", "AnB+")
                                         for k in (1, 2, 3)}
    text = lab.coadaptation_table(res)
    assert "AnB+" in text and "baseB" in text
    lab.plot_coadaptation(res)


def test_widget_static_and_live_redraw():
    ns, seeds = (10, 20), (0, 1)
    assert lab.explore_transfer(static=True, n_labels=ns, seeds=seeds) is None
    box = lab.explore_transfer(n_labels=ns, seeds=seeds)
    n_slider, k_slider, mode = box.children[0].children
    ax_s = box.figure.axes[0]
    g = lab.grid(ns, seeds)
    mode.value = "fine-tuned"
    k_slider.value = 1
    n_slider.value = 10
    dots = ax_s.lines[1].get_ydata()
    assert np.array_equal(dots, g[10, 1, "fine-tuned"])
    assert "fine-tuned (1 reused)" in ax_s.get_title()
