"""The activation zoo: each function and its derivative, written out from the formula.

Every function takes a torch tensor (anything ``torch.as_tensor`` accepts is converted, as
``float32`` unless it is already floating point) and mirrors the ``torch.nn.functional`` function of
the same name -- same arguments, same defaults -- so a learner can switch to the real thing.
Each derivative is named ``<name>_grad`` and returns :math:`f'(x)` elementwise (what autograd
multiplies the incoming gradient by).

All of them are written to survive large inputs: no ``exp`` of a large positive number is ever
computed (``sigmoid``, ``tanh``, ``elu``, ``softplus``, ``softmax`` use the stable forms), so
``x = ±1e4`` gives finite values and finite derivatives, never NaN. They are built from
differentiable torch operations, so autograd also works through them.

:data:`ZOO` lists the elementwise activations with their derivative and their one parameter (if
any), for figures and the chapter's widget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nncourse._validate import check_number

__all__ = [
    "step", "step_grad", "identity", "identity_grad", "sigmoid", "sigmoid_grad", "tanh",
    "tanh_grad", "relu", "relu_grad", "leaky_relu", "leaky_relu_grad", "prelu", "prelu_grad",
    "prelu_grad_weight", "elu", "elu_grad", "selu", "selu_grad", "SELU_ALPHA", "SELU_SCALE",
    "gelu", "gelu_grad", "silu", "silu_grad", "swish", "swish_grad", "softplus", "softplus_grad",
    "softmax", "softmax_jacobian", "log_softmax", "argmax", "Activation", "ZOO", "ALIASES",
    "TRAINABLE", "MODULE_TYPES", "get", "module", "gain", "properties",
]

#: SELU's fixed constants (Klambauer et al., 2017): the unique pair for which mean 0 / variance 1
#: is a stable fixed point of a layer with LeCun-normal weights.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _t(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x if x.is_floating_point() else x.to(torch.float32)


def _minus_abs(x: torch.Tensor) -> torch.Tensor:
    # -|x|, but with derivative -1 (not 0) at x = 0, so autograd through the stable forms below
    # gives the true derivative at 0 too.
    return torch.where(x >= 0, -x, x)


def _check_number(name: str, value, low: float | None = None) -> float:
    return check_number(value, name, low)


# --- the historical ones -------------------------------------------------------------------

def step(x) -> torch.Tensor:
    r"""Heaviside step: :math:`H(x) = 1` if :math:`x > 0` else :math:`0` (the perceptron's)."""
    x = _t(x)
    return (x > 0).to(x.dtype)


def step_grad(x) -> torch.Tensor:
    r""":math:`H'(x) = 0` everywhere it exists -- no gradient at all, hence no backprop."""
    return torch.zeros_like(_t(x))


def identity(x) -> torch.Tensor:
    r"""Identity (linear) activation :math:`f(x) = x`."""
    return _t(x)


def identity_grad(x) -> torch.Tensor:
    r""":math:`f'(x) = 1`."""
    return torch.ones_like(_t(x))


def sigmoid(x) -> torch.Tensor:
    r"""Logistic sigmoid :math:`\sigma(x) = 1 / (1 + e^{-x})`, range (0, 1).

    Stable form: with :math:`e = e^{-|x|} \le 1`, :math:`\sigma(x) = 1/(1+e)` for
    :math:`x \ge 0` and :math:`e/(1+e)` for :math:`x < 0`, so ``exp`` never overflows.
    """
    x = _t(x)
    e = torch.exp(_minus_abs(x))
    return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_grad(x) -> torch.Tensor:
    r""":math:`\sigma'(x) = \sigma(x)\,(1 - \sigma(x)) \le 1/4`."""
    s = sigmoid(x)
    return s * (1 - s)


def tanh(x) -> torch.Tensor:
    r"""Hyperbolic tangent :math:`\tanh x = (e^x - e^{-x}) / (e^x + e^{-x})`, range (-1, 1).

    Stable form: :math:`\operatorname{sign}(x)\,(1 - e^{-2|x|}) / (1 + e^{-2|x|})`, with
    ``expm1`` so that small :math:`x` keeps its precision.
    """
    x = _t(x)
    m = 2 * _minus_abs(x)
    t = -torch.expm1(m) / (1 + torch.exp(m))
    return torch.where(x >= 0, t, -t)


def tanh_grad(x) -> torch.Tensor:
    r""":math:`\tanh'(x) = 1 - \tanh^2 x \le 1`."""
    return 1 - tanh(x) ** 2


# --- the ReLU family ------------------------------------------------------------------------

def relu(x) -> torch.Tensor:
    r"""Rectified linear unit :math:`\max(0, x)`."""
    x = _t(x)
    return torch.where(x > 0, x, torch.zeros_like(x))


def relu_grad(x) -> torch.Tensor:
    r""":math:`1` for :math:`x > 0`, else :math:`0` (torch also uses 0 at :math:`x = 0`)."""
    x = _t(x)
    return (x > 0).to(x.dtype)


def leaky_relu(x, negative_slope: float = 0.01) -> torch.Tensor:
    r"""Leaky ReLU: :math:`x` for :math:`x > 0`, else :math:`a x` with ``a = negative_slope``."""
    a = _check_number("negative_slope", negative_slope)
    x = _t(x)
    return torch.where(x > 0, x, a * x)


def leaky_relu_grad(x, negative_slope: float = 0.01) -> torch.Tensor:
    r""":math:`1` for :math:`x > 0`, else :math:`a` -- never exactly 0, so a unit cannot die."""
    a = _check_number("negative_slope", negative_slope)
    x = _t(x)
    return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, a))


