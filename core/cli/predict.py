"""``predict GRAPH``: a graph's output in evaluation mode, on input arrays from a file."""
from __future__ import annotations

import io

import numpy as np

from core import memory
from core.cli.common import UsageError, graph_seed
from core.errors import DataError, NeuroCanvasError
from core.files import atomic_write
from core.network import Network, default_output
from core.npz import read_npz, read_npz_headers
from core.validate import load_valid
from core.weights import load_weights, network_shapes


def cmd_predict(args) -> int:
    a = load_valid(args.graph)
    node = args.node or default_output(a)
    if node not in a.graph.nodes:
        raise UsageError(f"--node '{node}': no such node in {args.graph}")
    if a.layers[node].is_loss:
        raise UsageError(f"--node '{node}' is a loss; pick the node whose output you want")
    # refused before the network (its parameters) is built; Network.predict runs batches
    # of PREDICT_BATCH samples
    memory.check_budget(memory.estimate(a, memory.PREDICT_BATCH, training=False),
                        args.max_memory)
    net = Network(a, outputs=[node], with_losses=False, seed=graph_seed(a))
    net.load_state_dict(load_weights(args.weights, network_shapes(net)), file=args.weights)
    needed = {s.feed: s.node_id for s in net.plan.steps if s.feed is not None}
    # the lengths of variable-length sequences are read as their Input's data
    needed.update({f: nid for f, (nid, _t) in net.plan.length_fields.items()})
    # the arrays' headers are checked (size cap) before any is read, and only those needed
    names = read_npz_headers(args.input, DataError, "a NumPy .npz file")
    for fld, nid in needed.items():
        kind = a.graph.nodes[nid].type
        if fld not in names:
            raise DataError(f"no array '{fld}' for {kind} node '{nid}' (the file has: "
                            f"{', '.join(sorted(names)) or 'nothing'})", file=args.input)
    data = read_npz(args.input, DataError, "a NumPy .npz file", keys=list(needed))
    for fld, nid in needed.items():
        kind = a.graph.nodes[nid].type
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


def add_parser(sub) -> None:
    pr = sub.add_parser("predict", help="run a graph in evaluation mode on input arrays")
    pr.add_argument("graph", metavar="GRAPH")
    pr.add_argument("--weights", required=True, metavar="W.npz")
    pr.add_argument("--input", required=True, metavar="X.npz",
                    help="one array per Input field, first axis = samples")
    pr.add_argument("--node", metavar="ID", help="node whose output to write (default: the "
                    "node feeding the first loss's pred)")
    pr.add_argument("--output", metavar="Y.npy", help="write the output here (else print it)")
    memory.add_max_memory_option(pr)
    pr.set_defaults(func=cmd_predict)
