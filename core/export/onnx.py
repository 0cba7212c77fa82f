"""Export a graph as an ONNX model (docs/export.md): the exported PyTorch ``Model`` with the
given weights (or NeuroCanvas's initialisation), put through ``torch.onnx.export`` with the
dynamo exporter. The batch axis is dynamic; the inputs are named after their dataset fields
and the outputs after their nodes.

It needs torch, onnx and onnxscript (the optional extra ``onnx``); without them
``export_onnx`` raises ``ExportError`` saying what to install, before reading anything.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InvalidGraphError
from core.export.errors import ExportError
from core.graph import Graph

EXTRA = "pip install 'neurocanvas[onnx]' (in a NeuroCanvas checkout: pip install '.[onnx]')"
NEEDS = ("torch", "onnx", "onnxscript")
EXAMPLE_BATCH = 2  # the batch the model is traced with; the exported axis is dynamic


@dataclass
class OnnxExport:
    """What ``export_onnx`` wrote: the file, its input names (fields, in order) and output
    names (nodes, in order)."""
    path: str
    inputs: list[str]
    outputs: list[str]


def missing_packages() -> list[str]:
    """The packages of the ``onnx`` extra that cannot be imported."""
    missing = []
    for name in NEEDS:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def require_onnx() -> None:
    missing = missing_packages()
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}, not installed: {EXTRA}")


def export_onnx(graph: Graph, path: str | os.PathLike, weights_path: str | os.PathLike | None
                = None, *, base_dir: str | os.PathLike | None = None,
                outputs: list[str] | None = None) -> OnnxExport:
    """Write ``graph`` as an ONNX model to ``path`` (atomically).

    weights_path: a weights file (docs/format.md section 4), checked against the graph;
    without it the model holds NeuroCanvas's initialisation with the graph's seed.
    outputs: the nodes the model returns (default: what the losses read, as for
    ``--to pytorch``). Raises what ``export_graph`` raises, and ``ExportError`` when the
    extra is not installed or the exporter fails.
    """
    require_onnx()
    import torch

    from core.export import _check_weights
    from core.export.pytorch import INT_DTYPES, ModelWriter
    from core.export.script import pytorch_script
    from core.files import atomic_write
    from core.network import Network
    from core.validate import analyze_with_dataset
    from core.weights import load_weights, network_shapes, save_weights

    analysis = analyze_with_dataset(graph, base_dir, only_if_auto=True)
    if analysis.problems:
        raise InvalidGraphError(analysis.problems)
    if weights_path is not None:
        _check_weights(analysis, str(weights_path))
    writer = ModelWriter(analysis, outputs)
    in_names = [f.name for f in writer.inputs]
    out_names = list(writer.outputs)
    clash = set(in_names) & set(out_names)
    if clash:
        raise ExportError(f"an ONNX output cannot have the name of an input: "
                          f"{', '.join(sorted(clash))}", node=sorted(clash)[0])
    source = pytorch_script(analysis, None, None, outputs)
    with tempfile.TemporaryDirectory(prefix="neurocanvas-onnx-") as tmp:
        module = _load_module(source, Path(tmp) / "exported_model.py")
        # packed sequences cannot be traced: the padded formulation (the same values)
        model = module.Model(packed=False) if writer.packs else module.Model()
        weights = str(weights_path) if weights_path is not None else str(Path(tmp) / "w.npz")
        if weights_path is None:
            seed = graph.training.get("seed", 0)
            seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
            net = Network(analysis, outputs=writer.outputs, with_losses=False, seed=seed)
            save_weights(weights, net.state_dict())
        else:  # only the keys the model holds, each checked from its header first
            net = Network(analysis, outputs=writer.outputs, with_losses=False)
            load_weights(weights, network_shapes(net))
        module.load_weights(model, weights)
        model.eval()
        args = tuple(torch.from_numpy(np.zeros((EXAMPLE_BATCH, *f.shape),
                                               np.dtype(f.dtype) if f.dtype in INT_DTYPES
                                               else np.float32))
                     for f in writer.inputs)
        dynamic = tuple({0: torch.export.Dim.DYNAMIC} for _ in args)
        target = Path(tmp) / "model.onnx"
        _export(torch, model, args, target, in_names, out_names, dynamic)
        data = target.read_bytes()
    try:
        atomic_write(path, data)
    except OSError as e:
        raise ExportError(f"cannot write: {e.strerror}", file=str(path)) from None
    return OnnxExport(str(path), in_names, out_names)


def _load_module(source: str, path: Path):
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _export(torch, model, args, target: Path, in_names, out_names, dynamic) -> None:
    """torch.onnx.export with the dynamo exporter, quietly (it reports its progress on
    stdout and logs warnings about packages it does not need)."""
    quiet = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                              "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, args, dynamo=True, input_names=in_names,
                                        output_names=out_names, dynamic_shapes=dynamic,
                                        external_data=False, verbose=False)
            program.save(str(target), external_data=False)
    except Exception as e:  # noqa: BLE001 - the exporter's own errors, as one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"torch.onnx.export failed: {first[:300]}") from None
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


__all__ = ["export_onnx", "missing_packages", "require_onnx", "OnnxExport", "EXTRA"]
