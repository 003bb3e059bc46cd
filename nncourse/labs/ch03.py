"""The experiments of chapter 03 (weight initialization) and its widget.

Two kinds of experiment:

* **Training on circles** (:func:`train_circles`, :func:`compare_on_circles`): the 2-10-5-1 ReLU
  network of the classic comparison (zero / large random / He initialization) trained on
  ``make_circles`` with full-batch gradient descent.
* **Signal through depth** (:func:`propagate`): push a batch of standard-normal inputs through a
  plain deep network ``h <- act(h @ W.T)`` and record the standard deviation of every layer's
  activations. The weights of layer ``l`` are ``std * Z_l`` with ``Z_l`` standard normal (drawn once
  and cached, so the widget only redoes the matrix products): every scheme here is a normal
  distribution, and what distinguishes them is the variance, which :func:`weight_std` computes with
  the formulas of :mod:`nncourse.init`.

:func:`explore_initialization` is the chapter's widget.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from matplotlib import ticker
from torch import nn

from nncourse import activations, init
from nncourse._validate import check_int
from nncourse.data import Dataset, load_circles
from nncourse.env import progress
from nncourse.models import make_mlp
from nncourse.plotting import color
from nncourse.training import History, evaluate, train
from nncourse.widgets import Prefetcher, freeze_layout, interactive_figure, steady_limits

__all__ = ["REFERENCE", "RECIPES", "CirclesRun", "circles", "circles_model", "train_circles",
           "compare_on_circles", "unit_spread", "ACTIVATIONS", "WEIGHTS", "weight_std",
           "Profile", "propagate", "std_table", "format_std", "plot_std_vs_depth",
           "plot_histograms", "widget_profile", "explore_initialization", "gradient_profile",
           "DEEP_RUNS", "train_deep"]

# --- training on circles ------------------------------------------------------------------------

#: The classic comparison (deeplearning.ai, *Improving Deep Neural Networks*, "Initialization"):
#: a 2-10-5-1 ReLU net, 15 000 full-batch steps at lr 0.01 on make_circles (300 train / 100 test).
#: Final train loss and train / test accuracy as published.
REFERENCE = {"zeros": {"loss": 0.693, "train_acc": 0.50, "test_acc": 0.50},
             "large": {"loss": None, "train_acc": 0.83, "test_acc": 0.86},
             "he": {"loss": None, "train_acc": 0.993, "test_acc": 0.96}}

#: The circles experiment's named recipes: keyword arguments of :func:`nncourse.init.init_model_`
#: (its scheme names are the course's one vocabulary, :data:`nncourse.init.SCHEMES`).
RECIPES = {
    "zeros": {"scheme": "zeros"},
    "constant": {"scheme": "constant", "value": 0.5},
    "large": {"scheme": "normal", "std": 10.0},    # randn * 10, as in the reference
    "small": {"scheme": "normal", "std": 0.01},
    "he": {"scheme": "he_normal", "nonlinearity": "relu"},
}


@dataclass
class CirclesRun:
    """One training run on circles."""

    name: str
    seed: int
    model: nn.Module
    history: History
    initial_loss: float
    test_loss: float
    test_acc: float

    @property
    def train_acc(self) -> float:
        return self.history.train_acc[-1]

    @property
    def train_loss(self) -> float:
        return self.history.train_loss[-1]


@lru_cache(maxsize=1)
def circles() -> Dataset:
    """500 points of make_circles (noise 0.1): 300 train, 100 validation, 100 test."""
    return load_circles(n_samples=500, noise=0.1, seed=0)


def circles_model(name: str, seed: int = 0, bias: float | str = 0.0) -> nn.Sequential:
    """The 2-10-5-1 ReLU network, initialized with recipe ``name`` (see :data:`RECIPES`)."""
    if name not in RECIPES:
        raise ValueError(f"init must be one of {', '.join(RECIPES)}; got {name!r}")
    model = make_mlp(2, 1, width=[10, 5], activation="relu")
    recipe = dict(RECIPES[name])
    if bias == "normal":
        recipe["std"] = recipe.get("std", 0.1)
    return init.init_model_(model, seed=seed, bias=bias, **recipe)


def train_circles(name: str, seed: int = 0, epochs: int = 500, lr: float = 0.1,
                  bias: float | str = 0.0) -> CirclesRun:
    """Train :func:`circles_model` with full-batch gradient descent; evaluate on the test split."""
    data = circles()
    model = circles_model(name, seed, bias)
    initial_loss, _ = evaluate(model, data.X_train, data.y_train)
    history = train(model, data, epochs=epochs, lr=lr, batch_size=None, seed=seed,
                    progress=False, evaluate_val=False)
    test_loss, test_acc = evaluate(model, data.X_test, data.y_test)
    return CirclesRun(name, seed, model, history, initial_loss, test_loss, test_acc)


@lru_cache(maxsize=2)
def compare_on_circles(seeds: tuple[int, ...] = (0, 1, 2), epochs: int = 500,
                       lr: float = 0.1) -> dict[str, list[CirclesRun]]:
    """Train with zeros (one seed: it draws nothing), large random and He initialization."""
    return {"zeros": [train_circles("zeros", 0, epochs, lr)],
            "large": [train_circles("large", s, epochs, lr) for s in progress(seeds, "large")],
            "he": [train_circles("he", s, epochs, lr) for s in progress(seeds, "he")]}


@torch.no_grad()
def unit_spread(layer: nn.Linear) -> float:
    """Largest difference between any unit's incoming weights (and bias) and unit 0's.

    0 means every unit of the layer computes exactly the same function.
    """
    params = layer.weight if layer.bias is None else torch.cat([layer.weight,
                                                               layer.bias[:, None]], 1)
    return (params - params[0]).abs().max().item()


# --- signal through depth -----------------------------------------------------------------------

#: Activations of the depth experiments (names from the course's table,
#: :data:`nncourse.activations.ZOO`).
ACTIVATIONS = ("linear", "tanh", "sigmoid", "relu", "leaky_relu", "selu")

#: Weights of the depth experiments: ``key -> (label, scheme, std)``, with ``scheme`` from
#: :data:`nncourse.init.SCHEMES` and ``std`` the fixed std of the ``normal`` scheme.
WEIGHTS = {"normal_0.01": ("N(0, 0.01²)", "normal", 0.01),
           "normal_1": ("N(0, 1)", "normal", 1.0),
           "lecun_normal": ("LeCun: 1/fan_in", "lecun_normal", None),
           "xavier_normal": ("Xavier: 2/(fan_in+fan_out)", "xavier_normal", None),
           "he_normal": ("He: 2/fan_in", "he_normal", None)}


def weight_std(weights: str, fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Standard deviation of the weights ``weights`` (a key of :data:`WEIGHTS`), times ``gain``.

    Matches :func:`nncourse.init.xavier_normal_` (``xavier_normal``), ``kaiming_normal_(
    nonlinearity="relu")`` (``he_normal``) and :func:`~nncourse.init.lecun_normal_`
    (``lecun_normal``) with gain 1.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}; got {weights!r}")
    _, scheme, std = WEIGHTS[weights]
    base = {"normal": std, "lecun_normal": 1.0 / math.sqrt(fan_in),
            "xavier_normal": math.sqrt(2.0 / (fan_in + fan_out)),
            "he_normal": math.sqrt(2.0 / fan_in)}[scheme]
    return gain * base


@lru_cache(maxsize=4)
def _standard_draws(depth: int, width: int, batch: int, seed: int):
    """Inputs ``x`` (batch, width) and weights ``Z`` (depth, width, width), all N(0, 1), float64."""
    gen = torch.Generator().manual_seed(seed)
    x = init.normal_(torch.empty(batch, width, dtype=torch.float64), generator=gen)
    z = init.normal_(torch.empty(depth, width, width, dtype=torch.float64), generator=gen)
    return x, z


@dataclass
class Profile:
    """Activation statistics of a deep plain network, one entry per layer (1 = first)."""

    scheme: str
    activation: str
    gain: float
    stds: np.ndarray
    #: Fraction of activations within 0.01 of a tanh/sigmoid bound (0 for other activations).
    saturated: np.ndarray
    values: dict[int, np.ndarray]
    #: 99.5 % quantile of ``|values|`` over the kept layers, if known (the histograms' range).
    limit: float | None = None
    #: What :func:`widget_profile` keeps instead of ``values``: per kept layer, the quantiles of
    #: its values at levels ``0, 1/(Q-1), ..., 1`` (:func:`_quantile_fractions`).
    quantiles: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return len(self.stds)

    @property
    def kept(self) -> tuple[int, ...]:
        """The layers whose histograms are known."""
        return tuple(sorted(set(self.values) | set(self.quantiles)))

    def fractions(self, layer: int, edges: np.ndarray) -> np.ndarray:
        """Fraction of layer ``layer``'s activations per bin of ``edges`` (values beyond the
        edges count in the outermost bins): exact from ``values``, within ``2 / (Q - 1)`` per bin
        from ``quantiles``."""
        if layer in self.values:
            return _fractions(self.values[layer], edges)
        return _quantile_fractions(self.quantiles[layer], edges)


@torch.no_grad()
def propagate(scheme: str, activation: str, depth: int = 50, gain: float = 1.0, width: int = 128,
              batch: int = 256, seed: int = 0, keep: tuple[int, ...] = ()) -> Profile:
    """Push ``batch`` standard-normal inputs through ``depth`` layers ``h <- act(h @ W.T)``.

    Computed in float64, so an exploding (1e50) or vanishing (1e-50) signal is measured rather
    than overflowing to inf. ``keep`` lists the (1-based) layers whose activation values are
    returned, for histograms.
    """
    _validate(activation, depth, width, batch, gain, keep)
    std = weight_std(scheme, width, width, gain)
    x, z = _standard_draws(max(depth, 100), width, batch, seed)
    stds, saturated, values = [], [], {}
    for layer, h in enumerate(_layers(x, z, std, activation, 0, depth), start=1):
        stds.append(h.std().item())
        saturated.append(_saturated_fraction(h, activation))
        if layer in keep:
            values[layer] = h.reshape(-1).numpy().copy()
    return Profile(scheme, activation, gain, np.array(stds), np.array(saturated), values)


def _layers(h: torch.Tensor, z: torch.Tensor, std: float, activation: str, start: int,
            stop: int):
    """Yield layers ``start + 1 .. stop`` of ``h <- act(h @ (std * Z_l).T)``, from ``h`` at
    layer ``start`` (the one place both :func:`propagate` and the widget's cache compute them)."""
    act = activations.module(activation)
    for layer in range(start, stop):
        h = act(h @ z[layer].T * std)
        yield h


def _validate(activation, depth, width, batch, gain, keep) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    for name, v in (("depth", depth), ("width", width), ("batch", batch)):
        check_int(v, name)
    if not (isinstance(gain, (int, float)) and gain > 0):
        raise ValueError(f"gain must be a positive number, got {gain!r}")
    if any(not 1 <= k <= depth for k in keep):
        raise ValueError(f"keep must list layers in [1, {depth}], got {keep!r}")


def _saturated_fraction(h: torch.Tensor, activation: str) -> float:
    if activation == "tanh":
        return (h.abs() > 0.99).double().mean().item()
    if activation == "sigmoid":
        return ((h < 0.01) | (h > 0.99)).double().mean().item()
    return 0.0


def std_table(schemes: dict[str, tuple[str, float]], activations: tuple[str, ...],
              depth: int = 50, **kwargs) -> dict[str, dict[str, Profile]]:
    """``{row label: {activation: Profile}}`` for rows ``{label: (scheme, gain)}``."""
    return {label: {a: propagate(s, a, depth, g, **kwargs) for a in activations}
            for label, (s, g) in schemes.items()}


def format_std(value: float) -> str:
    """A standard deviation for printing: 3 significant digits between 1e-3 and 1e3, else 1.

    A signal that vanished to 1e-48 or exploded to 1e+52 only matters by its order of magnitude,
    and one significant digit of it does not depend on the rounding of any particular CPU kernel.
    """
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e3 else f"{value:.0e}"


def _floor(values: np.ndarray) -> np.ndarray:
    # A signal that vanished to exactly 0 cannot be drawn on a log axis: draw it at the floor.
    return np.maximum(values, 1e-300)


def plot_std_vs_depth(profiles: dict[str, Profile], ax=None, title: str | None = None,
                      colors: dict[str, str] | None = None):
    """One line per profile: activation std per layer, log scale."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    for label, p in profiles.items():
        c = (colors or {}).get(label, color(label))
        ax.plot(np.arange(1, p.depth + 1), _floor(p.stds), "-", color=c, label=label)
    _label_std_axes(ax)
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def _label_std_axes(ax) -> None:
    ax.set_yscale("log")
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("std of activations (log scale)")


def _label_histogram_axes(ax) -> None:
    ax.set_xlabel("activation value")
    ax.set_ylabel("fraction of values")


def _fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of ``values`` per bin; values beyond the edges count in the outermost bins."""
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), edges)
    return counts / values.size


