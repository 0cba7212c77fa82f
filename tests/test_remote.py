"""Training in a child process (core.remote, core.train_worker): the same numbers as an
in-process Trainer, typed errors across the pipe, commands before the build, and no
training process outliving its parent's interest."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from core.errors import DataError, NeuroCanvasError, NonFiniteError, ParamError, WeightsError
from core.fileformat import load_graph
from core.npz import npz_bytes, read_npz_bytes
from core.remote import (
    BLAS_THREAD_VARS,
    MAX_LINE,
    PARENT_PID_ENV,
    ROOT,
    FrameError,
    ReadyEvent,
    RemoteError,
    RemoteTrainer,
    blas_threads,
    encode_frame,
    error_from_json,
    error_to_json,
    read_frame,
)
from core.training import (
    ClassificationReport,
    DoneEvent,
    EpochEvent,
    Snapshot,
    StepEvent,
    Trainer,
    parse_training,
)
from core.validate import analyze

MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"
LSTM = ROOT / "resources" / "examples" / "lstm_sine.ncg.json"
TWO_LOSSES = ROOT / "resources" / "examples" / "vanishing_gradients.ncg.json"


def remote_run(graph, timeout=60.0, **kw):
    events: list = []
    rt = RemoteTrainer(graph, on_event=events.append, **kw)
    try:
        assert rt.join(timeout), "the run did not end"
        return rt, events
    except BaseException:
        rt.close()
        raise


def local_run(path: Path, **overrides):
    """An in-process run with as many BLAS threads as a RemoteTrainer's child gets: a
    matrix product split over another number of threads sums in another order, and the
    figures then differ in their last bits."""
    g = load_graph(path)
    events: list = []
    tr = Trainer(analyze(g), parse_training(g.training, **overrides), base_dir=path.parent,
                 on_event=events.append, queue_events=False)
    child = blas_threads(dict(os.environ)).get("OPENBLAS_NUM_THREADS")
    # no entry: the child inherits this process's BLAS variables, so its thread count too
    with threadpool_limits(int(child) if child else None, user_api="blas"):
        tr.run()
    return tr, events


@pytest.mark.parametrize("path, overrides", [
    (MLP, {"epochs": 2, "device": "cpu"}),
    (LSTM, {"steps": 12, "device": "cpu"}),  # recurrent: state-gradient norms ride along
    (TWO_LOSSES, {"steps": 6, "device": "cpu"}),  # each loss's value rides along
])
def test_a_remote_run_reports_what_an_in_process_run_computes(path, overrides):
    rt, events = remote_run(load_graph(path), overrides=overrides, base_dir=path.parent)
    try:
        tr, local = local_run(path, **overrides)
        ready = [e for e in events if isinstance(e, ReadyEvent)]
        assert len(ready) == 1 and events[0] is ready[0]
        assert ready[0].total_steps == tr.total_steps and ready[0].pid == rt.pid
        steps = [e for e in events if isinstance(e, StepEvent)]
        want = [e for e in local if isinstance(e, StepEvent)]
        assert [e.step for e in steps] == list(range(tr.total_steps))
        assert [e.loss for e in steps] == [e.loss for e in want]  # bit for bit
        assert [e.grad_norm for e in steps] == [e.grad_norm for e in want]
        assert [e.losses for e in steps] == [e.losses for e in want]
        assert ready[0].losses == tr.loss_nodes
        assert ready[0].classifiers == [c.loss for c in tr.classifiers]
        if path == TWO_LOSSES:
            assert list(steps[0].losses) == ["rnn_loss", "lstm_loss"]
        assert steps[-1].state_grad_norm == want[-1].state_grad_norm
        if path == LSTM:
            assert steps[-1].state_grad_norm
        epochs = [e for e in events if isinstance(e, EpochEvent)]
        assert [e.to_json()["train_loss"] for e in epochs] == \
            [e.to_json()["train_loss"] for e in local if isinstance(e, EpochEvent)]
        assert isinstance(events[-1], DoneEvent) and events[-1].reason == "finished"
        weights = rt.state_dict().result(10)
        for k, v in tr.net.state_dict().items():
            np.testing.assert_array_equal(weights[k], v)
    finally:
        rt.close()
    assert not rt.alive


def test_initial_weights_that_still_fit_are_kept_and_the_rest_start_fresh():
    g = load_graph(MLP)
    fresh = Trainer(analyze(g), parse_training(g.training, device="cpu")).net.state_dict()
    init = {k: v + 1.0 for k, v in fresh.items()}
    init["fc2/W"] = np.zeros((3, 3), np.float32)  # the layer was edited since
    rt = RemoteTrainer(g, overrides={"device": "cpu"}, base_dir=MLP.parent, run=False,
                       init_weights=init, note="continuing")
    try:
        assert rt.ready.wait(30)
        assert rt.info.note == "continuing; 1 array of edited layers start fresh"
        got = rt.state_dict().result(10)
        np.testing.assert_array_equal(got["fc1/W"], init["fc1/W"])
        np.testing.assert_array_equal(got["fc2/W"], fresh["fc2/W"])
        report = rt.classification_report().result(30)  # no run: evaluates what it holds
        assert report.confusion.shape == (10, 10)
        snap = rt.snapshot(["fc1"]).result(10)
        assert snap.step == 0 and set(snap.params) == {"fc1/W", "fc1/b"}
    finally:
        rt.close()
    assert rt.done.reason == "stopped" and rt.done.error is None  # closed, not crashed
    with pytest.raises(RemoteError, match="has ended"):
        rt.state_dict().result(1)  # refused at once, not left waiting


def test_a_missing_dataset_ends_the_run_with_a_typed_error(tmp_path):
    d = json.loads(MLP.read_text())
    d["training"]["dataset"] = {"source": "npz", "path": "nowhere.npz"}
    path = tmp_path / "g.ncg.json"
    path.write_text(json.dumps(d))
    rt, events = remote_run(load_graph(path), base_dir=tmp_path)
    done = events[-1]
    assert done.reason == "error" and done.steps == 0
    assert isinstance(done.error, DataError) and "nowhere.npz" in str(done.error)
    rt._proc.wait(10)  # the process ends by itself
    with pytest.raises(RemoteError):
        rt.state_dict().result(5)
    rt.close()


def test_a_nan_names_the_node_across_the_pipe():
    g = load_graph(MLP)
    g.training["optimizer"] = {"type": "sgd", "lr": 1e30}
    rt, events = remote_run(g, overrides={"epochs": 5, "device": "cpu"}, base_dir=MLP.parent)
    rt.close()
    done = events[-1]
    assert done.reason == "error" and isinstance(done.error, NonFiniteError)
    assert done.error.node in g.nodes and done.error.phase in ("forward", "backward")
    assert done.steps < 5 * 23


def test_stop_sent_before_the_network_is_built_stops_the_run_at_once():
    rt = RemoteTrainer(load_graph(MLP), overrides={"epochs": 500, "device": "cpu"},
                       base_dir=MLP.parent)
    rt.stop()  # the child is still importing NumPy
    try:
        assert rt.join(30)
        assert rt.done.reason == "stopped" and rt.done.steps == 0
    finally:
        rt.close()


def test_pause_holds_the_steps_and_requests_are_served_while_paused():
    events: list = []
    rt = RemoteTrainer(load_graph(MLP), overrides={"epochs": 500, "device": "cpu"},
                       base_dir=MLP.parent, on_event=events.append)
    rt.pause()  # before the build: the run starts paused
    try:
        assert rt.ready.wait(30)
        time.sleep(0.3)
        assert rt.step == 0
        snap = rt.snapshot(["fc1"]).result(10)
        assert snap.step == 0
        rt.resume()
        deadline = time.monotonic() + 30
        while rt.step < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rt.step >= 5
        rt.stop()
        assert rt.join(10) and rt.done.reason == "stopped"
    finally:
        rt.close()


def test_the_child_ends_when_its_parent_stops_listening():
    rt = RemoteTrainer(load_graph(MLP), overrides={"epochs": 500, "device": "cpu"},
                       base_dir=MLP.parent)
    assert rt.ready.wait(30)
    rt._proc.stdin.close()  # what the death of the GUI does
    assert rt._proc.wait(10) == 0
    rt.close()


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")
def _wait_stopped(pid: int, timeout: float = 10.0) -> None:
    """Until the process is in the stopped state (Linux: /proc; elsewhere a short wait)."""
    stat = Path(f"/proc/{pid}/stat")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not stat.exists():
            time.sleep(0.2)
            return
        if stat.read_text().rsplit(")", 1)[1].split()[0] in ("T", "t"):
            return
        time.sleep(0.005)


def test_a_killed_child_ends_the_run_with_a_remote_error():
    rt = RemoteTrainer(load_graph(MLP), overrides={"epochs": 500, "device": "cpu"},
                       base_dir=MLP.parent)
    try:
        assert rt.ready.wait(30)
        os.kill(rt.pid, signal.SIGSTOP)  # frozen: the request below cannot be answered
        _wait_stopped(rt.pid)  # SIGSTOP is delivered asynchronously
        pending = rt.snapshot(["fc1"])
        rt._proc.kill()
        assert rt.join(10)
        assert rt.done.reason == "error" and isinstance(rt.done.error, RemoteError)
        assert "ended unexpectedly" in str(rt.done.error)
        with pytest.raises(RemoteError, match="has ended"):  # in flight: fails, not hangs
            pending.result(10)
    finally:
        rt.close()


# ---- the wire format ----------------------------------------------------------------------
def test_frames_round_trip_and_a_truncated_frame_reads_as_the_end():
    data = encode_frame({"ev": "x", "v": [1.5, float("inf")]}, b"\x00\x01\n\x02") + \
        encode_frame({"cmd": "stop"})
    s = io.BytesIO(data)
    h, p = read_frame(s)
    assert h["v"][1] == float("inf") and p == b"\x00\x01\n\x02" and h["payload"] == 4
    assert read_frame(s) == ({"cmd": "stop"}, b"")
    assert read_frame(s) is None
    assert read_frame(io.BytesIO(data[:-3])) is not None  # the first frame is whole
    assert read_frame(io.BytesIO(encode_frame({"a": 1}, b"12345")[:-1])) is None
    assert read_frame(io.BytesIO(b'{"a": 1}')) is None  # no end of line


def test_typed_errors_round_trip():
    e = error_from_json(error_to_json(ParamError("too big", node="fc1", param="units")))
    assert type(e) is ParamError and e.node == "fc1" and e.param == "units"
    assert str(e) == "node 'fc1' parameter 'units': too big"
    nf = error_from_json(error_to_json(NonFiniteError("NaN", node="act1", phase="backward")))
    assert type(nf) is NonFiniteError and nf.node == "act1" and nf.phase == "backward"
    try:
        raise KeyError("oops")
    except KeyError as err:
        bug = error_from_json(error_to_json(err))
    assert type(bug) is RemoteError and "KeyError" in str(bug)
    assert "raise KeyError" in bug.remote_traceback


def wire(d: dict) -> dict:
    return json.loads(json.dumps(d))


def test_every_event_reads_back_what_it_writes():
    step = StepEvent(1, 7, 0.123456789, 0.5, {"fc1/W": 0.25}, 0.3, 23, 46, {"h": [0.1, 0.2]})
    assert StepEvent.from_json(wire(step.to_json())) == \
        replace(step, time=0.123457, steps_per_epoch=0, total_steps=0)  # as logged
    plain = StepEvent(1, 8, 0.2, 0.4, {"fc1/W": 0.2}, 0.2, 23, 46)
    # in a batch, the state-gradient norms of the latest step that has them ride on the last
    assert StepEvent.batch_from_json(wire(StepEvent.batch_to_json([step, plain]))) == \
        [replace(step, state_grad_norm={}), replace(plain, state_grad_norm={"h": [0.1, 0.2]})]
    epoch = EpochEvent(2, 0.5, None, 1.25, 0.75)
    assert EpochEvent.from_json(wire(epoch.to_json())) == epoch
    # several losses: each loss's figures, per step (in a batch, named once) and per epoch
    a = StepEvent(0, 0, 0.1, 0.9, {"fc1/W": 0.2}, 0.2, 2, 4, losses={"ce": 0.5, "mse": 0.4})
    b = replace(a, step=1, losses={"ce": 0.3, "mse": 0.2})
    batch = wire(StepEvent.batch_to_json([a, b]))
    assert batch["loss_names"] == ["ce", "mse"] and batch["rows"][1][6] == [0.3, 0.2]
    assert StepEvent.batch_from_json(batch) == [a, b]
    assert StepEvent.from_json(wire(a.to_json())).losses == a.losses
    epoch = EpochEvent(0, 0.9, 0.8, 1.0, 0.5, 0.6, {"ce": {"train_loss": 0.5, "val_loss": 0.5,
                                                           "train_accuracy": 0.5,
                                                           "val_accuracy": 0.6},
                                                    "mse": {"train_loss": 0.4, "val_loss": 0.3}})
    assert EpochEvent.from_json(wire(epoch.to_json())) == epoch
    done = DoneEvent.from_json(wire(DoneEvent("error", 3, ParamError("bad", node="fc1"))
                                    .to_json(error_to_json)), error_from_json)
    assert (done.reason, done.steps, type(done.error), done.error.node) == \
        ("error", 3, ParamError, "fc1")
    ready = ReadyEvent("cpu", None, 46, 23, True, "continuing", 123)
    assert ReadyEvent.from_json(wire(ready.to_json())) == ready
    ready = ReadyEvent("cpu", None, 46, 23, True, None, 123, ["ce", "mse"], ["ce"])
    assert ReadyEvent.from_json(wire(ready.to_json())) == ready
    report = ClassificationReport(0.5, 0.75, np.array([[3, 1], [0, 4]], np.int64))
    back = ClassificationReport.from_json(wire(report.to_json()))
    assert (back.loss, back.accuracy) == (0.5, 0.75) and back.confusion.dtype == np.int64
    np.testing.assert_array_equal(back.confusion, report.confusion)
    snap = Snapshot(5, {"fc1/W": np.ones((2, 3))}, {"fc1/W": np.zeros((2, 3))},
                    {"fc1": np.ones((4, 3))})
    back = Snapshot.from_arrays(5, snap.to_arrays())
    assert back.step == 5 and {k: set(v) for k, v in vars(back).items() if k != "step"} == \
        {"params": {"fc1/W"}, "grads": {"fc1/W"}, "activations": {"fc1"}}


def test_arrays_cross_as_npz_and_object_arrays_are_refused():
    arrays = {"fc1/W": np.arange(6, dtype=np.float32).reshape(2, 3)}
    back = read_npz_bytes(npz_bytes(arrays), WeightsError, "weights")
    np.testing.assert_array_equal(back["fc1/W"], arrays["fc1/W"])
    buf = io.BytesIO()
    np.savez(buf, bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsError, match="never unpickled"):
        read_npz_bytes(buf.getvalue(), WeightsError, "weights")
    with pytest.raises(WeightsError):
        read_npz_bytes(b"garbage", WeightsError, "weights")


def test_the_worker_refuses_a_stream_that_does_not_open():
    proc = subprocess.run([sys.executable, "-m", "core.train_worker"], input=b'{"cmd":"x"}\n',
                          capture_output=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and proc.stdout == b""


def test_the_child_leaves_a_core_to_the_gui_unless_told_otherwise(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert blas_threads({}) == dict.fromkeys(BLAS_THREAD_VARS, "7")
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert blas_threads({"PATH": "/bin"})["OPENBLAS_NUM_THREADS"] == "1"
    assert blas_threads({"OMP_NUM_THREADS": "4"}) == {}  # the user's choice stands
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert blas_threads({}, jobs=3)["MKL_NUM_THREADS"] == "2"  # (8 - 1) // 3 for a comparison
    assert blas_threads({}, jobs=4, reserve=0)["OMP_NUM_THREADS"] == "2"  # a sweep's pool
    assert blas_threads({}, jobs=20)["OMP_NUM_THREADS"] == "1"


def test_blas_environ_sets_what_the_user_did_not_and_puts_it_back(monkeypatch):
    from core.remote import blas_environ
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    for var in BLAS_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    with blas_environ(2):
        assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    assert not any(v in os.environ for v in BLAS_THREAD_VARS)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with blas_environ(2):
        assert "OPENBLAS_NUM_THREADS" not in os.environ
    assert os.environ["OMP_NUM_THREADS"] == "3"


# ---- a child that takes no harm from a bad frame, and never outlives its parent ------------
def test_read_frame_refuses_what_breaks_its_limits_and_stays_in_step():
    big = b'{"cmd":"pause","x":"' + b"a" * 300 + b'"}\n'
    lied = encode_frame({"cmd": "weights"}, b"z" * 50)
    s = io.BytesIO(b"not json\n" + b"[1]\n" + b'{"payload":-3}\n' + big + lied
                   + encode_frame({"cmd": "stop"}))
    for what in ("not a JSON line", "JSON object", "byte count", "line over the limit",
                 "payload of 50 bytes"):
        with pytest.raises(FrameError, match=what):
            read_frame(s, max_line=100, max_payload=10)
    assert read_frame(s, max_line=100, max_payload=10) == ({"cmd": "stop"}, b"")
    assert read_frame(s, max_line=100, max_payload=10) is None
    exact = b'{"a":1}\n'
    assert read_frame(io.BytesIO(exact), max_line=len(exact)) == ({"a": 1}, b"")


def test_malformed_and_oversized_commands_are_refused_and_the_child_keeps_serving(caplog):
    rt = RemoteTrainer(load_graph(MLP), overrides={"epochs": 500, "device": "cpu"},
                       base_dir=MLP.parent)
    try:
        assert rt.ready.wait(30)
        bad = [b"not json\n", b"[1, 2]\n", b'{"cmd": 5}\n', b'{"cmd": "bogus"}\n',
               b'{"cmd": "pause", "payload": "many"}\n',
               encode_frame({"cmd": "pause"}, b"\n\n\n"),  # commands take no payload
               encode_frame({"cmd": "pause"}, bytes(3 * MAX_LINE)),  # skipped, not held
               b'{"cmd": "pause", "x": "' + b"a" * (2 * MAX_LINE) + b'"}\n']
        with caplog.at_level("WARNING", logger="core.remote"):
            for data in bad:
                rt._outbox.put(data)
            with pytest.raises(RemoteError, match="nodes"):  # a request: its Future fails
                rt._request("snapshot", nodes=5).result(30)
            with pytest.raises(RemoteError, match="unknown command"):
                rt._request("bogus").result(30)
            deadline = time.monotonic() + 30
            said = []
            while len(said) < len(bad) and time.monotonic() < deadline:
                time.sleep(0.02)
                said = [r.getMessage() for r in caplog.records if r.name == "core.remote"]
        assert len(said) == len(bad)
        for what, message in zip(["not a JSON line", "JSON object", "command name",
                                  "unknown command 'bogus'", "byte count", "payload of 3",
                                  f"payload of {3 * MAX_LINE}", "line over the limit"], said,
                                 strict=True):
            assert what in message
        assert rt.snapshot(["fc1"]).result(30).step >= 0  # still serving, not paused
        step = rt.step
        deadline = time.monotonic() + 30
        while rt.step <= step and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rt.step > step
        rt.stop()
        assert rt.join(30) and rt.done.reason == "stopped"
    finally:
        rt.close()


def test_a_failed_build_ends_the_child_cleanly(tmp_path):
    d = json.loads(MLP.read_text())
    d["training"]["dataset"] = {"source": "npz", "path": "nowhere.npz"}
    proc = subprocess.Popen([sys.executable, "-m", "core.train_worker"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(encode_frame({"cmd": "open", "graph": json.dumps(d),
                                       "base_dir": str(tmp_path)}))
        proc.stdin.flush()  # and left open: the command thread is inside its read
        proc.wait(60)  # a few lines of output: no pipe fills up
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
    assert proc.returncode in (0, 1) and b"Fatal Python error" not in err
    h, _ = read_frame(io.BytesIO(out))
    assert h["ev"] == "done" and h["error"]["type"] == "DataError"


def test_the_child_leaves_when_its_parent_is_not_the_one_it_was_told():
    env = {**os.environ, PARENT_PID_ENV: str(os.getpid() + 1)}  # a parent already gone
    proc = subprocess.Popen([sys.executable, "-m", "core.train_worker"], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.wait(60) == 1  # not left waiting for an open frame that never comes
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie nobody reaps (PID 1 of a container may not) has ended too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


INTERMEDIATE = """
import subprocess, sys, time
import core.remote as remote
from core.fileformat import load_graph
real = subprocess.Popen
STUCK = ("import time, runpy, core.datasets.files as f; "
         "f.read_npz = lambda *a, **k: time.sleep(3600); "  # loading data that never ends
         "runpy.run_module('core.train_worker', run_name='__main__', alter_sys=True)")
