"""Activations, Dropout, BatchNorm and the merge layers: gradients against finite differences,
forward and backward against PyTorch, numerical stability, and shape errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from core import catalogue
from core.errors import DataError, ShapeError
from core.graph import Graph, Node
from core.params import resolve_params
from core.validate import analyze
from kernels.backend import to_host
from tests import torch_ref
from tests.harness import assign, build_layer, context, forward, forward_backward, gradcheck


def away_from_zero(rng, shape, lo=0.1):
    """Random values with |x| >= lo, so kinks at 0 stay outside the finite-difference step."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < lo, np.sign(x + 1e-12) * lo + x, x)


def raise_on_float_trouble():
    """Overflow, division by zero and invalid operations raise; so do RuntimeWarnings.

    Underflow is left alone on purpose: exp(-1000) = 0 is the correct result of a stable
    formula (PyTorch gives the same zeros), not a sign of trouble.
    """
    return np.errstate(over="raise", divide="raise", invalid="raise")


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------

ACTIVATIONS = [
    ("LeakyReLU", {}),
    ("LeakyReLU", {"negative_slope": 0.2}),
    ("ELU", {}),
    ("ELU", {"alpha": 0.5}),
    ("Sigmoid", {}),
    ("Tanh", {}),
    ("Softmax", {}),
    ("Softmax", {"axis": 0}),
    ("Softmax", {"axis": -2}),
]


def torch_activation(torch, type_name, params, x):
    F = torch.nn.functional
    if type_name == "LeakyReLU":
        return F.leaky_relu(x, params.get("negative_slope", 0.01))
    if type_name == "ELU":
        return F.elu(x, params.get("alpha", 1.0))
    if type_name == "Sigmoid":
        return torch.sigmoid(x)
    if type_name == "Tanh":
        return torch.tanh(x)
    if type_name == "Softmax":
        axis = params.get("axis", -1)
        return F.softmax(x, dim=axis + 1 if axis >= 0 else axis)  # per-sample axis
    raise AssertionError(type_name)


@pytest.mark.parametrize("type_name,params", ACTIVATIONS)
def test_activation_gradcheck(xp, type_name, params):
    rng = np.random.default_rng(0)
    layer = build_layer(type_name, params, {"in": (3, 4)}, xp=xp)
    gradcheck(layer, [away_from_zero(rng, (2, 3, 4))])


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("type_name,params", ACTIVATIONS)
def test_activation_matches_torch(xp, torch, type_name, params, dtype, rtol):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5, 3, 4)) * 4).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    layer = build_layer(type_name, params, {"in": (3, 4)}, dtype=dtype, xp=xp)
    out, (gx,), _ = forward_backward(layer, [x], g)
    assert out.dtype == dtype and gx.dtype == dtype  # float32 stays float32
    t_out, (t_gx,) = torch_ref.run(
        lambda t: torch_activation(torch, type_name, params, t), [x], g)
    atol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(out, t_out, rtol=rtol, atol=atol)
    np.testing.assert_allclose(gx, t_gx, rtol=rtol * 10, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_stable_at_large_inputs(xp, torch, dtype):
    big = np.array([[-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0]], dtype=dtype)
    for type_name, params in ACTIVATIONS:
        if type_name == "Softmax" and params.get("axis", -1) != -1:
            continue
        layer = build_layer(type_name, params, {"in": (big.shape[1],)}, dtype=dtype, xp=xp)
        with warnings.catch_warnings(), raise_on_float_trouble():
            warnings.simplefilter("error")
            out, (gx,), _ = forward_backward(layer, [big], np.ones_like(big))
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(gx)), type_name
        assert out.dtype == dtype, type_name
        t_out, (t_gx,) = torch_ref.run(
            lambda t, n=type_name, p=params: torch_activation(torch, n, p, t), [big])
        np.testing.assert_allclose(out, t_out, rtol=1e-6, atol=1e-30, err_msg=type_name)
        np.testing.assert_allclose(gx, t_gx, rtol=1e-5, atol=1e-30, err_msg=type_name)


