"""Runs kept and compared (core.runs, docs/format.md section 9): a recorded run reads back
what it trained, the store survives broken folders and killed writers, runs rename, delete
and move, and two runs' settings and graphs are compared; ``main.py train --run-dir``
records what it trains, failures included."""
from __future__ import annotations

import copy
import json
import re
import shutil

import numpy as np
import pytest

from core.errors import NonFiniteError, RunError
from core.fileformat import load_graph
from core.runs import (
    RUN_FORMAT,
    RunRecorder,
    RunStore,
    flat_settings,
    graph_diff,
    run_label,
    runs_dir_for,
    settings_diff,
    unsaved_runs_dir,
)
from core.runs.record import effective_settings
from core.training import EpochEvent, StepEvent, Trainer, parse_training
from core.validate import analyze
from core.weights import load_weights
from tests.cli_helpers import ROOT, assert_user_error, run
from tests.graphs import build, edge, graph_dict, mlp_dict, node, write

MLP_DIGITS = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"
# 1438 training samples in batches of 256: 6 steps per epoch
FAST = {"epochs": 2, "batch_size": 256, "device": "cpu"}


def train_recorded(store: RunStore, graph=None, *, label=None, sweep=None, **overrides):
    """A real training of the digits MLP, recorded: (the run, the events, the trainer)."""
    graph = graph or load_graph(MLP_DIGITS)
    cfg = parse_training(graph.training, **overrides)
    rec = RunRecorder(store, graph, cfg, overrides=overrides, label=label, sweep=sweep)
    events: list = []

    def on_event(ev):
        events.append(ev)
        rec.on_event(ev)

    tr = Trainer(analyze(graph), cfg, base_dir=MLP_DIGITS.parent, on_event=on_event,
                 queue_events=False)
    done = tr.run()
    status = {"finished": "finished", "stopped": "stopped"}.get(done.reason, "failed")
    r = rec.finish(status, steps=tr.step, weights=tr.net.state_dict(), device=tr.device,
                   error=str(done.error) if done.error else None,
                   error_node=getattr(done.error, "node", None))
    return r, events, tr


def empty_run(store: RunStore, label: str | None = None) -> RunRecorder:
    """A run recorded without training (its figures all null)."""
    g = load_graph(MLP_DIGITS)
    rec = RunRecorder(store, g, parse_training(g.training), label=label)
    rec.finish("finished", steps=0)
    return rec


# ---- a run round-trips through its files ----------------------------------------------------
def test_a_recorded_run_reads_back_what_it_trained(tmp_path):
    store = RunStore(tmp_path / "mlp.runs")  # made by the first run
    r, events, tr = train_recorded(store, label="first try", **FAST)
    [back] = store.list()
    assert back == store.get(r.id) == r
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", back.id) and back.path == store.root / r.id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", back.created)
    assert back.label == "first try" and back.status == "finished" and not back.live
    assert back.seed == 0 and back.sweep is None
    assert back.overrides == FAST
    want_settings = dict(load_graph(MLP_DIGITS).training, **FAST)
    assert back.settings == want_settings
    assert back.graph().training == want_settings  # it can be retrained as it was
    assert set(back.graph().nodes) == set(load_graph(MLP_DIGITS).nodes)
    steps, epochs = back.metrics()
    assert [s.to_json() for s in steps] == \
        [json.loads(json.dumps(e.to_json())) for e in events if isinstance(e, StepEvent)]
    assert [e.to_json() for e in epochs] == \
        [json.loads(json.dumps(e.to_json())) for e in events if isinstance(e, EpochEvent)]
    assert len(steps) == 12 and len(epochs) == 2
    weights = back.weights()
    assert set(weights) == set(tr.net.state_dict())
    for k, v in tr.net.state_dict().items():
        np.testing.assert_array_equal(weights[k], v, err_msg=k)
    s = back.summary
    ep = [e for e in events if isinstance(e, EpochEvent)]
    assert (s["status"], s["steps"], s["epochs"], s["device"]) == ("finished", 12, 2, "cpu")
    assert s["time_s"] > 0 and s["error"] is None and s["error_node"] is None
    assert s["final"] == {"loss": steps[-1].loss, "val_loss": ep[-1].val_loss,
                          "val_accuracy": ep[-1].val_accuracy,
                          "train_loss": ep[-1].train_loss,
                          "train_accuracy": ep[-1].train_accuracy}
    best_loss = min(ep, key=lambda e: e.val_loss)
    best_acc = max(ep, key=lambda e: e.val_accuracy)
    assert s["best"] == {"val_loss": best_loss.val_loss, "val_loss_epoch": best_loss.epoch,
                         "val_accuracy": best_acc.val_accuracy,
                         "val_accuracy_epoch": best_acc.epoch}
    raw = json.loads((back.path / "run.json").read_text(encoding="utf-8"))
    assert raw["format"] == RUN_FORMAT and raw["version"] == 1 and raw["id"] == r.id
    assert raw["summary"] == s


