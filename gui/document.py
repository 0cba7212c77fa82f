"""The open document: one graph, its undo stack, its file, and its live validation.

Every edit the editor makes goes through a method here, which builds one undo command
(``gui.commands``) and pushes it on the document's QUndoStack; the command changes only the
model. The views (canvas, inspector, problems panel) subscribe to the model's change events
and to ``analysis_changed``, which fires after shape inference has run on the edited graph.

The analysis checks the data nodes against the graph's dataset (peeked at without loading
it, cached by ``core.datasets.peek``) and lists what else stops training
(``Analysis.not_ready``, ``core.readiness``); ``status_text`` says whether the graph can
train. ``edited`` fires on every change of what the graph computes or of its training
settings (not on moves or labels), so views can drop what a run reported about the old one.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import time
from itertools import count
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from core import catalogue
from core.connections import check_connection, resolve_ports
from core.datasets.peek import dataset_stamp
from core.elements import clamp_pos
from core.errors import EdgeError, GraphEditError, GraphFileError, NeuroCanvasError
from core.fileformat import FORMAT, VERSION, dumps, graph_from_dict, load_graph
from core.files import atomic_write
from core.graph import Edge, Graph, GraphEvent, Node, check_id, fresh_id
from core.layout import layered_layout
from core.params import resolve_params
from core.readiness import analyze_for_training, status_text
from core.validate import Analysis
from gui import commands as cmd

CLIPBOARD_MIME = "application/x-neurocanvas-graph"
log = logging.getLogger(__name__)
_runs_keys = count(1)


def _fresh_runs_key() -> str:
    """The folder name of an unsaved graph's runs: unique to this document in this session
    (time, process, counter)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_runs_keys)}"


class EditLockedError(NeuroCanvasError):
    """An edit was attempted while training holds the graph."""


