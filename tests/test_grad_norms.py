"""Gradient norms over the whole float32 range: squares of finite gradients above ~1.8e19
overflow float32 and below ~1e-19 underflow it, but the norms must not."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core import optim
from core.network import Network
from core.training import parse_training, training_step
from core.validate import analyze
from tests.graphs import build, mlp_dict


def norm64(g: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(g.astype(np.float64)))))


@pytest.mark.parametrize("scale", [1e20, 1e30, 1e-25, 1e-40], ids=["1e20", "1e30", "1e-25",
                                                                    "1e-40 subnormal"])
def test_float32_gradient_norms_neither_overflow_nor_underflow(scale):
    rng = np.random.default_rng(0)
    grads = {"a/W": (rng.standard_normal((30, 20)) * scale).astype(np.float32),
             "a/b": rng.standard_normal(20).astype(np.float32),  # ordinary size beside it
             "c/W": None}
    assert np.all(np.isfinite(grads["a/W"])) and np.any(grads["a/W"] != 0)
    norms, total = optim.grad_norms(grads)
    assert set(norms) == {"a/W", "a/b"}
    assert norms["a/W"] == pytest.approx(norm64(grads["a/W"]), rel=1e-6, abs=0)
    assert norms["a/b"] == pytest.approx(norm64(grads["a/b"]), rel=1e-6)
    assert total == pytest.approx(math.hypot(norms["a/W"], norms["a/b"]), rel=1e-12)
    assert math.isfinite(total)


def test_zero_and_non_finite_gradients_keep_their_norms():
    zero = {"a/W": np.zeros((3, 4), np.float32)}
    assert optim.grad_norms(zero) == ({"a/W": 0.0}, 0.0)
    for bad, check in ((np.inf, math.isinf), (np.nan, math.isnan)):
        g = {"a/W": np.array([1.0, bad], np.float32), "a/b": np.ones(2, np.float32)}
        norms, total = optim.grad_norms(g)
        assert check(norms["a/W"]) and check(total) and norms["a/b"] == pytest.approx(2 ** .5)


def test_clipping_scales_finite_gradients_whose_squares_overflow_float32():
    grads = {"a/W": np.full((4, 4), 1e20, np.float32), "a/b": np.full(4, 3e19, np.float32)}
    before = optim.clip_grad_norm(grads, 2.0)
    assert before == pytest.approx(math.sqrt(16 * 1e40 + 4 * 9e38), rel=1e-6)
    _, after = optim.grad_norms(grads)
    assert after == pytest.approx(2.0, rel=1e-5)


def test_training_step_with_huge_but_finite_gradients_is_not_non_finite():
    """Before the fix, this step stopped training as 'non-finite gradient'."""
    net = Network(analyze(build(mlp_dict())), seed=0)
    rng = np.random.default_rng(1)
    batch = {"x": (rng.standard_normal((8, 4)) * 1e12).astype(np.float32),
             "y": np.zeros((8, 3), np.float32)}
    res = net.loss_and_grads(batch)
    assert math.isfinite(float(res.loss))
    grads = {k: np.array(v) for k, v in net.gradients().items()}
    expect = math.sqrt(sum(norm64(g) ** 2 for g in grads.values()))
    assert expect > 1e20  # squares above float32's range: this step needs the fix
    cfg = parse_training({"dataset": {"source": "builtin", "name": "xor"},
                          "optimizer": {"type": "sgd", "lr": 0.1}, "clip": {"norm": 1.0}})
    old = {k: v.copy() for k, v in net.params.items()}
    opt = optim.make_optimizer(cfg.optimizer, list(net.params.items()))
    loss, norms, global_norm, _ = training_step(net, opt, batch, cfg)
    assert global_norm == pytest.approx(expect, rel=1e-5)
    assert math.isfinite(loss) and all(math.isfinite(n) for n in norms.values())
    # clipped to norm 1, then one SGD step of lr 0.1: the weights moved by 0.1 in all
    moved = math.sqrt(sum(norm64(net.params[k] - old[k]) ** 2 for k in old))
    assert moved == pytest.approx(0.1, rel=1e-4)
