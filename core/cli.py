"""The command line (SPEC section 6). User errors print one line on stderr and exit 2."""
from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path

import numpy as np

from core.errors import DataError, InvalidGraphError, NeuroCanvasError
from core.fileformat import atomic_write, load_graph
from core.layers.base import fmt_shape
from core.npz import read_npz
from core.validate import Analysis, analyze

PROG = "neurocanvas"


class UsageError(NeuroCanvasError):
    """A bad command-line option."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


def one_line(message: str) -> str:
    """``message`` with control characters (a newline inside a node id or type read from a
    file) escaped, so an error stays the one line SPEC section 6 promises."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message)


def load_valid(path: str) -> Analysis:
    """Load and validate a graph file, raising on any problem (all listed on the error)."""
    a = analyze(load_graph(path))
    a.raise_if_invalid(file=path)
    return a


# ---- check ---------------------------------------------------------------------------------
def cmd_check(args) -> int:
    graph = load_graph(args.graph)
    a = analyze(graph)
    rows = [("node", "type", "output shape", "params")]
    total = 0
    for nid, node in graph.nodes.items():
        count = a.param_count(nid)
        total += count
        shared = a.shared_root.get(nid)
        shape = fmt_shape(a.shapes.get(nid)) if a.shapes.get(nid) is not None else "?"
        if nid in a.timed:
            shape += " per step"
        rows.append((nid, node.type, shape, f"shared with {shared}" if shared else f"{count:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = sys.stdout
    for i, r in enumerate(rows):
        cells = [c.ljust(w) if j < 3 else c.rjust(w)
                 for j, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.write("  ".join(cells).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    out.write(f"{len(graph.nodes)} nodes, {len(graph.edges)} edges, {total:,} parameters\n")
    if a.problems:
        out.write(f"{len(a.problems)} problem{'s' if len(a.problems) > 1 else ''}:\n")
        for p in a.problems:
            out.write(f"  {type(p).__name__}: {p}\n")
        raise InvalidGraphError(a.problems, file=args.graph)
    out.write("OK\n")
    return 0


# ---- predict -------------------------------------------------------------------------------
def cmd_predict(args) -> int:
    from core.network import Network, default_output
    from core.weights import load_weights

    a = load_valid(args.graph)
    node = args.node or default_output(a)
    if node not in a.graph.nodes:
        raise UsageError(f"--node '{node}': no such node in {args.graph}")
    if a.layers[node].is_loss:
        raise UsageError(f"--node '{node}' is a loss; pick the node whose output you want")
    net = Network(a, outputs=[node], with_losses=False, seed=_seed(a))
    net.load_state_dict(load_weights(args.weights), file=args.weights)
    data = read_npz(args.input, DataError, "a NumPy .npz file")
    needed = {s.feed: s.node_id for s in net.plan.steps if s.feed is not None}
    for fld, nid in needed.items():
        kind = a.graph.nodes[nid].type
        if fld not in data:
            raise DataError(f"no array '{fld}' for {kind} node '{nid}' (the file has: "
                            f"{', '.join(sorted(data)) or 'nothing'})", file=args.input)
        if data[fld].ndim == 0:
            raise DataError(f"array '{fld}' for {kind} node '{nid}' is a single value; "
                            "expected samples along a first axis", file=args.input)
    counts = {len(data[f]) for f in needed}
    if len(counts) > 1:
        raise DataError("arrays have different numbers of samples "
                        f"({', '.join(f'{f}: {len(data[f])}' for f in needed)})", file=args.input)
    try:
        y = net.predict({f: data[f] for f in needed}, node)
    except DataError as e:
        raise DataError(e.message, node=e.node, file=args.input) from None
    if args.output:
        buf = io.BytesIO()
        np.save(buf, y)
        try:
            atomic_write(args.output, buf.getvalue())
        except OSError as e:
            raise NeuroCanvasError(f"cannot write the output: {e.strerror}",
                                   file=args.output) from None
        print(f"wrote {args.output}: output of '{node}', shape {list(y.shape)}")
    else:
        with np.printoptions(precision=5, suppress=True, threshold=2000):
            print(y)
    return 0


# ---- export --------------------------------------------------------------------------------
def cmd_export(args) -> int:
    from core.export import export_graph

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


def _seed(a: Analysis) -> int:
    seed = a.graph.training.get("seed", 0)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


# ---- the parser ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="NeuroCanvas: draw, train and export neural networks. "
                "With no command (or just a GRAPH), opens the editor.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    c = sub.add_parser("check", help="validate a graph; print each node's output shape and "
                       "parameter count")
    c.add_argument("graph", metavar="GRAPH")
    c.set_defaults(func=cmd_check)
    pr = sub.add_parser("predict", help="run a graph in evaluation mode on input arrays")
    pr.add_argument("graph", metavar="GRAPH")
    pr.add_argument("--weights", required=True, metavar="W.npz")
    pr.add_argument("--input", required=True, metavar="X.npz",
                    help="one array per Input field, first axis = samples")
    pr.add_argument("--node", metavar="ID", help="node whose output to write (default: the "
                    "node feeding the first loss's pred)")
    pr.add_argument("--output", metavar="Y.npy", help="write the output here (else print it)")
    pr.set_defaults(func=cmd_predict)
    ex = sub.add_parser("export", help="write the graph as Python code: a PyTorch script or "
                        "a script using the NeuroCanvas API")
    ex.add_argument("graph", metavar="GRAPH")
    ex.add_argument("--to", required=True, choices=("pytorch", "python"))
    ex.add_argument("-o", "--output", metavar="OUT.py", help="write here (else print it)")
    ex.add_argument("--weights", metavar="W.npz", help="weights the exported script starts "
                    "from")
    ex.set_defaults(func=cmd_export)
    from benchmarks.suite import add_parser as add_bench
    from core.train_command import add_parser as add_train
    add_train(sub)
    add_bench(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"check", "predict", "train", "bench", "export"}
    if not argv or (argv[0] not in commands and not argv[0].startswith("-")):
        return open_editor(argv[0] if argv else None)
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "func", None):
            build_parser().print_help()
            return 2
        return args.func(args)
    except NeuroCanvasError as e:
        print(f"{PROG}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def open_editor(graph: str | None) -> int:
    if graph is not None and not Path(graph).exists():
        print(f"{PROG}: error: {graph}: no such file (and not a command: "
              "check, predict, train, bench)", file=sys.stderr)
        return 2
    try:
        import PySide6  # noqa: F401
    except ImportError:
        print(f"{PROG}: error: the editor needs PySide6, which is not installed; run "
              "'make run', or use the commands (see 'python main.py --help')",
              file=sys.stderr)
        return 2
    from gui.main_window import run_editor  # the commands above never load Qt
    return run_editor(graph)
