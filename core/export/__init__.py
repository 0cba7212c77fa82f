"""Export a graph as Python code (docs/format.md section 7).

``export_graph(graph, "pytorch")`` gives one self-contained PyTorch script (a ``Model``
module, NeuroCanvas weights files in and out, and a training loop that also runs under
torchrun); ``export_graph(graph, "python")`` a script that rebuilds the graph with the
``core`` API and trains it. Strings from the graph reach the code only through
``core.export.source``: as identifiers or escaped literals.
"""
from __future__ import annotations

import os
from pathlib import Path

from core.errors import InvalidGraphError
from core.export.errors import ExportError
from core.graph import Graph
from core.validate import analyze_with_dataset

TARGETS = ("pytorch", "python")


def export_graph(graph: Graph, to: str, weights_path: str | os.PathLike | None = None, *,
                 base_dir: str | os.PathLike | None = None,
                 out_dir: str | os.PathLike | None = None,
                 outputs: list[str] | None = None) -> str:
    """The source text of ``graph`` exported ``to`` "pytorch" or "python".

    weights_path: a weights file (docs/format.md section 4) the exported script starts from; it is
    checked against the graph now (``WeightsError`` naming a missing key or a wrong shape).
    base_dir: the folder of the graph file, against which a relative dataset path is
    resolved; without it, such a path is read relative to the exported script's own folder.
    out_dir ("pytorch"): the folder the script will be written to: a relative dataset path and
    a relative ``weights_path`` (from the current folder) are then written relative to the
    script (``Path(__file__).resolve().parent / ...``); without it, as absolute paths.
    outputs ("pytorch"): the nodes ``Model.forward`` returns (default: what the losses read).

    Raises ``InvalidGraphError`` (every problem) for an invalid graph, ``ParamError`` for
    bad training settings and ``ExportError`` for what an export cannot write.
    """
    if to not in TARGETS:
        raise ValueError(f"export to {to!r}: expected one of {', '.join(TARGETS)}")
    # a node whose shape comes from the dataset ("auto") needs the dataset's fields
    analysis = analyze_with_dataset(graph, base_dir, only_if_auto=True)
    if analysis.problems:
        raise InvalidGraphError(analysis.problems)
    weights = None if weights_path is None else str(weights_path)
    if weights is not None:
        _check_weights(analysis, weights)
    data_dir = None if base_dir is None else str(Path(base_dir).resolve())
    if to == "pytorch":
        from core.export.script import pytorch_script
        if weights is not None and out_dir is None:
            weights = str(Path(weights).resolve())
        return pytorch_script(analysis, weights, data_dir, outputs,
                              None if out_dir is None else str(Path(out_dir).resolve()))
    from core.export.python_api import python_script
    return python_script(graph, weights, data_dir)


def _check_weights(analysis, path: str) -> None:
    """A weights file that does not fit the graph is found at export, not when training."""
    from core.network import Network, default_output
    from core.weights import load_weights, network_shapes

    net = Network(analysis, outputs=[default_output(analysis)],
                  with_losses=bool(analysis.losses()))
    # only the keys the network holds are read, each checked from its header first
    net.load_state_dict(load_weights(path, network_shapes(net)), file=path)


__all__ = ["export_graph", "ExportError", "TARGETS"]
