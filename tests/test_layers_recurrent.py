"""RNN, LSTM, GRU and Embedding: PyTorch parity of outputs and every gradient, float64
finite differences, per-step state-gradient norms, shapes, init and data errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.catalogue import get
from core.errors import DataError, ParamError, ShapeError
from core.network import Network
from core.params import resolve_params
from core.validate import analyze
from kernels.backend import to_host
from tests import torch_ref
from tests.graphs import build, edge, graph_dict, node
from tests.harness import assign, build_layer, context, forward, forward_backward, gradcheck

B, T, F, H = 3, 6, 5, 7

# (id, our type, extra params, torch module class, torch kwargs)
CELLS = [
    ("rnn-tanh", "RNN", {"activation": "tanh"}, "RNN", {"nonlinearity": "tanh"}),
    ("rnn-relu", "RNN", {"activation": "relu"}, "RNN", {"nonlinearity": "relu"}),
    ("lstm", "LSTM", {}, "LSTM", {}),
    ("gru", "GRU", {}, "GRU", {}),
]
CELL_IDS = [c[0] for c in CELLS]
TORCH_CELL = {"RNN": "RNNCell", "LSTM": "LSTMCell", "GRU": "GRUCell"}
PARAMS = ("W_ih", "W_hh", "b_ih", "b_hh")


def rand(shape, seed=0, dtype=np.float64, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def make(case, seq, dtype=np.float64, t=T, f=F, h=H, node_id="n", xp=np):
    _, typ, extra, _, _ = case
    return build_layer(typ, {"units": h, "return_sequences": seq, **extra}, {"in": (t, f)},
                       dtype=dtype, node_id=node_id, xp=xp)


def torch_run(case, layer, x, gout, seq):
    """(out, gx, {param: grad in the stored layout}) from torch.nn.RNN/LSTM/GRU
    (batch_first)."""
    torch = torch_ref.need_torch()
    _, _, _, cls, kw = case
    tdtype = torch.float64 if x.dtype == np.float64 else torch.float32
    m = getattr(torch.nn, cls)(x.shape[2], layer.params["units"], batch_first=True, **kw)
    m = torch_ref.load(m.to(tdtype), layer)
    out, (gx,) = torch_ref.run(lambda t: m(t)[0] if seq else m(t)[0][:, -1], [x], gout)
    return out, gx, torch_ref.layer_grads(m, layer)


assert_close = torch_ref.assert_close  # float32 stays float32: the dtype is checked too


# ---- PyTorch parity --------------------------------------------------------------------
@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("seq", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 3e-5)],
                         ids=["f64", "f32"])
def test_matches_torch(xp, torch, case, seq, dtype, tol):
    layer = make(case, seq, dtype, xp=xp)
    x = rand((B, T, F), 1, dtype)
    gout = rand((B,) + layer.out_shape, 2, dtype)
    out, (gx,), g = forward_backward(layer, [x], gout)
    assert out.shape == (B,) + layer.out_shape
    t_out, t_gx, t_g = torch_run(case, layer, x, gout, seq)
    assert_close("out", out, t_out, tol, dtype)
    assert_close("grad x", gx, t_gx, tol, dtype)
    for k in PARAMS:
        assert_close(f"grad {k}", g[k], t_g[k], tol, dtype)


@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
def test_single_time_step_matches_torch(xp, torch, case):
    # T = 1: no recurrent product at all, W_hh's gradient is exactly zero (h_0 = 0).
    layer = make(case, True, t=1, xp=xp)
    x = rand((B, 1, F), 3)
    gout = rand((B, 1, H), 4)
    out, (gx,), g = forward_backward(layer, [x], gout)
    t_out, t_gx, t_g = torch_run(case, layer, x, gout, True)
    assert_close("out", out, t_out, 1e-12, np.float64)
    assert_close("grad x", gx, t_gx, 1e-12, np.float64)
    assert not g["W_hh"].any()
    for k in PARAMS:
        assert_close(f"grad {k}", g[k], t_g[k], 1e-12, np.float64)


@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
def test_longer_sequence_wide_layer_matches_torch_float32(xp, torch, case):
    # Sizes where the kernels' gate-major layout and blocking matter (H not tiny, T long).
    layer = make(case, True, np.float32, t=40, f=9, h=33, xp=xp)
    x = rand((4, 40, 9), 5, np.float32)
    gout = rand((4, 40, 33), 6, np.float32)
    out, (gx,), g = forward_backward(layer, [x], gout)
    t_out, t_gx, t_g = torch_run(case, layer, x, gout, True)
    assert_close("out", out, t_out, 1e-4, np.float32)
    assert_close("grad x", gx, t_gx, 1e-4, np.float32)
    for k in PARAMS:
        assert_close(f"grad {k}", g[k], t_g[k], 1e-4, np.float32)


# ---- finite differences ----------------------------------------------------------------
@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("seq", [False, True], ids=["last", "sequences"])
def test_gradcheck(xp, case, seq):
    layer = make(case, seq, t=4, f=3, h=3, xp=xp)
    x = rand((2, 4, 3), 7)
    if case[0] == "rnn-relu":
        x += 0.3  # keep pre-activations away from the kink at 0
    # Every element of x and of each parameter (the largest, LSTM's, has 36).
    gradcheck(layer, [x], max_elements=64)


# ---- state-gradient norms --------------------------------------------------------------
def torch_state_norms(case, layer, x, gout, seq):
    """|dL/dh_t| over the batch from an explicit torch cell loop with retain_grad."""
    torch = torch_ref.need_torch()
    _, typ, _, _, kw = case
    cell = getattr(torch.nn, TORCH_CELL[typ])(x.shape[2], layer.params["units"], **kw)
    cell = torch_ref.load(cell.double(), layer, suffix="")
    xt = torch_ref.tensor(x)
    h = torch.zeros(x.shape[0], layer.params["units"], dtype=torch.float64)
    c = torch.zeros_like(h)
    hs = []
    for t in range(x.shape[1]):
        if typ == "LSTM":
            h, c = cell(xt[:, t], (h, c))
        else:
            h = cell(xt[:, t], h)
        h.retain_grad()
        hs.append(h)
    g = torch_ref.tensor(gout)
    loss = (torch.stack(hs, 1) * g).sum() if seq else (hs[-1] * g).sum()
    loss.backward()
    return np.array([float(h.grad.norm()) for h in hs])


@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("seq", [False, True], ids=["last", "sequences"])
def test_state_grad_norms_match_torch_hooks(xp, torch, case, seq):
    layer = make(case, seq, xp=xp)
    x = rand((B, T, F), 8)
    gout = rand((B,) + layer.out_shape, 9)
    forward_backward(layer, [x], gout)
    norms = layer.state_grad_norms
    assert isinstance(norms, np.ndarray) and norms.shape == (T,)
    np.testing.assert_allclose(norms, torch_state_norms(case, layer, x, gout, seq),
                               rtol=1e-10)
    if not seq:  # h_T gets exactly the output gradient
        assert norms[-1] == pytest.approx(np.linalg.norm(gout), rel=1e-12)


def test_state_grad_norms_show_vanishing_and_exploding_gradients(xp):
    x = rand((4, 30, 2), 10)
    small = build_layer("RNN", {"units": 8}, {"in": (30, 2)}, xp=xp)
    small.P["W_hh"] *= 0.2  # contracting recurrence: the gradient fades going back
    forward_backward(small, [x], rand((4, 8), 11))
    n = small.state_grad_norms
    assert n[0] < 1e-6 * n[-1]
    big = build_layer("RNN", {"units": 8, "activation": "relu"}, {"in": (30, 2)}, xp=xp)
    assign(big.P["W_hh"], 1.5 * np.eye(8))  # expanding recurrence: it grows going back
    big.P["W_ih"][...] = xp.abs(big.P["W_ih"])
    big.P["b_ih"][...] = 1.0
    forward_backward(big, [x], np.ones((4, 8)))
    n = big.state_grad_norms
    assert n[0] > 1e4 * n[-1]


def test_state_grad_norms_stay_on_host_and_do_not_underflow_in_float32(xp):
    layer = make(CELLS[2], True, np.float32, xp=xp)
    x = rand((B, T, F), 12, np.float32)
    forward_backward(layer, [x])
    assert type(layer.state_grad_norms) is np.ndarray and layer.state_grad_norms.shape == (T,)
    reference = layer.state_grad_norms.copy()
    # Gradients of 1e-30 are representable in float32, their squares are not: summed in
    # float32 the norms would read 0, which a log-scale plot cannot show.
    out, _ = layer.forward(context(True, 0, np.float32, xp), [xp.asarray(x)])
    forward_backward(layer, [x], xp.full_like(out, 1e-30))
    assert np.all(layer.state_grad_norms > 0)
    np.testing.assert_allclose(layer.state_grad_norms, 1e-30 * reference, rtol=1e-3)


# ---- backward contract -----------------------------------------------------------------
@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
def test_weight_gradients_accumulate_and_cache_survives_backward(xp, case):
    # Shared parameters: two backward passes add up; backward leaves the cache intact.
    layer = make(case, True, xp=xp)
    x = rand((B, T, F), 13)
    gout = rand((B, T, H), 14)
    _, (gx1,), g1 = forward_backward(layer, [x], gout)
    ctx = context(xp=xp)
    _, cache = layer.forward(ctx, [xp.asarray(x)])
    for k in layer.G:
        layer.G[k] = None
    gx_a = layer.backward(ctx, cache, xp.asarray(gout))[0]
    gx_b = layer.backward(ctx, cache, xp.asarray(gout))[0]
    np.testing.assert_array_equal(to_host(gx_a), gx1)
    np.testing.assert_array_equal(to_host(gx_b), gx1)
    for k in PARAMS:
        np.testing.assert_allclose(to_host(layer.G[k]), 2 * g1[k], rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("case", CELLS, ids=CELL_IDS)
def test_input_gradient_skipped_when_not_wanted(xp, case):
    layer = make(case, False, xp=xp)
    x = rand((B, T, F), 15)
    _, _, g_full = forward_backward(layer, [x])
    layer.needs_input_grad = [False]
    _, gins, g = forward_backward(layer, [x])
    assert gins == [None]
    for k in PARAMS:
        np.testing.assert_array_equal(g[k], g_full[k])


def test_gout_is_not_modified(xp):
    layer = make(CELLS[3], True, xp=xp)
    keep = rand((B, T, H), 16)
    gout = xp.asarray(keep.copy())  # on the layer's module, so backward gets this very array
    forward_backward(layer, [rand((B, T, F), 17)], gout)
    np.testing.assert_array_equal(to_host(gout), keep)


# ---- shapes, layout, init --------------------------------------------------------------
@pytest.mark.parametrize("typ,gates", [("RNN", 1), ("LSTM", 4), ("GRU", 3)])
def test_shapes_parameter_layout_and_torch_init(typ, gates):
    layer = build_layer(typ, {"units": 64}, {"in": (10, 12)})
    assert layer.category == "Recurrent"
    assert layer.out_shape == (64,)
    assert layer.param_shapes() == {"W_ih": (12, gates * 64), "W_hh": (64, gates * 64),
                                    "b_ih": (gates * 64,), "b_hh": (gates * 64,)}
    k = 1 / math.sqrt(64)
    for name in PARAMS:  # uniform(-1/sqrt(H), 1/sqrt(H)) for weights and biases
        w = layer.P[name]
        assert np.abs(w).max() <= k and np.abs(w).max() > 0.9 * k, name
    seq = build_layer(typ, {"units": 5, "return_sequences": True}, {"in": (10, 12)})
    assert seq.out_shape == (10, 5)
    assert forward(seq, [rand((2, 10, 12))]).shape == (2, 10, 5)


@pytest.mark.parametrize("typ", ["RNN", "LSTM", "GRU"])
def test_rejects_non_sequence_input(typ):
    layer = build_layer(typ, {"units": 4}, {"in": (6, 3)}, node_id="rec1")
    for bad in [(8,), (2, 6, 3), ()]:
        with pytest.raises(ShapeError) as e:
            layer.infer({"in": bad})
        assert e.value.node == "rec1" and e.value.port == "in"
        assert "[T, F]" in str(e.value)
    with pytest.raises(ShapeError) as e:
        layer.infer({"in": (8,)})
    assert "found [8]" in str(e.value)
    assert layer.infer({"in": None}) is None


def test_rnn_activation_must_be_tanh_or_relu():
    _, problems = resolve_params(get("RNN").all_params_spec(),
                                 {"units": 3, "activation": "sigmoid"}, "r")
    assert problems and isinstance(problems[0], ParamError)
    assert problems[0].param == "activation"


# ---- Embedding -------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (7,), (2, 3)], ids=["scalar", "seq", "grid"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)],
                         ids=["f64", "f32"])
def test_embedding_matches_torch(xp, torch, shape, dtype, tol):
    layer = build_layer("Embedding", {"num_embeddings": 5, "dim": 4}, {"in": shape},
                        dtype=dtype, xp=xp)
    assert layer.out_shape == shape + (4,)
    idx = np.random.default_rng(0).integers(0, 5, size=(6,) + shape)
    idx.reshape(-1)[:3] = 2  # repeated indices must add up in the weight gradient
    gout = rand((6,) + shape + (4,), 1, dtype)
    out, gins, g = forward_backward(layer, [idx], gout)
    assert gins == [None]
    emb = torch.nn.Embedding(5, 4).to(torch.float64 if dtype == np.float64 else torch.float32)
    torch_ref.load(emb, layer)
    t_out, _ = torch_ref.run(emb, [idx], gout)
    assert_close("out", out, t_out, tol, dtype)
    assert_close("grad W", g["W"], torch_ref.layer_grads(emb, layer)["W"], tol, dtype)


def test_embedding_accepts_whole_number_floats_and_int32(xp):
    layer = build_layer("Embedding", {"num_embeddings": 4, "dim": 3}, {"in": (2,)}, xp=xp)
    ref = forward(layer, [np.array([[0, 3], [2, 2]])])
    np.testing.assert_array_equal(forward(layer, [np.array([[0., 3.], [2., 2.]])]), ref)
    np.testing.assert_array_equal(
        forward(layer, [np.array([[0, 3], [2, 2]], dtype=np.int32)]), ref)


@pytest.mark.parametrize("bad,what", [(5, "index 5"), (-1, "index -1"), (2.5, "2.5"),
                                      (float("nan"), "nan")])
def test_embedding_rejects_bad_indices(xp, bad, what):
    layer = build_layer("Embedding", {"num_embeddings": 5, "dim": 2}, {"in": (3,)},
                        node_id="emb", xp=xp)
    idx = np.array([[0, 1, 2], [3, bad, 4]], dtype=np.float64 if isinstance(bad, float)
                   else np.int64)
    with pytest.raises(DataError) as e:
        forward(layer, [idx])
    assert e.value.node == "emb" and e.value.port == "in"
    assert what in str(e.value) and "0 to 4" in str(e.value)


def test_embedding_rejects_non_numeric_indices(xp):
    layer = build_layer("Embedding", {"num_embeddings": 5, "dim": 2}, {"in": (2,)},
                        node_id="emb", xp=xp)
    with pytest.raises(DataError, match="integer indices"):
        forward(layer, [np.array([[True, False]])])


def test_embedding_layout_and_init():
    layer = build_layer("Embedding", {"num_embeddings": 300, "dim": 40}, {"in": (5,)})
    assert layer.category == "Core"
    assert layer.param_shapes() == {"W": (300, 40)}
    W = layer.P["W"]
    assert abs(W.mean()) < 0.02 and abs(W.std() - 1) < 0.02  # normal(0, 1) as torch


def test_embedding_gradients_accumulate(xp):
    layer = build_layer("Embedding", {"num_embeddings": 3, "dim": 2}, {"in": (4,)}, xp=xp)
    idx = np.array([[0, 0, 2, 1]])
    _, _, g1 = forward_backward(layer, [idx])
    ctx = context(xp=xp)
    _, cache = layer.forward(ctx, [xp.asarray(idx)])
    layer.backward(ctx, cache, xp.ones((1, 4, 2)))
    np.testing.assert_array_equal(to_host(layer.G["W"]), 2 * g1["W"])
    np.testing.assert_array_equal(g1["W"], [[2, 2], [1, 1], [1, 1]])


# ---- in a network ----------------------------------------------------------------------
@pytest.mark.parametrize("typ", ["RNN", "LSTM", "GRU"])
def test_embedding_and_recurrent_layer_train_in_a_network(typ):
    tokens, classes = 6, 3
    nodes = [node("x", "Input", shape=[T], dtype="int64"),
             node("emb", "Embedding", num_embeddings=10, dim=tokens),
             node("rec", typ, units=8, return_sequences=True),
             node("rec2", typ, units=8),
             node("out", "Dense", units=classes),
             node("y", "Target", shape=[]),
             node("loss", "CrossEntropyLoss")]
    edges = [edge("x", "emb"), edge("emb", "rec"), edge("rec", "rec2"), edge("rec2", "out"),
             edge("out", "loss:pred"), edge("y", "loss:target")]
    a = analyze(build(graph_dict(nodes, edges)))
    assert a.ok, a.problems
    net = Network(a, dtype=np.float64)
    rng = np.random.default_rng(0)
    batch = {"x": rng.integers(0, 10, size=(5, T)), "y": rng.integers(0, classes, size=5)}
    res = net.loss_and_grads(batch)
    grads = {k: np.array(v) for k, v in net.gradients().items()}
    for k in ("emb/W", "rec/W_ih", "rec/W_hh", "rec2/b_hh", "out/W"):
        assert grads[k].shape == net.params[k].shape and np.abs(grads[k]).sum() > 0, k
    # One finite difference through both recurrent layers and the embedding table.
    W = net.params["emb/W"]
    i = int(batch["x"][0, 0])
    old = W[i, 1]
    W[i, 1] = old + 1e-6
    lp = float(net.forward(batch).loss)
    W[i, 1] = old - 1e-6
    lm = float(net.forward(batch).loss)
    W[i, 1] = old
    assert grads["emb/W"][i, 1] == pytest.approx((lp - lm) / 2e-6, rel=1e-6, abs=1e-10)
    assert np.isfinite(float(res.loss))
