"""nncourse.augmentation: the transforms are the ones their names promise."""

import pytest
import torch

from nncourse import augmentation as A
from nncourse.data import load_digits


def _images(n=5, seed=0):
    return torch.rand(n, 64, generator=torch.Generator().manual_seed(seed))


def test_identity_and_shapes():
    x = _images()
    assert torch.allclose(A.affine(x), x, atol=1e-6)
    assert A.rotate(x, 10.0).shape == (5, 64)
    assert A.rotate(A.as_images(x), 10.0).shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match=r"images must have shape \(n, 64\)"):
        A.rotate(torch.zeros(3, 10), 5.0)


def test_whole_pixel_shift_equals_roll_with_zero_fill():
    img = A.as_images(_images())
    right = torch.roll(img, 1, dims=3)
    right[..., 0] = 0
    assert torch.allclose(A.as_images(A.translate(img, 1, 0)), right, atol=1e-6)
    up = torch.roll(img, -2, dims=2)
    up[..., -2:, :] = 0
    assert torch.allclose(A.translate(img, 0, -2), up, atol=1e-6)


def test_quarter_turn_equals_rot90_counter_clockwise():
    img = A.as_images(_images())
    assert torch.allclose(A.rotate(img, 90.0), torch.rot90(img, 1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(A.rotate(img, -90.0), torch.rot90(img, -1, dims=(2, 3)), atol=1e-5)


def test_per_image_parameters():
    x = _images(3)
    out = A.affine(x, degrees=torch.tensor([0.0, 90.0, 0.0]), dx=torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(out[0], x[0], atol=1e-6)
    assert torch.allclose(out[1], A.rotate(x[1:2], 90.0)[0], atol=1e-6)
    assert torch.allclose(out[2], A.translate(x[2:3], 1, 0)[0], atol=1e-6)
    with pytest.raises(ValueError, match="one value or 3 values"):
        A.affine(x, degrees=torch.zeros(2))


def test_noise_statistics_and_clipping():
    x = torch.full((200, 64), 0.5)
    out = A.add_noise(x, 0.1, torch.Generator().manual_seed(0))
    assert abs((out - x).std().item() - 0.1) < 0.005 and abs((out - x).mean().item()) < 0.005
    assert A.add_noise(torch.ones(10, 64), 0.5).max().item() <= 1.0


def test_random_augment_is_seeded_and_label_preserving_dataset():
    d = load_digits().subset_train(30)
    a = A.augment_dataset(d, copies=2, seed=3)
    b = A.augment_dataset(d, copies=2, seed=3)
    assert len(a.y_train) == 90 and torch.equal(a.X_train, b.X_train)
    assert torch.equal(a.y_train, d.y_train.repeat(3)) and torch.equal(a.X_train[:30], d.X_train)
    assert torch.equal(a.X_val, d.X_val)                         # validation untouched
    assert not torch.equal(a.X_train[30:60], d.X_train)
    assert 0.0 <= a.X_train.min().item() and a.X_train.max().item() <= 1.0
    # small transforms: a variant stays closer to its own image than to another digit's
    own = (a.X_train[30:60] - d.X_train).norm(dim=1)
    other = (a.X_train[30:60] - d.X_train.roll(1, 0)).norm(dim=1)
    assert (own < other).float().mean().item() > 0.8


def test_flip_mirrors_and_180_degrees_is_both_flips():
    x = _images()
    img = A.as_images(x)
    assert torch.equal(A.as_images(A.flip(x)), img.flip(3))          # left-right
    assert torch.equal(A.as_images(A.flip(x, horizontal=False)), img.flip(2))
    assert torch.equal(A.flip(A.flip(x)), x)                         # an involution
    both = A.flip(A.flip(x), horizontal=False)
    assert torch.allclose(A.rotate(x, 180.0), both, atol=1e-5)       # 6 <-> 9


def test_random_crop_is_a_whole_pixel_shift_with_zero_fill():
    x = _images(20)
    gen = torch.Generator().manual_seed(0)
    out = A.random_crop(x, padding=1, generator=gen)
    assert out.shape == x.shape
    gen = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 3, (20, 2), generator=gen)
    for i, (a, b) in enumerate(offsets.tolist()):
        # offset (a, b) in the padded image = a shift by (1 - b, 1 - a) pixels (right, down)
        want = A.translate(x[i:i + 1], 1 - b, 1 - a)
        assert torch.allclose(out[i:i + 1], want, atol=1e-6)
    assert torch.equal(A.random_crop(x, padding=0), x)
    with pytest.raises(ValueError, match="random_crop: padding must be a non-negative integer"):
        A.random_crop(x, padding=-1)
