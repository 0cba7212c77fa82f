"""An independent check of ``main.py bench``'s ratios, through the command line.

    python -m benchmarks.crosscheck [--workload NAME ...] [--steps N] [--against BENCH.json]

For each workload it runs, one process at a time:

- ours: ``python main.py train GRAPH --steps N --batch-size B --init-weights W --log M`` as a
  command of its own (a fresh process, nothing of the bench's code around it), on an npz
  dataset of the workload's shapes; the step time is the median gap between the metrics
  log's step events after the first ``--warmup`` steps;
- torch: the PyTorch loop of the bench (``benchmarks.side torch``) in a process of its own;

each ``--rounds`` times, alternating, and prints the median of ours over the median of
torch. With ``--against`` (a ``main.py bench --json`` file) it also prints
the bench's loop / torch for the same workload and how far the two ratios are apart.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.side import train_argv
from benchmarks.suite import ROOT, Settings, run_side, write_weights
from benchmarks.workloads import Workload, all_workloads, by_name


def train_cli_ms(w: Workload, weights: Path, folder: Path, steps: int, warmup: int) -> float:
    """Median ms between step events of ``main.py train --log``, run as its own process."""
    argv = train_argv(w, weights, folder, 0, steps, tag="-cli")
    log = Path(argv[-1])
    cmd = [sys.executable, str(ROOT / "main.py"), *argv]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"main.py train failed: {proc.stderr.strip()[-300:]}")
    times = [json.loads(line)["time"] for line in log.read_text(encoding="utf-8").splitlines()
             if '"event": "step"' in line or '"event":"step"' in line]
    gaps = np.diff(np.asarray(times))[warmup:] * 1000.0
    return float(np.median(gaps))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.crosscheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", action="append", help="only this workload (repeatable)")
    p.add_argument("--steps", type=int, default=60, help="steps of main.py train")
    p.add_argument("--warmup", type=int, default=5, help="steps left out at the start")
    p.add_argument("--rounds", type=int, default=3,
                   help="processes per side and workload (alternating); the median is kept")
    p.add_argument("--against", type=Path, help="a main.py bench --json file to compare with")
    args = p.parse_args(argv)
    ws = [by_name(n) for n in args.workload] if args.workload else all_workloads(quick=True)
    bench = {}
    if args.against:
        doc = json.loads(args.against.read_text(encoding="utf-8"))
        bench = {r["workload"]: r for r in doc.get("results") or []}
    s = Settings(seconds=1.0, warmup=3, min_steps=10, max_steps=400, rounds=1, pause=1.0,
                 timeout=900)
    print("| workload | main.py train ms | torch ms | ours / torch | bench loop / torch | apart |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="neurocanvas-crosscheck-") as tmp:
        folder = Path(tmp)
        for w in ws:
            weights = write_weights(w, folder)
            mine, other = [], []
            for _ in range(max(args.rounds, 1)):
                mine.append(train_cli_ms(w, weights, folder, args.steps, args.warmup))
                time.sleep(s.pause)
                other.append(run_side("torch", w, weights, folder, s)["step"]["median"])
                time.sleep(s.pause)
            ours, theirs = float(np.median(mine)), float(np.median(other))
            ratio = ours / theirs
            b = bench.get(w.name, {}).get("ratio")
            apart = f"{abs(ratio / b - 1) * 100:.0f} %" if b else "-"
            bs = f"{b:.2f}" if b else "-"
            print(f"| `{w.name}` | {ours:.2f} | {theirs:.2f} | {ratio:.2f} | {bs} | {apart} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
