"""Variable-length sequences (docs/format.md section 2.6): an Input's ``lengths`` field.

Checked against PyTorch's ``pack_padded_sequence`` for the built-in RNN, LSTM and GRU
(outputs, last states and every gradient), a drawn Elman cycle against the built-in RNN,
TimeCollect's modes against a hand-written loop, a loss inside the region against the mean
over valid steps, float64 finite differences, and the structure of the batched pass.
"""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError, ParamError
from core.layers.timecollect import Lengths
from core.network import Network
from core.validate import analyze
from tests import torch_ref
from tests.graphs import build, edge, graph_dict, node
from tests.harness import build_layer, context

B, T, F, H = 6, 7, 3, 4
T_BENCH = 50  # benchmarks.workloads.SEQ_T
LENS = np.array([T, 1, 4, T - 1, 2, T])  # 1 and T included; unsorted


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


# ---- built-in layers against pack_padded_sequence -----------------------------------------
CELLS = [("rnn-tanh", "RNN", {"activation": "tanh"}, {"nonlinearity": "tanh"}),
         ("rnn-relu", "RNN", {"activation": "relu"}, {"nonlinearity": "relu"}),
         ("lstm", "LSTM", {}, {}), ("gru", "GRU", {}, {})]


def masked_run(layer, x, lens, gout):
    """Our layer on x with lengths: (out, grad x, param grads)."""
    layer.lengths_field = "len"
    for k in layer.G:
        layer.G[k] = None
    ctx = context(dtype=np.float64)
    ctx.lengths = {"len": Lengths(np, lens, x.shape[1])}
    out, cache = layer.forward(ctx, [x])
    (gx,) = layer.backward(ctx, cache, gout)
    return out, gx, {k: np.array(v) for k, v in layer.G.items()}


def packed_run(typ, kw, layer, x, lens, gout, seq):
    torch = torch_ref.need_torch()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    m = getattr(torch.nn, typ)(x.shape[2], H, batch_first=True, **kw).double()
    torch_ref.load(m, layer)
    xt = torch_ref.tensor(x, grad=True)
    packed = pack_padded_sequence(xt, torch.tensor(lens), batch_first=True,
                                  enforce_sorted=False)
    out, state = m(packed)
    h_n = (state[0] if typ == "LSTM" else state)[0]
    if seq:
        res, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    else:
        res = h_n
    (res * torch_ref.tensor(gout)).sum().backward()
    return (torch_ref.array(res), torch_ref.array(h_n), torch_ref.array(xt.grad),
            torch_ref.layer_grads(m, layer))


@pytest.mark.parametrize("case", CELLS, ids=[c[0] for c in CELLS])
@pytest.mark.parametrize("seq", [False, True], ids=["last", "sequences"])
def test_builtin_layers_match_pack_padded_sequence(case, seq):
    _, typ, extra, kw = case
    layer = build_layer(typ, {"units": H, "return_sequences": seq, **extra}, {"in": (T, F)})
    x = rand((B, T, F), 1)
    gout = rand((B,) + layer.out_shape, 2)  # padded entries too: they must not count
    out, gx, g = masked_run(layer, x, LENS, gout)
    t_out, t_hn, t_gx, t_g = packed_run(typ, kw, layer, x, LENS, gout, seq)
    np.testing.assert_allclose(out, t_out, rtol=1e-10, atol=1e-12)
    last = out[np.arange(B), LENS - 1] if seq else out  # each sample's last valid state
    np.testing.assert_allclose(last, t_hn, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx, t_gx, rtol=1e-10, atol=1e-12)
    for k in ("W_ih", "W_hh", "b_ih", "b_hh"):
        np.testing.assert_allclose(g[k], t_g[k], rtol=1e-10, atol=1e-12, err_msg=k)
    pad = np.arange(T)[None, :] >= LENS[:, None]
    assert np.all(gx[pad] == 0)  # padded steps get exactly no gradient
    if seq:
        assert np.all(out[pad] == 0)


