"""Optimizers, weight regularization and gradient clipping for the training loop.

Every optimizer follows the update rule of the PyTorch optimizer of the same name
(``torch.optim`` 2.x, single-tensor path) and has its defaults:

==========  =====================================  ==========================================
type        PyTorch                                defaults
==========  =====================================  ==========================================
sgd         ``SGD``                                lr 1e-3, momentum 0, dampening 0
momentum    ``SGD(momentum=0.9)``                  lr 1e-3, momentum **0.9**, dampening 0
nesterov    ``SGD(momentum=0.9, nesterov=True)``   lr 1e-3, momentum **0.9**
adagrad     ``Adagrad``                            lr 1e-2, lr_decay 0, eps 1e-10,
                                                   initial_accumulator_value 0
rmsprop     ``RMSprop``                            lr 1e-2, alpha 0.99, eps 1e-8, momentum 0,
                                                   centered false
adam        ``Adam``                               lr 1e-3, betas [0.9, 0.999], eps 1e-8,
                                                   amsgrad false
adamw       ``AdamW``                              as adam, weight_decay **1e-2**
==========  =====================================  ==========================================

``weight_decay`` defaults to 0 except for adamw and is, as in PyTorch, an L2 term added to
the gradient (coupled) for every type but adamw, where it shrinks the weights directly
(decoupled). PyTorch's SGD has momentum 0 by default, which would make the ``momentum`` and
``nesterov`` types plain SGD (and ``nesterov`` invalid), so those two default to 0.9.
Nesterov is a flag of momentum SGD, not a class of its own.

Parameters are arrays (NumPy or CuPy) updated in place, never rebound, so layers that hold
them see every update. Per-parameter state is allocated on the first step that parameter has
a gradient; a parameter whose gradient is ``None`` is skipped and gets no state, as PyTorch
skips parameters whose ``.grad`` is ``None``. State keys use PyTorch's names (``exp_avg``,
``momentum_buffer``, ...).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from core.errors import ParamError, WeightsError
from core.params import Bool, Float, ParamSpec
from kernels.backend import array_module, to_device, to_host

# ---------------------------------------------------------------------------------------------
# hyperparameters: what each optimizer type accepts, with its default (also for the GUI)


@dataclass(frozen=True)
class Betas(ParamSpec):
    """A pair ``[beta1, beta2]`` of numbers in [0, 1); coerced to a tuple of floats."""

    def coerce(self, value):
        expected = "a pair [beta1, beta2] of numbers in [0, 1)"
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise self.fail(expected, value)
        try:
            return tuple(Float(min=0.0, max=1.0, max_open=True).coerce(v) for v in value)
        except ParamError:
            raise self.fail(expected, value) from None


_LR_1E3 = Float(1e-3, "learning rate", min=0.0)
_LR_1E2 = Float(1e-2, "learning rate", min=0.0)
_DECAY_0 = Float(0.0, "L2 weight decay added to the gradient", min=0.0)
_DAMPENING = Float(0.0, "dampening of the momentum buffer", min=0.0, max=1.0)
_ADAM = {
    "lr": _LR_1E3,
    "betas": Betas((0.9, 0.999), "decay rates of the gradient mean and of its square"),
    "eps": Float(1e-8, "added to the denominator", min=0.0),
    "weight_decay": _DECAY_0,
    "amsgrad": Bool(False, "use the running maximum of the squared-gradient average"),
}

#: type -> {key -> spec}: the keys each ``training.optimizer`` type takes, besides ``type``.
OPTIMIZER_PARAMS: dict[str, dict[str, ParamSpec]] = {
    "sgd": {
        "lr": _LR_1E3,
        "momentum": Float(0.0, "momentum factor", min=0.0, max=1.0, max_open=True),
        "dampening": _DAMPENING,
        "weight_decay": _DECAY_0,
    },
    "momentum": {
        "lr": _LR_1E3,
        "momentum": Float(0.9, "momentum factor", min=0.0, max=1.0, max_open=True),
        "dampening": _DAMPENING,
        "weight_decay": _DECAY_0,
    },
    "nesterov": {
        "lr": _LR_1E3,
        "momentum": Float(0.9, "momentum factor", min=0.0, max=1.0, min_open=True,
                          max_open=True),
        "weight_decay": _DECAY_0,
    },
    "adagrad": {
        "lr": _LR_1E2,
        "lr_decay": Float(0.0, "the step size is lr / (1 + (step - 1) * lr_decay)", min=0.0),
        "eps": Float(1e-10, "added to the denominator", min=0.0),
        "weight_decay": _DECAY_0,
        "initial_accumulator_value": Float(0.0, "start of the sum of squared gradients",
                                           min=0.0),
    },
    "rmsprop": {
        "lr": _LR_1E2,
        "alpha": Float(0.99, "decay rate of the squared-gradient average", min=0.0, max=1.0),
        "eps": Float(1e-8, "added to the denominator", min=0.0),
        "weight_decay": _DECAY_0,
        "momentum": Float(0.0, "momentum factor", min=0.0, max=1.0, max_open=True),
        "centered": Bool(False, "divide by the variance instead of the mean square"),
    },
    "adam": _ADAM,
    "adamw": {**_ADAM, "weight_decay": Float(1e-2, "decoupled weight decay", min=0.0)},
}


def _coerce(kind: str, key: str, value: Any) -> Any:
    """``value`` checked by the spec of ``key`` for optimizer ``kind``; ParamError naming it."""
    try:
        return OPTIMIZER_PARAMS[kind][key].coerce(value)
    except ParamError as e:
        raise ParamError(e.message, param=f"optimizer.{key}") from None


# ---------------------------------------------------------------------------------------------
# optimizers


class _Scratch:
    """Work arrays for the update arithmetic, reused across parameters and steps.

    One flat buffer per (array module, dtype, slot), grown to the largest parameter: a step
    then allocates nothing, and the extra memory is a few copies of the largest parameter,
    not of the whole model.
    """

    def __init__(self):
        self._bufs: dict[tuple, Any] = {}

    def get(self, like, slot: int = 0):
        """An uninitialised array of ``like``'s shape and dtype (a view into slot ``slot``)."""
        xp = array_module(like)
        key = (xp.__name__, like.dtype.str, slot)
        buf = self._bufs.get(key)
        if buf is None or buf.size < like.size:
            buf = self._bufs[key] = xp.empty(like.size, dtype=like.dtype)
        return buf[:like.size].reshape(like.shape)


