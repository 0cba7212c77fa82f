"""``main.py bench``'s mechanism, not its speed: each side runs in a process of its own and
prints a result the suite can read, both sides start from the same weights and batch, the
floor finds every matrix product of a step, and the JSON holds the documented fields. No
timing is asserted anywhere."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks import suite
from benchmarks.side import GemmReplay, parse_result, stats, steps_for, trace_gemms
from benchmarks.workloads import SEQ_CLASSES, SEQ_F, SEQ_T, from_spec, tiny_mlp
from core.fileformat import graph_from_dict
from core.network import Network
from core.validate import analyze
from kernels import jit

ROOT = Path(__file__).resolve().parents[1]
TINY = suite.Settings(seconds=0.02, warmup=1, min_steps=3, max_steps=4, rounds=1, pause=0.0,
                      timeout=300.0)


@pytest.fixture(scope="module")
def tiny_run():
    """One bench run of the tiny MLP: one process per side; (document, printed text)."""
    out = io.StringIO()
    doc = suite.run(workloads=[tiny_mlp()], settings=TINY, out=out)
    return doc, out.getvalue()


def test_each_side_prints_a_result_the_suite_reads(tiny_run):
    doc, printed = tiny_run
    (row,) = doc["results"]
    assert row["workload"] == "mlp_tiny" and row["batch"] == 8
    for part in ("loop", "step", "floor"):
        p = row[part]
        assert p["steps"] >= TINY.min_steps and p["p25"] <= p["median"] <= p["p75"], part
        assert len(p["round_medians"]) == TINY.rounds
    # the loop is main.py train's: the gaps between its log's step events after warm-up
    assert TINY.min_steps <= row["loop"]["steps"] <= TINY.max_steps
    env = row["env"]["ours"]
    assert env["numpy"] == np.__version__ and env["python"]
    assert "| `mlp_tiny` |" in printed and "ours loop ms" in printed
    assert re.search(r"- ours: Python [\d.]+, NumPy [\d.]+", printed)


def test_both_sides_start_from_the_same_weights_and_batch(tiny_run):
    doc, printed = tiny_run
    (row,) = doc["results"]
    if row["env"]["torch"] is None:
        pytest.skip("PyTorch is not installed")
    # the first step's loss is taken before any update: equal weights, equal batch
    first = row["first_loss"]
    assert first["torch"] == pytest.approx(first["ours"], rel=1e-5)
    assert row["torch"]["steps"] >= TINY.min_steps
    assert row["ratio"] == pytest.approx(row["loop"]["median"] / row["torch"]["median"])
    threads = row["env"]["torch"]["threads"]
    assert isinstance(threads, int) and threads >= 1
    assert f"{threads} threads (interop" in printed


def test_the_json_holds_the_documented_fields(tiny_run, tmp_path):
    doc, _ = tiny_run
    back = json.loads(json.dumps(doc))  # what --json writes is plain JSON
    assert back["format"] == suite.FORMAT and back["version"] == suite.VERSION
    assert set(suite.DOC_FIELDS) <= set(back)
    (row,) = back["results"]
    assert set(suite.ROW_FIELDS) <= set(row)
    for part in ("loop", "step", "floor"):
        assert set(suite.PART_FIELDS) <= set(row[part])
    assert row["floor_gemms"] == 7 and row["floor_gflop"] > 0  # 5 GEMMs, 2 bias GEMVs
    # every field is explained in the docs' Speed section
    text = (ROOT / "docs" / "engine.md").read_text(encoding="utf-8")
    speed = text[text.index("## Speed"):]
    for f in {*suite.DOC_FIELDS, *suite.ROW_FIELDS, *suite.PART_FIELDS, *suite.SCALING_FIELDS}:
        assert f"`{f}`" in speed, f
    md = suite.markdown(back)
    assert "| `mlp_tiny` |" in md and "geomean loop / torch" in md


def _traced(spec: dict):
    w = from_spec(spec)
    a = analyze(graph_from_dict(w.graph))
    assert a.ok, [str(p) for p in a.problems]
    batch = w.make_batch(np.random.default_rng(0), w.batch)
    calls, sizes = trace_gemms(Network(a, seed=0), batch)
    return w, batch, calls, sizes


def test_the_floor_replays_the_very_products_of_the_step():
    w, batch, calls, sizes = _traced(tiny_mlp().spec)
    b, (f_in, h, f_out) = w.batch, w.spec["sizes"]
    expected = Counter([((b, f_in), (f_in, h)), ((b, h), (h, f_out)),  # forward
                        ((h, b), (b, f_out)), ((b, f_out), (f_out, h)),  # fc2: dW, dx
                        ((f_in, b), (b, h)),  # fc1: dW only (its input is data)
                        ((b,), (b, f_out)), ((b,), (b, h))])  # the bias gradients: GEMVs
    assert Counter((g.a.shape, g.b.shape) for g in calls) == expected
    replay = GemmReplay(calls, sizes)
    replay()
    for g, (a, bm, out) in zip(calls, replay.ops, strict=True):
        # the same layouts: x.T @ g reads a transposed view, as the step's GEMM does
        assert (a.strides, bm.strides, out.shape) == (g.a.strides, g.b.strides, g.out.shape)
        assert np.isfinite(out).all()
    # the products are real ones (a result buffer may be reused by a later product, as the
    # step's memory is: check each right after it is computed)
    for a, bm, out in replay.ops:
        np.matmul(a, bm, out=out)
        np.testing.assert_allclose(out, np.ascontiguousarray(a) @ np.ascontiguousarray(bm),
                                   rtol=1e-5, atol=1e-7)
    # tracing is over: np.matmul and the array creators are NumPy's own again
    assert np.matmul is np.linalg.matmul or type(np.matmul) is np.ufunc
    assert type(np.zeros((1,))) is np.ndarray


def test_the_floor_finds_every_product_of_conv_and_recurrent_layers():
    # all their floating-point work: a missed GEMM would show as missing flops
    b = 2
    _, _, calls, _ = _traced({"family": "lenet", "batch": b})
    conv1 = 2 * 32 * 9 * (b * 28 * 28)  # [F, C*k*k] @ [C*k*k, N*H*W]
    conv2 = 2 * 64 * 288 * (b * 14 * 14)
    dense = 2 * b * 3136 * 128 + 2 * b * 128 * 10
    bias = 2 * (32 * b * 28 * 28 + 64 * b * 14 * 14) + 2 * b * (128 + 10)  # GEMVs
    assert sum(g.flops for g in calls) == 2 * conv1 + 3 * conv2 + 3 * dense + bias
    h, g4 = 8, 4 * 8  # LSTM: four gates
    _, _, calls, _ = _traced({"family": "recurrent", "kind": "LSTM", "name": "lstm_t",
                              "batch": b, "hidden": h})
    fwd = 2 * SEQ_T * b * SEQ_F * g4 + 2 * (SEQ_T - 1) * b * h * g4  # projection, h @ W_hh
    bwd = 2 * (SEQ_T - 1) * b * g4 * h + 2 * SEQ_F * SEQ_T * b * g4 + 2 * h * (SEQ_T - 1) * b * g4
    head = 3 * 2 * b * h * SEQ_CLASSES + 2 * b * SEQ_CLASSES  # and its bias GEMV
    if jit.enabled():  # the compiled LSTM, traced as it runs: both weight gradients in one
        # product over [x_t; h_{t-1}] of all T steps (h_0 = 0 one more step of zeros),
        # and the bias gradient as a GEMV
        bwd += 2 * h * b * g4 + 2 * g4 * SEQ_T * b
    assert sum(g.flops for g in calls) == fwd + bwd + head


def test_the_floor_traces_the_compiled_kernels_path():
    """With numba the traced step runs the compiled LSTM, as training does: one GEMM a step
    for the four gates ([4H, H] @ [H, B]), not the NumPy path's four per-gate ones."""
    if not jit.enabled():
        pytest.skip("numba is not installed: the NumPy path is what runs and is traced")
    b, h = 3, 8
    _, _, calls, _ = _traced({"family": "recurrent", "kind": "LSTM", "name": "lstm_t",
                              "batch": b, "hidden": h})
    per_step = [g for g in calls if g.a.shape == (4 * h, h) and g.b.shape == (h, b)]
    assert len(per_step) == SEQ_T - 1
    assert not any(len(g.out.shape) == 3 and g.out.shape[0] == 4 for g in calls)


