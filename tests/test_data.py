import numpy as np
import pytest
import torch

from nncourse import data


@pytest.mark.parametrize("loader, n_features, n_classes, n_total", [
    (data.load_moons, 2, 2, 1000), (data.load_circles, 2, 2, 1000),
    (data.load_digits, 64, 10, 1797), (data.load_breast_cancer, 30, 2, 569),
    (data.load_wine, 13, 3, 178),
])
def test_loaders_give_disjoint_typed_splits(loader, n_features, n_classes, n_total):
    d = loader()
    assert d.n_features == n_features and d.n_classes == n_classes
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == n_total
    for X, y in ((d.X_train, d.y_train), (d.X_val, d.y_val), (d.X_test, d.y_test)):
        assert (X.dtype == torch.float32 and y.dtype == torch.int64
                and X.shape == (len(y), n_features))
    rows = lambda X: {tuple(r) for r in X.numpy().round(6).tolist()}  # noqa: E731
    assert not rows(d.X_train) & rows(d.X_test)
    assert not rows(d.X_val) & rows(d.X_test)


def test_split_is_deterministic_and_depends_on_seed():
    a, b, c = data.load_moons(seed=0), data.load_moons(seed=0), data.load_moons(seed=1)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.X_train, c.X_train)


def test_splits_are_stratified():
    d = data.load_digits()
    for y in (d.y_train, d.y_val, d.y_test):
        counts = torch.bincount(y, minlength=10).float() / len(y)
        assert counts.min() > 0.08 and counts.max() < 0.12


def test_standardization_uses_training_statistics_only():
    d = data.load_breast_cancer(standardize=True)
    assert torch.allclose(d.X_train.mean(0), torch.zeros(30), atol=1e-5)
    assert torch.allclose(d.X_train.std(0, unbiased=False), torch.ones(30), atol=1e-4)
    assert d.X_val.mean(0).abs().max() > 1e-3  # validation is not re-centred on itself
    raw = data.load_breast_cancer(standardize=False)
    assert raw.X_train.max() > 1000  # areas: the raw scale problem chapter 05 shows


def test_digits_are_scaled_to_unit_interval():
    d = data.load_digits()
    assert d.X_train.min() >= 0 and d.X_train.max() <= 1


def test_subset_train():
    d = data.load_digits()
    s = d.subset_train(100)
    assert len(s.y_train) == 100 and torch.equal(s.X_val, d.X_val)
    assert set(s.y_train.tolist()) == set(range(10))
    with pytest.raises(ValueError, match=r"n must be in \[1, 1077\], got 0"):
        d.subset_train(0)


@pytest.mark.parametrize("kwargs, message", [
    ({"val_fraction": 0}, r"val_fraction must be in \(0, 1\), got 0"),
    ({"test_fraction": 1.2}, r"test_fraction must be in \(0, 1\), got 1.2"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction must be below 1"),
])
def test_bad_fractions(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_moons(**kwargs)


def test_make_split_from_arrays():
    X = np.arange(40, dtype=float).reshape(20, 2)
    y = np.array([0, 1] * 10)
    d = data.make_split("toy", X, y, val_fraction=0.25, test_fraction=0.25)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (10, 5, 5)
    assert "toy" in repr(d)


def test_wine_raw_features_span_orders_of_magnitude():
    raw, std = data.load_wine(standardize=False), data.load_wine()
    assert raw.name == "wine_raw" and raw.X_train.max() > 1000   # proline
    assert torch.allclose(std.X_train.mean(0), torch.zeros(13), atol=1e-5)