def _prelu_weight(x: torch.Tensor, weight) -> torch.Tensor:
    w = torch.as_tensor(weight, dtype=x.dtype)
    if w.ndim > 1 or (w.numel() > 1 and (x.ndim < 2 or x.shape[1] != w.numel())):
        raise ValueError(f"prelu weight must hold 1 value or one per channel (x.shape[1] = "
                         f"{x.shape[1] if x.ndim > 1 else 'n/a'}), got shape {tuple(w.shape)}")
    if w.numel() > 1:  # one slope per channel, channels on dim 1 (like torch)
        w = w.reshape((1, -1) + (1,) * (x.ndim - 2))
    return w.reshape(()) if w.numel() == 1 else w


def prelu(x, weight) -> torch.Tensor:
    r"""Parametric ReLU (He et al., 2015): a leaky ReLU whose slope :math:`a` is *learned*.

    ``weight`` holds one slope, or one per channel (dimension 1 of ``x``), as in ``F.prelu``.
    """
    x = _t(x)
    w = _prelu_weight(x, weight)
    return torch.where(x > 0, x, w * x)


def prelu_grad(x, weight) -> torch.Tensor:
    r""":math:`\partial f/\partial x`: :math:`1` for :math:`x > 0`, else :math:`a`."""
    x = _t(x)
    w = _prelu_weight(x, weight)
    return torch.where(x > 0, torch.ones_like(x), w.expand_as(x))


def prelu_grad_weight(x, weight) -> torch.Tensor:
    r""":math:`\partial f/\partial a` per element: :math:`0` for :math:`x > 0`, else :math:`x`.

    The slope's gradient is this times the incoming gradient, summed over every element that
    shares the slope.
    """
    x = _t(x)
    _prelu_weight(x, weight)
    return torch.where(x > 0, torch.zeros_like(x), x)


def elu(x, alpha: float = 1.0) -> torch.Tensor:
    r"""Exponential linear unit (Clevert et al., 2016): :math:`x` for :math:`x > 0`, else
    :math:`\alpha (e^x - 1)`, which saturates smoothly at :math:`-\alpha`."""
    a = _check_number("alpha", alpha)
    x = _t(x)
    # exp only of the negative part: exp(1e4) would be inf, and inf * 0 in backward is NaN.
    return torch.where(x > 0, x, a * torch.expm1(x.clamp(max=0)))


def elu_grad(x, alpha: float = 1.0) -> torch.Tensor:
    r""":math:`1` for :math:`x > 0`, else :math:`\alpha e^x`."""
    a = _check_number("alpha", alpha)
    x = _t(x)
    return torch.where(x > 0, torch.ones_like(x), a * torch.exp(x.clamp(max=0)))


def selu(x) -> torch.Tensor:
    r"""Scaled ELU (Klambauer et al., 2017): :math:`\lambda\,\mathrm{ELU}_\alpha(x)` with the fixed
    :data:`SELU_ALPHA` :math:`\approx 1.6733` and :data:`SELU_SCALE` :math:`\approx 1.0507`."""
    return SELU_SCALE * elu(x, SELU_ALPHA)


def selu_grad(x) -> torch.Tensor:
    r""":math:`\lambda` for :math:`x > 0`, else :math:`\lambda \alpha e^x`."""
    return SELU_SCALE * elu_grad(x, SELU_ALPHA)


# --- smooth ReLUs ---------------------------------------------------------------------------

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


def _check_approximate(approximate: str) -> str:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate


