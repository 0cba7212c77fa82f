"""core.probe: the input plane and unit maps, embeddings, the gradient check and the cost of
each node, each against an independent computation; and the Trainer methods that run them
between steps without changing the training."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from core import memory
from core.errors import NeuroCanvasError, WeightsError
from core.layers.activations import Tanh
from core.layers.regularization import BatchNorm
from core.network import Network
from core.npz import npz_bytes, read_npz_bytes
from core.optim.optimizers import make_optimizer
from core.probe import (
    Embedding,
    GradCheck,
    GraphCost,
    PlaneMaps,
    data_ranges,
    embed,
    grad_check,
    graph_cost,
    node_macs,
    plane_grid,
    profile_steps,
    project_2d,
)
from core.probe.nets import data_sources
from core.training.config import parse_training
from core.training.step import training_step
from core.training.trainer import Trainer
from core.validate import analyze
from tests.graphs import build, edge, graph_dict, node

RNG = np.random.default_rng(17)


def analysis(d: dict):
    a = analyze(build(d))
    assert a.ok, [str(p) for p in a.problems]
    return a


def training(**over) -> dict:
    t = {"dataset": {"source": "builtin", "name": "xor", "n": 200, "noise": 0.2},
         "validation_split": 0.25, "optimizer": {"type": "adam", "lr": 0.01},
         "batch_size": 16, "steps": 6, "seed": 3}
    t.update(over)
    return t


def plane_dict(loss: str = "CrossEntropyLoss", out: int = 3, hidden: int = 8) -> dict:
    """x [2] -> fc1 Dense -> bn BatchNorm -> act Tanh -> drop Dropout -> fc2 Dense(out) -> loss."""
    target = node("y", "Target", shape=[], dtype="int64") if loss == "CrossEntropyLoss" else \
        node("y", "Target", shape=[out], dtype="float32")
    return graph_dict(
        [node("x", "Input", shape=[2]), node("fc1", "Dense", units=hidden),
         node("bn", "BatchNorm"), node("act", "Tanh"), node("drop", "Dropout", rate=0.3),
         node("fc2", "Dense", units=out), target, node("loss", loss)],
        [edge("x", "fc1"), edge("fc1", "bn"), edge("bn", "act"), edge("act", "drop"),
         edge("drop", "fc2"), edge("fc2", "loss:pred"), edge("y", "loss:target")],
        training=training())


def by_hand(net: Network, x: np.ndarray) -> dict[str, np.ndarray]:
    """plane_dict's evaluation forward in NumPy float64, from the network's arrays."""
    p = {k: np.asarray(v, np.float64) for k, v in {**net.params, **net.buffers}.items()}
    h = x @ p["fc1/W"] + p["fc1/b"]
    bn = (h - p["bn/running_mean"]) / np.sqrt(p["bn/running_var"] + 1e-5) * p["bn/gamma"] \
        + p["bn/beta"]
    act = np.tanh(bn)
    return {"fc1": h, "act": act, "fc2": act @ p["fc2/W"] + p["fc2/b"]}


def state(net: Network) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in {**net.params, **net.buffers}.items()}


def trained(d: dict, steps: int = 6) -> Trainer:
    a = analysis(d)
    tr = Trainer(a, parse_training(d["training"], steps=steps))
    tr.run()
    return tr


# ---- the input plane ----------------------------------------------------------------------------
def test_decision_boundary_is_the_evaluation_forward_and_changes_nothing():
    tr = trained(plane_dict())
    net = tr.net
    assert np.any(net.buffers["bn/running_mean"] != 0)  # BatchNorm has statistics to use
    before, rng_before = state(net), net.rng.bit_generator.state
    maps = plane_grid(net, "x", (-1.0, 2.0), (-0.5, 1.5), (120, 100), unit_node="act")
    assert maps.kind == "classes" and maps.output == "fc2"
    assert maps.classes.shape == (100, 120) and maps.probabilities.shape == (100, 120, 3)
    # map[j, i] is at (xs[i], ys[j])
    j, i = 37, 91
    pt = np.array([[maps.xs[i], maps.ys[j]]])
    assert maps.xs[0] == -1.0 and maps.xs[-1] == 2.0 and maps.ys[-1] == 1.5
    gx, gy = np.meshgrid(maps.xs, maps.ys)
    ref = by_hand(net, np.stack([gx.ravel(), gy.ravel()], 1))
    logits = ref["fc2"]
    e = np.exp(logits - logits.max(1, keepdims=True))
    probs = e / e.sum(1, keepdims=True)
    np.testing.assert_array_equal(maps.classes.ravel(), logits.argmax(1))
    np.testing.assert_allclose(maps.confidence.ravel(), probs.max(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps.probabilities.reshape(-1, 3), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps.units[:, j, i], by_hand(net, pt)["act"][0], atol=1e-5)
    assert maps.unit_count == 8 and maps.units.shape == (8, 100, 120)
    # nothing moved: weights, BatchNorm statistics, the Dropout generator
    after = state(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert net.rng.bit_generator.state == rng_before


def test_regression_and_binary_planes():
    d = plane_dict("MSELoss", out=1)
    a = analysis(d)
    net = Network(a, seed=2)
    maps = plane_grid(net, None, (-2, 2), (-2, 2), 100)
    assert maps.kind == "values" and maps.values.shape == (100, 100, 1)
    gx, gy = np.meshgrid(maps.xs, maps.ys)
    ref = by_hand(net, np.stack([gx.ravel(), gy.ravel()], 1))["fc2"]
    np.testing.assert_allclose(maps.values.reshape(-1, 1), ref, rtol=1e-4, atol=1e-5)

    d = plane_dict("BinaryCrossEntropyLoss", out=1)
    net = Network(analysis(d), seed=5)
    maps = plane_grid(net, "x", (-2, 2), (-2, 2), 100)
    logit = by_hand(net, np.stack([gx.ravel(), gy.ravel()], 1))["fc2"][:, 0]
    assert maps.probabilities.shape == (100, 100, 2)
    np.testing.assert_array_equal(maps.classes.ravel(), (logit > 0).astype(int))
    sig = 1 / (1 + np.exp(-logit))
    np.testing.assert_allclose(maps.confidence.ravel(), np.maximum(sig, 1 - sig), rtol=1e-5)


def test_unit_maps_keep_64_units_and_average_channels():
    d = graph_dict(
        [node("x", "Input", shape=[2]), node("wide", "Dense", units=70),
         node("img", "Reshape", shape=[5, 2, 7]), node("conv", "Conv2D", filters=3,
                                                       kernel_size=1),
         node("flat", "Flatten"), node("out", "Dense", units=1),
         node("y", "Target", shape=[1], dtype="float32"), node("loss", "MSELoss")],
        [edge("x", "wide"), edge("wide", "img"), edge("img", "conv"), edge("conv", "flat"),
         edge("flat", "out"), edge("out", "loss:pred"), edge("y", "loss:target")])
    net = Network(analysis(d), dtype=np.float64, seed=1)
    maps = plane_grid(net, "x", (0, 1), (0, 1), 100, unit_node="wide")
    assert maps.unit_count == 70 and maps.units.shape == (64, 100, 100)
    pt = np.array([[maps.xs[3], maps.ys[80]]])
    wide = pt @ net.params["wide/W"] + net.params["wide/b"]
    np.testing.assert_allclose(maps.units[:, 80, 3], wide[0, :64], rtol=1e-5)
    maps = plane_grid(net, "x", (0, 1), (0, 1), 100, unit_node="conv")
    img = wide.reshape(5, 2, 7)
    conv = np.einsum("fc,chw->fhw", net.params["conv/W"][:, :, 0, 0], img) \
        + net.params["conv/b"][:, None, None]
    assert maps.unit_count == 3
    np.testing.assert_allclose(maps.units[:, 80, 3], conv.mean(axis=(1, 2)), rtol=1e-5)


def test_plane_refuses_what_has_no_plane():
    d = plane_dict()
    d["nodes"][0]["params"]["shape"] = [3]
    net = Network(analysis(d))
    with pytest.raises(NeuroCanvasError, match="two features") as e:
        plane_grid(net, "x", (0, 1), (0, 1))
    assert e.value.node == "x"
    net = Network(analysis(plane_dict()))
    with pytest.raises(NeuroCanvasError, match="one value per batch"):
        plane_grid(net, "x", (0, 1), (0, 1), unit_node="loss")
    with pytest.raises(NeuroCanvasError, match="no node 'nope'"):
        plane_grid(net, "x", (0, 1), (0, 1), unit_node="nope")


def test_data_ranges_add_a_margin():
    pts = np.array([[0.0, 5.0], [2.0, 5.0], [1.0, 5.0]])
    (x0, x1), (y0, y1) = data_ranges(pts, 0.1)
    assert (x0, x1) == pytest.approx((-0.2, 2.2)) and (y0, y1) == (4.0, 6.0)


# ---- embeddings ---------------------------------------------------------------------------------
def test_pca_projection_against_the_covariance_eigenvectors():
    x = RNG.standard_normal((300, 5)) @ RNG.standard_normal((5, 5)) + 3.0
    pts, proj, mean, comps, explained = project_2d(x)
    assert proj == "pca"
    cov = np.cov(x, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    top = vecs[:, ::-1][:, :2].T
    for r in range(2):
        assert abs(abs(comps[r] @ top[r]) - 1) < 1e-8  # the same axis up to its sign
        assert comps[r][np.argmax(np.abs(comps[r]))] > 0  # the sign rule
    np.testing.assert_allclose(explained, vals[::-1][:2] / vals.sum(), rtol=1e-8)
    np.testing.assert_allclose(pts, (x - x.mean(0)) @ comps.T, atol=1e-10)
    # the data negated has the same axes: the signs are fixed by the rule, not by chance
    np.testing.assert_allclose(project_2d(-x)[3], comps, atol=1e-12)
    _, proj, _, _, _ = project_2d(x[:, :2])
    assert proj == "identity" and np.array_equal(project_2d(x[:, :2])[0], x[:, :2])
    pts, proj, _, _, _ = project_2d(x[:, :1])
    assert proj == "pad" and np.array_equal(pts[:, 0], x[:, 0]) and not pts[:, 1].any()


def test_embedding_of_a_node_with_labels_crosses_the_wire():
    tr = trained(plane_dict(hidden=6), steps=3)
    emb = tr.probe_embedding("act")
    val = tr.val_set
    assert emb.projection == "pca" and emb.points.shape == (len(val), 2) and emb.width == 6
    np.testing.assert_array_equal(emb.labels, val["y"])
    act = by_hand(tr.net, val["x"].astype(np.float64))["act"]
    ref = project_2d(act)[0]
    np.testing.assert_allclose(emb.points, ref, rtol=1e-3, atol=1e-4)
    back = Embedding.from_arrays(read_npz_bytes(npz_bytes(emb.to_arrays()), WeightsError, "x"))
    assert back.node == "act" and back.projection == "pca" and back.step == 3
    np.testing.assert_array_equal(back.points, emb.points)
    np.testing.assert_array_equal(back.labels, emb.labels)
    emb = embed(tr.net, "fc1", {"x": val["x"][:50], "y": val["y"][:50]}, max_samples=20)
    assert emb.points.shape == (20, 2) and emb.labels is None
    with pytest.raises(NeuroCanvasError, match="one value per batch"):
        embed(tr.net, "loss", {"x": val["x"], "y": val["y"]})


# ---- the gradient check -------------------------------------------------------------------------
def conv_dict() -> dict:
    return graph_dict(
        [node("img", "Input", shape=[2, 6, 6]), node("conv", "Conv2D", filters=3,
                                                      kernel_size=3, padding="same"),
         node("bn", "BatchNorm"), node("act", "ELU"), node("pool", "AvgPool2D", pool_size=2),
         node("flat", "Flatten"), node("drop", "Dropout", rate=0.2),
         node("fc", "Dense", units=4), node("y", "Target", shape=[], dtype="int64"),
         node("loss", "CrossEntropyLoss")],
        [edge("img", "conv"), edge("conv", "bn"), edge("bn", "act"), edge("act", "pool"),
         edge("pool", "flat"), edge("flat", "drop"), edge("drop", "fc"),
         edge("fc", "loss:pred"), edge("y", "loss:target")])


def test_correct_layers_pass_the_gradient_check():
    net = Network(analysis(conv_dict()), seed=4)
    batch = {"x": RNG.standard_normal((4, 2, 6, 6)).astype(np.float32),
             "y": np.array([0, 1, 2, 3])}
    before = state(net)
    for nid in ("conv", "bn", "act", "pool", "drop", "fc", "loss"):
        check = grad_check(net, nid, batch, max_elements=8)
        assert check.max_rel_error < 1e-5, (nid, check.to_json())
        assert check.verdict == "good" and check.tensors
    check = grad_check(net, "conv", batch, max_elements=8)
    keys = {t.key: t for t in check.tensors}
    assert set(keys) == {"conv/W", "conv/b", "conv:in"}  # the data gradient is checked too
    assert keys["conv/W"].checked == 8 and keys["conv/W"].size == 54
    assert all(np.array_equal(before[k], v) for k, v in state(net).items())
    back = GradCheck.from_json(json.loads(json.dumps(check.to_json())))
    assert back == check


def test_recurrent_and_shared_nodes_pass():
    T = 4
    d = graph_dict(
        [node("x", "Input", shape=[T, 3], sequence=True), node("wx", "Dense", units=4),
         node("wh", "Dense", units=4, bias=False), node("add", "Add"), node("h", "Tanh"),
         node("tc", "TimeCollect", mode="last"), node("lstm_in", "Dense", units=2),
         node("out", "Dense", units=2), node("y", "Target", shape=[2], dtype="float32"),
         node("loss", "MSELoss")],
        [edge("x", "wx"), edge("h", "wh", delay=1), edge("wx", "add:in0"),
         edge("wh", "add:in1"), edge("add", "h"), edge("h", "tc"), edge("tc", "lstm_in"),
         edge("lstm_in", "out"), edge("out", "loss:pred"), edge("y", "loss:target")])
    net = Network(analysis(d), seed=1)
    batch = {"x": RNG.standard_normal((3, T, 3)), "y": RNG.standard_normal((3, 2))}
    check = grad_check(net, "add", batch)
    keys = {t.key: t for t in check.tensors}
    assert keys["add:in0"].shape == [T, 3, 4]  # every time step's input
    assert check.max_rel_error < 1e-5, check.to_json()
    assert grad_check(net, "wh", batch).max_rel_error < 1e-5

    seq = graph_dict(
        [node("x", "Input", shape=[5, 3]), node("lstm", "LSTM", units=4),
         node("gru", "GRU", units=3, return_sequences=False),
         node("y", "Target", shape=[3], dtype="float32"), node("loss", "MSELoss")],
        [edge("x", "lstm"), edge("lstm", "gru"), edge("gru", "loss:pred"),
         edge("y", "loss:target")])
    seq["nodes"][1]["params"]["return_sequences"] = True
    net = Network(analysis(seq), seed=2)
    batch = {"x": RNG.standard_normal((2, 5, 3)), "y": RNG.standard_normal((2, 3))}
    for nid in ("lstm", "gru"):
        assert grad_check(net, nid, batch, max_elements=6).max_rel_error < 1e-5

    # a node with shared_with: its owner's parameters, with the gradient of both uses
    shared = graph_dict(
        [node("x1", "Input", shape=[3], field="x1"), node("x2", "Input", shape=[3], field="x2"),
         node("e1", "Dense", units=2), node("e2", "Dense", units=2, shared_with="e1"),
         node("m", "Multiply"), node("y", "Target", shape=[2], dtype="float32"),
         node("loss", "MSELoss")],
        [edge("x1", "e1"), edge("x2", "e2"), edge("e1", "m:in0"), edge("e2", "m:in1"),
         edge("m", "loss:pred"), edge("y", "loss:target")])
    net = Network(analysis(shared), seed=3)
    batch = {"x1": RNG.standard_normal((3, 3)), "x2": RNG.standard_normal((3, 3)),
             "y": RNG.standard_normal((3, 2))}
    check = grad_check(net, "e2", batch)
    assert {t.key for t in check.tensors} == {"e1/W", "e1/b", "e2:in"}
    assert check.max_rel_error < 1e-5


def test_a_broken_backward_is_caught(monkeypatch):
    net = Network(analysis(plane_dict()), seed=0)
    batch = {"x": RNG.standard_normal((6, 2)), "y": np.array([0, 1, 2, 0, 1, 2])}
    assert grad_check(net, "act", batch).verdict == "good"
    original = Tanh.backward

    def scaled(self, ctx, cache, gout):
        return [g * 1.2 for g in original(self, ctx, cache, gout)]

    monkeypatch.setattr(Tanh, "backward", scaled)
    check = grad_check(net, "act", batch)
    assert check.max_rel_error > 1e-3 and check.verdict == "bad"
    # the layer below it receives the wrong gradient too; its bias, followed by BatchNorm,
    # has a zero gradient either way (BatchNorm removes the mean)
    check = grad_check(net, "fc1", batch)
    assert {t.key for t in check.tensors if t.max_rel_error > 1e-3} == {"fc1/W", "fc1:in"}
    assert next(t for t in check.tensors if t.key == "fc1/b").grad_norm < 1e-9

    monkeypatch.setattr(Tanh, "backward", original)  # only the gamma gradient wrong now
    original_bn = BatchNorm.backward

    def forgets_gamma(self, ctx, cache, gout):
        gins = original_bn(self, ctx, cache, gout)
        self.G["gamma"] = self.G["gamma"] * 0.5
        return gins

    monkeypatch.setattr(BatchNorm, "backward", forgets_gamma)
    check = grad_check(net, "bn", batch)
    bad = {t.key for t in check.tensors if t.max_rel_error > 1e-3}
    assert bad == {"bn/gamma"}


def test_a_kink_is_reported_not_counted_as_an_error():
    d = graph_dict(
        [node("x", "Input", shape=[3]), node("fc1", "Dense", units=4), node("r", "ReLU"),
         node("fc2", "Dense", units=1), node("y", "Target", shape=[1], dtype="float32"),
         node("loss", "MSELoss")],
        [edge("x", "fc1"), edge("fc1", "r"), edge("r", "fc2"), edge("fc2", "loss:pred"),
         edge("y", "loss:target")])
    net = Network(analysis(d), seed=0)
    # a sample of zeros with zero biases: every pre-activation of it sits on ReLU's kink
    batch = {"x": np.array([[0.0, 0.0, 0.0], [0.3, -1.2, 0.8]]), "y": np.array([[1.0], [2.0]])}
    check = grad_check(net, "fc1", batch)
    b = next(t for t in check.tensors if t.key == "fc1/b")
    assert b.kinks > 0
    assert check.max_rel_error < 1e-5


def test_grad_check_names_what_it_cannot_check():
    net = Network(analysis(plane_dict()))
    batch = {"x": RNG.standard_normal((2, 2)), "y": np.array([0, 1])}
    with pytest.raises(NeuroCanvasError, match="data node") as e:
        grad_check(net, "x", batch)
    assert e.value.node == "x"
    with pytest.raises(NeuroCanvasError, match="no such node"):
        grad_check(net, "zz", batch)


# ---- cost ---------------------------------------------------------------------------------------
def test_multiply_adds_against_hand_counts():
    T = 5
    d = graph_dict(
        [node("img", "Input", shape=[3, 8, 8]),
         node("conv", "Conv2D", filters=4, kernel_size=3),  # valid: 6x6
         node("conv2", "Conv2D", filters=2, kernel_size=[3, 2], stride=2, padding="same"),
         node("relu", "ReLU"), node("bn", "BatchNorm"), node("flat", "Flatten"),
         node("fc", "Dense", units=7),
         node("seq", "Input", shape=[T, 3], field="seq"),
         node("lstm", "LSTM", units=4, return_sequences=True), node("gru", "GRU", units=2),
         node("rnn", "RNN", units=6), node("tdense", "Dense", units=5),
         node("mul", "Multiply"), node("cat", "Concat"),
         node("out", "Dense", units=2),
         node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")],
        [edge("img", "conv"), edge("conv", "conv2"), edge("conv2", "relu"),
         edge("relu", "bn"), edge("bn", "flat"), edge("flat", "fc"),
         edge("seq", "lstm"), edge("lstm", "gru"), edge("seq", "rnn"), edge("lstm", "tdense"),
         edge("gru", "mul:in0"), edge("gru", "mul:in1"),
         edge("mul", "cat:in0"), edge("fc", "cat:in1"), edge("cat", "out"),
         edge("out", "loss:pred"), edge("y", "loss:target")])
    a = analysis(d)
    want = {
        "conv": 6 * 6 * 4 * 3 * 3 * 3,
        "conv2": 3 * 3 * 2 * 3 * 2 * 4,  # same padding, stride 2: ceil(6 / 2) = 3 rows, cols
        "relu": 0, "bn": 2 * 3 * 3, "flat": 0,
        "fc": 18 * 7,
        "lstm": T * 4 * (3 * 4 + 4 * 4), "gru": T * 3 * (4 * 2 + 2 * 2),
        "rnn": T * (3 * 6 + 6 * 6),
        "tdense": T * 4 * 5,  # Dense on every step of a [T, 4] sequence
        "mul": 2, "cat": 0, "out": 9 * 2, "loss": 0, "img": 0, "seq": 0,
    }
    assert a.shapes["conv2"] == (2, 3, 3)
    assert {n: node_macs(a, n) for n in want} == want


def test_drawn_cycles_count_each_time_step_and_memory_adds_up():
    T = 6
    d = graph_dict(
        [node("x", "Input", shape=[T, 3], sequence=True), node("wx", "Dense", units=4),
         node("wh", "Dense", units=4, bias=False), node("add", "Add"), node("h", "Tanh"),
         node("tc", "TimeCollect", mode="last"), node("out", "Dense", units=2),
         node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")],
        [edge("x", "wx"), edge("h", "wh", delay=1), edge("wx", "add:in0"),
         edge("wh", "add:in1"), edge("add", "h"), edge("h", "tc"), edge("tc", "out"),
         edge("out", "loss:pred"), edge("y", "loss:target")])
    a = analysis(d)
    assert node_macs(a, "wx") == T * 3 * 4 and node_macs(a, "wh") == T * 4 * 4
    assert node_macs(a, "out") == 4 * 2
    cost = graph_cost(a, 8, {"type": "adam"})
    est = memory.estimate(a, 8, {"type": "adam"})
    assert sum(n.activation_bytes for n in cost.nodes) == est.activations
    assert cost.node("wx").activation_bytes == T * 4 * 8 * 4 * memory.BACKWARD_FACTOR
    assert cost.memory["total"] == est.total
    assert [n.params for n in cost.nodes] == [a.param_count(n) for n in a.order]
    assert cost.totals["macs"] == T * (12 + 16) + 8 and cost.totals["step_s"] is None


def test_profiling_counts_a_drawn_cycles_gathered_weight_gradients_to_its_node(monkeypatch):
    """A Dense in a drawn cycle takes its weight gradients once, after the backward loop
    (``flush_deferred``): that time is the node's backward time too."""
    import core.layers.dense as dense
    T = 5
    d = graph_dict(
        [node("x", "Input", shape=[T, 3], sequence=True), node("wx", "Dense", units=4),
         node("wh", "Dense", units=4), node("add", "Add"), node("h", "Tanh"),
         node("tc", "TimeCollect", mode="last"), node("out", "Dense", units=2),
         node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")],
        [edge("x", "wx"), edge("h", "wh", delay=1), edge("wx", "add:in0"),
         edge("wh", "add:in1"), edge("add", "h"), edge("h", "tc"), edge("tc", "out"),
         edge("out", "loss:pred"), edge("y", "loss:target")])
    cfg = parse_training({"dataset": {"source": "builtin", "name": "xor"},
                          "optimizer": {"type": "sgd", "lr": 0.01}})
    net = Network(analysis(d), seed=1)
    opt = make_optimizer(cfg.optimizer, list(net.params.items()))
    slow = 0.05
    weight_grads = dense.Dense._weight_grads

    def slow_weight_grads(self, x2, g2):
        if self.id == "wh" and len(x2) > 4:  # the gathered product of the T - 1 steps
            time.sleep(slow)
        weight_grads(self, x2, g2)

    monkeypatch.setattr(dense.Dense, "_weight_grads", slow_weight_grads)
    batches = [{"x": RNG.standard_normal((4, T, 3)).astype(np.float32),
                "y": RNG.standard_normal((4, 2)).astype(np.float32)} for _ in range(2)]
    prof = profile_steps(net, opt, batches, cfg)
    assert prof.backward_s["wh"] >= slow  # once a step, in the flush after the loop
    assert prof.backward_s["wx"] < slow
    assert prof.step_s >= sum(prof.forward_s.values()) + sum(prof.backward_s.values())
    assert all("flush_deferred" not in vars(layer) for layer in net.layers.values())


def test_profiling_times_every_node_and_steps_as_usual():
    d = conv_dict()
    cfg = parse_training({"dataset": {"source": "builtin", "name": "xor"},
                          "optimizer": {"type": "adam", "lr": 0.01},
                          "regularization": {"l2": 1e-3}})
    nets = [Network(analysis(d), seed=9) for _ in range(2)]
    opts = [make_optimizer(cfg.optimizer, list(n.params.items())) for n in nets]
    batches = [{"x": RNG.standard_normal((4, 2, 6, 6)).astype(np.float32),
                "y": RNG.integers(0, 4, 4)} for _ in range(3)]
    prof = profile_steps(nets[0], opts[0], batches, cfg)
    for b in batches:
        training_step(nets[1], opts[1], b, cfg)
    s0, s1 = state(nets[0]), state(nets[1])
    assert all(np.array_equal(s0[k], s1[k]) for k in s0)  # bit for bit, Dropout included
    assert set(prof.forward_s) == set(nets[0].layers) and prof.steps == 3
    assert all(prof.forward_s[n] > 0 and prof.calls[n] == 1 for n in nets[0].layers)
    assert all(prof.backward_s[n] > 0 for n in ("conv", "bn", "fc", "loss"))
    assert prof.step_s >= sum(prof.forward_s.values()) + sum(prof.backward_s.values())
    # the timers are gone
    assert all("forward" not in vars(layer) for layer in nets[0].layers.values())
    assert "_feed" not in vars(nets[0])


# ---- the Trainer, between steps -----------------------------------------------------------------
def test_trainer_probes_between_steps_leave_training_as_it_was():
    d = plane_dict()
    d["training"]["steps"] = 8
    seen: dict = {}

    def probe(tr):
        def on_event(ev):
            if getattr(ev, "step", None) == 3 and not seen:
                seen["plane"] = tr.probe_plane("fc1", resolution=100)
                seen["emb"] = tr.probe_embedding("act")
                seen["check"] = tr.grad_check("fc1")
                seen["cost"] = tr.profile(2)
        return on_event

    plain = Trainer(analysis(d), parse_training(d["training"]))
    plain.run()
    tr = Trainer(analysis(d), parse_training(d["training"]))
    tr.on_event = probe(tr)
    tr.run()
    s0, s1 = plain.net.state_dict(), tr.net.state_dict()
    assert all(np.array_equal(s0[k], s1[k]) for k in s0)
    assert plain.optimizer.state_dict()["state"]["fc1/W"]["step"] == 8
    assert tr.optimizer.state_dict()["state"]["fc1/W"]["step"] == 8

    maps = seen["plane"]
    assert maps.step == 4 and maps.classes.shape == (100, 100) and maps.units.shape[0] == 8
    pts = np.concatenate([tr.train_set["x"], tr.val_set["x"]])
    assert maps.xs[0] < pts[:, 0].min() and maps.xs[-1] > pts[:, 0].max()
    np.testing.assert_array_equal(maps.points["val_labels"], tr.val_set["y"])
    assert maps.points["train_points"].shape == (len(tr.train_set), 2)
    back = PlaneMaps.from_arrays(read_npz_bytes(npz_bytes(maps.to_arrays()), WeightsError, "p"))
    assert back.output == "fc2" and back.step == 4 and back.unit_node == "fc1"
    np.testing.assert_array_equal(back.classes, maps.classes)
    np.testing.assert_array_equal(back.points["train_labels"], maps.points["train_labels"])

    assert seen["check"].verdict == "good"
    cost = seen["cost"]
    assert cost.profile.steps == 2 and cost.node("fc1").forward_s > 0
    assert cost.node("fc1").macs == 2 * 8
    back = GraphCost.from_json(json.loads(json.dumps(cost.to_json())))
    assert back == cost


def test_trainer_probe_through_call_between_steps_while_running():
    d = plane_dict()
    d["training"]["steps"] = 400
    tr = Trainer(analysis(d), parse_training(d["training"]))
    tr.pause()
    tr.start()
    try:
        maps = tr.call_between_steps(lambda: tr.probe_plane()).result(timeout=30)
        check = tr.call_between_steps(lambda: tr.grad_check("fc2")).result(timeout=30)
    finally:
        tr.stop()
        tr.join(30)
    assert maps.step == 0 and maps.kind == "classes"
    assert check.verdict == "good"


def test_a_triplet_towers_points_take_their_class_from_the_dataset():
    from core.fileformat import load_graph
    from core.training import Trainer, parse_training
    from tests.cli_helpers import ROOT
    path = ROOT / "resources" / "examples" / "lesson_siamese_triplets.ncg.json"
    g = load_graph(path)
    tr = Trainer(analyze(g), parse_training(g.training, steps=1, device="cpu"),
                 base_dir=path.parent)
    data = tr.val_set
    towers = {}
    for nid in tr.analysis.order:
        srcs = {tr.analysis.layers[s].params.get("field")
                for s in data_sources(tr.analysis, nid)}
        if len(srcs) == 1 and tr.analysis.layers[nid].data_role is None:
            towers.setdefault(srcs.pop(), nid)
    assert {"anchor", "negative"} <= set(towers)
    for field, tower in towers.items():
        emb = tr.probe_embedding(tower, max_samples=40)
        np.testing.assert_array_equal(emb.labels, data.fields[f"{field}_class"][:40])
    neg = tr.probe_embedding(towers["negative"], max_samples=40).labels
    assert (neg != data.fields["y"][:40]).all()  # a negative is never the anchor's digit
