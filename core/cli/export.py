"""``export GRAPH --to pytorch|python|onnx``: the graph as Python code (docs/format.md section
7) or as an ONNX model (docs/export.md)."""
from __future__ import annotations

import sys
from pathlib import Path

from core.cli.common import UsageError
from core.errors import NeuroCanvasError
from core.files import atomic_write
from core.validate import load_valid


def cmd_export(args) -> int:
    if args.to == "onnx":
        return _onnx(args)
    if args.node and args.to != "pytorch":
        raise UsageError("--node: only --to pytorch and --to onnx choose the model's outputs")
    from core.export import export_graph  # the exporters load only for this command

    a = load_valid(args.graph)
    base = Path(args.graph).resolve().parent
    if args.to == "pytorch":
        # relative paths stay relative, to the written file; printed code gets absolute ones
        out_dir = Path(args.output).resolve().parent if args.output else None
        text = export_graph(a.graph, args.to, weights_path=args.weights, base_dir=base,
                            out_dir=out_dir, outputs=args.node or None)
    else:
        weights = str(Path(args.weights).resolve()) if args.weights else None
        text = export_graph(a.graph, args.to, weights_path=weights, base_dir=base)
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        atomic_write(args.output, text.encode("utf-8"))
    except OSError as e:
        raise NeuroCanvasError(f"cannot write: {e.strerror}", file=args.output) from None
    print(f"wrote {args.output}: {args.to} code for graph '{a.graph.name}'")
    return 0


def _onnx(args) -> int:
    from core.export.onnx import export_onnx, require_onnx

    if not args.output:
        raise UsageError("--to onnx needs -o M.onnx (an ONNX model is not printed)")
    require_onnx()  # before reading anything: the one line says what to install
    a = load_valid(args.graph)
    done = export_onnx(a.graph, args.output, args.weights,
                       base_dir=Path(args.graph).resolve().parent, outputs=args.node or None)
    print(f"wrote {args.output}: ONNX model of graph '{a.graph.name}', inputs "
          f"{', '.join(done.inputs)}; outputs {', '.join(done.outputs)}; batch axis dynamic")
    return 0


def add_parser(sub) -> None:
    ex = sub.add_parser("export", help="write the graph as Python code (a PyTorch script or "
                        "a script using the NeuroCanvas API) or as an ONNX model")
    ex.add_argument("graph", metavar="GRAPH")
    ex.add_argument("--to", required=True, choices=("pytorch", "python", "onnx"))
    ex.add_argument("-o", "--output", metavar="OUT", help="write here (else print the code; "
                    "required for onnx)")
    ex.add_argument("--weights", metavar="W.npz", help="weights the exported script starts "
                    "from, or the ONNX model holds")
    ex.add_argument("--node", action="append", metavar="ID", default=[],
                    help="an output of the model (repeatable; pytorch and onnx; default: "
                    "what the losses read)")
    ex.set_defaults(func=cmd_export)
