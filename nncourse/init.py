"""Weight initializers from scratch, with the names, signatures and in-place style of
``torch.nn.init``.

Every initializer fills a tensor *in place* (trailing ``_``), returns it, and accepts
``generator=`` so a seeded :class:`torch.Generator` reproduces the same weights. They draw with the
same tensor methods in the same order as torch, so with the same generator they give bit-identical
weights -- switching to ``torch.nn.init`` changes nothing but the import.

The idea behind all the scaled schemes: a unit sums ``fan_in`` inputs, so with independent zero-mean
weights and inputs ``Var[y] = fan_in * Var[W] * Var[x]``. Keeping ``Var[y] = Var[x]`` layer after
layer needs ``Var[W] = gain^2 / fan_in``, where the *gain* corrects for what the activation does to
the variance (``sqrt(2)`` for ReLU, which zeroes half its inputs). Backpropagation multiplies by
``W^T`` instead, which asks for ``1 / fan_out``; Glorot & Bengio compromise on
``2 / (fan_in + fan_out)``.

=====================  ======================================  ==============================
initializer            distribution                            variance
=====================  ======================================  ==============================
``xavier_uniform_``    U(-a, a), a = gain*sqrt(6/(in+out))     gain^2 * 2 / (in + out)
``xavier_normal_``     N(0, std^2)                             gain^2 * 2 / (in + out)
``kaiming_uniform_``   U(-b, b), b = gain*sqrt(3/fan)          gain^2 / fan
``kaiming_normal_``    N(0, std^2)                             gain^2 / fan
``lecun_normal_``      N(0, std^2)                             1 / in  (for SELU)
=====================  ======================================  ==============================

``fan`` is ``fan_in`` (keeps the forward signal) or ``fan_out`` (keeps the backward gradient),
chosen with ``mode``; :func:`variance_scaling_` writes all of them as ``scale / fan`` and adds the
average ``fan_avg`` (Keras's ``VarianceScaling``). :func:`calculate_fan_in_and_fan_out` also
handles convolution weights
``(out_channels, in_channels, *kernel)``, whose units each see ``in_channels * kernel`` inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nncourse._validate import check_number

__all__ = ["NONLINEARITIES", "MODES", "SCHEMES", "calculate_gain", "calculate_fan_in_and_fan_out",
           "calculate_correct_fan", "zeros_", "constant_", "normal_", "uniform_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "lecun_normal_", "variance_scaling_", "init_model_"]

_LINEAR_LIKE = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                "conv_transpose3d")
#: Nonlinearity names :func:`calculate_gain` accepts (the ``torch.nn.functional`` names).
NONLINEARITIES = _LINEAR_LIKE + ("sigmoid", "tanh", "relu", "leaky_relu", "selu")
#: Valid ``mode`` values of the Kaiming initializers.
MODES = ("fan_in", "fan_out")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (same values as ``torch.nn.init.calculate_gain``).

    ======================  ======================================
    nonlinearity            gain
    ======================  ======================================
    linear, conv*, sigmoid  1
    tanh                    5/3
    relu                    sqrt(2)
    leaky_relu              sqrt(2 / (1 + negative_slope^2))
    selu                    3/4
    ======================  ======================================

    ``param`` is the negative slope of ``leaky_relu`` (default 0.01). Note ``selu``: for a
    self-normalizing network use :func:`lecun_normal_` (gain 1), as torch's documentation says.
    """
    if not isinstance(nonlinearity, str) or nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {', '.join(NONLINEARITIES)}; "
                         f"got {nonlinearity!r}")
    if nonlinearity in _LINEAR_LIKE or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope of leaky_relu must be a number, got {param!r}")
        return math.sqrt(2.0 / (1 + slope ** 2))
    return 3.0 / 4  # selu: torch's empirical value (pytorch/pytorch#50664)


def calculate_fan_in_and_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight tensor of shape ``(out, in, *kernel)``.

    A ``Linear`` weight is ``(out_features, in_features)``: each output unit sums ``in_features``
    inputs. A convolution weight is ``(out_channels, in_channels, k1, k2, ...)``: each output sums
    ``in_channels * k1 * k2 * ...`` inputs (the receptive field), and each input reaches
    ``out_channels * k1 * k2 * ...`` outputs.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() < 2:
        raise ValueError("fan_in and fan_out need a tensor with at least 2 dimensions "
                         f"(out, in, *kernel), got shape {tuple(tensor.shape)}")
    receptive_field = 1
    for s in tensor.shape[2:]:
        receptive_field *= s
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def calculate_correct_fan(tensor: torch.Tensor, mode: str) -> int:
    """``fan_in`` or ``fan_out`` of ``tensor``, by ``mode``."""
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode.lower() == "fan_in" else fan_out


