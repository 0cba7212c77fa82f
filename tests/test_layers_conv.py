"""Conv2D, pooling, Flatten and Reshape: gradients, PyTorch parity, shapes and shape errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import ParamError, ShapeError
from core.graph import Graph, Node
from core.validate import analyze
from kernels import conv as KC
from kernels.backend import to_host
from tests import torch_ref
from tests.harness import assign, build_layer, context, forward, forward_backward, gradcheck


def rand(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def functional():
    """torch.nn.functional (the test is skipped without torch)."""
    return torch_ref.need_torch().nn.functional


# ---- Conv2D ------------------------------------------------------------------------------
# (id, per-sample input shape, our params, the equivalent torch arguments). 'pad' is an
# explicit F.pad (left, right, top, bottom) where torch has no padding='same' for stride > 1.
CONV_CASES = [
    ("valid-3x2", (3, 7, 6), {"filters": 4, "kernel_size": [3, 2]},
     {"stride": 1, "padding": 0}),
    ("same-odd-kernel", (2, 5, 6), {"filters": 3, "kernel_size": 3, "padding": "same"},
     {"stride": 1, "padding": "same"}),
    ("same-even-kernel", (2, 5, 6), {"filters": 3, "kernel_size": [2, 4], "padding": "same"},
     {"stride": 1, "padding": "same"}),
    # ceil(7/2)=4 rows: total pad 2 -> (1, 1); ceil(6/2)=3 cols: total 1 -> (0, 1).
    ("same-stride2", (3, 7, 6),
     {"filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"},
     {"stride": 2, "padding": 0, "pad": (0, 1, 1, 1)}),
    ("stride2x1-pad1x2", (3, 7, 6),
     {"filters": 2, "kernel_size": 3, "stride": [2, 1], "padding": [1, 2]},
     {"stride": (2, 1), "padding": (1, 2)}),
    ("stride3-pad2-k5", (2, 9, 8),
     {"filters": 3, "kernel_size": 5, "stride": 3, "padding": 2},
     {"stride": 3, "padding": 2}),
    ("1x1-no-bias", (4, 3, 5), {"filters": 5, "kernel_size": 1, "bias": False},
     {"stride": 1, "padding": 0}),
]
CONV_IDS = [c[0] for c in CONV_CASES]


# torch warns that an even kernel with padding='same' pads a copy of the input; expected.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def torch_conv(x, W, b, targs):
    F = functional()
    if "pad" in targs:
        x = F.pad(x, targs["pad"])
    return F.conv2d(x, W, b, stride=targs["stride"], padding=targs["padding"])


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_gradcheck(xp, case):
    _, in_shape, params, _ = case
    layer = build_layer("Conv2D", params, {"in": in_shape}, xp=xp)
    if "b" in layer.P:
        assign(layer.P["b"], rand(layer.P["b"].shape, seed=5))
    # Element by element everywhere (the tensors are small enough).
    gradcheck(layer, [rand((2,) + in_shape)], max_elements=400)


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_conv2d_matches_torch(xp, torch, case, dtype, tol):
    _, in_shape, params, targs = case
    layer = build_layer("Conv2D", params, {"in": in_shape}, dtype=dtype, xp=xp)
    if "b" in layer.P:
        assign(layer.P["b"], rand(layer.P["b"].shape, seed=5))  # nonzero, so b is tested
    x = rand((3,) + in_shape, seed=1, dtype=dtype)
    out, (gx,), g = forward_backward(layer, [x], rand((3,) + layer.out_shape, 2, dtype))
    assert out.shape == (3,) + layer.out_shape

    inputs = [x, layer.P["W"]] + ([layer.P["b"]] if "b" in layer.P else [])

    def fn(x, W, b=None):
        return torch_conv(x, W, b, targs)

    t_out, t_grads = torch_ref.run(fn, inputs, rand((3,) + layer.out_shape, 2, dtype))
    for name, ours, theirs in [("out", out, t_out), ("gx", gx, t_grads[0]),
                               ("gW", g["W"], t_grads[1])] + (
            [("gb", g["b"], t_grads[2])] if "b" in layer.P else []):
        # float32 stays float32 (no silent upcast)
        torch_ref.assert_close(name, ours, theirs, tol, dtype)


def test_conv2d_same_gives_ceil_of_input_over_stride(xp):
    for stride, expected in [(1, (4, 7, 6)), (2, (4, 4, 3)), (3, (4, 3, 2))]:
        layer = build_layer("Conv2D", {"filters": 4, "kernel_size": [4, 3], "stride": stride,
                                       "padding": "same"}, {"in": (3, 7, 6)}, xp=xp)
        assert layer.out_shape == expected
        assert forward(layer, [rand((2, 3, 7, 6))]).shape == (2,) + expected


def test_conv2d_parameter_layout_and_init():
    layer = build_layer("Conv2D", {"filters": 64, "kernel_size": [3, 2]}, {"in": (16, 9, 9)},
                        he=True)
    assert layer.param_shapes() == {"W": (64, 16, 3, 2), "b": (64,)}
    assert layer.param_count() == 64 * 16 * 3 * 2 + 64
    assert not layer.P["b"].any()
    fan_in = 16 * 3 * 2
    assert abs(layer.P["W"].std() / math.sqrt(2 / fan_in) - 1) < 0.05  # He normal
    glorot = build_layer("Conv2D", {"filters": 64, "kernel_size": [3, 2], "bias": False},
                         {"in": (16, 9, 9)}).P
    assert set(glorot) == {"W"}
    limit = math.sqrt(6 / (fan_in + 64 * 3 * 2))
    assert 0.95 * limit < np.abs(glorot["W"]).max() <= limit  # Glorot uniform bound


def test_conv2d_weight_gradients_accumulate(xp):
    # Shared parameters: two backward passes must add up, not overwrite or alias.
    layer = build_layer("Conv2D", {"filters": 2, "kernel_size": 2}, {"in": (1, 4, 4)}, xp=xp)
    x = rand((2, 1, 4, 4))
    _, _, g1 = forward_backward(layer, [x])
    ctx = context(xp=xp)
    _, cache = layer.forward(ctx, [xp.asarray(x)])
    layer.backward(ctx, cache, xp.ones((2, 2, 3, 3)))
    np.testing.assert_allclose(to_host(layer.G["W"]), 2 * g1["W"], rtol=1e-12)
    np.testing.assert_allclose(to_host(layer.G["b"]), 2 * g1["b"], rtol=1e-12)


def test_conv2d_rejects_non_image_input():
    layer = build_layer("Conv2D", {"filters": 2, "kernel_size": 3}, {"in": (1, 5, 5)},
                        node_id="conv1")
    with pytest.raises(ShapeError) as e:
        layer.infer({"in": (64,)})
    assert e.value.node == "conv1" and e.value.port == "in"
    assert "[C, H, W]" in str(e.value) and "[64]" in str(e.value)
    assert layer.infer({"in": None}) is None  # unknown input: unknown output, no error


def test_conv2d_rejects_kernel_larger_than_padded_input():
    layer = build_layer("Conv2D", {"filters": 2, "kernel_size": 3}, {"in": (1, 5, 5)})
    with pytest.raises(ShapeError) as e:
        layer.infer({"in": (1, 3, 2)})
    assert "3x3" in str(e.value) and "[1, 3, 2]" in str(e.value)
    padded = build_layer("Conv2D", {"filters": 2, "kernel_size": 5, "padding": 1},
                         {"in": (1, 5, 5)})
    assert padded.infer({"in": (1, 3, 3)}) == (2, 1, 1)  # fits once padded to 5x5
    with pytest.raises(ShapeError, match="padded to 4x4"):
        padded.infer({"in": (1, 2, 2)})
    same = build_layer("Conv2D", {"filters": 2, "kernel_size": 5, "padding": "same"},
                       {"in": (1, 5, 5)})
    assert same.infer({"in": (1, 2, 2)}) == (2, 2, 2)  # 'same' always fits


def test_conv2d_shape_error_in_graph_analysis():
    g = Graph()
    g.add_node(Node("x", "Input", {"shape": [64]}))
    g.add_node(Node("conv", "Conv2D", {"filters": 8, "kernel_size": 3}))
    g.connect("x", "conv")
    problems = [p for p in analyze(g).problems if isinstance(p, ShapeError)]
    assert len(problems) == 1
    assert problems[0].node == "conv" and problems[0].port == "in"


def test_cnn_shapes_in_graph_analysis():
    g = Graph()
    chain = [("x", "Input", {"shape": [1, 28, 28]}),
             ("c1", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}),
             ("p1", "MaxPool2D", {}),
             ("c2", "Conv2D", {"filters": 16, "kernel_size": 3, "stride": 2}),
             ("p2", "AvgPool2D", {"pool_size": 3, "stride": 1, "padding": 1}),
             ("gap", "GlobalAvgPool2D", {}),
             ("r", "Reshape", {"shape": [4, -1]}),
             ("f", "Flatten", {})]
    for nid, t, p in chain:
        g.add_node(Node(nid, t, p))
    for (a, *_), (b, *_) in zip(chain, chain[1:], strict=False):
        g.connect(a, b)
    a = analyze(g)
    assert a.ok, a.problems
    assert a.shapes == {"x": (1, 28, 28), "c1": (8, 28, 28), "p1": (8, 14, 14),
                        "c2": (16, 6, 6), "p2": (16, 6, 6), "gap": (16,), "r": (4, 4),
                        "f": (16,)}


# ---- im2col / col2im ---------------------------------------------------------------------
@pytest.mark.parametrize("stride,pads", [((1, 1), ((0, 0), (0, 0))),
                                         ((2, 3), ((1, 2), (0, 1)))])
def test_im2col_entries_and_col2im_is_its_adjoint(xp, stride, pads):
    x = rand((2, 3, 7, 8))
    kh, kw = 3, 2
    cols, (ho, wo) = KC.im2col(xp.asarray(x), kh, kw, stride, pads)
    cols = to_host(cols)
    assert cols.shape == (3 * kh * kw, 2 * ho * wo)
    xpad = np.pad(x, ((0, 0), (0, 0)) + pads)
    c6 = cols.reshape(3, kh, kw, 2, ho, wo)
    for c, i, j, n, y, x_ in [(0, 0, 0, 0, 0, 0), (2, 2, 1, 1, ho - 1, wo - 1),
                              (1, 1, 0, 1, 1, 2)]:
        assert c6[c, i, j, n, y, x_] == xpad[n, c, y * stride[0] + i, x_ * stride[1] + j]
    # <im2col(x), C> == <x, col2im(C)> for every x and C.
    C = rand(cols.shape, seed=3)
    back = to_host(KC.col2im(xp.asarray(C), x.shape, kh, kw, stride, pads))
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * C), np.sum(x * back), rtol=1e-12)


# ---- MaxPool2D / AvgPool2D ---------------------------------------------------------------
# (id, per-sample input shape, our params, torch kernel_size, stride, padding)
POOL_CASES = [
    ("default-2", (3, 6, 8), {}, 2, 2, 0),
    ("odd-input-floor", (2, 7, 5), {"pool_size": 2}, 2, 2, 0),
    ("3-stride2-pad1", (2, 7, 6), {"pool_size": 3, "stride": 2, "padding": 1}, 3, 2, 1),
    ("overlap-3-stride1", (2, 5, 6), {"pool_size": 3, "stride": 1}, 3, 1, 0),
    ("2x3-stride1x2-pad1x0", (2, 6, 7),
     {"pool_size": [2, 3], "stride": [1, 2], "padding": [1, 0]}, (2, 3), (1, 2), (1, 0)),
]
POOL_IDS = [c[0] for c in POOL_CASES]
TORCH_POOL = {"MaxPool2D": "max_pool2d", "AvgPool2D": "avg_pool2d"}  # in torch.nn.functional


@pytest.mark.parametrize("kind", ["MaxPool2D", "AvgPool2D"])
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_pool_gradcheck(xp, kind, case):
    _, in_shape, params, *_ = case
    layer = build_layer(kind, params, {"in": in_shape}, xp=xp)
    gradcheck(layer, [rand((2,) + in_shape, seed=4)], max_elements=400)


@pytest.mark.parametrize("kind", ["MaxPool2D", "AvgPool2D"])
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_pool_matches_torch(xp, torch, kind, case, dtype, tol):
    _, in_shape, params, k, s, p = case
    layer = build_layer(kind, params, {"in": in_shape}, dtype=dtype, xp=xp)
    x = rand((3,) + in_shape, seed=1, dtype=dtype)
    gout = rand((3,) + layer.out_shape, seed=2, dtype=dtype)
    out, (gx,), _ = forward_backward(layer, [x], gout)
    pool = getattr(torch.nn.functional, TORCH_POOL[kind])
    t_out, (t_gx,) = torch_ref.run(lambda t: pool(t, k, s, p), [x], gout)
    assert out.dtype == gx.dtype == dtype
    np.testing.assert_allclose(out, t_out, rtol=0, atol=tol)
    np.testing.assert_allclose(gx, t_gx, rtol=0, atol=tol)


@pytest.mark.parametrize("params,k,s,p", [({}, 2, 2, 0), ({"pool_size": 3, "stride": 1}, 3, 1, 0),
                                          ({"pool_size": 2, "stride": 1, "padding": 1}, 2, 1, 1)])
def test_maxpool_ties_route_gradient_like_torch(xp, torch, params, k, s, p):
    F = torch.nn.functional
    x = np.random.default_rng(0).integers(0, 2, size=(2, 2, 6, 6)).astype(np.float64)
    layer = build_layer("MaxPool2D", params, {"in": (2, 6, 6)}, xp=xp)
    gout = rand((2,) + layer.out_shape, seed=3)
    out, (gx,), _ = forward_backward(layer, [x], gout)
    t_out, (t_gx,) = torch_ref.run(lambda t: F.max_pool2d(t, k, s, p), [x], gout)
    np.testing.assert_array_equal(out, t_out)
    # Overlapping windows add in another order than torch: equal up to rounding.
    np.testing.assert_allclose(gx, t_gx, rtol=0, atol=1e-14)


def test_maxpool_tie_goes_to_first_maximum(xp):
    layer = build_layer("MaxPool2D", {}, {"in": (1, 2, 2)}, xp=xp)
    _, (gx,), _ = forward_backward(layer, [np.full((1, 1, 2, 2), 3.0)], np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(gx, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_maxpool_padding_is_minus_infinity(xp, torch):
    layer = build_layer("MaxPool2D", {"pool_size": 3, "stride": 2, "padding": 1},
                        {"in": (1, 5, 5)}, xp=xp)
    x = -1.0 - np.abs(rand((1, 1, 5, 5)))  # all negative: a zero pad would win
    out = forward(layer, [x])
    assert (out < 0).all()
    np.testing.assert_array_equal(
        out, torch_ref.array(torch.nn.functional.max_pool2d(torch_ref.tensor(x), 3, 2, 1)))


def test_maxpool_propagates_nan(xp):
    x = rand((1, 1, 4, 4))
    x[0, 0, 1, 2] = np.nan
    out = forward(build_layer("MaxPool2D", {}, {"in": (1, 4, 4)}, xp=xp), [x])
    assert np.isnan(out[0, 0, 0, 1]) and np.isfinite(np.delete(out.ravel(), 1)).all()


def test_avgpool_counts_padding_in_the_mean(xp):
    layer = build_layer("AvgPool2D", {"pool_size": 2, "stride": 1, "padding": 1},
                        {"in": (1, 2, 2)}, xp=xp)
    out = forward(layer, [np.ones((1, 1, 2, 2))])
    np.testing.assert_array_equal(out[0, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5],
                                              [0.25, 0.5, 0.25]])


def test_pool_stride_defaults_to_pool_size():
    layer = build_layer("MaxPool2D", {"pool_size": 3}, {"in": (4, 9, 10)})
    assert layer.out_shape == (4, 3, 3)
    layer = build_layer("AvgPool2D", {"pool_size": [2, 3], "stride": 1}, {"in": (4, 9, 10)})
    assert layer.out_shape == (4, 8, 8)


@pytest.mark.parametrize("kind", ["MaxPool2D", "AvgPool2D"])
def test_pool_shape_errors(kind):
    layer = build_layer(kind, {"pool_size": 3}, {"in": (1, 6, 6)}, node_id="pool")
    with pytest.raises(ShapeError) as e:
        layer.infer({"in": (8, 6)})
    assert e.value.node == "pool" and e.value.port == "in" and "[8, 6]" in str(e.value)
    with pytest.raises(ShapeError, match=r"\[1, 2, 6\]"):
        layer.infer({"in": (1, 2, 6)})  # 2 rows < 3-row window
    too_much = build_layer(kind, {"pool_size": 2}, {"in": (1, 6, 6)}, node_id="pool")
    too_much.params["padding"] = (2, 0)  # more than half the window: PyTorch refuses too
    with pytest.raises(ParamError) as e:
        too_much.infer({"in": (1, 6, 6)})
    assert e.value.node == "pool" and e.value.param == "padding"


# ---- GlobalAvgPool2D ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_global_avg_pool_matches_torch(xp, torch, dtype, tol):
    F = torch.nn.functional
    layer = build_layer("GlobalAvgPool2D", {}, {"in": (3, 5, 4)}, dtype=dtype, xp=xp)
    assert layer.out_shape == (3,)
    x, gout = rand((2, 3, 5, 4), 1, dtype), rand((2, 3), 2, dtype)
    out, (gx,), _ = forward_backward(layer, [x], gout)
    t_out, (t_gx,) = torch_ref.run(lambda t: F.adaptive_avg_pool2d(t, 1).flatten(1), [x], gout)
    assert out.dtype == gx.dtype == dtype
    np.testing.assert_allclose(out, t_out, rtol=0, atol=tol)
    np.testing.assert_allclose(gx, t_gx, rtol=0, atol=tol)
    gx[0, 0, 0, 0] += 1.0  # a writable array of its own, not a broadcast view
    assert gx[0, 0, 0, 1] != gx[0, 0, 0, 0]


def test_global_avg_pool_gradcheck_and_shape_error(xp):
    layer = build_layer("GlobalAvgPool2D", {}, {"in": (3, 5, 4)}, node_id="gap", xp=xp)
    gradcheck(layer, [rand((2, 3, 5, 4))], max_elements=200)
    with pytest.raises(ShapeError) as e:
        layer.infer({"in": (5,)})
    assert e.value.node == "gap" and e.value.port == "in" and "[5]" in str(e.value)


# ---- Flatten / Reshape -------------------------------------------------------------------
def test_flatten_matches_torch_and_gradcheck(xp, torch):
    layer = build_layer("Flatten", {}, {"in": (3, 4, 5)}, xp=xp)
    assert layer.out_shape == (60,)
    x, gout = rand((2, 3, 4, 5), 1, np.float32), rand((2, 60), 2, np.float32)
    out, (gx,), _ = forward_backward(layer, [x], gout)
    t_out, (t_gx,) = torch_ref.run(lambda t: torch.flatten(t, 1), [x], gout)
    assert out.dtype == gx.dtype == np.float32
    np.testing.assert_array_equal(out, t_out)
    np.testing.assert_array_equal(gx, t_gx)
    gradcheck(layer, [rand((2, 3, 2, 2))], max_elements=100)
    assert layer.infer({"in": (7,)}) == (7,)


@pytest.mark.parametrize("in_shape,target,expected", [
    ((12,), [3, -1], (3, 4)), ((2, 6), [4, 3], (4, 3)), ((784,), [1, 28, 28], (1, 28, 28)),
    ((2, 3, 4), [-1], (24,))])
def test_reshape_matches_torch(xp, torch, in_shape, target, expected):
    layer = build_layer("Reshape", {"shape": target}, {"in": in_shape}, xp=xp)
    assert layer.out_shape == expected
    x, gout = rand((3,) + in_shape, 1), rand((3,) + expected, 2)
    out, (gx,), _ = forward_backward(layer, [x], gout)
    t_out, (t_gx,) = torch_ref.run(lambda t: t.reshape((3,) + tuple(target)), [x], gout)
    np.testing.assert_array_equal(out, t_out)
    np.testing.assert_array_equal(gx, t_gx)


def test_reshape_gradcheck(xp):
    gradcheck(build_layer("Reshape", {"shape": [2, -1]}, {"in": (3, 2)}, xp=xp),
              [rand((2, 3, 2))])


@pytest.mark.parametrize("target", [[5, 2], [5, -1]])
def test_reshape_element_count_mismatch_names_both_shapes(target):
    layer = build_layer("Reshape", {"shape": [3, 4]}, {"in": (12,)}, node_id="rs")
    layer.params["shape"] = tuple(target)
    with pytest.raises(ShapeError) as e:
        layer.infer({"in": (12,)})
    msg = str(e.value)
    assert e.value.node == "rs" and e.value.port == "in"
    assert "[12]" in msg and f"[{target[0]}, {target[1]}]" in msg and "12 elements" in msg


def test_conv2d_skips_input_gradient_when_not_needed(xp):
    layer = build_layer("Conv2D", {"filters": 2, "kernel_size": 3}, {"in": (1, 5, 5)}, xp=xp)
    layer.needs_input_grad = [False]
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5))
    _, (gx,), grads = forward_backward(layer, [x])
    assert gx is None and grads["W"].shape == (2, 1, 3, 3)


@pytest.mark.parametrize("pool,stride", [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((2, 3), (1, 2))])
def test_maxpool_fast_path_matches_torch_argmax_on_ties_and_nan(xp, torch, pool, stride):
    """The max-chain + index formula path and the NaN path give torch's values and indices."""
    from kernels.pool import maxpool2d_forward

    F = torch.nn.functional
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (2, 3, 7, 8)).astype(np.float32)  # many ties
    for with_nan in (False, True):
        if with_nan:
            x[0, 1, 2, 3] = np.nan
            x[1, 2, 4, 4] = np.nan
        y, idx = maxpool2d_forward(xp.asarray(x), pool, stride, ((0, 0), (0, 0)))
        y, idx = to_host(y), to_host(idx)
        ty, tidx = F.max_pool2d(torch_ref.tensor(x), pool, stride, return_indices=True)
        np.testing.assert_array_equal(y, torch_ref.array(ty))
        # torch gives flat indices into H*W; ours is the offset inside the window
        ho, wo = y.shape[2:]
        oy = np.arange(ho)[:, None] * stride[0] + idx // pool[1]
        ox = np.arange(wo)[None, :] * stride[1] + idx % pool[1]
        np.testing.assert_array_equal(oy * x.shape[3] + ox, torch_ref.array(tidx))
