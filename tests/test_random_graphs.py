"""What passes validation trains and exports: random valid graphs, drawn from the catalogue
(feedforward chains with branches and merges, convolutions, built-in recurrent layers and
drawn cycles), each validate, train one step to a finite loss, and export to PyTorch code
that computes the same outputs from the same weights."""
from __future__ import annotations

import numpy as np
import pytest

from core.network import Network
from core.optim import make_optimizer
from core.training import parse_training, training_step
from core.validate import analyze
from tests import export_graphs as eg
from tests.graphs import build, edge, graph_dict, node

SEEDS = range(48)
ACTIVATIONS = [("ReLU", {}), ("Tanh", {}), ("Sigmoid", {}), ("LeakyReLU", {"negative_slope": 0.1}),
               ("ELU", {"alpha": 0.5}), ("Identity", {})]


class Drawer:
    """Builds one random graph: nodes and edges, each node tracking its output shape."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[dict] = []
        self.edges: list[dict] = []

    def add(self, kind: str, src: str | None, port: str = "", **params) -> str:
        nid = f"{kind.lower()}{len(self.nodes)}"
        self.nodes.append(node(nid, kind, **params))
        if src is not None:
            self.edges.append(edge(src, f"{nid}:{port}" if port else nid))
        return nid

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def vector_block(self, src: str, width: int) -> tuple[str, int]:
        """A few random layers on a vector of ``width`` features."""
        for _ in range(int(self.rng.integers(1, 4))):
            choice = self.pick(["dense", "act", "dropout", "batchnorm", "branch"])
            if choice == "dense":
                width = int(self.rng.integers(2, 9))
                src = self.add("Dense", src, units=width, bias=bool(self.rng.integers(2)))
            elif choice == "act":
                kind, params = self.pick(ACTIVATIONS)
                src = self.add(kind, src, **params)
            elif choice == "dropout":
                src = self.add("Dropout", src, rate=0.3)
            elif choice == "batchnorm":
                src = self.add("BatchNorm", src)
            else:  # two Dense branches, merged
                merge = self.pick(["Add", "Multiply", "Concat"])
                w = int(self.rng.integers(2, 7))
                a = self.add("Dense", src, units=w)
                b = self.add("Dense", src, units=w)
                m = self.add(merge, a, "in0")
                self.edges.append(edge(b, f"{m}:in1"))
                src, width = m, (2 * w if merge == "Concat" else w)
        return src, width

    def image_block(self, src: str, c: int, hw: int) -> tuple[str, int]:
        """Convolutions and pooling on [c, hw, hw], then Flatten or global pooling."""
        for _ in range(int(self.rng.integers(1, 3))):
            c = int(self.rng.integers(2, 5))
            src = self.add("Conv2D", src, filters=c, kernel_size=int(self.rng.integers(1, 4)),
                           padding="same")
            src = self.add("ReLU", src)
            if hw >= 4 and self.rng.integers(2):
                src = self.add(self.pick(["MaxPool2D", "AvgPool2D"]), src, pool_size=2)
                hw //= 2
        if self.rng.integers(2):
            return self.add("GlobalAvgPool2D", src), c
        return self.add("Flatten", src), c * hw * hw

    def recurrent_block(self, src: str, features: int) -> tuple[str, int]:
        """One or two built-in recurrent layers on a [T, features] sequence."""
        kind = self.pick(["RNN", "LSTM", "GRU"])
        h = int(self.rng.integers(2, 7))
        if self.rng.integers(2):
            src = self.add(kind, src, units=h, return_sequences=True)
            kind = self.pick(["RNN", "LSTM", "GRU"])
        return self.add(kind, src, units=h), h

    def drawn_cycle(self, src: str, features: int) -> tuple[str, int]:
        """An Elman cell drawn with a delay edge, closed by a TimeCollect."""
        h = int(self.rng.integers(2, 7))
        wx = self.add("Dense", src, units=h)
        wh = self.add("Dense", None, units=h)
        add = self.add("Add", wx, "in0")
        self.edges.append(edge(wh, f"{add}:in1"))
        act = self.add(self.pick(["Tanh", "Sigmoid"]), add)
        self.edges.append(edge(act, wh, delay=1))
        return self.add("TimeCollect", act, mode=self.pick(["last", "mean"])), h

    def head(self, src: str, width: int) -> None:
        classes = int(self.rng.integers(2, 5))
        out = self.add("Dense", src, units=classes)
        if self.rng.integers(2):
            y = self.add("Target", None, shape=[], dtype="int64")
            loss = self.add("CrossEntropyLoss", out, "pred")
        else:
            y = self.add("Target", None, shape=[classes], dtype="float32")
            loss = self.add("MSELoss", out, "pred")
        self.edges.append(edge(y, f"{loss}:target"))


def random_graph(seed: int):
    d = Drawer(seed)
    kind = ["vector", "image", "recurrent", "cycle"][seed % 4]
    if kind == "vector":
        f = int(d.rng.integers(2, 7))
        src, width = d.vector_block(d.add("Input", None, shape=[f]), f)
    elif kind == "image":
        src, width = d.image_block(d.add("Input", None, shape=[1, 6, 6]), 1, 6)
        src, width = d.vector_block(src, width)
    elif kind == "recurrent":
        src, width = d.recurrent_block(d.add("Input", None, shape=[eg.T, 3]), 3)
        src, width = d.vector_block(src, width)
    else:
        src, width = d.drawn_cycle(d.add("Input", None, shape=[eg.T, 3], sequence=True), 3)
    d.head(src, width)
    return build(graph_dict(d.nodes, d.edges, name=f"random-{seed}",
                            training=eg.training(batch_size=6)))


@pytest.mark.parametrize("seed", SEEDS)
def test_a_random_valid_graph_trains_and_exports_to_code_that_agrees(seed, tmp_path):
    graph = random_graph(seed)
    a = analyze(graph)
    assert a.ok, [str(p) for p in a.problems]
    batch = eg.batch_for(a, n=6, seed=seed)

    net = Network(a, seed=seed)  # one training step, as training runs it
    cfg = parse_training(graph.training)
    opt = make_optimizer(cfg.optimizer, list(net.params.items()))
    loss, _, global_norm, _ = training_step(net, opt, batch, cfg)
    assert np.isfinite(loss) and np.isfinite(global_norm)

    ours, theirs = eg.predict_both(graph, tmp_path, batch, net.state_dict())
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
