"""GUI training throughput against the command line, on the same graph (docs/live-training.md).

    QT_QPA_PLATFORM=offscreen python -m benchmarks.gui_throughput [GRAPH] [--steps N] [--window]

Reports steps per second of ``main.py train``'s loop (a Trainer run with the same callback
setup as the CLI: events to a no-op callback, no queue) and of the GUI (TrainingController
with the TrainingPanel shown, plots updating; with ``--window`` the whole main window, canvas
heat included), plus the longest gap of a 10 ms heartbeat on the UI thread and the CPU the
GUI process used during the GUI run. Steps per second come from the StepEvent clock of each
run, so dataset loading and start-up are not counted in either.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"


def cli_rate(graph: Path, steps: int, device: str) -> float:
    from core.training import StepEvent, Trainer, parse_training
    from core.validate import load_valid

    a = load_valid(str(graph))
    cfg = parse_training(a.graph.training, steps=steps, device=device)
    times: list[float] = []

    def on_event(ev):  # what cmd_train does without a terminal or a log: nothing per step
        if isinstance(ev, StepEvent) and ev.step in (0, steps - 1):
            times.append(ev.time)

    tr = Trainer(a, cfg, base_dir=graph.parent, on_event=on_event, queue_events=False)
    tr.run()
    return (steps - 1) / (times[-1] - times[0])


def gui_rate(graph: Path, steps: int, device: str, window: bool = False
             ) -> tuple[float, float, float]:
    """(steps per second, longest UI gap in ms, CPU share of the GUI process)."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    QApplication.instance() or QApplication([])
    from gui.document import Document
    from gui.training import TrainingController, TrainingPanel

    if window:
        from gui.main_window import MainWindow
        panel = MainWindow()
        panel.resize(1500, 900)
        panel.open_file(graph)
        ctl = panel.training
        ctl.overrides = {"steps": steps, "device": device}
    else:
        doc = Document()
        doc.open(graph)
        ctl = TrainingController(doc, steps=steps, device=device)
        panel = TrainingPanel(ctl)
        panel.resize(1000, 700)
    panel.show()
    times: list[float] = []
    ctl.steps_batch.connect(lambda evs: times.extend(
        e.time for e in evs if e.step in (0, steps - 1)))
    beats: list[float] = []
    hb = QTimer()
    hb.setInterval(10)
    hb.timeout.connect(lambda: beats.append(time.monotonic()))
    hb.start()
    loop = QEventLoop()  # as the application runs: blocked in Qt's event loop between events
    ctl.finished.connect(lambda _done: loop.quit())
    c0 = time.process_time()  # this process's CPU, all its threads
    t0 = time.monotonic()
    ctl.start()
    loop.exec()
    t1 = time.monotonic()
    c1 = time.process_time()
    hb.stop()
    cpu = (c1 - c0) / (t1 - t0)
    during = [b for b in beats if b >= t0]
    gap = max(b - a for a, b in zip([t0] + during, during + [t1], strict=True))
    ctl.shutdown()
    if window:
        panel.document.undo_stack.setClean()
    panel.close()
    return (steps - 1) / (times[-1] - times[0]), 1000 * gap, cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("graph", nargs="?", default=str(DEFAULT))
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--window", action="store_true",
                   help="the whole main window (canvas, heat, panels), not the panel alone")
    p.add_argument("--json", metavar="OUT.json")
    args = p.parse_args(argv)
    graph = Path(args.graph)
    cli, gui, gaps, cpus = [], [], [], []
    for _ in range(args.repeat):  # interleaved, so drift of the machine hits both alike
        cli.append(cli_rate(graph, args.steps, args.device))
        r, g, c = gui_rate(graph, args.steps, args.device, args.window)
        gui.append(r)
        gaps.append(g)
        cpus.append(c)
    best_cli, best_gui = max(cli), max(gui)
    res = {"graph": graph.name, "steps": args.steps, "device": args.device,
           "view": "main window" if args.window else "training panel",
           "cli_steps_per_s": round(best_cli, 1), "gui_steps_per_s": round(best_gui, 1),
           "ratio": round(best_gui / best_cli, 3), "longest_ui_gap_ms": round(max(gaps), 1),
           "all_cli": [round(x, 1) for x in cli], "all_gui": [round(x, 1) for x in gui],
           "all_gaps_ms": [round(x, 1) for x in gaps],
           "gui_process_cpu": [round(x, 2) for x in cpus]}
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
