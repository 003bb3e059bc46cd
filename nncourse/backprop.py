"""Backpropagation from scratch, in NumPy: the course's reference network (chapter 01).

A network is a list of layers, and every layer has two methods:

* ``forward(x)`` computes the layer's output and *caches* what the backward pass will need;
* ``backward(grad_out)`` receives :math:`\\partial L / \\partial \\text{output}`, stores the
  gradients of the layer's parameters in ``layer.grads`` and returns
  :math:`\\partial L / \\partial \\text{input}` for the layer below.

Training repeats five steps: initialize (once), forward, loss, backward, update. Names and shapes
mirror PyTorch so the same network can be rebuilt in torch and compared number by number
(:func:`to_torch`): a :class:`Dense` layer stores ``weight`` of shape ``(out, in)`` and ``bias`` of
shape ``(out,)`` and computes :math:`Z = X W^\\top + b` like ``nn.Linear``; :class:`MLP` names its
parameters ``"0.weight"``, ``"0.bias"``, ``"2.weight"``... like an ``nn.Sequential``; the losses
are named after ``torch.nn.functional`` and average over the batch.

Everything is float64, so gradients agree with torch autograd to ~1e-15 and with finite
differences (:mod:`nncourse.gradcheck`) to ~1e-9.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nncourse._validate import check_int
from nncourse.env import progress
from nncourse.training import History  # the course's one record of a training run

__all__ = [
    "ACTIVATIONS", "LOSSES", "sigmoid", "sigmoid_prime", "tanh_prime", "relu", "relu_prime",
    "Dense", "Activation", "MLP", "dense_backward",
    "mse_loss", "mse_loss_grad", "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad", "cross_entropy", "cross_entropy_grad",
    "softmax", "loss_value", "loss_and_backward", "accuracy", "fit", "to_torch",
]


# --- activations and their derivatives ------------------------------------------------------

def sigmoid(z: np.ndarray) -> np.ndarray:
    """:math:`\\sigma(z) = 1 / (1 + e^{-z})`, without overflow for any ``z``.

    ``np.exp(-z)`` overflows for ``z < -709``; ``e = exp(-|z|)`` never does, and
    :math:`\\sigma(z) = 1/(1+e)` for :math:`z \\ge 0`, :math:`e/(1+e)` for :math:`z < 0`.
    """
    z = np.asarray(z, dtype=float)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_prime(z: np.ndarray) -> np.ndarray:
    """:math:`\\sigma'(z) = \\sigma(z)\\,(1 - \\sigma(z))`, at most 0.25 (at ``z = 0``)."""
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh_prime(z: np.ndarray) -> np.ndarray:
    """:math:`\\tanh'(z) = 1 - \\tanh^2(z)`."""
    return 1.0 - np.tanh(z) ** 2


def relu(z: np.ndarray) -> np.ndarray:
    """:math:`\\max(0, z)` elementwise."""
    return np.maximum(z, 0.0)


def relu_prime(z: np.ndarray) -> np.ndarray:
    """1 where ``z > 0`` else 0 (torch also uses 0 at ``z = 0``)."""
    return (np.asarray(z) > 0).astype(float)


#: name -> (function, derivative), in numpy. Names are those of the course's activation table
#: (:data:`nncourse.activations.ZOO`), which also gives :func:`to_torch` the torch module.
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "identity": (lambda z: z, np.ones_like),
    "sigmoid": (sigmoid, sigmoid_prime),
    "tanh": (np.tanh, tanh_prime),
    "relu": (relu, relu_prime),
}


def _check_name(kind: str, name, valid) -> str:
    if not isinstance(name, str) or name not in valid:
        raise ValueError(f"{kind} must be one of {', '.join(valid)}; got {name!r}")
    return name


# --- layers ------------------------------------------------------------------------------------

def dense_backward(x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of :math:`Z = X W^\\top + b` for a batch.

    Parameters
    ----------
    x : array of shape (n, in)
        The layer's input, cached by the forward pass.
    weight : array of shape (out, in)
    grad_out : array of shape (n, out)
        :math:`\\partial L / \\partial Z`.

    Returns
    -------
    (grad_x, grad_weight, grad_bias)
        :math:`\\partial L/\\partial X = G W` of shape (n, in),
        :math:`\\partial L/\\partial W = G^\\top X` of shape (out, in) and
        :math:`\\partial L/\\partial b = \\sum_i G_i` of shape (out,): every example of the
        batch adds its contribution to the shared parameters.
    """
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(axis=0)


