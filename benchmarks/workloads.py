"""Benchmark workloads: each is a graph (our side) and an identical PyTorch model.

Weights are copied from our network into the torch model, so both start from the same
parameters, train on the same batch with the same optimizer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Workload:
    name: str
    description: str
    graph: dict  # a graph file as a dict (SPEC section 2)
    batch: int
    make_batch: Any  # (rng, batch) -> dict field -> array


def _graph(name: str, nodes: list[tuple[str, str, dict]], edges: list[tuple[str, str]],
           optimizer: dict) -> dict:
    return {"format": "neurocanvas.graph", "version": 1, "name": name,
            "nodes": [{"id": i, "type": t, "params": p, "pos": [0, 0]} for i, t, p in nodes],
            "edges": [{"from": a, "to": b} for a, b in edges],
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


def all_workloads() -> list[Workload]:
    return [mlp("mlp_small", [64, 256, 256, 10], 64),
            mlp("mlp_large", [784, 1024, 1024, 10], 256),
            lenet(64)]


def torch_model(graph: dict, state: dict[str, np.ndarray]):
    """An equivalent torch.nn.Sequential for a chain graph, with our weights copied in."""
    import torch

    layers = []
    for node in graph["nodes"]:
        t, p, nid = node["type"], node["params"], node["id"]
        if t == "Dense":
            W = state[f"{nid}/W"]
            lin = torch.nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(state[f"{nid}/b"]))
            layers.append(lin)
        elif t == "Conv2D":
            W = state[f"{nid}/W"]
            conv = torch.nn.Conv2d(W.shape[1], W.shape[0], W.shape[2:], padding="same")
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(W))
                conv.bias.copy_(torch.from_numpy(state[f"{nid}/b"]))
            layers.append(conv)
        elif t == "ReLU":
            layers.append(torch.nn.ReLU())
        elif t == "MaxPool2D":
            layers.append(torch.nn.MaxPool2d(p.get("pool_size", 2)))
        elif t == "Flatten":
            layers.append(torch.nn.Flatten())
    return torch.nn.Sequential(*layers)
