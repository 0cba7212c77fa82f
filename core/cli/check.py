"""``check GRAPH``: validate a graph (its data nodes against its dataset too); print each
node's output shape and parameter count."""
from __future__ import annotations

import sys
from pathlib import Path

from core import memory
from core.errors import InvalidGraphError
from core.fileformat import load_graph
from core.layers.base import fmt_shape
from core.validate import analyze_with_dataset


def cmd_check(args) -> int:
    graph = load_graph(args.graph)
    # the data nodes are checked against the graph's dataset when it can be read (as training
    # will check them); one that cannot be read is train's to report, unless a shape needs it
    a = analyze_with_dataset(graph, Path(args.graph).resolve().parent)
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
    if a.ok:
        _memory_line(a, args, Path(args.graph).resolve().parent, out)
    if a.problems:
        out.write(f"{len(a.problems)} problem{'s' if len(a.problems) > 1 else ''}:\n")
        for p in a.problems:
            out.write(f"  {type(p).__name__}: {p}\n")
        raise InvalidGraphError(a.problems, file=args.graph)
    out.write("OK\n")
    return 0


def _memory_line(a, args, base_dir: Path, out) -> None:
    """One line with the memory a training step is estimated to take, and a warning line
    when that is above the budget (docs/format.md section 6); the exit status is unchanged."""
    training = a.graph.training if isinstance(a.graph.training, dict) else {}
    batch = training.get("batch_size", 32)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        batch = 32  # a bad setting is train's to report
    est = memory.estimate(a, batch, training.get("optimizer"),
                          memory.dataset_samples(training.get("dataset"), base_dir))
    limit = memory.budget(args.max_memory)
    out.write(f"memory: {est.describe()} (budget {memory.fmt_bytes(limit)})\n")
    err = memory.over_budget(est, limit)
    if err is not None:
        out.write(f"warning: {err}\n")


def add_parser(sub) -> None:
    c = sub.add_parser("check", help="validate a graph; print each node's output shape and "
                       "parameter count")
    c.add_argument("graph", metavar="GRAPH")
    memory.add_max_memory_option(c)
    c.set_defaults(func=cmd_check)
