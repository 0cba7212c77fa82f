"""benchmarks.crosscheck: main.py train as a command of its own against the torch loop (what
is asserted is the table, never a time)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT

pytest.importorskip("torch")


def test_crosscheck_times_the_command_line_and_compares_with_a_bench_file(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"results": [{"workload": "mlp_tiny", "ratio": 0.5}]}))
    r = subprocess.run([sys.executable, "-m", "benchmarks.crosscheck", "--workload", "mlp_tiny",
                        "--steps", "12", "--warmup", "2", "--rounds", "1", "--against",
                        str(bench)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("| `mlp_tiny`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    ours, theirs, ratio = float(cells[1]), float(cells[2]), float(cells[3])
    assert ours > 0 and theirs > 0
    # the table rounds ms to two decimals and takes the ratio from the unrounded figures:
    # on a fast machine (0.17 / 0.23 ms) that rounding alone moves ours / theirs by 5 %
    slack = (ours / theirs) * (0.005 / ours + 0.005 / theirs) + 0.005
    assert ratio == pytest.approx(ours / theirs, abs=slack)
    assert cells[4] == "0.50" and cells[5].endswith("%")
