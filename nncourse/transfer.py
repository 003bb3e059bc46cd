"""Transfer learning: reuse a trained network's lower layers, freeze them, fine-tune with per-layer
learning rates; pretrain without labels (an autoencoder, a self-supervised pretext task).

The models are the course's plain ``nn.Sequential`` MLPs (:func:`nncourse.models.make_mlp`). A
*block* is one ``Linear`` with what follows it up to the next ``Linear`` (batch norm, activation,
dropout): :func:`blocks` splits a model into them, the last block is the *head*.

* :func:`reuse` -- a new model whose lower blocks are **copies** of the source's (``deepcopy``:
  training the new model must not change the source; ``nn.Sequential(*source[:k], head)`` would
  share the very same layer objects -- a known trap) under a new head.
* :func:`freeze` / :func:`unfreeze` -- ``requires_grad_(False)`` is not enough: a batch-norm layer
  in training mode still updates its running mean and variance on every forward pass, and
  normalizes with the *batch* statistics. A frozen batch-norm layer is kept in eval mode by a
  forward pre-hook, so ``model.train()`` (which every training loop calls) cannot switch it back.
  Gradients are cleared, so an optimizer skips the frozen parameters entirely -- including their
  weight decay and momentum, which torch's optimizers apply only to parameters with a gradient.
* :func:`param_groups` -- discriminative learning rates (Howard & Ruder 2018, ULMFiT): one
  optimizer parameter group per block, each with its own ``lr``.
* :func:`autoencoder` / :func:`pretrain_autoencoder` and :func:`rotations` /
  :func:`pretrain_rotations` -- unsupervised and self-supervised pretraining on unlabelled images.

Left out: convolutional backbones and pretrained weights from the internet (the course is
offline and CPU-only; the ideas are the same on an 8x8-digit MLP).

Further reading: Yosinski et al. 2014, "How transferable are features in deep neural networks?";
Hinton & Salakhutdinov 2006; Gidaris et al. 2018, "Unsupervised representation learning by
predicting image rotations"; Howard & Ruder 2018; Géron, *Hands-On Machine Learning*, ch. 11.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from nncourse._validate import check_int, check_number

__all__ = ["blocks", "reuse", "freeze", "unfreeze", "is_frozen", "trainable_parameters",
           "param_groups", "layerwise_lrs", "autoencoder", "pretrain_autoencoder", "rotations",
           "pretrain_rotations"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_HOOK = "_nncourse_frozen_bn_hook"


def _check_sequential(model, fn: str) -> nn.Sequential:
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"{fn}: model must be an nn.Sequential (e.g. from make_mlp), "
                        f"got {type(model).__name__}")
    if not any(isinstance(m, nn.Linear) for m in model):
        raise ValueError(f"{fn}: model has no nn.Linear layer to split into blocks")
    return model


def blocks(model: nn.Sequential) -> list[nn.Sequential]:
    """The model's blocks, input to output: each starts at an ``nn.Linear`` and runs up to the
    next one (its batch norm, activation, dropout). The last block is the head.

    The blocks hold the model's own layers (not copies): use them to freeze or group parameters.
    """
    _check_sequential(model, "blocks")
    out: list[list[nn.Module]] = []
    for m in model:
        if isinstance(m, nn.Linear) or not out:
            out.append([])
        out[-1].append(m)
    return [nn.Sequential(*b) for b in out]


def reuse(source: nn.Sequential, n_layers: int, head: nn.Module | int,
          seed: int | None = None) -> nn.Sequential:
    """A new model: copies of ``source``'s first ``n_layers`` blocks, then ``head``.

    Parameters
    ----------
    source : nn.Sequential
        A trained model (left untouched: the new model's layers are deep copies).
    n_layers : int
        How many blocks to reuse, 0 (none: the head alone) up to all but the source's head.
    head : nn.Module or int
        The new top: a module, or a number of outputs for a fresh ``nn.Linear`` (PyTorch's
        default initialization; drawn from a generator seeded with ``seed`` if given).

    Example: ``reuse(make_mlp(64, 8, width=[32, 16]), 2, head=2)`` is
    ``Linear(64, 32) ReLU Linear(32, 16) ReLU Linear(16, 2)`` with the first four copied.
    """
    fn = "reuse"
    bl = blocks(source)
    check_int(n_layers, "n_layers", low=0, fn=fn)
    if n_layers > len(bl) - 1:
        raise ValueError(f"{fn}: n_layers must be at most {len(bl) - 1} (the source's blocks "
                         f"below its head), got {n_layers}")
    body = [copy.deepcopy(m) for b in bl[:n_layers] for m in b]
    if isinstance(head, bool) or not isinstance(head, (int, nn.Module)):
        raise TypeError(f"{fn}: head must be an nn.Module or a number of outputs, "
                        f"got {type(head).__name__}")
    if isinstance(head, int):
        check_int(head, "head", fn=fn)
        n_in = bl[n_layers][0].in_features  # the width the reused blocks produce
        if seed is None:
            head = nn.Linear(n_in, head)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                head = nn.Linear(n_in, head)
    return nn.Sequential(*body, head)


def _keep_eval(module: nn.Module, _args) -> None:
    """Forward pre-hook of a frozen batch-norm layer: whatever ``model.train()`` said, normalize
    with the running statistics and leave them alone."""
    module.training = False


def freeze(module: nn.Module) -> nn.Module:
    """Freeze ``module`` (a layer, a block or a whole model) in place and return it.

    * every parameter gets ``requires_grad = False`` and its ``.grad`` is cleared (``None``): an
      optimizer then skips it -- no step, no momentum, no weight decay;
    * every batch-norm layer inside is put in eval mode and kept there by a forward pre-hook:
      ``requires_grad`` alone does not stop its running mean and variance from moving, and in
      training mode it would still normalize with each batch's statistics.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"freeze: expected an nn.Module, got {type(module).__name__}")
    for p in module.parameters():
        p.requires_grad_(False)
        p.grad = None
    for m in module.modules():
        if isinstance(m, _NORMS) and getattr(m, _HOOK, None) is None:
            m.eval()
            setattr(m, _HOOK, m.register_forward_pre_hook(_keep_eval))
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Undo :func:`freeze`: parameters trainable again, batch-norm layers follow
    ``model.train()`` / ``model.eval()`` again (they take the mode of their parent now)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"unfreeze: expected an nn.Module, got {type(module).__name__}")
    for p in module.parameters():
        p.requires_grad_(True)
    for m in module.modules():
        handle = getattr(m, _HOOK, None)
        if handle is not None:
            handle.remove()
            setattr(m, _HOOK, None)
    module.train(module.training)
    return module


