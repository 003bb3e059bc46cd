"""Chapter 10's experiments and widget, built on :mod:`nncourse.pruning`.

* :func:`trained_baseline` -- the network the chapter prunes: a 64-256-256-10 ReLU MLP on digits;
* :func:`oneshot_curve`, :func:`finetune_curves`, :func:`criteria_curves` -- accuracy as more is
  pruned, for each way of pruning;
* :func:`oneshot_seeds`, :func:`finetune_seeds`, :func:`criteria_seeds` -- the same over the
  baselines of :data:`SEEDS` (one row per seed), printed by :func:`format_rows` as mean and
  standard deviation and drawn by :func:`plot_mean_curves`: on the cliff of a pruning curve a single
  run moves by several points with the seed or the CPU's floating-point path;
* :func:`noisy_digits` -- the same digits with pixel noise, a mild distribution shift;
* :func:`storage_table`, :func:`timing_table` -- parameters, bytes and inference time side by side;
* :func:`explore_sparsity` -- a sparsity slider and a method dropdown redrawing accuracy, the
  weight histogram and per-layer sparsity (everything precomputed by :func:`widget_states`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import NullLocator
from torch import nn

from nncourse import pruning as P
from nncourse import training
from nncourse.data import Dataset, load_digits
from nncourse.env import progress
from nncourse.models import linear_layers, make_mlp
from nncourse.plotting import color
from nncourse.training import accuracy, train
from nncourse.widgets import interactive_figure

__all__ = ["format_table", "sparsity_axis", "SPARSITIES", "FINETUNE_SPARSITIES",
           "NEURON_FRACTIONS", "WIDGET_AMOUNTS", "METHODS",
           "LABELS", "SEEDS", "trained_baseline", "oneshot_curve", "finetune_curves",
           "criteria_curves", "oneshot_seeds", "finetuned", "finetune_seeds", "criteria_seeds",
           "mean_sd",
           "format_rows", "plot_mean_curves",
           "plot_curves", "noisy_digits", "storage_table", "timing_table", "mask_picture",
           "widget_states", "explore_sparsity"]

#: Sparsities of the one-shot curves (fraction of weights set to zero).
SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99)
#: Sparsities at which one-shot and iterative pruning (both fine-tuned) are compared.
FINETUNE_SPARSITIES = (0.9, 0.98)
#: Seeds of the baselines (weights, batch order and data split) that the curves are averaged over:
#: on the cliff of a pruning curve one run can move by several points with the seed or the CPU.
SEEDS = (0, 1, 2)
#: Fractions of hidden neurons removed when comparing neuron criteria.
NEURON_FRACTIONS = (0.0, 0.5, 0.75, 0.9, 0.95)
#: The widget's methods: dropdown label -> internal name.
METHODS = {"layer-wise magnitude": "layer", "global magnitude": "global",
           "neurons (weight norm, compensated)": "neurons"}
#: Colour key of each curve (nncourse.plotting.color), so a method keeps its colour.
LABELS = {"layer": "layer-wise", "global": "global", "neurons": "structured",
          "one-shot": "one-shot", "iterative": "iterative_prune"}

_FINETUNE = {"optimizer": "adam", "lr": 3e-3}


@lru_cache(maxsize=4)
def _baseline(seed: int):
    data = load_digits(seed=seed)
    model = make_mlp(64, 10, width=256, depth=2, init="he_normal", seed=seed)
    history = train(model, data, epochs=30, optimizer="adam", lr=1e-3, seed=seed)
    return data, model.state_dict(), history


def trained_baseline(seed: int = 0) -> tuple[nn.Sequential, Dataset, object]:
    """``(model, data, history)``: a 64-256-256-10 ReLU MLP trained 30 epochs (Adam) on digits.

    Trained once per session; every call returns a fresh copy of the trained model.
    """
    data, state, history = _baseline(seed)
    model = make_mlp(64, 10, width=256, depth=2)
    model.load_state_dict(state)
    return model.eval(), data, history


def oneshot_curve(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                  sparsities=SPARSITIES, scope: str = "global") -> list[float]:
    """Accuracy on ``X, y`` after one-shot magnitude pruning to each sparsity (no fine-tuning)."""
    return [accuracy(P.prune_magnitude(model, s, scope), X, y) for s in sparsities]


def finetune_curves(model: nn.Module, data: Dataset, sparsities=FINETUNE_SPARSITIES,
                    epochs: int = 10, steps: int = 5, scope: str = "global") -> dict:
    """Pruned-and-fine-tuned models per sparsity: ``{"one-shot": [...], "iterative": [...]}``.

    Both get the same budget of ``epochs`` fine-tuning epochs (Adam, lr 3e-3): one-shot spends
    them after pruning once, iterative shares them between ``steps`` pruning steps.
    """
    return {
        "one-shot": [P.one_shot_prune(model, data, s, epochs, scope, **_FINETUNE)
                     for s in sparsities],
        "iterative": [P.iterative_prune(model, data, s, steps, epochs, scope, **_FINETUNE)
                      for s in sparsities],
    }


def criteria_curves(model: nn.Sequential, data: Dataset, fractions=NEURON_FRACTIONS,
                    compensate: bool = False) -> dict[str, list[float]]:
    """Validation accuracy after removing each fraction of hidden neurons, per criterion."""
    # removing no neuron leaves the network as it is: its accuracy, measured once
    dense = accuracy(model, data.X_val, data.y_val)
    return {method: [accuracy(P.prune_neurons(model, f, method, X=data.X_train,
                                              compensate=compensate), data.X_val, data.y_val)
                     if f else dense for f in fractions]
            for method in P.NEURON_CRITERIA}


@lru_cache(maxsize=4)
def _criteria_seeds(fractions: tuple, compensate: bool, seeds: tuple) -> dict:
    out = {}
    for seed in progress(seeds, desc="seeds"):
        model, data, _ = trained_baseline(seed)
        for method, accs in criteria_curves(model, data, fractions, compensate).items():
            out.setdefault(method, []).append(accs)
    return {method: np.array(rows) for method, rows in out.items()}


def criteria_seeds(fractions=NEURON_FRACTIONS, compensate: bool = False,
                   seeds=SEEDS) -> dict[str, np.ndarray]:
    """:func:`criteria_curves` for the baseline of each seed: ``{method: (seeds, fractions)}``.

    Cached: treat the arrays as read-only.
    """
    return _criteria_seeds(tuple(fractions), bool(compensate), tuple(seeds))


def mean_sd(runs) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation over the first axis (seeds) of ``runs``."""
    runs = np.asarray(runs, dtype=float)
    if runs.ndim != 2 or len(runs) < 2:
        raise ValueError(f"runs must be a (seeds, points) array with at least 2 seeds, got shape "
                         f"{runs.shape}")
    return training.mean_sd(runs)