def _quantile_fractions(quantiles: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """:func:`_fractions` from quantiles at levels ``0, 1/(Q-1), ..., 1`` instead of the values.

    The fraction of values below ``x`` is interpolated linearly between the two quantiles around
    ``x`` (ties -- ReLU's zeros -- count as not below, as in ``np.histogram``'s half-open bins),
    so each bin is within ``2 / (Q - 1)`` (plus the quantiles' own ``4 / n``) of the exact one,
    and much closer where the distribution is smooth.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, q.size)
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    i = np.searchsorted(q, inner, side="left")  # quantiles strictly below each edge
    lo, hi = np.clip(i - 1, 0, q.size - 1), np.clip(i, 0, q.size - 1)
    gap = q[hi] - q[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(gap > 0, (inner - q[lo]) / gap, 1.0)
    below = np.where(i == 0, 0.0, np.where(i == q.size, 1.0,
                                           levels[lo] + t * (levels[hi] - levels[lo])))
    return np.diff(np.concatenate([[0.0], below, [1.0]]))


def _layer_colors(n: int) -> list:
    import matplotlib.pyplot as plt

    return [plt.get_cmap("viridis")(v) for v in np.linspace(0.0, 0.85, n)]


def plot_histograms(profile: Profile, ax=None, title: str | None = None, bins: int = 60,
                    limit: float | None = None):
    """Histograms (as step lines) of the kept layers' activations, lighter for deeper layers."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    limit = limit or _histogram_limit(profile)
    edges = np.linspace(-limit, limit, bins + 1)
    for c, layer in zip(_layer_colors(len(profile.kept)), profile.kept):
        ax.stairs(profile.fractions(layer, edges), edges, color=c, label=f"layer {layer}")
    _label_histogram_axes(ax)
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def _histogram_limit(profile: Profile) -> float:
    peak = profile.limit
    if peak is None:
        peak = max(float(np.quantile(np.abs(v), 0.995)) for v in profile.values.values())
    return peak if peak > 0 else 1.0


def _kept_layers(depth: int) -> tuple[int, ...]:
    return tuple(sorted({1, max(1, round(depth / 3)), max(1, round(2 * depth / 3)), depth}))


# --- the widget ---------------------------------------------------------------------------------

#: Activations with act(c * x) = c * act(x) for c > 0: multiplying every weight by ``gain`` then
#: multiplies layer l by ``gain ** l``, so one forward pass serves every gain.
_HOMOGENEOUS = ("linear", "relu", "leaky_relu")
#: Quantiles kept per layer (levels 0, 1/1024, ..., 1 of ``h / std``): a histogram bin from them
#: is within 2/1024 of the exact fraction (:func:`_quantile_fractions`), in 4 KB a layer.
_QUANTILES = 1025
_FORWARD_CACHE: OrderedDict = OrderedDict()  # (activation, std, width, batch, seed) -> _Pass
_CACHE_LAYERS = 8000  # layers kept over all passes (~4 KB each: ~33 MB, 160 passes of 50 layers)
_KEEP_LAST = 48  # the most recently used passes keep their last layer (256 KB), to extend them
#: Held while a pass is computed or the cache changes: the widget (main thread) and
#: ``_PREFETCH`` (a :class:`~nncourse.widgets.Prefetcher`, a background thread) share the cache.
_LOCK = threading.RLock()


@dataclass
class _Pass:
    """Per-layer statistics of one forward pass, as far as it has been computed."""

    stds: list = field(default_factory=list)
    saturated: list = field(default_factory=list)
    quantiles: list = field(default_factory=list)  # float32 quantiles of h / std
    q995: list = field(default_factory=list)  # 99.5 % quantile of |h / std|
    h: torch.Tensor | None = None  # the last computed layer, if kept
    h_layer: int = 0  # which layer h is (below ``done`` while recomputing a dropped one)

    @property
    def done(self) -> int:
        return len(self.stds)


def _abs_quantile(ordered: np.ndarray, q: float) -> float:
    """``np.quantile(np.abs(u), q)`` from ``u`` sorted (``ordered``), for ``q`` near 1: the
    largest ``|u|`` are among the lowest and highest ``u``, so only those are sorted again."""
    n = ordered.size
    pos = q * (n - 1)
    lo = int(math.floor(pos))
    need = n - lo  # ranks lo .. n - 1 of |u|
    part = ordered if 2 * need >= n else np.concatenate([ordered[:need], ordered[-need:]])
    top = np.sort(np.abs(part))[-need:]
    a, b = float(top[0]), float(top[min(1, need - 1)])
    return a + (pos - lo) * (b - a)


def _summarize(entry: _Pass, h: torch.Tensor, activation: str) -> None:
    """Append layer ``h``'s statistics to ``entry``."""
    s = h.std().item()
    ordered = np.sort((h / s if s > 0 else h).reshape(-1).to(torch.float32).numpy())
    pos = np.linspace(0.0, ordered.size - 1, _QUANTILES)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, ordered.size - 1)
    q = ordered[lo] + (pos - lo) * (ordered[hi].astype(np.float64) - ordered[lo])
    entry.stds.append(s)
    entry.saturated.append(_saturated_fraction(h, activation))
    entry.quantiles.append(q.astype(np.float32))
    entry.q995.append(_abs_quantile(ordered, 0.995))


