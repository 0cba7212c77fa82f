"""Small example graphs for the tests, built as the JSON dicts of docs/format.md section 2."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.fileformat import graph_from_dict
from core.graph import Graph


def node(node_id: str, type_name: str, **params: Any) -> dict:
    return {"id": node_id, "type": type_name, "params": params}


def edge(src: str, dst: str, **extra: Any) -> dict:
    return {"from": src, "to": dst, **extra}


def graph_dict(nodes: list[dict], edges: list[dict], **top: Any) -> dict:
    return {"format": "neurocanvas.graph", "version": 1, "name": top.pop("name", "test"),
            "nodes": nodes, "edges": edges, **top}


def mlp_dict(features: int = 4, hidden: int = 5, outputs: int = 3) -> dict:
    """x [features] -> fc1 Dense(hidden) -> act ReLU -> fc2 Dense(outputs) -> MSE with y."""
    return graph_dict(
        [node("x", "Input", shape=[features]),
         node("fc1", "Dense", units=hidden),
         node("act", "ReLU"),
         node("fc2", "Dense", units=outputs),
         node("y", "Target", shape=[outputs], dtype="float32"),
         node("loss", "MSELoss")],
        [edge("x", "fc1"), edge("fc1", "act"), edge("act", "fc2"),
         edge("fc2", "loss:pred"), edge("y", "loss:target")],
        name="mlp")


def build(d: dict) -> Graph:
    return graph_from_dict(d)


def write(path: Path, d: dict) -> Path:
    path.write_text(json.dumps(d, indent=2), encoding="utf-8")
    return path
