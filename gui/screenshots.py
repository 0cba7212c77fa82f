"""Render the screenshots in docs/ from offscreen windows, so they always show the real UI.

    QT_QPA_PLATFORM=offscreen python -m gui.screenshots docs/images

Writes editor-light.png, editor-dark.png and, after a short training run, training.png;
runs.png shows the run history with two runs of the MLP example compared.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="docs/images")
    ap.add_argument("--example", default="cnn_digits.ncg.json")
    ap.add_argument("--train-seconds", type=float, default=8.0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    # A fresh home: no saved window layout, recent files or theme from the user's sessions.
    os.environ["NEUROCANVAS_HOME"] = tempfile.mkdtemp(prefix="neurocanvas-shots-")
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    written = [editor(app, out, "light", args.example), editor(app, out, "dark", args.example)]
    written.append(training(app, out, args.example, args.train_seconds))
    written.append(runs(app, out))
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