class Dense:
    """A fully connected layer :math:`Z = X W^\\top + b`, initialized like ``nn.Linear``.

    ``weight`` and ``bias`` are drawn from :math:`U(-1/\\sqrt{in}, 1/\\sqrt{in})`, torch's default.
    """

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator | None = None):
        for name, v in (("n_in", n_in), ("n_out", n_out)):
            check_int(v, name, fn="Dense")
        rng = rng if rng is not None else np.random.default_rng(0)
        bound = 1.0 / np.sqrt(n_in)
        self.params = {"weight": rng.uniform(-bound, bound, (n_out, n_in)),
                       "bias": rng.uniform(-bound, bound, n_out)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x  # backward needs the input: dL/dW = G^T X
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self.x is None:
            raise RuntimeError("call forward before backward")
        grad_x, self.grads["weight"], self.grads["bias"] = dense_backward(
            self.x, self.params["weight"], grad_out)
        return grad_x

    def __repr__(self) -> str:
        n_out, n_in = self.params["weight"].shape
        return f"Dense({n_in} -> {n_out})"


class Activation:
    """An elementwise nonlinearity :math:`A = f(Z)`; backward multiplies by :math:`f'(Z)`."""

    def __init__(self, name: str):
        self.name = _check_name("activation", name, ACTIVATIONS)
        self.f, self.f_prime = ACTIVATIONS[name]
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.z: np.ndarray | None = None

    def forward(self, z: np.ndarray) -> np.ndarray:
        self.z = z  # backward needs f'(Z)
        return self.f(z)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self.z is None:
            raise RuntimeError("call forward before backward")
        return grad_out * self.f_prime(self.z)  # chain rule, elementwise

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


class MLP:
    """A multi-layer perceptron: ``Dense, Activation, Dense, Activation, ..., Dense``.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer from input to output, e.g. ``(2, 16, 1)`` is one hidden layer of 16.
    activation : str
        Hidden activation, one of :data:`ACTIVATIONS`. The output layer has none: it returns
        logits (the losses apply sigmoid / softmax themselves, stably).
    seed : int
        Seed of the initialization.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "tanh", seed: int = 0):
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output size, got {sizes}")
        _check_name("activation", activation, ACTIVATIONS)
        rng = np.random.default_rng(seed)
        self.sizes, self.activation = sizes, activation
        self.layers: list = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                self.layers.append(Activation(activation))
            self.layers.append(Dense(n_in, n_out, rng))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch ``x`` of shape (n, sizes[0]); caches what backward needs."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"expected input of shape (n, {self.sizes[0]}), got {x.shape}")
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad_logits: np.ndarray) -> np.ndarray:
        """Backpropagate :math:`\\partial L/\\partial\\text{logits}` through every layer, last
        first."""
        grad = grad_logits
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def parameters(self) -> dict[str, np.ndarray]:
        """``{"0.weight": array, ...}``: the arrays themselves (edit them to change the net)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients the last :meth:`backward` stored, with the names of :meth:`parameters`."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.grads.items()}

    def step(self, lr: float) -> None:
        """Gradient descent update
        :math:`\\theta \\leftarrow \\theta - \\eta\\,\\nabla_\\theta L`."""
        if not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"learning rate lr must be a positive number, got {lr!r}")
        for layer in self.layers:
            for k, p in layer.params.items():
                p -= lr * layer.grads[k]  # in place: parameters() keeps pointing at the same arrays

    def __repr__(self) -> str:
        n = sum(p.size for p in self.parameters().values())
        return f"MLP({' -> '.join(map(str, self.sizes))}, {self.activation}; {n} parameters)"


