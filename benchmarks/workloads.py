"""Benchmark workloads: each is a graph (our side) and an identical PyTorch model.

Weights are copied from our network into the torch model, so both start from the same
parameters, train on the same batch with the same optimizer.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core import catalogue
from core.export import export_graph
from core.export.torch_layers import to_torch
from core.fileformat import graph_from_dict


@dataclass
class Workload:
    name: str
    description: str
    graph: dict  # a graph file as a dict (docs/format.md section 2)
    batch: int
    make_batch: Any  # (rng, batch) -> dict field -> array
    # (graph, our weights) -> the torch model; None: ``torch_model`` (the exported Model)
    torch_factory: Callable[[dict, dict[str, np.ndarray]], Any] | None = None
    quick: bool = True  # part of ``bench --quick``


def _edge(e: tuple) -> dict:
    """(src, dst) or (src, dst, delay) as a graph-file edge."""
    d = {"from": e[0], "to": e[1]}
    if len(e) > 2:
        d["delay"] = e[2]
    return d


def _graph(name: str, nodes: list[tuple[str, str, dict]], edges: list[tuple],
           optimizer: dict) -> dict:
    return {"format": "neurocanvas.graph", "version": 1, "name": name,
            "nodes": [{"id": i, "type": t, "params": p, "pos": [0, 0]} for i, t, p in nodes],
            "edges": [_edge(e) for e in edges],
            "training": {"dataset": {"source": "builtin", "name": "digits"},
                         "optimizer": optimizer, "seed": 0}}


def mlp(name: str, sizes: list[int], batch: int) -> Workload:
    nodes = [("x", "Input", {"shape": [sizes[0]]})]
    edges = []
    prev = "x"
    for i, units in enumerate(sizes[1:], 1):
        nodes.append((f"fc{i}", "Dense", {"units": units}))
        edges.append((prev, f"fc{i}"))
        prev = f"fc{i}"
        if i < len(sizes) - 1:
            nodes.append((f"relu{i}", "ReLU", {}))
            edges.append((prev, f"relu{i}"))
            prev = f"relu{i}"
    nodes += [("y", "Target", {"shape": [], "dtype": "int64"}), ("loss", "CrossEntropyLoss", {})]
    edges += [(prev, "loss:pred"), ("y", "loss:target")]
    classes = sizes[-1]

    def make_batch(rng, b):
        return {"x": rng.standard_normal((b, sizes[0])).astype(np.float32),
                "y": rng.integers(0, classes, b).astype(np.int64)}
    return Workload(name, "MLP " + "-".join(map(str, sizes)) + f", batch {batch}, Adam",
                    _graph(name, nodes, edges, {"type": "adam", "lr": 1e-3}), batch, make_batch)


def lenet(batch: int = 64) -> Workload:
    nodes = [("x", "Input", {"shape": [1, 28, 28]}),
             ("conv1", "Conv2D", {"filters": 32, "kernel_size": 3, "padding": "same"}),
             ("relu1", "ReLU", {}), ("pool1", "MaxPool2D", {"pool_size": 2}),
             ("conv2", "Conv2D", {"filters": 64, "kernel_size": 3, "padding": "same"}),
             ("relu2", "ReLU", {}), ("pool2", "MaxPool2D", {"pool_size": 2}),
             ("flat", "Flatten", {}), ("fc1", "Dense", {"units": 128}), ("relu3", "ReLU", {}),
             ("fc2", "Dense", {"units": 10}),
             ("y", "Target", {"shape": [], "dtype": "int64"}), ("loss", "CrossEntropyLoss", {})]
    chain = ["x", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flat", "fc1", "relu3",
             "fc2"]
    edges = list(zip(chain, chain[1:], strict=False)) + [("fc2", "loss:pred"), ("y", "loss:target")]

    def make_batch(rng, b):
        return {"x": rng.standard_normal((b, 1, 28, 28)).astype(np.float32),
                "y": rng.integers(0, 10, b).astype(np.int64)}
    return Workload("lenet", f"LeNet-style CNN on 1x28x28, batch {batch}, Adam",
                    _graph("lenet", nodes, edges, {"type": "adam", "lr": 1e-3}), batch,
                    make_batch)


# The recurrent workloads of the issue: T = 50 steps of 16 features, batch 32, 128 hidden
# units, then Dense 10 and cross-entropy on the last step's state.
SEQ_T, SEQ_F, SEQ_H, SEQ_CLASSES = 50, 16, 128, 10


def _sequence_batch(rng, b):
    return {"x": rng.standard_normal((b, SEQ_T, SEQ_F)).astype(np.float32),
            "y": rng.integers(0, SEQ_CLASSES, b).astype(np.int64)}


def _torch_recurrent(cls: str, weights: dict[str, np.ndarray], head: tuple[np.ndarray, ...]):
    """torch.nn.<cls>(batch_first) on the last step, then Linear, with our weights (the gate
    orders are the same; the layouts map through ``core.export.torch_layers``)."""
    import torch

    class LastStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, cls)(SEQ_F, SEQ_H, batch_first=True)
            self.fc = torch.nn.Linear(SEQ_H, SEQ_CLASSES)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])

    m = LastStep()
    rnn = to_torch(catalogue.get(cls), weights)
    fc = to_torch(catalogue.get("Dense"), {"W": head[0], "b": head[1]})
    m.rnn.load_state_dict({k: torch.from_numpy(v) for k, v in rnn.items()})
    m.fc.load_state_dict({k: torch.from_numpy(v) for k, v in fc.items()})
    return m


def recurrent(kind: str) -> Workload:
    """A built-in RNN / LSTM / GRU layer against torch.nn's of the same name."""
    name = kind.lower()
    nodes = [("x", "Input", {"shape": [SEQ_T, SEQ_F]}), ("rnn", kind, {"units": SEQ_H}),
             ("fc", "Dense", {"units": SEQ_CLASSES}),
             ("y", "Target", {"shape": [], "dtype": "int64"}), ("loss", "CrossEntropyLoss", {})]
    edges = [("x", "rnn"), ("rnn", "fc"), ("fc", "loss:pred"), ("y", "loss:target")]

    def factory(graph, state):
        w = {k: state[f"rnn/{k}"] for k in ("W_ih", "W_hh", "b_ih", "b_hh")}
        return _torch_recurrent(kind, w, (state["fc/W"], state["fc/b"]))
    return Workload(name, f"{kind} T={SEQ_T} F={SEQ_F} H={SEQ_H}, Dense {SEQ_CLASSES}, "
                    f"batch 32, Adam",
                    _graph(name, nodes, edges, {"type": "adam", "lr": 1e-3}), 32,
                    _sequence_batch, factory, quick=kind != "GRU")