def test_a_run_without_validation_has_null_figures_and_gets_its_own_label(tmp_path):
    store = RunStore(tmp_path)
    g = load_graph(MLP_DIGITS)
    g.training["validation_split"] = 0
    g.training["regularization"] = {"l2": 0.01}
    r, _, _ = train_recorded(store, g, steps=3, device="cpu")
    assert r.label == "adam lr=0.001 l2=0.01"
    assert r.summary["final"]["val_loss"] is None and r.summary["final"]["loss"] is not None
    assert r.summary["best"] == {"val_loss": None, "val_loss_epoch": None,
                                 "val_accuracy": None, "val_accuracy_epoch": None}
    assert store.get(r.id).summary == r.summary


def test_a_sweep_run_keeps_its_values_and_is_labelled_by_them(tmp_path):
    store = RunStore(tmp_path)
    sweep = {"id": "s1", "values": {"optimizer.type": "sgd", "optimizer.lr": 0.5}}
    g = load_graph(MLP_DIGITS)
    g.training["optimizer"] = {"type": "sgd", "lr": 0.5}  # the variant, as a sweep makes it
    r, _, _ = train_recorded(store, g, sweep=sweep, steps=2, device="cpu")
    back = store.get(r.id)
    assert back.sweep == sweep and back.label == "sgd lr=0.5"
    assert back.settings["optimizer"] == {"type": "sgd", "lr": 0.5}
    assert back.overrides == {"steps": 2, "device": "cpu"}


def test_a_nan_run_is_recorded_as_failed_with_its_node(tmp_path):
    g = load_graph(MLP_DIGITS)
    g.training["optimizer"] = {"type": "sgd", "lr": 1e30}
    r, events, tr = train_recorded(RunStore(tmp_path), g, epochs=5, device="cpu")
    assert isinstance(events[-1].error, NonFiniteError)
    back = RunStore(tmp_path).get(r.id)
    assert back.status == "failed" and back.summary["error_node"] == events[-1].error.node
    assert "non-finite" in back.summary["error"] and "\n" not in back.summary["error"]
    assert back.summary["steps"] == tr.step and back.weights() is not None  # last good ones


def test_metrics_with_a_torn_last_line_read_without_it(tmp_path):
    r, _, _ = train_recorded(RunStore(tmp_path), steps=4, device="cpu")
    path = r.path / "metrics.jsonl"
    whole = r.metrics()
    text = path.read_text(encoding="utf-8")
    path.write_text(text + '{"event": "step", "epoch": 0, "st', encoding="utf-8")
    assert r.metrics() == whole  # a writer killed in the middle of a line
    path.write_text(text.replace("\n", "\nnot json\n", 1), encoding="utf-8")
    with pytest.raises(RunError, match="line 2") as e:
        r.metrics()
    assert "metrics.jsonl" in str(e.value)
    path.unlink()
    assert r.metrics() == ([], [])


def test_a_write_error_never_stops_training_and_finish_reports_it(tmp_path):
    g = load_graph(MLP_DIGITS)
    rec = RunRecorder(RunStore(tmp_path), g, parse_training(g.training))

    class Full:
        def write(self, text):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def close(self):
            pass

    with rec._lock:
        rec._file = Full()
    rec.on_event(StepEvent(0, 0, 0.1, 0.5, {}, 0.1))  # never raises
    rec.on_event(object())  # nor for what it does not know
    with pytest.raises(RunError, match="No space left") as e:
        rec.finish("finished", steps=1)
    assert "metrics.jsonl" in str(e.value)
    back = RunStore(tmp_path).get(rec.id)  # the rest is written
    assert back.status == "finished" and back.summary["final"]["loss"] == 0.5


