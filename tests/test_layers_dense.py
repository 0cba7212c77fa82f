"""Dense, ReLU and Identity: finite differences and PyTorch parity."""
import numpy as np
import pytest

from core.validate import analyze
from tests.graphs import build, edge, graph_dict, node
from tests.harness import build_layer, forward_backward, gradcheck

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("in_shape", [(5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradcheck(in_shape, bias):
    layer = build_layer("Dense", {"units": 3, "bias": bias}, {"in": in_shape})
    x = np.random.default_rng(0).standard_normal((2,) + in_shape)
    gradcheck(layer, [x])


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_dense_matches_torch(dtype, tol):
    layer = build_layer("Dense", {"units": 6}, {"in": (3, 5)}, dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    g = rng.standard_normal((4, 3, 6)).astype(dtype)
    out, (gx,), grads = forward_backward(layer, [x], g)
    assert out.dtype == dtype and gx.dtype == dtype and grads["W"].dtype == dtype
    lin = torch.nn.Linear(5, 6).to(torch.float64)
    with torch.no_grad():  # our W is [in, units]; torch keeps [units, in]
        lin.weight.copy_(torch.from_numpy(layer.P["W"].T.astype(np.float64)))
        lin.bias.copy_(torch.from_numpy(layer.P["b"].astype(np.float64)))
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    ty = lin(tx)
    ty.backward(torch.from_numpy(g.astype(np.float64)))
    np.testing.assert_allclose(out, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(grads["W"], lin.weight.grad.numpy().T, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(grads["b"], lin.bias.grad.numpy(), rtol=tol, atol=tol * 10)


def test_dense_skips_input_gradient_when_not_needed():
    layer = build_layer("Dense", {"units": 2}, {"in": (3,)})
    layer.needs_input_grad = [False]
    _, (gx,), grads = forward_backward(layer, [np.ones((2, 3))])
    assert gx is None and grads["W"] is not None


@pytest.mark.parametrize("kind,fn", [("ReLU", torch.relu), ("Identity", lambda t: t)])
def test_elementwise_basics_match_torch(kind, fn):
    layer = build_layer(kind, {}, {"in": (7,)})
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from ReLU's kink for the finite differences
    g = rng.standard_normal((3, 7))
    out, (gx,), _ = forward_backward(layer, [x], g)
    tx = torch.from_numpy(x).requires_grad_()
    fn(tx).backward(torch.from_numpy(g))
    np.testing.assert_allclose(out, fn(torch.from_numpy(x)).numpy())
    np.testing.assert_allclose(gx, tx.grad.numpy())
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
