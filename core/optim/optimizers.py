"""The optimizers: ``Optimizer`` and its subclasses, and ``make_optimizer``, which builds
the one a ``training.optimizer`` object describes (its hyperparameters: ``hyperparams.py``).

Every optimizer follows the update rule of the PyTorch optimizer of the same name
(``torch.optim`` 2.x, single-tensor path).

Parameters are arrays (NumPy or CuPy) updated in place, never rebound, so layers that hold
them see every update. Per-parameter state is allocated on the first step that parameter has
a gradient; a parameter whose gradient is ``None`` is skipped and gets no state, as PyTorch
skips parameters whose ``.grad`` is ``None``. State keys use PyTorch's names (``exp_avg``,
``momentum_buffer``, ...).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from core.errors import ParamError, WeightsError
from core.optim.hyperparams import OPTIMIZER_PARAMS, _coerce
from kernels import jit
from kernels.backend import array_module, to_device, to_host


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
        vmax = st.get("max_exp_avg_sq") if self.amsgrad else _NO_ARRAY
        if vmax is None:  # amsgrad switched on after the first step
            vmax = st["max_exp_avg_sq"] = xp.zeros_like(p)
        fused = jit.kernels_for(p, g, st["exp_avg"], st["exp_avg_sq"], vmax)
        if fused is not None:  # the update below in one pass over the parameter
            f32 = np.float32
            decoupled = self.decoupled and self.weight_decay
            fused.adam(p, g, st["exp_avg"], st["exp_avg_sq"], vmax,
                       f32(0.0 if self.decoupled else self.weight_decay),
                       f32(1.0 - self.lr * self.weight_decay if decoupled else 1.0),
                       f32(1.0 - b1), f32(1.0 - (1.0 - b1)), f32(b2), f32(1.0 - b2),
                       f32(math.sqrt(1.0 - b2 ** t)), f32(self.eps),
                       f32(self.lr / (1.0 - b1 ** t)))
            return
        d = self._with_decay(xp, p, g)
        work = self._scratch.get(p, 0)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        _lerp(xp, m, d, 1.0 - b1, work)
        _ema_square(xp, v, d, b2, work)
        if self.amsgrad:
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


_NO_ARRAY = np.zeros(0, dtype=np.float32)  # the fused Adam's "no AMSGrad maximum"


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
        raise ParamError("expected an optimizer setting with a type (sgd, momentum, nesterov, "
                         f"adagrad, rmsprop, adam or adamw), found {config!r}",
                         param="optimizer")
    kind = config.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:
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
