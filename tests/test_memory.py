"""The memory estimate and budget (core/memory.py, docs/format.md section 6): a graph that
would not fit is refused by ``train`` and ``predict`` before anything large is allocated, and
``check`` warns about it."""
from __future__ import annotations

import time

import numpy as np
import pytest

from core import memory
from core.errors import MemoryBudgetError, NeuroCanvasError
from core.training import Trainer, parse_training
from core.validate import analyze
from core.weights import save_weights
from tests.cli_helpers import ROOT, assert_user_error, run
from tests.graphs import build, edge, graph_dict, mlp_dict, node, write

MLP_DIGITS = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"
HUGE = 10 ** 6  # a Dense of HUGE units on an input of HUGE features: 10**12 parameters


def huge_dict() -> dict:
    return graph_dict(
        [node("x", "Input", shape=[HUGE]),
         node("big", "Dense", units=HUGE),
         node("y", "Target", shape=[HUGE], dtype="float32"),
         node("loss", "MSELoss")],
        [edge("x", "big"), edge("big", "loss:pred"), edge("y", "loss:target")],
        name="huge", training={"dataset": {"source": "npz", "path": "data.npz"},
                               "batch_size": 32})


# ---- the estimate -------------------------------------------------------------------------
def test_estimate_of_a_small_mlp_is_the_hand_computation():
    a = analyze(build(mlp_dict()))  # x[4] -> fc1 Dense(5) -> ReLU -> fc2 Dense(3) -> MSE, y[3]
    est = memory.estimate(a, 10, "adam", dataset_samples=100)
    params = (4 * 5 + 5) + (5 * 3 + 3)  # 43
    assert est.params == params * 4
    assert est.gradients == params * 4
    assert est.optimizer == 2 * params * 4  # adam: two moments
    # x 4, fc1 5, act 5, fc2 3, y 3, loss 1 values per sample; x batch 10, 4 bytes, x 2
    assert est.activations == (4 + 5 + 5 + 3 + 3 + 1) * 10 * 4 * 2
    assert est.dataset == 100 * (4 + 3) * 4  # fields x [4] and y [3], float32
    assert est.total == 172 + 172 + 344 + 1680 + 2800
    assert est.contributors[:3] == [("fc1", 25 * 4 * 4 + 5 * 10 * 4 * 2),
                                    ("fc2", 18 * 4 * 4 + 3 * 10 * 4 * 2),
                                    ("act", 5 * 10 * 4 * 2)]
    # a forward pass only: no gradients, optimizer state or backward factor
    ev = memory.estimate(a, 10, "adam", training=False)
    assert (ev.gradients, ev.optimizer, ev.dataset) == (0, 0, 0)
    assert ev.activations == 21 * 10 * 4
    assert "per training step with batch 10" in est.describe()


@pytest.mark.parametrize("opt, slots", [
    (None, 0), ("sgd", 0), ({"type": "sgd", "momentum": 0.9}, 1), ("momentum", 1),
    ("nesterov", 1), ("adagrad", 1), ("rmsprop", 1), ({"type": "rmsprop", "momentum": 0.5}, 2),
    ({"type": "rmsprop", "momentum": 0.5, "centered": True}, 3), ("adam", 2), ("adamw", 2),
    ({"type": "adam", "amsgrad": True}, 3)])
def test_optimizer_state(opt, slots):
    assert memory.optimizer_slots(opt) == slots


def test_timed_nodes_count_once_per_step():
    a = analyze(build(graph_dict(
        [node("x", "Input", shape=[7, 3], sequence=True),
         node("h", "Dense", units=2),
         node("c", "TimeCollect")],
        [edge("x", "h"), edge("h", "c")])))
    assert a.steps == 7 and "h" in a.timed
    est = memory.estimate(a, 1, training=False)
    by_node = dict(est.contributors)
    assert by_node["h"] == 8 * 4 + 2 * 7 * 4  # parameters + one [2] value per time step


def test_the_estimate_of_10_to_the_12_parameters_is_exact_and_cheap():
    a = analyze(build(huge_dict()))
    t = time.perf_counter()
    est = memory.estimate(a, 32, "adam")
    assert time.perf_counter() - t < 1
    assert est.params == (HUGE * HUGE + HUGE) * 4
    assert est.contributors[0][0] == "big"


