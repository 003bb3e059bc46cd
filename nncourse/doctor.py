"""A training doctor: why will this network not train? The cause, with its evidence.

``report = diagnose(model, X_train, y_train, X_val, y_val, optimizer="adam", lr=1e-3)`` looks at
the data, the model's output and initial state, then runs a short instrumented training on a
*copy* of the model (the model passed in is left as it was) with the course's own tools --
:func:`nncourse.diagnostics.activation_stats`, :func:`~nncourse.diagnostics.gradient_norms`,
:class:`~nncourse.diagnostics.GradientMonitor` and :func:`nncourse.training.train` -- and returns a
:class:`Report`::

    report.findings   # list of Finding, most likely cause first; empty when healthy
    report.healthy    # True when nothing was found
    print(report)     # each finding with its evidence (the number), the fix and the chapter

Every cause is one of :data:`CAUSES`. The findings are ordered along the path a training run
takes -- data, then the wiring of model, loss and loop, then the initial state, then the
optimizer, then generalization -- because a fault upstream produces symptoms downstream and not
the reverse: unscaled inputs saturate units and inflate gradients, a too-large initialization
makes the loss diverge at any learning rate. The first finding is the one to fix first.

Every threshold is a constant of this module, derived from a principle stated where it is
defined (a unit-scale signal, the sigmoid's slope of at most 1/4, the ~1e-3 update-to-weight rule
of thumb, a 3-standard-error test against chance) with wide margins -- not fitted to a benchmark.

What it cannot see (on purpose, to keep one diagnosis to a few seconds): regression targets
(classification only), bugs that leave every measured number healthy (a wrong but learnable
label mapping, data augmentation that destroys the signal, a validation split that leaks), labels
that are learnable only by a function nearest neighbours cannot see (parity-like problems), and
faults that need many epochs to show (slow overfitting, late divergence). Models are judged
through their ``nn.Linear`` layers and activation modules; a convolutional network gets the
data, output, loss-trajectory and update checks only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nncourse._validate import check_choice, check_int, check_number
from nncourse.diagnostics import GradientMonitor, activation_stats, gradient_norms
from nncourse.models import linear_layers
from nncourse.training import (
    OPTIMIZERS,
    Callback,
    History,
    evaluate,
    loss_function,
    make_optimizer,
    train,
)

__all__ = ["CAUSES", "Cause", "Finding", "Report", "diagnose", "chance_loss",
           "softmax_floor", "INPUT_RMS_LIMIT", "FEATURE_SPREAD_LIMIT", "CHANCE_SIGMAS",
           "LOGIT_STD_LIMIT", "GRADIENT_RATIO_LIMIT", "SATURATED_LIMIT", "DEAD_LIMIT",
           "SILENT_LIMIT", "UPDATE_LOW", "UPDATE_SLOW", "UPDATE_HIGH", "STALL_FRACTION",
           "OVERFIT_RISE"]


# --- thresholds, each from a principle ----------------------------------------------------------

#: Inputs: with a fan-in-scaled initialization (LeCun, Xavier, He -- and torch's default) the
#: first layer's pre-activations have a standard deviation of about the inputs' RMS
#: (:math:`\mathrm{Var}(w^\top x) = \mathrm{Var}(w) \sum_i x_i^2 = \overline{x^2}` for
#: :math:`\mathrm{Var}(w) = 1/\text{fan\_in}`). The initializations are designed for unit-scale
#: inputs (LeCun et al., 1998). An RMS above 10 puts the first layer an order of magnitude off its
#: operating point, and its effective learning rate (which scales with :math:`x^2`) two decades off.
INPUT_RMS_LIMIT = 10.0
#: Inputs: the largest feature scale over the median one. The curvature of the loss along a
#: feature scales with its variance, so a ratio r of scales gives a condition number r^2
#: (chapter 05); above 100 (condition number 10^4), one learning rate cannot suit all features.
FEATURE_SPREAD_LIMIT = 100.0
#: Labels: a nearest neighbour's label agrees with an example's own label no more often than two
#: independent draws from the class frequencies would (3 standard errors above that rate).
CHANCE_SIGMAS = 3.0
#: Output at initialization: i.i.d. logits of standard deviation s give an expected
#: cross-entropy of about ln K + s^2/2 for small s, and about s * sqrt(2 ln K) for large s.
#: A fan-in-scaled output layer on unit-scale features gives s of order 1, so the loss at
#: initialization is ln K (Karpathy, 2019). Logits above 10 -- an order of magnitude above unit
#: scale, a loss several times ln K -- mean the signal grew on its way through the network.
LOGIT_STD_LIMIT = 10.0
#: Gradient flow: each layer multiplies the backward signal by a gain g (about 1 for a matched
#: initialization, chapter 03; at most about 1/4 for sigmoid units, whose slope is at most 1/4),
#: so the first layer's weight gradient is roughly g^(L-1) times the last layer's. Two decades
#: (what a 4-layer sigmoid net loses: 4^-3 to 4^-4) is chapter 02's line between a net that
#: trains slowly and one whose first layers do not train; the same factor the other way is an
#: explosion.
GRADIENT_RATIO_LIMIT = 100.0
#: Units: a sigmoid/tanh output within 0.01 of its bound has a slope below 0.01 (sigmoid) or 0.02
#: (tanh): it passes almost no gradient. A layer with more than half its outputs there is mostly
#: switched off.
SATURATED_LIMIT = 0.5
#: Units: a ReLU unit that outputs 0 for every example gets no gradient and never recovers
#: (chapter 04). A healthy initialization has almost none; more than half of a layer is a fault.
DEAD_LIMIT = 0.5
#: Units: a ReLU layer whose pre-activations are centred on 0 outputs 0 for about half of its
#: outputs. When more than 9 in 10 outputs are 0, the typical unit is active for fewer than one
#: example in ten -- almost dead, although not for *every* example (a bias pushed far negative).
SILENT_LIMIT = 0.9
#: Updates: the update-to-weight ratio ||delta W|| / ||W|| per step is about 1e-3 in healthy
#: training (the rule of thumb of Karpathy's CS231n notes). Two decades below (1e-5), a weight
#: needs ~1e5 steps to change by its own size: the learning rate is too low.
UPDATE_LOW = 1e-5
#: Updates: one decade below the rule of thumb (1e-4) is slow; together with a stalled loss
#: (:data:`STALL_FRACTION`) it is too slow.
UPDATE_SLOW = 1e-4
#: Updates: two decades above (1e-1), a step rewrites a tenth of a layer's weights. With a
#: training loss that ends higher than it started, or one that stalls while every step is that
#: large, the learning rate is too high (chapter 07: too high diverges).
UPDATE_HIGH = 1e-1
#: Loss trajectory: a training loss that fell by less than a tenth of its starting value over
#: the whole diagnosis has stalled. (Only used together with an update ratio a decade or more
#: off the rule of thumb: a short diagnosis of a healthy but slow recipe may stall too.)
STALL_FRACTION = 0.1
#: Overfitting: the validation loss ended more than 10 % above its best epoch while the training
#: loss kept falling (the signal early stopping acts on, chapter 08).
OVERFIT_RISE = 0.10

_PROBE = 512          # examples used for the forward/backward probes at initialization
_KNN_TRAIN, _KNN_QUERY = 4000, 2000


# --- causes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cause:
    """What a cause means: the stage where it arises, its fix and the chapter that teaches it."""

    name: str
    stage: str
    fix: str
    chapter: str


_STAGES = ("data", "wiring", "initialization", "optimization", "generalization")

#: Every cause the doctor can name, in the order findings are reported (upstream first).
CAUSES: dict[str, Cause] = {c.name: c for c in (
    Cause("labels_not_learnable", "data",
          "check that labels stay aligned with their inputs (shuffling, sorting or merging one "
          "without the other); train on one batch: it must reach loss ~0",
          "12_capstone_debugging.ipynb"),
    Cause("unscaled_inputs", "data",
          "standardize each feature with the training split's mean and standard deviation",
          "05_normalization.ipynb"),
    Cause("softmax_before_cross_entropy", "wiring",
          "remove the final Softmax/Sigmoid: CrossEntropyLoss and BCEWithLogitsLoss take raw "
          "logits and apply it themselves", "04_activation_functions.ipynb"),
    Cause("frozen_layer", "wiring",
          "set requires_grad=True on the layer (or pass its parameters to the optimizer) unless "
          "it is frozen on purpose", "09_transfer_learning.ipynb"),
    Cause("missing_zero_grad", "wiring",
          "call optimizer.zero_grad() before each loss.backward(): .grad accumulates",
          "01_backprop_from_scratch.ipynb"),
    Cause("symmetric_init", "initialization",
          "initialize weights randomly (Xavier/He), never with one constant",
          "03_weight_initialization.ipynb"),
    Cause("saturated_units", "initialization",
          "use an initialization matched to the activation (Xavier for sigmoid/tanh), scaled "
          "inputs, or a ReLU-family activation", "03_weight_initialization.ipynb"),
    Cause("exploding_gradients", "initialization",
          "use a matched initialization (He for ReLU, Xavier for tanh); clip the gradient norm "
          "or add normalization layers", "02_vanishing_exploding_gradients.ipynb"),
    Cause("dead_units", "initialization",
          "initialize biases at 0 (or slightly positive), use He init, a lower learning rate or "
          "a leaky ReLU", "04_activation_functions.ipynb"),
    Cause("vanishing_gradients", "initialization",
          "use ReLU-family activations with He init, fewer layers, batch normalization or an "
          "adaptive optimizer", "02_vanishing_exploding_gradients.ipynb"),
    Cause("lr_too_high", "optimization",
          "lower the learning rate (by 10x at a time, or run a learning-rate range test)",
          "07_learning_rates.ipynb"),
    Cause("lr_too_low", "optimization",
          "raise the learning rate (by 10x at a time, or run a learning-rate range test)",
          "07_learning_rates.ipynb"),
    Cause("overfitting", "generalization",
          "regularize: more data or augmentation, weight decay, dropout, early stopping",
          "08_regularization.ipynb"),
)}


@dataclass(frozen=True)
class Finding:
    """One diagnosis: the cause, the measured evidence, the fix and the chapter to read.

    ``severity`` says how far past its threshold the evidence is: 1 at the threshold, 10 ten times
    past it (``inf`` for a structural fact such as a frozen layer).
    """

    cause: str
    evidence: str
    fix: str
    chapter: str
    severity: float

    def __str__(self) -> str:
        return (f"{self.cause}: {self.evidence}\n    fix: {self.fix}\n"
                f"    read: chapters/{self.chapter}")


@dataclass
class Report:
    """What :func:`diagnose` found: ``findings`` (most likely cause first) and ``measured``, the
    numbers it looked at (for your own judgement)."""

    findings: list[Finding]
    measured: dict = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not self.findings

    @property
    def causes(self) -> list[str]:
        """The causes found, most likely first."""
        return [f.cause for f in self.findings]

    @property
    def first(self) -> str | None:
        """The most likely cause, or None when healthy."""
        return self.findings[0].cause if self.findings else None

    def __str__(self) -> str:
        m = self.measured
        lines = []
        if self.healthy:
            lines.append("Training doctor: nothing found.")
        else:
            n = len(self.findings)
            lines.append(f"Training doctor: {n} finding{'s' if n != 1 else ''}, most likely "
                         "cause first.")
            lines += [f"{i}. {f}" for i, f in enumerate(self.findings, 1)]
        if "initial_loss" in m:
            lines.append(f"Measured: loss at init {m['initial_loss']:.3f} (ln K = "
                         f"{m['chance_loss']:.3f}), logit std {m['logit_std']:.3g}, gradient "
                         f"first/last {m['gradient_ratio']:.3g}, update/weight "
                         f"{m['update_ratio']:.2g}, loss {m['loss_start']:.3g} -> "
                         f"{m['loss_end']:.3g} in {m['steps']} steps.")
        return "\n".join(lines)


def _finding(cause: str, evidence: str, severity: float) -> Finding:
    c = CAUSES[cause]
    return Finding(cause, evidence, c.fix, c.chapter, float(severity))


def chance_loss(n_classes: int) -> float:
    """ln K: the cross-entropy of a uniform guess over ``n_classes`` (2 for a single logit)."""
    return math.log(max(int(n_classes), 2))


def softmax_floor(n_classes: int) -> float:
    """ln(1 + (K-1)/e): the lowest loss a network reaches when its outputs are softmax
    probabilities fed to ``CrossEntropyLoss``, which applies a softmax again. Probabilities lie
    in [0, 1], so the best second softmax puts e^1 on the right class and e^0 on the others."""
    k = max(int(n_classes), 2)
    return math.log(1 + (k - 1) / math.e)


# --- input checking -----------------------------------------------------------------------------

_FN = "diagnose"


def _as_tensor(value, name: str, dtype) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{_FN}: {name} must be a torch tensor or NumPy array, got "
                         f"{type(value).__name__}")
    return value.to(dtype)


def _check_data(X, y, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(X, torch.Tensor) and not X.is_floating_point() or (
            isinstance(X, np.ndarray) and X.dtype.kind not in "fiu"):
        raise ValueError(f"{_FN}: X_{which} must hold numbers, got dtype {X.dtype}")
    X = _as_tensor(X, f"X_{which}", torch.float32)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"{_FN}: X_{which} must have shape (examples, features) with at least 2 "
                         f"examples, got shape {tuple(X.shape)}")
    if not torch.isfinite(X).all():
        bad = int((~torch.isfinite(X)).sum())
        raise ValueError(f"{_FN}: X_{which} contains {bad} NaN or infinite value"
                         f"{'s' if bad != 1 else ''}; impute or drop them before training")
    if isinstance(y, np.ndarray) and y.dtype.kind not in "iub" or (
            isinstance(y, torch.Tensor) and y.is_floating_point()):
        yy = torch.as_tensor(y)
        if not torch.equal(yy, yy.round()):
            raise ValueError(f"{_FN}: y_{which} must hold class indices (integers), got "
                             "fractional values")
    y = _as_tensor(y, f"y_{which}", torch.int64).reshape(-1)
    if len(y) != len(X):
        raise ValueError(f"{_FN}: X_{which} has {len(X)} examples but y_{which} has {len(y)}")
    return X, y


def _output_width(model: nn.Module, X: torch.Tensor) -> int:
    try:
        with torch.no_grad():
            out = model(X[:2])
    except Exception as exc:  # noqa: BLE001 - any failure means "this model does not take X"
        raise ValueError(f"{_FN}: the model does not accept X_train of shape "
                         f"{tuple(X.shape)} ({type(exc).__name__}: {exc})") from None
    if not isinstance(out, torch.Tensor) or out.ndim not in (1, 2) or out.shape[0] != 2:
        raise ValueError(f"{_FN}: the model must return one row of logits per example, got "
                         f"{type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))}")
    return 1 if out.ndim == 1 else out.shape[1]


# --- the checks ---------------------------------------------------------------------------------

def _input_findings(X: torch.Tensor, m: dict) -> list[Finding]:
    rms = X.double().pow(2).mean(0).sqrt()
    overall = X.double().pow(2).mean().sqrt().item()
    live = rms[rms > 0]
    spread = (live.max() / live.median()).item() if len(live) else 1.0
    m["input_rms"], m["feature_spread"] = overall, spread
    parts, severity = [], 0.0
    if overall > INPUT_RMS_LIMIT:
        parts.append(f"the inputs' RMS is {overall:.3g} (unit scale expected; limit "
                     f"{INPUT_RMS_LIMIT:g})")
        severity = overall / INPUT_RMS_LIMIT
    if spread > FEATURE_SPREAD_LIMIT:
        parts.append(f"the largest feature scale is {spread:.3g} times the median one (limit "
                     f"{FEATURE_SPREAD_LIMIT:g})")
        severity = max(severity, spread / FEATURE_SPREAD_LIMIT)
    if not parts:
        return []
    return [_finding("unscaled_inputs", "; ".join(parts), severity)]


def _nearest_neighbour_agreement(X, y, X_val, y_val) -> tuple[float, float, int]:
    """How often an example's nearest training neighbour (standardized features) has its label,
    and the rate two independent labels with these class frequencies agree."""
    mean, std = X.mean(0), X.std(0)
    std[std == 0] = 1.0
    ref, ref_y = (X[:_KNN_TRAIN] - mean) / std, y[:_KNN_TRAIN]
    if X_val is not None:
        q, q_y, leave_one_out = (X_val[:_KNN_QUERY] - mean) / std, y_val[:_KNN_QUERY], False
    else:
        q, q_y, leave_one_out = ref[:_KNN_QUERY], ref_y[:_KNN_QUERY], True
    d = torch.cdist(q.double(), ref.double())
    if leave_one_out:
        d[torch.arange(len(q)), torch.arange(len(q))] = math.inf
    agree = (ref_y[d.argmin(1)] == q_y).double().mean().item()
    k = int(max(ref_y.max(), q_y.max())) + 1
    p_ref = torch.bincount(ref_y, minlength=k).double() / len(ref_y)
    p_q = torch.bincount(q_y, minlength=k).double() / len(q_y)
    return agree, (p_ref * p_q).sum().item(), len(q)


def _label_findings(X, y, X_val, y_val, m: dict) -> list[Finding]:
    agree, chance, n = _nearest_neighbour_agreement(X, y, X_val, y_val)
    se = math.sqrt(chance * (1 - chance) / n)
    m["neighbour_agreement"], m["label_chance"] = agree, chance
    if agree > chance + CHANCE_SIGMAS * se:
        return []
    where = "validation examples" if X_val is not None else "training examples (leave-one-out)"
    return [_finding("labels_not_learnable",
                     f"the nearest training neighbour of {n} {where} has the same label "
                     f"{agree:.1%} of the time, chance is {chance:.1%} (+{CHANCE_SIGMAS:g} "
                     f"standard errors = {chance + CHANCE_SIGMAS * se:.1%}): the labels do not "
                     "follow the inputs", math.inf)]


def _network_beats_chance(model, X_val, y_val, m: dict) -> bool:
    """The second witness for learnable labels: after the diagnosis's training, the network
    predicts validation labels better than always answering the most frequent class (by
    :data:`CHANCE_SIGMAS` standard errors). Without validation data there is no witness."""
    if X_val is None:
        return False
    acc = evaluate(model, X_val, y_val)[1]
    majority = (torch.bincount(y_val).max() / len(y_val)).item()
    se = math.sqrt(majority * (1 - majority) / len(y_val))
    m["val_accuracy"], m["majority_rate"] = acc, majority
    return acc > majority + CHANCE_SIGMAS * se


def _output_findings(model, out: torch.Tensor, k: int, m: dict) -> list[Finding]:
    last = [mod for mod in model.modules() if not list(mod.children())]
    if k >= 2:
        rows = out.sum(1)
        probabilities = bool((out >= 0).all() and torch.allclose(rows, torch.ones_like(rows),
                                                                 atol=1e-4))
        if probabilities:
            return [_finding("softmax_before_cross_entropy",
                             f"every output row is non-negative and sums to 1 (probabilities, "
                             f"not logits): the loss applies a second softmax and cannot go "
                             f"below ln(1 + (K-1)/e) = {softmax_floor(k):.3f} for K = {k}",
                             math.inf)]
    elif last and isinstance(last[-1], nn.Sigmoid):
        return [_finding("softmax_before_cross_entropy",
                         "the model ends with a Sigmoid and the loss applies one again "
                         "(BCEWithLogitsLoss takes logits): outputs are squeezed into (0, 1)",
                         math.inf)]
    return []


def _frozen_findings(model: nn.Module) -> list[Finding]:
    frozen = [(name, p.numel()) for name, p in model.named_parameters() if not p.requires_grad]
    if not frozen:
        return []
    total = sum(p.numel() for p in model.parameters())
    names = ", ".join(name for name, _ in frozen[:4]) + (", ..." if len(frozen) > 4 else "")
    count = sum(n for _, n in frozen)
    return [_finding("frozen_layer",
                     f"{count} of {total} parameters have requires_grad=False ({names}): "
                     "they never change", math.inf)]


def _hidden_linears(model: nn.Module) -> list[tuple[int, nn.Linear]]:
    layers = linear_layers(model)
    return list(enumerate(layers[:-1]))


def _symmetry_findings(model: nn.Module) -> list[Finding]:
    found = []
    for i, layer in _hidden_linears(model):
        w = layer.weight.detach()
        if w.shape[0] < 2:
            continue
        spread = (w - w[:1]).abs().max().item()
        b = layer.bias.detach() if layer.bias is not None else None
        b_spread = (b - b[:1]).abs().max().item() if b is not None else 0.0
        scale = w.abs().max().item()
        # identical rows up to float32 rounding (all-zero rows included)
        if spread <= 1e-6 * max(scale, 1e-30) and b_spread <= 1e-6 * max(scale, 1e-30) + 1e-30:
            found.append(i)
    if not found:
        return []
    layers = ", ".join(str(i) for i in found)
    return [_finding("symmetric_init",
                     f"every unit of Linear layer{'s' if len(found) > 1 else ''} {layers} has "
                     "the same incoming weights and bias: the units compute the same thing and "
                     "get the same gradient, so they stay identical", math.inf)]


def _unit_findings(stats: list[dict]) -> list[Finding]:
    out = []
    sat = [(i, s["saturated"]) for i, s in enumerate(stats) if s["saturated"] > SATURATED_LIMIT]
    if sat:
        i, v = max(sat, key=lambda t: t[1])
        out.append(_finding("saturated_units",
                            f"{v:.0%} of the outputs of activation layer {i} "
                            f"({stats[i]['kind']}) sit within 0.01 of their bounds, where the "
                            f"slope is ~0 (limit {SATURATED_LIMIT:.0%})", v / SATURATED_LIMIT))
    # only a ReLU's 0 has a zero slope: a tanh unit at 0 sits where its slope is largest
    dead = [(i, s["dead"]) for i, s in enumerate(stats)
            if s["kind"] == "relu" and s["dead"] > DEAD_LIMIT]
    silent = [(i, s["zeros"]) for i, s in enumerate(stats) if s["zeros"] > SILENT_LIMIT]
    if dead:
        i, v = max(dead, key=lambda t: t[1])
        out.append(_finding("dead_units",
                            f"{v:.0%} of the units of activation layer {i} ({stats[i]['kind']}) "
                            "output 0 for every example at initialization: they get no gradient "
                            f"(limit {DEAD_LIMIT:.0%})", v / DEAD_LIMIT))
    elif silent:
        i, v = max(silent, key=lambda t: t[1])
        out.append(_finding("dead_units",
                            f"{v:.0%} of the outputs of activation layer {i} ({stats[i]['kind']}) "
                            "are 0 at initialization (about 50% when healthy, limit "
                            f"{SILENT_LIMIT:.0%}): its units are nearly dead", v / SILENT_LIMIT))
    return out


def _gradient_findings(norms: list[float], stds: list[float], logit_std: float, loss0: float,
                       k: int, m: dict) -> list[Finding]:
    """Exploding or vanishing signal at initialization.

    The first/last ratio of *weight* gradients sees a backward pass that shrinks while the forward
    pass does not (sigmoid units). When every layer scales the signal by the same gain g both ways
    (weights too small or too large for the activation), the weight gradient of layer l,
    delta_l h_(l-1)^T, gets g^(L-l) from the backward pass and g^(l-1) from the forward pass:
    the ratio stays ~1 and hides it. The forward ratio -- the last hidden layer's activation std
    over the first's -- sees that case, with the same two-decade limit."""
    out = []
    g = np.asarray(norms, dtype=float)
    ratio = float(g[0] / g[-1]) if len(g) > 1 and g[-1] > 0 else 1.0
    forward = stds[-1] / stds[0] if len(stds) > 1 and stds[0] > 0 else 1.0
    m["gradient_ratio"], m["forward_ratio"] = ratio, forward
    finite = bool(np.all(np.isfinite(g))) and math.isfinite(loss0)
    exploding = []
    if not finite:
        exploding.append("the loss or a gradient is already NaN/inf at initialization")
    if logit_std > LOGIT_STD_LIMIT:
        exploding.append(f"the logits at initialization have std {logit_std:.3g} (limit "
                         f"{LOGIT_STD_LIMIT:g}), so the initial loss is {loss0:.3g} instead of "
                         f"ln K = {chance_loss(k):.3f}")
    if len(g) > 2 and ratio > GRADIENT_RATIO_LIMIT:
        exploding.append(f"the first layer's gradient is {ratio:.3g} times the last layer's "
                         f"(limit {GRADIENT_RATIO_LIMIT:g})")
    if forward > GRADIENT_RATIO_LIMIT:
        exploding.append(f"the activations' std grows {forward:.3g}-fold from the first hidden "
                         f"layer to the last (limit {GRADIENT_RATIO_LIMIT:g})")
    if exploding:
        severity = max(logit_std / LOGIT_STD_LIMIT, ratio / GRADIENT_RATIO_LIMIT,
                       forward / GRADIENT_RATIO_LIMIT, 1.0)
        out.append(_finding("exploding_gradients", "; ".join(exploding),
                            severity if finite else math.inf))
        return out
    vanishing, worst = [], min(ratio if len(g) > 2 else 1.0, forward)
    if len(g) > 2 and ratio < 1 / GRADIENT_RATIO_LIMIT:
        per_layer = ratio ** (1 / (len(g) - 1)) if ratio > 0 else 0.0
        vanishing.append(f"the first layer's gradient is {ratio:.2g} times the last layer's "
                         f"(limit 1/{GRADIENT_RATIO_LIMIT:g}): a gain of {per_layer:.2g} per "
                         f"layer over {len(g) - 1} layers")
    if forward < 1 / GRADIENT_RATIO_LIMIT:
        per_layer = forward ** (1 / (len(stds) - 1)) if forward > 0 else 0.0
        vanishing.append(f"the activations' std shrinks to {forward:.2g} of the first hidden "
                         f"layer's by the last (limit 1/{GRADIENT_RATIO_LIMIT:g}): a gain of "
                         f"{per_layer:.2g} per layer, forward and backward")
    if vanishing:
        out.append(_finding("vanishing_gradients", "; ".join(vanishing),
                            1 / (worst * GRADIENT_RATIO_LIMIT) if worst > 0 else math.inf))
    return out


