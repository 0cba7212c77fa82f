"""A drawn LSTM cell (Dense, Sigmoid, Tanh, Multiply and Add, with c and h fed back through
delay edges) computes exactly what the built-in LSTM computes with the same weights:
outputs, loss, every parameter gradient and the per-step state gradient norms."""
from __future__ import annotations

import numpy as np
import pytest

from core.network import Network
from core.validate import analyze
from tests import torch_ref
from tests.graphs import build, edge, graph_dict, node

B, T, F, H = 3, 6, 4, 5
GATES = ("i", "f", "g", "o")  # Stored gate order of the LSTM's W_ih / W_hh / b blocks
ACT = {"i": "Sigmoid", "f": "Sigmoid", "g": "Tanh", "o": "Sigmoid"}


def drawn_lstm(mode: str) -> dict:
    """x -> per gate: Dense on x_t + Dense on h_{t-1} -> activation;
    c = f·c_{t-1} + i·g, h = o·tanh(c); h -> TimeCollect(mode) -> Flatten -> Dense -> MSE."""
    nodes = [node("x", "Input", shape=[T, F], sequence=True)]
    edges = [edge("x", f"x{k}") for k in GATES]
    for k in GATES:
        nodes += [node(f"x{k}", "Dense", units=H), node(f"h{k}", "Dense", units=H),
                  node(f"a{k}", "Add"), node(k, ACT[k])]
        edges += [edge("h", f"h{k}", delay=1), edge(f"x{k}", f"a{k}:in0"),
                  edge(f"h{k}", f"a{k}:in1"), edge(f"a{k}", k)]
    nodes += [node("fc", "Multiply"), node("ig", "Multiply"), node("c", "Add"),
              node("tc", "Tanh"), node("h", "Multiply"),
              node("collect", "TimeCollect", mode=mode), node("flat", "Flatten"),
              node("out", "Dense", units=2), node("y", "Target", shape=[2], dtype="float32"),
              node("loss", "MSELoss")]
    edges += [edge("f", "fc:in0"), edge("c", "fc:in1", delay=1),
              edge("i", "ig:in0"), edge("g", "ig:in1"),
              edge("fc", "c:in0"), edge("ig", "c:in1"), edge("c", "tc"),
              edge("o", "h:in0"), edge("tc", "h:in1"),
              edge("h", "collect"), edge("collect", "flat"), edge("flat", "out"),
              edge("out", "loss:pred"), edge("y", "loss:target")]
    return graph_dict(nodes, edges, name="drawn-lstm")


