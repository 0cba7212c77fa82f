"""A node's outputs on samples as 2-D points (the embedding view).

Each sample's output is flattened to D values and projected to the plane:

- D = 2: the values themselves (``projection`` "identity");
- D = 1: the value on x, 0 on y ("pad");
- D > 2: principal component analysis ("pca"): the outputs are centred on their mean and the
  two right singular vectors of largest singular value (``numpy.linalg.svd``) are the axes;
  each axis's sign is fixed so that its largest-magnitude coefficient is positive, so the
  picture does not flip between two refreshes of a slowly changing network.
  ``explained`` is the fraction of the variance along each axis.

The network runs in evaluation mode through a twin sharing its arrays, as for the plane.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.errors import NeuroCanvasError
from core.network import Network
from core.probe.nets import check_node, pack, shared_twin, unpack
from kernels import backend

MAX_SAMPLES = 1000


@dataclass
class Embedding:
    """``points`` [n, 2] float32 of node ``node`` (of ``width`` D values per sample);
    ``projection`` "identity", "pad" or "pca"; the map is ``points = (out - mean) @
    components.T`` with ``mean`` [D] and ``components`` [2, D] (identity and pad: mean 0 and
    the unit rows); ``explained`` [2] the share of the variance on each axis; ``labels``
    [n] each sample's class (int64) or target value (float32), None when there is none."""
    node: str
    points: np.ndarray
    projection: str
    width: int
    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    labels: np.ndarray | None = None
    step: int = -1

    def to_arrays(self) -> dict[str, np.ndarray]:
        meta = {"node": self.node, "projection": self.projection, "width": self.width,
                "step": self.step}
        return pack(meta, {"points": self.points, "mean": self.mean,
                           "components": self.components, "explained": self.explained,
                           "labels": self.labels})

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Embedding:
        meta, a = unpack(arrays)
        return cls(meta["node"], a["points"], meta["projection"], meta["width"], a["mean"],
                   a["components"], a["explained"], a.get("labels"), meta["step"])


def project_2d(values: np.ndarray) -> tuple[np.ndarray, str, np.ndarray, np.ndarray,
                                            np.ndarray]:
    """(points [n, 2], projection, mean [D], components [2, D], explained [2]) of
    ``values`` [n, D] (see the module doc)."""
    x = np.asarray(values, dtype=np.float64)
    n, d = x.shape
    if d == 2 or d == 1:
        comps = np.eye(2, d)
        pts = x @ comps.T
        var = x.var(axis=0) if n else np.zeros(d)
        total = float(var.sum())
        explained = np.zeros(2)
        explained[:d] = var / total if total > 0 else 0.0
        return pts, ("identity" if d == 2 else "pad"), np.zeros(d), comps, explained
    mean = x.mean(axis=0) if n else np.zeros(d)
    xc = x - mean
    comps = np.zeros((2, d))
    explained = np.zeros(2)
    if n >= 1:
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        k = min(2, vt.shape[0])
        comps[:k] = vt[:k]
        total = float((s * s).sum())
        if total > 0:
            explained[:k] = s[:k] ** 2 / total
    for r in range(2):  # deterministic signs: the largest coefficient positive
        if comps[r].any() and comps[r, int(np.argmax(np.abs(comps[r])))] < 0:
            comps[r] = -comps[r]
    return xc @ comps.T, "pca", mean, comps, explained


def embed(source, node: str, fields: Mapping[str, np.ndarray], *,
          labels: np.ndarray | None = None, max_samples: int = MAX_SAMPLES,
          batch_size: int = 256) -> Embedding:
    """``node``'s outputs on the first ``max_samples`` samples of ``fields`` (dataset field
    -> array) as 2-D points. ``labels``: per sample of ``fields`` (the first ``max_samples``
    are kept), e.g. from ``core.probe.nets.sample_labels``."""
    net = source if isinstance(source, Network) else Network(source)
    a = net.analysis
    check_node(a, node, "show as an embedding")
    if a.layers[node].is_loss:
        raise NeuroCanvasError("a loss has one value per batch, not one per sample", node=node)
    n = min(len(next(iter(fields.values()))) if fields else 0, int(max_samples))
    if n == 0:
        raise NeuroCanvasError("no samples to show the embedding of", node=node)
    twin = shared_twin(net, [node])
    parts = []
    for i in range(0, n, batch_size):
        sub = {k: v[i:min(i + batch_size, n)] for k, v in fields.items()}
        parts.append(backend.to_host(twin.forward(sub, train=False).values[node]))
    out = np.concatenate(parts, axis=0).reshape(n, -1)
    pts, proj, mean, comps, explained = project_2d(out)
    lab = None if labels is None else np.asarray(labels)[:n]
    return Embedding(node, pts.astype(np.float32), proj, out.shape[1], mean, comps,
                     explained, lab)