@lru_cache(maxsize=8)
def _oneshot_seeds(scope: str, sparsities: tuple, seeds: tuple, noise_std: float) -> np.ndarray:
    rows = []
    for seed in progress(seeds, desc="seeds"):
        model, data, _ = trained_baseline(seed)
        X = noisy_digits(data.X_val, noise_std) if noise_std else data.X_val
        rows.append(oneshot_curve(model, X, data.y_val, sparsities, scope))
    return np.array(rows)


def oneshot_seeds(scope: str = "global", sparsities=SPARSITIES, seeds=SEEDS,
                  noise_std: float = 0.0) -> np.ndarray:
    """One-shot accuracy, shape ``(len(seeds), len(sparsities))``: one row per baseline seed.

    Each seed trains its own baseline (:func:`trained_baseline`) on its own split of the digits
    and is scored on its own validation split (with pixel noise of ``noise_std`` if given).
    Cached: treat the array as read-only.
    """
    return _oneshot_seeds(scope, tuple(sparsities), tuple(seeds), float(noise_std))


@lru_cache(maxsize=4)
def _finetuned(seed: int, sparsities: tuple, epochs: int, steps: int) -> dict:
    model, data, _ = trained_baseline(seed)
    return finetune_curves(model, data, sparsities, epochs, steps)


def finetuned(seed: int = 0, sparsities=FINETUNE_SPARSITIES, epochs: int = 10,
              steps: int = 5) -> dict:
    """:func:`finetune_curves` of the baseline of ``seed`` (cached): ``{method: [models]}``."""
    return _finetuned(seed, tuple(sparsities), epochs, steps)


def finetune_seeds(sparsities=FINETUNE_SPARSITIES, seeds=SEEDS, epochs: int = 10, steps: int = 5,
                   noise_std: float = 0.0) -> dict[str, np.ndarray]:
    """Validation accuracy of the fine-tuned models per seed: ``{method: (seeds, sparsities)}``.

    With ``noise_std`` the same models are scored on the noisy validation digits.
    """
    out = {}
    for seed in progress(seeds, desc="seeds"):
        _, data, _ = trained_baseline(seed)
        X = noisy_digits(data.X_val, noise_std) if noise_std else data.X_val
        for method, models in finetuned(seed, sparsities, epochs, steps).items():
            out.setdefault(method, []).append([accuracy(m, X, data.y_val) for m in models])
    return {method: np.array(rows) for method, rows in out.items()}


