"""Benchmark workloads: each is a graph (our side) and an identical PyTorch model.

Weights are copied from our network into the torch model, so both start from the same
parameters, train on the same batch with the same optimizer.

Every workload is rebuilt from its ``spec`` (a small JSON-able dict, ``from_spec``): that is
how ``benchmarks.side``, the process that times one side, gets the very workload the suite
chose, batch size and width included.
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
    spec: dict | None = None  # what ``from_spec`` rebuilds this workload from


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


def mlp(name: str, sizes: list[int], batch: int, quick: bool = True) -> Workload:
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
                    _graph(name, nodes, edges, {"type": "adam", "lr": 1e-3}), batch, make_batch,
                    quick=quick,
                    spec={"family": "mlp", "name": name, "sizes": list(sizes), "batch": batch})


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
                    make_batch, spec={"family": "lenet", "batch": batch})


# The recurrent workloads of the issue: T = 50 steps of 16 features, batch 32, 128 hidden
# units, then Dense 10 and cross-entropy on the last step's state.
SEQ_T, SEQ_F, SEQ_H, SEQ_CLASSES = 50, 16, 128, 10


def _sequence_batch(rng, b):
    return {"x": rng.standard_normal((b, SEQ_T, SEQ_F)).astype(np.float32),
            "y": rng.integers(0, SEQ_CLASSES, b).astype(np.int64)}


def _torch_recurrent(cls: str, weights: dict[str, np.ndarray], head: tuple[np.ndarray, ...],
                     hidden: int = SEQ_H):
    """torch.nn.<cls>(batch_first) on the last step, then Linear, with our weights (the gate
    orders are the same; the layouts map through ``core.export.torch_layers``)."""
    import torch

    class LastStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, cls)(SEQ_F, hidden, batch_first=True)
            self.fc = torch.nn.Linear(hidden, SEQ_CLASSES)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])

    m = LastStep()
    rnn = to_torch(catalogue.get(cls), weights)
    fc = to_torch(catalogue.get("Dense"), {"W": head[0], "b": head[1]})
    m.rnn.load_state_dict({k: torch.from_numpy(v) for k, v in rnn.items()})
    m.fc.load_state_dict({k: torch.from_numpy(v) for k, v in fc.items()})
    return m


def recurrent(kind: str, batch: int = 32, hidden: int = SEQ_H, name: str | None = None) -> Workload:
    """A built-in RNN / LSTM / GRU layer against torch.nn's of the same name."""
    name = name or kind.lower()
    nodes = [("x", "Input", {"shape": [SEQ_T, SEQ_F]}), ("rnn", kind, {"units": hidden}),
             ("fc", "Dense", {"units": SEQ_CLASSES}),
             ("y", "Target", {"shape": [], "dtype": "int64"}), ("loss", "CrossEntropyLoss", {})]
    edges = [("x", "rnn"), ("rnn", "fc"), ("fc", "loss:pred"), ("y", "loss:target")]

    def factory(graph, state):
        w = {k: state[f"rnn/{k}"] for k in ("W_ih", "W_hh", "b_ih", "b_hh")}
        return _torch_recurrent(kind, w, (state["fc/W"], state["fc/b"]), hidden)
    return Workload(name, f"{kind} T={SEQ_T} F={SEQ_F} H={hidden}, Dense {SEQ_CLASSES}, "
                    f"batch {batch}, Adam",
                    _graph(name, nodes, edges, {"type": "adam", "lr": 1e-3}), batch,
                    _sequence_batch, factory, quick=kind != "GRU",
                    spec={"family": "recurrent", "kind": kind, "name": name, "batch": batch,
                          "hidden": hidden})


def elman_cycle(batch: int = 32) -> Workload:
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
                    f"torch.nn.RNN, Dense {SEQ_CLASSES}, batch {batch}, Adam",
                    _graph("elman_cycle", nodes, edges, {"type": "adam", "lr": 1e-3}), batch,
                    _sequence_batch, factory, spec={"family": "elman", "batch": batch})


def all_workloads(quick: bool = False) -> list[Workload]:
    """Every workload of the suite; with ``quick`` the smaller set of ``bench --quick``."""
    ws = [mlp("mlp_small", [64, 256, 256, 10], 64),
          mlp("mlp_large", [784, 1024, 1024, 10], 256),
          lenet(64), recurrent("LSTM"), recurrent("GRU"), elman_cycle(), lstm_varlen()]
    return [w for w in ws if w.quick or not quick]


def tiny_mlp() -> Workload:
    """A tiny MLP for the suite's own tests (not part of any bench run)."""
    return mlp("mlp_tiny", [8, 16, 4], 8, quick=False)


def by_name(name: str) -> Workload:
    """A workload of the suite, or ``mlp_tiny``, by name; KeyError for another name."""
    for w in [*all_workloads(), tiny_mlp()]:
        if w.name == name:
            return w
    raise KeyError(name)


# ``bench --scaling``: how the step time grows with the batch and with the width, for the MLP
# (mlp_small's 64-W-W-10) and the LSTM (T, F, head as above, W hidden units)
SCALING_BATCHES = (32, 64, 128, 256, 512, 1024)
SCALING_MLP_WIDTHS = (64, 128, 256, 512, 1024, 2048)
SCALING_LSTM_WIDTHS = (32, 64, 128, 256, 512)
SCALING_MLP_BATCH, SCALING_LSTM_BATCH = 64, 32  # the batch of the width series