def _cached_pass(key: tuple) -> _Pass:
    """The cache entry of ``key`` (created empty if missing), made the most recently used; the
    least recently used passes beyond the cache's budget are dropped. Call with ``_LOCK`` held."""
    entry = _FORWARD_CACHE.pop(key, None) or _Pass()
    _FORWARD_CACHE[key] = entry  # most recently used last
    layers = sum(e.done for e in _FORWARD_CACHE.values())
    while layers > _CACHE_LAYERS and len(_FORWARD_CACHE) > 1:
        layers -= _FORWARD_CACHE.popitem(last=False)[1].done
    for old in list(_FORWARD_CACHE.values())[:-_KEEP_LAST]:
        old.h = None  # 256 KB each: only the recent passes keep it
    return entry


@torch.no_grad()
def _extend(entry: _Pass, key: tuple, depth: int, most: int | None = None) -> bool:
    """Compute ``entry``'s layers up to ``depth`` (at most ``most`` layers now); True when done.

    Continues from the kept last layer, or recomputes the layers already summarized from the
    input when it was dropped: the same arithmetic as :func:`propagate`, so the same numbers.
    Call with ``_LOCK`` held.
    """
    activation, std, width, batch, seed = key
    if entry.done >= depth:
        return True
    _, z = _standard_draws(max(depth, 100), width, batch, seed)
    if entry.h is None:
        entry.h, entry.h_layer = _standard_draws(100, width, batch, seed)[0], 0
    start = entry.h_layer
    stop = depth if most is None else min(depth, start + most)
    for layer, h in enumerate(_layers(entry.h, z, std, activation, start, stop), start=start + 1):
        if layer > entry.done:
            _summarize(entry, h, activation)
        entry.h, entry.h_layer = h, layer
    return entry.done >= depth


