"""kernels.fused (numba, the optional extra ``fast``) against the NumPy code it replaces.

Each test runs the same layer, optimizer or kernel twice on the same float32 data, once with
the compiled kernels forced on and once forced off (``kernels.jit.forced``), and asserts
bit-identical results, except where ``tanh`` is involved: the kernels' float32 tanh is a
rational approximation, held here to its error bound. Without numba the whole module skips
(the NumPy path is what every other test runs then).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from core.optim import make_optimizer
from kernels import conv, jit, pool
from tests.cli_helpers import ROOT
from tests.harness import build_layer, forward_backward

pytestmark = pytest.mark.skipif(not jit._numba_importable(), reason="numba is not installed")


def both(fn):
    """(fn() with the NumPy code, fn() with the compiled kernels)."""
    with jit.forced(False):
        a = fn()
    with jit.forced(True):
        assert jit.enabled()
        b = fn()
    return a, b


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        if isinstance(x, (list, tuple)):
            assert_same(x, y)
        elif isinstance(x, dict):
            assert x.keys() == y.keys()
            assert_same(list(x.values()), list(y.values()))
        elif x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y)
            assert np.asarray(x).dtype == np.asarray(y).dtype


# ---- tanh -----------------------------------------------------------------------------------
def test_tanh_within_its_error_bound_saturating_and_passing_nan():
    fused = jit.fused()
    x = np.concatenate([np.linspace(-12, 12, 400001), [0.0, -0.0, 1e-30, -1e-30, 9.011, 50.0,
                                                       -1e4, np.inf, -np.inf]]).astype(np.float32)
    y = np.empty_like(x)
    fused.tanh(x, y)
    exact = np.tanh(x.astype(np.float64))
    assert np.abs(y - exact).max() < 4e-7
    tiny = np.abs(x) < 1e-3  # relative accuracy near zero, where tanh(x) ~ x
    assert np.all(np.abs(y[tiny] - exact[tiny]) <= 4e-7 * np.abs(exact[tiny]) + 1e-38)
    assert np.all(np.abs(y) <= 1.0)
    big = np.abs(x) > np.float32(9.011)  # float32 tanh is exactly +-1 there: no gradient
    assert np.array_equal(y[big], np.sign(x[big]))
    nan = np.array([np.nan, 1.0], dtype=np.float32)
    out = np.empty_like(nan)
    fused.tanh(nan, out)
    assert np.isnan(out[0]) and out[1] == pytest.approx(np.tanh(1.0), abs=4e-7)


def test_tanh_layer_close_to_numpy_and_its_backward_the_same_formula():
    layer = build_layer("Tanh", {}, {"in": (37,)}, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((5, 37)).astype(np.float32) * 3
    g = np.random.default_rng(1).standard_normal((5, 37)).astype(np.float32)
    (ya, (ga,), _), (yb, (gb,), _) = both(lambda: forward_backward(layer, [x], g))
    np.testing.assert_allclose(yb, ya, atol=4e-7, rtol=0)
    np.testing.assert_array_equal(gb, g * (1 - yb * yb))  # 1 - y^2 from its own output


def test_relu_is_bit_identical_with_its_mask():
    layer = build_layer("ReLU", {}, {"in": (6, 5)}, dtype=np.float32)
    x = np.random.default_rng(8).standard_normal((3, 6, 5)).astype(np.float32)
    x.reshape(-1)[:6] = [0.0, -0.0, np.nan, -np.inf, np.inf, 1e-45]
    g = -np.ones_like(x)  # -1 * False = -0: the sign of zero must match too
    a, b = both(lambda: forward_backward(layer, [x], g))
    assert_same(a[:2], b[:2])
    assert np.array_equal(np.signbit(a[0]), np.signbit(b[0]), equal_nan=False)
    assert np.array_equal(np.signbit(a[1][0]), np.signbit(b[1][0]))


# ---- recurrent cells ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_recurrent_cells_agree_with_the_numpy_steps(kind, return_sequences):
    rng = np.random.default_rng(2)
    layer = build_layer(kind, {"units": 24, "return_sequences": return_sequences},
                        {"in": (13, 6)}, dtype=np.float32)
    x = rng.standard_normal((7, 13, 6)).astype(np.float32)
    out_shape = (7, 13, 24) if return_sequences else (7, 24)
    g = rng.standard_normal(out_shape).astype(np.float32)
    ((ya, (gxa,), pa), na), ((yb, (gxb,), pb), nb) = both(
        lambda: (forward_backward(layer, [x], g), layer.state_grad_norms.copy()))
    # only tanh differs (within 4e-7 a call); 13 steps of it stay within float32 noise
    np.testing.assert_allclose(yb, ya, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(nb, na, rtol=1e-4)  # the state-gradient norm of every step
    np.testing.assert_allclose(gxb, gxa, atol=2e-5, rtol=1e-3)
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], atol=5e-5, rtol=1e-3, err_msg=k)


@pytest.mark.skipif(jit.cblas_sgemm() is None, reason="NumPy's BLAS is not its wheels' OpenBLAS")
@pytest.mark.parametrize("return_sequences", [False, True])
def test_lstm_time_loop_in_one_call_is_the_python_loop_to_the_bit(monkeypatch,
                                                                  return_sequences):
    # the loop kernels call NumPy's BLAS as np.matmul does: the same products, the same cells
    rng = np.random.default_rng(4)
    layer = build_layer("LSTM", {"units": 40, "return_sequences": return_sequences},
                        {"in": (9, 5)}, dtype=np.float32)
    x = rng.standard_normal((6, 9, 5)).astype(np.float32)
    g = rng.standard_normal((6, 9, 40) if return_sequences else (6, 40)).astype(np.float32)
    K = jit.fused()

    def run():
        (y, (gx,), p) = forward_backward(layer, [x], g)
        return y, gx, p, layer.state_grad_norms.copy()
    with jit.forced(True):
        loops = run()
        monkeypatch.setattr(K, "lstm_forward", None)
        monkeypatch.setattr(K, "lstm_backward", None)
        python = run()
    assert_same(loops, python)
    assert np.abs(loops[1]).max() > 0 and all(np.abs(v).max() > 0 for v in loops[2].values())


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_cells_with_lengths_keep_padded_states(kind):
    from core.layers.timecollect import Lengths
    from tests.harness import context
    rng = np.random.default_rng(3)
    layer = build_layer(kind, {"units": 8, "return_sequences": True}, {"in": (6, 3)},
                        dtype=np.float32)
    layer.lengths_field = "len"
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    g = rng.standard_normal((4, 6, 8)).astype(np.float32)
    lens = np.array([6, 1, 3, 6])

    def run():
        ctx = context(True, 0, np.float32, np)
        ctx.lengths = {"len": Lengths(np, lens, 6)}
        for k in layer.G:
            layer.G[k] = None
        out, cache = layer.forward(ctx, [x])
        (gx,) = layer.backward(ctx, cache, g)
        return out.copy(), gx.copy(), {k: v.copy() for k, v in layer.G.items()}
    (ya, gxa, pa), (yb, gxb, pb) = both(run)
    np.testing.assert_allclose(yb, ya, atol=2e-5)
    assert np.all(yb[1, 1:] == 0) and np.all(yb[2, 3:] == 0)  # padded steps output zeros
    np.testing.assert_allclose(gxb, gxa, atol=2e-5, rtol=1e-3)
    assert np.all(gxb[1, 1:] == 0) and np.all(gxb[2, 3:] == 0)  # and get no gradient
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], atol=5e-5, rtol=1e-3, err_msg=k)


# ---- Adam -----------------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [
    {"type": "adam", "lr": 1e-2},
    {"type": "adam", "lr": 1e-2, "weight_decay": 0.1, "amsgrad": True},
    {"type": "adamw", "lr": 1e-2},
    {"type": "adam", "lr": 3e-3, "betas": [0.3, 0.99]},  # lerp's other form (1 - beta1 >= 0.5)
])
def test_adam_in_one_pass_is_bit_identical(settings):
    rng = np.random.default_rng(4)
    start = {"W": rng.standard_normal((33, 17)).astype(np.float32),
             "b": rng.standard_normal(17).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in start.items()}
             for _ in range(5)]

    def run():
        params = {k: v.copy() for k, v in start.items()}
        opt = make_optimizer(settings, list(params.items()))
        for g in grads:
            opt.step(g)
        return params, {k: dict(st) for k, st in opt.state.items()}
    (pa, sa), (pb, sb) = both(run)
    assert_same([pa], [pb])
    for k in sa:
        assert sa[k]["step"] == sb[k]["step"] == 5
        assert_same([{n: v for n, v in sa[k].items() if n != "step"}],
                    [{n: v for n, v in sb[k].items() if n != "step"}])


def test_float64_parameters_keep_the_numpy_update():
    p = {"W": np.ones((3, 3))}
    with jit.forced(True):
        assert jit.kernels_for(p["W"]) is None
        opt = make_optimizer({"type": "adam"}, list(p.items()))
        opt.step({"W": np.full((3, 3), 0.5)})
    assert p["W"].dtype == np.float64 and np.allclose(p["W"], 1 - 1e-3)


# ---- convolution and pooling ----------------------------------------------------------------
GEOMETRIES = [  # (N, C, H, W, k, stride, pad)
    (4, 3, 9, 9, 3, 1, 1), (3, 2, 8, 7, 3, 2, 1), (2, 3, 10, 10, 5, 1, 2),
    (2, 2, 7, 9, 2, 2, 0), (2, 1, 6, 6, 3, 3, 0), (1, 2, 5, 5, 3, 1, 0),
    (2, 3, 8, 10, 2, 2, 0),  # 2x2 windows tiling the input: one write per position
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_col2im_is_bit_identical(geometry):
    n, c, h, w, k, s, p = geometry
    pads = ((p, p), (p, p))
    ho, wo = conv.out_size(h, k, s, p, p), conv.out_size(w, k, s, p, p)
    cols = np.random.default_rng(5).standard_normal((c * k * k, n * ho * wo)).astype(np.float32)
    a, b = both(lambda: conv.col2im(cols, (n, c, h, w), k, k, (s, s), pads))
    assert_same([a], [b])


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_max_pool_backward_is_bit_identical(geometry):
    n, c, h, w, k, s, p = geometry
    p = min(p, k // 2)
    pads = ((p, p), (p, p))
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x[0, 0, :2, :2] = 1.0  # ties: the first maximum gets the gradient
    y, idx = pool.maxpool2d_forward(x, (k, k), (s, s), pads)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gy.reshape(-1)[:2] = [-0.0, 0.0]  # (a NaN gradient: NumPy's NaN·0 spreads it over the
    # window, the kernels leave it at the maximum, as PyTorch does; training refuses it anyway)
    a, b = both(lambda: pool.maxpool2d_backward(gy, idx, x.shape, (k, k), (s, s), pads))
    assert_same([a], [b])
    assert np.array_equal(np.signbit(a), np.signbit(b))  # zeros of the same sign


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 3, 7, 9), (1, 1, 2, 2)])
def test_max_pool_2x2_forward_is_bit_identical_ties_zeros_and_nan_included(shape):
    rng = np.random.default_rng(9)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, 0, :2] = [1.0, 1.0]  # a tie: the first maximum
    x[0, 0, 1, :2] = [-0.0, 0.0]
    if shape[2] >= 4:
        x[-1, -1, 2:4, 0:2] = [[-0.0, 0.0], [0.0, -0.0]]  # zeros of both signs
        x[-1, -1, 2:4, 2:4] = -np.inf
    args = ((2, 2), (2, 2), ((0, 0), (0, 0)))
    a, b = both(lambda: pool.maxpool2d_forward(x, *args))
    assert_same(a, b)
    assert np.array_equal(np.signbit(a[0]), np.signbit(b[0]))
    x[0, 0, 0, 1] = np.nan  # a NaN wins (NumPy's careful path)
    a, b = both(lambda: pool.maxpool2d_forward(x, *args))
    assert_same(a, b)
    assert np.isnan(b[0][0, 0, 0, 0]) and b[1][0, 0, 0, 0] == 1


@pytest.mark.parametrize("bias", [True, False])
def test_conv_layer_gradients_are_bit_identical(bias):
    layer = build_layer("Conv2D", {"filters": 4, "kernel_size": 3, "padding": "same",
                                   "bias": bias}, {"in": (3, 8, 8)}, dtype=np.float32)
    x = np.random.default_rng(7).standard_normal((2, 3, 8, 8)).astype(np.float32)
    a, b = both(lambda: forward_backward(layer, [x]))
    assert_same(a, b)


# ---- the switch -----------------------------------------------------------------------------
def test_on_compile_tells_once_when_the_first_kernel_compiles():
    told: list[int] = []
    with jit.forced(False):
        assert not jit.on_compile(lambda: told.append(0))  # kernels off: never told
    with jit.forced(True):  # on, also where NEUROCANVAS_KERNELS=numpy runs the suite
        assert jit.on_compile(lambda: told.append(1))

    def twice(x):
        return x * 2.0

    fresh = jit.njit(cache=False)(twice)  # a kernel no cache holds: it compiles
    assert fresh(1.5) == 3.0 and fresh(np.float32(2.0)) == 4.0  # two compilations
    assert told == [1]


def test_kernels_compute_the_same_bits_compiled_afresh_and_loaded_from_the_cache(tmp_path):
    """The first process after an install compiles every kernel, later ones load them from
    the on-disk cache: both must compute the same numbers (a remote run is compared with an
    in-process one bit for bit). A fastmath cell compiled as the callee of the LSTM's loop
    kernel once gave other bits from an empty cache than from a full one, for a batch the
    vector loop runs on (32)."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from tests.harness import build_layer, forward_backward\n"
        "rng = np.random.default_rng(4)\n"
        "out = {}\n"
        "for kind in ('LSTM', 'GRU'):\n"
        "    layer = build_layer(kind, {'units': 32}, {'in': (20, 3)}, dtype=np.float32)\n"
        "    x = rng.standard_normal((32, 20, 3)).astype(np.float32)\n"
        "    g = rng.standard_normal((32, 32)).astype(np.float32)\n"
        "    y, (gx,), p = forward_backward(layer, [x], g)\n"
        "    out.update({kind + k.replace('/', '_'): v for k, v in p.items()}, **{kind: y})\n"
        "np.savez(sys.argv[1], **out)\n")
    env = {k: v for k, v in os.environ.items() if k != jit.ENV_VAR}  # the kernels on
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    runs = []
    for name in ("afresh.npz", "cached.npz"):
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(np.load(tmp_path / name))
    assert any((tmp_path / "cache").rglob("*.nbi"))  # the second run had a cache to load
    afresh, cached = runs
    assert afresh.files == cached.files and len(afresh.files) == 10
    for k in afresh.files:
        np.testing.assert_array_equal(afresh[k], cached[k], err_msg=k)