def format_rows(header: str, columns, rows: dict, width: int = 24) -> str:
    """A table of means over seeds, with the spread under each row.

    ``rows`` maps a label to a ``(seeds, points)`` array of accuracies. Each label gets a line of
    means (as percentages) and a line ``± sd`` (the sample standard deviation, in points).
    """
    lines = [f"{header:<{width}}" + "".join(f"{c:>7.0%}" for c in columns)]
    for label, runs in rows.items():
        mean, sd = mean_sd(runs)
        lines.append(f"{label:<{width}}" + "".join(f"{m:>7.1%}" for m in mean))
        lines.append(f"{'  ± sd (points)':<{width}}" + "".join(f"{100 * v:>7.1f}" for v in sd))
    return "\n".join(lines)


def plot_mean_curves(x, rows: dict, ax=None, title: str = "", xlabel: str = "sparsity",
                     ylabel: str = "validation accuracy", styles: dict | None = None):
    """Like :func:`plot_curves` for ``{label: (seeds, points) array}``: the mean over seeds, with
    a band of ± one standard deviation."""
    ax = plot_curves(x, {label: mean_sd(runs)[0] for label, runs in rows.items()}, ax=ax,
                     title=title, xlabel=xlabel, ylabel=ylabel, styles=styles)
    for label, runs in rows.items():
        mean, sd = mean_sd(runs)
        ax.fill_between(x, mean - sd, mean + sd, color=color(LABELS.get(label, label)), alpha=0.15,
                        lw=0)
    return ax


def sparsity_axis(ax, ticks=SPARSITIES) -> None:
    """A sparsity x axis spaced by ``-log10(1 - sparsity)``: 0, 90 %, 99 % equally far apart,
    so that 95-99 % are not crammed into the right edge."""
    def forward(s):
        return -np.log10(1 - np.minimum(s, 0.999))

    def inverse(v):
        return 1 - 10.0 ** (-np.asarray(v))

    ax.set_xscale("function", functions=(forward, inverse))
    ax.set_xticks(list(ticks), [f"{t:.0%}" for t in ticks], fontsize=8)


def plot_curves(x, curves: dict, ax=None, title: str = "", xlabel: str = "sparsity",
                ylabel: str = "validation accuracy", styles: dict | None = None):
    """One line per entry of ``curves`` (``{label: values}``) against ``x``, course colours.

    A ``"sparsity"`` axis is spaced by ``-log10(1 - sparsity)`` (:func:`sparsity_axis`)."""
    if ax is None:
        _, ax = plt.subplots()
    styles = styles or {}
    for label, ys in curves.items():
        ax.plot(x, ys, styles.get(label, "o-"), color=color(LABELS.get(label, label)),
                label=label, ms=4)
    if xlabel == "sparsity":
        sparsity_axis(ax, sorted(set(SPARSITIES) | set(x)))
        xlabel = "sparsity (spaced by log(1 - sparsity))"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=9)
    return ax


def noisy_digits(X: torch.Tensor, std: float = 0.2, seed: int = 0) -> torch.Tensor:
    """``X`` with Gaussian pixel noise of standard deviation ``std``, clipped to [0, 1]:
    a mild, seeded distribution shift (scanned digits from a worse scanner)."""
    if not (isinstance(std, (int, float)) and std >= 0):
        raise ValueError(f"std must be a non-negative number, got {std!r}")
    noise = torch.randn(X.shape, generator=torch.Generator().manual_seed(seed))
    return (X + std * noise).clamp(0.0, 1.0)


def storage_table(models: dict, index_bytes: int = 8) -> str:
    """A table of parameters and bytes for each ``{name: model}``: dense, CSR, COO, the
    ``torch.save`` file, and that file zlib-compressed (zeros compress well)."""
    lines = [f"{'model':<26}{'params':>8}{'non-zero':>10}{'dense kB':>10}{'CSR kB':>8}"
             f"{'COO kB':>8}{'file kB':>9}{'zlib kB':>9}"]
    for name, model in models.items():
        r = P.size_report(model, index_bytes)
        state = model.state_dict()
        lines.append(f"{name:<26}{r['params']:>8}{r['nonzero']:>10}{r['dense_bytes'] / 1e3:>10.1f}"
                     f"{r['csr_bytes'] / 1e3:>8.1f}{r['coo_bytes'] / 1e3:>8.1f}"
                     f"{P.saved_bytes(state) / 1e3:>9.1f}"
                     f"{P.saved_bytes(state, compressed=True) / 1e3:>9.1f}")
    return "\n".join(lines)


