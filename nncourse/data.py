"""The course's datasets: offline, small, as torch tensors with fixed seeded splits.

Everything comes from what scikit-learn ships or generates, so nothing is downloaded. Each loader
returns a :class:`Dataset` with ``X_train, y_train, X_val, y_val, X_test, y_test``; features are
``float32``, labels are class indices (``int64``). The split depends only on ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split

__all__ = ["Dataset", "load_moons", "load_circles", "load_digits", "load_breast_cancer",
           "make_split", "load_wine"]


@dataclass(frozen=True)
class Dataset:
    """A dataset split into train / validation / test tensors."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    feature_names: tuple[str, ...] = field(default=(), repr=False)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: {self.n_features} features, {self.n_classes} classes, "
                f"train={len(self.y_train)}, val={len(self.y_val)}, test={len(self.y_test)})")

    def subset_train(self, n: int, seed: int = 0) -> Dataset:
        """The same dataset with only ``n`` training examples (stratified, seeded)."""
        if not 0 < n <= len(self.y_train):
            raise ValueError(f"n must be in [1, {len(self.y_train)}], got {n}")
        if n == len(self.y_train):
            return self
        idx, _ = train_test_split(np.arange(len(self.y_train)), train_size=n, random_state=seed,
                                  stratify=self.y_train.numpy())
        idx = torch.from_numpy(np.sort(idx))
        return Dataset(self.name, self.X_train[idx], self.y_train[idx], self.X_val, self.y_val,
                       self.X_test, self.y_test, self.n_classes, self.feature_names)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < f < 1:
            raise ValueError(f"{name} must be in (0, 1), got {f!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction + test_fraction must be below 1, got "
                         f"{val_fraction} + {test_fraction}")


def make_split(name: str, X: np.ndarray, y: np.ndarray, *, seed: int = 0,
               val_fraction: float = 0.2, test_fraction: float = 0.2, standardize: bool = False,
               feature_names=()) -> Dataset:
    """Split arrays into a stratified, seeded :class:`Dataset`.

    With ``standardize=True`` each feature is shifted and scaled with the *training* mean and
    standard deviation only, so nothing about validation or test data leaks into training.
    """
    _check_fractions(val_fraction, test_fraction)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=y)
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed,
        stratify=y_rest)
    if standardize:
        mean, std = X_train.mean(0), X_train.std(0)
        std[std == 0] = 1.0
        X_train, X_val, X_test = ((a - mean) / std for a in (X_train, X_val, X_test))

    def t(a, dtype):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

    return Dataset(name, t(X_train, torch.float32), t(y_train, torch.int64),
                   t(X_val, torch.float32), t(y_val, torch.int64),
                   t(X_test, torch.float32), t(y_test, torch.int64),
                   n_classes=int(len(np.unique(y))), feature_names=tuple(feature_names))


def load_moons(n_samples: int = 1000, noise: float = 0.2, seed: int = 0, **split) -> Dataset:
    """Two interleaving half-moons in 2-D (binary)."""
    X, y = skd.make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return make_split("moons", X, y, seed=seed, **split)


def load_circles(n_samples: int = 1000, noise: float = 0.1, factor: float = 0.5, seed: int = 0,
                 **split) -> Dataset:
    """A small circle inside a large one in 2-D (binary); not linearly separable."""
    X, y = skd.make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    return make_split("circles", X, y, seed=seed, **split)


def load_digits(seed: int = 0, **split) -> Dataset:
    """8x8 handwritten digits (1797 images, 10 classes); pixels scaled to [0, 1], flattened to 64.

    Use ``X.reshape(-1, 1, 8, 8)`` to get images back.
    """
    d = skd.load_digits()
    return make_split("digits", d.data / 16.0, d.target, seed=seed, **split)


def load_breast_cancer(standardize: bool = True, seed: int = 0, **split) -> Dataset:
    """Wisconsin breast cancer (569 samples, 30 features, binary).

    The raw features span four orders of magnitude (areas ~1000, smoothness ~0.1): load with
    ``standardize=False`` to see what that does to training.
    """
    d = skd.load_breast_cancer()
    name = "breast_cancer" + ("" if standardize else "_raw")
    return make_split(name, d.data, d.target, seed=seed, standardize=standardize,
                      feature_names=d.feature_names, **split)


def load_wine(standardize: bool = True, seed: int = 0, **split) -> Dataset:
    """Wine recognition (178 samples, 13 chemical measurements, 3 cultivars).

    Like breast cancer, the raw features live on very different scales (proline ~750, hue ~1):
    ``standardize=False`` keeps them raw.
    """
    d = skd.load_wine()
    name = "wine" + ("" if standardize else "_raw")
    return make_split(name, d.data, d.target, seed=seed, standardize=standardize,
                      feature_names=d.feature_names, **split)
