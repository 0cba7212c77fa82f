"""Merge layers: Add, Multiply and Concat join several inputs ``in0``..``in{n-1}``.

Shapes are per sample. An input shape may be None (fed by a delay edge on a first inference
pass); Add and Multiply then take the shape from the known inputs.
"""
from __future__ import annotations

import math

from core.layers.base import Layer, fmt_shape, register
from core.params import Int


def _ports(params) -> tuple[str, ...]:
    return tuple(f"in{i}" for i in range(params.get("inputs", 2)))


class _Merge(Layer):
    """Base of the merge layers: ``inputs`` ports named in0..in{n-1}."""

    category = "Merge"
    params_spec = {
        "inputs": Int(default=2, min=2, max=64, doc="number of input ports (in0, in1, ...)"),
    }

    @classmethod
    def input_ports(cls, params):
        return _ports(params)

    def _known(self, in_shapes) -> list[tuple[str, tuple[int, ...]]]:
        """(port, shape) of every input whose shape is known, in port order."""
        return [(p, in_shapes[p]) for p in _ports(self.params) if in_shapes.get(p) is not None]


class _ElementwiseMerge(_Merge):
    """Inputs of one shape, combined element by element."""

    def infer(self, in_shapes):
        known = self._known(in_shapes)
        if not known:
            return None
        first_port, first = known[0]
        for port, s in known[1:]:
            if s != first:
                raise self.shape_error(f"expected the shape of '{first_port}' "
                                       f"{fmt_shape(first)}, found {fmt_shape(s)}", port=port)
        return first


@register
class Add(_ElementwiseMerge):
    """Element-wise sum of its inputs (all of one shape)."""

    type_name = "Add"
    doc = "Element-wise sum of its inputs, which must all have the same shape."

    def forward(self, ctx, inputs):
        out = inputs[0] + inputs[1]
        for x in inputs[2:]:
            out += x  # ``out`` is a fresh array: adding in place saves a temporary per input
        return out, len(inputs)

    def backward(self, ctx, n, gout):
        # Every input receives gout itself (no copies): callers must not modify in place a
        # gradient array they were handed.
        return [gout] * n


@register
class Multiply(_ElementwiseMerge):
    """Element-wise product of its inputs (all of one shape)."""

    type_name = "Multiply"
    doc = "Element-wise product of its inputs, which must all have the same shape."

    def macs(self, in_shapes, out_shape):
        """One multiply per element for each input after the first."""
        return math.prod(int(d) for d in out_shape) * (len(in_shapes) - 1)

    def forward(self, ctx, inputs):
        out = inputs[0] * inputs[1]
        for x in inputs[2:]:
            out *= x
        return out, list(inputs)

    def backward(self, ctx, xs, gout):
        # d/dx_i = gout · prod_{j != i} x_j, from prefix and suffix products (no division, so
        # zeros in an input are fine).
        n = len(xs)
        grads = [gout]  # grads[i] = gout · x_0 ··· x_{i-1} for now
        for i in range(1, n):
            grads.append(grads[-1] * xs[i - 1])
        suffix = xs[n - 1]
        for i in range(n - 2, -1, -1):
            grads[i] = grads[i] * suffix
            if i > 0:
                suffix = suffix * xs[i]
        return grads


@register
class Concat(_Merge):
    """Concatenation of its inputs along a per-sample axis (-1: the last; 0: the first axis
    after the batch axis). The inputs' shapes must agree except on that axis."""

    type_name = "Concat"
    doc = ("Joins its inputs along a per-sample axis (-1: the last, 0: the first); their "
           "shapes must agree on every other axis.")
    params_spec = {
        **_Merge.params_spec,
        "axis": Int(default=-1, doc="per-sample axis to join along (-1: the last)"),
    }

    def infer(self, in_shapes):
        known = self._known(in_shapes)
        axis = self.params["axis"]
        first_port, first = known[0] if known else (None, None)
        for port, s in known:
            if not -len(s) <= axis < len(s):
                expected = (f"an axis from {-len(s)} to {len(s) - 1}" if s
                            else "at least 1 axis")
                raise self.shape_error(f"concatenating along axis {axis}: expected {expected}, "
                                       f"found {fmt_shape(s)}", port=port)
            if len(s) != len(first):
                raise self.shape_error(f"expected {len(first)} axes like '{first_port}' "
                                       f"{fmt_shape(first)}, found {fmt_shape(s)}", port=port)
            a = axis % len(s)
            if s[:a] + s[a + 1:] != first[:a] + first[a + 1:]:
                raise self.shape_error(f"expected the shape of '{first_port}' "
                                       f"{fmt_shape(first)} except on axis {axis}, found "
                                       f"{fmt_shape(s)}", port=port)
        # The size along the axis needs every input.
        if not known or len(known) < len(_ports(self.params)):
            return None
        a = axis % len(first)
        total = sum(s[a] for _, s in known)
        return first[:a] + (total,) + first[a + 1:]

    def _array_axis(self) -> int:
        axis = self.params["axis"]
        return axis + 1 if axis >= 0 else axis

    def forward(self, ctx, inputs):
        ax = self._array_axis()
        sizes = [x.shape[ax] for x in inputs]
        return ctx.xp.concatenate(inputs, axis=ax), sizes

    def backward(self, ctx, sizes, gout):
        # Slices of gout, one per input (views, no copies).
        ax = self._array_axis() % gout.ndim
        grads, start = [], 0
        for size in sizes:
            index = (slice(None),) * ax + (slice(start, start + size),)
            grads.append(gout[index])
            start += size
        return grads