# ---- the store ------------------------------------------------------------------------------
def test_where_runs_are_kept():
    assert runs_dir_for("a/b/mlp.ncg.json").as_posix() == "a/b/mlp.runs"
    assert runs_dir_for("a/b/mlp.json").as_posix() == "a/b/mlp.runs"
    assert runs_dir_for("mlp.txt").as_posix() == "mlp.txt.runs"
    assert unsaved_runs_dir("/data", "k1").as_posix() == "/data/unsaved-runs/k1"
    for bad in ("", "..", "a/b"):
        with pytest.raises(RunError):
            unsaved_runs_dir("/data", bad)


def test_broken_folders_are_skipped_and_never_raise(tmp_path):
    store = RunStore(tmp_path)
    assert RunStore(tmp_path / "none yet").list() == []
    good = empty_run(store, "good")
    for name, text in [("20260101-000000-aaaa", "{ not json"),
                       ("20260101-000000-bbbb", json.dumps({"format": "other"})),
                       ("20260101-000000-cccc", json.dumps({"format": RUN_FORMAT, "version": 9,
                                                            "summary": {"status": "finished"}})),
                       ("20260101-000000-dddd", json.dumps({"format": RUN_FORMAT, "version": 1,
                                                            "summary": {"status": "odd"}})),
                       ("20260101-000000-eeee", json.dumps({"format": RUN_FORMAT, "version": 1,
                                                            "label": 5,
                                                            "summary": {"status": "finished"}}))]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(text, encoding="utf-8")
    (tmp_path / "no-run-json").mkdir()
    (tmp_path / "stray.txt").write_text("x", encoding="utf-8")
    (tmp_path / "20260101-000000-ffff").mkdir()
    (tmp_path / "20260101-000000-ffff" / "run.json").mkdir()  # a folder, not a file
    assert [r.id for r in store.list()] == [good.id]
    with pytest.raises(RunError, match="newer NeuroCanvas"):
        store.get("20260101-000000-cccc")
    with pytest.raises(RunError, match="no run"):
        store.get("20990101-000000-0000")
    with pytest.raises(RunError):
        store.get("../x")


def test_runs_rename_delete_and_move(tmp_path):
    store = RunStore(tmp_path / "unsaved")
    a, b = empty_run(store, "a"), empty_run(store, "b")
    assert [r.label for r in store.list()] == ["a", "b"]  # oldest first
    store.rename(a.id, "  adam\nfast ")
    assert store.get(a.id).label == "adam fast"
    store.rename(a.id, "")  # back to the automatic label
    assert store.get(a.id).label == "adam lr=0.001"
    store.delete(b.id)
    assert [r.id for r in store.list()] == [a.id] and not b.path.exists()
    with pytest.raises(RunError, match="no run"):
        store.delete(b.id)
    with pytest.raises(RunError, match="no run"):
        store.rename(b.id, "x")

    target = RunStore(tmp_path / "saved" / "g.runs")
    there = empty_run(target, "already there")
    shutil.copytree(there.path, store.root / there.id)  # the same id on both sides
    for root, sweep in ((store.root, "s1"), (target.root, "s0")):  # the sweeps' records
        (root / "sweeps" / sweep).mkdir(parents=True)
        (root / "sweeps" / sweep / "sweep.json").write_text("{}", encoding="utf-8")
    moved = store.move_to(target.root)
    assert sorted(p.name for p in (target.root / "sweeps").iterdir()) == ["s0", "s1"]
    assert moved.root == target.root and not store.root.exists()
    runs = moved.list()
    assert sorted(r.label for r in runs) == ["adam lr=0.001", "already there", "already there"]
    assert a.id in {r.id for r in runs} and len({r.id for r in runs}) == 3
    for r in runs:  # the one that collided got a fresh id, in its run.json too
        assert json.loads((r.path / "run.json").read_text(encoding="utf-8"))["id"] == r.id


def test_a_live_run_moves_and_keeps_writing_and_a_dead_one_reads_interrupted(tmp_path):
    store = RunStore(tmp_path / "a")
    g = load_graph(MLP_DIGITS)
    rec = RunRecorder(store, g, parse_training(g.training))
    rec.on_event(StepEvent(0, 0, 0.1, 0.9, {}, 0.1))
    [live] = store.list()
    assert live.status == "running" and live.live
    with pytest.raises(RunError, match="still being recorded"):
        store.delete(rec.id)
    copy_of = tmp_path / "copy"
    copy_of.mkdir()
    shutil.copytree(rec.path, copy_of / rec.id)  # what a killed process leaves behind
    [dead] = RunStore(copy_of).list()
    assert dead.status == "interrupted" and not dead.live
    moved = store.move_to(tmp_path / "b")
    rec.on_event(StepEvent(0, 1, 0.2, 0.7, {}, 0.1))
    moved.rename(rec.id, "moved")
    r = rec.finish("stopped", steps=2)
    assert r.path == moved.root / rec.id
    back = moved.get(rec.id)
    assert back.status == "stopped" and back.label == "moved" and not back.live
    assert [s.loss for s in back.metrics()[0]] == [0.9, 0.7]
    assert RunStore(copy_of).list()[0].status == "interrupted"
    assert rec.finish("finished", steps=5) is r  # once only