class _StepLosses(Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_step_end(self, model, step, loss):
        self.losses.append(loss)


def _optimizer_findings(m: dict, diverged: bool) -> list[Finding]:
    top, peak = m["update_ratio"], m["update_peak"]
    start, end = m["loss_start"], m["loss_end"]
    if diverged or not math.isfinite(end):
        return [_finding("lr_too_high", f"the training loss became NaN/inf within {m['steps']} "
                         f"steps (it started at {start:.3g})", math.inf)]
    fell = (start - end) / start if start > 0 else 0.0
    m["loss_fell"] = fell
    if end > start and peak > UPDATE_HIGH:
        return [_finding("lr_too_high",
                         f"the training loss rose from {start:.3g} to {end:.3g} and the largest "
                         f"step changed a layer's weights by {peak:.2g} of their size (rule of "
                         f"thumb ~1e-3, limit {UPDATE_HIGH:g})", peak / UPDATE_HIGH)]
    if top > UPDATE_HIGH and fell < STALL_FRACTION:
        return [_finding("lr_too_high",
                         f"each step changes the weights by {top:.2g} of their size (rule of "
                         f"thumb ~1e-3, limit {UPDATE_HIGH:g}) and the training loss only went "
                         f"from {start:.3g} to {end:.3g}", top / UPDATE_HIGH)]
    if 0 < top < UPDATE_LOW or (0 < top < UPDATE_SLOW and fell < STALL_FRACTION):
        return [_finding("lr_too_low",
                         f"each step changes the weights by only {top:.2g} of their size (rule of "
                         f"thumb ~1e-3, limit {UPDATE_LOW:g}, or {UPDATE_SLOW:g} when the loss "
                         f"stalls); the training loss went from {start:.3g} to {end:.3g} in "
                         f"{m['steps']} steps", UPDATE_SLOW / top)]
    return []


def _overfit_findings(history: History, m: dict) -> list[Finding]:
    vl, tl = history.val_loss, history.train_loss
    if len(vl) < 3 or not all(map(math.isfinite, vl + tl)):
        return []
    best = int(np.argmin(vl))
    rise = vl[-1] / vl[best] - 1 if vl[best] > 0 else 0.0
    m["val_loss_rise"] = rise
    if best < len(vl) - 1 and rise > OVERFIT_RISE and tl[-1] < tl[best] and tl[-1] < vl[-1]:
        return [_finding("overfitting",
                         f"the validation loss rose {rise:.0%} above its best (epoch {best + 1}: "
                         f"{vl[best]:.3g} -> {vl[-1]:.3g}) while the training loss kept falling "
                         f"({tl[best]:.3g} -> {tl[-1]:.3g}); accuracy: train "
                         f"{history.train_acc[-1]:.0%}, validation {history.val_acc[-1]:.0%}",
                         rise / OVERFIT_RISE)]
    return []


# --- the user's own training step: look for gradients that accumulate ----------------------------

class _AccumulationProbe:
    """Optimizer hooks around a user's ``train_step``: record what GradientMonitor records, and at
    each step regress the gradient the optimizer is about to use on [the fresh gradient of this
    batch, the gradient used at the previous step]. With zero_grad the second coefficient is ~0;
    without it, .grad holds their sum and it is ~1 (whatever the scale of the user's loss)."""

    def __init__(self, model, loss_fn, monitor: GradientMonitor, checks: int = 8):
        self.model, self.loss_fn, self.monitor = model, loss_fn, monitor
        self.step, self.batch, self.rng = 0, None, None
        self.previous: torch.Tensor | None = None
        self.coefficients: list[float] = []
        self.checks = checks

    def _grads(self, model) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in model.parameters() if p.requires_grad])

    def pre(self, optimizer, args, kwargs):
        self.monitor.on_after_backward(self.model, self.step)
        if len(self.coefficients) >= self.checks or self.batch is None:
            return
        used = self._grads(self.model).detach().double()
        if self.previous is not None and self.previous.norm() > 0:
            fresh_model = copy.deepcopy(self.model)
            fresh_model.zero_grad(set_to_none=True)
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(self.rng)
                xb, yb = self.batch
                self.loss_fn(fresh_model(xb), yb).backward()
            fresh = self._grads(fresh_model).detach().double()
            A = torch.stack([fresh, self.previous], 1)
            coef = torch.linalg.lstsq(A, used.unsqueeze(1)).solution.reshape(-1)
            self.coefficients.append(coef[1].item())
        self.previous = used

    def post(self, optimizer, args, kwargs):
        self.monitor.on_step_end(self.model, self.step, float("nan"))