def test_lengths_all_T_is_the_unmasked_layer():
    layer = build_layer("LSTM", {"units": H, "return_sequences": True}, {"in": (T, F)})
    x, gout = rand((B, T, F), 3), rand((B, T, H), 4)
    out, gx, g = masked_run(layer, x, np.full(B, T), gout)
    layer.lengths_field = None
    ctx = context(dtype=np.float64)
    ref, cache = layer.forward(ctx, [x])
    for k in layer.G:
        layer.G[k] = None
    (rgx,) = layer.backward(ctx, cache, gout)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(gx, rgx)
    for k, v in layer.G.items():
        np.testing.assert_array_equal(g[k], v)


# ---- graphs --------------------------------------------------------------------------------
def builtin_graph(typ="RNN", seq=False, lengths="len", **extra):
    x = node("x", "Input", shape=[T, F], lengths=lengths)
    nodes = [x, node("rnn", typ, units=H, return_sequences=seq, **extra),
             node("flat", "Flatten"), node("out", "Dense", units=2),
             node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")]
    edges = [edge("x", "rnn"), edge("rnn", "flat"), edge("flat", "out"),
             edge("out", "loss:pred"), edge("y", "loss:target")]
    return build(graph_dict(nodes, edges))


def elman_graph(mode="last", lengths="len", region_loss=False, act="Tanh"):
    nodes = [node("x", "Input", shape=[T, F], sequence=True, lengths=lengths),
             node("wx", "Dense", units=H), node("wh", "Dense", units=H, bias=False),
             node("add", "Add"), node("h", act)]
    edges = [edge("x", "wx"), edge("h", "wh", delay=1), edge("wx", "add:in0"),
             edge("wh", "add:in1"), edge("add", "h")]
    if region_loss:  # a per-step prediction of a per-step target, inside the region
        nodes += [node("out", "Dense", units=2),
                  node("y", "Input", field="y", shape=[T, 2], sequence=True),
                  node("loss", "MSELoss")]
        edges += [edge("h", "out"), edge("out", "loss:pred"), edge("y", "loss:target")]
    else:
        nodes += [node("tc", "TimeCollect", mode=mode), node("flat", "Flatten"),
                  node("out", "Dense", units=2),
                  node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")]
        edges += [edge("h", "tc"), edge("tc", "flat"), edge("flat", "out"),
                  edge("out", "loss:pred"), edge("y", "loss:target")]
    return build(graph_dict(nodes, edges))


def net_of(graph, **kw):
    a = analyze(graph)
    assert a.ok, a.problems
    return Network(a, dtype=np.float64, **kw)


def batch(seed=5, lens=LENS, region_loss=False):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((B, T, 2) if region_loss else (B, 2))
    return {"x": rng.standard_normal((B, T, F)), "y": y, "len": np.asarray(lens)}


def grads(net):
    return {k: np.array(v) for k, v in net.gradients().items() if v is not None}


def tie_elman_to_rnn(drawn, builtin):
    P = drawn.params
    same = {"rnn/W_ih": P["wx/W"], "rnn/b_ih": P["wx/b"], "rnn/W_hh": P["wh/W"],
            "rnn/b_hh": np.zeros(H), "out/W": P["out/W"], "out/b": P["out/b"]}
    for k, v in same.items():
        builtin.params[k][...] = v


@pytest.mark.parametrize("mode,seq", [("last", False), ("all", True)])
def test_drawn_elman_cycle_with_lengths_equals_builtin_rnn(mode, seq):
    drawn = net_of(elman_graph(mode))
    builtin = net_of(builtin_graph("RNN", seq))
    tie_elman_to_rnn(drawn, builtin)
    b = batch()
    ra, rb = drawn.loss_and_grads(b), builtin.loss_and_grads(b)
    assert float(ra.loss) == pytest.approx(float(rb.loss), rel=1e-12)
    ga, gb = grads(drawn), grads(builtin)
    for ours, theirs in (("wx/W", "rnn/W_ih"), ("wh/W", "rnn/W_hh"), ("wx/b", "rnn/b_ih"),
                         ("out/W", "out/W"), ("out/b", "out/b")):
        np.testing.assert_allclose(ga[ours], gb[theirs], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(drawn.state_gradient_norms()["h"],
                               builtin.state_gradient_norms()["rnn"], rtol=1e-9, atol=1e-14)


def elman_reference(net, x, lens, mode):
    """Each sample run alone over its own valid steps, by hand, then collected."""
    P = net.params
    outs = []
    for b in range(len(x)):
        h, hs = np.zeros(H), []
        for t in range(lens[b]):
            h = np.tanh(x[b, t] @ P["wx/W"] + P["wx/b"] + h @ P["wh/W"])
            hs.append(h)
        seq = np.zeros((T, H))
        seq[:lens[b]] = hs
        collected = {"last": hs[-1], "mean": np.mean(hs, axis=0), "all": seq}[mode]
        outs.append(collected.reshape(-1) @ P["out/W"] + P["out/b"])
    return np.stack(outs)


@pytest.mark.parametrize("mode", ["last", "mean", "all"])
def test_timecollect_modes_use_each_samples_valid_steps(mode):
    net = net_of(elman_graph(mode), outputs=["out", "tc"])
    b = batch()
    res = net.forward(b)
    np.testing.assert_allclose(res.values["out"], elman_reference(net, b["x"], LENS, mode),
                               rtol=1e-12, atol=1e-13)
    if mode == "all":
        pad = np.arange(T)[None, :] >= LENS[:, None]
        assert np.all(res.values["tc"][pad] == 0)


def padded_changed(b, seed=9):
    """The batch with every padded input and per-step target replaced by other values."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in b.items()}
    pad = np.arange(T)[None, :] >= LENS[:, None]
    out["x"][pad] = 1e3 * rng.standard_normal(out["x"][pad].shape)
    if out["y"].ndim == 3:
        out["y"][pad] = 1e3 * rng.standard_normal(out["y"][pad].shape)
    return out


@pytest.mark.parametrize("graph", ["elman-mean", "elman-region-loss", "lstm", "gru-seq"])
def test_padded_values_change_nothing(graph):
    region_loss = graph == "elman-region-loss"
    g = {"elman-mean": lambda: elman_graph("mean"),
         "elman-region-loss": lambda: elman_graph(region_loss=True),
         "lstm": lambda: builtin_graph("LSTM"),
         "gru-seq": lambda: builtin_graph("GRU", seq=True)}[graph]()
    net = net_of(g)
    b = batch(region_loss=region_loss)
    l1 = float(net.loss_and_grads(b).loss)
    g1 = grads(net)
    l2 = float(net.loss_and_grads(padded_changed(b)).loss)
    g2 = grads(net)
    assert l1 == l2
    assert g1.keys() == g2.keys()
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k], err_msg=k)


def test_loss_inside_the_region_is_the_mean_over_valid_steps():
    net = net_of(elman_graph(region_loss=True), outputs=["out"])
    b = batch(region_loss=True)
    res = net.forward(b)
    valid = np.arange(T)[None, :] < LENS[:, None]
    pred = res.values["out"]  # [B, T, 2], zeros at the padded steps
    assert np.all(pred[~valid] == 0)
    want = ((pred - b["y"]) ** 2)[valid].mean()
    assert float(res.loss) == pytest.approx(want, rel=1e-12)


class GradientAtPaddedSteps:
    """Observer: the gradient reaching every region node's output at each step."""

    def __init__(self):
        self.seen = {}

    def forward(self, step, key, out):
        pass

    def before_backward(self, step, key, ctx, cache, g):
        if isinstance(key, tuple):
            self.seen[key] = np.array(g)

    def after_backward(self, step, key, src_keys, gins):
        pass


@pytest.mark.parametrize("region_loss", [False, True])
def test_gradients_of_padded_steps_are_zero(region_loss):
    net = net_of(elman_graph("mean", region_loss=region_loss))
    obs = net.observer = GradientAtPaddedSteps()
    net.loss_and_grads(batch(region_loss=region_loss))
    checked = 0
    for (nid, t), g in obs.seen.items():
        if g.ndim == 0:  # a loss: d(total)/d(loss at t)
            continue
        pad = LENS <= t
        assert np.all(g[pad] == 0), (nid, t)
        assert np.any(g[~pad] != 0) or not (~pad).any(), (nid, t)
        checked += int(pad.any())
    assert checked > 0


@pytest.mark.parametrize("graph", ["elman-region-loss", "elman-last", "lstm-seq"])
def test_finite_differences_with_lengths(graph):
    region_loss = graph == "elman-region-loss"
    g = {"elman-region-loss": lambda: elman_graph(region_loss=True),
         "elman-last": lambda: elman_graph("last"),
         "lstm-seq": lambda: builtin_graph("LSTM", seq=True)}[graph]()
    net = net_of(g)
    b = batch(seed=11, region_loss=region_loss)
    net.loss_and_grads(b)
    got = grads(net)
    eps = 1e-6
    rng = np.random.default_rng(0)
    for key, W in net.params.items():
        flat = W.reshape(-1)
        for i in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            lp = float(net.forward(b).loss)
            flat[i] = old - eps
            lm = float(net.forward(b).loss)
            flat[i] = old
            num = (lp - lm) / (2 * eps)
            assert got[key].reshape(-1)[i] == pytest.approx(num, rel=1e-5, abs=1e-9), key


# ---- one batched pass ----------------------------------------------------------------------
class CountCalls(GradientAtPaddedSteps):
    def __init__(self):
        super().__init__()
        self.calls = {}

    def forward(self, step, key, out):
        self.calls[step.node_id] = self.calls.get(step.node_id, 0) + 1


class CountingNumpy:
    """numpy, counting matmul calls (the layers use only ``ctx.xp``)."""

    def __init__(self):
        self.matmuls = 0

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, *a, **kw):
        self.matmuls += 1
        return np.matmul(*a, **kw)


@pytest.mark.parametrize("n", [2, 9])
def test_one_batched_pass_not_a_loop_over_samples(n):
    lens = np.resize(LENS, n)
    rng = np.random.default_rng(n)
    b = {"x": rng.standard_normal((n, T, F)), "y": rng.standard_normal((n, 2)), "len": lens}
    # drawn cycle: every region node is called once per step, whatever the batch
    net = net_of(elman_graph("last"))
    obs = net.observer = CountCalls()
    net.forward(b)
    assert obs.calls["wx"] == T and obs.calls["h"] == T and obs.calls["tc"] == 1
    # built-in LSTM: one call; inside it one input GEMM and one recurrent GEMM per step
    layer = build_layer("LSTM", {"units": H}, {"in": (T, F)})
    layer.lengths_field = "len"
    xp = CountingNumpy()
    ctx = context(dtype=np.float64)
    ctx.xp = xp
    ctx.lengths = {"len": Lengths(np, lens, T)}
    layer.forward(ctx, [b["x"]])
    assert xp.matmuls == T  # 1 projection + T - 1 recurrent steps


# ---- the lengths field: validation and data errors ------------------------------------------
def test_lengths_field_is_validated_against_the_dataset():
    g = builtin_graph("LSTM")
    ok = analyze(g, {"x": ((T, F), "float32"), "y": ((2,), "float32"), "len": ((), "int64")})
    assert ok.ok, ok.problems
    for fields, words in [({"x": ((T, F), "float32"), "y": ((2,), "float32")}, "not in"),
                          ({"x": ((T, F), "float32"), "y": ((2,), "float32"),
                            "len": ((2,), "int64")}, "per-sample shape"),
                          ({"x": ((T, F), "float32"), "y": ((2,), "float32"),
                            "len": ((), "float32")}, "integers")]:
        a = analyze(g, fields)
        probs = [p for p in a.problems if isinstance(p, ParamError)]
        assert probs and all(p.node == "x" and p.param == "lengths" for p in probs), a.problems
        assert words in str(probs[0]) and "'len'" in str(probs[0])


def test_bad_lengths_in_a_batch_are_a_data_error_naming_the_input():
    net = net_of(builtin_graph("GRU"))
    b = batch()
    for bad, words in [(np.r_[LENS[:-1], 0], "length 0"), (np.r_[LENS[:-1], T + 1], "1 to"),
                       (LENS.astype(np.float32), "integers")]:
        with pytest.raises(DataError, match=words) as e:
            net.forward({**b, "len": bad})
        assert e.value.node == "x"
    with pytest.raises(DataError, match="lengths field 'len'"):
        net.forward({"x": b["x"], "y": b["y"]})


def test_without_lengths_nothing_changes():
    """The same graph without ``lengths`` gives what it always gave; lengths all T give the
    same numbers."""
    plain, full = net_of(builtin_graph("LSTM", lengths=None)), net_of(builtin_graph("LSTM"))
    b = batch()
    rp = plain.loss_and_grads({"x": b["x"], "y": b["y"]})
    gp = grads(plain)
    rf = full.loss_and_grads({**b, "len": np.full(B, T)})
    assert float(rp.loss) == float(rf.loss)
    for k, v in grads(full).items():
        np.testing.assert_array_equal(v, gp[k])


# ---- the benchmark's variable-length workload -----------------------------------------------
def test_varlen_lstm_workload_and_its_packed_torch_twin_agree():
    torch = torch_ref.need_torch()
    from benchmarks.workloads import from_spec, lstm_varlen
    w = lstm_varlen(batch=8)
    assert from_spec(w.spec).graph == w.graph
    net = Network(analyze(build(w.graph)), seed=0)
    b = w.make_batch(np.random.default_rng(0), w.batch)
    assert b["len"].min() == 1 and b["len"].max() == T_BENCH
    res = net.loss_and_grads(b)
    model = w.torch_factory(w.graph, net.state_dict())
    loss = torch.nn.functional.cross_entropy(model(torch_ref.tensor(b["x"])),
                                             torch_ref.tensor(b["y"]))
    loss.backward()
    assert float(res.loss) == pytest.approx(loss.item(), rel=1e-5)
    theirs = torch_ref.layer_grads(model.rnn, "LSTM")
    for k in ("W_ih", "W_hh", "b_ih"):
        np.testing.assert_allclose(net.gradients()[f"rnn/{k}"], theirs[k], rtol=1e-3,
                                   atol=1e-6)


# ---- the exported PyTorch code ---------------------------------------------------------------
EXPORTED = {"lstm": lambda: builtin_graph("LSTM"),
            "gru-seq": lambda: builtin_graph("GRU", seq=True),
            "rnn-relu": lambda: builtin_graph("RNN", activation="relu"),
            "elman-last": lambda: elman_graph("last"),
            "elman-mean": lambda: elman_graph("mean"),
            "elman-all": lambda: elman_graph("all"),
            "elman-region-loss": lambda: elman_graph(region_loss=True)}


@pytest.mark.parametrize("name", list(EXPORTED))
def test_exported_pytorch_with_lengths_agrees_with_ours(name, tmp_path):
    torch = torch_ref.need_torch()
    from core.export.pytorch import ModelWriter
    from tests.export_graphs import export_module, ruff
    graph = EXPORTED[name]()
    a = analyze(graph)
    net = Network(a, dtype=np.float64, seed=3, outputs=["out"])
    b = padded_changed(batch(seed=4, region_loss=name.endswith("loss")))  # padding: noise
    ours = net.forward(b)
    module, path = export_module(graph, tmp_path)
    assert ruff(path).returncode == 0, ruff(path).stdout
    model = module.Model().double()
    model.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(
        net.state_dict()[key].astype(np.float64).T if transposed else
        net.state_dict()[key].astype(np.float64)))
        for key, (name, transposed) in module.WEIGHTS.items()})
    for k in module.WEIGHTS:  # float32 weights file -> both sides use the same values
        net.params[k][...] = net.state_dict()[k]
    ours = net.forward(b)
    fields = [f.name for f in ModelWriter(a).inputs]
    assert fields[-1] == "len" and module.INPUTS == tuple(fields)
    args = [torch.from_numpy(b[f]) for f in fields]
    out = model(*args)
    out = out[0] if isinstance(out, tuple) else out
    np.testing.assert_allclose(out.detach().numpy(), ours.values["out"], rtol=1e-9, atol=1e-10)
    loss = model.loss(out, {k: torch.from_numpy(v) for k, v in b.items()})
    assert loss.item() == pytest.approx(float(ours.loss), rel=1e-9)