remote.subprocess.Popen = lambda args, **kw: real([args[0], "-c", STUCK], **kw)
rt = remote.RemoteTrainer(load_graph(sys.argv[1]), base_dir=sys.argv[2])
print(rt.pid, flush=True)
time.sleep(3600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_stuck_loading_its_data_ends_with_the_editor(tmp_path):
    d = json.loads(MLP.read_text())
    d["training"]["dataset"] = {"source": "npz", "path": "data.npz"}
    path = tmp_path / "g.ncg.json"
    path.write_text(json.dumps(d))
    editor = subprocess.Popen([sys.executable, "-c", INTERMEDIATE, str(path), str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.PIPE)
    child = None
    try:
        child = int(editor.stdout.readline())
        time.sleep(1.0)  # the child is importing, or already stuck in the loader
        assert not _gone(child)
        editor.kill()
        editor.wait()
        deadline = time.monotonic() + 30
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child)
    finally:
        if editor.poll() is None:
            editor.kill()
            editor.wait()
        editor.stdout.close()
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)


# ---- runs recorded by the child (core.runs) ------------------------------------------------
def test_the_child_records_the_run_when_given_a_run_store(tmp_path):
    from core.runs import RunStore
    rt, events = remote_run(load_graph(MLP), overrides={"steps": 8, "device": "cpu"},
                            base_dir=MLP.parent, run_dir=tmp_path / "runs", label="editor",
                            sweep={"id": "s", "values": {"batch_size": 64}})
    try:
        ready = events[0]
        weights = rt.state_dict().result(10)
    finally:
        rt.close()
    [run] = RunStore(tmp_path / "runs").list()  # written before the end was reported
    assert ready.run_id == run.id and run.label == "editor" and run.status == "finished"
    assert run.sweep == {"id": "s", "values": {"batch_size": 64}}
    assert run.overrides == {"steps": 8, "device": "cpu"} and run.summary["steps"] == 8
    steps, _ = run.metrics()
    assert [s.loss for s in steps] == [e.loss for e in events if isinstance(e, StepEvent)]
    recorded = run.weights()
    for k, v in weights.items():
        np.testing.assert_array_equal(recorded[k], v)
    rt, events = remote_run(load_graph(MLP), overrides={"steps": 2, "device": "cpu"},
                            base_dir=MLP.parent)
    rt.close()
    assert events[0].run_id is None  # no store: nothing recorded
    assert len(RunStore(tmp_path / "runs").list()) == 1


