"""Data augmentation for small images (the 8x8 digits), written with torch ops only.

An augmented image is a new training example that keeps its label: a digit shifted by a pixel,
turned by ten degrees or sprinkled with noise is still the same digit. Functions take images of
shape ``(n, 64)`` (flattened, as :func:`nncourse.data.load_digits` gives them) or ``(n, 1, h, w)``
and return the same shape.

* :func:`translate`, :func:`rotate` -- one affine resampling (``F.affine_grid`` +
  ``F.grid_sample``, bilinear, zeros outside the image);
* :func:`flip` -- a mirror image (``torch.flip``): right for most photos, wrong for digits;
* :func:`random_crop` -- pad with zeros, then cut a window at a random offset (whole-pixel shifts);
* :func:`add_noise` -- Gaussian pixel noise, clipped to the pixel range;
* :func:`random_augment` -- a random shift, rotation and noise per image;
* :func:`augment_dataset` -- the training set plus ``copies`` augmented variants of each image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nncourse._validate import check_int
from nncourse.data import Dataset

__all__ = ["as_images", "affine", "translate", "rotate", "flip", "random_crop", "add_noise",
           "random_augment", "augment_dataset"]


def as_images(x: torch.Tensor, size: int = 8) -> torch.Tensor:
    """``(n, size*size)`` or ``(n, 1, size, size)`` -> ``(n, 1, size, size)`` (a view)."""
    if x.ndim == 2 and x.shape[1] == size * size:
        return x.reshape(-1, 1, size, size)
    if x.ndim == 4 and x.shape[1] == 1:
        return x
    raise ValueError(f"images must have shape (n, {size * size}) or (n, 1, h, w), got "
                     f"{tuple(x.shape)}")


def _like(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return out.reshape(x.shape)


def _per_image(value, n: int) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.ndim == 0:
        return t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"expected one value or {n} values (one per image), got shape "
                         f"{tuple(t.shape)}")
    return t


def affine(x: torch.Tensor, degrees=0.0, dx=0.0, dy=0.0) -> torch.Tensor:
    """Rotate each image by ``degrees`` (counter-clockwise) about its centre, then shift it by
    ``(dx, dy)`` pixels (right, down). Scalars or one value per image; bilinear interpolation,
    zeros where the source falls outside the image."""
    img = as_images(x)
    n, _, h, w = img.shape
    a = _per_image(degrees, n) * (math.pi / 180)
    dx, dy = _per_image(dx, n), _per_image(dy, n)
    cos, sin = torch.cos(a), torch.sin(a)
    # affine_grid maps *output* coordinates (normalised to [-1, 1]) to where to sample the input,
    # so the matrix is the inverse transform: shift back, then rotate back.
    tx, ty = -2 * dx / w, -2 * dy / h
    theta = torch.stack([torch.stack([cos, -sin, cos * tx - sin * ty], 1),
                         torch.stack([sin, cos, sin * tx + cos * ty], 1)], 1)
    grid = F.affine_grid(theta.to(img.dtype), list(img.shape), align_corners=False)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _like(out, x)


def translate(x: torch.Tensor, dx=0, dy=0) -> torch.Tensor:
    """Shift images by ``dx`` pixels right and ``dy`` pixels down, filling with zeros."""
    return affine(x, 0.0, dx, dy)


def rotate(x: torch.Tensor, degrees) -> torch.Tensor:
    """Rotate images counter-clockwise by ``degrees`` about their centre."""
    return affine(x, degrees)


def flip(x: torch.Tensor, horizontal: bool = True) -> torch.Tensor:
    """Mirror images left-right (``horizontal=True``) or upside down: ``torch.flip`` on the
    width or height axis. A label-preserving change for a cat or a car; not for a digit (a
    mirrored 2, 3, 4, 7 is no digit, and flipping both ways -- a 180° turn -- makes a 6 a 9)."""
    img = as_images(x)
    return _like(torch.flip(img, dims=(3 if horizontal else 2,)), x)


def random_crop(x: torch.Tensor, padding: int = 1,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad each image with ``padding`` zero pixels on every side, then cut an image of the
    original size at a random offset -- torchvision's ``RandomCrop(size, padding)``: a random
    whole-pixel shift of up to ``padding`` pixels on each axis."""
    check_int(padding, "padding", low=0, fn="random_crop")
    img = as_images(x)
    n, _, h, w = img.shape
    padded = F.pad(img, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    out = torch.stack([padded[i, :, a:a + h, b:b + w]
                       for i, (a, b) in enumerate(offsets.tolist())])
    return _like(out, x)


def add_noise(x: torch.Tensor, std: float = 0.05, generator: torch.Generator | None = None,
              low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``std``, then clip to ``[low, high]``."""
    if not std >= 0:
        raise ValueError(f"std must be non-negative, got {std!r}")
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * std
    return (x + noise).clamp(low, high)


def random_augment(x: torch.Tensor, max_shift: float = 0.5, max_degrees: float = 15.0,
                   noise_std: float = 0.05, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """A random variant of each image: a shift uniform in ``[-max_shift, max_shift]`` pixels on
    each axis (fractions of a pixel are interpolated), a rotation uniform in
    ``[-max_degrees, max_degrees]``, then pixel noise of standard deviation ``noise_std``."""
    if not max_shift >= 0:
        raise ValueError(f"max_shift must be non-negative, got {max_shift!r}")
    if not max_degrees >= 0:
        raise ValueError(f"max_degrees must be non-negative, got {max_degrees!r}")
    n = as_images(x).shape[0]
    shifts = (torch.rand(2, n, generator=generator) * 2 - 1) * max_shift
    degrees = (torch.rand(n, generator=generator) * 2 - 1) * max_degrees
    out = affine(x, degrees, shifts[0], shifts[1])
    return add_noise(out, noise_std, generator) if noise_std > 0 else out.clamp(0.0, 1.0)


def augment_dataset(data: Dataset, copies: int = 5, seed: int = 0, **augment_kwargs) -> Dataset:
    """``data`` whose training set also holds ``copies`` random variants of every image.

    The variants are drawn once (offline augmentation), seeded; validation and test sets are
    untouched -- augmentation is for training only. ``augment_kwargs`` go to
    :func:`random_augment`.
    """
    check_int(copies, "copies", low=0, fn="augment_dataset")
    gen = torch.Generator().manual_seed(seed)
    xs = [data.X_train] + [random_augment(data.X_train, generator=gen, **augment_kwargs)
                           for _ in range(copies)]
    ys = [data.y_train] * (copies + 1)
    return Dataset(data.name + f"+aug{copies}", torch.cat(xs), torch.cat(ys), data.X_val,
                   data.y_val, data.X_test, data.y_test, data.n_classes, data.feature_names)