def test_a_failing_side_is_one_line_naming_the_workload(tmp_path):
    w = tiny_mlp()
    with pytest.raises(suite.BenchError) as err:
        suite.run_side("ours", w, tmp_path / "missing.npz", tmp_path, TINY)
    msg = str(err.value)
    assert "the ours side of workload 'mlp_tiny' failed" in msg and "missing.npz" in msg
    assert "\n" not in msg and "Traceback" not in msg


def test_the_command_refuses_an_unknown_workload(capsys):
    import main
    assert main.main(["bench", "--workload", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no workload named 'nope'" in err and "mlp_small" in err and err.count("\n") == 1


def test_results_and_step_counts():
    with pytest.raises(ValueError):
        parse_result("no result here\n")
    assert parse_result("noise\n" + suite.RESULT_PREFIX + '{"a": 1}\n') == {"a": 1}
    s = stats([3.0, 1.0, 2.0, 10.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.0, 10.0, 4)
    assert steps_for(10.0, 1.0, 5, 50) == 50 and steps_for(1000.0, 1.0, 5, 50) == 5
    assert steps_for(10.0, 0.2, 5, 50) == 20


def test_the_scaling_table_has_a_row_per_point():
    row = {"series": "lstm", "axis": "width", "value": 256, "batch": 32,
           "spec": {"family": "recurrent", "hidden": 256},
           "loop": {"median": 30.0, "p25": 29.0, "p75": 31.5}, "step": None,
           "torch": {"median": 20.0, "p25": 19.0, "p75": 21.0}, "floor": None,
           "ratio": 1.5, "loop_floor": None}
    line = suite.scaling_row(row)
    assert line.startswith("| lstm | 32 | 256 | 30.00 [29.00-31.50] | - | 20.00 ")
    assert "| 1.50 |" in line
    assert line.count("|") == suite.SCALING_HEAD.splitlines()[0].count("|")


def test_tracing_with_an_empty_kernel_cache_leaves_the_kernels_working(tmp_path):
    """With numba's cache empty, a kernel compiles at its first call. One compiled while the
    tracer has ``np.zeros`` and the other creators replaced by its wrappers left numba
    unable to compile a kernel using ``np.zeros`` afterwards, for the rest of the process
    (a clean clone failed every recurrent test after the bench tests had traced an MLP),
    so the floor warms the kernels up before it traces."""
    if not jit.enabled():
        pytest.skip("numba is not installed")
    code = (
        "import numpy as np\n"
        "from benchmarks.side import trace_gemms\n"
        "from benchmarks.workloads import from_spec\n"
        "from core.fileformat import graph_from_dict\n"
        "from core.network import Network\n"
        "from core.validate import analyze\n"
        "def net(spec):\n"
        "    w = from_spec(spec)\n"
        "    a = analyze(graph_from_dict(w.graph))\n"
        "    return Network(a, seed=0), w.make_batch(np.random.default_rng(0), w.batch)\n"
        "assert trace_gemms(*net({'family': 'mlp', 'name': 'm', 'sizes': [8, 16, 4],"
        " 'batch': 8}))[0]\n"
        "lstm, batch = net({'family': 'recurrent', 'kind': 'LSTM', 'name': 'l', 'batch': 2,"
        " 'hidden': 4})\n"
        "assert np.isfinite(float(lstm.loss_and_grads(batch).loss))\n"
        "print('ok')\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]
