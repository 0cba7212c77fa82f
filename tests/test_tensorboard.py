"""``main.py train --tensorboard DIR`` (core/tensorboard.py): the event files, read back with
TensorBoard's own reader, hold the metrics log's values: every step's loss and each layer's
gradient norm, every epoch's train/val loss and accuracy."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core import tensorboard as tbmod
from core.errors import NeuroCanvasError
from core.training import EpochEvent, StepEvent
from tests.cli_helpers import ROOT, run

EXAMPLE = ROOT / "resources" / "examples" / "mlp_spirals.ncg.json"


@pytest.fixture
def accumulator():
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

    def read(folder):
        acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
        acc.Reload()
        return acc
    return read


def values(acc, tag: str) -> dict[int, float]:
    """step -> value of one tag, whichever way the writer stored the scalar (torch's writer:
    a simple value; tensorboard's own: a scalar tensor)."""
    if tag in acc.Tags()["scalars"]:
        return {e.step: e.value for e in acc.Scalars(tag)}
    from tensorboard.util import tensor_util

    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


def read_log(path) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    return ([x for x in lines if x["event"] == "step"], [x for x in lines if x["event"] == "epoch"])


def check_against_log(acc, steps: list[dict], epochs: list[dict]) -> None:
    assert len(steps) > 10 and len(epochs) == 2
    close = {"rtol": 1e-6, "atol": 1e-7}  # TensorBoard keeps float32
    loss = values(acc, "loss/step")
    assert sorted(loss) == [s["step"] for s in steps]
    np.testing.assert_allclose([loss[s["step"]] for s in steps], [s["loss"] for s in steps],
                               **close)
    layers = sorted({k.split("/")[0] for k in steps[0]["grad_norm"]})
    assert layers == ["fc1", "fc2", "fc3"]
    for layer in layers:
        got = values(acc, f"grad_norm/{layer}")
        want = [math.sqrt(sum(v ** 2 for k, v in s["grad_norm"].items()
                              if k.split("/")[0] == layer)) for s in steps]
        np.testing.assert_allclose([got[s["step"]] for s in steps], want, **close)
    glob = values(acc, "grad_norm/global")
    np.testing.assert_allclose([glob[s["step"]] for s in steps],
                               [s["global_grad_norm"] for s in steps], **close)
    for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"),
                     ("accuracy/train", "train_accuracy"), ("accuracy/val", "val_accuracy")):
        got = values(acc, tag)
        assert sorted(got) == [0, 1], tag
        np.testing.assert_allclose([got[e["epoch"]] for e in epochs], [e[key] for e in epochs],
                                   **close)


def test_train_writes_what_the_metrics_log_says(accumulator, tmp_path):
    pytest.importorskip("tensorboard")
    log, tb = tmp_path / "m.jsonl", tmp_path / "tb"
    r = run("train", EXAMPLE, "--epochs", "2", "--log", log, "--tensorboard", tb)
    assert r.returncode == 0, r.stderr
    steps, epochs = read_log(log)
    check_against_log(accumulator(tb), steps, epochs)


def test_tensorboards_own_writer_too(accumulator, tmp_path):
    """Without torch, the tensorboard package's own writer: the same values."""
    pytest.importorskip("tensorboard")
    log = tmp_path / "m.jsonl"
    r = run("train", EXAMPLE, "--epochs", "2", "--log", log)
    assert r.returncode == 0, r.stderr
    steps, epochs = read_log(log)
    writer = tbmod.TensorBoardWriter(tmp_path / "own", library="tensorboard")
    for s in steps:
        writer.on_event(StepEvent(s["epoch"], s["step"], s["time"], s["loss"], s["grad_norm"],
                                  s["global_grad_norm"]))
    for e in epochs:
        writer.on_event(EpochEvent(e["epoch"], e["train_loss"], e.get("val_loss"), e["seconds"],
                                   e.get("train_accuracy"), e.get("val_accuracy")))
    assert writer.close() is None
    check_against_log(accumulator(tmp_path / "own"), steps, epochs)


def test_several_losses_get_a_tag_each():
    ev = StepEvent(0, 5, 0.1, 1.5, {"a/W": 3.0, "a/b": 4.0, "b/W": 1.0}, 5.1,
                   losses={"l1": 1.0, "l2": 0.5})
    tags = {t: (v, s) for t, v, s in tbmod.scalars(ev)}
    assert tags["loss/step/l1"] == (1.0, 5) and tags["loss/step/l2"] == (0.5, 5)
    assert tags["grad_norm/a"] == (5.0, 5)  # sqrt(3² + 4²)
    ep = EpochEvent(2, 1.0, None, 1.0, losses={"l1": {"train_loss": 0.7}})
    tags = {t: (v, s) for t, v, s in tbmod.scalars(ep)}
    assert tags == {"loss/train": (1.0, 2), "loss/train/l1": (0.7, 2)}


def test_without_tensorboard_one_line_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(tbmod, "available_library", lambda: None)
    with pytest.raises(NeuroCanvasError) as err:
        tbmod.TensorBoardWriter(tmp_path / "tb")
    assert "pip install tensorboard" in str(err.value) and "[tensorboard]" in str(err.value)
    assert not (tmp_path / "tb").exists()


def test_an_unwritable_folder_is_a_user_error(tmp_path):
    pytest.importorskip("tensorboard")
    (tmp_path / "file").write_text("x")
    r = run("train", EXAMPLE, "--steps", "1", "--tensorboard", tmp_path / "file" / "tb")
    assert r.returncode == 2 and "TensorBoard" in r.stderr and "Traceback" not in r.stderr
