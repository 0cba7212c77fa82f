"""kernels.allocator: memory a training step frees is kept for the next, so steps stop
faulting their pages in again (counted, not timed: minor page faults per step of a small
CNN, in processes of their own)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT

SCRIPT = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from kernels.allocator import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()  # once, then remembered
from benchmarks.workloads import lenet
from core.fileformat import graph_from_dict
from core.network import Network
from core.optim import make_optimizer
from core.training import parse_training, training_step
from core.validate import analyze
w = lenet(16)
a = analyze(graph_from_dict(w.graph))
cfg = parse_training(w.graph["training"])
net = Network(a, seed=0)
opt = make_optimizer(cfg.optimizer, list(net.params.items()))
batch = w.make_batch(np.random.default_rng(0), 16)
for _ in range(3):
    training_step(net, opt, batch, cfg)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    training_step(net, opt, batch, cfg)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
"""


def faults_per_step(mode: str, **env) -> float:
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=ROOT, capture_output=True,
                       text=True, timeout=120,
                       env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **env})
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_stops_the_page_faults_of_every_step():
    default, kept = faults_per_step("default"), faults_per_step("keep")
    assert default > 100  # large arrays go back to the kernel and fault in again
    assert kept < default / 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_environment_can_keep_the_defaults():
    r = subprocess.run([sys.executable, "-c", "from kernels.allocator import "
                        "keep_freed_memory as k; print(k())"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60,
                       env={**os.environ, "NEUROCANVAS_MALLOC": "default"})
    assert r.stdout.strip() == "False"