def test_sigmoid_saturates_exactly_and_keeps_small_tails(xp):
    layer = build_layer("Sigmoid", {}, {"in": (4,)}, xp=xp)
    x = np.array([[-1000.0, -30.0, 30.0, 1000.0]])
    with raise_on_float_trouble():
        y = forward(layer, [x])
    assert y[0, 0] == 0.0 and y[0, 3] == 1.0
    # The negative tail is computed as e / (1 + e), not 1 - sigmoid(-x) (which would be 0).
    np.testing.assert_allclose(y[0, 1], np.exp(-30.0) / (1 + np.exp(-30.0)), rtol=1e-14)
    np.testing.assert_allclose(y[0, 1] + y[0, 2], 1.0, rtol=1e-15)


def test_softmax_is_shift_invariant_and_normalised(xp):
    rng = np.random.default_rng(2)
    layer = build_layer("Softmax", {"axis": 0}, {"in": (5, 3)}, xp=xp)
    x = rng.standard_normal((4, 5, 3))
    y = forward(layer, [x])
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-14)  # per-sample axis 0
    assert not np.allclose(y.sum(axis=2), 1.0)
    with raise_on_float_trouble():
        y_shifted = forward(layer, [x + 1000.0])
    np.testing.assert_allclose(y_shifted, y, rtol=1e-9)


@pytest.mark.parametrize("shape,axis", [((3, 4), 2), ((3, 4), -3), ((), -1), ((5,), 1)])
def test_softmax_axis_out_of_range_is_a_shape_error(shape, axis):
    cls = catalogue.get("Softmax")
    params, problems = resolve_params(cls.all_params_spec(), {"axis": axis}, "sm")
    assert not problems
    layer = cls("sm", params)
    with pytest.raises(ShapeError) as err:
        layer.infer({"in": shape})
    assert err.value.node == "sm" and err.value.port == "in"
    assert f"axis {axis}" in str(err.value)
    assert "[" + ", ".join(str(d) for d in shape) + "]" in str(err.value)


@pytest.mark.parametrize("shape,axis", [((3, 4), 1), ((3, 4), -2), ((5,), 0)])
def test_softmax_accepts_valid_axes(shape, axis):
    cls = catalogue.get("Softmax")
    layer = cls("sm", {"axis": axis})
    assert layer.infer({"in": shape}) == shape
    assert layer.infer({"in": None}) is None


def test_leaky_relu_and_elu_values(xp):
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    lrelu = build_layer("LeakyReLU", {"negative_slope": 0.1}, {"in": (5,)}, xp=xp)
    np.testing.assert_allclose(forward(lrelu, [x]), [[-0.2, -0.05, 0.0, 0.5, 2.0]])
    elu = build_layer("ELU", {"alpha": 2.0}, {"in": (5,)}, xp=xp)
    out, (gx,), _ = forward_backward(elu, [x])
    np.testing.assert_allclose(out, [[2 * np.expm1(-2.0), 2 * np.expm1(-0.5), 0.0, 0.5, 2.0]])
    # derivative alpha·exp(x) for x <= 0 (alpha at 0, as PyTorch), 1 above
    np.testing.assert_allclose(gx, [[2 * np.exp(-2.0), 2 * np.exp(-0.5), 2.0, 1.0, 1.0]])


def test_relu_of_infinities_is_finite_where_torch_is(xp):
    # ReLU(-inf) = 0 and ReLU(inf) = inf, as torch.relu; x * (x > 0) made -inf * 0 = NaN
    x = np.array([[-np.inf, -2.0, 0.0, 3.0, np.inf]], dtype=np.float32)
    relu = build_layer("ReLU", {}, {"in": (5,)}, xp=xp, dtype=np.float32)
    with raise_on_float_trouble():
        out, (gx,), _ = forward_backward(relu, [x])
    np.testing.assert_array_equal(out, [[0.0, 0.0, 0.0, 3.0, np.inf]])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(gx, [[0.0, 0.0, 0.0, 1.0, 1.0]])
    # NaN stays NaN (a NaN input must still be found by the non-finite check)
    assert np.isnan(forward(relu, [np.array([[np.nan] * 5], dtype=np.float32)])).all()