class Document(QObject):
    """A graph being edited. ``analysis`` is always the validation of the current graph."""

    analysis_changed = Signal(object)  # Analysis
    dirty_changed = Signal(bool)
    path_changed = Signal(object)  # Path | None
    locked_changed = Signal(bool)
    graph_reset = Signal()  # a new graph was opened into the document
    edited = Signal()  # what the graph computes or its training settings changed

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.graph = Graph()
        self.undo_stack = QUndoStack(self)
        self.path: Path | None = None
        self.locked = False
        # where the runs of the graph are kept while it has no file (core.runs)
        self.runs_key = _fresh_runs_key()
        self._runs_to_move: Path | None = None  # saved while training: moved when it ends
        self._analysis: Analysis | None = None
        self._dataset_stamp: tuple | None = None  # of the file the analysis peeked at
        self._revalidate = QTimer(self)
        self._revalidate.setSingleShot(True)
        self._revalidate.setInterval(0)
        self._revalidate.timeout.connect(self._emit_analysis)
        self.graph.subscribe(self._on_graph_event)
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)

    def _on_clean_changed(self, clean: bool) -> None:
        self.dirty_changed.emit(not clean)

    # ---- validation --------------------------------------------------------------------
    @property
    def analysis(self) -> Analysis:
        """Validation and shapes of the graph as it is now, checked against its dataset,
        with what else stops training in ``not_ready`` (recomputed lazily)."""
        if self._analysis is None:
            base = self.base_dir()
            self._dataset_stamp = dataset_stamp(self.graph.training.get("dataset"), base)
            self._analysis = analyze_for_training(self.graph, base)
        return self._analysis

    @property
    def status_text(self) -> str:
        """"Ready to train", or what stops training (``core.readiness.status_text``)."""
        return status_text(self.analysis)

    def base_dir(self) -> Path:
        """Where a relative dataset path starts: the graph file's folder (else the working
        directory, as training takes it)."""
        return self.path.resolve().parent if self.path else Path.cwd()

    def recheck_dataset(self) -> Analysis:
        """The analysis, first redone (and announced) when the dataset file it checked has
        changed on disk since (Train asks, as nothing else would notice)."""
        if self._analysis is not None and self._dataset_stamp != dataset_stamp(
                self.graph.training.get("dataset"), self.base_dir()):
            self._analysis = None
            self._revalidate.stop()
            self._emit_analysis()
        return self.flush()

    def _on_graph_event(self, event: GraphEvent) -> None:
        if event.kind in ("node_moved", "node_extra_changed", "name_changed"):
            return  # layout and labels do not change shapes
        self._analysis = None
        self._revalidate.start()  # coalesce the events of one command into one analysis
        self.edited.emit()

    def _emit_analysis(self) -> None:
        self.analysis_changed.emit(self.analysis)

    def flush(self) -> Analysis:
        """Run any pending validation now and notify the views (tests, before a train)."""
        if self._revalidate.isActive():
            self._revalidate.stop()
            self._emit_analysis()
        return self.analysis

    # ---- state -------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return not self.undo_stack.isClean()

    @property
    def title(self) -> str:
        return self.path.name if self.path else f"{self.graph.name or 'untitled'} (unsaved)"

    def set_locked(self, locked: bool) -> None:
        """Lock the graph against edits (training holds it) or unlock it."""
        if locked != self.locked:
            self.locked = locked
            if not locked and self._runs_to_move is not None:
                self._move_runs(self._runs_to_move)
            self.locked_changed.emit(locked)

    def push(self, command: QUndoCommand) -> None:
        if self.locked:
            raise EditLockedError("the graph is locked while training runs; stop training "
                                  "to edit it")
        self.undo_stack.push(command)

    # ---- ports -------------------------------------------------------------------------
    def ports(self, node_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(input ports, output ports) of a node; for an unknown type, those its edges use."""
        node = self.graph.node(node_id)
        cls = catalogue.get(node.type)
        if cls is None:
            ins = tuple(dict.fromkeys(e.dst_port or "in" for e in self.graph.in_edges(node_id)))
            outs = tuple(dict.fromkeys(e.src_port or "out"
                                       for e in self.graph.out_edges(node_id))) or ("out",)
            return ins, outs
        params = resolve_params(cls.all_params_spec(), node.params, node_id)[0]
        try:
            ins = tuple(cls.input_ports(params))
        except (KeyError, TypeError, ValueError):
            ins = ()
        return ins, tuple(cls.output_ports)

    def edge_ports(self, edge: Edge) -> tuple[str | None, str | None]:
        """The (output port, input port) an edge joins, or None where it names none that
        exists (the edge is then listed as a problem)."""
        out = self._port_of(edge, "src")
        inp = self._port_of(edge, "dst")
        return out, inp

    def _port_of(self, edge: Edge, end: str) -> str | None:
        nid = edge.src if end == "src" else edge.dst
        node = self.graph.nodes.get(nid)
        if node is None:
            return None
        cls = catalogue.get(node.type)
        if cls is None:
            return (edge.src_port or "out") if end == "src" else (edge.dst_port or "in")
        params = resolve_params(cls.all_params_spec(), node.params, nid)[0]
        try:
            return resolve_ports(cls, params, edge, end)[0]
        except (KeyError, TypeError, ValueError):
            return None

    def edge_into(self, node_id: str, port: str) -> Edge | None:
        """The edge feeding input ``port`` of a node, if any."""
        for e in self.graph.in_edges(node_id):
            if self._port_of(e, "dst") == port:
                return e
        return None

    # ---- edits -------------------------------------------------------------------------
    def add_node(self, type_name: str, pos: tuple[float, float] = (0.0, 0.0),
                 params: dict[str, Any] | None = None) -> str:
        """Add a node of a catalogue type; returns its fresh id."""
        cls = catalogue.get(type_name)
        if cls is None:
            raise GraphEditError(f"unknown node type '{type_name}'"
                                 + catalogue.suggest(type_name))
        nid = self.graph.unique_id(type_name)
        node = Node(nid, type_name, dict(params or default_params(type_name)),
                    (float(pos[0]), float(pos[1])))
        self.push(cmd.InsertItems(self.graph, [node], [], f"Add {type_name}"))
        return nid

    def delete(self, node_ids: list[str] = (), edges: list[Edge] = ()) -> None:
        """Delete nodes (and every edge touching them) and edges, as one undo step."""
        node_ids = [n for n in node_ids if n in self.graph.nodes]
        edges = [e for e in edges if any(e is x for x in self.graph.edges)]
        if not node_ids and not edges:
            return
        what = (f"{len(node_ids)} node{'s' if len(node_ids) != 1 else ''}" if node_ids
                else f"{len(edges)} edge{'s' if len(edges) != 1 else ''}")
        self.push(cmd.DeleteItems(self.graph, node_ids, edges, f"Delete {what}"))

    def move(self, moves: dict[str, tuple[tuple[float, float], tuple[float, float]]],
             merge: bool = False) -> None:
        """Record moves (old, new position per node) as one undo step."""
        moves = {k: v for k, v in moves.items() if k in self.graph.nodes and v[0] != v[1]}
        if moves:
            n = len(moves)
            text = f"Move {next(iter(moves))}" if n == 1 else f"Move {n} nodes"
            self.push(cmd.MoveNodes(self.graph, moves, text, merge=merge))

    def connect(self, src: str, src_port: str | None, dst: str, dst_port: str | None,
                delay: int = 0) -> Edge:
        """Connect an output port to an input port. An edge already feeding that input is
        replaced (as in node editors). Raises a typed error saying why an edge is
        impossible (a port that does not exist, a cycle with no delay, ...)."""
        src_port = self._short_port(src, src_port, "src")
        dst_port = self._short_port(dst, dst_port, "dst")
        edge = Edge(src, dst, src_port, dst_port, int(delay))
        replaced = None
        port = self._port_of(edge, "dst")
        if port is not None:
            replaced = self.edge_into(dst, port)
        probe = self.graph
        if replaced is not None:  # check against the graph without the edge it replaces
            probe = self.graph.copy()
            probe.edges = [e for e in probe.edges if e.key() != replaced.key()]
        if replaced is not None and replaced.key() == edge.key():
            raise EdgeError("these ports are already connected", node=dst, port=port)
        check_connection(probe, src, dst, src_port=src_port, dst_port=dst_port, delay=delay)
        label = f"Connect {edge.src_ref} to {edge.dst_ref}"
        if delay:
            label += f" (delay {delay})"
        self.push(cmd.Connect(self.graph, edge, replaced, label))
        return edge

    def _short_port(self, nid: str, port: str | None, end: str) -> str | None:
        """A port name as the file writes it: omitted where the node has only that port."""
        if port is None or nid not in self.graph.nodes:
            return port
        ins, outs = self.ports(nid)
        ports = outs if end == "src" else ins
        return None if ports == (port,) else port

    def disconnect(self, edge: Edge) -> None:
        self.delete([], [edge])

    def set_delay(self, edge: Edge, delay: int) -> None:
        """Make an edge a delay edge (delay > 0) or an instant one, as one undo step."""
        if edge.delay == delay:
            return
        new = Edge(edge.src, edge.dst, edge.src_port, edge.dst_port, int(delay),
                   dict(edge.extra))
        probe = self.graph.copy()
        probe.edges = [e for e in probe.edges if e.key() != edge.key()]
        check_connection(probe, new.src, new.dst, src_port=new.src_port,
                         dst_port=new.dst_port, delay=new.delay)
        self.push(cmd.Connect(self.graph, new, edge,
                              f"Set delay of {edge.src_ref} -> {edge.dst_ref} to {delay}"))

    def set_param(self, node_id: str, name: str, value: Any) -> None:
        """Set a parameter (None: back to its default), as one undo step."""
        node = self.graph.node(node_id)
        old = node.params.get(name)
        if old == value:
            return
        self.push(cmd.SetParam(self.graph, node_id, name, old, value,
                               f"Set {node_id}.{name}"))

    def set_label(self, node_id: str, label: str | None) -> None:
        node = self.graph.node(node_id)
        old = node.extra.get("label")
        if (label or None) != old:
            self.push(cmd.SetExtra(self.graph, node_id, "label", old, label or None,
                                   f"Label {node_id}"))

    def rename(self, old_id: str, new_id: str) -> None:
        """Give a node a new id; raises GraphEditError if it is not a valid or free id."""
        self.graph.node(old_id)
        if new_id == old_id:
            return
        problem = check_id(new_id)
        if problem:
            raise GraphEditError(problem, node=old_id, param="id")
        if new_id in self.graph.nodes:
            raise GraphEditError(f"id '{new_id}' is already taken", node=old_id, param="id")
        self.push(cmd.Rename(self.graph, old_id, new_id))

    def set_training(self, training: dict[str, Any], text: str = "Training settings") -> None:
        if training != self.graph.training:
            self.push(cmd.SetTraining(self.graph, self.graph.training, training, text))

    def set_name(self, name: str) -> None:
        if name != self.graph.name:
            self.push(cmd.SetName(self.graph, self.graph.name, name))

    def auto_layout(self, origin: tuple[float, float] | None = None) -> None:
        """Lay the graph out in layers (``core.layout``), as one undo step."""
        if not self.graph.nodes:
            return
        if origin is None:
            origin = (min(n.pos[0] for n in self.graph.nodes.values()),
                      min(n.pos[1] for n in self.graph.nodes.values()))
        new = layered_layout(self.graph, origin=origin)
        moves = {nid: (self.graph.nodes[nid].pos, p) for nid, p in new.items()}
        moves = {k: v for k, v in moves.items() if v[0] != v[1]}
        if moves:
            self.push(cmd.MoveNodes(self.graph, moves, "Auto-layout"))

    # ---- copy and paste ----------------------------------------------------------------
    def snapshot(self, node_ids: list[str]) -> dict:
        """The chosen nodes and the edges among them, as a graph-file dict (clipboard)."""
        chosen = set(node_ids)
        return {"format": FORMAT, "version": VERSION,
                "nodes": [self.graph.nodes[n].to_dict() for n in self.graph.nodes
                          if n in chosen],
                "edges": [e.to_dict() for e in self.graph.edges
                          if e.src in chosen and e.dst in chosen]}

    def paste(self, snapshot: dict, offset: tuple[float, float] = (40.0, 40.0),
              text: str = "Paste") -> list[str]:
        """Insert a snapshot's nodes under fresh ids (references among them follow), moved
        by ``offset``; one undo step. Returns the new ids."""
        try:
            part = graph_from_dict({**snapshot, "format": FORMAT, "version": VERSION})
        except NeuroCanvasError as e:
            raise GraphFileError(f"the clipboard does not hold NeuroCanvas nodes: {e}") from None
        taken = set(self.graph.nodes)
        mapping: dict[str, str] = {}
        for nid, node in part.nodes.items():
            new = nid if nid not in taken else fresh_id(_stem(nid) or node.type, taken)
            taken.add(new)
            mapping[nid] = new
        nodes = []
        for nid, node in part.nodes.items():
            params = copy.deepcopy(node.params)
            ref = params.get("shared_with")
            if isinstance(ref, str) and ref in mapping:
                params["shared_with"] = mapping[ref]
            nodes.append(Node(mapping[nid], node.type, params,
                              clamp_pos((node.pos[0] + offset[0], node.pos[1] + offset[1])),
                              copy.deepcopy(node.extra)))
        edges = [Edge(mapping[e.src], mapping[e.dst], e.src_port, e.dst_port, e.delay,
                      copy.deepcopy(e.extra)) for e in part.edges
                 if e.src in mapping and e.dst in mapping]
        if nodes:
            self.push(cmd.InsertItems(self.graph, nodes, edges,
                                      f"{text} {len(nodes)} node{'s' if len(nodes) > 1 else ''}"))
        return [n.id for n in nodes]

    def duplicate(self, node_ids: list[str]) -> list[str]:
        return self.paste(self.snapshot(node_ids), text="Duplicate")

    # ---- files -------------------------------------------------------------------------
    def new(self) -> None:
        self._replace(Graph(), None)

    def open(self, path: str | Path) -> None:
        """Open a graph file. A file that is not a graph raises GraphFileError and leaves
        the document as it was; a well-formed but invalid graph opens with its problems."""
        graph = load_graph(path)
        self._replace(graph, Path(path))

    def open_text(self, text: str, path: Path | None = None) -> None:
        """Open a graph from its JSON text (a recovery file); the document stays dirty."""
        from core.fileformat import loads
        self._replace(loads(text), path)
        self.undo_stack.resetClean()

    def _replace(self, graph: Graph, path: Path | None) -> None:
        self.undo_stack.clear()
        self.graph.replace_with(graph)
        if path is None:  # another unsaved graph: runs of its own
            self.runs_key = _fresh_runs_key()
            self._runs_to_move = None
        self._set_path(path)
        self.undo_stack.setClean()
        self._analysis = None
        self._revalidate.stop()
        self.graph_reset.emit()
        self._emit_analysis()

    def save(self, path: str | Path | None = None) -> Path:
        """Write the graph atomically to ``path`` (default: where it came from)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise GraphFileError("this graph has no file yet; choose where to save it")
        atomic_write(target, dumps(self.graph).encode("utf-8"))
        unsaved = self.runs_dir() if self.path is None else None
        self._set_path(target)
        if unsaved is not None:  # its first file: the runs go next to it
            if self.locked:  # the training process is writing one of them
                self._runs_to_move = unsaved
            else:
                self._move_runs(unsaved)
        self.undo_stack.setClean()
        return target

    # ---- runs --------------------------------------------------------------------------
    def runs_dir(self) -> Path:
        """Where this graph's runs are kept (``core.runs``): next to its file
        (``mlp.ncg.json`` -> ``mlp.runs/``), or for a graph not saved yet in the editor's
        own folder, under a key of this document's; a shipped example's there too, under
        its name."""
        from core.runs.store import runs_dir_for, unsaved_runs_dir
        from gui import files
        if self.path is not None:
            if self.path.resolve().parent == files.EXAMPLES_DIR.resolve():
                # a shipped example stays as it is shipped: its runs go to the editor's
                # folder, under the example's name (kept over sessions, as a file's are)
                stem = self.path.name.removesuffix(".ncg.json").removesuffix(".json")
                return unsaved_runs_dir(files.home(), f"example-{stem}")
            target = runs_dir_for(self.path)
            if not os.access(target if target.exists() else target.parent, os.W_OK):
                # a folder the user cannot write (a shared, read-only place): the runs go to
                # the editor's folder, under the file's name and a digest of its full path
                digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:8]
                stem = self.path.name.removesuffix(".ncg.json").removesuffix(".json")
                return unsaved_runs_dir(files.home(), f"readonly-{stem}-{digest}")
            return target
        return unsaved_runs_dir(files.home(), self.runs_key)

    def run_store(self):
        """The ``core.runs.store.RunStore`` of ``runs_dir``."""
        from core.runs.store import RunStore
        return RunStore(self.runs_dir())

    def _move_runs(self, unsaved: Path) -> None:
        """The runs recorded before the graph had a file go next to it (a path_changed
        follows for the views)."""
        from core.runs.store import RunStore
        self._runs_to_move = None
        if self.path is None:
            return
        try:
            RunStore(unsaved).move_to(self.runs_dir())
        except NeuroCanvasError as e:  # they stay where they were, listed nowhere
            log.warning("could not move the runs of the unsaved graph: %s", e)
            return
        self.path_changed.emit(self.path)

    def to_json(self) -> str:
        return dumps(self.graph)

    def _set_path(self, path: Path | None) -> None:
        moved = (path.resolve().parent if path else None) != \
            (self.path.resolve().parent if self.path else None)
        self.path = path
        if moved and self._analysis is not None:  # a relative dataset path means another file
            self._analysis = None
            self._revalidate.start()
        self.path_changed.emit(path)


def default_params(type_name: str) -> dict[str, Any]:
    """The parameters a new node of this type starts with (its ``starter_params``)."""
    cls = catalogue.get(type_name)
    return copy.deepcopy(cls.starter_params) if cls is not None else {}


def _stem(nid: str) -> str:
    """``fc12`` -> ``fc``: the prefix a fresh id for a pasted copy grows from."""
    return nid.rstrip("0123456789")


