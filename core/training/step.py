"""One optimizer step of the training loop: forward, backward, penalties, clipping, update."""
from __future__ import annotations

import math

from core.errors import NonFiniteError
from core.network import Network
from core.optim.clipping import clip_grad_norm, clip_grad_value, grad_norms
from core.optim.regularization import add_regularization_grads, regularization_penalty
from core.training.config import TrainConfig
from kernels import backend


def host_losses(net: Network, res) -> tuple[float, dict[str, float]]:
    """(total, {loss node: value}) of a forward pass, fetched in one device-to-host
    transfer: the total and every loss stacked into one array."""
    names = list(res.losses)
    host = backend.to_host(net.xp.stack([res.loss, *res.losses.values()]))
    return float(host[0]), {n: float(v) for n, v in zip(names, host[1:], strict=True)}


def training_step(net: Network, optimizer, batch, config: TrainConfig,
                  losses: dict[str, float] | None = None):
    """Forward, backward, penalties, clipping and the update; (loss, norms, global, result).

    ``loss`` includes the L1/L2 penalty. Gradient norms are taken before clipping (what the
    user wants to see) and fetched in one transfer. Raises ``NonFiniteError`` naming the
    first node where a NaN or Inf appears, before anything is updated.

    losses: a dict to fill with each loss node's value on the batch (without the penalty),
    fetched in the same transfer as the total; None (one loss) fetches the total alone.
    """
    c = config
    # BatchNorm statistics change in the training forward pass: keep them to put back if
    # the step fails (no copy at all for a graph without buffers)
    saved = {k: v.copy() for k, v in net.buffers.items()}
    res = net.loss_and_grads(batch)
    grads = net.gradients()
    penalty = 0.0
    if c.l1 or c.l2:
        add_regularization_grads(net.params, grads, c.l1, c.l2)
        penalty = float(regularization_penalty(net.params, c.l1, c.l2))
    norms, global_norm = grad_norms(grads)
    if losses is not None:
        total, per_loss = host_losses(net, res)
        losses.update(per_loss)
    else:
        total = float(res.loss)
    loss = total + penalty
    if not (math.isfinite(loss) and math.isfinite(global_norm)):
        node, phase = net.find_nonfinite(batch)
        for k, v in saved.items():
            net.buffers[k][...] = v
        what = "loss" if not math.isfinite(loss) else "gradient"
        raise NonFiniteError(f"{what}: first NaN/Inf in the {phase} pass of this node",
                             node=node, phase=phase)
    if c.clip_norm is not None:
        clip_grad_norm(grads, c.clip_norm, total_norm=global_norm)
    elif c.clip_value is not None:
        clip_grad_value(grads, c.clip_value)
    optimizer.step(grads)
    return loss, norms, global_norm, res
