"""Pruning from scratch: magnitude masks, neuron removal, prune + fine-tune, and what it saves.

Two kinds of pruning, and the difference matters:

* **unstructured** -- zero individual weights. :func:`magnitude_mask` keeps the largest
  :math:`|w|` of one tensor (layer-wise); :func:`global_masks` ranks all layers' weights together
  (global). The matrices keep their shape: the zeros only save memory or time with a sparse format
  (:func:`csr_bytes`, :class:`SparseLinear`).
* **structured** -- remove whole hidden neurons: :func:`remove_neurons` returns a *physically
  smaller* ``nn.Sequential`` (row ``j`` of one Linear and column ``j`` of the next are cut).
  Which neurons: :func:`neuron_scores` by incoming weight norm (what
  ``torch.nn.utils.prune.ln_structured`` does), by mean activation on training data, or by
  redundancy (correlation with a neuron that stays).

Pruning once hurts less when the network is fine-tuned afterwards with the pruned weights held at
zero (:class:`KeepMasks`), and less again when the sparsity is raised gradually
(:func:`cubic_schedule`, :func:`iterative_prune`).

The real thing is :mod:`torch.nn.utils.prune` (``l1_unstructured``, ``global_unstructured``,
``ln_structured``, ``remove``); ``tests/test_pruning.py`` shows the masks here equal torch's.
"""

from __future__ import annotations

import copy
import io
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nncourse._validate import check_int, check_number
from nncourse.models import linear_layers
from nncourse.training import Callback, eval_mode, train

__all__ = [
    "n_to_prune", "magnitude_mask", "global_masks", "layerwise_masks", "magnitude_masks",
    "apply_masks_", "prune_magnitude", "KeepMasks", "sparsity", "sparsity_report",
    "count_nonzero", "hidden_activations", "neuron_scores", "NEURON_CRITERIA", "inert_neurons",
    "remove_neurons", "prune_neurons", "cubic_schedule", "iterative_prune", "one_shot_prune",
    "dense_bytes", "csr_bytes", "coo_bytes", "size_report", "saved_bytes", "SparseLinear",
    "to_sparse", "time_inference",
]


# --- unstructured: magnitude masks ------------------------------------------------------------

def _check_amount(amount) -> None:
    check_number(amount, "amount (the fraction of weights to prune)", 0, 1)


def n_to_prune(amount: float, n: int) -> int:
    """How many of ``n`` weights a fraction ``amount`` prunes: ``round(amount * n)``.

    The same rule as ``torch.nn.utils.prune`` (Python's ``round``, so ``2.5 -> 2``).
    """
    _check_amount(amount)
    return round(amount * n)