def _check_number(name: str, value, positive: bool = False) -> None:
    check_number(value, name, 0 if positive else None)


# Initialization is not part of the computation graph: fill weights without recording gradients.
@torch.no_grad()
def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    """Fill ``tensor`` with 0 (breaks nothing for biases, everything for weights)."""
    return tensor.zero_()


@torch.no_grad()
def constant_(tensor: torch.Tensor, val: float) -> torch.Tensor:
    """Fill ``tensor`` with ``val``."""
    _check_number("val", val)
    return tensor.fill_(val)


@torch.no_grad()
def normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` with draws from N(mean, std^2)."""
    _check_number("mean", mean)
    _check_number("std", std, positive=True)
    return tensor.normal_(mean, std, generator=generator)


@torch.no_grad()
def uniform_(tensor: torch.Tensor, a: float = 0.0, b: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` with draws from U(a, b); variance ``(b - a)^2 / 12``."""
    _check_number("a", a)
    _check_number("b", b)
    if a > b:
        raise ValueError(f"uniform_ needs a <= b, got a={a}, b={b}")
    return tensor.uniform_(a, b, generator=generator)


def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Glorot/Xavier uniform: U(-a, a) with
    :math:`a = \text{gain}\sqrt{6/(\text{fan\_in}+\text{fan\_out})}`.

    A uniform U(-a, a) has variance a^2/3, so this is Var[W] = gain^2 * 2 / (fan_in + fan_out).
    """
    _check_number("gain", gain, positive=True)
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std  # the bound of a uniform with this std
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Glorot/Xavier normal: N(0, std^2) with
    :math:`\text{std} = \text{gain}\sqrt{2/(\text{fan\_in}+\text{fan\_out})}`."""
    _check_number("gain", gain, positive=True)
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def _kaiming_std(tensor: torch.Tensor, a: float, mode: str, nonlinearity: str) -> float:
    _check_number("a", a)
    gain = calculate_gain(nonlinearity, a)
    fan = calculate_correct_fan(tensor, mode)
    return gain / math.sqrt(fan)


def kaiming_uniform_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    r"""He/Kaiming uniform: U(-b, b) with :math:`b = \text{gain}\sqrt{3/\text{fan}}`.

    ``a`` is the negative slope of ``leaky_relu`` (0 gives ReLU's gain sqrt(2)); ``mode`` picks
    ``fan_in`` (preserve activations forward) or ``fan_out`` (preserve gradients backward).
    """
    if 0 in tensor.shape:
        return tensor
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    r"""He/Kaiming normal: N(0, std^2) with :math:`\text{std} = \text{gain}/\sqrt{\text{fan}}`.

    For ReLU (``nonlinearity="relu"``) this is Var[W] = 2 / fan_in: ReLU zeroes half of its
    zero-mean inputs, which halves ``E[y^2]``; the factor 2 gives it back.
    """
    if 0 in tensor.shape:
        return tensor
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    return normal_(tensor, 0.0, std, generator)


def lecun_normal_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""LeCun normal: N(0, 1/fan_in) -- the initialization SELU's self-normalization assumes.

    The same as ``kaiming_normal_(tensor, nonlinearity="linear")``; torch has no separate name.
    """
    return kaiming_normal_(tensor, mode="fan_in", nonlinearity="linear", generator=generator)


#: Valid ``mode`` values of :func:`variance_scaling_`: the Kaiming modes plus Glorot's average.
VARIANCE_MODES = ("fan_in", "fan_out", "fan_avg")


def variance_scaling_(tensor: torch.Tensor, scale: float = 1.0, mode: str = "fan_in",
                      distribution: str = "normal",
                      generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The one rule behind every scaled scheme: :math:`\mathrm{Var}[W] = \text{scale}/n`, with
    ``n`` = ``fan_in``, ``fan_out`` or ``fan_avg`` = (fan_in + fan_out) / 2 (``mode``).

    Keras calls it ``VarianceScaling``; torch has no single function for it. ``scale=1,
    mode="fan_avg"`` is Glorot/Xavier (``xavier_normal_`` / ``xavier_uniform_`` give the same
    weights with the same generator), ``scale=2, mode="fan_in"`` is He for ReLU and ``scale=1,
    mode="fan_in"`` is LeCun. ``distribution`` is ``"normal"`` (a plain normal, as torch's
    initializers draw; Keras's default is a normal truncated at two standard deviations, and
    rescales it) or ``"uniform"`` (U(-a, a), a = sqrt(3 Var)).
    """
    _check_number("scale", scale, positive=True)
    if not isinstance(mode, str) or mode not in VARIANCE_MODES:
        raise ValueError(f"variance_scaling_: mode must be one of {', '.join(VARIANCE_MODES)}; "
                         f"got {mode!r}")
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"variance_scaling_: distribution must be 'normal' or 'uniform'; "
                         f"got {distribution!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    std = math.sqrt(scale / float(n))
    if distribution == "uniform":
        a = math.sqrt(3.0) * std
        return uniform_(tensor, -a, a, generator)
    return normal_(tensor, 0.0, std, generator)


#: The course's one vocabulary of initialization schemes, used by :func:`init_model_` and so by
#: :func:`nncourse.models.make_mlp`. A name means the same thing in every module and chapter:
#:
#: ==================  ==========================================================================
#: ``default``         keep the weights the layer was built with (``nn.Linear``: U(-b, b),
#:                     b = 1/sqrt(fan_in), i.e. Var = 1/(3 fan_in)) and its bias
#: ``zeros``           all 0 (every unit identical: symmetry is never broken)
#: ``constant``        all ``value``
#: ``normal``          N(0, std^2) -- a fixed std, whatever the layer's size
#: ``uniform``         U(-std, std)
#: ``xavier_normal``   Glorot: Var = gain^2 * 2 / (fan_in + fan_out), **gain 1 unless given**
#: ``xavier_uniform``  the same variance, uniform
#: ``he_normal``       Kaiming (fan_in): Var = gain(activation)^2 / fan_in -- 2/fan_in for ReLU
#: ``he_uniform``      the same variance, uniform
#: ``lecun_normal``    Var = 1 / fan_in (SELU's)
#: ==================  ==========================================================================
SCHEMES = ("default", "zeros", "constant", "normal", "uniform", "xavier_uniform", "xavier_normal",
           "he_uniform", "he_normal", "lecun_normal")


@torch.no_grad()
def init_model_(model: nn.Module, scheme: str = "default", *, nonlinearity: str = "relu",
                a: float = 0.0, gain: float | None = None, std: float = 0.01, value: float = 0.0,
                bias: float | str = 0.0, scale: float = 1.0,
                seed: int | None = None) -> nn.Module:
    """Initialize every ``nn.Linear`` / ``nn.Conv*d`` weight of ``model`` in place with one scheme.

    Parameters
    ----------
    scheme : str
        One of :data:`SCHEMES`. ``normal`` draws N(0, std^2), ``uniform`` U(-std, std),
        ``constant`` fills ``value``; ``he_*`` are the Kaiming initializers (mode ``fan_in``).
    nonlinearity, a : str, float
        The activation after each layer and its negative slope, for the gain of the ``he_*``
        schemes (``kaiming_normal_(w, a, "fan_in", nonlinearity)``).
    gain : float, optional
        Gain of the ``xavier_*`` schemes (default 1, as in ``torch.nn.init``; pass
        ``calculate_gain("tanh")`` for torch's recommendation for tanh).
    bias : float or "normal"
        Fill biases with this constant (default 0), or with N(0, std^2) draws for ``"normal"``.
        The ``default`` scheme keeps the layer's own bias.
    scale : float
        Multiply the weights by this afterwards (e.g. 10 for "too large").
    seed : int, optional
        Draw from a generator seeded with ``seed`` rather than torch's global one.
    """
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ValueError(f"init_model_: scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d,
                                                          nn.Conv3d))]
    for layer in layers:
        w = layer.weight
        if scheme == "zeros":
            zeros_(w)
        elif scheme == "constant":
            constant_(w, value)
        elif scheme == "normal":
            normal_(w, 0.0, std, generator)
        elif scheme == "uniform":
            uniform_(w, -std, std, generator)
        elif scheme == "xavier_uniform":
            xavier_uniform_(w, 1.0 if gain is None else gain, generator)
        elif scheme == "xavier_normal":
            xavier_normal_(w, 1.0 if gain is None else gain, generator)
        elif scheme in ("he_uniform", "he_normal"):
            fn = kaiming_uniform_ if scheme == "he_uniform" else kaiming_normal_
            fn(w, a, "fan_in", nonlinearity, generator)
        elif scheme == "lecun_normal":
            lecun_normal_(w, generator)
        if scheme != "default" and layer.bias is not None:
            if bias == "normal":
                normal_(layer.bias, 0.0, std, generator)
            else:
                constant_(layer.bias, bias)
        if scale != 1.0:
            w.mul_(scale)
    return model
