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


def test_mean_sd_is_over_seeds_and_needs_two():
    mean, sd = lab.mean_sd([[0.5, 1.0], [0.7, 1.0], [0.9, 1.0]])
    assert np.allclose(mean, [0.7, 1.0]) and np.allclose(sd, [0.2, 0.0])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        lab.mean_sd([[0.5, 1.0]])


def test_format_rows_prints_a_mean_and_a_spread_line_per_label():
    text = lab.format_rows("sparsity", (0.5, 0.9), {"global": [[0.9, 0.5], [1.0, 0.3]]})
    lines = text.splitlines()
    assert lines[0].split() == ["sparsity", "50%", "90%"]
    assert lines[1].split() == ["global", "95.0%", "40.0%"]
    assert lines[2].split() == ["±", "sd", "(points)", "7.1", "14.1"]


def test_plot_mean_curves_draws_a_line_and_a_band_per_label():
    ax = lab.plot_mean_curves((0.5, 0.9), {"global": [[0.9, 0.5], [1.0, 0.3]],
                                           "layer-wise": [[0.8, 0.2], [0.9, 0.2]]})
    assert [line.get_label() for line in ax.get_lines()] == ["global", "layer-wise"]
    assert len(ax.collections) == 2
    assert np.allclose(ax.get_lines()[0].get_ydata(), [0.95, 0.4])


@pytest.fixture
def tiny_baselines(monkeypatch):
    """Seeded tiny 'baselines' instead of the chapter's 30-epoch training."""
    from nncourse.data import make_split
    from nncourse.models import make_mlp
    from nncourse.training import train

    def fake(seed=0):
        rng = np.random.default_rng(seed)
        X = rng.random((120, 6)).astype(np.float32)
        y = (X[:, 0] > X[:, 1]).astype(np.int64)
        data = make_split("toy", X, y, seed=seed)
        model = make_mlp(6, 2, width=16, depth=2, seed=seed)
        train(model, data, epochs=3, optimizer="adam", lr=1e-2, seed=seed, progress=False)
        return model.eval(), data, None

    caches = (lab._oneshot_seeds, lab._finetuned, lab._criteria_seeds)
    for c in caches:
        c.cache_clear()
    monkeypatch.setattr(lab, "trained_baseline", fake)
    yield fake
    for c in caches:
        c.cache_clear()


def test_seed_curves_have_one_row_per_seed_and_match_single_runs(tiny_baselines):
    runs = lab.oneshot_seeds("layer", (0.0, 0.5), seeds=(0, 1, 2))
    assert runs.shape == (3, 2)
    model, data, _ = tiny_baselines(1)
    assert list(runs[1]) == lab.oneshot_curve(model, data.X_val, data.y_val, (0.0, 0.5), "layer")
    assert lab.oneshot_seeds("layer", (0.0, 0.5), seeds=(0, 1, 2)) is runs  # cached
    noisy = lab.oneshot_seeds("layer", (0.0, 0.5), seeds=(0, 1, 2), noise_std=0.5)
    assert noisy.shape == (3, 2) and not np.array_equal(noisy, runs)

    tuned = lab.finetune_seeds((0.5, 0.9), seeds=(0, 1), epochs=2, steps=2)
    assert set(tuned) == {"one-shot", "iterative"}
    assert all(v.shape == (2, 2) and ((0 <= v) & (v <= 1)).all() for v in tuned.values())
    models = lab.finetuned(1, (0.5, 0.9), epochs=2, steps=2)
    assert [round(pruning_sparsity(m), 1) for m in models["iterative"]] == [0.5, 0.9]

    crit = lab.criteria_seeds((0.0, 0.5), compensate=True, seeds=(0, 1))
    assert set(crit) == {"weight", "activation", "redundancy", "random"}
    assert all(v.shape == (2, 2) for v in crit.values())
    assert len({v[0, 0] for v in crit.values()}) == 1  # nothing removed: the same model


def pruning_sparsity(model):
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    return sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights)


def test_format_table_prices_each_index_format():
    layer = torch.nn.Linear(100, 40)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    row = lab.format_table({"dense": torch.nn.Sequential(layer)}).splitlines()[2].split()
    # dense 4 B/slot; CSR int64 12 B/nnz + 8 B/row; int32 8 + 4; bitmask 4 B/nnz + 1 bit/slot
    assert row == ["dense", "16.0", "48.3", "32.2", "16.5", "18.0", "4,000", "4,000"]
    mask = torch.zeros(40, 100, dtype=torch.bool)
    mask[:, 0] = True  # one non-zero per row: gaps of 100 need 6 filler zeros each with 4 bits
    assert lab._relative_entries(mask) == 40 + 39 * 6
    assert lab._relative_entries(torch.zeros(3, 3, dtype=torch.bool)) == 0


def test_sparsity_axis_spaces_by_log_one_minus_sparsity():
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    lab.sparsity_axis(ax, (0.0, 0.9, 0.99))
    to_display = ax.transData.transform
    x0, x9, x99 = (to_display((s, 0))[0] for s in (0.0, 0.9, 0.99))
    assert abs((x9 - x0) - (x99 - x9)) < 1e-6 * abs(x9 - x0)
    plt.close("all")
