"""How the canvas copes with a large graph: open a 300-node graph, then pan over it.

Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python -m benchmarks.editor_scale`` (a display
works too). It builds a valid 300-node graph file (seven parallel Dense/ReLU branches
merged by an Add, laid out by ``core.layout``), then times:

- opening it: reading and validating the file (Document.open), building the scene, and the
  first full paint of the view;
- panning: the time per frame of scrolling the view by 12 px and repainting it
  synchronously, at zoom 1 (nodes drawn in full) and fitted (all 300 nodes on screen, the
  level of detail without text), and the same with the whole viewport repainted each frame;
- one edit: a parameter change, revalidation and the scene catching up.

Prints one line per figure (milliseconds). Not a test: the figures depend on the machine.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

from core.fileformat import graph_from_dict  # noqa: E402
from core.layout import layered_layout  # noqa: E402

NODES = 300
BRANCHES = 7
WIDTH = 32


def big_graph(n_nodes: int = NODES, branches: int = BRANCHES) -> dict:
    """A valid graph of exactly ``n_nodes`` nodes, laid out in layers."""
    nodes = [{"id": "x", "type": "Input", "params": {"shape": [WIDTH]}},
             {"id": "y", "type": "Target", "params": {"shape": [WIDTH], "dtype": "float32"}},
             {"id": "merge", "type": "Add", "params": {"inputs": branches}},
             {"id": "head", "type": "Dense", "params": {"units": WIDTH}},
             {"id": "loss", "type": "MSELoss", "params": {}}]
    edges = []
    per_branch = (n_nodes - len(nodes)) // branches
    extra = (n_nodes - len(nodes)) - per_branch * branches
    for b in range(branches):
        prev = "x"
        length = per_branch + (1 if b < extra else 0)
        for i in range(length):
            nid = f"b{b}_{i}"
            kind = ("Dense", {"units": WIDTH}) if i % 2 == 0 else ("ReLU", {})
            nodes.append({"id": nid, "type": kind[0], "params": kind[1]})
            edges.append({"from": prev, "to": nid})
            prev = nid
        edges.append({"from": prev, "to": f"merge:in{b}"})
    edges += [{"from": "merge", "to": "head"}, {"from": "head", "to": "loss:pred"},
              {"from": "y", "to": "loss:target"}]
    d = {"format": "neurocanvas.graph", "version": 1, "name": "scale-300",
         "nodes": nodes, "edges": edges}
    pos = layered_layout(graph_from_dict(d))
    for n in nodes:
        n["pos"] = list(pos[n["id"]])
    assert len(nodes) == n_nodes
    return d


def _frames(view, app, frames: int, step: int, full: bool) -> list[float]:
    bar = view.horizontalScrollBar()
    times = []
    direction = 1
    for _ in range(frames):
        if not bar.minimum() < bar.value() + direction * step < bar.maximum():
            direction = -direction
        t0 = time.perf_counter()
        bar.setValue(bar.value() + direction * step)
        if full:
            view.viewport().update()
        view.viewport().repaint()
        app.processEvents()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _report(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"{name:<44} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   "
          f"max {ms[-1]:7.2f} ms   ({len(ms)} frames)")


def main(argv: list[str]) -> int:
    frames = int(argv[1]) if len(argv) > 1 else 150
    app = QApplication.instance() or QApplication(argv)
    from gui.canvas import GraphScene, GraphView
    from gui.canvas.view import MIN_ZOOM
    from gui.document import Document

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale-300.ncg.json"
        path.write_text(json.dumps(big_graph()), encoding="utf-8")

        t0 = time.perf_counter()
        doc = Document()
        doc.open(path)
        a = doc.flush()
        t1 = time.perf_counter()
        scene = GraphScene(doc)
        t2 = time.perf_counter()
        view = GraphView(scene)
        view.resize(1600, 1000)
        view.show()
        view.fit_view(min_zoom=MIN_ZOOM)  # the whole graph, however small
        app.processEvents()
        view.viewport().repaint()
        t3 = time.perf_counter()
        assert a.ok, a.problems[:3]
        print(f"graph: {len(doc.graph.nodes)} nodes, {len(doc.graph.edges)} edges, "
              f"valid: {a.ok}; viewport 1600x1000, platform {app.platformName()}")
        print(f"{'open: read + validate (Document.open)':<44} {1000 * (t1 - t0):8.1f} ms")
        print(f"{'open: build the scene (GraphScene)':<44} {1000 * (t2 - t1):8.1f} ms")
        print(f"{'open: view + first paint (fitted)':<44} {1000 * (t3 - t2):8.1f} ms")
        print(f"{'open: total':<44} {1000 * (t3 - t0):8.1f} ms")

        fitted = view.zoom()
        _frames(view, app, 10, 12, False)  # warm the item caches
        _report(f"pan, fitted (zoom {fitted:.2f}, all nodes)", _frames(view, app, frames,
                                                                         12, False))
        _report("pan, fitted, full repaint each frame", _frames(view, app, frames, 12, True))
        view.set_zoom(1.0)
        view.centerOn(scene.nodes_rect().center())
        _frames(view, app, 10, 12, False)
        _report("pan, zoom 1.0", _frames(view, app, frames, 12, False))
        _report("pan, zoom 1.0, full repaint each frame", _frames(view, app, frames, 12,
                                                                   True))

        t0 = time.perf_counter()
        doc.set_param("x", "shape", [WIDTH + 1])  # every Dense downstream changes
        doc.flush()
        view.viewport().repaint()
        print(f"{'edit: param change + revalidate + repaint':<44} "
              f"{1000 * (time.perf_counter() - t0):8.1f} ms")
        t0 = time.perf_counter()
        doc.undo_stack.undo()
        doc.flush()
        view.viewport().repaint()
        print(f"{'edit: its undo':<44} {1000 * (time.perf_counter() - t0):8.1f} ms")
        scene.detach()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