def test_the_environment_switches_the_kernels_off():
    code = "from kernels import jit; print(jit.enabled(), jit.status())"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env={**os.environ, jit.ENV_VAR: "numpy"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("False") and "NEUROCANVAS_KERNELS=numpy" in r.stdout
    assert jit.enabled() == (os.environ.get(jit.ENV_VAR, "") != "numpy")


def test_cupy_and_non_contiguous_arrays_are_not_taken():
    a = np.zeros((4, 4), dtype=np.float32)
    with jit.forced(True):
        assert jit.usable(a) and jit.usable(a, np.zeros(3, np.uint8))
        assert not jit.usable(a.T) and not jit.usable(a.astype(np.float64))
        assert not jit.usable([1.0])
    with jit.forced(False):
        assert not jit.usable(a)


# ---- a convolution, the ReLU and the max pool after it, as one call -------------------------
def _relu_pool_net(size: int, *, relu_shared: bool = False, conv_shared: bool = False,
                   bias: bool = True, conv_first: bool = False):
    """conv -> ReLU -> 2x2 MaxPool -> Dense -> MSE (the pool's value an output too);
    ``relu_shared`` / ``conv_shared``: the ReLU / the conv also feeds a second pool, so
    that node has two consumers and must keep its own value; ``conv_first``: another
    convolution before, so the chain's input gradient is needed too."""
    from core.network import Network
    from core.validate import analyze
    from tests.graphs import build, edge, graph_dict, node
    nodes = [node("x", "Input", shape=[2, size, size]),
             node("conv", "Conv2D", filters=3, kernel_size=3, padding="same", bias=bias),
             node("relu", "ReLU"), node("pool", "MaxPool2D", pool_size=2),
             node("flat", "Flatten"), node("fc", "Dense", units=2),
             node("y", "Target", shape=[2], dtype="float32"), node("loss", "MSELoss")]
    if conv_first:
        nodes.append(node("conv0", "Conv2D", filters=2, kernel_size=3, padding="same"))
    edges = [edge("x", "conv0") if conv_first else edge("x", "conv"),
             *([edge("conv0", "conv")] if conv_first else []),
             edge("conv", "relu"), edge("relu", "pool"),
             edge("pool", "flat"), edge("flat", "fc"), edge("fc", "loss:pred"),
             edge("y", "loss:target")]
    if relu_shared or conv_shared:
        nodes += [node("pool_b", "MaxPool2D", pool_size=2), node("flat_b", "Flatten"),
                  node("fc_b", "Dense", units=2), node("loss_b", "MSELoss")]
        edges += [edge("relu" if relu_shared else "conv", "pool_b"), edge("pool_b", "flat_b"),
                  edge("flat_b", "fc_b"), edge("fc_b", "loss_b:pred"),
                  edge("y", "loss_b:target")]
    a = analyze(build(graph_dict(nodes, edges)))
    assert a.ok, [str(p) for p in a.problems]
    net = Network(a, seed=3, outputs=["pool"])
    if bias:  # not the zeros of the init: the bias must visibly take part
        net.params["conv/b"][...] = [0.3, -0.2, 0.1]
    return net


def _loss_and_grads(net, batch):
    net.zero_grad()
    res = net.loss_and_grads(batch)
    grads = {k: np.array(v) for k, v in net.gradients().items()}
    assert grads and all(g.size for g in grads.values())
    return float(res.loss), grads, np.array(res.values["pool"])


def _fused_layers(net) -> dict[str, tuple[str, list[str]]]:
    from core.layers.fused import ConvReluMaxPool, ReluMaxPool
    return {s.node_id: (type(s.layer).__name__, s.sources) for s in net._fused_plan.pre
            if isinstance(s.layer, (ReluMaxPool, ConvReluMaxPool))}


def _batch(size: int, seed: int, n: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, size, size)).astype(np.float32)
    x[0] = -1.0  # filters of negative sum give windows that are all negative: ReLU kills them
    return {"x": x, "y": rng.standard_normal((n, 2)).astype(np.float32)}