def is_frozen(module: nn.Module) -> bool:
    """True if no parameter of ``module`` is trainable and its batch-norm layers are held in
    eval mode."""
    return (all(not p.requires_grad for p in module.parameters())
            and all(getattr(m, _HOOK, None) is not None
                    for m in module.modules() if isinstance(m, _NORMS)))


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters with ``requires_grad`` -- what an optimizer built *now* should see if the
    frozen layers stay frozen for good (see :func:`param_groups` for the other case)."""
    return [p for p in model.parameters() if p.requires_grad]


def layerwise_lrs(head_lr: float, decay: float, n_blocks: int) -> list[float]:
    """ULMFiT-style rates, input block first: ``head_lr * decay ** (n_blocks - 1 - i)``.

    ``layerwise_lrs(1e-2, 0.1, 3)`` is ``[1e-4, 1e-3, 1e-2]``: the head learns fastest, the
    general-purpose lower layers slowest.
    """
    fn = "layerwise_lrs"
    check_number(head_lr, "head_lr", 0, low_open=True, fn=fn)
    check_number(decay, "decay", 0, 1, low_open=True, fn=fn)
    check_int(n_blocks, "n_blocks", fn=fn)
    return [head_lr * decay ** (n_blocks - 1 - i) for i in range(n_blocks)]


def param_groups(model: nn.Sequential, lrs: Sequence[float]) -> list[dict]:
    """One optimizer parameter group per block of ``model`` with its learning rate.

    ``lrs[i]`` is block ``i``'s rate (input first, head last; see :func:`layerwise_lrs`). Pass
    the result to any ``torch.optim`` optimizer: ``torch.optim.Adam(param_groups(m, lrs))``.

    Frozen parameters are **included**: an optimizer only ever updates the parameters it was
    given, so one built over the trainable parameters alone would never see a layer unfrozen
    later -- the unfrozen layer would silently stay put. A frozen parameter costs nothing here
    (it has no gradient, so the optimizer skips it) and starts training the moment
    :func:`unfreeze` runs.
    """
    fn = "param_groups"
    bl = blocks(model)
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Sequence) or len(lrs) != len(bl):
        raise ValueError(f"{fn}: lrs must be a sequence of {len(bl)} learning rates (one per "
                         f"block, input first), got {lrs!r}")
    groups = []
    for i, (b, lr) in enumerate(zip(bl, lrs)):
        check_number(lr, f"lrs[{i}]", 0, fn=fn)
        params = list(b.parameters())
        if params:
            groups.append({"params": params, "lr": float(lr)})
    return groups


# --- pretraining without labels ------------------------------------------------------------

def autoencoder(n_in: int, widths: Sequence[int], batch_norm: bool = False,
                seed: int | None = None) -> nn.Sequential:
    """An MLP autoencoder ``n_in -> widths -> reversed widths -> n_in``.

    Its first ``len(widths)`` blocks are the encoder, built exactly like the body of
    ``make_mlp(n_in, ..., width=widths, batch_norm=batch_norm)``, so :func:`reuse` takes them
    over: ``reuse(ae, len(widths), head=2)``. The decoder mirrors it (no weight tying, to keep it
    a plain ``make_mlp``).
    """
    from nncourse.models import make_mlp

    widths = list(widths)
    if not widths:
        raise ValueError("autoencoder: widths must name at least one hidden layer")
    return make_mlp(n_in, n_in, width=widths + widths[-2::-1], batch_norm=batch_norm,
                    init="he_normal", seed=seed)


def _fit(model: nn.Module, X: torch.Tensor, target: torch.Tensor, loss_fn, epochs: int,
         lr: float, batch_size: int, seed: int) -> list[float]:
    """A plain Adam loop (the course's ``train`` reports accuracy, meaningless for
    reconstruction). Returns the mean loss of each epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=gen)
        total = 0.0
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            loss = loss_fn(model(X[idx]), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(X))
    model.eval()
    return losses