@pytest.mark.parametrize("name", ["lstm", "elman-region-loss"])
def test_exported_training_step_with_lengths_equals_ours(name, tmp_path):
    torch = torch_ref.need_torch()
    from core import optim
    from core.training import parse_training, training_step
    from core.weights import load_weights, save_weights
    from tests.export_graphs import export_module, float64_default, training
    graph = EXPORTED[name]()
    graph.set_training(training(optimizer={"type": "adam", "lr": 0.01}))
    a = analyze(graph)
    cfg = parse_training(graph.training)
    b = padded_changed(batch(seed=12, region_loss=name.endswith("loss")))
    net = Network(a, dtype=np.float64, seed=2)
    save_weights(tmp_path / "w.npz", net.state_dict())
    net.load_state_dict(load_weights(tmp_path / "w.npz"))
    opt = optim.make_optimizer(cfg.optimizer, net.params.items())
    ours = [training_step(net, opt, b, cfg)[0] for _ in range(2)]
    module, _ = export_module(graph, tmp_path)
    with float64_default(torch):
        model = module.Model()
        module.load_weights(model, tmp_path / "w.npz")
        model.train()
        tb = {k: torch.from_numpy(v) for k, v in b.items()}
        topt, task = module.make_optimizer(model), module.WithLoss(model)
        theirs = [module.train_step(task, model, topt, tb)["loss"] for _ in range(2)]
    assert theirs == pytest.approx(ours, rel=1e-8)