def _forward(activation: str, std: float, depth: int, width: int, batch: int, seed: int) -> _Pass:
    """Per-layer statistics of :func:`propagate`'s network with weight std ``std``, cached.

    The first ``depth`` layers are computed once and extended when a deeper network is asked for
    (every depth uses the same weights, so a shallower network is a prefix of a deeper one). Each
    layer keeps its std, saturated fraction and the quantiles of ``h / std`` (the shape of its
    histogram; the std restores the scale).
    """
    key = (activation, std, width, batch, seed)
    with _LOCK:
        entry = _cached_pass(key)
        _extend(entry, key, depth)
        return entry


def _pass_key(scheme: str, activation: str, gain: float, width: int, batch: int,
              seed: int) -> tuple:
    """The cache key of the pass that :func:`widget_profile` reads for these settings."""
    base = weight_std(scheme, width, width)
    std = base if activation in _HOMOGENEOUS else base * gain
    return (activation, std, width, batch, seed)


def widget_profile(scheme: str, activation: str, depth: int = 50, gain: float = 1.0,
                   width: int = 128, batch: int = 256, seed: int = 0,
                   keep: tuple[int, ...] = ()) -> Profile:
    """:func:`propagate`'s result from cached forward passes: what the widget draws.

    The same stds and saturated fractions; instead of the kept layers' values, their quantiles
    (:attr:`Profile.quantiles`, float32 precision times the float64 std), from which the
    histograms are computed (:meth:`Profile.fractions`). For linear, ReLU and leaky ReLU a change
    of gain only rescales a cached pass; for the other activations each new (weight std,
    activation) pair costs one forward pass, and changing the depth costs at most the extra
    layers.
    """
    _validate(activation, depth, width, batch, gain, keep)
    key = _pass_key(scheme, activation, gain, width, batch, seed)
    entry = _forward(*key[:2], depth, *key[2:])
    factor = (float(gain) ** np.arange(1, depth + 1) if activation in _HOMOGENEOUS
              else np.ones(depth))
    stds = np.asarray(entry.stds[:depth]) * factor
    quantiles = {k: entry.quantiles[k - 1].astype(np.float64) * stds[k - 1] for k in keep}
    limit = max((entry.q995[k - 1] * stds[k - 1] for k in keep), default=None)
    return Profile(scheme, activation, gain, stds, np.asarray(entry.saturated[:depth]), {},
                   limit, quantiles)


