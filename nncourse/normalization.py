"""Normalization from the formulas: input standardization, batch norm, layer norm, BN folding.

* :class:`Standardizer` -- shift and scale each input feature with statistics of the *training*
  split only (``fit`` / ``transform``), as ``sklearn.preprocessing.StandardScaler`` does;
* :class:`BatchNorm1d` -- Ioffe & Szegedy (2015), with exactly ``torch.nn.BatchNorm1d``'s
  semantics (same parameters, buffers and ``state_dict`` keys; tested equal in float64);
* :class:`LayerNorm` -- Ba, Kiros & Hinton (2016), equal to ``torch.nn.LayerNorm``;
* :func:`fold_batchnorm` -- the inference-time fold of an eval-mode batch norm into the Linear
  layer before it.

Left out, because the course's networks are MLPs: the 2-D/3-D variants (``BatchNorm2d`` normalizes
each channel over batch *and* pixels -- the same code with more reduced axes), ``GroupNorm``, and
devices (everything here runs on the CPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nncourse._validate import check_int, check_number

__all__ = ["Standardizer", "BatchNorm1d", "LayerNorm", "fold_batchnorm"]


# --- input standardization ------------------------------------------------------------------

class Standardizer:
    r"""Per-feature standardization :math:`x' = (x - \mu) / \sigma`, fitted on training data.

    ``mean_`` and ``scale_`` are the training split's mean and (population, ``ddof=0``) standard
    deviation, computed in float64. Fit on the training split only, then transform every split with
    the *same* statistics: validation and test data must not influence anything the model (or its
    preprocessing) learns from.

    **Constant features.** A feature that is constant on the training split (its maximum equals
    its minimum, e.g. the always-white corner pixels of the digits) has no spread to divide by: it
    is centred but not scaled (``scale_ = 1``), so it is exactly 0 on the training split and keeps
    its raw offset elsewhere -- scikit-learn's ``StandardScaler`` rule.

    ``transform`` returns the input's type: a torch tensor (same dtype) for a tensor, a float64
    NumPy array otherwise.

    Examples
    --------
    >>> s = Standardizer().fit(data.X_train)
    >>> X_train, X_val = s.transform(data.X_train), s.transform(data.X_val)
    """

    def __init__(self):
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.constant_: np.ndarray | None = None

    @staticmethod
    def _as_2d(X, what: str) -> np.ndarray:
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"Standardizer.{what}: X must be a 2-D array or tensor of numbers, "
                            f"got {type(X).__name__}") from None
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"Standardizer.{what}: X must be 2-D (samples, features) with at "
                             f"least one row, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"Standardizer.{what}: X contains NaN or infinite values")
        return arr

    def fit(self, X) -> Standardizer:
        """Learn each feature's mean and standard deviation from ``X`` (the training split)."""
        arr = self._as_2d(X, "fit")
        self.constant_ = arr.max(0) == arr.min(0)
        # the constant's own value, so the training split maps to exactly 0 there
        self.mean_ = np.where(self.constant_, arr[0], arr.mean(0))
        self.scale_ = np.where(self.constant_, 1.0, arr.std(0))
        return self

    def transform(self, X):
        """``(X - mean_) / scale_`` with the fitted statistics; same type as ``X``."""
        if self.mean_ is None:
            raise RuntimeError("Standardizer.transform: call fit(X_train) first")
        arr = self._as_2d(X, "transform")
        if arr.shape[1] != len(self.mean_):
            raise ValueError(f"Standardizer.transform: X has {arr.shape[1]} features, the "
                             f"Standardizer was fitted on {len(self.mean_)}")
        out = (arr - self.mean_) / self.scale_
        if isinstance(X, torch.Tensor):
            dtype = X.dtype if X.is_floating_point() else torch.get_default_dtype()
            return torch.as_tensor(out, dtype=dtype)
        return out

    def fit_transform(self, X):
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)


# --- batch norm -----------------------------------------------------------------------------

