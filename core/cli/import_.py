"""``import MODULE.py:CLASS --input-shape SHAPE ... -o GRAPH.ncg.json``: a PyTorch module as
a graph (docs/import.md). Loading MODULE.py runs its code."""
from __future__ import annotations

import json
from pathlib import Path

from core.cli.common import UsageError
from core.errors import NeuroCanvasError


def cmd_import(args) -> int:
    from core.fileformat import save_graph
    from core.importer import import_torch, parse_shape
    from core.weights import save_weights

    if not args.output.endswith(".json"):
        raise UsageError(f"-o {args.output}: a graph file ends in .ncg.json")
    for path in [args.output] + ([args.save_weights] if args.save_weights else []):
        if not Path(path).resolve().parent.is_dir():
            raise NeuroCanvasError("cannot write: no such folder", file=path)
    ctor = None
    if args.args is not None:
        try:
            ctor = json.loads(args.args)
        except json.JSONDecodeError as e:
            raise UsageError(f"--args is not JSON: {e.msg} (column {e.colno})") from None
    shapes = [parse_shape(s) for s in args.input_shape]
    result = import_torch(args.module, input_shapes=shapes, input_dtypes=args.input_dtype,
                          args=ctor, weights=args.weights)
    if result.max_difference > 1e-3:  # a mapping of ours that is wrong: nothing is written
        raise NeuroCanvasError(f"the imported graph computes something else than the module "
                               f"(relative difference {result.max_difference:.3g}); please "
                               "report it", file=args.module)
    try:
        save_graph(result.graph, args.output)
        if args.save_weights:
            save_weights(args.save_weights, result.weights)
    except OSError as e:
        raise NeuroCanvasError(f"cannot write: {e.strerror}", file=e.filename) from None
    g = result.graph
    kinds = "weights from " + (f"{args.weights} ({result.loaded})" if args.weights
                               else "the module as built")
    print(f"wrote {args.output}: {len(g.nodes)} nodes, {len(g.edges)} edges "
          f"(outputs: {', '.join(result.outputs)})")
    if args.save_weights:
        print(f"wrote {args.save_weights}: {len(result.weights)} arrays, {kinds}")
    print(f"checked: on random inputs the graph's outputs equal the module's within "
          f"{result.max_difference:.2g} (relative)")
    for note in result.notes:
        print(f"note: {note}")
    print("the graph has no loss (a PyTorch module has none): add a Target and a loss "
          "before training")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="import a PyTorch module (traced with torch.fx) as a "
                       "graph; runs the module's file")
    p.add_argument("module", metavar="MODULE.py:CLASS", help="the file and the nn.Module "
                   "class in it (loading the file runs its code)")
    p.add_argument("--input-shape", action="append", required=True, metavar="SHAPE",
                   help="per-sample shape of one input of forward, e.g. 1,28,28 (repeat "
                   "for each input, in order)")
    p.add_argument("--input-dtype", action="append", metavar="DTYPE",
                   choices=("float32", "float64", "int64", "int32"),
                   help="dtype of the inputs (one for all, or one per --input-shape); int64 "
                   "for indices fed to an Embedding (default float32)")
    p.add_argument("--args", metavar="JSON", help="the class's constructor arguments: a "
                   "JSON list (positional) or object (keywords)")
    p.add_argument("--weights", metavar="STATE.pt", help="a state_dict to load first "
                   "(torch.load with weights_only=True)")
    p.add_argument("-o", "--output", required=True, metavar="GRAPH.ncg.json")
    p.add_argument("--save-weights", metavar="W.npz", help="write the module's weights as a "
                   "NeuroCanvas weights file")
    p.set_defaults(func=cmd_import)
