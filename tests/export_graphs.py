"""Graphs that together use every node type of docs/format.md section 3, for the export tests, and
the tools to export one, import it and feed both sides the same data."""
from __future__ import annotations

import contextlib
import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np

from core.export import export_graph
from core.graph import Graph
from tests.graphs import build, edge, graph_dict, node

ROOT = Path(__file__).resolve().parent.parent
T = 5
_count = itertools.count()


def training(**extra) -> dict:
    """Training settings naming an npz dataset (the file need not exist to export)."""
    return {"dataset": {"source": "npz", "path": "data.npz"}, "batch_size": 8, "epochs": 1,
            "optimizer": {"type": "sgd", "lr": 0.1}, **extra}


def dense_activations() -> Graph:
    nodes = [node("x", "Input", shape=[6]), node("d1", "Dense", units=8),
             node("lrelu", "LeakyReLU", negative_slope=0.2), node("d2", "Dense", units=8),
             node("elu", "ELU", alpha=0.7), node("bn", "BatchNorm", momentum=0.2, eps=1e-3),
             node("drop", "Dropout", rate=0.3), node("d3", "Dense", units=8),
             node("sig", "Sigmoid"), node("d4", "Dense", units=5, bias=False),
             node("tanh", "Tanh"), node("ident", "Identity"), node("sm", "Softmax"),
             node("y", "Target", shape=[5], dtype="float32"), node("loss", "MSELoss")]
    chain = ["x", "d1", "lrelu", "d2", "elu", "bn", "drop", "d3", "sig", "d4", "tanh",
             "ident", "sm"]
    edges = [edge(a, b) for a, b in itertools.pairwise(chain)]
    edges += [edge("sm", "loss:pred"), edge("y", "loss:target")]
    return build(graph_dict(nodes, edges, name="dense-activations", training=training()))


def convolutions() -> Graph:
    nodes = [node("x", "Input", shape=[2, 9, 9]),
             node("conv1", "Conv2D", filters=4, kernel_size=2, padding="same"),
             node("relu", "ReLU"), node("bn2", "BatchNorm"),
             node("mp", "MaxPool2D", pool_size=3, stride=2, padding=1),
             node("conv2", "Conv2D", filters=3, kernel_size=[2, 3], stride=[1, 2], padding=1,
                  bias=False),
             node("ap", "AvgPool2D", pool_size=2, padding=1), node("flat", "Flatten"),
             node("fc", "Dense", units=3), node("gap", "GlobalAvgPool2D"),
             node("cat", "Concat", inputs=2), node("y", "Target", shape=[]),
             node("loss", "CrossEntropyLoss")]
    edges = [edge("x", "conv1"), edge("conv1", "relu"), edge("relu", "bn2"), edge("bn2", "mp"),
             edge("mp", "conv2"), edge("conv2", "ap"), edge("ap", "flat"), edge("flat", "fc"),
             edge("conv2", "gap"), edge("fc", "cat:in0"), edge("gap", "cat:in1"),
             edge("cat", "loss:pred"), edge("y", "loss:target")]
    return build(graph_dict(nodes, edges, name="convolutions",
                            training=training(optimizer={"type": "adam", "lr": 0.01})))


def siamese_merges() -> Graph:
    """Shared encoders, Add/Multiply/Concat/Reshape, a triplet loss and soft-label CE."""
    nodes = [node("a", "Input", shape=[4], field="a"), node("p", "Input", shape=[4], field="p"),
             node("n", "Input", shape=[4], field="n"), node("enc_a", "Dense", units=6),
             node("enc_p", "Dense", units=6, shared_with="enc_a"),
             node("enc_n", "Dense", units=6, shared_with="enc_p"),
             node("triplet", "TripletLoss", margin=0.5),
             node("sum", "Add", inputs=3), node("prod", "Multiply"),
             node("shape", "Reshape", shape=[2, -1]), node("cat", "Concat", axis=0),
             node("flat", "Flatten"), node("head", "Dense", units=3),
             node("probs", "Target", shape=[3], dtype="float32", field="probs"),
             node("ce", "CrossEntropyLoss")]
    edges = [edge("a", "enc_a"), edge("p", "enc_p"), edge("n", "enc_n"),
             edge("enc_a", "triplet:anchor"), edge("enc_p", "triplet:positive"),
             edge("enc_n", "triplet:negative"), edge("enc_a", "sum:in0"),
             edge("enc_p", "sum:in1"), edge("enc_n", "sum:in2"), edge("sum", "prod:in0"),
             edge("enc_a", "prod:in1"), edge("prod", "shape"), edge("shape", "cat:in0"),
             edge("shape", "cat:in1"), edge("cat", "flat"), edge("flat", "head"),
             edge("head", "ce:pred"), edge("probs", "ce:target")]
    return build(graph_dict(nodes, edges, name="siamese",
                            training=training(optimizer={"type": "rmsprop", "lr": 0.01})))


