"""The chapter 01 widget's compute part, and the widget itself without a browser."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nncourse.labs import ch01 as lab  # noqa: E402

TRAINING_RUN = lab.training_run


def test_training_run_snapshots():
    run = lab.training_run(width=4, lr=1.0, epochs=50, resolution=20)
    assert run.epochs == tuple(e for e in lab.SNAPSHOT_EPOCHS if e <= 50)
    assert run.probs.shape == (len(run.epochs), 20, 20)
    assert np.all((run.probs >= 0) & (run.probs <= 1))
    assert len(run.history.train_loss) == 51
    assert run.history.train_loss[50] < run.history.train_loss[0]
    assert not np.allclose(run.probs[0], run.probs[-1])  # the boundary moved
    with pytest.raises(ValueError, match="width must be a positive integer"):
        lab.training_run(width=0)


def test_widget_redraws_in_place(monkeypatch):
    monkeypatch.setattr(lab, "training_run", lambda w, lr: _small(w, lr))
    box = lab.explore_training()
    ax_boundary, ax_loss = box.figure.axes
    image = ax_boundary.images[0]
    epoch, width, lr = box.children[0].children
    first = image.get_array().copy()
    epoch.value = 50
    assert ax_boundary.images[0] is image and not np.allclose(image.get_array(), first)
    assert ax_boundary.get_title().startswith("epoch 50: validation accuracy")
    width.value = 2
    assert ax_loss.get_title().startswith("width 2, lr 1.0: train loss")
    assert len(ax_loss.lines) == 3  # train, validation, epoch marker: updated, not added
    engine = box.figure.get_layout_engine()  # laid out once, then frozen (faster redraws)
    assert type(engine).__name__ == "PlaceHolderLayoutEngine"


_SMALL_RUNS: dict = {}


def _small(width, lr, cache=_SMALL_RUNS):
    if (width, lr) not in cache:
        cache[width, lr] = TRAINING_RUN.__wrapped__(width, lr, epochs=100, resolution=10)
    return cache[width, lr]


def test_static_figures(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda: None)
    monkeypatch.setattr(lab, "training_run", lambda w, lr: _small(w, lr))
    run = _small(8, 1.0)
    lab.plot_snapshots(run, epochs=(0, 100))
    with pytest.raises(ValueError, match="no snapshot at epochs"):
        lab.plot_snapshots(run, epochs=(3,))
    assert lab.explore_training(static=True) is None
    plt.close("all")