def _prefetch_plan(scheme: str, gain: float, activation: str, depth: int, width: int,
                   batch: int, gains: tuple[float, ...] = (), seed: int = 0,
                   deeper: int | None = None) -> list[tuple]:
    """The passes the widget may need next, nearest first, as ``(key, depth)``.

    The two nearest ``gains`` (the gain slider's next step either way) if the activation's pass
    depends on the gain (tanh, sigmoid, SELU); every other weight scheme and activation at the
    current gain and depth (the next options of each dropdown first); then the other
    activations' passes at the neighbouring ``gains``; then, if ``deeper`` is given, the same
    passes again to that depth. Passes already computed are left out.
    """
    schemes, acts = list(WEIGHTS), list(ACTIVATIONS)

    def around(options, current):
        i = options.index(current)
        order = sorted(range(len(options)), key=lambda j: (min((j - i) % len(options),
                                                                 (i - j) % len(options)),
                                                             (j - i) % len(options)))
        return [options[j] for j in order]

    pairs = [(scheme, activation)] + [(scheme, activation, g) for g in gains[:2]
                                      if activation not in _HOMOGENEOUS]
    for s, a in zip(around(schemes, scheme), around(acts, activation)):
        pairs += [(s, activation), (scheme, a)]
    pairs += [(s, a) for s in around(schemes, scheme) for a in around(acts, activation)]
    pairs += [(scheme, a, g) for g in gains for a in around(acts, activation)
              if a not in _HOMOGENEOUS]
    keys = []
    for item in pairs:
        s, a, g = item if len(item) == 3 else (*item, gain)
        key = _pass_key(s, a, g, width, batch, seed)
        if key not in keys:
            keys.append(key)
    # every pass at the depth shown first, then the few layers more the depth slider may add
    return [(key, d) for d in dict.fromkeys((depth, deeper or depth)) for key in keys
            if key not in _FORWARD_CACHE or _FORWARD_CACHE[key].done < d]