def _host_copy(x):
    """A NumPy copy of ``x`` that later updates of ``x`` do not change."""
    return x.copy() if isinstance(x, np.ndarray) else to_host(x)


class Optimizer:
    """Base of the optimizers: holds the parameters, their state and the hyperparameters.

    ``params``: (name, array) pairs or a mapping name -> array; the arrays are updated in
    place. Hyperparameters are plain attributes (``opt.lr = 0.01`` takes effect on the next
    step). ``state[name]`` is the dict of arrays (shaped like the parameter) and counters of
    one parameter, present once that parameter has had a gradient.
    """

    kind: ClassVar[str] = ""  # the ``training.optimizer.type`` this class implements
    counts_steps: ClassVar[bool] = True  # state holds "step", the number of updates so far
    lr: float

    def __init__(self, params: Iterable[tuple[str, Any]] | Mapping[str, Any]):
        pairs = params.items() if isinstance(params, Mapping) else params
        self.params: dict[str, Any] = {}
        for name, p in pairs:
            if name in self.params:
                raise ValueError(f"parameter {name!r} given twice")
            self.params[name] = p
        self.state: dict[str, dict[str, Any]] = {}
        self._scratch = _Scratch()

    # -- the update --------------------------------------------------------------------------

    def step(self, grads: Mapping[str, Any]) -> None:
        """Update every parameter that has a gradient in ``grads`` (name -> array or None).

        Each gradient has its parameter's shape. The gradient arrays are not modified; names
        in ``grads`` that are not parameters are ignored.
        """
        for name, p in self.params.items():
            g = grads.get(name)
            if g is None:
                continue  # as torch skips a param whose .grad is None: no update, no state
            if g.shape != p.shape:
                raise ValueError(f"gradient of {name!r} has shape {g.shape}, "
                                 f"the parameter {p.shape}")
            st = self.state.get(name)
            if st is None:
                st = self.state[name] = self._new_state(p)
            self._update(array_module(p), p, g, st)

    def _new_state(self, p) -> dict[str, Any]:
        """The state of parameter ``p`` before its first update."""
        return {}

    def _update(self, xp, p, g, st: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _with_decay(self, xp, p, g):
        """``g + weight_decay * p`` (in a work array), or ``g`` itself when there is none."""
        wd = self.weight_decay
        if not wd:
            return g
        out = xp.multiply(p, wd, out=self._scratch.get(p, 1))
        out += g
        return out

    # -- hyperparameters and checkpoints -----------------------------------------------------

    def hyperparameters(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The hyperparameters as JSON values (the keys of ``training.optimizer``)."""
        raise NotImplementedError

    def _configure(self, **hyper) -> None:  # pragma: no cover - abstract
        """Check and set the hyperparameters (ParamError naming a bad one)."""
        raise NotImplementedError

    def _state_keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(keys every parameter state has, keys it may have besides); arrays but 'step'."""
        return (), ()

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint of the optimizer: plain NumPy arrays, numbers, strings, lists.

        ``{"type": kind, "hyper": {...}, "state": {name: {"step": int, key: ndarray}}}``;
        the arrays are copies on the host, unaffected by later steps.
        """
        return {
            "type": self.kind,
            "hyper": self.hyperparameters(),
            "state": {name: {k: (v if isinstance(v, int) else _host_copy(v))
                             for k, v in st.items()}
                      for name, st in self.state.items()},
        }

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Restore a ``state_dict()``: hyperparameters and per-parameter state (as PyTorch).

        The arrays are copied onto the parameters' device and dtype. Parameters absent from
        ``sd["state"]`` start without state. Raises ``WeightsError`` naming what does not fit.
        """
        if not isinstance(sd, Mapping) or set(sd) != {"type", "hyper", "state"}:
            raise WeightsError("optimizer state: expected an object with keys type, hyper, "
                               f"state, found {sorted(sd) if isinstance(sd, Mapping) else sd!r}")
        cls = _TYPES.get(sd["type"], (None,))[0]
        if cls is not type(self):
            raise WeightsError(f"optimizer state is of type {sd['type']!r}, the optimizer is "
                               f"{self.kind!r}", param="optimizer.type")
        old = self.hyperparameters()
        try:
            self._configure(**sd["hyper"])
        except (ParamError, TypeError) as e:
            self._configure(**old)
            raise WeightsError(f"optimizer state: bad hyperparameters: {e}") from None
        try:
            self.state = self._checked_state(sd["state"])
        except WeightsError:
            self._configure(**old)
            raise

    def _checked_state(self, raw: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(raw, Mapping):
            raise WeightsError(f"optimizer state: expected an object per parameter, "
                               f"found {raw!r}")
        required, optional = self._state_keys()
        state: dict[str, dict[str, Any]] = {}
        for name, st in raw.items():
            if name not in self.params:
                raise WeightsError("optimizer state of an unknown parameter", param=name)
            if not isinstance(st, Mapping):
                raise WeightsError(f"optimizer state: expected an object, found {st!r}",
                                   param=name)
            p = self.params[name]
            xp = array_module(p)
            keys = set(st) - {"step"}
            if not set(required) <= keys <= set(required) | set(optional):
                raise WeightsError(f"optimizer state: expected arrays {list(required)}"
                                   + (f" and maybe {list(optional)}" if optional else "")
                                   + f", found {sorted(keys)}", param=name)
            new: dict[str, Any] = {}
            if self.counts_steps:
                step = st.get("step")
                if isinstance(step, np.integer):
                    step = int(step)
                if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                    raise WeightsError(f"optimizer state: expected an integer step >= 0, "
                                       f"found {step!r}", param=name)
                new["step"] = step
            for k in sorted(keys):
                a = np.asarray(to_host(st[k]))
                if a.shape != p.shape:
                    raise WeightsError(f"optimizer state '{k}': expected shape "
                                       f"{list(p.shape)}, found {list(a.shape)}", param=name)
                new[k] = to_device(a, xp, p.dtype).copy()  # never alias the caller's arrays
            state[name] = new
        return state


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum and Nesterov momentum (``torch.optim.SGD``).

    d = g + weight_decay * p;  buf = momentum * buf + (1 - dampening) * d  (buf = d at the
    first step);  d = d + momentum * buf with ``nesterov``, else buf;  p -= lr * d.
    """

    counts_steps = False  # as torch's SGD, which keeps only the momentum buffer

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params)
        self._configure(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "nesterov" if self.nesterov else ("momentum" if self.momentum else "sgd")

    def _configure(self, lr, momentum, dampening, weight_decay, nesterov) -> None:
        if not isinstance(nesterov, bool):
            raise ParamError(f"expected true or false, found {nesterov!r}",
                             param="optimizer.nesterov")
        # nesterov needs momentum > 0 and dampening 0, as torch.optim.SGD enforces
        self.lr = _coerce("sgd", "lr", lr)
        self.momentum = _coerce("nesterov" if nesterov else "sgd", "momentum", momentum)
        self.dampening = _coerce("sgd", "dampening", dampening)
        if nesterov and self.dampening != 0:
            raise ParamError(f"expected 0 with nesterov, found {dampening!r}",
                             param="optimizer.dampening")
        self.weight_decay = _coerce("sgd", "weight_decay", weight_decay)
        self.nesterov = nesterov

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _state_keys(self):
        return (("momentum_buffer",) if self.momentum else ()), ()

    def _update(self, xp, p, g, st):
        d = self._with_decay(xp, p, g)
        work = self._scratch.get(p, 0)
        m = self.momentum
        if m:
            buf = st.get("momentum_buffer")
            if buf is None:  # torch starts the buffer at the first gradient, not at zero
                buf = st["momentum_buffer"] = d.copy()
            else:
                buf *= m
                if self.dampening:
                    xp.multiply(d, 1.0 - self.dampening, out=work)
                    buf += work
                else:
                    buf += d
            if self.nesterov:
                xp.multiply(buf, m, out=work)
                work += d
                d = work
            else:
                d = buf
        xp.multiply(d, self.lr, out=work)
        p -= work


class Adagrad(Optimizer):
    """Adagrad (``torch.optim.Adagrad``).

    d = g + weight_decay * p;  sum += d²;  p -= lr / (1 + (step - 1) * lr_decay)
    * d / (sqrt(sum) + eps).
    """

    kind = "adagrad"

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10):
        super().__init__(params)
        self._configure(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps)

    def _configure(self, lr, lr_decay, weight_decay, initial_accumulator_value, eps) -> None:
        self.lr = _coerce("adagrad", "lr", lr)
        self.lr_decay = _coerce("adagrad", "lr_decay", lr_decay)
        self.weight_decay = _coerce("adagrad", "weight_decay", weight_decay)
        self.initial_accumulator_value = _coerce("adagrad", "initial_accumulator_value",
                                                 initial_accumulator_value)
        self.eps = _coerce("adagrad", "eps", eps)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}

    def _new_state(self, p):
        xp = array_module(p)
        return {"step": 0, "sum": xp.full_like(p, self.initial_accumulator_value)}

    def _state_keys(self):
        return ("sum",), ()

    def _update(self, xp, p, g, st):
        st["step"] += 1
        d = self._with_decay(xp, p, g)
        clr = self.lr / (1 + (st["step"] - 1) * self.lr_decay)
        work = self._scratch.get(p, 0)
        s = st["sum"]
        s += xp.multiply(d, d, out=work)
        xp.sqrt(s, out=work)
        work += self.eps
        xp.divide(d, work, out=work)
        work *= clr
        p -= work


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum (``torch.optim.RMSprop``).

    d = g + weight_decay * p;  sq = alpha * sq + (1 - alpha) * d²;  with ``centered``
    ga = lerp(ga, d, 1 - alpha) and avg = sqrt(sq - ga²) + eps, else avg = sqrt(sq) + eps;
    with momentum buf = momentum * buf + d / avg and p -= lr * buf, else p -= lr * d / avg.
    """

    kind = "rmsprop"

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        super().__init__(params)
        self._configure(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered)

    def _configure(self, lr, alpha, eps, weight_decay, momentum, centered) -> None:
        self.lr = _coerce("rmsprop", "lr", lr)
        self.alpha = _coerce("rmsprop", "alpha", alpha)
        self.eps = _coerce("rmsprop", "eps", eps)
        self.weight_decay = _coerce("rmsprop", "weight_decay", weight_decay)
        self.momentum = _coerce("rmsprop", "momentum", momentum)
        self.centered = _coerce("rmsprop", "centered", centered)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}

    def _new_state(self, p):
        xp = array_module(p)
        st = {"step": 0, "square_avg": xp.zeros_like(p)}
        if self.momentum > 0:
            st["momentum_buffer"] = xp.zeros_like(p)
        if self.centered:
            st["grad_avg"] = xp.zeros_like(p)
        return st

    def _state_keys(self):
        required = ["square_avg"]
        if self.momentum > 0:
            required.append("momentum_buffer")
        if self.centered:
            required.append("grad_avg")
        optional = [k for k in ("momentum_buffer", "grad_avg") if k not in required]
        return tuple(required), tuple(optional)

    def _update(self, xp, p, g, st):
        st["step"] += 1
        d = self._with_decay(xp, p, g)
        work = self._scratch.get(p, 0)
        a = self.alpha
        sq = st["square_avg"]
        _ema_square(xp, sq, d, a, work)
        if self.centered:
            ga = st.get("grad_avg")
            if ga is None:  # centered switched on after the first step
                ga = st["grad_avg"] = xp.zeros_like(p)
            _lerp(xp, ga, d, 1.0 - a, work)
            xp.multiply(ga, ga, out=work)
            xp.subtract(sq, work, out=work)
            xp.sqrt(work, out=work)
        else:
            xp.sqrt(sq, out=work)
        work += self.eps
        xp.divide(d, work, out=work)
        if self.momentum > 0:
            buf = st.get("momentum_buffer")
            if buf is None:  # momentum switched on after the first step
                buf = st["momentum_buffer"] = xp.zeros_like(p)
            buf *= self.momentum
            buf += work
            xp.multiply(buf, self.lr, out=work)
        else:
            work *= self.lr
        p -= work


class Adam(Optimizer):
    """Adam, optionally AMSGrad (``torch.optim.Adam``); weight decay is an L2 gradient term.

    d = g + weight_decay * p;  m = lerp(m, d, 1 - beta1);  v = beta2 * v + (1 - beta2) * d²;
    p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), with v replaced by
    its running maximum under ``amsgrad``.
    """

    kind = "adam"
    decoupled: ClassVar[bool] = False  # weight decay shrinks p directly (AdamW)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False):
        super().__init__(params)
        self._configure(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad)

    def _configure(self, lr, betas, eps, weight_decay, amsgrad) -> None:
        self.lr = _coerce(self.kind, "lr", lr)
        self.betas = _coerce(self.kind, "betas", betas)
        self.eps = _coerce(self.kind, "eps", eps)
        self.weight_decay = _coerce(self.kind, "weight_decay", weight_decay)
        self.amsgrad = _coerce(self.kind, "amsgrad", amsgrad)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}

    def _new_state(self, p):
        xp = array_module(p)
        st = {"step": 0, "exp_avg": xp.zeros_like(p), "exp_avg_sq": xp.zeros_like(p)}
        if self.amsgrad:
            st["max_exp_avg_sq"] = xp.zeros_like(p)
        return st

    def _state_keys(self):
        if self.amsgrad:
            return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), ()
        return ("exp_avg", "exp_avg_sq"), ("max_exp_avg_sq",)

    def _with_decay(self, xp, p, g):
        if self.decoupled:
            if self.weight_decay:
                p *= 1.0 - self.lr * self.weight_decay
            return g
        return super()._with_decay(xp, p, g)

    def _update(self, xp, p, g, st):
        st["step"] += 1
        t = st["step"]
        b1, b2 = self.betas
        d = self._with_decay(xp, p, g)
        work = self._scratch.get(p, 0)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        _lerp(xp, m, d, 1.0 - b1, work)
        _ema_square(xp, v, d, b2, work)
        if self.amsgrad:
            vmax = st.get("max_exp_avg_sq")
            if vmax is None:  # amsgrad switched on after the first step
                vmax = st["max_exp_avg_sq"] = xp.zeros_like(p)
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        xp.sqrt(v, out=work)
        work /= math.sqrt(1.0 - b2 ** t)
        work += self.eps
        xp.divide(m, work, out=work)
        work *= self.lr / (1.0 - b1 ** t)
        p -= work


