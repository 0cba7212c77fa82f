"""Whether a graph can train: "valid" means "can train" (no Qt).

Validation (``core.validate``) says what is wrong with the graph itself. Training also needs
things a valid graph may lack: an Input, a loss (with a Target to compare with), a dataset
that can be read, training settings that parse. ``training_problems`` lists what is missing,
each a typed problem with a sentence (``ReadinessError``, or the ``ParamError`` naming
``training.<key>`` that ``parse_training`` raises); ``analyze_for_training`` runs validation
with the dataset's fields and fills ``Analysis.not_ready`` with them. ``status_text`` and
``refusal`` are what the editor's status bar says.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from core import catalogue
from core.errors import GraphProblem, ParamError
from core.graph import Graph
from core.training.config import NO_DATASET, parse_training
from core.validate import Analysis, analyze_with_dataset

READY = "Ready to train"


class ReadinessError(GraphProblem):
    """Something training needs that the graph or its settings do not give yet. ``needs``
    says what, in a few words (``"a loss"``), for the status bar."""

    def __init__(self, message: str, *, needs: str, **where: Any):
        self.needs = needs
        super().__init__(message, **where)


def training_problems(analysis: Analysis, training: Mapping[str, Any] | None
                      ) -> list[GraphProblem]:
    """What stops ``analysis.graph`` from training with ``training`` (its training section),
    beyond ``analysis.problems``; empty when it can train. A dataset that could not be
    peeked at (``analysis.dataset_error``, from ``analyze_with_dataset``) is one of them."""
    graph = analysis.graph
    out: list[GraphProblem] = []
    if not graph.nodes:
        out.append(ReadinessError("the graph is empty: add an Input, the layers, a loss and "
                                  "the Target it compares with from the palette",
                                  needs="nodes"))
    else:
        out.extend(_missing_nodes(analysis))
    t = dict(training or {})
    ds = t.get("dataset")
    if ds is None:
        out.append(ReadinessError(NO_DATASET, param="training.dataset", needs="a dataset"))
    try:  # the other settings, also when there is no dataset yet
        parse_training({**t, "dataset": {} if ds is None else ds})
    except ParamError as e:
        out.append(e)
    err = analysis.dataset_error
    if ds is not None and err is not None and not any(str(p) == str(err) for p in out):
        if isinstance(err, ParamError):  # names training.dataset.<key>
            out.append(err)
        else:
            out.append(ReadinessError(f"the dataset cannot be read: {err}",
                                      param="training.dataset", needs="a dataset it can read"))
    return out


def _missing_nodes(analysis: Analysis) -> list[ReadinessError]:
    graph = analysis.graph
    classes = {nid: catalogue.get(n.type) for nid, n in graph.nodes.items()}
    roles = {c.data_role for c in classes.values() if c is not None}
    losses = [nid for nid, c in classes.items() if c is not None and c.is_loss]
    out = []
    if "input" not in roles:
        out.append(ReadinessError("the graph has no Input: add one (Data in the palette) to "
                                  "feed it a field of the dataset", needs="an Input"))
    if not losses:
        out.append(ReadinessError("the graph has no loss: add one (such as CrossEntropyLoss or "
                                  "MSELoss) for training to minimise", needs="a loss"))
    elif "target" not in roles:
        for nid in losses:
            layer = analysis.layers.get(nid)
            if layer is not None and "target" in layer.input_ports(layer.params) \
                    and "target" not in analysis.inputs.get(nid, {}):
                # the EdgeError on the port marks the loss; this says what to add
                out.append(ReadinessError(f"the loss '{nid}' has no Target to compare with: "
                                          "add a Target (Data in the palette) and connect it "
                                          "to its 'target' port", needs="a Target"))
                break
    return out


def analyze_for_training(graph: Graph, base_dir: str | os.PathLike | None = None
                         ) -> Analysis:
    """Validation with the fields of the graph's dataset (``analyze_with_dataset``), with
    ``not_ready`` filled: ``analysis.can_train`` says whether Train can start."""
    a = analyze_with_dataset(graph, base_dir)
    a.not_ready = training_problems(a, graph.training)
    return a


def blocking(analysis: Analysis) -> list[GraphProblem]:
    """Everything that stops training, graph problems first."""
    return list(analysis.problems) + list(analysis.not_ready)


def _needs(p: GraphProblem) -> str:
    if isinstance(p, ReadinessError):
        return p.needs
    return f"a valid {p.param}" if p.param else "a fix"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def status_text(analysis: Analysis) -> str:
    """One line for the status bar: "Ready to train", or what stops training: "Cannot
    train: 2 problems", "Cannot train yet: needs a dataset and a loss"."""
    if analysis.can_train:
        return READY
    if not analysis.graph.nodes:
        return "Cannot train yet: the graph is empty"
    parts = []
    n = len(analysis.problems)
    if n:
        parts.append(f"{n} problem{'s' if n != 1 else ''}")
    needs = list(dict.fromkeys(_needs(p) for p in analysis.not_ready))
    if needs:
        parts.append("needs " + _and(needs))
    return ("Cannot train: " if n else "Cannot train yet: ") + "; ".join(parts)


def refusal(analysis: Analysis) -> str | None:
    """Why Train cannot start, with how many problems stop it and the first one; None when
    it can start."""
    stop = blocking(analysis)
    if not stop:
        return None
    n = len(stop)
    return f"Cannot train: {n} problem{'s' if n != 1 else ''} (first: {stop[0]})"


def first_culprit(analysis: Analysis) -> str | None:
    """The node of the first problem that names one (what the editor selects)."""
    return next((p.nodes[0] for p in blocking(analysis) if p.nodes), None)


__all__ = ["ReadinessError", "READY", "training_problems", "analyze_for_training", "blocking",
           "status_text", "refusal", "first_culprit"]