@torch.no_grad()
def magnitude_mask(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """A 0/1 mask that zeros the fraction ``amount`` of ``weight`` with the smallest ``|w|``.

    .. math:: m_i = 0 \\text{ for the } k = \\mathrm{round}(\\text{amount}\\cdot n)
              \\text{ smallest } |w_i|, \\quad m_i = 1 \\text{ otherwise}

    Mirrors ``torch.nn.utils.prune.l1_unstructured(module, "weight", amount)`` (its
    ``weight_mask``). Returns a float tensor of ``weight``'s shape.
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    k = n_to_prune(amount, weight.numel())
    mask = torch.ones_like(weight, dtype=torch.float32)
    if k:
        # stable sort: among equal magnitudes (e.g. weights already at 0) the earliest go first
        order = torch.argsort(weight.detach().abs().reshape(-1), stable=True)
        mask.view(-1)[order[:k]] = 0.0
    return mask


@torch.no_grad()
def global_masks(weights: Sequence[torch.Tensor], amount: float) -> list[torch.Tensor]:
    """Masks that prune the fraction ``amount`` of *all* ``weights`` together, by ``|w|``.

    One threshold for every tensor, so layers with small weights lose more of them. Mirrors
    ``torch.nn.utils.prune.global_unstructured(..., pruning_method=prune.L1Unstructured)``.
    """
    weights = list(weights)
    if not weights:
        raise ValueError("global_masks needs at least one weight tensor")
    flat = torch.cat([w.detach().reshape(-1) for w in weights])
    masks = magnitude_mask(flat, amount).split([w.numel() for w in weights])
    return [m.reshape(w.shape) for m, w in zip(masks, weights)]


def layerwise_masks(model: nn.Module, amount: float) -> list[torch.Tensor]:
    """One :func:`magnitude_mask` per Linear weight: every layer loses the same fraction."""
    return [magnitude_mask(layer.weight, amount) for layer in linear_layers(model)]


def magnitude_masks(model: nn.Module, amount: float, scope: str = "global") -> list[torch.Tensor]:
    """Masks for every Linear weight of ``model``; ``scope`` is ``"global"`` or ``"layer"``."""
    if scope == "global":
        return global_masks([layer.weight for layer in linear_layers(model)], amount)
    if scope == "layer":
        return layerwise_masks(model, amount)
    raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")


@torch.no_grad()
def apply_masks_(model: nn.Module, masks: Sequence[torch.Tensor]) -> nn.Module:
    """Multiply each Linear weight by its mask, in place (what ``prune.remove`` leaves behind)."""
    layers = linear_layers(model)
    if len(masks) != len(layers):
        raise ValueError(f"expected one mask per Linear layer ({len(layers)}), got {len(masks)}")
    for layer, mask in zip(layers, masks):
        if mask.shape != layer.weight.shape:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit weight of shape "
                             f"{tuple(layer.weight.shape)}")
        layer.weight.mul_(mask.to(layer.weight.dtype))
    return model


def prune_magnitude(model: nn.Module, amount: float, scope: str = "global") -> nn.Module:
    """A pruned copy of ``model`` (one-shot magnitude pruning, no fine-tuning)."""
    pruned = copy.deepcopy(model)
    return apply_masks_(pruned, magnitude_masks(pruned, amount, scope))


class KeepMasks(Callback):
    """Training callback that holds pruned weights at zero while the rest are fine-tuned.

    After every optimizer step the masks are applied again, so a pruned weight that received a
    gradient (or momentum) goes back to 0. ``torch.nn.utils.prune`` gets the same effect with a
    forward pre-hook computing ``weight = weight_orig * weight_mask``.
    """

    def __init__(self, masks: Sequence[torch.Tensor]):
        self.masks = list(masks)

    def on_train_begin(self, model, optimizer, history) -> None:
        apply_masks_(model, self.masks)

    def on_step_end(self, model, step, loss) -> None:
        apply_masks_(model, self.masks)


# --- counting -----------------------------------------------------------------------------------

def sparsity(t: torch.Tensor) -> float:
    """Fraction of entries that are exactly zero."""
    return 1.0 - torch.count_nonzero(t).item() / max(t.numel(), 1)


def count_nonzero(model: nn.Module) -> int:
    """Number of non-zero parameters (weights and biases) of ``model``."""
    return sum(torch.count_nonzero(p).item() for p in model.parameters())


def sparsity_report(model: nn.Module) -> list[dict]:
    """Per Linear layer: ``layer`` (1-based), ``shape``, ``weights``, ``nonzero``, ``sparsity``."""
    rows = []
    for i, layer in enumerate(linear_layers(model), 1):
        w = layer.weight
        rows.append({"layer": i, "shape": tuple(w.shape), "weights": w.numel(),
                     "nonzero": torch.count_nonzero(w).item(), "sparsity": sparsity(w)})
    return rows


# --- structured: which neurons, and removing them ------------------------------------------------

NEURON_CRITERIA = ("weight", "activation", "redundancy", "random")


def _hidden_linear_indices(model: nn.Sequential) -> list[int]:
    """Positions in ``model`` of the Linear layers that feed a hidden layer (all but the last)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError("structured pruning works on an nn.Sequential MLP, got "
                        f"{type(model).__name__}")
    idx = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    if len(idx) < 2:
        raise ValueError("the model needs at least one hidden layer (two Linear layers)")
    return idx[:-1]


def _check_layer(model: nn.Sequential, layer) -> None:
    n_hidden = len(_hidden_linear_indices(model))
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_hidden:
        raise ValueError(f"layer must be a hidden layer index in [0, {n_hidden - 1}], "
                         f"got {layer!r}")


@torch.no_grad()
def hidden_activations(model: nn.Sequential, X: torch.Tensor) -> list[torch.Tensor]:
    """Output of each hidden layer (after its activation) on ``X``, eval mode.

    The value a hidden neuron passes on is whatever enters the next Linear layer.
    """
    linear_at = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    outs, h = [], X
    with eval_mode(model):
        for i, m in enumerate(model):
            if i in linear_at[1:]:
                outs.append(h)
            h = m(h)
    return outs


def _redundancy_scores(a: torch.Tensor) -> torch.Tensor:
    """Greedy removal order by redundancy: repeatedly drop one of the most correlated pair.

    Of the pair, the neuron with the smaller activation spread goes. Constant neurons (dead
    ReLUs) carry nothing a bias cannot, so they go first. Lower score = removed earlier.
    """
    a = a.double()
    std = a.std(0)
    n = a.shape[1]
    constant = std < 1e-12
    order: list[int] = [int(j) for j in torch.nonzero(constant).reshape(-1)]
    z = (a - a.mean(0)) / std.clamp_min(1e-12)
    corr = (z.T @ z / max(a.shape[0] - 1, 1)).abs()
    corr.fill_diagonal_(-1.0)
    corr[constant] = -1.0
    corr[:, constant] = -1.0
    for _ in range(n - len(order) - 1):
        j, k = divmod(int(torch.argmax(corr)), n)
        drop = j if std[j] <= std[k] else k
        order.append(drop)
        corr[drop] = -1.0  # a removed neuron cannot make another one redundant
        corr[:, drop] = -1.0
    order += sorted(set(range(n)) - set(order))
    scores = torch.empty(n)
    scores[torch.tensor(order)] = torch.arange(n, dtype=torch.float32)
    return scores


@torch.no_grad()
def neuron_scores(model: nn.Sequential, layer: int, method: str = "weight",
                  X: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Importance of each neuron of hidden layer ``layer`` (0-based); prune the lowest first.

    ``method``:

    * ``"weight"`` -- L2 norm of the neuron's incoming weights (row of its Linear weight), the
      criterion of ``torch.nn.utils.prune.ln_structured(layer, "weight", amount, n=2, dim=0)``;
    * ``"activation"`` -- mean ``|a_j|`` over ``X``: a neuron that is (nearly) always 0 passes
      nothing on (a dead ReLU scores exactly 0);
    * ``"redundancy"`` -- greedy order from the activation correlations on ``X``: a neuron whose
      output another neuron almost reproduces goes first;
    * ``"random"`` -- a seeded random score, the baseline any criterion must beat.
    """
    _check_layer(model, layer)
    if method not in NEURON_CRITERIA:
        raise ValueError(f"method must be one of {', '.join(NEURON_CRITERIA)}; got {method!r}")
    lin = model[_hidden_linear_indices(model)[layer]]
    if method == "weight":
        return lin.weight.norm(p=2, dim=1)
    if method == "random":
        return torch.rand(lin.out_features, generator=torch.Generator().manual_seed(seed))
    if X is None:
        raise ValueError(f"method {method!r} needs inputs X (training data) to measure activations")
    return _scores(model, layer, method, hidden_activations(model, X)[layer], seed)


@torch.no_grad()
def _scores(model: nn.Sequential, layer: int, method: str, a: torch.Tensor | None,
            seed: int) -> torch.Tensor:
    """:func:`neuron_scores` given the layer's activations ``a`` (needed by the data-based
    criteria only)."""
    if method in ("weight", "random") or a is None:
        return neuron_scores(model, layer, method, seed=seed)
    if method == "activation":
        return a.abs().mean(0)
    return _redundancy_scores(a)


@torch.no_grad()
def inert_neurons(model: nn.Sequential, layer: int) -> list[int]:
    """Neurons of hidden layer ``layer`` whose outgoing weights are all zero (nothing uses them)."""
    _check_layer(model, layer)
    nxt = [m for m in model if isinstance(m, nn.Linear)][layer + 1]
    return [int(j) for j in torch.nonzero((nxt.weight == 0).all(0)).reshape(-1)]


@torch.no_grad()
def remove_neurons(model: nn.Sequential, layer: int, drop: Sequence[int],
                   activations: torch.Tensor | None = None, ridge: float = 1e-3) -> nn.Sequential:
    """A physically smaller copy of ``model`` without neurons ``drop`` of hidden layer ``layer``.

    Cuts row ``j`` (and bias ``j``) of the layer's Linear, entry ``j`` of a BatchNorm1d in between
    (weight, bias, running statistics), and column ``j`` of the next Linear. If the dropped
    neurons are inert (their outgoing weights are 0) the outputs are unchanged.

    With ``activations`` (this hidden layer's outputs on training data, shape ``(n, width)``) the
    next layer is *compensated*: the dropped outputs are fitted by least squares from the kept
    ones, :math:`A_D \\approx [A_K, 1]\\,C` (ridge-regularized), and the next layer's weights and
    bias absorb the fit, :math:`W_K \\leftarrow W_K + W_D C_K^T,\\ b \\leftarrow b + W_D c_1`. A
    dead or constant neuron is folded exactly into the bias; a neuron that copies another is
    merged into it.
    """
    _check_layer(model, layer)
    pos = _hidden_linear_indices(model)[layer]
    width = model[pos].out_features
    drop_set = {int(j) for j in drop}
    if any(not 0 <= j < width for j in drop_set):
        raise ValueError(f"neuron indices must be in [0, {width - 1}], got {sorted(drop_set)}")
    if len(drop_set) >= width:
        raise ValueError(f"cannot remove all {width} neurons of hidden layer {layer}")
    keep = torch.tensor([j for j in range(width) if j not in drop_set])
    if activations is not None and (activations.ndim != 2 or activations.shape[1] != width):
        raise ValueError(f"activations must have shape (n, {width}), "
                         f"got {tuple(activations.shape)}")
    new = copy.deepcopy(model)
    old = new[pos]
    lin = nn.Linear(old.in_features, len(keep), bias=old.bias is not None)
    lin.weight.copy_(old.weight[keep])
    if old.bias is not None:
        lin.bias.copy_(old.bias[keep])
    new[pos] = lin
    for i in range(pos + 1, len(new)):
        m = new[i]
        if isinstance(m, nn.BatchNorm1d):
            bn = nn.BatchNorm1d(len(keep), eps=m.eps, momentum=m.momentum, affine=m.affine,
                                track_running_stats=m.track_running_stats)
            if m.affine:
                bn.weight.copy_(m.weight[keep])
                bn.bias.copy_(m.bias[keep])
            if m.track_running_stats:
                bn.running_mean.copy_(m.running_mean[keep])
                bn.running_var.copy_(m.running_var[keep])
                bn.num_batches_tracked.copy_(m.num_batches_tracked)
            bn.train(m.training)
            new[i] = bn
        elif isinstance(m, nn.Linear):
            fold = activations is not None and bool(drop_set)
            nxt = nn.Linear(len(keep), m.out_features, bias=m.bias is not None or fold)
            nxt.weight.copy_(m.weight[:, keep])
            if nxt.bias is not None:
                nxt.bias.copy_(m.bias if m.bias is not None else torch.zeros(m.out_features))
            if fold:
                fix = _least_squares_fold(activations, keep, sorted(drop_set), ridge)
                fix = m.weight[:, sorted(drop_set)].double() @ fix
                nxt.weight += fix[:, :-1].to(nxt.weight.dtype)
                nxt.bias += fix[:, -1].to(nxt.bias.dtype)
            new[i] = nxt
            break
        elif isinstance(m, nn.PReLU) and m.num_parameters > 1:
            raise ValueError("a per-channel PReLU between layers is not supported")
    new.train(model.training)
    return new


def _least_squares_fold(a: torch.Tensor, keep, drop, ridge: float) -> torch.Tensor:
    """``C`` of shape ``(len(drop), len(keep) + 1)`` with ``a[:, drop] ~ [a[:, keep], 1] @ C.T``."""
    a = a.double()
    K = torch.cat([a[:, keep], torch.ones(len(a), 1, dtype=a.dtype)], 1)
    reg = ridge * len(a) * torch.eye(K.shape[1], dtype=a.dtype)
    reg[-1, -1] = 0.0  # the bias column is not shrunk
    return torch.linalg.solve(K.T @ K + reg, K.T @ a[:, drop]).T


def prune_neurons(model: nn.Sequential, amount: float, method: str = "weight",
                  X: torch.Tensor | None = None, compensate: bool = False,
                  seed: int = 0) -> nn.Sequential:
    """Remove the fraction ``amount`` of neurons of every hidden layer, lowest scores first.

    Layers are pruned input to output, each scored on the model pruned so far. With
    ``compensate=True`` the next layer absorbs a least-squares fit of what the removed neurons
    did on ``X`` (see :func:`remove_neurons`). Returns a new, smaller model; ``model`` is
    unchanged.
    """
    _check_amount(amount)
    if compensate and X is None:
        raise ValueError("compensate=True needs inputs X (training data)")
    pruned = model
    for layer in range(len(_hidden_linear_indices(model))):
        # one forward pass gives the activations both the criterion and the repair use
        acts = (hidden_activations(pruned, X)[layer]
                if compensate or method in ("activation", "redundancy") else None)
        scores = _scores(pruned, layer, method, acts, seed + layer)
        k = min(n_to_prune(amount, scores.numel()), scores.numel() - 1)
        drop = torch.argsort(scores, stable=True)[:k].tolist()
        pruned = remove_neurons(pruned, layer, drop, activations=acts if compensate else None)
    return pruned if pruned is not model else copy.deepcopy(model)


# --- when: one-shot vs iterative ------------------------------------------------------------------

def cubic_schedule(final: float, steps: int, initial: float = 0.0) -> list[float]:
    """Sparsity after each of ``steps`` pruning steps (Zhu & Gupta, 2017):

    .. math:: s_t = s_f + (s_i - s_f)\\,(1 - t/n)^3, \\quad t = 1, \\dots, n

    Big steps while many redundant weights remain, small ones near the end.
    """
    _check_amount(final)
    _check_amount(initial)
    check_int(steps, "steps", fn="cubic_schedule")
    return [final + (initial - final) * (1 - t / steps) ** 3 for t in range(1, steps + 1)]


def one_shot_prune(model: nn.Module, data, sparsity: float, epochs: int = 0,
                   scope: str = "global", **train_kwargs) -> nn.Module:
    """Prune a copy of ``model`` to ``sparsity`` at once, then fine-tune ``epochs`` (masks held)."""
    pruned = copy.deepcopy(model)
    masks = magnitude_masks(pruned, sparsity, scope)
    apply_masks_(pruned, masks)
    if epochs:
        train(pruned, data, epochs=epochs, callbacks=[KeepMasks(masks)], progress=False,
              evaluate_val=False, **train_kwargs)
    return pruned


def iterative_prune(model: nn.Module, data, sparsity: float, steps: int = 5, epochs: int = 10,
                    scope: str = "global", **train_kwargs) -> nn.Module:
    """Prune a copy of ``model`` to ``sparsity`` in ``steps`` steps of :func:`cubic_schedule`.

    ``epochs`` of fine-tuning are shared out between the steps (the same budget as
    ``one_shot_prune(..., epochs=epochs)``); each step prunes the weights that are smallest
    *after* the previous fine-tuning.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < steps:
        raise ValueError(f"epochs must be an integer >= steps ({steps}), got {epochs!r}")
    pruned = copy.deepcopy(model)
    per_step = [epochs // steps + (1 if t < epochs % steps else 0) for t in range(steps)]
    for t, (s, e) in enumerate(zip(cubic_schedule(sparsity, steps), per_step)):
        masks = magnitude_masks(pruned, s, scope)
        apply_masks_(pruned, masks)
        train(pruned, data, epochs=e, callbacks=[KeepMasks(masks)], progress=False,
              evaluate_val=False, **{"seed": t, **train_kwargs})
    return pruned


# --- what it saves: bytes and time ------------------------------------------------------------

def _check_matrix(t) -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise ValueError(f"expected a 2-D torch.Tensor, got "
                         f"{getattr(t, 'shape', type(t).__name__)}")


def dense_bytes(t: torch.Tensor) -> int:
    """Bytes of a dense tensor: every entry, zero or not (``numel * element_size``)."""
    return t.numel() * t.element_size()


def csr_bytes(t: torch.Tensor, index_bytes: int = 8) -> int:
    """Bytes of ``t`` in CSR (compressed sparse row) format, as ``to_sparse_csr()`` stores it.

    .. math:: \\mathrm{nnz}\\,(b_{value} + b_{index}) + (\\text{rows} + 1)\\,b_{index}

    values and column indices for each non-zero, plus one row pointer per row and one more.
    torch uses int64 indices (8 bytes); int32 (4) is common elsewhere.
    """
    _check_matrix(t)
    nnz = torch.count_nonzero(t).item()
    return nnz * (t.element_size() + index_bytes) + (t.shape[0] + 1) * index_bytes


def coo_bytes(t: torch.Tensor, index_bytes: int = 8) -> int:
    """Bytes of ``t`` in COO format: per non-zero, its value and one index per dimension."""
    nnz = torch.count_nonzero(t).item()
    return nnz * (t.element_size() + t.ndim * index_bytes)


def size_report(model: nn.Module, index_bytes: int = 8) -> dict:
    """Parameters and bytes of ``model``: dense vs its weights stored as CSR / COO.

    Keys: ``params``, ``nonzero``, ``sparsity``, ``dense_bytes`` (all parameters), ``csr_bytes``
    and ``coo_bytes`` (Linear weights in that format, everything else dense).
    """
    params = sum(p.numel() for p in model.parameters())
    if params == 0:
        raise ValueError("model has no parameters (a to_sparse() copy keeps its weights as "
                         "buffers: measure it with saved_bytes)")
    nonzero = count_nonzero(model)
    dense = sum(dense_bytes(p) for p in model.parameters())
    weights = [layer.weight.detach() for layer in linear_layers(model)]
    rest = dense - sum(dense_bytes(w) for w in weights)
    return {"params": params, "nonzero": nonzero, "sparsity": 1 - nonzero / params,
            "dense_bytes": dense,
            "csr_bytes": rest + sum(csr_bytes(w, index_bytes) for w in weights),
            "coo_bytes": rest + sum(coo_bytes(w, index_bytes) for w in weights)}


def saved_bytes(obj, compressed: bool = False) -> int:
    """Length of ``torch.save(obj)`` (e.g. a ``state_dict``): the size of the file on disk.

    With ``compressed``, the length after ``zlib`` (level 9): zeros compress well, so this is
    what pruning saves in a download or an archive without any sparse format.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(zlib.compress(buf.getvalue(), 9)) if compressed else buf.getbuffer().nbytes


class SparseLinear(nn.Module):
    """A Linear layer whose weight is stored as a CSR sparse tensor (inference only).

    ``y = x W^T + b`` computed as ``(W x^T)^T`` with a sparse-dense matrix product, so only the
    non-zeros are stored and multiplied.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():  # "sparse CSR support is in beta": we know
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta")
            self.register_buffer("weight", linear.weight.detach().to_sparse_csr())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sparse.mm(self.weight, x.T).T
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={nnz}"


def to_sparse(model: nn.Sequential) -> nn.Sequential:
    """A copy of ``model`` with every Linear replaced by a :class:`SparseLinear` (for inference)."""
    return nn.Sequential(*[SparseLinear(m) if isinstance(m, nn.Linear) else copy.deepcopy(m)
                           for m in model]).eval()


@torch.no_grad()
def time_inference(models: nn.Module | Mapping[str, nn.Module], X: torch.Tensor,
                   repeats: int = 7, number: int = 20) -> float | dict[str, float]:
    """Median over ``repeats`` of the mean time (seconds) of ``number`` forward passes on ``X``.

    Give one model for its time, or ``{name: model}`` for each one's time: the models then take
    turns within each repeat, so a burst of load from another process slows them all alike
    instead of one of them. The median of several repeats resists the odd slow run. Models are
    put in eval mode.
    """
    named = {"model": models} if isinstance(models, nn.Module) else dict(models)
    for m in named.values():
        m.eval()
        m(X)  # warm-up: the first call pays for allocations
    times: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(repeats):
        for name, m in named.items():
            start = time.perf_counter()
            for _ in range(number):
                m(X)
            times[name].append((time.perf_counter() - start) / number)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    return medians["model"] if isinstance(models, nn.Module) else medians