def _custom_training(model, train_step, X, y, X_val, y_val, *, optimizer, lr, epochs,
                     batch_size, seed, loss_fn, monitor, steps: _StepLosses):
    opt = make_optimizer(optimizer, model.parameters(), lr)
    probe = _AccumulationProbe(model, loss_fn, monitor)
    handles = [opt.register_step_pre_hook(probe.pre), opt.register_step_post_hook(probe.post)]
    history = History()
    generator = torch.Generator().manual_seed(seed)
    n = len(X)
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                probe.batch, probe.rng = (X[idx], y[idx]), torch.get_rng_state()
                try:
                    value = train_step(model, opt, X[idx], y[idx])
                except Exception as exc:  # noqa: BLE001 - report the user's error in one line
                    raise ValueError(f"{_FN}: train_step(model, optimizer, xb, yb) raised "
                                     f"{type(exc).__name__}: {exc}") from None
                value = value.item() if isinstance(value, torch.Tensor) else float(value)
                steps.losses.append(value)
                probe.step += 1
            tl, ta = evaluate(model, X, y, loss_fn)
            history.train_loss.append(tl)
            history.train_acc.append(ta)
            if X_val is not None:
                vl, va = evaluate(model, X_val, y_val, loss_fn)
                history.val_loss.append(vl)
                history.val_acc.append(va)
            history.epochs_run = epoch
            if not math.isfinite(tl):
                history.diverged = True
                break
    finally:
        for h in handles:
            h.remove()
    return history, probe.coefficients