def _prefetch_step(item) -> bool:
    """One layer of a planned pass (under ``_LOCK``); True when the pass is complete."""
    key, depth = item
    with _LOCK:
        return _extend(_cached_pass(key), key, depth, most=1)


#: Computes :func:`_prefetch_plan`'s passes in a background thread while the kernel is idle.
#: Started only when a browser shows the widget (``interactive_figure``'s ``on_idle``); the
#: widget pauses it while it draws a frame; one layer at a time under ``_LOCK``, so a frame waits
#: for at most one layer. Results are the same whichever thread computes them.
_PREFETCH = Prefetcher(_prefetch_step, "nncourse-ch03-prefetch")


def _pin_layout(fig, ax_std, ax_hist) -> None:
    """Lay the figure out once with the widest tick labels the axes can show -- 1e-120 on the
    log axis, a label on the histogram's right edge (-0.30 ... 0.30) -- then keep axes and axis
    labels there (:func:`~nncourse.widgets.freeze_layout`): later redraws fit without
    re-measuring."""
    engine = fig.get_layout_engine()
    if engine is None or type(engine).__name__ == "PlaceHolderLayoutEngine":
        return
    limits, ticks, hist_limits = ax_std.get_ylim(), ax_std.get_yticks(), ax_hist.get_xlim()
    locator = ax_std.yaxis.get_major_locator()
    ax_std.set_ylim(1e-120, 1e-100)  # six-character tick labels, the widest possible
    ax_std.set_yticks(_decade_ticks(1e-120, 1e-100))
    ax_hist.set_xlim(-0.3, 0.3)
    freeze_layout(fig)
    ax_std.set_ylim(limits)
    ax_std.set_yticks(ticks)
    if isinstance(locator, _DecadeLocator):  # the widget's: ticks follow the limits
        ax_std.yaxis.set_major_locator(locator)
    ax_hist.set_xlim(hist_limits)


class _DecadeLocator(ticker.Locator):
    """Ticks at :func:`_decade_ticks` within the axis' current limits: they follow the limits
    without a ``set_yticks`` (which would repaint the axis) on every redraw."""

    def __call__(self):
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin, vmax):
        return _decade_ticks(min(vmin, vmax), max(vmin, vmax))


def _decade_ticks(low: float, high: float, most: int = 6) -> np.ndarray:
    """Powers of ten within [low, high], every 1, 2, 5, 10, 20, 25 or 50... decades (round
    steps)."""
    first, last = math.ceil(math.log10(low)), math.floor(math.log10(high))
    span = max(last - first, 1)
    step = next(k for k in (1, 2, 5, 10, 20, 25, 50, 100, 200) if span / k <= most - 1)
    exponents = np.arange(math.ceil(first / step) * step, last + 1, step)
    return 10.0 ** exponents