def test_a_build_that_fails_is_recorded_as_a_failed_run(tmp_path):
    from core.runs import RunStore
    d = json.loads(MLP.read_text())
    d["training"]["dataset"] = {"source": "npz", "path": "nowhere.npz"}
    path = tmp_path / "g.ncg.json"
    path.write_text(json.dumps(d))
    rt, events = remote_run(load_graph(path), base_dir=tmp_path, run_dir=tmp_path / "runs")
    rt.close()
    assert isinstance(events[-1].error, DataError)
    [run] = RunStore(tmp_path / "runs").list()
    assert run.status == "failed" and "nowhere.npz" in run.summary["error"]
    assert run.weights() is None and run.summary["steps"] == 0


GATED = ("import os, time, runpy, core.datasets as d; real = d.load_dataset\n"
         "def gated(*a, **k):\n"
         "    end = time.monotonic() + 60\n"  # never stuck for good
         "    while not os.path.exists({gate!r}) and time.monotonic() < end:\n"
         "        time.sleep(0.01)\n"
         "    return real(*a, **k)\n"
         "d.load_dataset = gated\n"
         "runpy.run_module('core.train_worker', run_name='__main__', alter_sys=True)")


def test_commands_after_a_request_are_read_while_the_network_is_still_built(tmp_path,
                                                                           monkeypatch):
    """A request during the build waits for the network, but the commands after it are
    read at once: a stop sent after a snapshot request, while the data are still loading,
    stops the run before its first step."""
    import core.remote as remote
    gate = tmp_path / "gate"
    real = subprocess.Popen
    monkeypatch.setattr(remote.subprocess, "Popen", lambda args, **kw: real(
        [args[0], "-c", GATED.format(gate=str(gate))], **kw))
    rt = RemoteTrainer(load_graph(MLP), overrides={"epochs": 500, "device": "cpu"},
                       base_dir=MLP.parent)
    try:
        snap = rt.snapshot(["fc1"])
        bogus = rt._request("bogus")  # answered only by a reader that is not held up
        with pytest.raises(RemoteError, match="unknown command"):
            bogus.result(30)
        assert not rt.ready.is_set() and not snap.done()  # still building
        rt.stop()
        gate.touch()
        assert snap.result(30).step == 0  # served once built
        assert rt.join(30)
        assert rt.done.reason == "stopped" and rt.done.steps == 0
    finally:
        gate.touch()
        rt.close()