@torch.no_grad()
def timing_table(models: dict, X: torch.Tensor, repeats: int = 7, number: int = 5) -> str:
    """Median forward time of each ``{name: model}`` on ``X`` and its speed-up over the first.

    The models take turns within each repeat, so a burst of load from another process slows
    them all alike instead of one of them (:func:`nncourse.pruning.time_inference`).
    """
    med = P.time_inference(models, X, repeats=repeats, number=number)
    first = next(iter(med.values()))
    return "\n".join(f"{name:<26}{t * 1e3:8.2f} ms   speed-up x{first / t:5.1f}"
                      for name, t in med.items())


def mask_picture(weight: torch.Tensor, amount: float = 0.5, rows: int = 12, cols: int = 16):
    """The top-left corner of ``weight`` kept (1) or pruned (0), unstructured vs neurons.

    Returns two arrays of shape ``(rows, cols)``: magnitude mask, and the mask that removes the
    same fraction of whole rows (neurons) by row norm.
    """
    w = weight.detach()[:rows, :cols]
    unstructured = P.magnitude_mask(w, amount).numpy()
    k = P.n_to_prune(amount, rows)
    drop = torch.argsort(w.norm(dim=1), stable=True)[:k]
    structured = np.ones((rows, cols), dtype=np.float32)
    structured[drop.numpy()] = 0.0
    return unstructured, structured


# --- the widget -----------------------------------------------------------------------------------

#: The slider's amounts: fraction of weights (magnitude) or of hidden neurons (neurons).
WIDGET_AMOUNTS = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
_BINS = 41


def _pruned(model, data, method, amount):
    if method == "neurons":
        return P.prune_neurons(model, amount, "weight", X=data.X_train, compensate=True)
    return P.prune_magnitude(model, amount, method)


@lru_cache(maxsize=1)
def widget_states(seed: int = 0) -> dict:
    """Everything the widget shows, precomputed: per method and amount, the validation accuracy,
    the fraction of all weights removed, the weights removed per layer, and a histogram of the
    remaining weights (``edges`` shared). Computed once per session (treat it as read-only).
    Unit-tested without a browser."""
    model, data, _ = trained_baseline(seed)
    dense = [layer.weight.numel() for layer in linear_layers(model)]
    wmax = max(layer.weight.abs().max().item() for layer in linear_layers(model))
    edges = np.linspace(-wmax, wmax, _BINS + 1)
    states = {"edges": edges, "amounts": WIDGET_AMOUNTS, "methods": {}}
    for method in METHODS.values():
        rows = []
        for amount in WIDGET_AMOUNTS:
            pruned = _pruned(model, data, method, amount)
            weights = [layer.weight.detach() for layer in linear_layers(pruned)]
            # a removed neuron's weights count as removed: compare with the dense layer sizes
            left = [torch.count_nonzero(w).item() for w in weights]
            values = torch.cat([w[w != 0] for w in weights]).numpy()
            rows.append({"acc": accuracy(pruned, data.X_val, data.y_val),
                         "removed": 1 - sum(left) / sum(dense),
                         "per_layer": [1 - n / d for n, d in zip(left, dense)],
                         "hist": np.histogram(values, edges)[0]})
        states["methods"][method] = rows
    return states


