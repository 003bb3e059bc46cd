r"""Optimizers from their update equations: SGD (momentum, Nesterov), AdaGrad, RMSProp, Adam
(AMSGrad), AdamW and NAdam, each a ``torch.optim.Optimizer`` with ``torch.optim``'s names and
defaults, so ``nncourse.optimizers.Adam(model.parameters(), lr=1e-3)`` is a drop-in for
``torch.optim.Adam`` (tests/test_optimizers.py runs each beside its torch twin for 120 steps
in float64 and finds them equal to ~1e-12).

Every ``step`` reads the gradient :math:`g_t` of each parameter :math:`\theta`, keeps the
optimizer's running averages in ``self.state[p]`` (the same keys torch uses, so a state dict
loads into either) and updates :math:`\theta` in place.

**Momentum conventions.** torch accumulates the *gradient*, :math:`v \leftarrow \mu v + g,
\ \theta \leftarrow \theta - \eta v`; Sutskever et al. (2013) accumulate the *step*,
:math:`v \leftarrow \mu v + \eta g,\ \theta \leftarrow \theta - v`. With a constant learning rate
the two give the same trajectory; once :math:`\eta` changes (a schedule) they differ, because
torch's buffer rescales the old velocity by the new rate and Sutskever's keeps it at the old one.
We follow torch.

What was left out, and why: torch's ``maximize``, ``foreach``, ``fused``, ``capturable`` and
``differentiable`` switches (speed and GPU options that do not change the mathematics), sparse
gradients and complex parameters. RMSProp's ``centered`` and Adagrad's ``lr_decay`` are kept
(one line each).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nncourse._validate import check_number

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam", "OPTIMIZERS"]


class _Optimizer(torch.optim.Optimizer):
    """The loop every optimizer shares: for each parameter with a gradient, ``_update``."""

    def _check(self, **values) -> None:
        name = type(self).__name__
        for key, (value, low, high) in values.items():
            check_number(value, key, low, high, high_open=high is not None and high == 1.0,
                         fn=name)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One update of every parameter that has a gradient. ``closure`` re-evaluates the loss
        (as in ``torch.optim``); its value is returned."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                self._update(p, p.grad, self.state[p], group)
        return loss

    def _update(self, p, g, state, group) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(_Optimizer):
    r"""Stochastic gradient descent with optional momentum (torch's convention) and Nesterov.

    .. math::
        g \leftarrow g + \lambda\theta,\quad
        v \leftarrow \mu v + (1 - \tau) g \ (v_1 = g),\quad
        \theta \leftarrow \theta - \eta\,(g + \mu v \text{ if Nesterov else } v)

    with learning rate :math:`\eta`, momentum :math:`\mu`, dampening :math:`\tau` and weight
    decay :math:`\lambda` (Sutskever et al., 2013; Nesterov, 1983).

    >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)  # doctest: +SKIP
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        self._check(lr=(lr, 0, None), momentum=(momentum, 0, None),
                    dampening=(dampening, None, None), weight_decay=(weight_decay, 0, None))
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening, "
                             f"got momentum={momentum!r}, dampening={dampening!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, p, g, state, group):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:  # the first step starts the velocity at the gradient itself
                buf = state["momentum_buffer"] = g.clone()
            else:
                buf.mul_(mu).add_(g, alpha=1 - group["dampening"])
            g = g + mu * buf if group["nesterov"] else buf
        p.add_(g, alpha=-group["lr"])


class Adagrad(_Optimizer):
    r"""AdaGrad (Duchi, Hazan & Singer, 2011): each coordinate's rate shrinks with the sum of
    its squared gradients so far.

    .. math::
        s \leftarrow s + g^2,\quad
        \theta \leftarrow \theta - \frac{\eta_t}{\sqrt{s} + \epsilon}\, g,\quad
        \eta_t = \frac{\eta}{1 + (t - 1)\,\text{lr\_decay}}

    With a constant gradient :math:`s = t g^2`: the step is :math:`\eta / \sqrt t` -- AdaGrad
    slows down forever, which is why it stalls on long non-convex runs.
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10):
        self._check(lr=(lr, 0, None), lr_decay=(lr_decay, 0, None),
                    weight_decay=(weight_decay, 0, None),
                    initial_accumulator_value=(initial_accumulator_value, 0, None),
                    eps=(eps, 0, None))
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))
        for group in self.param_groups:  # torch creates the state up front
            for p in group["params"]:
                self.state[p]["step"] = torch.tensor(0.0)
                self.state[p]["sum"] = torch.full_like(
                    p, group["initial_accumulator_value"], memory_format=torch.preserve_format)

    def _update(self, p, g, state, group):
        state["step"] += 1
        t = state["step"].item()
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        lr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        state["sum"].addcmul_(g, g, value=1)
        p.addcdiv_(g, state["sum"].sqrt().add_(group["eps"]), value=-lr)


class RMSprop(_Optimizer):
    r"""RMSProp (Hinton, Coursera lecture 6e, 2012): AdaGrad with a *moving* average of squared
    gradients, so old gradients are forgotten and the rate does not decay to zero.

    .. math::
        s \leftarrow \alpha s + (1 - \alpha) g^2,\quad
        \theta \leftarrow \theta - \eta\, \frac{g}{\sqrt{s} + \epsilon}

    ``centered`` divides by an estimate of the variance, :math:`s - \bar g^2`, instead;
    ``momentum`` accumulates the scaled step :math:`b \leftarrow \mu b + g / (\sqrt s + \epsilon)`.
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        self._check(lr=(lr, 0, None), alpha=(alpha, 0, None), eps=(eps, 0, None),
                    weight_decay=(weight_decay, 0, None), momentum=(momentum, 0, None))
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _update(self, p, g, state, group):
        if not state:
            state["step"] = torch.tensor(0.0)
            state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        alpha = group["alpha"]
        s = state["square_avg"].mul_(alpha).addcmul_(g, g, value=1 - alpha)
        if group["centered"]:
            m = state["grad_avg"].lerp_(g, 1 - alpha)
            avg = s.addcmul(m, m, value=-1).sqrt_()
        else:
            avg = s.sqrt()
        avg = avg.add_(group["eps"])
        if group["momentum"] > 0:
            buf = state["momentum_buffer"].mul_(group["momentum"]).addcdiv_(g, avg)
            p.add_(buf, alpha=-group["lr"])
        else:
            p.addcdiv_(g, avg, value=-group["lr"])