def _reduce_dims(x: torch.Tensor, num_features: int, cls: str) -> tuple[int, ...]:
    if x.dim() not in (2, 3):
        raise ValueError(f"{cls}: expected 2-D (batch, features) or 3-D (batch, features, length) "
                         f"input, got shape {tuple(x.shape)}")
    if x.shape[1] != num_features:
        raise ValueError(f"{cls}: expected {num_features} features in dimension 1, got input of "
                         f"shape {tuple(x.shape)}")
    return (0,) if x.dim() == 2 else (0, 2)


class BatchNorm1d(nn.Module):
    r"""Batch normalization over a mini-batch (Ioffe & Szegedy, 2015), from the formulas.

    For each feature :math:`j`, in training mode (or without running statistics):

    .. math::
        \mu_B = \frac1m \sum_i x_{ij}, \qquad \sigma_B^2 = \frac1m \sum_i (x_{ij} - \mu_B)^2,
        \qquad y_{ij} = \gamma_j \frac{x_{ij} - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta_j

    (the *biased* variance normalizes), and the running statistics are updated with the
    **unbiased** variance :math:`\frac{m}{m-1}\sigma_B^2`:

    .. math::
        \hat\mu \leftarrow (1 - \alpha)\hat\mu + \alpha\mu_B, \qquad
        \hat\sigma^2 \leftarrow (1 - \alpha)\hat\sigma^2 + \alpha\frac{m}{m-1}\sigma_B^2

    with :math:`\alpha` = ``momentum`` (torch's convention: the weight of the *new* batch; Keras's
    ``momentum=0.99`` is the weight of the old average, i.e. torch's 0.01), or
    :math:`\alpha = 1/t` after :math:`t` batches when ``momentum=None`` (a cumulative average).
    In eval mode :math:`\hat\mu, \hat\sigma^2` replace the batch statistics: the output of one
    example no longer depends on the rest of the batch.

    Same constructor, parameters (``weight`` = :math:`\gamma`, ``bias`` = :math:`\beta`), buffers
    (``running_mean``, ``running_var``, ``num_batches_tracked``) and ``state_dict`` keys as
    ``torch.nn.BatchNorm1d`` (including torch 2.13's keyword ``bias=False``: no :math:`\beta`),
    so one loads the other's state. Input ``(N, C)`` or ``(N, C, L)``
    (then statistics are over ``N`` and ``L``). Example: ``bn = BatchNorm1d(64); y = bn(x)``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype: torch.dtype | None = None, *, bias: bool = True):
        super().__init__()
        fn = "BatchNorm1d"
        self.num_features = check_int(num_features, "num_features", fn=fn)
        self.eps = check_number(eps, "eps", 0, low_open=True, fn=fn)
        self.momentum = (None if momentum is None
                         else check_number(momentum, "momentum", 0, 1, fn=fn))
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        kw = {"device": device, "dtype": dtype}
        if self.affine:
            self.weight = nn.Parameter(torch.ones(num_features, **kw))
            if bias:
                self.bias = nn.Parameter(torch.zeros(num_features, **kw))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **kw))
            self.register_buffer("running_var", torch.ones(num_features, **kw))
            self.register_buffer("num_batches_tracked",
                                 torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batch tracked."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = _reduce_dims(x, self.num_features, "BatchNorm1d")
        use_batch_stats = self.training or not self.track_running_stats
        shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcast per feature
        if use_batch_stats:
            m = x.numel() // self.num_features
            if m == 1:
                raise ValueError(
                    f"BatchNorm1d: expected more than 1 value per channel when training, got "
                    f"input size {tuple(x.shape)} -- the variance of a single value is 0, so "
                    "every output would be beta; use a batch of 2 or more, or model.eval() to "
                    "use the running statistics")
            mean = x.mean(dims)
            var = ((x - mean.reshape(shape)) ** 2).mean(dims)  # biased: normalizes this batch
            if self.training and self.track_running_stats:
                self._update_running_stats(mean.detach(), var.detach() * m / (m - 1))
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        if self.weight is not None:
            y = y * self.weight.reshape(shape)
        if self.bias is not None:
            y = y + self.bias.reshape(shape)
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        alpha = (1.0 / self.num_batches_tracked.item() if self.momentum is None
                 else self.momentum)
        self.running_mean.mul_(1 - alpha).add_(alpha * mean)
        self.running_var.mul_(1 - alpha).add_(alpha * unbiased_var)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


# --- layer norm -----------------------------------------------------------------------------

class LayerNorm(nn.Module):
    r"""Layer normalization (Ba, Kiros & Hinton, 2016): normalize each *example* over its last
    dimensions, :math:`y = \gamma \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta` with
    :math:`\mu, \sigma^2` (biased) over ``normalized_shape``.

    No batch statistics, no running buffers: the output of an example never depends on the rest
    of the batch, and train and eval mode compute the same thing -- so it works with a batch of 1.
    Same arguments and parameters as ``torch.nn.LayerNorm``. Example: ``LayerNorm(64)(x)``.
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device=None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        fn = "LayerNorm"
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape = tuple(check_int(s, "normalized_shape", fn=fn) for s in shape)
        if not self.normalized_shape:
            raise ValueError("LayerNorm: normalized_shape must name at least one dimension")
        self.eps = check_number(eps, "eps", 0, low_open=True, fn=fn)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            kw = {"device": device, "dtype": dtype}
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, **kw))
            if bias:
                self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **kw))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.normalized_shape)
        if tuple(x.shape[x.dim() - k:]) != self.normalized_shape or x.dim() < k:
            raise ValueError(f"LayerNorm: the input's last dimensions must be "
                             f"{self.normalized_shape}, got input of shape {tuple(x.shape)}")
        dims = tuple(range(-k, 0))
        mean = x.mean(dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dims, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


# --- folding --------------------------------------------------------------------------------

_BATCH_NORMS = (nn.BatchNorm1d, BatchNorm1d)


@torch.no_grad()
def fold_batchnorm(linear: nn.Linear, bn: nn.Module) -> nn.Linear:
    r"""One ``nn.Linear`` equal to ``bn(linear(x))`` with ``bn`` in **eval** mode.

    In eval mode batch norm is a fixed per-feature affine map,
    :math:`y = s \odot (Wx + b - \hat\mu) + \beta` with
    :math:`s = \gamma/\sqrt{\hat\sigma^2+\epsilon}`, so :math:`W' = \mathrm{diag}(s)\,W` and
    :math:`b' = s \odot (b - \hat\mu) + \beta`: one layer less at inference time. (In training
    mode BN uses the batch's statistics and cannot be folded.) ``linear`` and ``bn`` are not
    changed; the result has ``linear``'s dtype.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"fold_batchnorm: linear must be an nn.Linear, got {type(linear).__name__}")
    if not isinstance(bn, _BATCH_NORMS):
        raise TypeError("fold_batchnorm: bn must be an nn.BatchNorm1d (or nncourse's "
                        f"BatchNorm1d), got {type(bn).__name__}")
    if bn.num_features != linear.out_features:
        raise ValueError(f"fold_batchnorm: bn normalizes {bn.num_features} features but the "
                         f"Linear layer has {linear.out_features} outputs")
    if bn.running_mean is None:
        raise ValueError("fold_batchnorm: bn has no running statistics "
                         "(track_running_stats=False), so it normalizes with each batch's own "
                         "statistics even in eval mode: there is no fixed map to fold")
    dtype = linear.weight.dtype
    scale = 1 / torch.sqrt(bn.running_var.to(dtype) + bn.eps)
    shift = torch.zeros_like(scale)
    if bn.weight is not None:
        scale = scale * bn.weight.to(dtype)
    if bn.bias is not None:
        shift = bn.bias.to(dtype)
    bias = linear.bias if linear.bias is not None else torch.zeros_like(scale)
    folded = nn.Linear(linear.in_features, linear.out_features, dtype=dtype)
    folded.weight.copy_(linear.weight * scale[:, None])
    folded.bias.copy_((bias - bn.running_mean.to(dtype)) * scale + shift)
    return folded