# ---- comparing runs -------------------------------------------------------------------------
def test_settings_are_compared_key_by_key():
    a = {"dataset": {"source": "builtin", "name": "digits"},
         "optimizer": {"type": "adam", "lr": 0.001, "betas": [0.9, 0.999]}, "epochs": 10}
    assert flat_settings(a) == {"dataset.source": "builtin", "dataset.name": "digits",
                                "optimizer.type": "adam", "optimizer.lr": 0.001,
                                "optimizer.betas": [0.9, 0.999], "epochs": 10}
    assert flat_settings({"clip": {}}) == {}
    b = copy.deepcopy(a)
    assert settings_diff(a, b) == []
    b["optimizer"]["lr"] = 0.01
    b["batch_size"] = 32  # the default: no difference
    b["seed"] = 3
    del b["epochs"]  # 10 is the default
    b["regularization"] = {"l2": 0.1}
    assert settings_diff(a, b) == [("optimizer.lr", 0.001, 0.01), ("seed", None, 3),
                                   ("regularization.l2", None, 0.1)]
    assert settings_diff({"epochs": 1}, {"epochs": 1.0}) == []
    assert settings_diff({"shuffle": True}, {"shuffle": 1}) == [("shuffle", True, 1)]


def test_effective_settings_apply_overrides():
    t = {"dataset": {"source": "builtin", "name": "digits"}, "epochs": 10}
    got = effective_settings(t, {"epochs": 2, "steps": None, "optimizer.lr": 0.1,
                                 "regularization.l2": 0.01, "fc1.units": 7})
    assert got == {"dataset": {"source": "builtin", "name": "digits"}, "epochs": 2,
                   "optimizer": {"type": "sgd", "lr": 0.1}, "regularization": {"l2": 0.01}}
    assert t == {"dataset": {"source": "builtin", "name": "digits"}, "epochs": 10}


def diff_graphs():
    d = mlp_dict()
    a = build(d)
    d2 = copy.deepcopy(d)
    d2["nodes"][1]["params"]["units"] = 9  # fc1
    d2["nodes"][2]["type"] = "Tanh"  # act
    d2["nodes"].insert(3, node("drop", "Dropout", rate=0.2))
    d2["edges"][2] = edge("act", "drop")
    d2["edges"].insert(3, edge("drop", "fc2"))
    d2["nodes"][0]["pos"] = [500, 500]  # layout only
    return a, build(d2)


def test_graph_diff_names_every_change():
    a, b = diff_graphs()
    d = graph_diff(a, b)
    assert d.added_nodes == ["drop"] and d.removed_nodes == []
    assert d.changed_params == [("fc1", "units", 5, 9)]
    assert d.changed_types == [("act", "ReLU", "Tanh")]
    assert d.removed_edges == ["act.out -> fc2.in"]
    assert d.added_edges == ["act.out -> drop.in", "drop.out -> fc2.in"]
    assert not d.empty()
    lines = d.lines()
    assert len(lines) == 6
    assert "node 'drop' (Dropout) added" in lines
    assert "node 'fc1': units 5 -> 9" in lines
    back = graph_diff(b, a)
    assert back.removed_nodes == ["drop"] and back.added_edges == ["act.out -> fc2.in"]


def test_graph_diff_compares_by_value_and_ignores_layout():
    a, _ = diff_graphs()
    b = a.copy()
    assert graph_diff(a, b).empty() and graph_diff(a, b).lines() == []
    b.nodes["fc1"].params["bias"] = True  # the default, written out
    b.nodes["x"].params["shape"] = (4,)  # a tuple is the list [4]
    b.nodes["fc2"].pos = (9.0, 9.0)
    b.edges[0].src_port, b.edges[0].dst_port = "out", "in"  # what "x -> fc1" means
    assert graph_diff(a, b).empty()
    b.nodes["fc1"].params["bias"] = False
    assert graph_diff(a, b).changed_params == [("fc1", "bias", True, False)]


