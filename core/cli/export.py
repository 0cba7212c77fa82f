"""``export GRAPH --to pytorch|python``: the graph as Python code (docs/format.md section 7)."""
from __future__ import annotations

import sys
from pathlib import Path

from core.errors import NeuroCanvasError
from core.files import atomic_write
from core.validate import load_valid


def cmd_export(args) -> int:
    from core.export import export_graph  # the exporters load only for this command

    a = load_valid(args.graph)
    weights = str(Path(args.weights).resolve()) if args.weights else None
    text = export_graph(a.graph, args.to, weights_path=weights,
                        base_dir=Path(args.graph).resolve().parent)
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        atomic_write(args.output, text.encode("utf-8"))
    except OSError as e:
        raise NeuroCanvasError(f"cannot write: {e.strerror}", file=args.output) from None
    print(f"wrote {args.output}: {args.to} code for graph '{a.graph.name}'")
    return 0


def add_parser(sub) -> None:
    ex = sub.add_parser("export", help="write the graph as Python code: a PyTorch script or "
                        "a script using the NeuroCanvas API")
    ex.add_argument("graph", metavar="GRAPH")
    ex.add_argument("--to", required=True, choices=("pytorch", "python"))
    ex.add_argument("-o", "--output", metavar="OUT.py", help="write here (else print it)")
    ex.add_argument("--weights", metavar="W.npz", help="weights the exported script starts "
                    "from")
    ex.set_defaults(func=cmd_export)
