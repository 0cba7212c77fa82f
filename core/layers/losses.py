"""Losses: each takes pred and target (triplet: anchor, positive, negative) and gives the
mean over the batch as a 0-d array. Backward receives d(total)/d(loss), a scalar.

Every loss follows the PyTorch loss of the same meaning (named in its ``doc``) with
``reduction='mean'``, so the tests compare values and gradients with it directly. Gradients
keep the dtype of the input they belong to; an integer target gets None.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import DataError
from core.layers.base import Layer, Shape, fmt_shape, register
from core.params import Float


def _is_float(a) -> bool:
    return a.dtype.kind == "f"


def _grad_scale(ctx, gout, dtype, count: int):
    """d(total)/d(loss) / count as a 0-d array of ``dtype``.

    ``gout`` may be a Python float or a 0-d array of another dtype; converting it first keeps
    float32 gradients float32 (a float64 0-d array would promote them under NumPy 2).
    """
    return ctx.xp.asarray(gout, dtype=dtype) / max(1, count)


@dataclass(frozen=True)
class Decision:
    """How a classification loss reads its prediction as a class, for accuracy and the
    confusion matrix. ``binary``: one output per sample, class 1 where pred > 0, and the
    target is class 1 where it is > ``target_cut``. Otherwise the class is the argmax of
    pred over its last axis, and the target is a class index, or probabilities of pred's
    shape (their argmax)."""
    binary: bool
    target_cut: float = 0.0


class Loss(Layer):
    category = "Losses"
    is_loss = True

    @classmethod
    def input_ports(cls, params):
        return ("pred", "target")

    def decision(self, pred_shape: Shape) -> Decision | None:
        """How a prediction of per-sample ``pred_shape`` reads as a class; None for a loss
        that does not classify (regression, metric learning)."""
        return None

    def class_indices(self, xp, target, num_classes: int):
        """``target`` as integer class indices, or DataError naming this node and port.

        Float targets are accepted when every value is a whole number (labels stored as
        float32). One device-to-host sync per call, needed to report bad data at all.
        """
        if not _is_float(target) and target.dtype.kind not in "iu":
            raise DataError(f"expected integer class indices, found dtype {target.dtype}",
                            node=self.id, port="target")
        bad = (target < 0) | (target >= num_classes)
        if _is_float(target):
            bad |= target != xp.floor(target)
        if bool(bad.any()):
            value = target[bad].reshape(-1)[0].item()
            raise DataError(f"class index {value!r} is not valid; expected an integer from 0 "
                            f"to {num_classes - 1} ({num_classes} classes)",
                            node=self.id, port="target")
        return target.astype(xp.int64, copy=False)


class ValidRows:
    """A loss at a step of the recurrent region where some samples are padding (sequence
    lengths, docs/format.md section 2.6): the same loss over the valid samples only (the
    rows ``rows``, a device index array), so padded steps neither count in its mean nor
    get a gradient. Looks like the loss it wraps otherwise. The network weights each
    step's value by its number of valid samples, which makes the region's loss the mean
    over all valid (sample, step) pairs."""

    def __init__(self, loss: Loss, rows):
        self.loss = loss
        self.rows = rows

    def __getattr__(self, name):
        return getattr(self.loss, name)

    def forward(self, ctx, inputs):
        out, cache = self.loss.forward(ctx, [x[self.rows] for x in inputs])
        return out, (cache, [x.shape for x in inputs])

    def backward(self, ctx, cache, gout):
        inner, shapes = cache
        out = []
        for g, shape in zip(self.loss.backward(ctx, inner, gout), shapes, strict=True):
            if g is not None:
                full = ctx.xp.zeros(shape, dtype=g.dtype)
                full[self.rows] = g
                g = full
            out.append(g)
        return out


@register
class MSELoss(Loss):
    type_name = "MSELoss"
    doc = "Mean squared error, mean over every element (as torch.nn.MSELoss)."

    def infer(self, in_shapes):
        p, t = in_shapes.get("pred"), in_shapes.get("target")
        if p is not None and t is not None and p != t:
            raise self.shape_error(f"expected the shape of 'pred' {fmt_shape(p)}, "
                                   f"found {fmt_shape(t)}", port="target")
        return ()

    def forward(self, ctx, inputs):
        pred, target = inputs
        diff = pred - target.astype(pred.dtype, copy=False)
        target_dtype = target.dtype if _is_float(target) else None
        return ctx.xp.asarray((diff * diff).mean()), (diff, target_dtype)

    def backward(self, ctx, cache, gout):
        diff, target_dtype = cache
        g = diff * (2 * _grad_scale(ctx, gout, diff.dtype, diff.size))
        gt = None if target_dtype is None else (-g).astype(target_dtype, copy=False)
        return [g, gt]


@register
class CrossEntropyLoss(Loss):
    type_name = "CrossEntropyLoss"
    doc = ("Softmax cross-entropy of logits pred [C] (class axis last; [..., C] averages "
           "over every position). Target: class indices of shape pred[:-1], or class "
           "probabilities of the shape of pred (as torch.nn.CrossEntropyLoss).")

    def decision(self, pred_shape):
        return Decision(binary=False)

    def infer(self, in_shapes):
        p, t = in_shapes.get("pred"), in_shapes.get("target")
        if p is not None and len(p) == 0:
            raise self.shape_error("expected logits with a class axis, e.g. [C], found []",
                                   port="pred")
        if p is not None and t is not None and t != p[:-1] and t != p:
            raise self.shape_error(
                f"expected class indices {fmt_shape(p[:-1])} or class probabilities "
                f"{fmt_shape(p)} for logits {fmt_shape(p)}, found {fmt_shape(t)}",
                port="target")
        return ()

    def forward(self, ctx, inputs):
        xp = ctx.xp
        x, target = inputs
        num_classes = x.shape[-1]
        count = x.size // num_classes  # positions averaged over (batch and extra axes)
        z = x - x.max(axis=-1, keepdims=True)
        e = xp.exp(z)
        s = e.sum(axis=-1, keepdims=True)
        logp = z - xp.log(s)
        prob = e / s
        if target.ndim == x.ndim:  # class probabilities (soft labels)
            t = target.astype(x.dtype, copy=False)
            loss = -(t * logp).sum() / count
            soft = (t, target.dtype if _is_float(target) else None)
            cache = (prob, None, soft, logp if soft[1] is not None else None)
        else:
            idx = self.class_indices(xp, target, num_classes)
            picked = xp.take_along_axis(logp, idx[..., None], axis=-1)
            loss = -picked.sum() / count
            cache = (prob, idx, None, None)
        return xp.asarray(loss, dtype=x.dtype), cache

    def backward(self, ctx, cache, gout):
        xp = ctx.xp
        prob, idx, soft, logp = cache
        num_classes = prob.shape[-1]
        scale = _grad_scale(ctx, gout, prob.dtype, prob.size // num_classes)
        if idx is not None:
            onehot = xp.arange(num_classes) == idx[..., None]
            return [(prob - onehot) * scale, None]
        t, target_dtype = soft
        # d/dx of -sum(t * log_softmax(x)) = softmax(x) * sum(t) - t (sum(t) need not be 1)
        gx = (prob * t.sum(axis=-1, keepdims=True) - t) * scale
        gt = None if target_dtype is None else (-logp * scale).astype(target_dtype, copy=False)
        return [gx, gt]


@register
class BinaryCrossEntropyLoss(Loss):
    type_name = "BinaryCrossEntropyLoss"
    doc = ("Binary cross-entropy of logits pred against 0/1 targets of the same shape, mean "
           "over every element (as torch.nn.BCEWithLogitsLoss). A scalar target [] also "
           "fits a one-output pred [1].")

    def decision(self, pred_shape):
        return Decision(binary=True, target_cut=0.5)  # 0/1 targets

    def infer(self, in_shapes):
        p, t = in_shapes.get("pred"), in_shapes.get("target")
        if p is not None and t is not None and p != t and not (
                p in ((), (1,)) and t in ((), (1,))):
            raise self.shape_error(f"expected the shape of 'pred' {fmt_shape(p)}, "
                                   f"found {fmt_shape(t)}", port="target")
        return ()

    def forward(self, ctx, inputs):
        xp = ctx.xp
        x, target = inputs
        t = target.astype(x.dtype, copy=False).reshape(x.shape)
        # max(x, 0) - x t + log(1 + exp(-|x|)): no overflow for any finite logit
        e = xp.exp(-xp.abs(x))
        loss = (xp.maximum(x, 0) - x * t + xp.log1p(e)).mean()
        target_info = (target.dtype, target.shape) if _is_float(target) else None
        return xp.asarray(loss, dtype=x.dtype), (x, t, e, target_info)

    def backward(self, ctx, cache, gout):
        xp = ctx.xp
        x, t, e, target_info = cache
        scale = _grad_scale(ctx, gout, x.dtype, x.size)
        sig = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))  # stable sigmoid(x)
        gx = (sig - t) * scale
        gt = None
        if target_info is not None:
            gt = (-x * scale).astype(target_info[0], copy=False).reshape(target_info[1])
        return [gx, gt]


@register
class HingeLoss(Loss):
    type_name = "HingeLoss"
    doc = ("Hinge loss. One output (pred [] or [1]): binary with labels 0/1 or -1/+1, "
           "mean of max(0, margin - y pred). C outputs (pred [C]): multi-class with class "
           "index targets, as torch.nn.MultiMarginLoss (p=1).")
    params_spec = {
        "margin": Float(default=1.0, min=0.0, doc="margin the correct score must win by"),
    }

    def decision(self, pred_shape):
        # one output: binary, labels 0/1 or -1/+1; C outputs: multi-class
        one = int(np.prod(pred_shape)) == 1
        return Decision(binary=True, target_cut=0.0) if one else Decision(binary=False)

    def infer(self, in_shapes):
        p, t = in_shapes.get("pred"), in_shapes.get("target")
        if p is None:
            return ()
        if p in ((), (1,)):
            if t is not None and t not in ((), (1,)):
                raise self.shape_error(f"expected a label [] or [1] for a one-output pred "
                                       f"{fmt_shape(p)}, found {fmt_shape(t)}", port="target")
        elif len(p) == 1:
            if t is not None and t != ():
                raise self.shape_error(f"expected a class index [] for scores {fmt_shape(p)}, "
                                       f"found {fmt_shape(t)}", port="target")
        else:
            raise self.shape_error(f"expected [] or [1] (binary) or [C] (multi-class) "
                                   f"scores, found {fmt_shape(p)}", port="pred")
        return ()

    def forward(self, ctx, inputs):
        xp = ctx.xp
        x, target = inputs
        margin = self.params["margin"]
        if x.ndim == 1 or x.shape[-1] == 1:  # binary
            t = target.reshape(x.shape)
            bad = (t != 0) & (t != 1) & (t != -1)
            if bool(bad.any()):
                raise DataError(f"expected binary labels 0/1 or -1/+1, found "
                                f"{t[bad].reshape(-1)[0].item()!r}", node=self.id, port="target")
            y = xp.where(t > 0, 1, -1).astype(x.dtype)
            z = margin - y * x
            active = z > 0
            loss = (z * active).mean()
            # d/dx of max(0, margin - y x) is -y where active
            return xp.asarray(loss, dtype=x.dtype), (-y * active, None, x.dtype)
        num_classes = x.shape[-1]
        idx = self.class_indices(xp, target, num_classes)
        onehot = xp.arange(num_classes) == idx[..., None]
        xy = xp.take_along_axis(x, idx[..., None], axis=-1)
        z = margin - xy + x
        active = (z > 0) & ~onehot  # the true class is not a term of its own sum
        loss = (z * active).sum() / (num_classes * x.shape[0])
        return xp.asarray(loss, dtype=x.dtype), (active, onehot, x.dtype)

    def backward(self, ctx, cache, gout):
        first, onehot, dtype = cache
        if onehot is None:  # binary: first is d(loss_i)/d(x_i), in the dtype of pred
            return [first * _grad_scale(ctx, gout, dtype, first.size), None]
        active = first  # multi-class: active and onehot are boolean masks
        num_classes = active.shape[-1]
        scale = _grad_scale(ctx, gout, dtype, num_classes * active.shape[0])
        a = active.astype(dtype)
        gx = (a - onehot * a.sum(axis=-1, keepdims=True)) * scale
        return [gx, None]


@register
class TripletLoss(Loss):
    type_name = "TripletLoss"
    doc = ("Triplet margin loss: mean of max(d(a, p) - d(a, n) + margin, 0) with Euclidean "
           "distances over the last axis (as torch.nn.TripletMarginLoss, p=2, eps=1e-6).")
    params_spec = {
        "margin": Float(default=1.0, min=0.0, doc="how much closer positive must be"),
    }
    eps = 1e-6  # torch.pairwise_distance adds it to the difference: ||a - p + eps||

    @classmethod
    def input_ports(cls, params):
        return ("anchor", "positive", "negative")

    def infer(self, in_shapes):
        shapes = {k: in_shapes.get(k) for k in ("anchor", "positive", "negative")}
        known = [(k, s) for k, s in shapes.items() if s is not None]
        for k, s in known:
            if len(s) == 0:
                raise self.shape_error("expected embeddings with a feature axis, e.g. [D], "
                                       "found []", port=k)
        if known:
            ref_port, ref = known[0]
            for k, s in known[1:]:
                if s != ref:
                    raise self.shape_error(f"expected the shape of '{ref_port}' "
                                           f"{fmt_shape(ref)}, found {fmt_shape(s)}", port=k)
        return ()

    def _unit_and_norm(self, xp, a, b):
        """(a - b + eps) / ||a - b + eps|| over the last axis, and the norm."""
        d = a - b + self.eps
        norm = xp.sqrt((d * d).sum(axis=-1, keepdims=True))
        nonzero = norm > 0
        # The norm's subgradient at 0 is taken as 0, as torch does.
        unit = d * (nonzero / xp.where(nonzero, norm, 1))
        return unit, norm[..., 0]

    def forward(self, ctx, inputs):
        xp = ctx.xp
        a, p, n = inputs
        u_ap, d_ap = self._unit_and_norm(xp, a, p)
        u_an, d_an = self._unit_and_norm(xp, a, n)
        z = d_ap - d_an + self.params["margin"]
        active = z > 0
        loss = (z * active).mean()
        return xp.asarray(loss, dtype=a.dtype), (u_ap, u_an, active)

    def backward(self, ctx, cache, gout):
        u_ap, u_an, active = cache
        g = active[..., None] * _grad_scale(ctx, gout, u_ap.dtype, active.size)
        g_pos = -u_ap * g
        g_neg = u_an * g
        return [-(g_pos + g_neg), g_pos, g_neg]