def _decade_label(value: float, _pos=None) -> str:
    return f"1e{round(math.log10(value)):+d}" if value > 0 else ""


def explore_initialization(static: bool = False, width: int = 128, batch: int = 256):
    """Widget: weight scheme, gain, activation and depth -> per-layer std and histograms.

    Left: the std of each layer's activations (log scale). Right: histograms of the activations at
    the first layer, one third, two thirds and the last layer. Values outside the plotted range
    are piled into the outermost bins. Forward passes are cached (:func:`widget_profile`) and the
    artists are updated in place.
    """
    import ipywidgets as W

    style = {"description_width": "initial"}
    controls = {
        "scheme": W.Dropdown(options=[(label, key) for key, (label, _, _) in WEIGHTS.items()],
                             value="xavier_normal", description="weights", style=style),
        "gain": W.FloatSlider(value=1.0, min=0.25, max=3.0, step=0.05, description="gain",
                              style=style),
        "activation": W.Dropdown(options=ACTIVATIONS, value="tanh",
                                 description="activation", style=style),
        "depth": W.IntSlider(value=50, min=2, max=100, description="depth", style=style),
    }
    bins = 60

    def first_draw(ax_std, ax_hist, state):
        state["line"], = ax_std.plot([], [], "o-", ms=2.5)
        _label_std_axes(ax_std)
        # Decade ticks with plain-text labels, no minor ticks: mathtext labels and minor ticks
        # were a large part of a redraw.
        ax_std.yaxis.set_major_formatter(ticker.FuncFormatter(_decade_label))
        ax_std.yaxis.set_major_locator(_DecadeLocator())
        ax_std.yaxis.set_minor_locator(ticker.NullLocator())
        ax_std.xaxis.set_major_locator(ticker.MaxNLocator(5, integer=True, steps=[1, 2, 5, 10]))
        _label_histogram_axes(ax_hist)
        # Ticks and gridlines under the histograms: they are then part of the cached
        # background, not repainted with the histograms on every move.
        ax_hist.set_axisbelow(True)
        ax_hist.xaxis.set_major_locator(ticker.MaxNLocator(5))
        ax_hist.yaxis.set_major_locator(ticker.MaxNLocator(4))
        edges = np.linspace(-1, 1, bins + 1)
        # No legend (its texts cost a redraw time): the title names the layers, dark to light.
        state["stairs"] = [ax_hist.stairs(np.zeros(bins), edges, color=c)
                           for c in _layer_colors(4)]
        # An explicit y turns off the title's automatic placement (it measures tick labels).
        state["std_title"] = ax_std.set_title(" ", y=1.0)
        state["hist_title"] = ax_hist.set_title(" ", y=1.0)

    gains = np.round(np.arange(controls["gain"].min, controls["gain"].max + 1e-9,
                               controls["gain"].step), 10)

    def prefetch(values: dict) -> None:
        # After each frame shown in a browser: compute what the next moves may need.
        g = round(float(values["gain"]), 6)
        near = sorted((round(float(x), 6) for x in gains
                       if abs(x - g) > 1e-9 and abs(x - g) <= 2.5 * controls["gain"].step),
                      key=lambda x: (round(abs(x - g), 6), -x))  # nearest, higher first
        with _LOCK:
            # then a few layers deeper than shown: the depth slider's next moves
            deeper = min(controls["depth"].max, values["depth"] + 10)
            plan = _prefetch_plan(values["scheme"], g, values["activation"], values["depth"],
                                  width, batch, tuple(near), deeper=deeper)
        _PREFETCH.resume(plan)

    def draw(axes, state, scheme, gain, activation, depth):
        _PREFETCH.pause()  # the frame first
        gain = round(float(gain), 6)  # the gain shown, whatever the browser's float arithmetic
        keep = _kept_layers(depth)
        p = widget_profile(scheme, activation, depth, gain, width, batch, keep=keep)
        ax_std, ax_hist = axes
        if "line" not in state:
            first_draw(ax_std, ax_hist, state)
        shown = _floor(p.stds)
        state["line"].set_data(np.arange(1, depth + 1), shown)
        state["line"].set_color(color(activation))
        # At least 1e-3..10 on the log axis, so a healthy signal looks flat rather than zoomed in.
        # Limits hold while the data fit them well (steady_limits): a move then repaints the
        # line over the cached axes instead of redrawing every tick label.
        steady_limits(ax_std, "x", 0, depth + 1, fill=0.6)
        steady_limits(ax_std, "y", shown.min() / 2, shown.max() * 2, at_least=(1e-3, 10.0))
        # The scheme and its weight std in the title: Xavier and LeCun coincide for square
        # layers, and a learner who switches between them should see why nothing else moves.
        w_std = weight_std(scheme, width, width, gain)
        state["std_title"].set_text(f"{activation}, {depth} layers, "
                                    f"{WEIGHTS[scheme][0].split(':')[0]} weights (std {w_std:.3g})"
                                    f"\n→ layer {depth}: std {format_std(p.stds[-1])}")
        # The bins span the shown range, which holds while the values fit it well.
        steady_limits(ax_hist, "x", -_histogram_limit(p), _histogram_limit(p), fill=0.7)
        limit = ax_hist.get_xlim()[1]
        edges = np.linspace(-limit, limit, bins + 1)
        top = 0.0
        for i, artist in enumerate(state["stairs"]):
            if i < len(keep):
                frac = p.fractions(keep[i], edges)
                artist.set_data(frac, edges)
                top = max(top, frac.max())
                artist.set_label(f"layer {keep[i]}")
            artist.set_visible(i < len(keep))
        steady_limits(ax_hist, "y", 0, 1.1 * top, fill=0.3)
        state["hist_title"].set_text(f"layers {', '.join(map(str, keep))} (dark → light)")
        if not state.get("pinned"):
            _pin_layout(ax_std.figure, ax_std, ax_hist)
            state["pinned"] = True

    return interactive_figure(draw, controls, ncols=2, figsize=(9.5, 3.6), static=static,
                              on_idle=prefetch)