def test_exported_drawn_cycle_with_lengths_is_traceable(tmp_path):
    torch = torch_ref.need_torch()
    from core.export.pytorch import ModelWriter
    from tests.export_graphs import export_module
    graph = elman_graph("mean")
    module, _ = export_module(graph, tmp_path)
    model = module.Model().double().eval()
    b = batch(seed=1)
    args = tuple(torch.from_numpy(b[f.name]) for f in ModelWriter(analyze(graph)).inputs)
    with torch.no_grad():
        eager = model(*args)
        for got in (torch.jit.script(model)(*args), torch.fx.symbolic_trace(model)(*args),
                    torch.export.export(model, args).module()(*args)):
            np.testing.assert_allclose(got.numpy(), eager.numpy(), rtol=1e-12)


def test_a_padded_state_keeps_its_last_valid_value():
    """A ReLU cycle that grows 1e10-fold per step: carried, the padded steps of short
    samples stay finite (computed on, they would overflow float32 and turn the gradients to
    NaN through 0 * inf)."""
    net = Network(analyze(elman_graph("last", act="ReLU")), outputs=["h"])
    net.params["wh/W"][...] = 1e10 * np.eye(H, dtype=np.float32)
    lens = np.array([1, 2, 1, 2, 2, 1])
    b = {k: v.astype(np.float32) if v.dtype.kind == "f" else v
         for k, v in batch(seed=3, lens=lens).items()}
    seen = {}

    class Values(GradientAtPaddedSteps):
        def forward(self, step, key, out):
            seen[key] = np.array(out)

    net.observer = Values()
    res = net.loss_and_grads(b)
    assert np.isfinite(float(res.loss))
    assert all(np.all(np.isfinite(g)) for g in grads(net).values())
    # what every later step reads back is each sample's state at its last valid step
    h_last = np.stack([seen[("h", n - 1)][i] for i, n in enumerate(lens)])
    want = h_last @ net.params["wh/W"]
    for t in range(lens.max(), T):
        np.testing.assert_allclose(seen[("wh", t)], want, rtol=1e-6)
