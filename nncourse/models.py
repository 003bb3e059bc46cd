"""One MLP builder for the whole course.

``make_mlp(n_in, n_out, width=64, depth=2, activation="relu", init="default", batch_norm=False,
dropout=0.0)`` builds ``[Linear -> (BatchNorm) -> activation -> (Dropout)] * depth -> Linear`` as a
plain ``nn.Sequential``, so everything torch offers (hooks, ``state_dict``, pruning) works on it.
Activations come from the course's one table (:data:`nncourse.activations.ZOO`); initialization
goes through chapter 03's :func:`nncourse.init.init_model_`, whose initializers are tested equal
to ``torch.nn.init``'s, with the scheme names of :data:`nncourse.init.SCHEMES`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nncourse import activations
from nncourse import init as initializers
from nncourse._validate import check_choice, check_int, check_number

__all__ = ["make_mlp", "init_weights_", "linear_layers", "count_parameters"]


def make_mlp(n_in: int, n_out: int, width: int | Sequence[int] = 64, depth: int = 2,
             activation: str = "relu", init: str = "default", batch_norm: bool = False,
             dropout: float = 0.0, bias: bool = True, init_scale: float = 1.0,
             init_gain: float | None = None, seed: int | None = None) -> nn.Sequential:
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
        Hidden activation, one of :data:`nncourse.activations.TRAINABLE`.
    init : str
        Weight initialization, one of :data:`nncourse.init.SCHEMES` (applied by
        :func:`nncourse.init.init_model_`; ``he_*`` use the activation's gain, see
        :func:`nncourse.activations.gain`).
    init_gain : float, optional
        Gain of the ``xavier_*`` schemes (default 1). For torch's tanh recommendation pass
        ``activations.gain("tanh")`` (5/3).
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
    fn = "make_mlp"
    check_int(n_in, "n_in", fn=fn)
    check_int(n_out, "n_out", fn=fn)
    if isinstance(width, Sequence) and not isinstance(width, str):
        widths = list(width)
    else:
        widths = [width] * check_int(depth, "depth", low=0, fn=fn)
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"{fn}: width must be a positive integer or a list of them, got {width!r}")
    check_number(dropout, "dropout p", 0, 1, high_open=True, fn=fn)
    activation = check_choice(activation, "activation", activations.TRAINABLE, fn=fn)
    init = check_choice(init, "init", initializers.SCHEMES, fn=fn)
    if init_gain is not None:
        check_number(init_gain, "init_gain", 0, low_open=True, fn=fn)

    if seed is None:
        return _build(n_in, n_out, widths, activation, init, init_gain, batch_norm, dropout, bias,
                      init_scale, None)
    # Layers draw their default weights from the global generator: fork it so a seeded model
    # is the same whatever ran before, and building it leaves the global state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(n_in, n_out, widths, activation, init, init_gain, batch_norm, dropout, bias,
                      init_scale, seed)


def _build(n_in, n_out, widths, activation, init, init_gain, batch_norm, dropout, bias,
           init_scale, seed):
    layers: list[nn.Module] = []
    fan_in = n_in
    for w in widths:
        layers.append(nn.Linear(fan_in, w, bias=bias and not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(w))
        layers.append(activations.module(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = w
    layers.append(nn.Linear(fan_in, n_out, bias=bias))
    model = nn.Sequential(*layers)
    init_weights_(model, init, activation=activation, gain=init_gain, scale=init_scale, seed=seed)
    return model


def init_weights_(model: nn.Module, scheme: str = "default", activation: str = "relu",
                  gain: float | None = None, scale: float = 1.0,
                  seed: int | None = None) -> nn.Module:
    """Re-initialize every ``nn.Linear`` of ``model`` in place for a net of ``activation`` units.

    :func:`nncourse.init.init_model_` with the activation's gain for the He schemes (from the
    course's activation table); ``gain`` is the Xavier gain (default 1).
    """
    nonlinearity, a = activations.get(activation).gain_for
    return initializers.init_model_(model, scheme, nonlinearity=nonlinearity, a=a or 0.0,
                                    gain=gain, scale=scale, seed=seed)


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The model's ``nn.Linear`` layers, input to output."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