def scaling_workloads(quick: bool = False) -> list[tuple[str, str, int, Workload]]:
    """(series, axis, value, workload) of the scaling table: the batch series at the default
    width, then the width series at the default batch; ``quick``: three points a series."""
    def pick(values):
        return (values[0], values[len(values) // 2], values[-1]) if quick else values
    out: list[tuple[str, str, int, Workload]] = []
    for b in pick(SCALING_BATCHES):
        out.append(("mlp", "batch", b, mlp(f"mlp_b{b}", [64, 256, 256, 10], b)))
    for u in pick(SCALING_MLP_WIDTHS):
        out.append(("mlp", "width", u, mlp(f"mlp_w{u}", [64, u, u, 10], SCALING_MLP_BATCH)))
    for b in pick(SCALING_BATCHES):
        out.append(("lstm", "batch", b, recurrent("LSTM", b, SEQ_H, f"lstm_b{b}")))
    for u in pick(SCALING_LSTM_WIDTHS):
        out.append(("lstm", "width", u,
                    recurrent("LSTM", SCALING_LSTM_BATCH, u, f"lstm_h{u}")))
    return out


def from_spec(spec: dict) -> Workload:
    """The workload a ``Workload.spec`` describes (the suite passes specs to its side
    processes as JSON); ValueError for a spec of no known family."""
    family = spec.get("family")
    if family == "mlp":
        return mlp(spec["name"], [int(s) for s in spec["sizes"]], int(spec["batch"]))
    if family == "lenet":
        return lenet(int(spec["batch"]))
    if family == "recurrent":
        return recurrent(spec["kind"], int(spec["batch"]), int(spec["hidden"]), spec["name"])
    if family == "elman":
        return elman_cycle(int(spec["batch"]))
    if family == "lstm_varlen":
        return lstm_varlen(int(spec["batch"]))
    raise ValueError(f"unknown workload spec {spec!r}")


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


def varlen_lengths(b: int) -> np.ndarray:
    """The lengths of ``lstm_varlen``'s batches: a fixed function of the batch size (1 to
    SEQ_T, mean about SEQ_T / 2, the first SEQ_T and the last 1), so that PyTorch's side,
    which is handed only x, packs the very same lengths."""
    lens = np.random.default_rng(7).integers(1, SEQ_T + 1, b).astype(np.int64)
    lens[0] = SEQ_T
    if b > 1:
        lens[-1] = 1
    return lens


def _varlen_batch(rng, b):
    lens = varlen_lengths(b)
    x = rng.standard_normal((b, SEQ_T, SEQ_F)).astype(np.float32)
    x[np.arange(SEQ_T)[None, :] >= lens[:, None]] = 0.0  # the padding
    return {"x": x, "y": rng.integers(0, SEQ_CLASSES, b).astype(np.int64), "len": lens}


def _torch_packed_lstm(weights: dict[str, np.ndarray], head: tuple[np.ndarray, ...]):
    """torch.nn.LSTM on ``pack_padded_sequence(x, varlen_lengths(B))`` (unsorted), the last
    valid state of each sample, then Linear, with our weights."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    class Packed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(SEQ_F, SEQ_H, batch_first=True)
            self.fc = torch.nn.Linear(SEQ_H, SEQ_CLASSES)

        def forward(self, x):
            lens = torch.from_numpy(varlen_lengths(x.shape[0]))
            packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
            _, (h, _) = self.rnn(packed)
            return self.fc(h[-1])

    m = Packed()
    rnn = to_torch(catalogue.get("LSTM"), weights)
    fc = to_torch(catalogue.get("Dense"), {"W": head[0], "b": head[1]})
    m.rnn.load_state_dict({k: torch.from_numpy(v) for k, v in rnn.items()})
    m.fc.load_state_dict({k: torch.from_numpy(v) for k, v in fc.items()})
    return m


def lstm_varlen(batch: int = 32) -> Workload:
    """The built-in LSTM on sequences of variable length (an Input with ``lengths``: one
    batched pass, padded steps masked) against torch.nn.LSTM on a packed sequence."""
    nodes = [("x", "Input", {"shape": [SEQ_T, SEQ_F], "lengths": "len"}),
             ("rnn", "LSTM", {"units": SEQ_H}), ("fc", "Dense", {"units": SEQ_CLASSES}),
             ("y", "Target", {"shape": [], "dtype": "int64"}), ("loss", "CrossEntropyLoss", {})]
    edges = [("x", "rnn"), ("rnn", "fc"), ("fc", "loss:pred"), ("y", "loss:target")]

    def factory(graph, state):
        w = {k: state[f"rnn/{k}"] for k in ("W_ih", "W_hh", "b_ih", "b_hh")}
        return _torch_packed_lstm(w, (state["fc/W"], state["fc/b"]))
    return Workload("lstm_varlen", f"LSTM T<={SEQ_T} (lengths 1..{SEQ_T}) F={SEQ_F} H={SEQ_H} "
                    f"vs a packed torch.nn.LSTM, Dense {SEQ_CLASSES}, batch {batch}, Adam",
                    _graph("lstm_varlen", nodes, edges, {"type": "adam", "lr": 1e-3}), batch,
                    _varlen_batch, factory, quick=False,
                    spec={"family": "lstm_varlen", "batch": batch})