def elman_cycle() -> Workload:
    """The Elman cell drawn from primitives (Dense on x_t + Dense on h_{t-1} -> Tanh, fed
    back through a delay edge, TimeCollect 'last'), unrolled by the engine, against
    torch.nn.RNN with the same weights."""
    nodes = [("x", "Input", {"shape": [SEQ_T, SEQ_F], "sequence": True}),
             ("wx", "Dense", {"units": SEQ_H}), ("wh", "Dense", {"units": SEQ_H}),
             ("add", "Add", {}), ("h", "Tanh", {}), ("last", "TimeCollect", {"mode": "last"}),
             ("fc", "Dense", {"units": SEQ_CLASSES}),
             ("y", "Target", {"shape": [], "dtype": "int64"}), ("loss", "CrossEntropyLoss", {})]
    edges = [("x", "wx"), ("h", "wh", 1), ("wx", "add:in0"), ("wh", "add:in1"), ("add", "h"),
             ("h", "last"), ("last", "fc"), ("fc", "loss:pred"), ("y", "loss:target")]

    def factory(graph, state):
        w = {"W_ih": state["wx/W"], "b_ih": state["wx/b"], "W_hh": state["wh/W"],
             "b_hh": state["wh/b"]}
        return _torch_recurrent("RNN", w, (state["fc/W"], state["fc/b"]))
    return Workload("elman_cycle", f"drawn Elman cycle T={SEQ_T} F={SEQ_F} H={SEQ_H} vs "
                    f"torch.nn.RNN, Dense {SEQ_CLASSES}, batch 32, Adam",
                    _graph("elman_cycle", nodes, edges, {"type": "adam", "lr": 1e-3}), 32,
                    _sequence_batch, factory)


def all_workloads(quick: bool = False) -> list[Workload]:
    """Every workload; with ``quick`` the smaller set of ``bench --quick``."""
    ws = [mlp("mlp_small", [64, 256, 256, 10], 64),
          mlp("mlp_large", [784, 1024, 1024, 10], 256),
          lenet(64), recurrent("LSTM"), recurrent("GRU"), elman_cycle()]
    return [w for w in ws if w.quick or not quick]


def torch_model(graph: dict, state: dict[str, np.ndarray]):
    """The graph's exported PyTorch ``Model`` (``main.py export --to pytorch``), with our
    weights loaded through the exported ``load_weights``."""
    buf = io.BytesIO()
    np.savez(buf, **state)
    namespace: dict[str, Any] = {"__name__": "neurocanvas_bench_model"}
    exec(compile(export_graph(graph_from_dict(graph), "pytorch"), "<exported>", "exec"),  # noqa: S102
         namespace)
    model = namespace["Model"]()
    buf.seek(0)
    namespace["load_weights"](model, buf)
    return model