@pytest.mark.parametrize("size", [8, 7])  # windows that tile the input, and a left-over row
@pytest.mark.parametrize("case,fused", [
    ({}, {"pool": ("ConvReluMaxPool", ["x"])}),
    ({"bias": False}, {"pool": ("ConvReluMaxPool", ["x"])}),
    ({"conv_first": True}, {"pool": ("ConvReluMaxPool", ["conv0"])}),
    ({"conv_shared": True}, {"pool": ("ReluMaxPool", ["conv"])}),
    ({"relu_shared": True}, {}),
])
def test_conv_relu_max_pool_run_as_one_call_with_the_layers_numbers(size, case, fused):
    net = _relu_pool_net(size, **case)
    assert _fused_layers(net) == fused
    batch = _batch(size, 11)
    with jit.forced(True):
        net.fuse = True
        got = _loss_and_grads(net, batch)
        net.fuse = False
        want = _loss_and_grads(net, batch)
    assert got[0] == want[0]
    assert_same(list(got[1].values()), list(want[1].values()))
    assert_same([got[2]], [want[2]])
    with jit.forced(False):  # NumPy: the layers one after the other, inside the call
        net.fuse = True
        numpy_run = _loss_and_grads(net, batch)
        net.fuse = False
        assert_same(numpy_run[1:2], _loss_and_grads(net, batch)[1:2])


@pytest.mark.parametrize("case", [{}, {"conv_shared": True}])
def test_fused_conv_relu_pool_takes_the_layers_where_a_nan_turns_up(case):
    net = _relu_pool_net(8, **case)
    assert _fused_layers(net)
    batch = _batch(8, 12, n=2)
    batch["x"][1, 0, 0, 0] = np.nan
    with jit.forced(True):
        fused = net.forward(batch, train=True)
        net.fuse = False
        plain = net.forward(batch, train=True)
    assert np.isnan(float(fused.loss)) and np.isnan(float(plain.loss))
    assert_same([np.array(fused.values["pool"])], [np.array(plain.values["pool"])])


def test_observers_see_every_node_the_fusion_would_absorb():
    net = _relu_pool_net(8)
    seen = []

    class Watch:
        def forward(self, step, key, out):
            seen.append(step.node_id)

        def before_backward(self, *a):
            pass

        def after_backward(self, *a):
            pass

    net.observer = Watch()
    try:
        net.forward(_batch(8, 13))
    finally:
        net.observer = None
    assert {"conv", "relu", "pool"} <= set(seen)  # the plan without fusion