class AdamW(Adam):
    """AdamW (``torch.optim.AdamW``): Adam with decoupled weight decay (default 1e-2).

    p *= 1 - lr * weight_decay before the Adam update of the plain gradient.
    """

    kind = "adamw"
    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


def _lerp(xp, a, b, w: float, work) -> None:
    """a = a + w * (b - a) in place, the way torch's lerp_ rounds (two forms around w = 0.5)."""
    xp.subtract(b, a, out=work)
    if w < 0.5:
        work *= w
        a += work
    else:
        work *= 1.0 - w
        xp.subtract(b, work, out=a)


def _ema_square(xp, avg, g, decay: float, work) -> None:
    """avg = decay * avg + (1 - decay) * g², in place (RMSprop's square_avg, Adam's v)."""
    avg *= decay
    xp.multiply(g, g, out=work)
    work *= 1.0 - decay
    avg += work


# type -> (class, arguments the type fixes)
_TYPES: dict[str, tuple[type[Optimizer], dict[str, Any]]] = {
    "sgd": (SGD, {}),
    "momentum": (SGD, {}),
    "nesterov": (SGD, {"nesterov": True}),
    "adagrad": (Adagrad, {}),
    "rmsprop": (RMSprop, {}),
    "adam": (Adam, {}),
    "adamw": (AdamW, {}),
}


