"""Losses: float64 gradient checks, values and gradients against PyTorch, numerical
stability, shape errors at inference and data errors at run time."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from core import catalogue
from core.errors import DataError, ShapeError
from tests import torch_ref
from tests.harness import build_layer, forward_backward, gradcheck

B, C, D, T = 6, 5, 4, 3

LOSSES = ("MSELoss", "CrossEntropyLoss", "BinaryCrossEntropyLoss", "HingeLoss", "TripletLoss")


def rng_for(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def soft_labels(rng, shape) -> np.ndarray:
    w = rng.random(shape) + 0.05
    return w / w.sum(axis=-1, keepdims=True)


def binary_labels(rng, shape, signed: bool) -> np.ndarray:
    y = rng.integers(0, 2, shape)
    return 2 * y - 1 if signed else y


def away_from_hinge_kink(x: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
    """Move scores at least 1e-2 away from margin - y x == 0, where the loss has no slope."""
    z = margin - y * x
    near = np.abs(z) < 1e-2
    return np.where(near, x - 0.1 * y, x)


# ---- cases shared by the gradient checks and the PyTorch comparisons -------------------------

@dataclass
class Case:
    name: str
    type_name: str
    params: dict
    in_shapes: dict
    make: Callable[[np.random.Generator], list]  # float64 / int64 inputs with the batch axis
    diff: tuple[int, ...]  # inputs with a gradient
    torch_loss: Callable | None = None  # (list of torch tensors) -> scalar tensor


def _torch_hinge_binary(margin):
    def f(ts):
        import torch
        x, t = ts
        t = t.reshape(x.shape)
        y = torch.where(t == 0, -torch.ones_like(t), t).to(x.dtype)
        return torch.clamp(margin - y * x, min=0).mean()
    return f


def _make_hinge_binary(pred_shape, target_shape, signed, margin=1.0, float_labels=False):
    def make(rng):
        x = rng.standard_normal((B, *pred_shape))
        t = binary_labels(rng, (B, *target_shape), signed)
        y = np.where(t == 0, -1, t).reshape(x.shape)
        x = away_from_hinge_kink(x, y, margin)
        return [x, t.astype(np.float64) if float_labels else t]
    return make


def _make_multi_margin(margin):
    def make(rng):
        x = rng.standard_normal((B, C))
        t = rng.integers(0, C, B)
        xy = np.take_along_axis(x, t[:, None], axis=1)
        z = margin - xy + x
        # keep every term away from its kink at z == 0 (the true class is not a term)
        bump = (np.abs(z) < 1e-2) & (np.arange(C) != t[:, None])
        return [x + 0.05 * bump, t]
    return make


def _make_triplet(rng, shape=(B, D)):
    a = rng.standard_normal(shape)
    p = a + 0.5 * rng.standard_normal(shape)
    n = a + 0.8 * rng.standard_normal(shape)
    return [a, p, n]


def _cases() -> list[Case]:
    def F():
        import torch.nn.functional as functional
        return functional

    return [
        Case("mse", "MSELoss", {}, {"pred": [D], "target": [D]},
             lambda r: [r.standard_normal((B, D)), r.standard_normal((B, D))], (0, 1),
             lambda ts: F().mse_loss(ts[0], ts[1])),
        Case("mse-int-target", "MSELoss", {}, {"pred": [D], "target": [D]},
             lambda r: [r.standard_normal((B, D)), r.integers(-2, 3, (B, D))], (0,),
             lambda ts: F().mse_loss(ts[0], ts[1].to(ts[0].dtype))),
        Case("ce-index", "CrossEntropyLoss", {}, {"pred": [C], "target": []},
             lambda r: [3 * r.standard_normal((B, C)), r.integers(0, C, B)], (0,),
             lambda ts: F().cross_entropy(ts[0], ts[1])),
        Case("ce-index-seq", "CrossEntropyLoss", {}, {"pred": [T, C], "target": [T]},
             lambda r: [r.standard_normal((B, T, C)), r.integers(0, C, (B, T))], (0,),
             lambda ts: F().cross_entropy(ts[0].permute(0, 2, 1), ts[1])),
        Case("ce-prob", "CrossEntropyLoss", {}, {"pred": [C], "target": [C]},
             lambda r: [2 * r.standard_normal((B, C)), soft_labels(r, (B, C))], (0, 1),
             lambda ts: F().cross_entropy(ts[0], ts[1])),
        Case("ce-prob-seq", "CrossEntropyLoss", {}, {"pred": [T, C], "target": [T, C]},
             lambda r: [r.standard_normal((B, T, C)), soft_labels(r, (B, T, C))], (0, 1),
             lambda ts: F().cross_entropy(ts[0].permute(0, 2, 1), ts[1].permute(0, 2, 1))),
        Case("bce", "BinaryCrossEntropyLoss", {}, {"pred": [D], "target": [D]},
             lambda r: [3 * r.standard_normal((B, D)), r.integers(0, 2, (B, D)).astype(float)],
             (0, 1), lambda ts: F().binary_cross_entropy_with_logits(ts[0], ts[1])),
        Case("bce-soft", "BinaryCrossEntropyLoss", {}, {"pred": [D], "target": [D]},
             lambda r: [r.standard_normal((B, D)), r.random((B, D))], (0, 1),
             lambda ts: F().binary_cross_entropy_with_logits(ts[0], ts[1])),
        Case("bce-int-target", "BinaryCrossEntropyLoss", {}, {"pred": [1], "target": []},
             lambda r: [r.standard_normal((B, 1)), r.integers(0, 2, B)], (0,),
             lambda ts: F().binary_cross_entropy_with_logits(
                 ts[0], ts[1].to(ts[0].dtype).reshape(-1, 1))),
        Case("hinge-01", "HingeLoss", {}, {"pred": [1], "target": [1]},
             _make_hinge_binary((1,), (1,), signed=False), (0,), _torch_hinge_binary(1.0)),
        Case("hinge-pm1-scalar", "HingeLoss", {"margin": 0.5}, {"pred": [], "target": []},
             _make_hinge_binary((), (), signed=True, margin=0.5), (0,),
             _torch_hinge_binary(0.5)),
        Case("hinge-float-labels", "HingeLoss", {}, {"pred": [1], "target": []},
             _make_hinge_binary((1,), (), signed=True, float_labels=True), (0,),
             _torch_hinge_binary(1.0)),
        Case("hinge-multi", "HingeLoss", {}, {"pred": [C], "target": []},
             _make_multi_margin(1.0), (0,),
             lambda ts: F().multi_margin_loss(ts[0], ts[1], p=1, margin=1.0)),
        Case("hinge-multi-margin", "HingeLoss", {"margin": 0.3}, {"pred": [C], "target": []},
             _make_multi_margin(0.3), (0,),
             lambda ts: F().multi_margin_loss(ts[0], ts[1], p=1, margin=0.3)),
        Case("triplet", "TripletLoss", {}, {"anchor": [D], "positive": [D], "negative": [D]},
             _make_triplet, (0, 1, 2),
             lambda ts: F().triplet_margin_loss(*ts, margin=1.0, p=2, eps=1e-6)),
        Case("triplet-margin", "TripletLoss", {"margin": 0.25},
             {"anchor": [D], "positive": [D], "negative": [D]},
             _make_triplet, (0, 1, 2),
             lambda ts: F().triplet_margin_loss(*ts, margin=0.25, p=2, eps=1e-6)),
    ]


CASES = _cases()
CASE_IDS = [c.name for c in CASES]


def build(case: Case, dtype=np.float64, xp=np):
    return build_layer(case.type_name, case.params, case.in_shapes, dtype=dtype,
                       node_id="loss1", xp=xp)


# ---- catalogue -------------------------------------------------------------------------------

@pytest.mark.parametrize("type_name", LOSSES)
def test_loss_types_are_registered_as_losses(type_name):
    cls = catalogue.get(type_name)
    assert cls is not None
    assert cls.is_loss and cls.category == "Losses"
    assert cls.doc.strip()
    assert not cls.param_names


def test_ports():
    assert catalogue.get("CrossEntropyLoss").input_ports({}) == ("pred", "target")
    assert catalogue.get("TripletLoss").input_ports({"margin": 1.0}) == (
        "anchor", "positive", "negative")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_output_is_a_0d_array_of_the_input_dtype(xp, case):
    for dtype in (np.float64, np.float32):
        inputs = [x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x
                  for x in case.make(rng_for(1))]
        out, gins, _ = forward_backward(build(case, dtype, xp), inputs, np.float64(1.0))
        assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == dtype
        assert len(gins) == len(inputs)
        for i, (x, g) in enumerate(zip(inputs, gins, strict=True)):
            if i in case.diff:
                assert g is not None and g.shape == x.shape and g.dtype == dtype, (i, g)
            else:
                assert g is None, f"input {i} ({x.dtype}) needs no gradient"


# ---- float64 finite differences --------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradcheck_float64(xp, case):
    inputs = case.make(rng_for(2))
    gradcheck(build(case, xp=xp), inputs, wrt=list(case.diff), rtol=1e-5, atol=1e-8)


def test_gradcheck_triplet_with_inactive_samples(xp):
    # Half the triplets already satisfy the margin (zero loss and gradient), half do not.
    rng = rng_for(3)
    a = rng.standard_normal((B, D))
    p = a + 0.1 * rng.standard_normal((B, D))
    n = a + 0.1 * rng.standard_normal((B, D))
    n[: B // 2] += 3.0
    layer = build_layer("TripletLoss", {"margin": 1.0},
                        {"anchor": [D], "positive": [D], "negative": [D]}, xp=xp)
    _, gins, _ = forward_backward(layer, [a, p, n])
    assert np.all(gins[0][: B // 2] == 0) and np.any(gins[0][B // 2:] != 0)
    gradcheck(layer, [a, p, n])


# ---- PyTorch ------------------------------------------------------------------------------

TOLERANCES = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


def torch_reference(case: Case, inputs: list, gout: float):
    """Loss value and input gradients from PyTorch in float64 on the same data (class
    indices as int64)."""
    inputs = [x if np.issubdtype(x.dtype, np.floating) else x.astype(np.int64) for x in inputs]
    loss, grads = torch_ref.run(lambda *ts: case.torch_loss(list(ts)), inputs, gout,
                                wrt=case.diff, dtype=np.float64)
    return float(loss), grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_torch(xp, torch, case, dtype):
    inputs = [x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x
              for x in case.make(rng_for(4))]
    gout = 0.75
    ref_loss, ref_grads = torch_reference(case, inputs, gout)
    out, gins, _ = forward_backward(build(case, dtype, xp), inputs, np.asarray(gout))
    tol = TOLERANCES[dtype]
    assert out.dtype == dtype
    np.testing.assert_allclose(float(out), ref_loss, **tol)
    for i in case.diff:
        assert gins[i].dtype == dtype
        np.testing.assert_allclose(gins[i], ref_grads[i], err_msg=f"input {i}", **tol)


def test_matches_torch_with_large_batch_float32(xp, torch):
    # float32 over a realistic batch: sums of many terms must not lose precision badly.
    case = next(c for c in CASES if c.name == "ce-index")
    rng = rng_for(5)
    x = (4 * rng.standard_normal((512, C))).astype(np.float32)
    t = rng.integers(0, C, 512)
    ref_loss, ref_grads = torch_reference(case, [x, t], 1.0)
    out, gins, _ = forward_backward(build(case, np.float32, xp), [x, t], 1.0)
    np.testing.assert_allclose(float(out), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(gins[0], ref_grads[0], rtol=1e-4, atol=1e-8)


# ---- semantics --------------------------------------------------------------------------

def test_ce_one_hot_probabilities_equal_indices(xp):
    rng = rng_for(6)
    x = rng.standard_normal((B, C))
    t = rng.integers(0, C, B)
    onehot = np.eye(C)[t]
    idx_layer = build_layer("CrossEntropyLoss", {}, {"pred": [C], "target": []}, xp=xp)
    prob_layer = build_layer("CrossEntropyLoss", {}, {"pred": [C], "target": [C]}, xp=xp)
    out_i, g_i, _ = forward_backward(idx_layer, [x, t])
    out_p, g_p, _ = forward_backward(prob_layer, [x, onehot])
    out_int, g_int, _ = forward_backward(prob_layer, [x, onehot.astype(np.int64)])
    np.testing.assert_allclose(out_p, out_i, rtol=1e-12)
    np.testing.assert_allclose(g_p[0], g_i[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out_int, out_i, rtol=1e-12)
    assert g_int[1] is None  # an integer one-hot target has no gradient
    # the gradient is (softmax - onehot) / B
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(g_i[0], (p - onehot) / B, rtol=1e-12, atol=1e-15)


def test_ce_accepts_whole_float_class_indices(xp):
    rng = rng_for(7)
    x = rng.standard_normal((B, C))
    t = rng.integers(0, C, B)
    layer = build_layer("CrossEntropyLoss", {}, {"pred": [C], "target": []}, xp=xp)
    out_int, _, _ = forward_backward(layer, [x, t])
    out_float, g_float, _ = forward_backward(layer, [x, t.astype(np.float32)])
    assert float(out_int) == float(out_float)
    assert g_float[1] is None


def test_hinge_labels_zero_and_minus_one_mean_the_same(xp):
    rng = rng_for(8)
    x = rng.standard_normal((B, 1))
    y01 = rng.integers(0, 2, (B, 1))
    layer = build_layer("HingeLoss", {}, {"pred": [1], "target": [1]}, xp=xp)
    out01, g01, _ = forward_backward(layer, [x, y01])
    outpm, gpm, _ = forward_backward(layer, [x, 2 * y01 - 1])
    assert float(out01) == float(outpm)
    np.testing.assert_array_equal(g01[0], gpm[0])
    ys = np.where(y01 == 0, -1, 1)
    np.testing.assert_allclose(out01, np.maximum(0, 1 - ys * x).mean(), rtol=1e-12)


def test_losses_add_gout_scaling_exactly(xp):
    # d(total)/d(loss) is applied once: doubling gout doubles every gradient.
    case = next(c for c in CASES if c.name == "triplet")
    inputs = case.make(rng_for(9))
    layer = build(case, xp=xp)
    _, g1, _ = forward_backward(layer, inputs, 1.0)
    _, g2, _ = forward_backward(layer, inputs, np.asarray(2.0))
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-14)


# ---- stability ---------------------------------------------------------------------------

def _no_warnings_forward_backward(layer, inputs):
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        return forward_backward(layer, inputs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_ce_huge_logits_are_stable(xp, dtype):
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype=dtype)
    t = np.array([1, 1])
    layer = build_layer("CrossEntropyLoss", {}, {"pred": [3], "target": []}, dtype=dtype,
                        xp=xp)
    out, gins, _ = _no_warnings_forward_backward(layer, [x, t])
    assert np.isfinite(out) and np.all(np.isfinite(gins[0]))
    # sample 0: -log_softmax = 2000; sample 1: log(1 + e^-1) ~ 0.3133
    expected = (2000.0 + np.log1p(np.exp(-1.0))) / 2
    np.testing.assert_allclose(float(out), expected, rtol=1e-6)
    np.testing.assert_allclose(gins[0][0], [0.5, -0.5, 0.0], atol=1e-7)

    soft = np.array([[0.0, 1.0, 0.0], [0.5, 0.25, 0.25]], dtype=dtype)
    layer = build_layer("CrossEntropyLoss", {}, {"pred": [3], "target": [3]}, dtype=dtype,
                        xp=xp)
    out, gins, _ = _no_warnings_forward_backward(layer, [x, soft])
    assert np.isfinite(out) and all(np.all(np.isfinite(g)) for g in gins)
    torch = torch_ref.need_torch()  # skips here, after the checks above, without torch
    ref = torch.nn.functional.cross_entropy(torch_ref.tensor(x, dtype=np.float64),
                                            torch_ref.tensor(soft, dtype=np.float64))
    np.testing.assert_allclose(float(out), ref.item(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_bce_huge_logits_are_stable(xp, dtype):
    x = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]], dtype=dtype)
    t = np.array([[1.0], [0.0], [0.0], [1.0]], dtype=dtype)
    layer = build_layer("BinaryCrossEntropyLoss", {}, {"pred": [1], "target": [1]},
                        dtype=dtype, xp=xp)
    out, gins, _ = _no_warnings_forward_backward(layer, [x, t])
    assert np.isfinite(out) and all(np.all(np.isfinite(g)) for g in gins)
    np.testing.assert_allclose(float(out), 2000.0 / 4, rtol=1e-6)
    np.testing.assert_allclose(gins[0][:, 0], [0.0, 0.0, 0.25, -0.25], atol=1e-7)


def test_hinge_and_triplet_huge_values_are_finite(xp):
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]])
    layer = build_layer("HingeLoss", {}, {"pred": [3], "target": []}, xp=xp)
    out, gins, _ = _no_warnings_forward_backward(layer, [x, np.array([1, 0])])
    assert np.isfinite(out) and np.all(np.isfinite(gins[0]))
    # x[y] = -1000 in both samples. Sample 0 (y=1): (1 + 1000 + 1000) + (1 + 1000 + 0);
    # sample 1 (y=0): (1 + 1000 + 1000) + (1 + 1000 + 999); each / C, then the batch mean.
    np.testing.assert_allclose(float(out), ((2001 + 1001) + (2001 + 2000)) / 3 / 2)
    a = np.full((2, D), 1e3)
    layer = build_layer("TripletLoss", {}, {"anchor": [D], "positive": [D], "negative": [D]},
                        xp=xp)
    out, gins, _ = _no_warnings_forward_backward(layer, [a, a.copy(), -a])
    assert np.isfinite(out) and all(np.all(np.isfinite(g)) for g in gins)


def test_triplet_identical_anchor_and_positive_has_finite_gradient(xp):
    # ||a - p + eps|| is then sqrt(D) * eps, still positive: the gradient stays finite.
    rng = rng_for(10)
    a = rng.standard_normal((B, D))
    n = a + 0.01 * rng.standard_normal((B, D))
    layer = build_layer("TripletLoss", {}, {"anchor": [D], "positive": [D], "negative": [D]},
                        xp=xp)
    out, gins, _ = _no_warnings_forward_backward(layer, [a, a.copy(), n])
    assert float(out) > 0 and all(np.all(np.isfinite(g)) for g in gins)


# ---- shape errors ------------------------------------------------------------------------

@pytest.mark.parametrize("type_name, params, shapes, port, words", [
    ("MSELoss", {}, {"pred": [4], "target": [3]}, "target", ["[4]", "[3]"]),
    ("CrossEntropyLoss", {}, {"pred": [5], "target": [4]}, "target", ["[]", "[5]", "[4]"]),
    ("CrossEntropyLoss", {}, {"pred": [3, 5], "target": [5]}, "target",
     ["[3]", "[3, 5]", "found [5]"]),
    ("CrossEntropyLoss", {}, {"pred": [], "target": []}, "pred", ["class axis"]),
    ("BinaryCrossEntropyLoss", {}, {"pred": [4], "target": [1]}, "target", ["[4]", "[1]"]),
    ("HingeLoss", {}, {"pred": [1], "target": [2]}, "target", ["[2]"]),
    ("HingeLoss", {}, {"pred": [5], "target": [5]}, "target", ["class index", "[5]"]),
    ("HingeLoss", {}, {"pred": [2, 5], "target": []}, "pred", ["[C]", "[2, 5]"]),
    ("TripletLoss", {}, {"anchor": [4], "positive": [4], "negative": [3]}, "negative",
     ["'anchor' [4]", "found [3]"]),
    ("TripletLoss", {}, {"anchor": [4], "positive": [5], "negative": [4]}, "positive",
     ["[4]", "[5]"]),
    ("TripletLoss", {}, {"anchor": [], "positive": [], "negative": []}, "anchor",
     ["feature axis"]),
])
def test_shape_errors_name_the_port(type_name, params, shapes, port, words):
    with pytest.raises(ShapeError) as info:
        build_layer(type_name, params, shapes, node_id="lossX")
    err = info.value
    assert err.node == "lossX" and err.port == port
    for w in words:
        assert w in err.message, (w, err.message)


def test_shapes_that_fit_and_unknown_shapes_infer_a_scalar():
    cls = catalogue.get("CrossEntropyLoss")
    layer = cls("n", {})
    assert layer.infer({"pred": (5,), "target": ()}) == ()
    assert layer.infer({"pred": (5,), "target": (5,)}) == ()
    assert layer.infer({"pred": None, "target": ()}) == ()
    hinge = catalogue.get("HingeLoss")("h", {"margin": 1.0})
    for p, t in [((), ()), ((1,), ()), ((), (1,)), ((1,), (1,)), ((7,), ())]:
        assert hinge.infer({"pred": p, "target": t}) == ()
    bce = catalogue.get("BinaryCrossEntropyLoss")("b", {})
    assert bce.infer({"pred": (1,), "target": ()}) == ()
    triplet = catalogue.get("TripletLoss")("t", {"margin": 1.0})
    assert triplet.infer({"anchor": None, "positive": (4,), "negative": (4,)}) == ()
    with pytest.raises(ShapeError) as info:
        triplet.infer({"anchor": None, "positive": (4,), "negative": (3,)})
    assert info.value.port == "negative"


def test_negative_margin_is_a_param_error():
    from core.params import resolve_params
    for name in ("HingeLoss", "TripletLoss"):
        _, problems = resolve_params(catalogue.get(name).all_params_spec(), {"margin": -1},
                                     "n1")
        assert problems and problems[0].param == "margin"


# ---- data errors -------------------------------------------------------------------------

@pytest.mark.parametrize("type_name, bad", [
    ("CrossEntropyLoss", 5), ("CrossEntropyLoss", -1), ("CrossEntropyLoss", 1.5),
    ("HingeLoss", 5), ("HingeLoss", -3),
])
def test_out_of_range_class_index_is_a_data_error(xp, type_name, bad):
    layer = build_layer(type_name, {}, {"pred": [C], "target": []}, node_id="ce7", xp=xp)
    x = rng_for(11).standard_normal((B, C))
    t = np.array([0, 1, 2, 3, 4, 0], dtype=np.float64 if isinstance(bad, float) else np.int64)
    t[3] = bad
    with pytest.raises(DataError) as info:
        forward_backward(layer, [x, t])
    err = info.value
    assert err.node == "ce7" and err.port == "target"
    assert "0 to 4" in err.message and repr(bad) in err.message
    assert "ce7" in str(err)


def test_binary_hinge_label_outside_0_1_is_a_data_error(xp):
    layer = build_layer("HingeLoss", {}, {"pred": [1], "target": []}, node_id="h2", xp=xp)
    with pytest.raises(DataError) as info:
        forward_backward(layer, [np.zeros((3, 1)), np.array([0, 2, 1])])
    assert info.value.node == "h2" and "0/1 or -1/+1" in info.value.message


def test_class_index_of_a_non_integer_dtype_is_a_data_error(xp):
    layer = build_layer("CrossEntropyLoss", {}, {"pred": [C], "target": []}, node_id="c",
                        xp=xp)
    with pytest.raises(DataError) as info:
        forward_backward(layer, [np.zeros((2, C)), np.array([True, False])])
    assert info.value.node == "c" and "integer" in info.value.message