@pytest.mark.parametrize("text, size", [("8G", 8 * 1024 ** 3), ("512M", 512 * 1024 ** 2),
                                        ("1.5GiB", 3 * 1024 ** 3 // 2), ("1000", 1000),
                                        ("1K", 1024), ("2kb", 2048)])
def test_parse_size(text, size):
    assert memory.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "1X", "-5G", "0", "1iB", "G"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        memory.parse_size(text)


def test_budget_default_and_environment(monkeypatch):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    assert 0 < memory.budget() <= memory.available_memory()
    assert memory.budget(123) == 123
    monkeypatch.setenv(memory.ENV_VAR, "2M")
    assert memory.budget() == 2 * 1024 ** 2
    assert memory.budget(5) == 5  # the option wins
    monkeypatch.setenv(memory.ENV_VAR, "lots")
    with pytest.raises(NeuroCanvasError, match=memory.ENV_VAR):
        memory.budget()


# ---- the command line ---------------------------------------------------------------------
def test_train_refuses_10_to_the_12_parameters_quickly(tmp_path):
    g = write(tmp_path / "huge.ncg.json", huge_dict())
    t = time.perf_counter()
    r = run("train", g)
    assert time.perf_counter() - t < 60
    line = assert_user_error(r, "node 'big'", "budget", "TiB")
    assert "MemoryError" not in line


def test_check_warns_about_10_to_the_12_parameters(tmp_path):
    g = write(tmp_path / "huge.ncg.json", huge_dict())
    r = run("check", g)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("memory: about ") and "batch 32" in line for line in lines)
    warning = [line for line in lines if line.startswith("warning: ")]
    assert len(warning) == 1 and "node 'big'" in warning[0], r.stdout
    assert lines[-1] == "OK"


def test_check_prints_the_estimate(tmp_path):
    r = run("check", MLP_DIGITS, "--max-memory", "8G")
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("memory: about ") and line.endswith("(budget 8.0 GiB)")
               for line in r.stdout.splitlines()), r.stdout
    assert "warning" not in r.stdout


def test_a_small_budget_refuses_train_and_predict(tmp_path):
    assert_user_error(run("train", MLP_DIGITS, "--max-memory", "1K"), "budget of 1.0 KiB",
                      "node 'fc1'")
    a = analyze(build(mlp_dict()))
    w = tmp_path / "w.npz"
    save_weights(w, {"fc1/W": np.zeros((4, 5), np.float32), "fc1/b": np.zeros(5, np.float32),
                     "fc2/W": np.zeros((5, 3), np.float32), "fc2/b": np.zeros(3, np.float32)})
    g = write(tmp_path / "mlp.ncg.json", mlp_dict())
    x = tmp_path / "x.npz"
    np.savez(x, x=np.zeros((2, 4), np.float32))
    assert a.ok
    assert_user_error(run("predict", g, "--weights", w, "--input", x, "--max-memory", "1K"),
                      "budget of 1.0 KiB", "to predict")
    r = run("predict", g, "--weights", w, "--input", x, "--max-memory", "1G")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("cmd", ["check", "train"])
def test_a_bad_max_memory_is_a_usage_error(cmd):
    assert_user_error(run(cmd, MLP_DIGITS, "--max-memory", "lots"), "--max-memory", "lots")


def test_the_environment_variable(monkeypatch):
    monkeypatch.setenv(memory.ENV_VAR, "1K")
    assert_user_error(run("train", MLP_DIGITS), "budget of 1.0 KiB", "node 'fc1'")
    r = run("check", MLP_DIGITS)
    assert r.returncode == 0 and "warning: " in r.stdout and "(budget 1.0 KiB)" in r.stdout
    monkeypatch.setenv(memory.ENV_VAR, "lots")
    assert_user_error(run("train", MLP_DIGITS), memory.ENV_VAR)


# ---- the trainer (what the editor's training process runs) ------------------------------
def test_the_trainer_raises_the_typed_error(tmp_path):
    a = analyze(build(huge_dict()))
    cfg = parse_training(a.graph.training)
    t = time.perf_counter()
    with pytest.raises(MemoryBudgetError) as e:
        Trainer(a, cfg, base_dir=tmp_path)  # data.npz is not there: refused before loading
    assert time.perf_counter() - t < 5
    assert e.value.node == "big"
    small = analyze(build(mlp_dict()))
    cfg = parse_training({"dataset": {"source": "builtin", "name": "xor"}})
    with pytest.raises(MemoryBudgetError):
        Trainer(small, cfg, max_memory=1024)