def test_relu_family_flags():
    # These decide He vs Glorot init of the layer that feeds them.
    assert catalogue.get("LeakyReLU").relu_family and catalogue.get("ELU").relu_family
    for name in ("Sigmoid", "Tanh", "Softmax"):
        assert not catalogue.get(name).relu_family, name


# ---------------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------------

def test_dropout_gradcheck_in_training(xp):
    rng = np.random.default_rng(3)
    layer = build_layer("Dropout", {"rate": 0.4}, {"in": (4, 5)}, xp=xp)
    x = rng.standard_normal((3, 4, 5))
    out = forward(layer, [x], train=True, seed=7)
    assert (out == 0).any() and (out != 0).any()  # the check covers dropped and kept values
    gradcheck(layer, [x], train=True, seed=7)


def test_dropout_is_identity_in_evaluation_and_at_rate_zero(xp):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 10))
    g = rng.standard_normal((8, 10))
    layer = build_layer("Dropout", {"rate": 0.5}, {"in": (10,)}, xp=xp)
    out, (gx,), _ = forward_backward(layer, [x], g, train=False)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(gx, g)
    zero = build_layer("Dropout", {"rate": 0.0}, {"in": (10,)}, xp=xp)
    out, (gx,), _ = forward_backward(zero, [x], g, train=True)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(gx, g)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_statistics_and_mask(xp, rate, dtype):
    n = 200_000
    x = np.full((4, n // 4), 3.0, dtype=dtype)
    layer = build_layer("Dropout", {"rate": rate}, {"in": (n // 4,)}, dtype=dtype, xp=xp)
    g = np.random.default_rng(5).standard_normal(x.shape).astype(dtype)
    out, (gx,), _ = forward_backward(layer, [x], g, train=True, seed=11)
    assert out.dtype == dtype and gx.dtype == dtype
    dropped = out == 0
    # Fraction dropped ~ rate (standard error < 0.0012 here), survivors scaled by 1/(1-rate).
    assert abs(dropped.mean() - rate) < 0.01
    np.testing.assert_allclose(out[~dropped], 3.0 / (1 - rate), rtol=1e-6)
    # Inverted dropout keeps the mean.
    assert abs(out.mean() - 3.0) < 0.05 * 3.0
    # Backward uses the same mask and scale.
    assert np.all(gx[dropped] == 0)
    np.testing.assert_allclose(gx[~dropped], g[~dropped] / (1 - rate), rtol=1e-6)


def test_dropout_masks_follow_the_generator(xp):
    x = np.ones((2, 1000))
    layer = build_layer("Dropout", {"rate": 0.5}, {"in": (1000,)}, xp=xp)
    a = forward(layer, [x], train=True, seed=1)
    b = forward(layer, [x], train=True, seed=1)
    c = forward(layer, [x], train=True, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # A second draw from one generator gives a new mask.
    ctx = context(train=True, seed=1, xp=xp)
    m1, _ = layer.forward(ctx, [xp.asarray(x)])
    m2, _ = layer.forward(ctx, [xp.asarray(x)])
    assert not np.array_equal(to_host(m1), to_host(m2))


def test_dropout_rate_must_be_below_one():
    spec = catalogue.get("Dropout").all_params_spec()
    for bad in (1.0, -0.1, 1.5):
        _, problems = resolve_params(spec, {"rate": bad}, "d")
        assert problems and problems[0].param == "rate", bad
    params, problems = resolve_params(spec, {"rate": 0.0}, "d")
    assert not problems and params["rate"] == 0.0


# ---------------------------------------------------------------------------------------------
# BatchNorm
# ---------------------------------------------------------------------------------------------

def randomise_bn(layer, rng):
    """Random gamma, beta and running statistics (the defaults hide mistakes)."""
    c = layer.P["gamma"].shape[0]
    assign(layer.P["gamma"], rng.uniform(0.5, 1.5, c))
    assign(layer.P["beta"], rng.standard_normal(c))
    assign(layer.B["running_mean"], rng.standard_normal(c))
    assign(layer.B["running_var"], rng.uniform(0.5, 2.0, c))


BN_CASES = [((3,), (5, 3)), ((2, 3, 3), (2, 2, 3, 3))]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape,xshape", BN_CASES)
def test_batchnorm_gradcheck(xp, shape, xshape, train):
    rng = np.random.default_rng(6)
    layer = build_layer("BatchNorm", {}, {"in": shape}, xp=xp)
    randomise_bn(layer, rng)
    x = rng.standard_normal(xshape) * 2 + 1
    gradcheck(layer, [x], train=train)


def test_batchnorm_params_and_buffers():
    layer = build_layer("BatchNorm", {}, {"in": (4, 5, 6)})
    assert layer.param_shapes() == {"gamma": (4,), "beta": (4,)}
    assert layer.buffer_shapes() == {"running_mean": (4,), "running_var": (4,)}
    np.testing.assert_array_equal(layer.P["gamma"], np.ones(4))
    np.testing.assert_array_equal(layer.P["beta"], np.zeros(4))
    np.testing.assert_array_equal(layer.B["running_mean"], np.zeros(4))
    np.testing.assert_array_equal(layer.B["running_var"], np.ones(4))
    assert layer.param_count() == 8
    assert set(catalogue.get("BatchNorm").all_params_spec()) == {"momentum", "eps",
                                                                  "shared_with"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("params", [{}, {"momentum": 0.3, "eps": 1e-3}])
@pytest.mark.parametrize("shape,xshape", [((4,), (6, 4)), ((3, 4, 5), (4, 3, 4, 5))])
def test_batchnorm_matches_torch(xp, torch, shape, xshape, params, dtype):
    rng = np.random.default_rng(7)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == np.float64 else {"rtol": 1e-4, "atol": 1e-5}
    layer = build_layer("BatchNorm", params, {"in": shape}, dtype=dtype, xp=xp)
    randomise_bn(layer, rng)
    cls = torch.nn.BatchNorm1d if len(shape) == 1 else torch.nn.BatchNorm2d
    bn = cls(shape[0], momentum=params.get("momentum", 0.1), eps=params.get("eps", 1e-5),
             dtype=tdtype)
    torch_ref.load(bn, layer)  # gamma, beta and the running statistics
    rm, rv = layer.B["running_mean"], layer.B["running_var"]

    # A few training steps: outputs, then the running statistics they leave behind.
    bn.train()
    for step in range(3):
        x = (rng.standard_normal(xshape) * (step + 1) + step).astype(dtype)
        g = rng.standard_normal(xshape).astype(dtype)
        out, (gx,), grads = forward_backward(layer, [x], g, train=True)
        bn.zero_grad()
        t_out, (t_gx,) = torch_ref.run(bn, [x], g)
        t_g, t_b = torch_ref.layer_grads(bn, layer), torch_ref.from_module(bn, layer)
        np.testing.assert_allclose(out, t_out, **tol)
        np.testing.assert_allclose(gx, t_gx, **tol)
        np.testing.assert_allclose(grads["gamma"], t_g["gamma"], **tol)
        np.testing.assert_allclose(grads["beta"], t_g["beta"], **tol)
        np.testing.assert_allclose(to_host(layer.B["running_mean"]), t_b["running_mean"], **tol)
        np.testing.assert_allclose(to_host(layer.B["running_var"]), t_b["running_var"], **tol)
        assert out.dtype == dtype and gx.dtype == dtype and layer.B["running_var"].dtype == dtype
    # Updated in place: the network's buffer arrays are the ones that change.
    assert layer.B["running_mean"] is rm and layer.B["running_var"] is rv

    # Evaluation: running statistics, which stay put.
    bn.eval()
    x = (rng.standard_normal(xshape) + 0.5).astype(dtype)
    g = rng.standard_normal(xshape).astype(dtype)
    before = to_host(rv).copy()
    out, (gx,), grads = forward_backward(layer, [x], g, train=False)
    np.testing.assert_array_equal(to_host(layer.B["running_var"]), before)
    bn.zero_grad()
    t_out, (t_gx,) = torch_ref.run(bn, [x], g)
    t_g = torch_ref.layer_grads(bn, layer)
    np.testing.assert_allclose(out, t_out, **tol)
    np.testing.assert_allclose(gx, t_gx, **tol)
    np.testing.assert_allclose(grads["gamma"], t_g["gamma"], **tol)
    np.testing.assert_allclose(grads["beta"], t_g["beta"], **tol)


def test_batchnorm_normalises_per_channel(xp):
    rng = np.random.default_rng(8)
    layer = build_layer("BatchNorm", {}, {"in": (3, 4, 4)}, xp=xp)
    scale = np.array([1.0, 10.0, 100.0]).reshape(1, 3, 1, 1)
    x = rng.standard_normal((5, 3, 4, 4)) * scale + scale
    y = forward(layer, [x], train=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-3)  # eps shifts it a bit


@pytest.mark.parametrize("shape", [(), (3, 4), (1, 2, 3, 4)])
def test_batchnorm_rejects_other_ranks(shape):
    layer = catalogue.get("BatchNorm")("bn", {"momentum": 0.1, "eps": 1e-5})
    with pytest.raises(ShapeError) as err:
        layer.infer({"in": shape})
    assert err.value.node == "bn" and err.value.port == "in"
    assert "[C, H, W]" in str(err.value)


def test_batchnorm_training_needs_two_values_per_feature(xp):
    layer = build_layer("BatchNorm", {}, {"in": (3,)}, xp=xp)
    x = np.ones((1, 3))
    with pytest.raises(DataError) as err:
        forward(layer, [x], train=True)
    assert err.value.node == "n"
    np.testing.assert_array_equal(to_host(layer.B["running_var"]), np.ones(3))  # not touched
    np.testing.assert_allclose(forward(layer, [x], train=False), x / np.sqrt(1 + 1e-5))
    # An image channel has H·W values even in a batch of one.
    img = build_layer("BatchNorm", {}, {"in": (2, 2, 2)}, xp=xp)
    assert np.isfinite(forward(img, [np.arange(8.0).reshape(1, 2, 2, 2)], train=True)).all()


# ---------------------------------------------------------------------------------------------
# Add, Multiply, Concat
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("type_name", ["Add", "Multiply"])
@pytest.mark.parametrize("n", [2, 3])
def test_elementwise_merge_gradcheck(xp, type_name, n):
    rng = np.random.default_rng(9)
    layer = build_layer(type_name, {"inputs": n}, {f"in{i}": (2, 3) for i in range(n)}, xp=xp)
    gradcheck(layer, [rng.standard_normal((2, 2, 3)) for _ in range(n)])


@pytest.mark.parametrize("axis", [-1, 0, 1, -2])
@pytest.mark.parametrize("n", [2, 3])
def test_concat_gradcheck(xp, axis, n):
    rng = np.random.default_rng(10)
    a = axis % 2
    shapes = [tuple(2 + i if d == a else 3 for d in range(2)) for i in range(n)]
    layer = build_layer("Concat", {"inputs": n, "axis": axis},
                        {f"in{i}": s for i, s in enumerate(shapes)}, xp=xp)
    gradcheck(layer, [rng.standard_normal((2,) + s) for s in shapes])


@pytest.mark.parametrize("n", [2, 3])
def test_merges_match_torch(xp, torch, n):
    rng = np.random.default_rng(11)
    xs = [rng.standard_normal((4, 3, 5)) for _ in range(n)]
    xs[0][0, 0, :2] = 0.0  # products with zeros must not divide by them
    g = rng.standard_normal((4, 3, 5))
    for type_name, params, fn in [
        ("Add", {}, lambda ts: sum(ts[1:], ts[0])),
        ("Multiply", {}, lambda ts: torch.stack(ts).prod(dim=0)),
        ("Concat", {"axis": 0}, lambda ts: torch.cat(ts, dim=1)),
        ("Concat", {"axis": -1}, lambda ts: torch.cat(ts, dim=-1)),
    ]:
        layer = build_layer(type_name, {"inputs": n, **params},
                            {f"in{i}": (3, 5) for i in range(n)}, xp=xp)
        gt = g if type_name != "Concat" else (
            rng.standard_normal((4, 3 * n, 5)) if params["axis"] == 0
            else rng.standard_normal((4, 3, 5 * n)))
        out, gins, _ = forward_backward(layer, xs, gt)
        t_out, t_gins = torch_ref.run(lambda *ts, fn=fn: fn(list(ts)), xs, gt)
        np.testing.assert_allclose(out, t_out, rtol=1e-12, err_msg=type_name)
        assert len(gins) == n
        for gi, t_gi in zip(gins, t_gins, strict=True):
            np.testing.assert_allclose(gi, t_gi, rtol=1e-12, err_msg=type_name)


def test_merge_ports_follow_inputs():
    for name in ("Add", "Multiply", "Concat"):
        cls = catalogue.get(name)
        assert cls.category == "Merge"
        assert cls.input_ports({"inputs": 3}) == ("in0", "in1", "in2")
        params, problems = resolve_params(cls.all_params_spec(), {}, "m")
        assert not problems and cls.input_ports(params) == ("in0", "in1")
        _, problems = resolve_params(cls.all_params_spec(), {"inputs": 1}, "m")
        assert problems and problems[0].param == "inputs"


@pytest.mark.parametrize("type_name", ["Add", "Multiply"])
def test_elementwise_merge_shape_mismatch_names_node_and_port(type_name):
    layer = catalogue.get(type_name)("merge1", {"inputs": 3})
    with pytest.raises(ShapeError) as err:
        layer.infer({"in0": (3, 4), "in1": (3, 4), "in2": (3, 5)})
    e = err.value
    assert e.node == "merge1" and e.port == "in2"
    assert "[3, 4]" in str(e) and "[3, 5]" in str(e) and "'in0'" in str(e)
    assert str(e).startswith("node 'merge1' port 'in2'")


@pytest.mark.parametrize("type_name", ["Add", "Multiply"])
def test_elementwise_merge_infers_from_known_inputs(type_name):
    layer = catalogue.get(type_name)("m", {"inputs": 3})
    assert layer.infer({"in0": None, "in1": (4,), "in2": None}) == (4,)
    assert layer.infer({"in0": (2, 2), "in1": None}) == (2, 2)  # in2 not connected yet
    assert layer.infer({"in0": None, "in1": None, "in2": None}) is None
    with pytest.raises(ShapeError) as err:  # known shapes are still checked
        layer.infer({"in0": None, "in1": (4,), "in2": (5,)})
    assert err.value.port == "in2" and "'in1'" in str(err.value)


def test_concat_infer():
    cls = catalogue.get("Concat")
    last = cls("c", {"inputs": 2, "axis": -1})
    first = cls("c", {"inputs": 2, "axis": 0})
    assert last.infer({"in0": (2, 3), "in1": (2, 5)}) == (2, 8)
    assert first.infer({"in0": (2, 3), "in1": (4, 3)}) == (6, 3)
    assert cls("c", {"inputs": 3, "axis": 1}).infer(
        {"in0": (1, 2, 3), "in1": (1, 4, 3), "in2": (1, 1, 3)}) == (1, 7, 3)
    # The size along the axis needs every input, but known ones are still checked.
    assert last.infer({"in0": (2, 3), "in1": None}) is None
    with pytest.raises(ShapeError) as err:
        cls("c", {"inputs": 3, "axis": -1}).infer({"in0": (2, 3), "in1": None, "in2": (4, 3)})
    assert err.value.port == "in2"


@pytest.mark.parametrize("params,shapes,port,words", [
    ({"axis": -1}, {"in0": (2, 3), "in1": (4, 3)}, "in1", "except on axis -1"),
    ({"axis": 0}, {"in0": (2, 3), "in1": (2, 4)}, "in1", "except on axis 0"),
    ({"axis": -1}, {"in0": (2, 3), "in1": (2, 3, 1)}, "in1", "expected 2 axes"),
    ({"axis": 2}, {"in0": (2, 3), "in1": (2, 3)}, "in0", "axis 2"),
    ({"axis": -1}, {"in0": (), "in1": ()}, "in0", "at least 1 axis"),
])
def test_concat_shape_errors(params, shapes, port, words):
    layer = catalogue.get("Concat")("cat", {"inputs": 2, **params})
    with pytest.raises(ShapeError) as err:
        layer.infer(shapes)
    assert err.value.node == "cat" and err.value.port == port
    assert words in str(err.value)


def test_concat_per_sample_axis_zero_is_array_axis_one(xp):
    layer = build_layer("Concat", {"axis": 0}, {"in0": (2, 3), "in1": (1, 3)}, xp=xp)
    a, b = np.ones((4, 2, 3)), np.zeros((4, 1, 3))
    out, (ga, gb), _ = forward_backward(layer, [a, b], np.arange(36.0).reshape(4, 3, 3))
    assert out.shape == (4, 3, 3)
    np.testing.assert_array_equal(out[:, :2], 1.0)
    np.testing.assert_array_equal(out[:, 2:], 0.0)
    assert ga.shape == (4, 2, 3) and gb.shape == (4, 1, 3)
    np.testing.assert_array_equal(gb[:, 0], np.arange(36.0).reshape(4, 3, 3)[:, 2])


# ---------------------------------------------------------------------------------------------
# Every layer here keeps float32 activations in float32
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("type_name,params,in_shapes", [
    *[(t, p, {"in": (3, 4)}) for t, p in ACTIVATIONS],
    ("Dropout", {"rate": 0.3}, {"in": (3, 4)}),
    ("BatchNorm", {}, {"in": (3, 2, 2)}),
    ("BatchNorm", {}, {"in": (4,)}),
    ("Add", {}, {"in0": (3, 4), "in1": (3, 4)}),
    ("Multiply", {"inputs": 3}, {"in0": (3, 4), "in1": (3, 4), "in2": (3, 4)}),
    ("Concat", {}, {"in0": (3, 4), "in1": (3, 2)}),
])
@pytest.mark.parametrize("train", [True, False])
def test_float32_stays_float32(xp, type_name, params, in_shapes, train):
    rng = np.random.default_rng(12)
    layer = build_layer(type_name, params, in_shapes, dtype=np.float32, xp=xp)
    xs = [rng.standard_normal((5,) + s).astype(np.float32) for s in in_shapes.values()]
    out, _ = layer.forward(context(train, 0, np.float32, xp), [xp.asarray(x) for x in xs])
    g = rng.standard_normal(out.shape).astype(np.float32)
    out, gins, grads = forward_backward(layer, xs, g, train=train)
    assert out.dtype == np.float32
    assert all(gi.dtype == np.float32 for gi in gins)
    assert all(v.dtype == np.float32 for v in grads.values())
    assert all(v.dtype == np.float32 for v in layer.B.values())


# ---------------------------------------------------------------------------------------------
# In graph analysis
# ---------------------------------------------------------------------------------------------

def test_add_shape_error_in_graph_analysis():
    g = Graph()
    g.add_node(Node("a", "Input", {"shape": [4]}))
    g.add_node(Node("b", "Input", {"shape": [5], "field": "x2"}))
    g.add_node(Node("sum", "Add", {}))
    g.connect("a", "sum", dst_port="in0")
    g.connect("b", "sum", dst_port="in1")
    problems = [p for p in analyze(g).problems if isinstance(p, ShapeError)]
    assert len(problems) == 1
    assert problems[0].node == "sum" and problems[0].port == "in1"
    assert "[4]" in str(problems[0]) and "[5]" in str(problems[0])


def test_add_through_a_delay_edge_takes_the_known_shape():
    # h_t = tanh(x_t + h_{t-1}): on the first pass the delayed input's shape is unknown.
    g = Graph()
    g.add_node(Node("x", "Input", {"shape": [6, 4], "sequence": True}))
    g.add_node(Node("sum", "Add", {}))
    g.add_node(Node("h", "Tanh", {}))
    g.connect("x", "sum", dst_port="in0")
    g.connect("h", "sum", dst_port="in1", delay=1)
    g.connect("sum", "h")
    a = analyze(g)
    assert not [p for p in a.problems if isinstance(p, ShapeError)], a.problems
    assert a.shapes["sum"] == (4,) and a.shapes["h"] == (4,)