# --- losses (mean over the batch) and their gradients w.r.t. the network's output --------------

def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: prediction and target must have the same shape, got "
                         f"{a.shape} and {b.shape}")


def mse_loss(pred: np.ndarray, target: np.ndarray) -> float:
    """:math:`\\frac1N\\sum (\\hat y - y)^2` over all N elements (``F.mse_loss``)."""
    pred, target = np.asarray(pred, float), np.asarray(target, float)
    _same_shape(pred, target, "mse_loss")
    return float(np.mean((pred - target) ** 2))


def mse_loss_grad(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """:math:`\\partial L/\\partial\\hat y = 2(\\hat y - y)/N`."""
    pred, target = np.asarray(pred, float), np.asarray(target, float)
    _same_shape(pred, target, "mse_loss_grad")
    return 2.0 * (pred - target) / pred.size


def binary_cross_entropy_with_logits(logits: np.ndarray, target: np.ndarray) -> float:
    """Binary cross-entropy of :math:`p = \\sigma(z)`, computed from the logits ``z``.

    :math:`-[y\\log p + (1-y)\\log(1-p)] = \\max(z, 0) - z y + \\log(1 + e^{-|z|})`: the right-hand
    form never exponentiates a large number and never takes ``log(0)``, so it stays finite for
    any logit (``F.binary_cross_entropy_with_logits``).
    """
    z, y = np.asarray(logits, float), np.asarray(target, float)
    _same_shape(z, y, "binary_cross_entropy_with_logits")
    return float(np.mean(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def binary_cross_entropy_with_logits_grad(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """:math:`\\partial L/\\partial z = (\\sigma(z) - y)/N`: the sigmoid's derivative cancels."""
    z, y = np.asarray(logits, float), np.asarray(target, float)
    _same_shape(z, y, "binary_cross_entropy_with_logits_grad")
    return (sigmoid(z) - y) / z.size


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; subtracting each row's max first keeps ``exp`` from overflowing."""
    z = np.asarray(logits, float)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _check_classes(logits: np.ndarray, target: np.ndarray, what: str) -> np.ndarray:
    if logits.ndim != 2:
        raise ValueError(f"{what}: logits must have shape (n, classes), got {logits.shape}")
    target = np.asarray(target)
    if target.shape != (logits.shape[0],) or target.dtype.kind not in "iu":
        raise ValueError(f"{what}: target must be integer class indices of shape "
                         f"({logits.shape[0]},), got shape {target.shape} and dtype {target.dtype}")
    if target.size and (target.min() < 0 or target.max() >= logits.shape[1]):
        raise ValueError(f"{what}: class indices must be in [0, {logits.shape[1]}), got "
                         f"[{target.min()}, {target.max()}]")
    return target


def cross_entropy(logits: np.ndarray, target: np.ndarray) -> float:
    """Softmax cross-entropy :math:`-\\frac1n\\sum_i \\log \\mathrm{softmax}(z_i)_{y_i}`
    (``F.cross_entropy``).

    Uses :math:`\\log\\mathrm{softmax}(z)_k = z_k - m - \\log\\sum_j e^{z_j - m}` with the row max
    :math:`m`, which is finite for any logits.
    """
    z = np.asarray(logits, float)
    y = _check_classes(z, target, "cross_entropy")
    m = z.max(axis=1, keepdims=True)
    log_probs = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def cross_entropy_grad(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """:math:`\\partial L/\\partial z = (\\mathrm{softmax}(z) - \\mathrm{onehot}(y))/n`."""
    z = np.asarray(logits, float)
    y = _check_classes(z, target, "cross_entropy_grad")
    grad = softmax(z)
    grad[np.arange(len(y)), y] -= 1.0
    return grad / len(y)


#: name -> (loss, gradient of the loss w.r.t. the network's output).
LOSSES: dict[str, tuple[Callable, Callable]] = {
    "mse": (mse_loss, mse_loss_grad),
    "bce": (binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_grad),
    "cross_entropy": (cross_entropy, cross_entropy_grad),
}


def _target(loss: str, y: np.ndarray, logits_shape: tuple) -> np.ndarray:
    """Targets in the shape the loss wants: a column for one output, class indices otherwise."""
    y = np.asarray(y)
    if loss == "cross_entropy":
        return y.astype(np.int64)
    return y.astype(float).reshape(logits_shape) if y.size == np.prod(logits_shape) else y


def loss_value(net: MLP, x: np.ndarray, y: np.ndarray, loss: str = "bce") -> float:
    """The loss of ``net`` on ``x, y`` (one forward pass, no backward)."""
    loss_fn = LOSSES[_check_name("loss", loss, LOSSES)][0]
    logits = net.forward(x)
    return loss_fn(logits, _target(loss, y, logits.shape))


def loss_and_backward(net: MLP, x: np.ndarray, y: np.ndarray, loss: str = "bce") -> float:
    """One forward pass, the loss, and one backward pass; return the loss.

    Afterwards ``net.gradients()`` holds :math:`\\nabla_\\theta L` for every parameter.
    """
    loss_fn, grad_fn = LOSSES[_check_name("loss", loss, LOSSES)]
    logits = net.forward(x)
    y = _target(loss, y, logits.shape)
    value = loss_fn(logits, y)
    net.backward(grad_fn(logits, y))
    return value


def accuracy(net: MLP, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of correct predictions: logit > 0 for one output, argmax for several."""
    logits = net.forward(x)
    pred = (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(axis=1)
    return float(np.mean(pred == np.asarray(y).reshape(-1)))


def fit(net: MLP, x: np.ndarray, y: np.ndarray, loss: str = "bce", lr: float = 0.5,
        epochs: int = 100, x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
        callback: Callable[[int, MLP], None] | None = None) -> History:
    """Full-batch gradient descent: forward, loss, backward, update, ``epochs`` times.

    ``callback(epoch, net)`` runs before the first update (epoch 0) and after each epoch, e.g.
    to take snapshots. Returns a :class:`nncourse.training.History` with ``epochs + 1`` entries
    per list: index ``k`` is measured after ``k`` updates, so index 0 is the untrained net.
    """
    _check_name("loss", loss, LOSSES)
    check_int(epochs, "epochs", low=0, fn="fit")
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"learning rate lr must be a positive number, got {lr!r}")
    loss_fn = LOSSES[loss][0]
    h = History(epochs_run=epochs)

    def record(epoch: int, train_loss: float) -> None:
        h.train_loss.append(train_loss)
        h.train_acc.append(accuracy(net, x, y) if loss != "mse" else float("nan"))
        if x_val is not None:
            logits = net.forward(x_val)
            h.val_loss.append(loss_fn(logits, _target(loss, y_val, logits.shape)))
            h.val_acc.append(accuracy(net, x_val, y_val) if loss != "mse" else float("nan"))
        if callback is not None:
            callback(epoch, net)

    for epoch in progress(range(epochs + 1), desc="training", unit="epoch"):
        # forward + loss + backward at the current weights (after `epoch` updates)...
        value = loss_and_backward(net, x, y, loss)
        record(epoch, value)
        if epoch < epochs:
            net.step(lr)  # ...then the update
    return h


def to_torch(net: MLP):
    """The same network as a float64 ``nn.Sequential`` with a copy of the same weights."""
    import torch
    from torch import nn

    from nncourse.activations import module

    layers = []
    for layer in net.layers:
        if isinstance(layer, Dense):
            n_out, n_in = layer.params["weight"].shape
            lin = nn.Linear(n_in, n_out, dtype=torch.float64)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.params["weight"]))
                lin.bias.copy_(torch.from_numpy(layer.params["bias"]))
            layers.append(lin)
        else:
            layers.append(module(layer.name))
    return nn.Sequential(*layers)
