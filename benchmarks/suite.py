"""``main.py bench``: our training step against PyTorch's on identical work, same run.

For each workload both sides get the same model (weights copied), the same batch and the
same optimizer. Timings alternate between the two sides in rounds so that machine noise
hits both alike; the median ms per step of each side is reported with their ratio
(ours / PyTorch: below 1 means we are faster).
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

from benchmarks.workloads import Workload, all_workloads, torch_model
from core.fileformat import graph_from_dict
from core.files import atomic_write
from core.network import Network
from core.optim import make_optimizer
from core.training import parse_training, training_step
from core.validate import analyze


def _ours(w: Workload, batch: dict):
    a = analyze(graph_from_dict(w.graph))
    a.raise_if_invalid()
    cfg = parse_training(w.graph["training"])
    net = Network(a, seed=0)
    opt = make_optimizer(cfg.optimizer, list(net.params.items()))

    def step():
        training_step(net, opt, batch, cfg)
    return net, step


def _theirs(w: Workload, net: Network, batch: dict):
    import torch

    model = (w.torch_factory or torch_model)(w.graph, net.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=w.graph["training"]["optimizer"]["lr"])
    x = torch.from_numpy(batch["x"])
    y = torch.from_numpy(batch["y"])
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        loss.item()  # read the loss, as our step does
        opt.step()
    return step


def _time(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1000.0


def run(quick: bool = False, out=sys.stdout) -> list[dict]:
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch, torch_version = None, None
    rounds, per_round = (3, 3) if quick else (7, 10)
    rows = []
    out.write(f"{'workload':<13} {'ours ms/step':>13} {'torch ms/step':>14} {'ratio':>8}"
              f"  (ours / PyTorch {torch_version or 'missing'})\n")
    for w in all_workloads(quick):
        rng = np.random.default_rng(0)
        batch = w.make_batch(rng, w.batch)
        net, ours = _ours(w, batch)
        theirs = _theirs(w, net, batch) if torch is not None else None
        ours()  # warm-up: first steps allocate optimizer state and scratch buffers
        if theirs:
            theirs()
        ts_ours, ts_theirs = [], []
        for _ in range(rounds):
            ts_ours.append(_time(ours, per_round))
            if theirs:
                ts_theirs.append(_time(theirs, per_round))
        row = {"workload": w.name, "description": w.description,
               "ours_ms": statistics.median(ts_ours),
               "torch_ms": statistics.median(ts_theirs) if ts_theirs else None}
        row["ratio"] = row["ours_ms"] / row["torch_ms"] if row["torch_ms"] else None
        rows.append(row)
        _print_row(row, out)
    return rows


def _print_row(row: dict, out) -> None:
    t = f"{row['torch_ms']:14.2f}" if row["torch_ms"] is not None else f"{'-':>14}"
    r = f"{row['ratio']:8.2f}" if row["ratio"] is not None else "  PyTorch not installed"
    out.write(f"{row['workload']:<13} {row['ours_ms']:13.2f} {t} {r}  {row['description']}\n")
    out.flush()


def cmd_bench(args) -> int:
    rows = run(quick=args.quick)
    if args.json:
        import platform
        doc = {"machine": platform.machine(), "python": platform.python_version(),
               "numpy": np.__version__, "results": rows}
        atomic_write(args.json, (json.dumps(doc, indent=2) + "\n").encode())
    return 0


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="time our training step against PyTorch's")
    b.add_argument("--quick", action="store_true", help="a short run")
    b.add_argument("--json", metavar="OUT.json", help="also write the table as JSON")
    b.set_defaults(func=cmd_bench)
