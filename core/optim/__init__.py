"""Optimizers, gradient norms and clipping, and weight regularization for the training loop.

- ``hyperparams.py``: what each ``training.optimizer`` type takes, with its PyTorch
  defaults (``OPTIMIZER_PARAMS``, ``Betas``; the table of types and defaults).
- ``optimizers.py``: ``Optimizer`` and ``SGD``, ``Adagrad``, ``RMSprop``, ``Adam``,
  ``AdamW``, following ``torch.optim``; ``make_optimizer`` builds one from its settings.
- ``clipping.py``: ``grad_norms``, ``clip_grad_norm``, ``clip_grad_value``.
- ``regularization.py``: the L1 / L2 penalty (``is_weight``, ``regularization_penalty``,
  ``add_regularization_grads``).
"""
from core.optim.clipping import clip_grad_norm, clip_grad_value, grad_norms
from core.optim.hyperparams import OPTIMIZER_PARAMS, Betas
from core.optim.optimizers import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    make_optimizer,
)
from core.optim.regularization import (
    add_regularization_grads,
    is_weight,
    regularization_penalty,
)

__all__ = ["OPTIMIZER_PARAMS", "Betas", "Optimizer", "SGD", "Adagrad", "RMSprop", "Adam",
           "AdamW", "make_optimizer", "is_weight", "regularization_penalty",
           "add_regularization_grads", "grad_norms", "clip_grad_norm", "clip_grad_value"]
