"""Import a PyTorch module as a NeuroCanvas graph (docs/import.md).

``import_torch("model.py:Net", input_shapes=[(1, 28, 28)])`` loads the file (running its
code), builds ``Net``, traces its ``forward`` with ``torch.fx``, maps every module call and
operation onto our node types (``core.importer.mapping``), lays the graph out and converts
the module's weights with the exporter's table (``core.export.torch_layers.from_torch``).
It then runs the graph and the module on the same random inputs and says how far apart
their outputs are.

- ``trace.py``: tracing, each traced value's shape and the source line it comes from;
- ``mapping.py``: the traced graph as our nodes and edges;
- ``loading.py``: the user's file, class and state_dict;
- ``errors.py``: ``TorchImportError``, a user error naming the operation and its line.

torch is imported only when an import runs; without it, ``TorchImportError`` says how to
install it. Losses are not part of a module: the imported graph has none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.importer.errors import NEEDS_TORCH, TorchImportError

__all__ = ["ImportResult", "import_torch", "parse_shape", "TorchImportError", "NEEDS_TORCH"]

DTYPES = ("float32", "float64", "int64", "int32")


@dataclass
class ImportResult:
    graph: Any  # core.graph.Graph
    weights: dict[str, np.ndarray]  # weights-file keys -> float32 arrays (docs/format.md 4)
    outputs: list[str]  # the nodes giving forward's outputs, in order
    # max |graph - module| over the outputs on random inputs, relative to max(1, |module|)
    max_difference: float
    notes: list[str] = field(default_factory=list)
    loaded: str | None = None  # where the weights came from


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,28,28"`` -> (1, 28, 28); ``""`` or ``"-"`` is a number per sample, ``()``."""
    text = text.strip().strip("[]()")
    if text in ("", "-"):
        return ()
    try:
        dims = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise TorchImportError(f"--input-shape {text!r}: expected positive integers separated "
                               "by commas, e.g. 1,28,28") from None
    if any(d < 1 for d in dims):
        raise TorchImportError(f"--input-shape {text!r}: every axis must be at least 1")
    return dims


def import_torch(spec: str, *, input_shapes: list[tuple[int, ...]],
                 input_dtypes: list[str] | None = None, args: Any = None,
                 weights: str | None = None, model=None, name: str | None = None
                 ) -> ImportResult:
    """Import ``MODULE.py:CLASS`` (or an already built ``model``, with ``spec`` the file
    its code comes from, for the messages).

    input_shapes: the per-sample shape of each input of ``forward``, in order.
    input_dtypes: one dtype per input, or one for all (default float32; int64 for indices
    fed to an Embedding).
    args: the class's constructor arguments (a list or a dict).
    weights: a state_dict file (``torch.load(weights_only=True)``) to load first; otherwise
    the module's own (freshly initialised) parameters are imported.
    """
    from core.importer.loading import load_class, load_state, need_torch

    torch = need_torch()
    if model is None:
        model, path, cls_name = load_class(spec, args)
    else:
        path, cls_name = spec, name or type(model).__name__
    if getattr(model, "packed", None) is True:  # a NeuroCanvas export on sequence lengths:
        model.packed = False  # its traceable form (the same values; docs/export.md)
    dtypes = list(input_dtypes or ["float32"])
    if len(dtypes) == 1 and len(input_shapes) > 1:
        dtypes = dtypes * len(input_shapes)
    if len(dtypes) != len(input_shapes):
        raise TorchImportError(f"{len(dtypes)} --input-dtype for {len(input_shapes)} inputs: "
                               "give one for all or one per --input-shape")
    for d in dtypes:
        if d not in DTYPES:
            raise TorchImportError(f"--input-dtype {d!r}: expected one of {', '.join(DTYPES)}")
    loaded = load_state(model, weights) if weights else None
    return _import_model(torch, model, path, cls_name, list(map(tuple, input_shapes)), dtypes,
                         loaded)


def _import_model(torch, model, path: str, cls_name: str, shapes, dtypes, loaded
                  ) -> ImportResult:
    from core.importer import mapping
    from core.importer.trace import trace
    from core.layout import layered_layout
    from core.validate import analyze

    mapping.handlers_ready()
    rows = [m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    low = [min(rows) if rows else 2] * len(shapes)
    traced = trace(model, path, shapes, dtypes, low)
    built = mapping.Mapper(traced, model, shapes, dtypes, cls_name).run()
    graph = built.graph
    a = analyze(graph)
    if a.problems:
        p = a.problems[0]
        fx_name = built.origin.get(p.node) if p.node else None
        where = traced.where.get(fx_name) if fx_name else None
        raise TorchImportError(f"the imported graph is not valid: {p}", where=where, file=path)
    for nid, pos in layered_layout(graph).items():
        graph.nodes[nid].pos = pos
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    weights = _weights(built, a, state)
    diff = _check(torch, traced, a, built, weights)
    notes = list(built.notes)
    return ImportResult(graph, weights, built.outputs, diff, notes, loaded)


def _weights(built, a, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every owner node's arrays under our names and layouts, through the exporter's table."""
    from core.export.torch_layers import from_torch
    from core.network import Network

    out: dict[str, np.ndarray] = {}
    for nid, (prefix, cls) in built.owners.items():
        mine = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        for name, arr in from_torch(cls, mine).items():
            out[f"{nid}/{name}"] = np.asarray(arr, dtype=np.float32)
    net = Network(a, outputs=built.outputs, with_losses=False)
    expected = {k: tuple(v.shape) for k, v in list(net.params.items())
                + list(net.buffers.items())}
    missing = sorted(set(expected) - set(out))
    if missing:  # a bug of the mapping rather than of the user's module
        raise TorchImportError(f"no weights found for {', '.join(missing)}")
    return {k: out[k] for k in expected}


def _check(torch, traced, a, built, weights) -> float:
    """The largest difference between the graph's outputs and the module's on the example
    inputs (evaluation mode)."""
    from core.layers.io import Input
    from core.network import Network

    net = Network(a, outputs=built.outputs, with_losses=False)
    net.load_state_dict(weights)
    batch = {}
    field_of = {built.origin[nid]: node.params["field"]
                for nid, node in built.graph.nodes.items()
                if node.type == Input.type_name and nid in built.origin}
    arg_of = {n.name: str(n.target) for n in traced.gm.graph.nodes if n.op == "placeholder"}
    for name, example in zip(traced.inputs, traced.examples, strict=True):
        # an Input's field, or for sequence lengths the argument's own name
        batch[field_of.get(name, arg_of[name])] = example.numpy()
    worst = 0.0
    for nid, theirs in zip(built.outputs, traced.outputs, strict=False):
        ours = net.predict(batch, nid)
        ref = theirs.detach().cpu().numpy()
        if ours.shape != ref.shape:
            return float("inf")
        if ours.size:
            scale = max(1.0, float(np.max(np.abs(ref))))
            worst = max(worst, float(np.max(np.abs(ours - ref))) / scale)
    return worst