def triplet_only() -> Graph:
    """A loss with no Target at all: forward asks for it with a flag."""
    nodes = [node("a", "Input", shape=[4], field="a"), node("p", "Input", shape=[4], field="p"),
             node("n", "Input", shape=[4], field="n"), node("enc_a", "Dense", units=3),
             node("enc_p", "Dense", units=3, shared_with="enc_a"),
             node("enc_n", "Dense", units=3, shared_with="enc_a"),
             node("triplet", "TripletLoss")]
    edges = [edge("a", "enc_a"), edge("p", "enc_p"), edge("n", "enc_n"),
             edge("enc_a", "triplet:anchor"), edge("enc_p", "triplet:positive"),
             edge("enc_n", "triplet:negative")]
    return build(graph_dict(nodes, edges, name="triplet", training=training()))


def sequence_layers() -> Graph:
    """Embedding, LSTM, GRU, RNN (relu), multi-class and binary hinge, BCE, CE over [T, C]."""
    nodes = [node("tokens", "Input", shape=[T], dtype="int64", field="tokens"),
             node("emb", "Embedding", num_embeddings=10, dim=4),
             node("lstm", "LSTM", units=6), node("h1", "Dense", units=3),
             node("label", "Target", shape=[], field="label"), node("hinge", "HingeLoss"),
             node("gru", "GRU", units=5, return_sequences=True),
             node("rnn", "RNN", units=4, activation="relu"), node("b", "Dense", units=1),
             node("flag", "Target", shape=[1], dtype="float32", field="flag"),
             node("bce", "BinaryCrossEntropyLoss"), node("b2", "Dense", units=1),
             node("sign", "Target", shape=[], dtype="float32", field="sign"),
             node("hinge2", "HingeLoss", margin=0.5), node("per_step", "Dense", units=3),
             node("steps", "Target", shape=[T], field="steps"),
             node("ce", "CrossEntropyLoss")]
    edges = [edge("tokens", "emb"), edge("emb", "lstm"), edge("lstm", "h1"),
             edge("h1", "hinge:pred"), edge("label", "hinge:target"), edge("emb", "gru"),
             edge("gru", "rnn"), edge("rnn", "b"), edge("b", "bce:pred"),
             edge("flag", "bce:target"), edge("rnn", "b2"), edge("b2", "hinge2:pred"),
             edge("sign", "hinge2:target"), edge("gru", "per_step"),
             edge("per_step", "ce:pred"), edge("steps", "ce:target")]
    return build(graph_dict(nodes, edges, name="sequences",
                            training=training(optimizer={"type": "adam", "lr": 0.01})))