def gelu(x, approximate: str = "none") -> torch.Tensor:
    r"""Gaussian error linear unit (Hendrycks & Gimpel, 2016): :math:`x\,\Phi(x)`.

    Exact: :math:`\tfrac12 x\,(1 + \operatorname{erf}(x/\sqrt2))`. ``approximate="tanh"``:
    :math:`\tfrac12 x\,(1 + \tanh(\sqrt{2/\pi}\,(x + 0.044715 x^3)))`, as in ``F.gelu``.
    """
    x = _t(x)
    if _check_approximate(approximate) == "none":
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    # 0.5 (1 + tanh u) = sigmoid(2u), which keeps float32 precision where tanh u is near -1
    return x * sigmoid(2 * _SQRT_2_OVER_PI * (x + _GELU_C * x ** 3))


def gelu_grad(x, approximate: str = "none") -> torch.Tensor:
    r"""Exact: :math:`\Phi(x) + x\,\varphi(x)`. Tanh form: with :math:`u = \sqrt{2/\pi}(x + c x^3)`,
    :math:`\tfrac12(1 + \tanh u) + \tfrac12 x (1 - \tanh^2 u)\sqrt{2/\pi}(1 + 3 c x^2)`."""
    x = _t(x)
    if _check_approximate(approximate) == "none":
        cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
        pdf = torch.exp(-0.5 * x.clamp(-1e4, 1e4) ** 2) / math.sqrt(2 * math.pi)
        return cdf + x * pdf
    # Past |x| = 10, tanh(u) is exactly +-1 in float64 too: clamp so x^3 cannot overflow.
    # (1 + tanh u) / 2 = sigmoid(2u) and (1 - tanh^2 u) = 4 sigmoid(2u)(1 - sigmoid(2u)): the
    # sigmoid form keeps float32 precision where tanh u is close to -1.
    xc = x.clamp(-10, 10)
    p = sigmoid(2 * _SQRT_2_OVER_PI * (xc + _GELU_C * xc ** 3))
    du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * xc ** 2)
    return p + 2 * xc * p * (1 - p) * du


def silu(x) -> torch.Tensor:
    r"""Sigmoid linear unit, a.k.a. Swish with :math:`\beta = 1` (Ramachandran et al., 2017):
    :math:`x\,\sigma(x)`."""
    x = _t(x)
    return x * sigmoid(x)


def silu_grad(x) -> torch.Tensor:
    r""":math:`\sigma(x)\,(1 + x\,(1 - \sigma(x)))`."""
    x = _t(x)
    s = sigmoid(x)
    return s * (1 + x * (1 - s))


swish, swish_grad = silu, silu_grad


