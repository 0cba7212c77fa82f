"""The hyperparameters of each ``training.optimizer`` type: their checks and defaults
(``OPTIMIZER_PARAMS``, which the GUI's inspector also reads). Every type has the defaults
of the PyTorch optimizer of the same name (``torch.optim`` 2.x):

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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import ParamError
from core.params import Bool, Float, ParamSpec


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