# --- the diagnosis ------------------------------------------------------------------------------

_LOSSES = {"cross_entropy": "auto", "ce": "ce", "bce": "bce", "auto": "auto"}


def diagnose(model: nn.Module, X_train, y_train, X_val=None, y_val=None, *,
             loss: str = "cross_entropy", optimizer: str = "sgd", lr: float = 0.01,
             epochs: int = 3, batch_size: int = 64, seed: int = 0,
             train_step: Callable | None = None) -> Report:
    """Diagnose why ``model`` does (not) train on ``X_train, y_train``; return a :class:`Report`.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits, one row per example (one column for binary
        ``BCEWithLogitsLoss``). It is not modified: the doctor trains a deep copy.
    X_train, y_train, X_val, y_val : tensors or arrays
        Features ``(examples, features)`` and class indices. The validation split (optional)
        enables the overfitting check and makes the label check out-of-sample.
    loss : str
        ``"cross_entropy"`` (CrossEntropyLoss on several logits, BCEWithLogitsLoss on one), or
        ``"ce"`` / ``"bce"`` to force one.
    optimizer, lr, epochs, batch_size, seed
        The short training run to observe: your recipe's optimizer (a name of
        :func:`nncourse.training.make_optimizer`) and learning rate, for a few epochs.
    train_step : callable, optional
        Your own ``train_step(model, optimizer, xb, yb) -> loss``. When given, the doctor trains
        with it (instead of :func:`nncourse.training.train`) and also checks that the gradient
        does not accumulate across steps (a missing ``optimizer.zero_grad()``).

    The checks, in the order of :data:`CAUSES`: the labels follow the inputs (nearest
    neighbour vs chance); feature scales (:data:`INPUT_RMS_LIMIT`, :data:`FEATURE_SPREAD_LIMIT`);
    the outputs are logits; no frozen parameters; gradients do not accumulate; hidden units are
    not copies of each other; at initialization, the fraction of saturated and dead units, the
    logits' scale against the loss's ln K and the first/last gradient ratio; during training, the
    update-to-weight ratio and the loss trajectory; at the end, the validation loss against its
    best epoch.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"{_FN}: model must be a torch.nn.Module, got {type(model).__name__}")
    X, y = _check_data(X_train, y_train, "train")
    if (X_val is None) != (y_val is None):
        raise ValueError(f"{_FN}: pass both X_val and y_val, or neither")
    if X_val is not None:
        X_val, y_val = _check_data(X_val, y_val, "val")
        if X_val.shape[1] != X.shape[1]:
            raise ValueError(f"{_FN}: X_val has {X_val.shape[1]} features but X_train has "
                             f"{X.shape[1]}")
    loss = _LOSSES[check_choice(loss, "loss", tuple(_LOSSES), fn=_FN)]
    check_choice(optimizer, "optimizer", tuple(OPTIMIZERS), fn=_FN)
    lr = check_number(lr, "lr", 0, low_open=True, fn=_FN)
    epochs = check_int(epochs, "epochs", fn=_FN)
    batch_size = check_int(batch_size, "batch_size", fn=_FN)
    seed = check_int(seed, "seed", low=0, fn=_FN)
    if train_step is not None and not callable(train_step):
        raise ValueError(f"{_FN}: train_step must be a function train_step(model, optimizer, "
                         f"xb, yb), got {type(train_step).__name__}")
    k = _output_width(model, X)
    labels = torch.cat([y, y_val]) if y_val is not None else y
    n_classes = max(k, 2)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"{_FN}: labels must be class indices in [0, {n_classes - 1}] for a model "
                         f"with {k} output{'s' if k != 1 else ''}, got values from "
                         f"{int(labels.min())} to {int(labels.max())}")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _diagnose(copy.deepcopy(model), X, y, X_val, y_val, k, loss, optimizer, lr,
                         epochs, batch_size, seed, train_step)


def _diagnose(model, X, y, X_val, y_val, k, loss, optimizer, lr, epochs, batch_size, seed,
              train_step) -> Report:
    m: dict = {}
    findings: list[Finding] = []
    loss_fn = loss_function(k, loss)
    labels = _label_findings(X, y, X_val, y_val, m)
    findings += _input_findings(X, m)

    # --- the network as it starts
    Xp, yp = X[:_PROBE], y[:_PROBE]
    model.eval()
    with torch.no_grad():
        out = model(Xp).reshape(len(Xp), -1)
    findings += _output_findings(model, out, k, m)
    findings += _frozen_findings(model)
    findings += _symmetry_findings(model)
    loss0 = loss_fn(out, yp).item()
    logit_std = out.std().item() if out.numel() > 1 else 0.0
    m.update(initial_loss=loss0, chance_loss=chance_loss(k), logit_std=logit_std)
    stats = activation_stats(model, Xp, keep_values=True)
    for s in stats:
        s["zeros"] = float(np.mean(s.pop("values") == 0)) if s["kind"] == "relu" else 0.0
    m.update({key: [s[key] for s in stats] for key in ("saturated", "dead", "zeros", "std")})
    findings += _unit_findings(stats)
    trainable = [i for i, lay in enumerate(linear_layers(model)) if lay.weight.requires_grad]
    norms = gradient_norms(model, Xp, yp, loss_fn)
    m["gradient_norms"] = norms
    findings += _gradient_findings([norms[i] for i in trainable], m["std"], logit_std, loss0, k,
                                   m)

    # --- a short instrumented training run
    monitor, steps = GradientMonitor(), _StepLosses()
    before = [lay.weight.detach().norm().item() for lay in linear_layers(model)]
    m["loss_start"] = evaluate(model, X, y, loss_fn)[0]
    if train_step is None:
        data = (X, y, X_val, y_val) if X_val is not None else (X, y)
        history = train(model, data, epochs=epochs, lr=lr, optimizer=optimizer,
                        batch_size=batch_size, loss=loss_fn, callbacks=[monitor, steps],
                        seed=seed, progress=False)
        coefficients = []
    else:
        history, coefficients = _custom_training(
            model, train_step, X, y, X_val, y_val, optimizer=optimizer, lr=lr, epochs=epochs,
            batch_size=batch_size, seed=seed, loss_fn=loss_fn, monitor=monitor, steps=steps)
    m["loss_end"] = evaluate(model, X, y, loss_fn)[0]
    m["steps"] = len(steps.losses)
    ratios = monitor.update_ratios
    # layers that start at zero have no meaningful ratio; frozen ones are reported already
    usable = [i for i in trainable if before[i] > 0]
    if ratios.size and usable:
        with np.errstate(invalid="ignore"):
            medians = np.nanmedian(ratios[:, usable], axis=0)
        top = float(np.nanmax(medians)) if np.isfinite(medians).any() else math.nan
        finite = ratios[:, usable][np.isfinite(ratios[:, usable])]
        peak = float(finite.max()) if finite.size else math.inf
    else:
        top, peak = math.nan, math.nan
    m["update_ratio"], m["update_peak"] = top, peak
    if coefficients:
        m["accumulation"] = float(np.median(coefficients))
        if m["accumulation"] > 0.5:
            findings.append(_finding(
                "missing_zero_grad",
                f"the gradient each step uses is the fresh gradient plus "
                f"{m['accumulation']:.2f} times the previous step's (0 expected; measured over "
                f"{len(coefficients)} steps): .grad accumulates", math.inf))
    findings += _optimizer_findings(m, history.diverged or not math.isfinite(m["loss_end"]))
    findings += [f for f in labels if not _network_beats_chance(model, X_val, y_val, m)]
    if X_val is not None:
        findings += _overfit_findings(history, m)
    m["history"] = history
    order = list(CAUSES)
    findings.sort(key=lambda f: order.index(f.cause))
    return Report(findings, m)
