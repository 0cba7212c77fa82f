"""Gradient clipping (training.clip, by norm and by value) on recurrent graphs: built-in
RNN, LSTM and GRU layers and a drawn Elman cycle unrolled through time."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core import optim
from core.network import Network
from core.training import StepEvent, Trainer, parse_training, training_step
from core.validate import analyze
from tests.graphs import build, edge, graph_dict, node

T, H = 10, 8
SINE = {"source": "builtin", "name": "sine", "n": 256, "steps": T}


def builtin_graph(kind: str) -> dict:
    return graph_dict(
        [node("x", "Input", shape=[T, 1]), node("rnn", kind, units=H),
         node("out", "Dense", units=1), node("y", "Target", shape=[1], dtype="float32"),
         node("loss", "MSELoss")],
        [edge("x", "rnn"), edge("rnn", "out"), edge("out", "loss:pred"),
         edge("y", "loss:target")])


def elman_graph() -> dict:
    return graph_dict(
        [node("x", "Input", shape=[T, 1], sequence=True), node("wx", "Dense", units=H),
         node("wh", "Dense", units=H), node("add", "Add"), node("h", "Tanh"),
         node("collect", "TimeCollect"), node("out", "Dense", units=1),
         node("y", "Target", shape=[1], dtype="float32"), node("loss", "MSELoss")],
        [edge("x", "wx"), edge("h", "wh", delay=1), edge("wx", "add:in0"),
         edge("wh", "add:in1"), edge("add", "h"), edge("h", "collect"),
         edge("collect", "out"), edge("out", "loss:pred"), edge("y", "loss:target")])


GRAPHS = {"RNN": builtin_graph("RNN"), "LSTM": builtin_graph("LSTM"),
          "GRU": builtin_graph("GRU"), "drawn-elman": elman_graph()}


def batch(n: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, 1)).astype(np.float32) * 3.0
    return {"x": x, "y": (rng.standard_normal((n, 1)) * 5.0).astype(np.float32)}


def unclipped_grads(g: dict, b: dict) -> dict[str, np.ndarray]:
    net = Network(analyze(build(g)), seed=0)
    net.loss_and_grads(b)
    return {k: np.array(v, dtype=np.float64) for k, v in net.gradients().items()}


def one_step(g: dict, b: dict, clip: dict):
    """(params before, params after, gradients as clipped, global norm reported) of one SGD
    step with ``clip``."""
    net = Network(analyze(build(g)), seed=0)
    cfg = parse_training({"dataset": SINE, "optimizer": {"type": "sgd", "lr": 0.1},
                          "clip": clip})
    opt = optim.make_optimizer(cfg.optimizer, list(net.params.items()))
    before = {k: np.array(v, dtype=np.float64) for k, v in net.params.items()}
    _, _, global_norm, _ = training_step(net, opt, b, cfg)
    after = {k: np.array(v, dtype=np.float64) for k, v in net.params.items()}
    used = {k: np.array(v, dtype=np.float64) for k, v in net.gradients().items()}
    return before, after, used, global_norm


@pytest.mark.parametrize("name", list(GRAPHS))
def test_clip_by_norm_bounds_the_global_norm_of_the_update(name):
    b = batch()
    raw = unclipped_grads(GRAPHS[name], b)
    raw_norm = math.sqrt(sum(float(np.sum(g * g)) for g in raw.values()))
    max_norm = 0.1 * raw_norm  # well below: clipping must act
    before, after, used, reported = one_step(GRAPHS[name], b, {"norm": max_norm})
    assert reported == pytest.approx(raw_norm, rel=1e-5)  # the norm before clipping
    used_norm = math.sqrt(sum(float(np.sum(g * g)) for g in used.values()))
    assert used_norm <= max_norm * (1 + 1e-5)
    assert used_norm == pytest.approx(max_norm, rel=1e-4)
    for k in raw:  # same direction, scaled as a whole; and the step used these gradients
        np.testing.assert_allclose(used[k], raw[k] * (max_norm / raw_norm), rtol=1e-4,
                                   atol=1e-7 * max_norm)
        np.testing.assert_allclose(after[k], before[k] - 0.1 * used[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(GRAPHS))
def test_clip_by_value_bounds_every_element(name):
    b = batch(seed=1)
    raw = unclipped_grads(GRAPHS[name], b)
    largest = max(float(np.abs(g).max()) for g in raw.values())
    clip = 0.2 * largest
    before, after, used, _ = one_step(GRAPHS[name], b, {"value": clip})
    assert max(float(np.abs(g).max()) for g in used.values()) <= clip * (1 + 1e-6)
    for k in raw:
        np.testing.assert_allclose(used[k], np.clip(raw[k], -clip, clip), rtol=1e-5,
                                   atol=1e-6 * clip)
        np.testing.assert_allclose(after[k], before[k] - 0.1 * used[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, clip", [("LSTM", {"norm": 0.5}), ("drawn-elman", {"norm": 0.5}),
                                        ("GRU", {"value": 0.05}),
                                        ("drawn-elman", {"value": 0.05})])
def test_training_with_clipping_still_learns_and_reports_state_norms(name, clip):
    g = dict(GRAPHS[name], training={"dataset": SINE, "optimizer": {"type": "adam", "lr": 0.02},
                                     "clip": clip, "batch_size": 32, "seed": 0, "steps": 60})
    a = analyze(build(g))
    events: list = []
    done = Trainer(a, parse_training(g["training"], device="cpu"), on_event=events.append,
                   queue_events=False).run()
    assert done.reason == "finished", done.error
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) == 60
    first, last = np.mean([s.loss for s in steps[:5]]), np.mean([s.loss for s in steps[-5:]])
    assert last < 0.3 * first, (first, last)
    if "norm" in clip:  # clipping did act on some steps
        assert max(s.global_grad_norm for s in steps) > clip["norm"]
    state = "h" if name == "drawn-elman" else "rnn"
    assert all(len(s.state_grad_norm[state]) == T for s in steps)
