"""The networks the probes run, and what they read off a graph.

- ``shared_twin(net, outputs)``: an evaluation network for other outputs that uses ``net``'s
  very arrays (parameters, gradients, buffers), so it sees every update and copies nothing;
- ``float64_copy(net)``: a CPU float64 network with copies of ``net``'s parameters and
  buffers, for the gradient check;
- ``data_sources(analysis, node)``: the Input nodes a node's value depends on;
- ``sample_labels``: each sample's class (or target value) for colouring points.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx
import numpy as np

from core.errors import NeuroCanvasError
from core.network import Network
from core.training.metrics import Classifier, predicted_classes
from core.validate import Analysis
from kernels import backend


def shared_twin(net: Network, outputs: Iterable[str]) -> Network:
    """A network computing ``outputs`` (no losses) with ``net``'s arrays, not copies.

    Its own random generator is used (evaluation draws nothing anyway), so running it leaves
    ``net.rng`` alone. A node outside ``net``'s plan (a branch that reaches no loss) keeps
    the twin's initial parameters, unless its owner is in ``net``.
    """
    twin = Network(net.analysis, device=net.device, dtype=net.dtype, seed=0,
                   outputs=list(dict.fromkeys(outputs)), with_losses=False)
    owners = {nid: layer for nid, layer in net.layers.items()}
    for nid, layer in twin.layers.items():
        src = owners.get(nid) or owners.get(net.analysis.shared_root.get(nid, nid))
        if src is not None and src.P.keys() == layer.P.keys():
            layer.P, layer.G, layer.B = src.P, src.G, src.B
    return twin


def float64_copy(net: Network, outputs: Iterable[str] = (), seed: int = 0) -> Network:
    """A float64 CPU network of ``net``'s graph with copies of its parameters and buffers
    (every key of ``net``; the copy's own initial values for the others)."""
    copy = Network(net.analysis, device="cpu", dtype=np.float64, seed=seed,
                   outputs=list(outputs))
    for store, src in ((copy.params, net.params), (copy.buffers, net.buffers)):
        for key, arr in store.items():
            if key in src:
                arr[...] = backend.to_host(src[key])
    return copy


def first_loss_pred(analysis: Analysis) -> tuple[str, str] | None:
    """(loss, node feeding its first input port) of the first loss, or None."""
    for nid in analysis.losses():
        layer = analysis.layers[nid]
        first = layer.input_ports(layer.params)[0]
        edge = analysis.inputs.get(nid, {}).get(first)
        if edge is not None:
            return nid, edge.src
    return None


def data_sources(analysis: Analysis, node: str) -> set[str]:
    """The Input nodes (data role "input") ``node``'s value depends on (itself included)."""
    ups = nx.ancestors(analysis.nx_graph, node) | {node}
    return {n for n in ups if n in analysis.layers
            and analysis.layers[n].data_role == "input"}


def check_node(analysis: Analysis, node: str, what: str) -> None:
    """NeuroCanvasError unless ``node`` is a node of the graph with a known type and shape."""
    if node not in analysis.layers:
        raise NeuroCanvasError(f"no node '{node}' of a known type in the graph to {what}",
                               node=node)
    if analysis.shapes.get(node) is None:
        raise NeuroCanvasError(f"the output shape is not known, so there is nothing to "
                               f"{what}", node=node)


CLASS_SUFFIX = "_class"  # a dataset field "<f>_class" holds the class of field <f>'s samples


def sample_labels(analysis: Analysis, head: Classifier | None, fields: Mapping[str, Any],
                  n: int, node: str | None = None) -> np.ndarray | None:
    """Per sample of ``fields`` (the first ``n``): its true class (int64) when ``head``
    classifies with one decision per sample, else the first value of the first loss's
    target (float32, regression). Without such a target (a triplet loss compares samples
    with each other), the class a dataset field ``<f>_class`` gives, when ``node`` depends
    on the one Input reading ``<f>`` (``digit_triplets``' ``anchor_class`` for the anchor
    tower). None otherwise."""
    labels = _target_labels(analysis, head, fields, n)
    if labels is None and node is not None:
        labels = _class_field(analysis, node, fields, n)
    return labels


def _class_field(analysis: Analysis, node: str, fields: Mapping[str, Any],
                 n: int) -> np.ndarray | None:
    read = {analysis.layers[s].params.get("field") for s in data_sources(analysis, node)}
    if len(read) != 1:
        return None
    values = fields.get(f"{read.pop()}{CLASS_SUFFIX}")
    if values is None:
        return None
    values = np.asarray(values[:n])
    return values.astype(np.int64) if values.ndim == 1 and values.dtype.kind in "iu" else None


def _target_labels(analysis: Analysis, head: Classifier | None, fields: Mapping[str, Any],
                   n: int) -> np.ndarray | None:
    if head is not None:
        target = _field_of(analysis, head.target, fields)
        if target is None:
            return None
        target = np.asarray(target[:n])
        pred_shape = tuple(analysis.shapes[head.pred])
        _, truth = predicted_classes(np.zeros((len(target),) + pred_shape), target,
                                     head.decision)
        return truth if truth.size == len(target) else None
    first = first_loss_pred(analysis)
    if first is None:
        return None
    loss = analysis.layers[first[0]]
    ports = loss.input_ports(loss.params)
    edge = analysis.inputs[first[0]].get(ports[1]) if len(ports) > 1 else None
    target = None if edge is None else _field_of(analysis, edge.src, fields)
    if target is None:
        return None
    target = np.asarray(target[:n])
    return target.reshape(len(target), -1)[:, 0].astype(np.float32)


def _field_of(analysis: Analysis, node: str, fields: Mapping[str, Any]):
    layer = analysis.layers.get(node)
    if layer is None or layer.data_role is None:
        return None
    return fields.get(layer.params["field"])


# ---- the wire: arrays plus a small JSON object, in one flat dict of arrays ------------------
def pack(meta: dict, arrays: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """``arrays`` (those not None) and ``meta`` as the 0-d string array ``"meta"`` (JSON):
    what an ``.npz`` archive holds without pickling."""
    out = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
    out["meta"] = np.array(json.dumps(meta))
    return out


def unpack(arrays: Mapping[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, the other arrays) of ``pack``'s dict."""
    rest = {k: np.asarray(v) for k, v in arrays.items() if k != "meta"}
    return json.loads(str(arrays["meta"][()])), rest
