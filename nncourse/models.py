"""One MLP builder for the whole course.

``make_mlp(n_in, n_out, width=64, depth=3, activation="relu", init="he", batch_norm=True,
dropout=0.2)`` builds ``[Linear -> (BatchNorm) -> activation -> (Dropout)] * depth -> Linear`` as a
plain ``nn.Sequential``, so everything torch offers (hooks, ``state_dict``, pruning) works on it.
Initialization goes through the real ``torch.nn.init`` functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "INITS", "make_mlp", "make_activation", "init_weights_", "linear_layers",
           "count_parameters"]

#: Activation names accepted by :func:`make_mlp` and the torch module each one builds.
ACTIVATIONS = {
    "identity": nn.Identity, "linear": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "prelu": nn.PReLU, "elu": nn.ELU,
    "selu": nn.SELU, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU, "softplus": nn.Softplus,
}

#: Initialization schemes accepted by :func:`init_weights_`.
INITS = ("default", "zeros", "constant", "normal", "uniform", "xavier_uniform", "xavier_normal",
         "he_uniform", "he_normal", "lecun_normal")

# The nonlinearity name torch.nn.init.calculate_gain knows for each activation.
_GAIN_NAME = {"identity": "linear", "linear": "linear", "sigmoid": "sigmoid", "tanh": "tanh",
              "relu": "relu", "leaky_relu": "leaky_relu", "prelu": "leaky_relu",
              "elu": "relu", "selu": "selu", "gelu": "relu", "silu": "relu", "swish": "relu",
              "softplus": "relu"}


def _choice(name: str, value, valid) -> str:
    if not isinstance(value, str) or value.lower() not in valid:
        raise ValueError(f"{name} must be one of {', '.join(sorted(valid))}; got {value!r}")
    return value.lower()


def make_activation(name: str, **kwargs) -> nn.Module:
    """A fresh activation module by name (see :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[_choice("activation", name, ACTIVATIONS)](**kwargs)


def make_mlp(n_in: int, n_out: int, width: int | Sequence[int] = 64, depth: int = 2,
             activation: str = "relu", init: str = "default", batch_norm: bool = False,
             dropout: float = 0.0, bias: bool = True, init_scale: float = 1.0,
             seed: int | None = None) -> nn.Sequential:
    """Build a multi-layer perceptron.

    Parameters
    ----------
    n_in, n_out : int
        Input features and outputs (1 logit for binary/sigmoid, one per class for softmax).
    width : int or sequence of int
        Units per hidden layer; a sequence gives each hidden layer its own width (then ``depth``
        is ignored).
    depth : int
        Number of hidden layers (0 gives logistic/softmax regression).
    activation : str
        Hidden activation, one of :data:`ACTIVATIONS`.
    init : str
        Weight initialization, one of :data:`INITS` (see :func:`init_weights_`).
    batch_norm : bool
        Insert ``BatchNorm1d`` between each hidden Linear and its activation.
    dropout : float
        Dropout rate after each hidden activation, in [0, 1).
    init_scale : float
        Extra factor on the initial weights (e.g. 10 for "too large", 0.01 for "too small").
    seed : int, optional
        If given, the weights are drawn from a generator seeded with it, independently of the
        global random state.
    """
    for name, v in (("n_in", n_in), ("n_out", n_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(width, int):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be a non-negative integer, got {depth!r}")
        widths = [width] * depth
    else:
        widths = list(width)
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"width must be a positive integer or a list of them, got {width!r}")
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"dropout p must be in [0, 1), got {dropout!r}")
    activation = _choice("activation", activation, ACTIVATIONS)

    if seed is None:
        return _build(n_in, n_out, widths, activation, init, batch_norm, dropout, bias,
                      init_scale, None)
    # Layers draw their default weights from the global generator: fork it so a seeded model
    # is the same whatever ran before, and building it leaves the global state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(n_in, n_out, widths, activation, init, batch_norm, dropout, bias,
                      init_scale, seed)


def _build(n_in, n_out, widths, activation, init, batch_norm, dropout, bias, init_scale, seed):
    layers: list[nn.Module] = []
    fan_in = n_in
    for w in widths:
        layers.append(nn.Linear(fan_in, w, bias=bias and not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(w))
        layers.append(make_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = w
    layers.append(nn.Linear(fan_in, n_out, bias=bias))
    model = nn.Sequential(*layers)
    init_weights_(model, init, activation=activation, scale=init_scale, seed=seed)
    return model


@torch.no_grad()
def init_weights_(model: nn.Module, scheme: str = "default", activation: str = "relu",
                  scale: float = 1.0, std: float = 0.01, value: float = 0.0,
                  seed: int | None = None) -> nn.Module:
    """Re-initialize every ``nn.Linear`` of ``model`` in place with ``torch.nn.init``.

    Schemes: ``default`` (keep torch's), ``zeros``, ``constant`` (``value``), ``normal``
    (N(0, std^2)), ``uniform`` (U(-std, std)), ``xavier_uniform`` / ``xavier_normal``
    (Var = gain^2 * 2 / (fan_in + fan_out)), ``he_uniform`` / ``he_normal``
    (Var = gain^2 / fan_in, Kaiming), ``lecun_normal`` (Var = 1 / fan_in, for SELU).
    The gain follows ``activation`` via ``torch.nn.init.calculate_gain``. Weights are then
    multiplied by ``scale``. Biases start at zero except with ``default``.
    """
    scheme = _choice("init", scheme, INITS)
    activation = _choice("activation", activation, ACTIVATIONS)
    gain_name = _GAIN_NAME[activation]
    gain = nn.init.calculate_gain(gain_name, 0.01 if gain_name == "leaky_relu" else None)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    for layer in linear_layers(model):
        w = layer.weight
        if scheme == "default":
            pass  # torch's own init, drawn when the layer was built (seeded by make_mlp)
        elif scheme == "zeros":
            nn.init.zeros_(w)
        elif scheme == "constant":
            nn.init.constant_(w, value)
        elif scheme == "normal":
            nn.init.normal_(w, 0.0, std, generator=generator)
        elif scheme == "uniform":
            nn.init.uniform_(w, -std, std, generator=generator)
        elif scheme == "xavier_uniform":
            nn.init.xavier_uniform_(w, gain=gain, generator=generator)
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(w, gain=gain, generator=generator)
        elif scheme in ("he_uniform", "he_normal"):
            fn = nn.init.kaiming_uniform_ if scheme == "he_uniform" else nn.init.kaiming_normal_
            fn(w, a=0.01 if gain_name == "leaky_relu" else 0, nonlinearity=gain_name,
               generator=generator)
        elif scheme == "lecun_normal":
            nn.init.normal_(w, 0.0, 1.0 / math.sqrt(w.shape[1]), generator=generator)
        if scheme != "default" and layer.bias is not None:
            nn.init.zeros_(layer.bias)
        if scale != 1.0:
            w.mul_(scale)
    return model


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The model's ``nn.Linear`` layers, input to output."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
