"""Export a graph as a script that rebuilds it with the NeuroCanvas ``core`` API and trains
it (docs/format.md section 7, ``--to python``). ``--dump-graph FILE`` writes the graph it built,
which equals the original apart from ``pos`` (layout only, so left out of the script)."""
from __future__ import annotations

from core.export.source import INDENT, LINE, docstring, literal, quoted, wrapped_literal
from core.graph import Graph

MAIN = '''\
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the graph with the NeuroCanvas core "
                                     "API and train it with its training settings.")
    parser.add_argument("--dump-graph", metavar="G.json",
                        help="write the graph this script builds, then exit")
    parser.add_argument("--epochs", type=int, help="train for this many epochs")
    parser.add_argument("--steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--save-weights", metavar="W.npz", help="write the trained weights here")
    args = parser.parse_args(argv)
    graph = build_graph()
    if args.dump_graph:
        save_graph(graph, args.dump_graph)
        return 0
    analysis = analyze(graph)
    analysis.raise_if_invalid()
    config = parse_training(graph.training, epochs=args.epochs, steps=args.steps)

    def report(event) -> None:
        if isinstance(event, EpochEvent):
            print(json.dumps(event.to_json()), flush=True)

    trainer = Trainer(analysis, config, base_dir=DATA_DIR, INIT on_event=report,
                      queue_events=False)
    done = trainer.run()
    if args.save_weights:
        save_weights(args.save_weights, trainer.net.state_dict())
    if done.error is not None:
        raise done.error
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def python_script(graph: Graph, weights_path: str | None, data_dir: str | None) -> str:
    name = quoted(graph.name)
    doc = [f"The NeuroCanvas graph {name}, rebuilt with the NeuroCanvas core API and trained.",
           "",
           "    python THIS_FILE.py [--epochs N] [--steps N] [--save-weights W.npz]",
           "    python THIS_FILE.py --dump-graph G.json    (writes the graph it builds)",
           "",
           "It needs NeuroCanvas: run it in the NeuroCanvas folder, or where NeuroCanvas is "
           "installed."]
    lines = docstring(doc, "") + [""]
    imports = ["import argparse", "import json", "import sys"]
    if data_dir is None:
        imports.append("from pathlib import Path")
    imports += ["", "from core.fileformat import save_graph",
                "from core.graph import Edge, Graph, Node" if any(e.extra for e in graph.edges)
                else "from core.graph import Graph, Node",
                "from core.training import EpochEvent, Trainer, parse_training",
                "from core.validate import analyze"]
    imports.append("from core.weights import load_weights, save_weights" if weights_path
                   else "from core.weights import save_weights")
    lines += imports + [""]
    lines.append("# the folder a relative dataset path starts from")
    if data_dir is None:
        lines.append("DATA_DIR = Path(__file__).resolve().parent")
    else:
        lines += wrapped_literal(data_dir, "", "DATA_DIR = ")
    if weights_path:
        lines.append("# the weights training starts from")
        lines += wrapped_literal(weights_path, "", "WEIGHTS_FILE = ")
    lines += ["", ""] + _build_lines(graph) + ["", ""]
    init = "init_weights=load_weights(WEIGHTS_FILE),\n                      " \
        if weights_path else ""
    main = MAIN.replace("INIT ", init)
    return "\n".join(lines) + "\n" + main


def _build_lines(graph: Graph) -> list[str]:
    ind = INDENT
    lines = ["def build_graph() -> Graph:",
             *docstring([f"The graph {quoted(graph.name)}, node by node and edge by edge."],
                        ind)]
    lines += wrapped_literal(graph.name, ind, "graph = Graph(", ")")
    for node in graph.nodes.values():
        args = f"Node({literal(node.id)}, {literal(node.type)}, "
        lines += _call_lines(args, [node.params] + ([node.extra] if node.extra else []),
                             ["", "extra="][:1 + bool(node.extra)], ind, "graph.add_node(",
                             "))")
    for e in graph.edges:
        if e.extra:
            head = (f"Edge({literal(e.src)}, {literal(e.dst)}, {literal(e.src_port)}, "
                    f"{literal(e.dst_port)}, {e.delay}, ")
            lines += _call_lines(head, [e.extra], [""], ind, "graph.add_edge(", "))")
            continue
        args = [literal(e.src), literal(e.dst)]
        if e.src_port is not None:
            args.append(f"src_port={literal(e.src_port)}")
        if e.dst_port is not None:
            args.append(f"dst_port={literal(e.dst_port)}")
        if e.delay:
            args.append(f"delay={e.delay}")
        lines += _wrap_simple(f"{ind}graph.connect(", args, ")")
    if graph.training:
        lines += wrapped_literal(graph.training, ind, "graph.set_training(", ")")
    if graph.extra:
        lines += wrapped_literal(graph.extra, ind, "graph.extra.update(", ")")
    return lines + [f"{ind}return graph"]


def _call_lines(head: str, values: list, keywords: list[str], indent: str, opening: str,
                closing: str) -> list[str]:
    """``opening + head + values (as keyword arguments where named) + closing`` on one line,
    or one literal per line when that is too long."""
    parts = [f"{kw}{literal(v)}" for kw, v in zip(keywords, values, strict=True)]
    one = indent + opening + head + ", ".join(parts) + closing
    if len(one) <= LINE:
        return [one]
    lines = [indent + opening + head.rstrip()]
    for kw, v in zip(keywords, values, strict=True):
        lines += wrapped_literal(v, indent + INDENT, kw, ",")
    return lines + [indent + closing]


def _wrap_simple(head: str, args: list[str], tail: str) -> list[str]:
    one = head + ", ".join(args) + tail
    if len(one) <= LINE:
        return [one]
    indent = head[:len(head) - len(head.lstrip())]
    return [head] + [f"{indent}{INDENT}{a}," for a in args] + [indent + tail]
