"""Render the screenshots in docs/ from offscreen windows, so they always show the real UI.

    QT_QPA_PLATFORM=offscreen python -m gui.screenshots docs/images

Writes editor-light.png, editor-dark.png and, after a short training run, training.png;
runs.png shows the run history with two runs of the MLP example compared; embedding.png the
embedding of the Siamese triplet lesson after training, cost.png the cost heat (time per
training step) of the CNN example; plane.png the input plane (decision boundary and unit
maps) of the spirals MLP after training; backprop.png the walk through one training step of
the spirals MLP, halfway back (the Backprop tab, edges labelled with their gradient norms).
``--only embedding cost`` renders just those.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gui import files, theme  # noqa: E402

SIZE = (1500, 900)


def _settle(app: QApplication, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def _window(app: QApplication, example: str, theme_name: str):
    from gui.main_window import MainWindow

    theme.apply_theme(theme_name, app)
    w = MainWindow()
    w.resize(*SIZE)
    w.show()
    # a copy: the runs trained here are kept next to the file, not among the examples
    copy = Path(tempfile.mkdtemp(prefix="neurocanvas-shots-")) / example
    shutil.copyfile(files.EXAMPLES_DIR / example, copy)
    w.open_file(copy)
    _settle(app)
    w.view.fit_view()
    _settle(app)
    return w


def editor(app: QApplication, out: Path, theme_name: str, example: str) -> Path:
    w = _window(app, example, theme_name)
    nodes = list(w.document.graph.nodes)
    if len(nodes) > 2:
        w.scene.select_nodes([nodes[1]])
    _settle(app)
    path = out / f"editor-{theme_name}.png"
    w.grab().save(str(path))
    w.document.undo_stack.setClean()
    w.close()
    return path


def training(app: QApplication, out: Path, example: str, seconds: float) -> Path:
    w = _window(app, example, "light")
    w.train()
    end = time.monotonic() + seconds
    while time.monotonic() < end and w.training.state != "idle":
        app.processEvents()
        time.sleep(0.01)
    w.stop_training()
    _settle(app, 1.0)
    path = out / "training.png"
    w.grab().save(str(path))
    w.document.undo_stack.setClean()
    w.close()
    return path


def _train(app: QApplication, w) -> None:
    w.train()
    while w.training.state != "idle":
        app.processEvents()
        time.sleep(0.01)
    _settle(app, 0.5)


def runs(app: QApplication, out: Path, epochs: int = 4) -> Path:
    """The run history with two runs of the MLP example selected: their curves over the
    live ones, and what differs (optimizer, learning rate, a layer's width) below the list."""
    w = _window(app, "mlp_digits.ncg.json", "light")
    t = json.loads(json.dumps(w.document.graph.training))
    w.document.set_training({**t, "epochs": epochs, "optimizer": {"type": "adam", "lr": 0.01}})
    _train(app, w)
    w.document.set_training({**t, "epochs": epochs, "optimizer": {"type": "sgd", "lr": 0.05}})
    w.document.set_param("fc1", "units", 32)
    _train(app, w)
    history = w.training_panel.runs
    history.select(list(history.runs))
    end = time.monotonic() + 5.0  # their metrics are read on a worker thread
    while len(w.training_panel.loss.overlays) < 2 and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    w.training_panel.refresh()
    _settle(app, 0.5)
    path = out / "runs.png"
    w.grab().save(str(path))
    w.document.undo_stack.setClean()
    w.close()
    return path


def _wait(app: QApplication, done, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while not done() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def embedding(app: QApplication, out: Path, node: str = "a_emb") -> Path:
    """The triplet lesson after training, its embedding node selected: the Embedding tab
    shows the digits' clusters."""
    w = _window(app, "lesson_siamese_triplets.ncg.json", "light")
    _train(app, w)
    panel = w.training_panel
    panel.tabs.setCurrentWidget(panel.embedding)
    w.scene.select_nodes([node])
    _wait(app, lambda: panel.embedding.embedding is not None
          and panel.embedding.embedding.step > 0)
    _settle(app, 0.5)
    path = out / "embedding.png"
    w.grab().save(str(path))
    w.document.undo_stack.setClean()
    w.close()
    return path


def cost(app: QApplication, out: Path, example: str, mode: str = "time",
         check: str = "conv2") -> Path:
    """The cost heat: each node tinted by its measured time per training step, its value
    on a badge, the scale in the legend and the totals in the status bar; and the gradient
    check of node ``check``: its badge, and its details in the inspector."""
    w = _window(app, example, "light")
    w.bottom_tabs.setCurrentWidget(w.training_panel)
    box = w.training_panel.heat_mode
    box.setCurrentIndex(box.findData(mode))
    heat = w.training_panel.cost
    _wait(app, lambda: heat.cost is not None or heat.error is not None)
    if check in w.document.graph.nodes:
        w.scene.select_nodes([check])
        w.check_gradients(check)
        _wait(app, lambda: check not in w.grad_check.pending)
    _settle(app, 0.5)
    path = out / "cost.png"
    w.grab().save(str(path))
    w.document.undo_stack.setClean()
    w.close()
    return path


def plane(app: QApplication, out: Path, node: str = "fc2") -> Path:
    """The spirals MLP after training, on its "Input plane" tab: the decision boundary with
    the data on top, and the maps of ``node``'s units over the same plane."""
    w = _window(app, "mlp_spirals.ncg.json", "light")
    _train(app, w)
    panel = w.training_panel
    panel.tabs.setCurrentWidget(panel.plane)
    w.scene.select_nodes([node])
    view = panel.plane
    _wait(app, lambda: view.maps is not None and view.maps.step > 0
          and view.maps.unit_node == node and not view.in_flight)
    _settle(app, 0.5)
    path = out / "plane.png"
    w.grab().save(str(path))
    w.document.undo_stack.setClean()
    w.close()
    return path


def backprop(app: QApplication, out: Path, back_stages: int = 3) -> Path:
    """The spirals MLP after training, stepped (F10) into the backward pass of one batch:
    the node being passed ringed, the edges passed labelled with their gradient norms, the
    Backprop tab with the chain rule at that node."""
    w = _window(app, "mlp_spirals.ncg.json", "light")
    w.resize(SIZE[0], SIZE[1] + 250)  # room for the canvas above the tab
    _train(app, w)
    w.set_dock_layout("editing")
    w.bottom_tabs.setCurrentWidget(w.training_panel)
    w.resizeDocks([w.bottom_dock], [520], Qt.Vertical)
    _settle(app)
    w.view.fit_view()
    view = w.training_panel.backprop

    def settled() -> bool:
        return not view._in_flight and not view._queue

    w.step_backprop()
    _wait(app, lambda: view.state is not None and settled())
    for _ in range(2):  # forward -> loss -> backward
        view.next_phase()
        _wait(app, settled)
    for _ in range(back_stages):
        w.step_backprop()
        _wait(app, settled)
    _settle(app, 0.5)
    path = out / "backprop.png"
    w.grab().save(str(path))
    view.end_walk()
    w.document.undo_stack.setClean()
    w.close()
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="docs/images")
    ap.add_argument("--example", default="cnn_digits.ncg.json")
    ap.add_argument("--train-seconds", type=float, default=8.0)
    ap.add_argument("--only", nargs="+", choices=["editor", "training", "runs", "embedding",
                                                  "cost", "plane", "backprop"],
                    help="render just these")
    args = ap.parse_args(argv)
    only = set(args.only or ["editor", "training", "runs", "embedding", "cost", "plane",
                             "backprop"])
    out = Path(args.out)
    # A fresh home: no saved window layout, recent files or theme from the user's sessions.
    os.environ["NEUROCANVAS_HOME"] = tempfile.mkdtemp(prefix="neurocanvas-shots-")
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    written = []
    if "editor" in only:
        written += [editor(app, out, "light", args.example),
                    editor(app, out, "dark", args.example)]
    if "training" in only:
        written.append(training(app, out, args.example, args.train_seconds))
    if "runs" in only:
        written.append(runs(app, out))
    if "embedding" in only:
        written.append(embedding(app, out))
    if "cost" in only:
        written.append(cost(app, out, args.example))
    if "plane" in only:
        written.append(plane(app, out))
    if "backprop" in only:
        written.append(backprop(app, out))
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