def make_optimizer(config: Mapping[str, Any],
                   params: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> Optimizer:
    """The optimizer a ``training.optimizer`` object describes, over ``params``.

    ``config``: ``{"type": "adam", "lr": 0.001, ...}``; keys left out take the defaults of
    ``OPTIMIZER_PARAMS[type]``. An unknown type, a key the type does not take, or a bad value
    raises ``ParamError`` with ``param="optimizer.<key>"``, saying what was expected.
    """
    if not isinstance(config, Mapping):
        raise ParamError(f"expected an object like {{\"type\": \"adam\"}}, found {config!r}",
                         param="optimizer")
    kind = config.get("type")
    if kind not in _TYPES or isinstance(kind, bool):
        raise ParamError(f"expected one of {', '.join(_TYPES)}, found {kind!r}",
                         param="optimizer.type")
    specs = OPTIMIZER_PARAMS[kind]
    for key in config:
        if key == "type" or key in specs:
            continue
        takes = ", ".join(["type", *specs])
        if any(key in s for s in OPTIMIZER_PARAMS.values()):
            msg = f"does not apply to optimizer '{kind}' (it takes: {takes})"
        else:
            msg = f"unknown key (optimizer '{kind}' takes: {takes})"
        raise ParamError(msg + f", found {key!r}", param=f"optimizer.{key}")
    cls, fixed = _TYPES[kind]
    args = {k: spec.default for k, spec in specs.items()}
    args.update((k, v) for k, v in config.items() if k != "type")
    args.update(fixed)
    return cls(params, **args)


# ---------------------------------------------------------------------------------------------
# regularization and clipping (the training loop calls these on name -> array dicts)


def is_weight(name: str) -> bool:
    """True for a weight parameter: the part of ``name`` after the last '/' starts with 'W'.

    ``"fc1/W"`` and ``"rnn/W_ih"`` are weights; ``"fc1/b"`` and ``"bn/gamma"`` are not.
    """
    return name.rsplit("/", 1)[-1].startswith("W")


def regularization_penalty(params: Mapping[str, Any], l1: float = 0.0,
                           l2: float = 0.0) -> float:
    """l1 * Σ|w| + l2 * Σw² over the weight parameters (``is_weight``) of name -> array.

    The sums stay on the device and come to the host in one transfer.
    """
    if not (l1 or l2):
        return 0.0
    terms = []
    xp = np
    for name, w in params.items():
        if not is_weight(name):
            continue
        xp = array_module(w)
        if l1:
            terms.append(xp.abs(w).sum() * l1)
        if l2:
            terms.append(xp.vdot(w, w) * l2)  # BLAS dot: no temporary w² array
    if not terms:
        return 0.0
    return float(to_host(xp.stack(terms)).sum(dtype=np.float64))


def add_regularization_grads(params: Mapping[str, Any], grads: dict[str, Any],
                             l1: float = 0.0, l2: float = 0.0) -> None:
    """Add the gradient of ``regularization_penalty``, l1 * sign(w) + 2 * l2 * w, to ``grads``.

    In place, for the weight parameters only; a weight whose gradient is None gets the
    penalty gradient alone (a new array in ``grads``), since the penalty depends on it.
    """
    if not (l1 or l2):
        return
    for name, w in params.items():
        if not is_weight(name):
            continue
        xp = array_module(w)
        g = grads.get(name)
        if g is None:
            g = grads[name] = xp.zeros_like(w)
        work = xp.empty_like(w)
        if l2:
            g += xp.multiply(w, 2.0 * l2, out=work)
        if l1:
            xp.sign(w, out=work)  # sign(0) = 0, the subgradient torch's abs uses
            work *= l1
            g += work


def _squared_sums(grads: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """(names, Σg² per name as float64) for the gradients that are not None.

    The sums are taken in the gradients' dtype (one BLAS dot each) and fetched in one
    transfer. In float32 a square overflows for |g| above ~1.8e19 and underflows below
    ~1e-19, although the gradient itself is finite and its norm representable; the sums
    that came out infinite or below the dtype's smallest normal number are taken again in
    float64, with one more transfer for all of them, only on the steps where that happens.
    A gradient that really holds a NaN or Inf still gives a non-finite sum.
    """
    names = [n for n, g in grads.items() if g is not None]
    if not names:
        return [], np.zeros(0)
    xp = array_module(grads[names[0]])
    sums = xp.stack([xp.vdot(grads[n], grads[n]) for n in names])
    out = np.asarray(to_host(sums), dtype=np.float64)
    redo = [i for i, n in enumerate(names)
            if grads[n].dtype != np.float64 and grads[n].size
            and not np.finfo(grads[n].dtype).tiny <= out[i] < np.inf]
    if redo:
        wide = [grads[names[i]].astype(np.float64).ravel() for i in redo]
        out[redo] = np.asarray(to_host(xp.stack([xp.vdot(w, w) for w in wide])),
                               dtype=np.float64)
    return names, out


def grad_norms(grads: Mapping[str, Any]) -> tuple[dict[str, float], float]:
    """(name -> L2 norm of each gradient, global L2 norm over all of them).

    Gradients that are None are left out. All norms come to the host in one transfer.
    """
    names, sq = _squared_sums(grads)
    norms = {n: math.sqrt(s) for n, s in zip(names, sq.tolist(), strict=True)}
    return norms, math.sqrt(float(sq.sum()))


def clip_grad_norm(grads: Mapping[str, Any], max_norm: float,
                   total_norm: float | None = None) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: when the norm exceeds ``max_norm`` every gradient
    is multiplied by max_norm / (norm + 1e-6). Returns the global norm before clipping.
    ``total_norm``, when the caller already has it (``grad_norms``), saves computing it again.
    A non-finite norm leaves the gradients as they are.
    """
    if total_norm is None:
        total_norm = math.sqrt(float(_squared_sums(grads)[1].sum()))
    coef = max_norm / (total_norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            if g is not None:
                g *= coef
    return total_norm


def clip_grad_value(grads: Mapping[str, Any], clip: float) -> None:
    """Clamp every gradient element to [-clip, clip] in place (``clip_grad_value_``)."""
    for g in grads.values():
        if g is not None:
            array_module(g).clip(g, -clip, clip, out=g)


__all__ = ["OPTIMIZER_PARAMS", "Betas", "Optimizer", "SGD", "Adagrad", "RMSprop", "Adam",
           "AdamW", "make_optimizer", "is_weight", "regularization_penalty",
           "add_regularization_grads", "grad_norms", "clip_grad_norm", "clip_grad_value"]