class Adam(_Optimizer):
    r"""Adam (Kingma & Ba, 2015) = momentum on the gradient + RMSProp's scaling + bias correction;
    ``amsgrad`` divides by the largest :math:`v` seen so far (Reddi, Kale & Kumar, 2018).

    .. math::
        m \leftarrow \beta_1 m + (1 - \beta_1) g,\quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2,\quad
        \theta \leftarrow \theta - \eta\,\frac{m / (1 - \beta_1^t)}
                                              {\sqrt{v / (1 - \beta_2^t)} + \epsilon}

    :math:`m` and :math:`v` start at 0, so early on they are biased toward 0 by the factors
    :math:`1 - \beta^t`; dividing by those factors removes the bias. Without it the first step
    would be :math:`\eta (1 - \beta_1)/\sqrt{1 - \beta_2} \approx 3.16\,\eta` per coordinate
    (defaults), not :math:`\eta`.

    ``weight_decay`` here is L2 regularization *in the gradient* (:math:`g + \lambda\theta`),
    which the adaptive denominator then rescales; :class:`AdamW` decouples it.
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False):
        self._check_betas(betas)
        self._check(lr=(lr, 0, None), eps=(eps, 0, None), weight_decay=(weight_decay, 0, None))
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def _check_betas(self, betas) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{type(self).__name__}: betas must be a pair (beta1, beta2), "
                             f"got {betas!r}")
        self._check(beta1=(betas[0], 0, 1.0), beta2=(betas[1], 0, 1.0))

    def _update(self, p, g, state, group):
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = state["step"].item()
        lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
        if wd:
            if self._decoupled:
                p.mul_(1 - lr * wd)  # shrink the weights directly: not scaled by 1/sqrt(v)
            else:
                g = g + wd * p
        m = state["exp_avg"].lerp_(g, 1 - beta1)
        v = state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(group["eps"])
        p.addcdiv_(m, denom, value=-lr / (1 - beta1 ** t))


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019):
    :math:`\theta \leftarrow (1 - \eta\lambda)\,\theta` before Adam's step, instead of adding
    :math:`\lambda\theta` to the gradient. Default ``weight_decay`` 0.01, as in torch."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


class NAdam(_Optimizer):
    r"""NAdam (Dozat, 2016): Adam with a Nesterov look-ahead on the momentum, and torch's
    momentum schedule :math:`\mu_t = \beta_1 (1 - \tfrac12\, 0.96^{t\,\psi})`
    (:math:`\psi` = ``momentum_decay``).

    .. math::
        \theta \leftarrow \theta - \eta\left[\frac{(1 - \mu_t)\, g}{1 - \prod_{i \le t}\mu_i}
            + \frac{\mu_{t+1}\, m}{1 - \prod_{i \le t+1}\mu_i}\right]
            \Big/ \left(\sqrt{v / (1 - \beta_2^t)} + \epsilon\right)
    """

    def __init__(self, params, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False):
        Adam._check_betas(self, betas)
        self._check(lr=(lr, 0, None), eps=(eps, 0, None), weight_decay=(weight_decay, 0, None),
                    momentum_decay=(momentum_decay, 0, None))
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, p, g, state, group):
        if not state:
            state["step"] = torch.tensor(0.0)
            state["mu_product"] = torch.tensor(1.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = state["step"].item()
        lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
        if wd:
            if group["decoupled_weight_decay"]:
                p.mul_(1 - lr * wd)
            else:
                g = g + wd * p
        psi = group["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        state["mu_product"] *= mu
        mu_product = state["mu_product"].item()
        m = state["exp_avg"].lerp_(g, 1 - beta1)
        v = state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = v.div(1 - beta2 ** t).sqrt().add_(group["eps"])
        p.addcdiv_(g, denom, value=-lr * (1 - mu) / (1 - mu_product))
        p.addcdiv_(m, denom, value=-lr * mu_next / (1 - mu_product * mu_next))


#: Our optimizers by the names ``nncourse.training.make_optimizer`` uses for torch's.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW,
    "nadam": NAdam,
}