def explore_sparsity(static: bool = False, seed: int = 0):
    """Sparsity slider + method dropdown -> accuracy, weight histogram, per-layer sparsity."""
    import ipywidgets as W

    states = widget_states(seed)
    amounts = list(states["amounts"])
    edges = states["edges"]
    controls = {
        "method": W.Dropdown(options=list(METHODS), value="global magnitude",
                             description="method", style={"description_width": "initial"},
                             layout=W.Layout(margin="2px 12px 2px 4px")),
        "amount": W.SelectionSlider(options=amounts, value=0.9, description="amount pruned",
                                    style={"description_width": "initial"}),
    }

    def draw(axes, state, method, amount):
        ax_acc, ax_hist, ax_layer = axes
        key = METHODS[method]
        rows = states["methods"][key]
        row = rows[amounts.index(amount)]
        if "marker" not in state:
            for name, k in METHODS.items():
                xs = [r["removed"] for r in states["methods"][k]]
                ys = [r["acc"] for r in states["methods"][k]]
                state[k], = ax_acc.plot(xs, ys, "o-", ms=3, color=color(LABELS[k]), label=name)
            state["marker"], = ax_acc.plot([], [], "o", ms=10, mfc="none", mec="k", mew=2)
            sparsity_axis(ax_acc, (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99))
            ax_acc.set_xlabel("fraction of weights removed (log(1 - x) spacing)")
            ax_acc.set_ylabel("validation accuracy")
            ax_acc.set_ylim(0, 1.02)
            # under the curves: part of the cached background, not repainted on every move
            ax_acc.legend(loc="lower left", fontsize=8).set_zorder(1.9)
            state["hist"] = ax_hist.stairs(np.maximum(row["hist"], 0.5), edges, baseline=0.5,
                                           fill=True, alpha=0.7)
            ax_hist.set_yscale("log")
            # gridlines behind the bars: the widget then repaints the bars, not the axes
            ax_hist.set_axisbelow(True)
            ax_layer.set_axisbelow(True)
            ax_hist.set_ylim(0.5, 3e4)
            ax_hist.set_yticks([1, 10, 100, 1000, 10000])
            ax_hist.yaxis.set_minor_locator(NullLocator())  # fewer ticks: a faster redraw
            ax_hist.set_xlabel("weight value")
            ax_hist.set_ylabel("count (log)")
            ax_hist.set_title("remaining weights")
            state["bars"] = ax_layer.bar([1, 2, 3], row["per_layer"])
            ax_layer.set_ylim(0, 1)
            ax_layer.set_xticks([1, 2, 3], ["64→256", "256→256", "256→10"])
            ax_layer.set_xlabel("layer")
            ax_layer.set_ylabel("fraction removed")
            ax_layer.set_title("per layer")
        for k in METHODS.values():
            state[k].set_linewidth(2.5 if k == key else 0.8)
            state[k].set_alpha(1.0 if k == key else 0.35)
        state["marker"].set_data([row["removed"]], [row["acc"]])
        ax_acc.set_title(f"accuracy {row['acc']:.1%} at {row['removed']:.0%} removed")
        state["hist"].set_data(values=np.maximum(row["hist"], 0.5))
        state["hist"].set_color(color(LABELS[key]))
        for bar, v in zip(state["bars"], row["per_layer"]):
            bar.set_height(v)
            bar.set_color(color(LABELS[key]))

    return interactive_figure(draw, controls, nrows=1, ncols=3, figsize=(11, 3.4), static=static)


def _relative_entries(mask: torch.Tensor, bits: int = 4) -> int:
    """Entries Deep Compression's relative indexing stores for ``mask`` (row-major): one per
    non-zero, plus a filler zero wherever the gap to the previous non-zero exceeds ``2**bits``."""
    positions = torch.nonzero(mask.flatten()).flatten()
    if positions.numel() == 0:
        return 0
    gaps = torch.diff(positions, prepend=torch.tensor([-1]))
    return int(positions.numel() + ((gaps - 1) // 2 ** bits).sum().item())


def format_table(models: dict) -> str:
    """Bytes of the weight matrices of each ``{name: model}`` in five formats (4-byte values), and
    the multiply-adds per example a dense and a sparse kernel do.

    CSR with int64 or int32 column indices (plus one row pointer per row), a bitmask (one bit per
    slot, then the non-zero values), Deep Compression's 4-bit relative indices (one 4-bit gap per
    stored value, filler zeros for longer gaps), and dense. Biases are left out (a few hundred
    bytes).
    """
    head = (f"{'model':<22}{'dense':>8}{'CSR64':>8}{'CSR32':>8}{'bitmask':>9}{'rel4':>8}"
            f"{'MACs dense':>12}{'MACs sparse':>13}")
    lines = ["weight bytes in kB, multiply-adds (MACs) per example", head]
    for name, model in models.items():
        dense = csr64 = csr32 = bitmask = rel4 = macs = nnz_total = 0
        for layer in linear_layers(model):
            w = layer.weight.detach()
            rows, cols = w.shape
            nnz = int(torch.count_nonzero(w))
            dense += 4 * rows * cols
            csr64 += 12 * nnz + 8 * (rows + 1)
            csr32 += 8 * nnz + 4 * (rows + 1)
            bitmask += 4 * nnz + math.ceil(rows * cols / 8)
            rel4 += 4.5 * _relative_entries(w != 0)
            macs += rows * cols
            nnz_total += nnz
        lines.append(f"{name:<22}{dense / 1e3:>8.1f}{csr64 / 1e3:>8.1f}{csr32 / 1e3:>8.1f}"
                     f"{bitmask / 1e3:>9.1f}{rel4 / 1e3:>8.1f}{macs:>12,}{nnz_total:>13,}")
    return "\n".join(lines)
