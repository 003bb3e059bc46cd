"""nncourse.clipping: from-scratch clipping equals torch.nn.utils' on random inputs."""

import math

import pytest
import torch

from nncourse import clipping
from nncourse.models import make_mlp
from nncourse.training import train


def _params(seed, shapes=((3, 4), (4,), (2, 3, 5), (1,)), scale=10.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype))
        p.grad = torch.randn(shape, generator=gen, dtype=dtype) * scale
        params.append(p)
    return params


def _twins(seed, **kw):
    a, b = _params(seed, **kw), _params(seed, **kw)
    return a, b


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e4])
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(seed, max_norm, norm_type):
    ours, theirs = _twins(seed)
    total = clipping.clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    torch.testing.assert_close(total, expected)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad)


def test_clip_grad_norm_float64_and_single_tensor():
    ours, theirs = _twins(7, shapes=((5, 5),), dtype=torch.float64)
    total = clipping.clip_grad_norm_(ours[0], 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs[0], 1.0)
    assert total.dtype == torch.float64
    torch.testing.assert_close(total, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[0].grad, theirs[0].grad, rtol=0, atol=1e-15)


def test_clip_grad_norm_is_global_not_per_tensor():
    ours = _params(3, shapes=((10,), (10,)), scale=1.0)
    ours[1].grad.mul_(100)  # one big tensor, one small: both shrink by the same factor
    before = [p.grad.clone() for p in ours]
    clipping.clip_grad_norm_(ours, 1.0)
    ratios = [(p.grad / b).mean().item() for p, b in zip(ours, before)]
    assert ratios[0] == pytest.approx(ratios[1], rel=1e-6)
    assert torch.linalg.vector_norm(torch.cat([p.grad for p in ours])).item() == pytest.approx(
        1.0, rel=1e-5)


def test_clip_grad_norm_zero_and_missing_grads():
    ours, theirs = _twins(0, scale=0.0)
    ours[1].grad = theirs[1].grad = None
    total = clipping.clip_grad_norm_(ours, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert total.item() == expected.item() == 0.0
    assert ours[1].grad is None
    for p in ours[:1] + ours[2:]:
        assert torch.equal(p.grad, torch.zeros_like(p.grad))  # no NaN from 0/0
    assert clipping.clip_grad_norm_([torch.nn.Parameter(torch.ones(2))], 1.0).item() == 0.0


def test_clip_grad_norm_below_threshold_leaves_grads_unchanged():
    ours = _params(5, scale=0.01)
    before = [p.grad.clone() for p in ours]
    clipping.clip_grad_norm_(ours, 100.0)
    for p, b in zip(ours, before):
        assert torch.equal(p.grad, b)


def test_clip_grad_norm_nonfinite():
    ours, theirs = _twins(1)
    ours[0].grad[0, 0] = theirs[0].grad[0, 0] = float("nan")
    assert torch.isnan(clipping.clip_grad_norm_(ours, 1.0))
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, equal_nan=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        clipping.clip_grad_norm_(_params(1, shapes=((2,),)) + [clipping.with_grad([math.inf])],
                                 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("clip_value", [0.1, 1.0, 50.0])
def test_clip_grad_value_matches_torch(seed, clip_value):
    ours, theirs = _twins(seed)
    ours[2].grad = theirs[2].grad = None
    assert clipping.clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for a, b in zip(ours, theirs):
        if b.grad is None:
            assert a.grad is None
        else:
            assert torch.equal(a.grad, b.grad)


def test_classic_example():
    g = torch.tensor([0.9, 100.0], dtype=torch.float64)
    assert clipping.clip_by_value(g, 1.0).tolist() == [0.9, 1.0]
    by_norm = clipping.clip_by_norm(g, 1.0)
    assert [round(v, 8) for v in by_norm.tolist()] == [0.00899964, 0.9999595]
    p = clipping.with_grad(g)
    total = clipping.clip_grad_norm_(p, 1.0)
    assert total.item() == pytest.approx(math.sqrt(0.81 + 1e4))
    torch.testing.assert_close(p.grad, by_norm, rtol=2e-8, atol=0)  # torch's 1e-6 epsilon
    assert torch.equal(clipping.clip_by_norm(by_norm, 5.0), by_norm)  # short vectors unchanged


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1", None, True])
def test_arguments_are_validated(bad):
    p = _params(0)
    with pytest.raises(ValueError, match="must be a positive number"):
        clipping.clip_grad_norm_(p, bad)
    with pytest.raises(ValueError, match="must be a positive number"):
        clipping.clip_grad_value_(p, bad)


def test_callback_clips_like_torch_in_training():
    data = (torch.randn(64, 4, generator=torch.Generator().manual_seed(0)),
            torch.arange(64) % 2)
    a = make_mlp(4, 1, width=8, depth=2, init="he_normal", init_scale=3.0, seed=0)
    b = make_mlp(4, 1, width=8, depth=2, init="he_normal", init_scale=3.0, seed=0)
    cb = clipping.ClipGradients(0.5)
    ha = train(a, data, epochs=3, lr=0.1, batch_size=16, callbacks=[cb], progress=False)
    hb = train(b, data, epochs=3, lr=0.1, batch_size=16, clip_norm=0.5, progress=False)
    assert ha.train_loss == pytest.approx(hb.train_loss, rel=1e-6)
    assert len(cb.total_norms) == 12 and ha.extra["total_grad_norms"] == cb.total_norms
    assert max(cb.total_norms) > 0.5  # clipping acted
    cv = clipping.ClipGradients(0.01, by="value")
    hc = train(make_mlp(4, 1, width=8, depth=2, seed=0), data, epochs=1, batch_size=16,
               callbacks=[cv], progress=False)
    hd = train(make_mlp(4, 1, width=8, depth=2, seed=0), data, epochs=1, batch_size=16,
               clip_value=0.01, progress=False)
    assert hc.train_loss == pytest.approx(hd.train_loss, rel=1e-6)
    with pytest.raises(ValueError, match="by must be"):
        clipping.ClipGradients(1.0, by="both")
