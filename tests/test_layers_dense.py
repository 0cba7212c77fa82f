"""Dense, ReLU and Identity: finite differences and PyTorch parity."""
import numpy as np
import pytest

from core.validate import analyze
from tests import torch_ref
from tests.graphs import build, edge, graph_dict, node
from tests.harness import build_layer, forward_backward, gradcheck


@pytest.mark.parametrize("in_shape", [(5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradcheck(xp, in_shape, bias):
    layer = build_layer("Dense", {"units": 3, "bias": bias}, {"in": in_shape}, xp=xp)
    x = np.random.default_rng(0).standard_normal((2,) + in_shape)
    gradcheck(layer, [x])


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_dense_matches_torch(xp, torch, dtype, tol):
    layer = build_layer("Dense", {"units": 6}, {"in": (3, 5)}, dtype=dtype, xp=xp)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    g = rng.standard_normal((4, 3, 6)).astype(dtype)
    out, (gx,), grads = forward_backward(layer, [x], g)
    assert out.dtype == dtype and gx.dtype == dtype and grads["W"].dtype == dtype
    lin = torch_ref.load(torch.nn.Linear(5, 6).to(torch.float64), layer)
    t_out, (t_gx,) = torch_ref.run(lin, [x], g, dtype=np.float64)
    t_g = torch_ref.layer_grads(lin, layer)
    np.testing.assert_allclose(out, t_out, rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, t_gx, rtol=tol, atol=tol)
    np.testing.assert_allclose(grads["W"], t_g["W"], rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(grads["b"], t_g["b"], rtol=tol, atol=tol * 10)


def test_dense_skips_input_gradient_when_not_needed(xp):
    layer = build_layer("Dense", {"units": 2}, {"in": (3,)}, xp=xp)
    layer.needs_input_grad = [False]
    _, (gx,), grads = forward_backward(layer, [np.ones((2, 3))])
    assert gx is None and grads["W"] is not None


def test_dense_gathering_passes_see_the_weights_of_their_own_pass(xp):
    """Over a drawn cycle's time steps a Dense gathers its weight gradients and takes the
    input gradient against one contiguous copy of W.T per pass: a second pass after an
    update must use the new W, and the gradients equal the ungathered ones."""
    from tests.harness import context
    layer = build_layer("Dense", {"units": 4}, {"in": (3,)}, xp=xp)
    ctx = context(xp=xp)
    rng = np.random.default_rng(3)
    xs = [xp.asarray(rng.standard_normal((2, 3))) for _ in range(3)]
    gs = [xp.asarray(rng.standard_normal((2, 4))) for _ in range(3)]

    def gathered_pass():
        layer.G = {k: None for k in layer.P}
        layer.deferred = []
        gx = [layer.backward(ctx, layer.forward(ctx, [x])[1], g)[0]
              for x, g in zip(xs, gs, strict=True)]
        layer.flush_deferred()
        return gx, {k: np.asarray(v) for k, v in layer.G.items()}

    for _ in range(2):
        gx, grads = gathered_pass()
        w = np.asarray(layer.P["W"])
        for g, got in zip(gs, gx, strict=True):
            np.testing.assert_allclose(np.asarray(got), np.asarray(g) @ w.T, rtol=1e-12)
        x_all = np.concatenate([np.asarray(x) for x in xs])
        g_all = np.concatenate([np.asarray(g) for g in gs])
        np.testing.assert_allclose(grads["W"], x_all.T @ g_all, rtol=1e-12)
        np.testing.assert_allclose(grads["b"], g_all.sum(axis=0), rtol=1e-12)
        layer.P["W"] = layer.P["W"] * 2.0 - 0.5  # an update between the passes


def relu(t):
    return t.relu()


def identity(t):
    return t


@pytest.mark.parametrize("kind,fn", [("ReLU", relu), ("Identity", identity)])
def test_elementwise_basics_match_torch(xp, torch, kind, fn):
    layer = build_layer(kind, {}, {"in": (7,)}, xp=xp)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from ReLU's kink for the finite differences
    g = rng.standard_normal((3, 7))
    out, (gx,), _ = forward_backward(layer, [x], g)
    t_out, (t_gx,) = torch_ref.run(fn, [x], g)
    np.testing.assert_allclose(out, t_out)
    np.testing.assert_allclose(gx, t_gx)
    gradcheck(layer, [x])


def test_dense_on_scalar_is_shape_error():
    a = analyze(build(graph_dict([node("x", "Input", shape=[]), node("fc", "Dense", units=3)],
                                 [edge("x", "fc")])))
    (p,) = [p for p in a.problems if p.node == "fc"]
    assert p.port == "in" and "[]" in p.message


def test_init_he_before_relu_glorot_otherwise():
    from core.network import Network
    nodes = [node("x", "Input", shape=[400]), node("a", "Dense", units=300),
             node("r", "ReLU"), node("b", "Dense", units=300)]
    edges = [edge("x", "a"), edge("a", "r"), edge("r", "b")]
    a = analyze(build(graph_dict(nodes, edges)))
    net = Network(a, outputs=["b"], with_losses=False)
    wa, wb = net.params["a/W"], net.params["b/W"]
    assert wa.std() == pytest.approx(np.sqrt(2 / 400), rel=0.05)  # He normal
    limit = np.sqrt(6 / 600)  # Glorot uniform
    assert np.abs(wb).max() <= limit and wb.std() == pytest.approx(limit / np.sqrt(3), rel=0.05)