def test_requests_during_a_build_that_fails_are_refused(tmp_path, monkeypatch):
    import core.remote as remote
    gate = tmp_path / "gate"
    real = subprocess.Popen
    monkeypatch.setattr(remote.subprocess, "Popen", lambda args, **kw: real(
        [args[0], "-c", GATED.format(gate=str(gate))], **kw))
    d = json.loads(MLP.read_text())
    d["training"]["dataset"] = {"source": "npz", "path": "nowhere.npz"}
    rt = RemoteTrainer(graph_from_json(d), base_dir=tmp_path)
    try:
        weights = rt.state_dict()
        with pytest.raises(RemoteError, match="unknown command"):
            rt._request("bogus").result(30)  # the reader is not held up by the request
        gate.touch()
        with pytest.raises(RemoteError, match="could not be built|has ended"):
            weights.result(30)
        assert rt.join(30) and isinstance(rt.done.error, DataError)
    finally:
        gate.touch()
        rt.close()


def graph_from_json(d: dict):
    from core.fileformat import graph_from_dict
    return graph_from_dict(d)


# ---- probes by name (core.probe.wire) ------------------------------------------------------
def test_probes_cross_the_pipe_and_bad_requests_are_refused_by_name():
    from core.probe import Embedding, GradCheck, GraphCost, PlaneMaps
    spirals = ROOT / "resources" / "examples" / "mlp_spirals.ncg.json"
    rt = RemoteTrainer(load_graph(spirals), overrides={"device": "cpu"},
                       base_dir=spirals.parent, run=False)
    try:
        assert rt.ready.wait(30)
        plane = rt.probe("plane", resolution=20, unit_node="fc1").result(30)
        assert isinstance(plane, PlaneMaps) and plane.classes.shape == (20, 20)
        assert plane.units.shape[1:] == (20, 20)
        emb = rt.probe("embedding", node="fc1", max_samples=50).result(30)
        assert isinstance(emb, Embedding) and emb.points.shape == (50, 2)
        check = rt.probe("gradcheck", node="fc1", max_elements=4).result(60)
        assert isinstance(check, GradCheck) and check.max_rel_error < 1e-5
        cost = rt.probe("profile", steps=1).result(60)
        assert isinstance(cost, GraphCost) and cost.nodes
        for name, args, why in [("nope", {}, "unknown probe 'nope'"),
                                ("plane", {"resolution": 10**6}, "between 2 and 1000"),
                                ("plane", {"resolution": "big"}, "wrong kind"),
                                ("embedding", {"nodes": "fc1"}, "takes no argument 'nodes'"),
                                ("embedding", {"node": "absent"}, "absent")]:
            with pytest.raises(NeuroCanvasError, match=why):
                rt.probe(name, **args).result(30)
        # a request that reaches the child unchecked is refused there, and it reads on
        rt._outbox.put(encode_frame({"cmd": "probe", "id": 999, "name": "plane",
                                     "args": {"resolution": 10**9}}))
        assert rt.probe("plane", resolution=4).result(30).classes.shape == (4, 4)
    finally:
        rt.close()


def test_the_child_writes_the_runs_tensorboard_events_into_its_folder(tmp_path):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from core.runs import RunStore
    from tests.test_tensorboard import values
    rt, events = remote_run(load_graph(MLP), overrides={"steps": 6, "device": "cpu"},
                            base_dir=MLP.parent, run_dir=tmp_path / "runs", tensorboard=True)
    rt.close()
    [run] = RunStore(tmp_path / "runs").list()
    assert run.status == "finished"
    acc = ea.EventAccumulator(str(run.path / "tensorboard"),
                              size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    losses = values(acc, "loss/step")
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert sorted(losses) == [e.step for e in steps]
    np.testing.assert_allclose([losses[e.step] for e in steps], [e.loss for e in steps],
                               rtol=1e-6)
    rt, _ = remote_run(load_graph(MLP), overrides={"steps": 2, "device": "cpu"},
                       base_dir=MLP.parent, run_dir=tmp_path / "more")
    rt.close()
    [plain] = RunStore(tmp_path / "more").list()
    assert not (plain.path / "tensorboard").exists()  # only when asked for
