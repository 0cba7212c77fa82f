"""core.probe.stepper: a walk through one training step changes the weights exactly as
``training_step`` does (MLP, CNN, LSTM and a drawn Elman cycle), ``back`` and abandoning
restore everything, the stages come in the plan's order, and the chain-rule numbers are the
Jacobian entries worked out by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import NeuroCanvasError
from core.fileformat import load_graph
from core.probe.cost import save_state
from core.probe.stepper import StepState, edge_key
from core.probe.wire import PROBES, run_probe
from core.training import Trainer, parse_training
from core.training.step import training_step
from core.validate import analyze
from tests.graphs import build, edge, graph_dict, node

EXAMPLES = "resources/examples"


def example_pair(name: str, **training) -> tuple[Trainer, Trainer]:
    g = load_graph(f"{EXAMPLES}/{name}.ncg.json")
    t = {**g.training, **training}
    a = analyze(g)
    return Trainer(a, parse_training(t)), Trainer(a, parse_training(t))


def small_dict(**training) -> dict:
    """x [3] -> fc1 Dense(4) -> bn BatchNorm -> act Tanh -> drop Dropout -> fc2 Dense(2) ->
    MSE with y [2]."""
    t = {"dataset": {"source": "arrays", "fields": {}}, "optimizer": {"type": "adam",
                                                                       "lr": 0.05},
         "batch_size": 8, "steps": 5, "seed": 4, "validation_split": 0.0, **training}
    return graph_dict(
        [node("x", "Input", shape=[3]), node("fc1", "Dense", units=4), node("bn", "BatchNorm"),
         node("act", "Tanh"), node("drop", "Dropout", rate=0.25),
         node("fc2", "Dense", units=2), node("y", "Target", shape=[2], dtype="float32"),
         node("loss", "MSELoss")],
        [edge("x", "fc1"), edge("fc1", "bn"), edge("bn", "act"), edge("act", "drop"),
         edge("drop", "fc2"), edge("fc2", "loss:pred"), edge("y", "loss:target")],
        training=t)


def small_pair(tmp_path, **training) -> tuple[Trainer, Trainer]:
    rng = np.random.default_rng(5)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.normal(size=(40, 3)).astype(np.float32),
             y=rng.normal(size=(40, 2)).astype(np.float32))
    d = small_dict(**training)
    d["training"]["dataset"] = {"source": "npz", "path": str(path)}
    a = analyze(build(d))
    assert a.ok, [str(p) for p in a.problems]
    return (Trainer(a, parse_training(d["training"]), base_dir=tmp_path),
            Trainer(a, parse_training(d["training"]), base_dir=tmp_path))


def weights(tr: Trainer) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in {**tr.net.params, **tr.net.buffers}.items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k  # to the last bit


def assert_same_optimizer(a: Trainer, b: Trainer) -> None:
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for name in sa:
        for k, v in sa[name].items():
            assert np.array_equal(np.asarray(v), np.asarray(sb[name][k])), (name, k)


def walk(tr: Trainer) -> list[StepState]:
    states = [tr.step_walk("begin")]
    while states[-1].phase != "update":
        states.append(tr.step_walk("next"))
    return states


def next_batch(tr: Trainer, it=None):
    return next(it or iter(tr.train_set.batches(tr.config.batch_size, tr.config.shuffle,
                                                tr.data_rng)))


def plan_calls(tr: Trainer) -> list[tuple[str, int | None]]:
    """(node, t) of every forward call and fed value, in the order the plan runs them."""
    p = tr.net.plan
    out = [(s.node_id, None) for s in p.pre]
    out += [(s.node_id, t) for t in range(p.T) for s in p.region]
    return out + [(s.node_id, None) for s in p.post]


@pytest.mark.parametrize("name, training", [
    ("mlp_digits", {"regularization": {"l2": 0.001}}),
    ("cnn_digits", {}),
    ("lstm_sine", {"clip": {"value": 0.05}}),
    ("elman_cycle", {}),  # clips by norm
])
def test_a_full_walk_is_one_training_step_to_the_bit(name, training):
    walker, plain = example_pair(name, **training)
    it = iter(plain.train_set.batches(plain.config.batch_size, plain.config.shuffle,
                                      plain.data_rng))
    for round_ in range(2):  # the second walk continues from the first's optimizer state
        before = weights(walker)
        states = walk(walker)
        # the walk leaves the weights alone until the update stage
        assert states[-2].applied is False and states[-1].applied is True
        walker.step_walk("end")
        loss, *_ = training_step(plain.net, plain.optimizer, next(it), plain.config)
        assert_same(weights(walker), weights(plain))
        assert_same_optimizer(walker, plain)
        assert walker.step == round_ + 1
        assert not all(np.array_equal(before[k], v) for k, v in weights(walker).items())
        loss_stage = states[states[0].starts["loss"]].stage
        assert loss_stage["loss"] == pytest.approx(loss, rel=1e-6)
        # forward in the plan's order (time step by time step), backward in reverse
        fwd = [(s.stage["node"], s.stage["t"]) for s in states if s.phase == "forward"]
        assert fwd == plan_calls(walker)
        bwd = [(s.stage["node"], s.stage["t"]) for s in states if s.phase == "backward"]
        order = {c: i for i, c in enumerate(fwd)}
        assert [order[c] for c in bwd] == sorted((order[c] for c in bwd), reverse=True)
        assert set(bwd) >= {c for c in fwd if walker.analysis.param_count(c[0]) > 0}


def test_an_lstm_and_a_drawn_cycle_step_through_time():
    walker, _ = example_pair("elman_cycle")
    states = walk(walker)
    T = walker.net.plan.T
    region = {s.node_id for s in walker.net.plan.region}
    ts = [s.stage["t"] for s in states if s.stage.get("node") in region
          and s.phase == "forward"]
    assert ts == sorted(ts) and set(ts) == set(range(T))
    back_ts = [s.stage["t"] for s in states if s.stage.get("node") in region
               and s.phase == "backward"]
    assert back_ts == sorted(back_ts, reverse=True) and back_ts[0] == T - 1
    # the gradient reaching the fed-back state, per time step, as training reports it
    with_norms = [s.stage for s in states if "state_grad_norms" in s.stage]
    assert len(with_norms) == 1 and len(with_norms[0]["state_grad_norms"]) == T
    lstm, _ = example_pair("lstm_sine")
    states = walk(lstm)
    stage = next(s.stage for s in states if s.phase == "backward"
                 and s.stage["node"] == "lstm")
    assert len(stage["state_grad_norms"]) == lstm.train_set["x"].shape[1]  # T = 20


def test_back_and_abandoning_put_everything_back(tmp_path):
    walker, plain = small_pair(tmp_path)
    pre = weights(walker)
    states = walk(walker)
    assert walker.step == 1
    post = weights(walker)
    st = walker.step_walk("back")  # out of the update: the weights before the step
    assert st.phase == "backward" and not st.applied and walker.step == 0
    assert_same(weights(walker), pre)
    for _ in range(3):
        st = walker.step_walk("back")
    assert st.index == len(states) - 5
    assert st.stage == states[st.index].stage  # the stages are kept
    st = walker.step_walk("phase")
    assert st.phase == "update" and walker.step == 1
    assert_same(weights(walker), post)
    walker.step_walk("back")
    walker.step_walk("end")  # abandoned before the update: as if it never began
    assert walker.step == 0
    assert_same(weights(walker), pre)
    # the Dropout generator, BatchNorm statistics and optimizer are untouched: the next
    # ordinary step is the plain trainer's first
    b = next_batch(plain)
    training_step(walker.net, walker.optimizer, b, walker.config)
    training_step(plain.net, plain.optimizer, b, plain.config)
    assert_same(weights(walker), weights(plain))
    assert_same_optimizer(walker, plain)


def test_a_walk_mid_run_counts_as_a_step_and_an_overtaken_walk_ends(tmp_path):
    walker, _ = small_pair(tmp_path)
    walker.run()  # five steps
    assert walker.step == 5 and walker._last_batch is not None
    saved = save_state(walker.net, walker.optimizer)
    st = walker.step_walk("begin")
    assert st.batch_size == len(walker._last_batch["x"])
    walker.step_walk("phase")
    walker.step_walk("phase")
    st = walker.step_walk("phase")
    assert st.phase == "update" and st.step == 6
    walker.step_walk("end")
    assert walker.step == 6
    assert not np.array_equal(np.asarray(walker.net.params["fc1/W"]), saved.params["fc1/W"])
    walker.step_walk("begin")
    walker.step += 1  # training went on meanwhile
    with pytest.raises(NeuroCanvasError, match="moved on"):
        walker.step_walk("next")
    with pytest.raises(NeuroCanvasError, match="begin one first"):
        walker.step_walk("next")


def test_statistics_and_the_sample_values(tmp_path):
    walker, _ = small_pair(tmp_path)
    st = walker.step_walk("begin", sample=3)
    batch = walker._walk.batch
    x = batch["x"]
    assert st.stage["node"] == "x" and st.stage["shape"] == list(x.shape)
    assert st.stage["mean"] == pytest.approx(float(x.astype(np.float64).mean()))
    assert st.stage["max"] == pytest.approx(float(x.max()))
    assert st.stage["values"] == pytest.approx(x[3].tolist())
    with pytest.raises(NeuroCanvasError, match="sample 99"):
        walker.step_walk("begin", sample=99)


def test_the_chain_rule_in_numbers(tmp_path):
    walker, _ = small_pair(tmp_path, optimizer={"type": "sgd", "lr": 0.1})
    states = walk(walker)
    walker.step_walk("back")
    by = {(s.phase, s.stage.get("node")): s for s in states}
    net = walker.net
    # Tanh: elementwise, local derivative 1 - y^2, the product is the whole gradient
    act_y = np.array(by[("forward", "act")].stage["values"])
    ch = walker.step_walk("state", node="act", element=2).chain
    assert ch.elementwise and ch.element == 2 and len(ch.inputs) == 1
    term = ch.inputs[0]
    assert term["index"] == [2] and term["src"] == "bn"
    assert term["local"] == pytest.approx(1 - act_y[2] ** 2, rel=1e-5)
    assert term["product"] == pytest.approx(ch.upstream * term["local"])
    assert term["total"] == pytest.approx(term["product"], rel=1e-5)
    # Dense: dy[e]/dx[j] = W[j, e] and dy[e]/dW[j, e] = x[j]
    ch = walker.step_walk("state", node="fc2", element=1).chain
    W = np.asarray(net.params["fc2/W"], np.float64)
    drop_x = np.array(by[("forward", "drop")].stage["values"])
    assert not ch.elementwise
    for t in ch.inputs:
        assert t["local"] == pytest.approx(W[t["index"][0], 1], rel=1e-6)
    w_terms = [p for p in ch.params if p["name"] == "W"]
    assert w_terms and all(p["index"][1] == 1 for p in w_terms)
    for p in w_terms:
        assert p["local"] == pytest.approx(drop_x[p["index"][0]], rel=1e-6)
    b_term = next(p for p in ch.params if p["name"] == "b")
    assert b_term["local"] == 1.0 and b_term["product"] == pytest.approx(ch.upstream)
    # the upstream gradient at the loss is 1: the product is dL/dpred itself
    ch = walker.step_walk("state", node="loss").chain
    assert ch.upstream == 1.0 and ch.inputs[0]["total"] == pytest.approx(ch.inputs[0]["local"])
    # the walk is where it was, with the weights before the step
    assert walker._walk.index == len(states) - 2 and not walker._walk.applied


def test_edge_norms_are_what_flows_back(tmp_path):
    walker, _ = small_pair(tmp_path)
    states = walk(walker)
    ups = {s.stage["node"]: s.stage["upstream"]["norm"] for s in states
           if s.phase == "backward"}
    first = states[states[0].starts["backward"]]
    assert first.edge_norms.keys() == {edge_key("fc2", "loss", "pred"),
                                       edge_key("y", "loss", "target")}
    norms = states[-1].edge_norms
    # each node here feeds one other: the gradient arriving at it is what its consumer sent
    assert norms[edge_key("drop", "fc2", "in")] == pytest.approx(ups["drop"])
    assert norms[edge_key("act", "drop", "in")] == pytest.approx(ups["act"])
    assert norms[edge_key("fc1", "bn", "in")] == pytest.approx(ups["fc1"])
    assert norms[edge_key("x", "fc1", "in")] is None  # data needs no gradient
    update = states[-1].stage
    assert {r["key"] for r in update["params"]} == set(walker.net.params)
    row = next(r for r in update["params"] if r["key"] == "fc1/W")
    assert row["ratio"] == pytest.approx(row["update_norm"] / row["weight_norm"])


def test_the_step_probe_crosses_as_json(tmp_path):
    walker, _ = small_pair(tmp_path)
    probe = PROBES["step"]
    res = run_probe(walker, "step", {"action": "begin", "sample": 1})
    for _ in range(12):
        res = run_probe(walker, "step", {"action": "next", "element": 0})
    j, arrays = probe.encode(res)
    back = probe.decode(json.loads(json.dumps(j)), arrays)
    assert back == res and back.phase == "backward" and back.chain is not None
    with pytest.raises(NeuroCanvasError, match="sample"):
        run_probe(walker, "step", {"action": "begin", "sample": -1})
    with pytest.raises(NeuroCanvasError, match="unknown step action"):
        run_probe(walker, "step", {"action": "jump"})
