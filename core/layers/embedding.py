"""Embedding: a learned vector per integer index (a lookup table, as torch.nn.Embedding)."""
from __future__ import annotations

from core.errors import DataError
from core.layers.base import Layer, register
from core.params import Int
from kernels.backend import to_host


@register
class Embedding(Layer):
    """out[..., :] = W[index, :] for integer indices of any per-sample shape [...].

    Init: normal(0, 1), as torch.nn.Embedding (``he`` is ignored). Indices must be integers
    from 0 to num_embeddings - 1; whole-number floats (a float32 Input) are accepted. The
    indices get no gradient; W's gradient adds up the output gradients of every position
    that looked a row up (a scatter-add, so repeated indices accumulate).
    """

    type_name = "Embedding"
    starter_params = {"num_embeddings": 100, "dim": 16}
    category = "Core"
    doc = ("Looks up a learned vector for each integer index: input [...] of indices from "
           "0 to num_embeddings - 1, output [..., dim]; W [num_embeddings, dim], "
           "init normal(0, 1) as PyTorch.")
    params_spec = {
        "num_embeddings": Int(min=1, doc="number of rows of the table (valid indices)"),
        "dim": Int(min=1, doc="length of each vector"),
    }
    param_names = ("W",)

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        return tuple(s) + (self.params["dim"],)

    def param_shapes(self):
        return {"W": (self.params["num_embeddings"], self.params["dim"])}

    def init_params(self, rng, he):
        return {"W": rng.standard_normal(self.param_shapes()["W"])}

    def _indices(self, xp, x):
        """``x`` as int64 indices, or DataError naming this node, port and the valid range.

        One small device-to-host transfer per call (min, max and, for floats, the largest
        distance to a whole number), needed to report bad data at all.
        """
        n = self.params["num_embeddings"]
        kind = x.dtype.kind
        if kind not in "iuf":
            raise DataError(f"expected integer indices, found dtype {x.dtype}",
                            node=self.id, port="in")
        if x.size == 0:
            return x.astype(xp.int64)
        parts = [x.min(), x.max()]
        if kind == "f":
            parts.append(xp.abs(x - xp.rint(x)).max())
        stats = to_host(xp.stack(parts))
        if kind == "f" and not stats[2] == 0:  # also true for NaN
            value = to_host(x[x != xp.rint(x)].reshape(-1)[:1])[0].item()
            raise DataError(f"index {value!r} is not a whole number; expected an integer "
                            f"from 0 to {n - 1} (num_embeddings {n})", node=self.id, port="in")
        lo, hi = stats[0].item(), stats[1].item()
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            if kind == "f":
                bad = int(bad)
            raise DataError(f"index {bad!r} is out of range; expected an integer from 0 to "
                            f"{n - 1} (num_embeddings {n})", node=self.id, port="in")
        return x.astype(xp.int64, copy=False)

    def forward(self, ctx, inputs):
        xp = ctx.xp
        idx = self._indices(xp, inputs[0])
        W = self.P["W"]
        out = xp.take(W, idx.reshape(-1), axis=0)
        return out.reshape(idx.shape + (W.shape[1],)), idx

    def backward(self, ctx, idx, gout):
        xp = ctx.xp
        W = self.P["W"]
        dim = W.shape[1]
        # Scatter-add on the flattened table: NumPy's add.at is several times faster on 1-D
        # operands than on rows of a 2-D one; CuPy's is atomic adds either way.
        flat = (idx.reshape(-1, 1) * dim + xp.arange(dim)).reshape(-1)
        g = xp.zeros(W.size, dtype=W.dtype)
        xp.add.at(g, flat, xp.asarray(gout, dtype=W.dtype).reshape(-1))
        self.accumulate("W", g.reshape(W.shape))
        return [None]