def test_graph_diff_marks_delay_edges():
    def cell(delay: int):
        return build(graph_dict(
            [node("x", "Input", shape=[5, 3], sequence=True), node("wx", "Dense", units=4),
             node("wh", "Dense", units=4), node("add", "Add"), node("h", "Tanh"),
             node("tc", "TimeCollect", mode="last")],
            [edge("x", "wx"), edge("wx", "add:in0"), edge("wh", "add:in1"),
             edge("add", "h"), edge("h", "wh", delay=delay), edge("h", "tc")]))
    a, b = cell(1), cell(2)
    d = graph_diff(a, b)
    assert d.removed_edges == ["h.out -> wh.in (delay)"]
    assert d.added_edges == ["h.out -> wh.in (delay 2)"]


def test_run_labels():
    assert run_label({"optimizer": {"type": "adam", "lr": 0.001}}) == "adam lr=0.001"
    assert run_label({}) == "sgd lr=0.01"  # the default optimizer
    assert run_label({"optimizer": {"type": "sgd", "lr": 0.1}, "clip": {"norm": 1.0},
                      "regularization": {"l1": 0, "l2": 0.01}}) == "sgd lr=0.1 l2=0.01 clip=1"
    values = {"optimizer.type": "adam", "optimizer.lr": 0.01, "drop1.rate": 0.2,
              "regularization.l2": 0.001, "batch_size": 64}
    assert run_label({"optimizer": {"type": "sgd"}}, values=values) == \
        "adam lr=0.01 drop1.rate=0.2 l2=0.001 batch_size=64"


# ---- main.py train --run-dir ----------------------------------------------------------------
def test_train_run_dir_records_the_run_end_to_end(tmp_path):
    runs, log, w = tmp_path / "runs", tmp_path / "m.jsonl", tmp_path / "w.npz"
    r = run("train", MLP_DIGITS, "--steps", "5", "--batch-size", "128", "--run-dir", runs,
            "--label", "cli run", "--log", log, "--save-weights", w)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # not a terminal: quiet
    [got] = RunStore(runs).list()
    assert got.label == "cli run" and got.status == "finished"
    assert got.overrides == {"steps": 5, "batch_size": 128}
    assert got.settings["steps"] == 5 and got.graph().training["batch_size"] == 128
    lines = log.read_text(encoding="utf-8").splitlines()
    assert (got.path / "metrics.jsonl").read_text(encoding="utf-8").splitlines() == lines
    steps, _ = got.metrics()
    assert [s.step for s in steps] == [0, 1, 2, 3, 4]
    assert got.summary["steps"] == 5 and got.summary["final"]["loss"] == steps[-1].loss
    saved, recorded = load_weights(w), got.weights()
    assert set(saved) == set(recorded)
    for k in saved:
        np.testing.assert_array_equal(saved[k], recorded[k])
    assert_user_error(run("train", MLP_DIGITS, "--steps", "1", "--label", "x"), "--label",
                      "--run-dir")


def test_train_run_dir_records_a_failed_run_with_its_reason(tmp_path):
    d = json.loads(MLP_DIGITS.read_text(encoding="utf-8"))
    d["training"]["optimizer"] = {"type": "sgd", "lr": 1e30}
    runs = tmp_path / "runs"
    r = run("train", write(tmp_path / "nan.ncg.json", d), "--epochs", "5", "--run-dir", runs)
    line = assert_user_error(r, "non-finite")
    [got] = RunStore(runs).list()
    assert got.status == "failed" and got.summary["error"] in line
    assert got.summary["error_node"] in {n["id"] for n in d["nodes"]}
    assert got.weights() is not None  # the last good ones
    d["training"]["dataset"] = {"source": "npz", "path": "missing.npz"}
    r = run("train", write(tmp_path / "nodata.ncg.json", d), "--run-dir", runs)
    assert_user_error(r, "missing.npz")
    failed = [x for x in RunStore(runs).list() if x.id != got.id]
    assert len(failed) == 1 and failed[0].status == "failed"
    assert "missing.npz" in failed[0].summary["error"] and failed[0].weights() is None
    assert failed[0].summary["steps"] == 0


def test_train_run_dir_that_cannot_be_made_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    r = run("train", MLP_DIGITS, "--steps", "1", "--run-dir", blocker / "runs")
    assert_user_error(r, str(blocker / "runs"))