def elman(mode: str = "last", delay: int = 1) -> Graph:
    """A drawn recurrent cycle: x -> wx -> add -> h (Tanh), h fed back through wh."""
    nodes = [node("x", "Input", shape=[T, 3], sequence=True),
             node("wx", "Dense", units=4), node("wh", "Dense", units=4, bias=False),
             node("add", "Add"), node("h", "Tanh"), node("tc", "TimeCollect", mode=mode),
             node("flat", "Flatten"), node("out", "Dense", units=2),
             node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")]
    edges = [edge("x", "wx"), edge("h", "wh", delay=delay), edge("wx", "add:in0"),
             edge("wh", "add:in1"), edge("add", "h"), edge("h", "tc"), edge("tc", "flat"),
             edge("flat", "out"), edge("out", "loss:pred"), edge("y", "loss:target")]
    return build(graph_dict(nodes, edges, name=f"elman-{mode}-{delay}", training=training()))


def loss_in_region() -> Graph:
    """A per-step loss inside the recurrent region (averaged over the steps), and a region
    node as the output."""
    nodes = [node("x", "Input", shape=[T, 1], sequence=True), node("w", "Dense", units=1),
             node("z", "Target", shape=[1], dtype="float32"), node("loss", "MSELoss"),
             node("wh", "Dense", units=1, bias=False), node("add", "Add")]
    edges = [edge("x", "w"), edge("w", "add:in0"), edge("add", "wh", delay=1),
             edge("wh", "add:in1"), edge("add", "loss:pred"), edge("z", "loss:target")]
    return build(graph_dict(nodes, edges, name="region-loss", training=training()))


GRAPHS = {"dense_activations": dense_activations, "convolutions": convolutions,
          "siamese_merges": siamese_merges, "triplet_only": triplet_only,
          "sequence_layers": sequence_layers, "elman_last": elman,
          "elman_all_delay2": lambda: elman("all", 2), "elman_mean": lambda: elman("mean"),
          "loss_in_region": loss_in_region}


def batch_for(graph_analysis, n: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Random data for every Input and Target field of an analysed graph (float64 for
    floating fields, int64 class indices in range for integer ones)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    a = graph_analysis
    for nid, layer in a.layers.items():
        if layer.type_name not in ("Input", "Target"):
            continue
        p = layer.params
        shape = (n, *p["shape"])
        if p["dtype"] in ("int64", "int32"):
            high = _classes(a, nid)
            out[p["field"]] = rng.integers(0, high, size=shape)
        elif nid == "sign":
            out[p["field"]] = rng.choice([-1.0, 1.0], size=shape)
        elif nid == "flag":
            out[p["field"]] = rng.integers(0, 2, size=shape).astype(np.float64)
        else:
            out[p["field"]] = rng.standard_normal(shape)
        if p.get("lengths"):  # a variable-length sequence: 1..T valid steps a sample
            out[p["lengths"]] = rng.integers(1, p["shape"][0] + 1, size=n)
    return out


def _classes(a, nid: str) -> int:
    """How many classes (or embedding rows) the consumer of an integer field allows."""
    for e in a.graph.out_edges(nid):
        layer = a.layers[e.dst]
        if layer.type_name == "Embedding":
            return layer.params["num_embeddings"]
        pred = a.inputs[e.dst].get("pred")
        if pred is not None:
            return a.shapes[pred.src][-1]
    return 2


@contextlib.contextmanager
def float64_default(torch):
    """Torch tensors made without a dtype (the zeros before a recurrent loop) in float64,
    within the block."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def export_module(graph: Graph, tmp_path: Path, to: str = "pytorch", **kw):
    """Export ``graph``, write it under ``tmp_path`` and import it; (module, path)."""
    source = export_graph(graph, to, **kw)
    name = f"exported_{next(_count)}"
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def exported_output(graph: Graph, weights: Path, batch: dict[str, np.ndarray],
                    tmp_path: Path) -> np.ndarray:
    """The exported ``Model``'s output in evaluation mode, with the weights file ``weights``
    loaded through the exported ``load_weights``, on the Input fields of ``batch``."""
    from core.export.pytorch import ModelWriter
    from core.validate import analyze
    from tests.torch_ref import need_torch

    torch = need_torch()
    module, _ = export_module(graph, tmp_path)
    model = module.Model()
    module.load_weights(model, weights)
    model.eval()
    args = [torch.from_numpy(_as_input(batch[f.name]))
            for f in ModelWriter(analyze(graph)).inputs]  # in the order forward takes them
    with torch.no_grad():
        out = model(*args)
    # several outputs: the first is the default one (the node feeding the first loss's pred)
    return (out[0] if isinstance(out, tuple) else out).numpy()


def predict_both(graph: Graph, tmp_path: Path, batch: dict[str, np.ndarray],
                 state: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ours, theirs): the default output in evaluation mode from the same weights file,
    float32: ``state`` (default: a fresh network's, seed 3), written as training writes it."""
    from core.network import Network, default_output
    from core.validate import analyze
    from core.weights import load_weights, save_weights

    a = analyze(graph)
    out = default_output(a)
    weights = tmp_path / "w.npz"
    save_weights(weights, Network(a, seed=3).state_dict() if state is None else state)
    net = Network(a, outputs=[out], with_losses=False)  # as main.py predict does
    net.load_state_dict(load_weights(weights))
    return net.predict(batch, out), exported_output(graph, weights, batch, tmp_path)


def _as_input(v: np.ndarray) -> np.ndarray:
    return v if v.dtype.kind in "iu" else v.astype(np.float32)


def ruff(*paths: Path) -> subprocess.CompletedProcess:
    """``ruff check`` with the project's settings on files anywhere."""
    exe = Path(sys.executable).parent / "ruff"
    return subprocess.run([str(exe), "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), *map(str, paths)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
