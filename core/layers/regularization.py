"""Regularization layers: Dropout and BatchNorm. Both behave differently in training
(``ctx.train``) and in evaluation."""
from __future__ import annotations

import numpy as np

from core.errors import DataError
from core.layers.base import Layer, fmt_shape, register
from core.params import Float


@register
class Dropout(Layer):
    """Inverted dropout: in training each element is zeroed with probability ``rate`` and the
    survivors are scaled by 1 / (1 - rate), so evaluation is the identity."""

    type_name = "Dropout"
    category = "Regularization"
    doc = ("In training, zeroes each element with probability 'rate' and scales the rest by "
           "1 / (1 - rate); passes its input through unchanged in evaluation.")
    params_spec = {
        "rate": Float(default=0.5, min=0.0, max=1.0, max_open=True,
                      doc="probability of dropping an element, in [0, 1)"),
    }

    def forward(self, ctx, inputs):
        x = inputs[0]
        rate = self.params["rate"]
        if not ctx.train or rate == 0.0:
            return x, None
        if ctx.rng is None:
            raise RuntimeError(f"Dropout '{self.id}' needs ctx.rng in training mode")
        # Generators draw float32 or float64 only; draw in the activation dtype so the mask
        # (and the output) keep it.
        dt = x.dtype if x.dtype == np.float32 else np.float64
        keep = ctx.rng.random(x.shape, dtype=dt) >= rate  # P(keep) = 1 - rate
        # The scaled mask is the whole cache: backward multiplies by the same mask.
        mask = keep.astype(x.dtype) * (1.0 / (1.0 - rate))
        return x * mask, mask

    def backward(self, ctx, mask, gout):
        return [gout if mask is None else gout * mask]


@register
class BatchNorm(Layer):
    """Batch normalisation per feature of [F] or per channel of [C, H, W], as
    torch.nn.BatchNorm1d / BatchNorm2d.

    Training normalises with the batch mean and biased variance and updates the running
    statistics in place: running = (1 - momentum)·running + momentum·batch, with the unbiased
    variance for running_var. Evaluation normalises with the running statistics.
    """

    type_name = "BatchNorm"
    category = "Regularization"
    doc = ("Normalises each feature of [F] (or channel of [C, H, W]) to zero mean and unit "
           "variance over the batch, then scales by gamma and shifts by beta. Uses running "
           "statistics in evaluation (PyTorch semantics).")
    params_spec = {
        "momentum": Float(default=0.1, min=0.0, max=1.0,
                          doc="weight of the batch statistics in the running statistics"),
        "eps": Float(default=1e-5, min=0.0, min_open=True,
                     doc="added to the variance before the square root"),
    }
    param_names = ("gamma", "beta")
    buffer_names = ("running_mean", "running_var")

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        if len(s) not in (1, 3):
            raise self.shape_error(f"expected features [F] or an image [C, H, W], found "
                                   f"{fmt_shape(s)}")
        return s

    def _features(self) -> int:
        return self.in_shapes["in"][0]

    def macs(self, in_shapes, out_shape):
        """One multiply-add per element: x * scale + shift, the statistics folded in."""
        return int(np.prod(out_shape, dtype=np.int64))

    def param_shapes(self):
        f = self._features()
        return {"gamma": (f,), "beta": (f,)}

    def buffer_shapes(self):
        f = self._features()
        return {"running_mean": (f,), "running_var": (f,)}

    def init_params(self, rng, he):
        f = self._features()
        return {"gamma": np.ones((f,)), "beta": np.zeros((f,)),
                "running_mean": np.zeros((f,)), "running_var": np.ones((f,))}

    @staticmethod
    def _layout(x) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(axes reduced over, shape that broadcasts a per-feature vector against x)."""
        if x.ndim == 2:  # [B, F]
            return (0,), (1, x.shape[1])
        return (0,) + tuple(range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)

    def forward(self, ctx, inputs):
        xp, x = ctx.xp, inputs[0]
        axes, bshape = self._layout(x)
        gamma = self.P["gamma"].reshape(bshape)
        beta = self.P["beta"].reshape(bshape)
        eps = self.params["eps"]
        if ctx.train:
            n = x.size // x.shape[1]  # values per feature
            if n < 2:
                raise DataError("BatchNorm in training needs more than one value per feature "
                                f"(found a batch of {x.shape[0]} with per-sample shape "
                                f"{fmt_shape(x.shape[1:])})", node=self.id)
            mean = x.mean(axis=axes, keepdims=True)
            xc = x - mean
            var = (xc * xc).mean(axis=axes, keepdims=True)  # biased: used to normalise
            m = self.params["momentum"]
            rm, rv = self.B["running_mean"], self.B["running_var"]
            # In place, so the network's buffer arrays (and weights files) see the update.
            rm *= 1.0 - m
            rm += m * mean.reshape(-1)
            rv *= 1.0 - m
            rv += (m * n / (n - 1)) * var.reshape(-1)  # running_var takes the unbiased one
            inv_std = 1.0 / xp.sqrt(var + eps)
            xhat = xc * inv_std
        else:
            inv_std = 1.0 / xp.sqrt(self.B["running_var"].reshape(bshape) + eps)
            xhat = (x - self.B["running_mean"].reshape(bshape)) * inv_std
        return xhat * gamma + beta, (xhat, inv_std, ctx.train)

    def backward(self, ctx, cache, gout):
        xhat, inv_std, train = cache
        axes, bshape = self._layout(gout)
        gbeta = gout.sum(axis=axes)
        ggamma = (gout * xhat).sum(axis=axes)
        scale = self.P["gamma"].reshape(bshape) * inv_std
        if train:
            # The batch mean and variance depend on x too: remove the gradient's components
            # along them (the sums are the parameter gradients, reused).
            n = gout.size // gout.shape[1]
            gx = (gout - (gbeta.reshape(bshape) + xhat * ggamma.reshape(bshape)) * (1.0 / n)
                  ) * scale
        else:  # the running statistics are constants
            gx = gout * scale
        self.accumulate("gamma", ggamma)
        self.accumulate("beta", gbeta)
        return [gx]
