"""Seeing inside a network (docs/probe.md): the prediction and each unit over the input plane,
embeddings of a node's outputs, a gradient check of one node, and each node's cost.

Everything here reads a ``Network`` and gives plain host arrays in dataclasses that cross a
process boundary (``to_arrays`` / ``from_arrays`` or ``to_json`` / ``from_json``); the
``Trainer`` runs them between two steps (``Trainer.probe_plane``, ``probe_embedding``,
``grad_check``, ``profile``).
"""
from core.probe.cost import (
    GraphCost,
    NodeCost,
    Profile,
    activation_bytes,
    graph_cost,
    node_macs,
    profile_steps,
)
from core.probe.embedding import Embedding, embed, project_2d
from core.probe.gradcheck import GradCheck, TensorCheck, grad_check
from core.probe.plane import PlaneMaps, data_ranges, plane_grid

__all__ = ["Embedding", "GradCheck", "GraphCost", "NodeCost", "PlaneMaps", "Profile",
           "TensorCheck", "activation_bytes", "data_ranges", "embed", "grad_check",
           "graph_cost", "node_macs", "plane_grid", "profile_steps", "project_2d"]