# --- 4b. the backward pass, and training ------------------------------------------------------

def gradient_profile(scheme: str, activation: str, depth: int = 50, gain: float = 1.0,
                     width: int = 128, batch: int = 256, seed: int = 0) -> np.ndarray:
    """Weight-gradient norm ``||dL/dW_l||`` of every layer of :func:`propagate`'s network.

    Same inputs and weights as :func:`propagate` (float64). The loss is a fixed random
    projection of the last layer, ``L = sum(h_L * r) / batch`` with ``r`` standard normal, so the
    gradient that enters the top layer has the same size for every scheme and only what the
    layers do to it on the way back differs. Returns one norm per layer, input to output.
    """
    _validate(activation, depth, width, batch, gain, ())
    std = weight_std(scheme, width, width, gain)
    x, z = _standard_draws(max(depth, 100), width, batch, seed)
    weights = [(z[layer] * std).clone().requires_grad_(True) for layer in range(depth)]
    act = activations.module(activation)
    h = x
    for w in weights:
        h = act(h @ w.T)
    r = torch.randn(h.shape, generator=torch.Generator().manual_seed(seed + 1),
                    dtype=torch.float64)
    ((h * r).sum() / batch).backward()
    return np.array([w.grad.norm().item() for w in weights])


#: The deep networks :func:`train_deep` compares: ``label -> (activation, init, init_gain,
#: init_scale)`` in :func:`nncourse.models.make_mlp`'s vocabulary (``normal`` is N(0, 0.01²), so
#: a scale of 100 gives N(0, 1)).
DEEP_RUNS = {"tanh, N(0, 1)": ("tanh", "normal", None, 100.0),
             "tanh, Xavier": ("tanh", "xavier_normal", None, 1.0),
             "tanh, Xavier, gain 5/3": ("tanh", "xavier_normal", 5 / 3, 1.0),
             "ReLU, Xavier": ("relu", "xavier_normal", None, 1.0),
             "ReLU, He": ("relu", "he_normal", None, 1.0)}


@lru_cache(maxsize=2)
def train_deep(seeds: tuple[int, ...] = (0, 1, 2), depth: int = 10, width: int = 64,
               epochs: int = 5, lr: float = 0.05) -> dict[str, list[History]]:
    """Train each network of :data:`DEEP_RUNS` on the digits, once per seed.

    ``depth`` hidden layers of ``width`` units, mini-batch SGD at ``lr`` for ``epochs`` epochs:
    the same budget for every initialization. Returns ``{label: [History per seed]}``.
    """
    from nncourse.data import load_digits

    check_int(depth, "depth")
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"train_deep: seeds must be a non-empty tuple of ints, got {seeds!r}")
    data = load_digits(seed=0)
    runs = {}
    for label, (activation, scheme, gain, scale) in progress(DEEP_RUNS.items(), "runs"):
        runs[label] = []
        for seed in seeds:
            model = make_mlp(64, 10, width=width, depth=depth, activation=activation,
                             init=scheme, init_gain=gain, init_scale=scale, seed=seed)
            runs[label].append(train(model, data, epochs=epochs, lr=lr, seed=seed,
                                     progress=False))
    return runs
