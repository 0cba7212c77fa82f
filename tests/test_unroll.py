"""Drawn recurrent graphs: cycles closed by delay edges, unrolled over time (BPTT)."""
import numpy as np
import pytest

from core.network import Network
from core.validate import analyze
from tests.graphs import build, edge, graph_dict, node

T, F, H = 5, 3, 4


def elman_graph(mode="last", delay=1):
    nodes = [node("x", "Input", shape=[T, F], sequence=True),
             node("wx", "Dense", units=H), node("wh", "Dense", units=H, bias=False),
             node("add", "Add"), node("h", "Tanh"), node("tc", "TimeCollect", mode=mode),
             node("flat", "Flatten"), node("out", "Dense", units=2),
             node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")]
    edges = [edge("x", "wx"), edge("h", "wh", delay=delay), edge("wx", "add:in0"),
             edge("wh", "add:in1"), edge("add", "h"), edge("h", "tc"), edge("tc", "flat"),
             edge("flat", "out"), edge("out", "loss:pred"), edge("y", "loss:target")]
    return build(graph_dict(nodes, edges))


def reference(net, x, mode, delay=1):
    """The Elman recurrence written out by hand with the network's weights."""
    P = net.params
    hs = []
    for t in range(T):
        prev = hs[t - delay] if t >= delay else np.zeros((x.shape[0], H))
        hs.append(np.tanh(x[:, t] @ P["wx/W"] + P["wx/b"] + prev @ P["wh/W"]))
    seq = np.stack(hs, axis=1)
    collected = {"last": hs[-1], "mean": seq.mean(axis=1), "all": seq}[mode]
    return collected.reshape(x.shape[0], -1) @ P["out/W"] + P["out/b"]


@pytest.mark.parametrize("mode", ["last", "mean", "all"])
@pytest.mark.parametrize("delay", [1, 2])
def test_elman_cycle_forward_matches_hand_written_loop(mode, delay):
    a = analyze(elman_graph(mode, delay))
    assert a.ok, a.problems
    assert a.timed == {"x", "wx", "wh", "add", "h"} and a.steps == T
    net = Network(a, dtype=np.float64, outputs=["out"])
    x = np.random.default_rng(0).standard_normal((3, T, F))
    y = np.zeros((3, 2))
    res = net.forward({"x": x, "y": y})
    np.testing.assert_allclose(res.values["out"], reference(net, x, mode, delay), rtol=1e-12)


@pytest.mark.parametrize("mode", ["last", "all"])
def test_elman_cycle_gradients_are_backprop_through_time(mode):
    net = Network(analyze(elman_graph(mode)), dtype=np.float64)
    rng = np.random.default_rng(1)
    batch = {"x": rng.standard_normal((2, T, F)), "y": rng.standard_normal((2, 2))}
    net.loss_and_grads(batch)
    grads = {k: np.array(v) for k, v in net.gradients().items()}
    eps = 1e-6
    for key in ("wh/W", "wx/W", "wx/b"):
        W = net.params[key]
        for idx in [(0, 0), (1, 2), (H - 1, 1)] if W.ndim == 2 else [(0,), (2,)]:
            if idx[0] >= W.shape[0] or (W.ndim == 2 and idx[1] >= W.shape[1]):
                continue
            old = W[idx]
            W[idx] = old + eps
            lp = float(net.forward(batch).loss)
            W[idx] = old - eps
            lm = float(net.forward(batch).loss)
            W[idx] = old
            assert grads[key][idx] == pytest.approx((lp - lm) / (2 * eps), rel=1e-6, abs=1e-9)


def test_state_gradient_norm_per_time_step():
    net = Network(analyze(elman_graph("last")), dtype=np.float64)
    rng = np.random.default_rng(2)
    net.loss_and_grads({"x": rng.standard_normal((2, T, F)), "y": rng.standard_normal((2, 2))})
    norms = net.state_grad_norms["h"]
    assert norms.shape == (T,) and np.all(norms > 0)
    # with 'last', the loss sees h only at the end: earlier steps get the gradient only
    # through the recurrence, multiplied by W_hh and tanh' < 1 at every step back
    assert norms[-1] > norms[0]


def test_state_gradient_norms_of_drawn_cycles_do_not_underflow_in_float32():
    net = Network(analyze(elman_graph("last")), dtype=np.float32)
    rng = np.random.default_rng(2)
    batch = {"x": rng.standard_normal((2, T, F)), "y": rng.standard_normal((2, 2))}
    net.loss_and_grads(batch)
    reference = net.state_grad_norms["h"].copy()
    # An output layer scaled by 1e-30 passes gradients of about 1e-30 back to h: fine in
    # float32, but their squares are not, and summed in float32 the norms would read 0.
    net.params["out/W"][...] *= np.float32(1e-30)
    net.loss_and_grads(batch)
    tiny = net.state_grad_norms["h"]
    assert np.all(tiny > 0)
    assert np.all(tiny < 1e-25 * reference)


def test_loss_inside_region_is_averaged_over_steps():
    nodes = [node("x", "Input", shape=[T, 1], sequence=True), node("w", "Dense", units=1),
             node("z", "Target", shape=[1], dtype="float32"), node("loss", "MSELoss"),
             node("wh", "Dense", units=1, bias=False), node("add", "Add")]
    edges = [edge("x", "w"), edge("w", "add:in0"), edge("add", "wh", delay=1),
             edge("wh", "add:in1"), edge("add", "loss:pred"), edge("z", "loss:target")]
    a = analyze(build(graph_dict(nodes, edges)))
    assert a.ok, a.problems
    net = Network(a, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((4, T, 1))
    z = np.full((4, 1), 0.5)
    res = net.forward({"x": x, "y": z})
    P, s, losses = net.params, np.zeros((4, 1)), []
    for t in range(T):
        s = x[:, t] @ P["w/W"] + P["w/b"] + s @ P["wh/W"]
        losses.append(np.mean((s - z) ** 2))
    assert float(res.loss) == pytest.approx(np.mean(losses), rel=1e-12)


def test_timecollect_outside_region_is_an_error():
    nodes = [node("x", "Input", shape=[3]), node("tc", "TimeCollect")]
    a = analyze(build(graph_dict(nodes, [edge("x", "tc")])))
    assert any(p.node == "tc" and p.port == "in" for p in a.problems)


def test_training_steps_report_state_gradient_norms_for_drawn_and_builtin_cells(tmp_path):
    """Both a drawn cycle and an LSTM layer report one state-gradient norm per time step."""
    from core.training import Trainer, parse_training

    g = elman_graph("last")
    nodes = {n.id for n in g.nodes.values()}
    assert "h" in nodes
    seq = np.random.default_rng(4).standard_normal((16, T, F)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=seq, y=np.zeros((16, 2), np.float32))
    cfg = parse_training({"dataset": {"source": "npz", "path": str(tmp_path / "d.npz")},
                          "batch_size": 8, "epochs": 1, "optimizer": {"type": "sgd"}})
    events = []
    Trainer(analyze(g), cfg, on_event=events.append, queue_events=False).run()
    step = events[0]
    assert set(step.state_grad_norm) == {"h"} and len(step.state_grad_norm["h"]) == T
    assert step.to_json()["state_grad_norm"]["h"] == step.state_grad_norm["h"]

    lstm = build(graph_dict(
        [node("x", "Input", shape=[T, F]), node("rnn", "LSTM", units=H),
         node("out", "Dense", units=2), node("y", "Target", shape=[2], dtype="float32"),
         node("loss", "MSELoss")],
        [edge("x", "rnn"), edge("rnn", "out"), edge("out", "loss:pred"),
         edge("y", "loss:target")]))
    events = []
    Trainer(analyze(lstm), cfg, on_event=events.append, queue_events=False).run()
    assert list(events[0].state_grad_norm) == ["rnn"]
    assert len(events[0].state_grad_norm["rnn"]) == T


def test_drawn_elman_cell_equals_builtin_rnn_outputs_and_gradients():
    """docs/format.md section 2.6: an Elman cell drawn from Dense + delayed Dense + Tanh computes
    exactly RNN."""
    drawn = Network(analyze(elman_graph("all")), dtype=np.float64)
    builtin_graph = build(graph_dict(
        [node("x", "Input", shape=[T, F]), node("rnn", "RNN", units=H, return_sequences=True),
         node("flat", "Flatten"), node("out", "Dense", units=2),
         node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")],
        [edge("x", "rnn"), edge("rnn", "flat"), edge("flat", "out"), edge("out", "loss:pred"),
         edge("y", "loss:target")]))
    builtin = Network(analyze(builtin_graph), dtype=np.float64)
    # the same weights: RNN's W_ih/b_ih are the input Dense, W_hh the delayed Dense
    P = drawn.params
    same = {"rnn/W_ih": P["wx/W"], "rnn/b_ih": P["wx/b"], "rnn/W_hh": P["wh/W"],
            "rnn/b_hh": np.zeros(H), "out/W": P["out/W"], "out/b": P["out/b"]}
    for k, v in same.items():  # in place, in float64 (a weights file would be float32)
        builtin.params[k][...] = v
    rng = np.random.default_rng(6)
    batch = {"x": rng.standard_normal((3, T, F)), "y": rng.standard_normal((3, 2))}
    a = drawn.loss_and_grads(batch)
    b = builtin.loss_and_grads(batch)
    assert float(a.loss) == pytest.approx(float(b.loss), rel=1e-12)
    ga, gb = drawn.gradients(), builtin.gradients()
    np.testing.assert_allclose(ga["wx/W"], gb["rnn/W_ih"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ga["wh/W"], gb["rnn/W_hh"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ga["wx/b"], gb["rnn/b_ih"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ga["out/W"], gb["out/W"], rtol=1e-10, atol=1e-12)
    # and the state gradient per step is the same quantity for both
    np.testing.assert_allclose(drawn.state_gradient_norms()["h"],
                               builtin.state_gradient_norms()["rnn"], rtol=1e-9)


def test_a_static_value_over_a_delay_edge_trains_and_its_gradient_is_right():
    # a Dense on a static Input read by the region over a delay edge: zeros at t = 0, then
    # the same value at every step; backward once failed on it (it has no state to follow)
    nodes = [node("x", "Input", shape=[T, F], sequence=True), node("c", "Input", shape=[F],
                                                                    field="c"),
             node("wc", "Dense", units=F), node("add", "Add"), node("tc", "TimeCollect"),
             node("y", "Target", shape=[F], dtype="float32"), node("loss", "MSELoss")]
    edges = [edge("x", "add:in0"), edge("wc", "add:in1", delay=1), edge("c", "wc"),
             edge("add", "tc"), edge("tc", "loss:pred"), edge("y", "loss:target")]
    a = analyze(build(graph_dict(nodes, edges)))
    assert a.ok, [str(p) for p in a.problems]
    net = Network(a, dtype=np.float64)
    rng = np.random.default_rng(0)
    batch = {"x": rng.standard_normal((2, T, F)), "c": rng.standard_normal((2, F)),
             "y": rng.standard_normal((2, F))}
    res = net.loss_and_grads(batch)
    # the last step sees x_T-1 + c·W + b, so d(loss)/db = mean over the batch of 2·(pred - y)/F
    pred = batch["x"][:, -1] + batch["c"] @ net.params["wc/W"] + net.params["wc/b"]
    np.testing.assert_allclose(float(res.loss), np.mean((pred - batch["y"]) ** 2), rtol=1e-12)
    np.testing.assert_allclose(net.gradients()["wc/b"],
                               (2 * (pred - batch["y"]) / pred.size).sum(axis=0), rtol=1e-10)
    assert "wc" not in net.state_grad_norms
