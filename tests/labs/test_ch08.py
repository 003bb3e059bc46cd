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
    lab.clear_cache()
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


def test_mean_sd():
    assert lab.mean_sd([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert lab.mean_sd(iter([0.5])) == (0.5, 0.0)


def test_fit_seeds_and_seed_table():
    runs = lab.fit_seeds("two seeds", seeds=(0, 1), epochs=3)
    assert [r.name for r in runs] == ["two seeds"] * 2
    assert runs[1].model is lab.fit(seed=1, epochs=3, eval_every=0).model   # cached, shared
    assert len(runs[0].history.val_loss) == 2 and not runs[1].history.val_loss  # curve: seed 0
    w0, w1 = (next(r.model.parameters()) for r in runs)
    assert not torch.equal(w0, w1)                                     # the seed changes the init
    text = lab.seed_table([runs, runs[:1]], test=True).splitlines()
    assert len(text) == 3 and "seeds" in text[0] and "test" in text[0]
    val, sd = lab.mean_sd(r.val_acc for r in runs)
    assert f"{val:7.1%} {sd * 100:5.1f}" in text[1] and text[1].split()[2] == "2"
    assert text[2].split()[2] == "1" and " - " in text[2]              # one run: no spread


def test_dropout_loss_modes_same_weights_two_modes():
    from nncourse.training import eval_mode

    run = lab.fit(dropout=0.5, epochs=5)
    mode = run.model.training
    on, off = lab.dropout_loss_modes(run, n_masks=4)
    assert run.model.training == mode                                  # mode restored
    d = lab.noisy_moons()
    with torch.no_grad(), eval_mode(run.model):
        want = torch.nn.functional.binary_cross_entropy_with_logits(
            run.model(d.X_train).reshape(-1), d.y_train.float()).item()
    assert off == pytest.approx(want, rel=1e-6) and on != off          # off = eval mode
    assert lab.dropout_loss_modes(run, n_masks=4) == (on, off)         # seeded masks
    plain = lab.fit(epochs=5)                                          # no dropout: one mode
    assert lab.dropout_loss_modes(plain, n_masks=2)[0] == pytest.approx(
        lab.dropout_loss_modes(plain, n_masks=2)[1], rel=1e-6)


def test_mc_dropout_scores():
    run = lab.fit(dropout=0.5, epochs=5)
    s = lab.mc_dropout_scores(run, n_samples=8)
    assert s["standard"]["acc"] == pytest.approx(run.val_acc)          # dropout off = eval mode
    assert s["mc"]["acc"] != s["standard"]["acc"] or s["mc"]["nll"] != s["standard"]["nll"]
    for k in ("standard", "mc"):
        assert 0 <= s[k]["ece"] <= 1 and s[k]["nll"] > 0
    assert s["std_wrong"] >= 0 and s["std_right"] >= 0
    assert lab.mc_dropout_scores(run, n_samples=8) == s                # seeded: reproducible


def test_eval_every_changes_only_when_validation_is_scored():
    every = lab.fit(epochs=12, eval_every=5)
    each = lab.fit(epochs=12, eval_every=1)
    assert every.model is not each.model
    assert every.history.train_loss == each.history.train_loss     # same trajectory
    assert list(every.val_epochs) == [1, 5, 10, 12]                  # first, every 5th, last
    assert every.history.val_loss == [each.history.val_loss[e - 1] for e in every.val_epochs]
    stopped = lab.fit(patience=3, epochs=40, eval_every=5)           # early stopping: every epoch
    assert len(stopped.history.val_loss) == stopped.history.epochs_run


def test_seed_draws_the_training_points_but_not_validation():
    a, b = lab.fit(epochs=3, seed=0), lab.fit(epochs=3, seed=1)
    assert a.data is lab.noisy_moons() and not torch.equal(a.data.X_train, b.data.X_train)
    assert torch.equal(a.data.X_val, b.data.X_val) and torch.equal(a.data.X_test, b.data.X_test)
    assert len(b.data.y_train) == 40 and b.data.y_train.float().mean().item() == 0.5


def test_early_stopping_on_accuracy():
    run = lab.fit(patience=5, monitor="val_acc", epochs=60)
    best = run.extra["best_epoch"]
    assert run.history.val_acc[best - 1] == max(run.history.val_acc[:best])
    assert run.val_acc == pytest.approx(run.history.val_acc[best - 1])   # best weights restored


def test_paired_differences():
    class R:
        def __init__(self, t):
            self.test_acc = t
    m, sd, ahead = lab.paired_differences([R(0.9), R(0.8), R(0.85)], [R(0.8), R(0.8), R(0.9)])
    assert m == pytest.approx(0.05 / 3) and ahead == 1
    assert sd == pytest.approx(lab.mean_sd([0.1, 0.0, -0.05])[1])
    with pytest.raises(ValueError):
        lab.paired_differences([R(0.9)], [R(0.8), R(0.7)])


def test_widget_legend_says_dropout_on_only_with_dropout():
    box = lab.explore_regularization(epochs=3, l2_grid=(0.0, 0.01), dropout_grid=(0.0, 0.5))
    _, p_slider = box.children[0].children
    legend = box.figure.axes[1].get_legend()
    assert legend.get_texts()[0].get_text() == "train"
    p_slider.value = 0.5
    assert legend.get_texts()[0].get_text() == "train (dropout on)"
    p_slider.value = 0.0
    assert legend.get_texts()[0].get_text() == "train"


def _reference_fit(n_train=40, l2=0.0, l1=0.0, l1_proximal=True, dropout=0.0, max_norm=None,
                   patience=None, monitor="val_loss", epochs=25, eval_every=5, seed=0):
    """One run the plain way: nncourse.training.train with the regularization callbacks."""
    from nncourse import regularization as reg
    from nncourse.models import make_mlp
    from nncourse.training import Callback, evaluate, train

    class Every(Callback):
        def on_epoch_end(self, model, epoch, history):
            if epoch % eval_every == 0 or epoch in (1, epochs):
                loss, acc = evaluate(model, data.X_val, data.y_val)
                history.val_loss.append(loss)
                history.val_acc.append(acc)

    data = lab.noisy_moons(n_train, seed=0, sample=seed)
    model = make_mlp(2, 1, width=64, depth=3, init="he_normal", dropout=dropout, seed=seed)
    callbacks = [Every()]
    if l2:
        callbacks.append(reg.WeightPenalty("l2", l2))
    if l1:
        callbacks.append(reg.WeightPenalty("l1", l1, proximal=l1_proximal))
    if max_norm is not None:
        callbacks.append(reg.MaxNorm(max_norm))
    if patience:
        callbacks.append(reg.EarlyStopping(patience=patience, monitor=monitor))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)                   # dropout masks come from the global generator
        history = train(model, data, epochs=epochs, lr=0.1, momentum=0.9, clip_norm=5.0,
                        batch_size=None, callbacks=callbacks, seed=seed, progress=False,
                        evaluate_val=False)
    return model, history


BATCH_CASES = [dict(), dict(dropout=0.5, seed=2), dict(l2=0.01, l1=0.003, l1_proximal=False),
               dict(l1=0.01), dict(max_norm=0.5, dropout=0.3, seed=1),
               dict(patience=3, monitor="val_acc", eval_every=1, seed=3), dict(n_train=80)]


def test_batched_runs_are_bit_for_bit_the_plain_training_loop():
    lab.clear_cache()
    specs = [{k: v for k, v in case.items()} for case in BATCH_CASES]
    runs = lab.fit_many([dict(s, epochs=25) for s in specs])       # two batches (n_train)
    alone = lab.fit(epochs=25, dropout=0.5, seed=2, eval_every=0)
    assert alone.model is runs[1].model                            # cached across cadences
    for case, run in zip(BATCH_CASES, runs):
        model, history = _reference_fit(**case)
        assert run.history.train_loss == history.train_loss, case
        assert run.history.train_acc == history.train_acc, case
        assert run.history.val_loss == history.val_loss, case
        assert run.history.val_acc == history.val_acc, case
        for a, b in zip(run.model.parameters(), model.parameters()):
            assert torch.equal(a, b), case
        if case.get("patience"):
            assert run.extra["best_epoch"] == history.extra["best_epoch"]
            assert run.extra["stopped_epoch"] == history.extra["stopped_epoch"]


def test_a_run_does_not_depend_on_its_batch():
    lab.clear_cache()
    mixed = lab.fit_many([dict(dropout=0.5, seed=2, epochs=15), dict(l1=0.01, epochs=15),
                          dict(max_norm=1.0, seed=4, epochs=15)])
    lab.clear_cache()
    alone = lab.fit(dropout=0.5, seed=2, epochs=15)
    assert alone.history.train_loss == mixed[0].history.train_loss
    assert all(torch.equal(a, b) for a, b in zip(alone.model.parameters(),
                                                  mixed[0].model.parameters()))


def test_fit_settings_and_bad_settings():
    groups = lab.fit_settings({"a": dict(l2=0.01, epochs=3), "b": dict(dropout=0.3, epochs=3)},
                              seeds=(0, 1))
    assert [[r.name for r in g] for g in groups] == [["a", "a"], ["b", "b"]]
    with pytest.raises(TypeError, match="unknown setting"):
        lab.fit_many([dict(lr=0.1)])
    with pytest.raises(ValueError, match="monitor"):
        lab.fit(patience=3, monitor="loss")