def pretrain_autoencoder(model: nn.Module, X: torch.Tensor, epochs: int = 30, lr: float = 1e-2,
                         batch_size: int = 64, noise: float = 0.0, seed: int = 0) -> list[float]:
    """Train ``model`` to reconstruct ``X`` (mean squared error; no labels) and return the loss
    per epoch. With ``noise > 0`` it is a *denoising* autoencoder: the input gets Gaussian noise
    of that standard deviation (drawn once, seeded), the target stays clean."""
    fn = "pretrain_autoencoder"
    check_int(epochs, "epochs", fn=fn)
    check_number(lr, "lr", 0, low_open=True, fn=fn)
    check_number(noise, "noise", 0, fn=fn)
    inputs = X
    if noise > 0:
        gen = torch.Generator().manual_seed(seed)
        inputs = X + noise * torch.randn(X.shape, generator=gen)
    return _fit(model, inputs, X, nn.functional.mse_loss, epochs, lr, batch_size, seed)


def rotations(X: torch.Tensor, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The self-supervised pretext task of Gidaris et al.: every image of ``X`` (flattened
    ``size x size``) rotated by 0, 90, 180 and 270 degrees, labelled 0-3 -- labels for free.

    Returns ``(X_rot, y_rot)`` with ``4 * len(X)`` rows.
    """
    if not isinstance(X, torch.Tensor) or X.ndim != 2 or X.shape[1] != size * size:
        raise ValueError(f"rotations: X must be a 2-D tensor of flattened {size}x{size} images, "
                         f"got {getattr(X, 'shape', type(X).__name__)}")
    images = X.reshape(-1, size, size)
    X_rot = torch.cat([torch.rot90(images, k, dims=(1, 2)).reshape(len(X), -1)
                       for k in range(4)])
    y_rot = torch.arange(4).repeat_interleave(len(X))
    return X_rot, y_rot


def pretrain_rotations(model: nn.Module, X: torch.Tensor, epochs: int = 15, lr: float = 1e-2,
                       batch_size: int = 64, seed: int = 0) -> list[float]:
    """Train ``model`` (4 outputs) to tell which rotation of :func:`rotations` each unlabelled
    image of ``X`` went through; return the cross-entropy per epoch."""
    fn = "pretrain_rotations"
    check_int(epochs, "epochs", fn=fn)
    check_number(lr, "lr", 0, low_open=True, fn=fn)
    X_rot, y_rot = rotations(X)
    return _fit(model, X_rot, y_rot, nn.functional.cross_entropy, epochs, lr, batch_size, seed)
