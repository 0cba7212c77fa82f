"""Sweeps (core/runs/sweep.py, ``main.py sweep``, docs/runs.md "Sweeps"): the --set values,
the product of variants, a variant's graph, the shared start, failed variants beside
finished ones, and the command line with several training processes."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core import memory
from core.errors import ParamError
from core.network import Network
from core.runs.store import RunStore
from core.runs.sweep import (
    ALL_OPTIMIZERS,
    apply_variant,
    initial_weights,
    parse_set,
    run_sweep,
    variants,
)
from core.validate import analyze
from core.weights import load_weights, merge_state
from tests.cli_helpers import ROOT, assert_user_error, run
from tests.graphs import build, edge, graph_dict, node, write

TRAINING = {"dataset": {"source": "builtin", "name": "xor", "n": 64}, "validation_split": 0.25,
            "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.5}, "batch_size": 16,
            "epochs": 2, "seed": 3}


def tiny_dict(**training) -> dict:
    """x [2] -> fc1 Dense(8) -> ReLU -> drop1 Dropout -> fc2 Dense(2) -> cross-entropy."""
    return graph_dict(
        [node("x", "Input", shape=[2]), node("fc1", "Dense", units=8), node("act", "ReLU"),
         node("drop1", "Dropout", rate=0.1), node("fc2", "Dense", units=2),
         node("y", "Target", shape=[], dtype="int64"), node("loss", "CrossEntropyLoss")],
        [edge("x", "fc1"), edge("fc1", "act"), edge("act", "drop1"), edge("drop1", "fc2"),
         edge("fc2", "loss:pred"), edge("y", "loss:target")],
        name="tiny", training={**TRAINING, **training})


def tiny(**training):
    return build(tiny_dict(**training))


# ---- parse_set -------------------------------------------------------------------------
@pytest.mark.parametrize("text, key, values", [
    ("optimizer.lr=0.1,0.01", "optimizer.lr", [0.1, 0.01]),
    ("optimizer.type=adam, sgd", "optimizer.type", ["adam", "sgd"]),
    ("batch_size=8,32", "batch_size", [8, 32]),
    ("shuffle=true,false", "shuffle", [True, False]),
    ("steps=null,5", "steps", [None, 5]),
    ("x.shape=[2,3],[4]", "x.shape", [[2, 3], [4]]),
    ('dataset.path="a,b.npz",c.npz', "dataset.path", ["a,b.npz", "c.npz"]),
    ('n.o={"a": [1, 2]},"x]"', "n.o", [{"a": [1, 2]}, "x]"]),
    ("lr=1,1.0,2", "lr", [1, 2]),  # a value given twice counts once
    ("shuffle=true,1", "shuffle", [True, 1]),  # true is not the number 1
    ("optimizer.lr=NaN,1e999", "optimizer.lr", ["NaN", "1e999"]),  # kept as text
    ("optimizer.type=all", "optimizer.type", list(ALL_OPTIMIZERS)),
    ("optimizer.type=adam,all", "optimizer.type",
     ["adam", "sgd", "momentum", "nesterov", "adagrad", "rmsprop"]),
    ("drop1.type=all", "drop1.type", ["all"]),  # only optimizer.type has "all"
])
def test_parse_set_reads_json_values_else_text(text, key, values):
    assert parse_set(text) == (key, values)
    assert [type(v) for v in parse_set(text)[1]] == [type(v) for v in values]


@pytest.mark.parametrize("text", ["lr", "=0.1", " =1", "a b=1", "lr=", "lr=0.1,", "lr=0.1,,2",
                                  "x.shape=[2,3", "x.shape=2]", 'dataset.path="a', "a={[}]"])
def test_parse_set_refuses_text_that_is_not_key_equals_values(text):
    with pytest.raises(ParamError) as e:
        parse_set(text)
    assert e.value.param == "--set"
    assert repr(text) in str(e.value)


# ---- variants --------------------------------------------------------------------------
def test_variants_are_the_product_in_order_last_key_fastest():
    out = variants([("optimizer.type", ["sgd", "adam"]), ("drop1.rate", [0.1, 0.2, 0.3])])
    assert out == [{"optimizer.type": t, "drop1.rate": r}
                   for t in ("sgd", "adam") for r in (0.1, 0.2, 0.3)]
    assert list(out[0]) == ["optimizer.type", "drop1.rate"]
    assert variants([("a", [1])]) == [{"a": 1}]
    assert variants([]) == [{}]


def test_variants_refuse_a_key_set_twice():
    with pytest.raises(ParamError) as e:
        variants([("optimizer.lr", [0.1]), ("optimizer.lr", [0.2])])
    assert e.value.param == "optimizer.lr"


# ---- apply_variant ---------------------------------------------------------------------
def test_apply_variant_sets_training_keys_on_a_copy():
    g = tiny(clip={"value": 0.5})
    before = json.dumps(g.to_dict(), sort_keys=True)
    v = apply_variant(g, {"optimizer.lr": 0.01, "regularization.l2": 1e-3, "clip.norm": 2.0,
                          "batch_size": 8, "seed": 7, "dataset.noise": 0.2, "steps": 4})
    t = v.training
    assert t["optimizer"] == {"type": "sgd", "lr": 0.01, "momentum": 0.5}
    assert t["regularization"] == {"l2": 1e-3}
    assert t["clip"] == {"norm": 2.0}  # norm replaces value: only one can be set
    assert (t["batch_size"], t["seed"], t["steps"]) == (8, 7, 4)
    assert t["dataset"] == {"source": "builtin", "name": "xor", "n": 64, "noise": 0.2}
    assert json.dumps(g.to_dict(), sort_keys=True) == before, "the base graph is untouched"
    assert apply_variant(g, {"steps": None, "clip.value": None}).training.get("clip") == {}
    assert "steps" not in apply_variant(v, {"steps": None}).training


@pytest.mark.parametrize("values", [
    {"optimizer.type": "momentum", "optimizer.momentum": 0.8},
    {"optimizer.momentum": 0.8, "optimizer.type": "momentum"},  # order does not matter
])
def test_optimizer_type_keeps_the_lr_and_drops_the_old_types_settings(values):
    g = tiny()
    assert apply_variant(g, {"optimizer.type": "adam"}).training["optimizer"] == \
        {"type": "adam", "lr": 0.1}  # sgd's momentum is not adam's
    assert apply_variant(g, values).training["optimizer"] == \
        {"type": "momentum", "lr": 0.1, "momentum": 0.8}
    # a graph with no optimizer has parse_training's default
    bare = tiny()
    del bare.training["optimizer"]
    assert apply_variant(bare, {"optimizer.type": "adam"}).training["optimizer"] == \
        {"type": "adam", "lr": 0.01}


def test_apply_variant_sets_node_parameters():
    g = tiny()
    v = apply_variant(g, {"drop1.rate": 0.3, "fc1.units": 16, "fc1.bias": None})
    assert v.nodes["drop1"].params == {"rate": 0.3}
    assert v.nodes["fc1"].params == {"units": 16}
    assert g.nodes["fc1"].params == {"units": 8} and g.nodes["drop1"].params == {"rate": 0.1}
    assert v.training == g.training


@pytest.mark.parametrize("key, words", [
    ("fc9.units", ["fc9", "no node"]),
    ("fc1.rate", ["fc1", "Dense", "units"]),
    ("optimizer.speed", ["optimizer", "lr"]),
    ("regularization.l3", ["l1, l2"]),
    ("clip.max", ["norm, value"]),
    ("learning_rate", ["training setting"]),
    ("drop1", ["training setting"]),
])
def test_apply_variant_names_an_unknown_key(key, words):
    with pytest.raises(ParamError) as e:
        apply_variant(tiny(), {key: 1})
    assert e.value.param == key
    for w in words:
        assert w in str(e.value)


# ---- the shared start ------------------------------------------------------------------
def test_initial_weights_are_the_base_graphs_and_merge_keeps_what_fits():
    g = tiny()
    init = initial_weights(g, ".", 3)
    expected = Network(analyze(g), seed=3).state_dict()
    assert set(init) == {"fc1/W", "fc1/b", "fc2/W", "fc2/b"}
    for k in init:
        np.testing.assert_array_equal(init[k], expected[k])
    assert not np.array_equal(init["fc2/W"], initial_weights(g, ".", 4)["fc2/W"])

    wider = Network(analyze(apply_variant(g, {"fc1.units": 16})), seed=9).state_dict()
    merged, fresh = merge_state(wider, init)
    assert fresh == 3  # fc1/W, fc1/b and fc2/W changed shape; fc2/b is the shared one
    np.testing.assert_array_equal(merged["fc2/b"], init["fc2/b"])
    np.testing.assert_array_equal(merged["fc1/W"], wider["fc1/W"])
    same, none = merge_state(expected, init)
    assert none == 0 and all(np.array_equal(same[k], init[k]) for k in init)


# ---- run_sweep (one variant at a time, in this process) --------------------------------
def test_variants_start_from_the_same_weights_and_then_differ(tmp_path):
    store = RunStore(tmp_path / "runs")
    updates = []
    results = run_sweep(tiny(), [("optimizer.type", ["sgd", "adam", "rmsprop"])],
                        base_dir=tmp_path, store=store, steps=5, jobs=1,
                        on_update=updates.append)
    assert [r.status for r in results] == ["finished"] * 3
    assert [r.label for r in results] == ["sgd", "adam", "rmsprop"]
    assert updates == results
    losses = []
    for r in results:
        steps, epochs = r.run.metrics()
        assert [s.step for s in steps] == [0, 1, 2, 3, 4]
        losses.append([s.loss for s in steps])
        assert r.run.settings["steps"] == 5 and r.run.overrides["steps"] == 5
        assert r.run.settings["optimizer"]["type"] == r.values["optimizer.type"]
        assert r.fresh == 0 and not r.own_start
    assert losses[0][0] == losses[1][0] == losses[2][0], "the same weights and first batch"
    assert len({round(ls[-1], 6) for ls in losses}) == 3, "different optimizers diverge"

    sweep_id = results[0].run.sweep["id"]
    assert all(r.run.sweep == {"id": sweep_id, "values": r.values} for r in results)
    folder = tmp_path / "runs" / "sweeps" / sweep_id
    doc = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    assert doc["format"] == "neurocanvas.sweep" and doc["id"] == sweep_id
    assert doc["sets"] == [{"key": "optimizer.type", "values": ["sgd", "adam", "rmsprop"]}]
    assert [v["run"] for v in doc["variants"]] == [r.run.id for r in results]
    assert [v["status"] for v in doc["variants"]] == ["finished"] * 3
    init = load_weights(folder / "initial.npz")
    expected = initial_weights(tiny(), tmp_path, 3)
    assert all(np.array_equal(init[k], expected[k]) for k in expected)
    assert {r.id for r in store.list()} == {r.run.id for r in results}, "sweeps/ is no run"


def test_a_failed_variant_leaves_the_others_finishing(tmp_path):
    store = RunStore(tmp_path / "runs")
    results = run_sweep(tiny(), [("drop1.rate", [0.1, 2]), ("optimizer.lr", [0.1, 1e30])],
                        base_dir=tmp_path, store=store, steps=4, jobs=1)
    by = {(r.values["drop1.rate"], r.values["optimizer.lr"]): r for r in results}
    assert by[0.1, 0.1].status == "finished" and by[0.1, 0.1].run.summary["steps"] == 4
    nan = by[0.1, 1e30]
    assert nan.status == "failed" and "non-finite" in nan.error
    assert nan.run.summary["status"] == "failed" and nan.run.summary["error"] == nan.error
    for lr in (0.1, 1e30):  # cannot train: recorded as failed before any training
        bad = by[2, lr]
        assert bad.status == "failed" and bad.error_node == "drop1"
        assert "drop1" in bad.error and "rate" in bad.error
        assert bad.run.summary["steps"] == 0 and bad.run.weights() is None
        assert bad.run.graph().nodes["drop1"].params["rate"] == 2
    assert len(store.list()) == 4


def test_a_variant_over_the_budget_fails_and_jobs_shrink_to_fit(tmp_path):
    g = tiny()
    cfg_bytes = memory.estimate(analyze(g), 16, "adam", 64).total
    notes: list[str] = []
    results = run_sweep(g, [("optimizer.type", ["sgd", "adam"])], base_dir=tmp_path,
                        store=RunStore(tmp_path / "a"), steps=2, jobs=2,
                        max_memory=int(cfg_bytes * 1.5), on_note=notes.append)
    assert [r.status for r in results] == ["finished", "finished"]
    assert len(notes) == 1 and "1 variant at a time instead of 2" in notes[0], notes
    sweep = next((tmp_path / "a" / "sweeps").iterdir())
    assert json.loads((sweep / "sweep.json").read_text(encoding="utf-8"))["jobs"] == 1

    results = run_sweep(g, [("fc1.units", [8, 100_000])], base_dir=tmp_path,
                        store=RunStore(tmp_path / "b"), steps=2, jobs=1,
                        max_memory=int(cfg_bytes * 1.5))
    assert results[0].status == "finished"
    assert results[1].status == "failed" and "memory budget" in results[1].error


def test_a_sweep_over_the_seed_starts_each_from_its_own_seed(tmp_path):
    results = run_sweep(tiny(), [("seed", [3, 4])], base_dir=tmp_path,
                        store=RunStore(tmp_path / "runs"), steps=1, jobs=1)
    assert all(r.own_start for r in results)
    first = [r.run.metrics()[0][0].loss for r in results]
    assert first[0] != first[1]


def test_stop_starts_no_more_variants(tmp_path):
    import threading

    stop = threading.Event()
    results = run_sweep(tiny(), [("optimizer.lr", [0.1, 0.2, 0.3])], base_dir=tmp_path,
                        store=RunStore(tmp_path / "runs"), steps=2, jobs=1, stop=stop,
                        on_update=lambda r: stop.set())
    assert [r.status for r in results] == ["finished", "stopped", "stopped"]
    assert results[1].run is None and results[2].run is None


def test_unknown_keys_are_refused_before_anything_runs(tmp_path):
    for sets, key in ([[("fc9.units", [1])], "fc9.units"],
                      [[("dataset.colour", ["red"])], "dataset.colour"]):
        with pytest.raises(ParamError) as e:
            run_sweep(tiny(), sets, base_dir=tmp_path, store=RunStore(tmp_path / "runs"),
                      steps=1, jobs=1)
        assert e.value.param == key and "unknown sweep key" in str(e.value)
    assert not (tmp_path / "runs").exists()


# ---- the command line ------------------------------------------------------------------
def test_cli_sweep_with_two_jobs_records_every_variant_and_prints_the_table(tmp_path):
    graph = write(tmp_path / "tiny.ncg.json", tiny_dict())
    r = run("sweep", graph, "--set", "optimizer.type=sgd,adam", "--set", "drop1.rate=0.1,2",
            "--steps", "3", "--jobs", "2", "--run-dir", tmp_path / "runs")
    assert r.returncode == 1, (r.stdout, r.stderr)  # some failed
    assert "Traceback" not in r.stderr and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["variant", "status", "steps", "loss", "val_loss", "val_acc",
                                "time", "start"]
    rows = lines[1:5]
    assert rows[0].startswith("*") and "finished" in rows[0]
    assert {row.lstrip("* ").split("  ")[0] for row in rows} == \
        {"sgd drop1.rate=0.1", "adam drop1.rate=0.1", "sgd drop1.rate=2", "adam drop1.rate=2"}
    assert all("failed" in row for row in rows[2:])
    assert "failed: sgd drop1.rate=2: node 'drop1' parameter 'rate'" in r.stdout
    runs = RunStore(tmp_path / "runs").list()
    assert sorted(x.status for x in runs) == ["failed", "failed", "finished", "finished"]
    assert all(x.summary["steps"] == 3 for x in runs if x.status == "finished")
    sweep = next((tmp_path / "runs" / "sweeps").iterdir())
    doc = json.loads((sweep / "sweep.json").read_text(encoding="utf-8"))
    assert doc["jobs"] == 2 and doc["graph"] == str(graph) and doc["steps"] == 3
    first = {x.label: x.metrics()[0][0].loss for x in runs if x.status == "finished"}
    assert first["sgd drop1.rate=0.1"] == first["adam drop1.rate=0.1"]


def test_cli_sweep_that_all_finish_exits_0_and_runs_next_to_the_graph(tmp_path):
    graph = write(tmp_path / "tiny.ncg.json", tiny_dict())
    r = run("sweep", graph, "--set", "optimizer.lr=0.1,0.05", "--epochs", "1", "--jobs", "1")
    assert r.returncode == 0, (r.stdout, r.stderr)
    runs = RunStore(tmp_path / "tiny.runs").list()
    assert sorted(x.label for x in runs) == ["lr=0.05", "lr=0.1"]
    assert all(x.summary["epochs"] == 1 for x in runs)


@pytest.mark.parametrize("args, names", [
    (["--set", "fc9.units=4,8"], ["fc9.units", "unknown sweep key"]),
    (["--set", "optimizer.lr"], ["--set", "KEY=V1"]),
    ([], ["--set"]),
    (["--set", "optimizer.lr=0.1", "--jobs", "0"], ["--jobs"]),
])
def test_cli_sweep_usage_errors_exit_2_with_one_line(tmp_path, args, names):
    graph = write(tmp_path / "tiny.ncg.json", tiny_dict())
    r = run("sweep", graph, *args, "--run-dir", tmp_path / "runs")
    assert_user_error(r, *names)
    assert not (tmp_path / "runs").exists()


def test_cli_ctrl_c_stops_the_running_variants_as_stopped_and_exits_130(tmp_path):
    graph = write(tmp_path / "tiny.ncg.json", tiny_dict())
    store = tmp_path / "runs"
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "sweep", str(graph), "--set",
                          "optimizer.type=sgd,adam,rmsprop", "--steps", "10000000",
                          "--jobs", "2", "--run-dir", str(store)], cwd=ROOT,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)

    def training() -> int:
        return sum(1 for m in store.glob("*/metrics.jsonl") if m.stat().st_size > 0)
    try:
        deadline = time.monotonic() + 120
        while training() < 2:
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the variants never started"
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, (out, err)
    assert err.splitlines() == ["neurocanvas: interrupted; 3 variants stopped"], err
    runs = RunStore(store).list()
    assert len(runs) == 2 and all(x.status == "stopped" for x in runs)
    assert all(x.summary["steps"] > 0 and x.weights() is not None for x in runs)
    assert "rmsprop" in out and "stopped" in out


def test_sweep_is_listed_in_the_help():
    r = run("--help")
    assert "sweep" in r.stdout
    r = run("sweep", "--help")
    assert r.returncode == 0 and "--set KEY=V1,V2,..." in r.stdout and "--jobs" in r.stdout


def test_base_dir_is_the_graph_folder_for_file_datasets(tmp_path):
    """A relative .npz path in the graph is found from the graph's folder in every
    training process."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 2)).astype(np.float32)
    sub = tmp_path / "g"
    sub.mkdir()
    np.savez(sub / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    graph = write(sub / "tiny.ncg.json",
                  tiny_dict(dataset={"source": "npz", "path": "d.npz"}))
    r = run("sweep", Path(graph), "--set", "optimizer.lr=0.1,0.2", "--steps", "2",
            "--jobs", "2", "--run-dir", tmp_path / "runs")
    assert r.returncode == 0, (r.stdout, r.stderr)