def builtin_lstm(mode: str) -> dict:
    nodes = [node("x", "Input", shape=[T, F]),
             node("lstm", "LSTM", units=H, return_sequences=mode == "all"),
             node("flat", "Flatten"), node("out", "Dense", units=2),
             node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")]
    edges = [edge("x", "lstm"), edge("lstm", "flat"), edge("flat", "out"),
             edge("out", "loss:pred"), edge("y", "loss:target")]
    return graph_dict(nodes, edges, name="builtin-lstm")


def blocks(a: np.ndarray) -> dict[str, np.ndarray]:
    """Stored layout [..., 4H] -> the gate blocks i, f, g, o of width H."""
    return {k: a[..., n * H:(n + 1) * H] for n, k in enumerate(GATES)}


def twins(mode: str, seed: int = 0) -> tuple[Network, Network]:
    """(drawn, built-in) float64 networks carrying the same weights: the built-in's own
    initial weights are copied block by block into the drawn Dense nodes."""
    drawn = Network(analyze(build(drawn_lstm(mode))), dtype=np.float64, outputs=["out"])
    builtin = Network(analyze(build(builtin_lstm(mode))), dtype=np.float64, outputs=["out"],
                      seed=seed)
    P = builtin.params
    for k in GATES:
        drawn.params[f"x{k}/W"][...] = blocks(P["lstm/W_ih"])[k]
        drawn.params[f"x{k}/b"][...] = blocks(P["lstm/b_ih"])[k]
        drawn.params[f"h{k}/W"][...] = blocks(P["lstm/W_hh"])[k]
        drawn.params[f"h{k}/b"][...] = blocks(P["lstm/b_hh"])[k]
    drawn.params["out/W"][...] = P["out/W"]
    drawn.params["out/b"][...] = P["out/b"]
    return drawn, builtin


def test_drawn_lstm_cell_validates_as_a_recurrent_region():
    a = analyze(build(drawn_lstm("last")))
    assert a.ok, [str(p) for p in a.problems]
    assert a.steps == T
    assert {"h", "c", "fc", "ig", "tc"} | {f"x{k}" for k in GATES} <= a.timed
    assert not {"collect", "flat", "out"} & a.timed


@pytest.mark.parametrize("mode", ["last", "all"])
def test_drawn_lstm_equals_builtin_lstm_outputs_and_every_gradient(mode):
    drawn, builtin = twins(mode)
    rng = np.random.default_rng(7)
    batch = {"x": rng.standard_normal((B, T, F)), "y": rng.standard_normal((B, 2))}
    a = drawn.loss_and_grads(batch)
    b = builtin.loss_and_grads(batch)
    np.testing.assert_allclose(a.values["out"], b.values["out"], rtol=1e-12, atol=1e-14)
    assert float(a.loss) == pytest.approx(float(b.loss), rel=1e-12)

    ga, gb = drawn.gradients(), builtin.gradients()
    # the built-in's gradients, cut into gate blocks, are the drawn Dense nodes' gradients
    for ours, theirs in (("x{}/W", "lstm/W_ih"), ("x{}/b", "lstm/b_ih"),
                         ("h{}/W", "lstm/W_hh"), ("h{}/b", "lstm/b_hh")):
        for k, block in blocks(gb[theirs]).items():
            np.testing.assert_allclose(ga[ours.format(k)], block, rtol=1e-10, atol=1e-13,
                                       err_msg=f"{ours.format(k)} vs {theirs} gate {k}")
    np.testing.assert_allclose(ga["out/W"], gb["out/W"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(ga["out/b"], gb["out/b"], rtol=1e-10, atol=1e-13)
    # every gradient is non-trivial, so the comparison above cannot pass by both being zero
    assert all(np.abs(g).max() > 1e-6 for g in ga.values())

    # |dL/dh_t| per step: the drawn 'h' node and the built-in layer report the same norms
    norms_a, norms_b = drawn.state_gradient_norms(), builtin.state_gradient_norms()
    assert set(norms_a) == {"h", "c"}
    np.testing.assert_allclose(norms_a["h"], norms_b["lstm"], rtol=1e-9)
    assert len(norms_a["c"]) == T and all(n > 0 for n in norms_a["c"])


def test_drawn_lstm_equals_torch_lstm():
    """A third witness: torch.nn.LSTM with the same weights gives the drawn cell's states."""
    torch = torch_ref.need_torch()
    drawn, builtin = twins("all", seed=3)
    x = np.random.default_rng(8).standard_normal((B, T, F))
    res = drawn.forward({"x": x, "y": np.zeros((B, 2))})
    P = builtin.params
    m = torch_ref.load(torch.nn.LSTM(F, H, batch_first=True).double(), builtin.layers["lstm"])
    with torch.no_grad():
        hs, _ = m(torch_ref.tensor(x))
    expect = torch_ref.array(hs).reshape(B, -1) @ P["out/W"] + P["out/b"]
    np.testing.assert_allclose(res.values["out"], expect, rtol=1e-11, atol=1e-13)


def test_drawn_lstm_gradients_are_the_finite_differences_of_its_loss():
    drawn, _ = twins("last", seed=1)
    rng = np.random.default_rng(9)
    batch = {"x": rng.standard_normal((2, T, F)), "y": rng.standard_normal((2, 2))}
    drawn.loss_and_grads(batch)
    grads = {k: np.array(v) for k, v in drawn.gradients().items()}
    eps = 1e-6
    for key in ("hf/W", "xi/b", "hg/b", "xo/W"):
        W = drawn.params[key]
        for idx in [(0,) * W.ndim, tuple(s - 1 for s in W.shape)]:
            old = W[idx]
            W[idx] = old + eps
            lp = float(drawn.forward(batch).loss)
            W[idx] = old - eps
            lm = float(drawn.forward(batch).loss)
            W[idx] = old
            assert grads[key][idx] == pytest.approx((lp - lm) / (2 * eps), rel=1e-6, abs=1e-10)