def softplus(x, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    r"""Softplus :math:`\tfrac1\beta \log(1 + e^{\beta x})`, a smooth ReLU; linear above
    ``threshold`` (in :math:`\beta x`) like ``F.softplus``.

    Stable form: :math:`z + \log(1 + e^{-z})` for :math:`z = \beta x > 0`, so ``exp`` only ever
    sees a non-positive number.
    """
    b = _check_number("beta", beta)
    if b <= 0:
        raise ValueError(f"beta must be positive, got {beta!r}")
    thr = _check_number("threshold", threshold)
    x = _t(x)
    z = b * x
    soft = torch.where(z > 0, z + torch.log1p(torch.exp(-z.clamp(min=0))),
                       torch.log1p(torch.exp(z.clamp(max=0)))) / b
    return torch.where(z > thr, x, soft)


def softplus_grad(x, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    r""":math:`\sigma(\beta x)` -- softplus is the integral of the sigmoid (1 above the
    threshold)."""
    b = _check_number("beta", beta)
    thr = _check_number("threshold", threshold)
    x = _t(x)
    z = b * x
    return torch.where(z > thr, torch.ones_like(x), sigmoid(z))


# --- output activations ---------------------------------------------------------------------

def softmax(x, dim: int = -1) -> torch.Tensor:
    r"""Softmax along ``dim``: :math:`e^{x_i} / \sum_j e^{x_j}`.

    Stable form: subtract :math:`\max_j x_j` first. The result is unchanged (the factor
    :math:`e^{-m}` cancels) but every exponent is :math:`\le 0`, so nothing overflows: logits of
    1000 give probabilities, not ``inf / inf = nan``.
    """
    x = _t(x)
    z = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)


def log_softmax(x, dim: int = -1) -> torch.Tensor:
    r""":math:`\log \mathrm{softmax}(x)_i = x_i - m - \log\sum_j e^{x_j - m}` (log-sum-exp trick).

    This is what ``CrossEntropyLoss`` computes from logits: it never takes the log of a
    probability that underflowed to 0.
    """
    x = _t(x)
    z = x - x.amax(dim=dim, keepdim=True)
    return z - torch.log(torch.exp(z).sum(dim=dim, keepdim=True))


def softmax_jacobian(x) -> torch.Tensor:
    r"""Jacobian of softmax for one vector ``x`` of shape ``(k,)``:
    :math:`\partial s_i / \partial x_j = s_i (\delta_{ij} - s_j)`, i.e.
    :math:`\mathrm{diag}(s) - s s^\top` (shape ``(k, k)``)."""
    x = _t(x)
    if x.ndim != 1:
        raise ValueError(f"softmax_jacobian takes one vector of shape (k,), got shape "
                         f"{tuple(x.shape)}")
    s = softmax(x)
    return torch.diag(s) - torch.outer(s, s)


def argmax(x, dim: int = -1) -> torch.Tensor:
    """Index of the largest entry along ``dim`` (the predicted class).

    Its derivative is 0 almost everywhere, so it is only used at prediction time: training uses
    softmax, and argmax of the logits equals argmax of the softmax (softmax is increasing).
    """
    return torch.argmax(_t(x), dim=dim)


# --- the registry used by figures and widgets ------------------------------------------------

@dataclass(frozen=True)
class Activation:
    """One activation: its function and derivative, its torch module, and how to initialize for it.

    This is the course's one table of activations (:data:`ZOO`): figures and widgets read ``f``
    and ``grad``; :func:`nncourse.models.make_mlp` reads ``module``, ``gain_for`` and ``init``;
    :mod:`nncourse.backprop`, :mod:`nncourse.diagnostics` and the chapter labs read the names.
    """

    name: str
    f: Callable
    grad: Callable
    param: str | None = None          # keyword of f / grad, e.g. "negative_slope"
    default: float | None = None       # torch's default value of that parameter
    bounds: tuple[float, float] | None = None  # sensible range for a slider
    smooth: bool = True               # f' continuous everywhere
    ops: str = "compare"              # what it costs beyond a comparison
    module: Callable[..., nn.Module] | None = None  # the torch module (None: no gradient to train)
    #: ``(nonlinearity, param)`` for :func:`nncourse.init.calculate_gain`: the gain the He
    #: initializers use for this activation. torch knows gains only for the classic five; the
    #: smooth ReLUs (ELU, GELU, SiLU, softplus) behave like ReLU for positive inputs and take its.
    gain_for: tuple[str, float | None] = ("linear", None)
    #: The initialization chapter 03 pairs with this activation (a scheme of
    #: :data:`nncourse.init.SCHEMES`) and the gain it uses (None: the scheme's own default).
    init: str = "he_normal"
    init_gain: float | None = None

    def __call__(self, x, value: float | None = None) -> torch.Tensor:
        return self.f(x, **self._kw(value))

    def derivative(self, x, value: float | None = None) -> torch.Tensor:
        return self.grad(x, **self._kw(value))

    def _kw(self, value):
        if self.param is None:
            return {}
        return {self.param: self.default if value is None else value}


def _prelu_scalar(x, weight=0.25):
    return prelu(x, torch.tensor(float(weight)))


def _prelu_scalar_grad(x, weight=0.25):
    return prelu_grad(x, torch.tensor(float(weight)))


#: The elementwise activations, in the order the chapter introduces them.
ZOO: dict[str, Activation] = {a.name: a for a in (
    Activation("step", step, step_grad, smooth=False),
    Activation("identity", identity, identity_grad, ops="none", module=nn.Identity),
    Activation("sigmoid", sigmoid, sigmoid_grad, ops="exp", module=nn.Sigmoid,
               gain_for=("sigmoid", None), init="xavier_normal"),
    # Glorot & Bengio derived Xavier for tanh with gain 1; torch recommends gain 5/3 for tanh,
    # which keeps a deep tanh net's signal from decaying (chapter 03 measures both).
    Activation("tanh", tanh, tanh_grad, ops="exp", module=nn.Tanh, gain_for=("tanh", None),
               init="xavier_normal", init_gain=5.0 / 3),
    Activation("relu", relu, relu_grad, smooth=False, module=nn.ReLU, gain_for=("relu", None)),
    Activation("leaky_relu", leaky_relu, leaky_relu_grad, "negative_slope", 0.01, (0.0, 1.0),
               smooth=False, module=nn.LeakyReLU, gain_for=("leaky_relu", 0.01)),
    # He et al. (2015) derived their initialization for PReLU with its initial slope (0.25).
    Activation("prelu", _prelu_scalar, _prelu_scalar_grad, "weight", 0.25, (0.0, 1.0),
               smooth=False, module=nn.PReLU, gain_for=("leaky_relu", 0.25)),
    Activation("elu", elu, elu_grad, "alpha", 1.0, (0.0, 3.0), smooth=False, ops="exp",
               module=nn.ELU, gain_for=("relu", None)),
    Activation("selu", selu, selu_grad, smooth=False, ops="exp", module=nn.SELU,
               gain_for=("selu", None), init="lecun_normal"),
    Activation("gelu", gelu, gelu_grad, ops="erf", module=nn.GELU, gain_for=("relu", None)),
    Activation("silu", silu, silu_grad, ops="exp", module=nn.SiLU, gain_for=("relu", None)),
    Activation("softplus", softplus, softplus_grad, "beta", 1.0, (0.25, 5.0), ops="exp, log",
               module=nn.Softplus, gain_for=("relu", None)),
)}

#: Other names for the same activation.
ALIASES = {"swish": "silu", "linear": "identity"}

#: Names :func:`nncourse.models.make_mlp` accepts: every activation with a torch module, and
#: aliases.
TRAINABLE = tuple([n for n, a in ZOO.items() if a.module is not None]
                  + [k for k, v in ALIASES.items() if ZOO[v].module is not None])

#: The torch module classes of the table, e.g. for hooks that find a model's activations.
MODULE_TYPES = tuple(a.module for a in ZOO.values() if a.module not in (None, nn.Identity))


def get(name: str) -> Activation:
    """The :class:`Activation` called ``name`` (``"swish"`` is ``"silu"``, ``"linear"`` is
    ``"identity"``)."""
    key = name.lower() if isinstance(name, str) else name
    key = ALIASES.get(key, key)
    if key not in ZOO:
        raise ValueError(f"activation must be one of {', '.join(list(ZOO) + list(ALIASES))}; "
                         f"got {name!r}")
    return ZOO[key]


def module(name: str, **kwargs) -> nn.Module:
    """A fresh torch module for activation ``name``, e.g. ``module("leaky_relu")``."""
    act = get(name)
    if act.module is None:
        raise ValueError(f"activation {name!r} has no gradient and no torch module; use one of "
                         f"{', '.join(TRAINABLE)}")
    return act.module(**kwargs)


def gain(name: str) -> float:
    """The gain of activation ``name`` for the He initializers (see :attr:`Activation.gain_for`)."""
    from nncourse.init import calculate_gain

    nonlinearity, param = get(name).gain_for
    return calculate_gain(nonlinearity, param)


def _tidy(v: float) -> float:
    # quadrature noise below 1e-12 is 0, and -0.0 prints as 0
    return 0.0 if abs(v) < 1e-12 else v


def properties(name: str, value: float | None = None) -> dict:
    """Measured properties of an activation, for the chapter's table.

    ``range`` is ``(min f, max f)`` over a fine grid on [-20, 20] and ``±1e4`` (``inf`` on a side
    where ``f`` still grows at ``1e4``),
    ``mean_gauss`` is :math:`E[f(z)]` for :math:`z \\sim N(0, 1)` (0 means zero-centred, computed
    by quadrature so it is exact and deterministic), ``grad_at_minus5`` / ``grad_at_0`` /
    ``grad_at_5`` are :math:`f'` there (0 on a side means the function saturates there),
    plus ``smooth`` and ``ops`` from :data:`ZOO`.
    """
    act = get(name)
    # the smallest and largest value on a fine grid (GELU and SiLU dip below 0 near x = -1);
    # a side is unbounded when f still grows between 1e3 and 1e4
    grid = torch.linspace(-20, 20, 40001, dtype=torch.float64)
    fg = act(grid, value)
    lo3, lo4, hi3, hi4 = act(torch.tensor([-1e3, -1e4, 1e3, 1e4], dtype=torch.float64),
                             value).tolist()
    lo, hi = min(fg.min().item(), lo4), max(fg.max().item(), hi4)
    z = np.linspace(-12, 12, 24001)
    w = np.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    fz = act(torch.from_numpy(z), value).numpy()
    g = act.derivative(torch.tensor([-5.0, 0.0, 5.0], dtype=torch.float64), value).tolist()
    return {
        "name": act.name,
        "range": (-math.inf if lo4 < lo3 - 1 else _tidy(lo),
                  math.inf if hi4 > hi3 + 1 else _tidy(hi)),
        "mean_gauss": _tidy(float(np.sum(w * fz))),
        "grad_at_minus5": _tidy(g[0]), "grad_at_0": _tidy(g[1]), "grad_at_5": _tidy(g[2]),
        "smooth": act.smooth, "ops": act.ops,
    }
