"""nncourse.labs.ch08: the chapter-08 task, runs and widget, on a tiny budget."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nncourse.labs import ch08 as lab  # noqa: E402
from nncourse.regularization import weight_stats  # noqa: E402


def test_noisy_moons_split():
    d = lab.noisy_moons()
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (40, 901, 900)
    assert d.y_train.float().mean().item() == 0.5


def test_fit_is_cached_and_renamed_and_applies_its_settings():
    a = lab.fit("a", l1=0.05, epochs=5)
    b = lab.fit("b", l1=0.05, epochs=5)
    assert a.model is b.model and (a.name, b.name) == ("a", "b")
    assert weight_stats(a.model)["zeros"] > 0                  # proximal L1 made exact zeros
    c = lab.fit("c", max_norm=0.5, epochs=5)
    assert weight_stats(c.model)["max_row_norm"] <= 0.5 + 1e-6
    e = lab.fit("e", patience=1, epochs=50)
    assert e.extra["stopped_epoch"] == e.history.epochs_run
    assert a.gap == pytest.approx(a.train_acc - a.val_acc)
    assert "gap" in lab.table([a, c]) and "test" in lab.table([a], test=True)


def test_widget_compute_and_redraw():
    grid = lab.grid_runs(3, (0.0, 0.01), (0.0, 0.5))
    assert set(grid) == {(0.0, 0.0), (0.0, 0.5), (0.01, 0.0), (0.01, 0.5)}
    probs = grid[0.01, 0.5]["probs"]
    assert probs.shape == (80, 80) and np.all((probs >= 0) & (probs <= 1))
    box = lab.explore_regularization(epochs=3, l2_grid=(0.0, 0.01), dropout_grid=(0.0, 0.5))
    l2_slider, p_slider = box.children[0].children
    image = box.figure.axes[0].images[0]
    l2_slider.value, p_slider.value = 0.01, 0.5                # observe -> redraw in place
    assert np.array_equal(image.get_array(), probs)
    boundary = box.figure.axes[0].collections[0].get_segments()
    assert len(boundary) == len(grid[0.01, 0.5]["boundary"])
    assert "p = 0.5" in box.figure.axes[0].get_title()


def test_dropout_run_does_not_depend_on_earlier_runs():
    a = lab.fit(dropout=0.5, epochs=4, seed=3).history.train_loss
    lab._fit.cache_clear()
    torch.rand(10)                                              # move the global generator
    lab.fit(dropout=0.2, epochs=4, seed=3)
    b = lab.fit(dropout=0.5, epochs=4, seed=3).history.train_loss
    assert a == b


def test_boundary_lines_are_what_contour_draws():
    import matplotlib.pyplot as plt

    probs = lab.grid_runs(3, (0.0, 0.01), (0.0, 0.5))[0.01, 0.5]["probs"]
    x0, x1, y0, y1 = lab._EXTENT
    xs, ys = np.linspace(x0, x1, probs.shape[1]), np.linspace(y0, y1, probs.shape[0])
    fig, ax = plt.subplots()
    want = ax.contour(xs, ys, probs, levels=[0.5]).allsegs[0]
    plt.close(fig)
    got = lab.boundary_lines(probs)
    assert len(got) == len(want) >= 1
    for a, b in zip(sorted(got, key=len), sorted(want, key=len)):
        np.testing.assert_allclose(a, b)
