"""The compiled network: whole-graph gradients, fan-out, shared parameters, the plan, init,
weights, and agreement with PyTorch."""
from __future__ import annotations

import weakref

import numpy as np
import pytest

from core.errors import DataError, WeightsError
from core.network import Network, default_output
from core.validate import analyze
from core.weights import load_weights, save_weights
from tests import torch_ref
from tests.graphs import build, edge, graph_dict, mlp_dict, node

RNG = np.random.default_rng(7)


def network(d: dict, **kw) -> Network:
    a = analyze(build(d))
    assert a.ok, [str(p) for p in a.problems]
    return Network(a, **kw)


def mlp_batch(n: int = 6, features: int = 4, outputs: int = 3) -> dict:
    return {"x": RNG.standard_normal((n, features)), "y": RNG.standard_normal((n, outputs))}


def total_loss(net: Network, batch: dict) -> float:
    return float(net.forward(batch, train=True).loss)


def numeric_grads(net: Network, batch: dict, eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Central differences of the total loss w.r.t. every parameter, element by element."""
    out = {}
    for key, p in net.params.items():
        num = np.zeros_like(p)
        flat, nflat = p.reshape(-1), num.reshape(-1)
        for i in range(p.size):
            old = flat[i]
            flat[i] = old + eps
            fp = total_loss(net, batch)
            flat[i] = old - eps
            fm = total_loss(net, batch)
            flat[i] = old
            nflat[i] = (fp - fm) / (2 * eps)
        out[key] = num
    return out


def assert_grads_match_numeric(net: Network, batch: dict) -> dict[str, np.ndarray]:
    net.loss_and_grads(batch)
    analytic = {k: np.array(v) for k, v in net.gradients().items()}
    numeric = numeric_grads(net, batch)
    assert analytic.keys() == numeric.keys()
    for k in numeric:
        assert analytic[k].shape == net.params[k].shape, k
        np.testing.assert_allclose(analytic[k], numeric[k], rtol=1e-6, atol=1e-8, err_msg=k)
    return analytic


# ---- gradients of whole graphs ------------------------------------------------------------------
def test_mlp_gradients_match_finite_differences():
    net = network(mlp_dict(), dtype=np.float64, seed=3)
    for k in ("fc1/b", "fc2/b"):  # non-zero biases, so every term is exercised
        net.params[k][...] = RNG.standard_normal(net.params[k].shape) * 0.1
    grads = assert_grads_match_numeric(net, mlp_batch())
    assert set(grads) == {"fc1/W", "fc1/b", "fc2/W", "fc2/b"}
    assert all(np.abs(g).sum() > 0 for g in grads.values())
    assert net.params["fc1/W"].dtype == np.float64


def fan_out_dict(branches: tuple[str, ...] = ("a", "b")) -> dict:
    """x -> h Dense(3); h -> a Identity -> loss_a (target ya); h -> b Dense(2) -> loss_b (yb)."""
    nodes = [node("x", "Input", shape=[4]), node("h", "Dense", units=3)]
    edges = [edge("x", "h")]
    if "a" in branches:
        nodes += [node("a", "Identity"), node("ya", "Target", shape=[3], dtype="float32",
                                              field="ya"), node("loss_a", "MSELoss")]
        edges += [edge("h", "a"), edge("a", "loss_a:pred"), edge("ya", "loss_a:target")]
    if "b" in branches:
        nodes += [node("b", "Dense", units=2), node("yb", "Target", shape=[2], dtype="float32",
                                                    field="yb"), node("loss_b", "MSELoss")]
        edges += [edge("h", "b"), edge("b", "loss_b:pred"), edge("yb", "loss_b:target")]
    return graph_dict(nodes, edges)


def fan_out_batch(n: int = 5) -> dict:
    return {"x": RNG.standard_normal((n, 4)), "ya": RNG.standard_normal((n, 3)),
            "yb": RNG.standard_normal((n, 2))}


def test_gradients_add_up_where_an_output_fans_out():
    batch = fan_out_batch()
    both = network(fan_out_dict(), dtype=np.float64, seed=1)
    grads = assert_grads_match_numeric(both, batch)
    # the same weights in graphs with one branch each: h's gradient is the sum of the two
    only_a = network(fan_out_dict(("a",)), dtype=np.float64)
    only_a.load_state_dict({k: v for k, v in both.params.items() if k.startswith("h/")})
    only_b = network(fan_out_dict(("b",)), dtype=np.float64)
    only_b.load_state_dict(both.params)
    only_a.loss_and_grads(batch)
    only_b.loss_and_grads(batch)
    ga, gb = only_a.gradients(), only_b.gradients()
    for k in ("h/W", "h/b"):
        np.testing.assert_allclose(grads[k], ga[k] + gb[k], rtol=1e-10, atol=1e-12)
        assert not np.allclose(grads[k], ga[k])  # both branches really contribute
    np.testing.assert_allclose(grads["b/W"], gb["b/W"], rtol=1e-10)


def test_several_losses_are_summed():
    batch = fan_out_batch()
    both = network(fan_out_dict(), dtype=np.float64, seed=2)
    res = both.forward(batch, train=True)
    assert set(res.losses) == {"loss_a", "loss_b"}
    assert float(res.loss) == pytest.approx(float(res.losses["loss_a"] + res.losses["loss_b"]))
    only_a = network(fan_out_dict(("a",)), dtype=np.float64)
    only_a.load_state_dict({k: v for k, v in both.params.items() if k.startswith("h/")})
    h = batch["x"] @ both.params["h/W"] + both.params["h/b"]
    expected_a = np.mean((h - batch["ya"]) ** 2)
    assert float(only_a.forward(batch).loss) == pytest.approx(expected_a, rel=1e-12)
    assert float(res.losses["loss_a"]) == pytest.approx(expected_a, rel=1e-12)


def siamese_dict(shared: bool = True) -> dict:
    """x1 -> e1 Dense(3); x2 -> e2 Dense(3, shared_with e1); each branch to its own loss."""
    e2 = dict(units=3, shared_with="e1") if shared else dict(units=3)
    return graph_dict(
        [node("x1", "Input", shape=[4], field="x1"), node("x2", "Input", shape=[4], field="x2"),
         node("e1", "Dense", units=3), node("e2", "Dense", **e2),
         node("r2", "ReLU"),
         node("t1", "Target", shape=[3], dtype="float32", field="t1"),
         node("t2", "Target", shape=[3], dtype="float32", field="t2"),
         node("l1", "MSELoss"), node("l2", "MSELoss")],
        [edge("x1", "e1"), edge("x2", "e2"), edge("e2", "r2"),
         edge("e1", "l1:pred"), edge("t1", "l1:target"),
         edge("r2", "l2:pred"), edge("t2", "l2:target")])


def siamese_batch(n: int = 5) -> dict:
    return {k: RNG.standard_normal((n, 4 if k.startswith("x") else 3))
            for k in ("x1", "x2", "t1", "t2")}


def test_shared_parameters_are_one_set_whose_gradient_sums_both_uses():
    batch = siamese_batch()
    net = network(siamese_dict(), dtype=np.float64, seed=4)
    assert set(net.state_dict()) == {"e1/W", "e1/b"}
    assert net.layers["e2"].P["W"] is net.layers["e1"].P["W"]
    grads = assert_grads_match_numeric(net, batch)
    # unshared copy with the same weights in both: its two gradients add up to the shared one
    twin = network(siamese_dict(shared=False), dtype=np.float64)
    twin.load_state_dict({"e1/W": net.params["e1/W"], "e1/b": net.params["e1/b"],
                          "e2/W": net.params["e1/W"], "e2/b": net.params["e1/b"]})
    twin.loss_and_grads(batch)
    tg = twin.gradients()
    for k in ("W", "b"):
        np.testing.assert_allclose(grads[f"e1/{k}"], tg[f"e1/{k}"] + tg[f"e2/{k}"], rtol=1e-10)
        assert not np.allclose(grads[f"e1/{k}"], tg[f"e1/{k}"])


def test_shared_parameters_load_once_and_move_together():
    out = network(siamese_dict(), dtype=np.float64, outputs=["e1", "e2"], with_losses=False)
    state = out.state_dict()
    state["e1/W"] = np.full((4, 3), 0.5, np.float32)
    out.load_state_dict(state)  # no e2 keys needed
    batch = siamese_batch()
    res = out.forward(batch)
    np.testing.assert_allclose(res.values["e1"], batch["x1"] @ np.full((4, 3), 0.5))
    np.testing.assert_allclose(res.values["e2"], batch["x2"] @ np.full((4, 3), 0.5))


def test_predicting_the_sharing_branch_alone_uses_the_owners_weights():
    full = network(siamese_dict(), dtype=np.float64, seed=9)
    branch = network(siamese_dict(), dtype=np.float64, seed=9, outputs=["e2"],
                     with_losses=False)
    assert [s.node_id for s in branch.plan.steps] == ["x2", "e2"]  # e1 lies outside the plan
    assert set(branch.state_dict()) == {"e1/W", "e1/b"}
    x2 = RNG.standard_normal((3, 4))
    np.testing.assert_allclose(branch.predict({"x2": x2}, "e2"),
                               x2 @ full.params["e1/W"] + full.params["e1/b"])


# ---- the plan: compiled once, frees what backward does not need -------------------------------
def test_plan_frees_each_activation_after_its_last_use():
    net = network(mlp_dict())
    steps = net.plan.steps
    assert [s.node_id for s in steps] == ["x", "fc1", "act", "fc2", "y", "loss"]
    freed = {s.node_id: s.free_after for s in steps}
    assert freed == {"x": [], "fc1": ["x"], "act": ["fc1"], "fc2": ["act"], "y": [],
                     "loss": ["fc2", "y"]}
    # no value is freed before a later step reads it
    for i, s in enumerate(steps):
        for f in s.free_after:
            assert all(f not in later.sources for later in steps[i + 1:])
    assert [s.backward for s in steps] == [False, True, True, True, False, True]
    assert net.layers["fc1"].needs_input_grad == [False]  # no parameter lies behind x


def test_plan_keeps_requested_outputs():
    net = network(mlp_dict(), outputs=["act"])
    assert all("act" not in s.free_after for s in net.plan.steps)
    res = net.forward(mlp_batch())
    assert set(res.values) == {"act"}
    assert set(res.losses) == {"loss"}
    assert np.all(res.values["act"] >= 0)


def test_forward_returns_only_requested_outputs_and_retains_no_activation():
    net = network(mlp_dict(), dtype=np.float64)
    seen: dict[str, weakref.ref] = {}
    for s in net.plan.steps:
        if s.feed is None:
            orig = s.layer.forward

            def spy(ctx, inputs, _orig=orig, _id=s.node_id):
                out, cache = _orig(ctx, inputs)
                seen[_id] = weakref.ref(out)
                return out, cache

            s.layer.forward = spy
    res = net.forward(mlp_batch(), train=False)
    assert res.values == {} and res.tape == []
    for nid in ("fc1", "act", "fc2"):
        assert seen[nid]() is None, f"{nid}'s output is still alive after an eval forward"
    # training keeps only what backward needs: ReLU keeps a mask, not fc1's output
    res = net.forward(mlp_batch(), train=True)
    assert seen["fc1"]() is None
    assert [entry[0].node_id for entry in res.tape] == ["fc1", "act", "fc2", "loss"]


def test_plan_skips_nodes_no_output_needs():
    d = mlp_dict()
    d["nodes"].append(node("side", "Dense", units=2))
    d["edges"].append(edge("x", "side"))
    net = network(d)
    assert "side" not in [s.node_id for s in net.plan.steps]
    assert "side/W" not in net.state_dict()


def test_two_networks_from_one_analysis_do_not_share_parameters():
    a = analyze(build(mlp_dict()))
    x = {"x": RNG.standard_normal((3, 4))}
    first = Network(a, seed=1, outputs=["fc2"], with_losses=False)
    before = first.predict(x, "fc2")
    second = Network(a, seed=2, outputs=["fc2"], with_losses=False)
    np.testing.assert_array_equal(first.predict(x, "fc2"), before)
    assert not np.allclose(second.predict(x, "fc2"), before)


# ---- initialisation -----------------------------------------------------------------------------
def test_init_is_reproducible_per_seed():
    s1 = network(mlp_dict(), seed=5).state_dict()
    s2 = network(mlp_dict(), seed=5).state_dict()
    s3 = network(mlp_dict(), seed=6).state_dict()
    assert s1.keys() == s2.keys() == {"fc1/W", "fc1/b", "fc2/W", "fc2/b"}
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])
    assert not np.array_equal(s1["fc1/W"], s3["fc1/W"])
    assert not np.array_equal(s1["fc1/W"][:, :3], s1["fc2/W"][:3])  # nodes differ


def test_init_of_a_node_does_not_depend_on_other_nodes():
    base = network(mlp_dict(), seed=5).state_dict()
    d = mlp_dict()
    d["nodes"].insert(0, node("extra", "Dense", units=7))  # earlier in the file, too
    d["edges"].append(edge("x", "extra"))
    more = network(d, seed=5, outputs=["extra"]).state_dict()
    assert "extra/W" in more
    for k in base:
        np.testing.assert_array_equal(base[k], more[k], err_msg=k)


def test_he_before_relu_glorot_otherwise():
    fan_in, units = 400, 300
    d = graph_dict([node("x", "Input", shape=[fan_in]),
                    node("he", "Dense", units=units), node("r", "ReLU"),
                    node("gl", "Dense", units=units), node("i", "Identity")],
                   [edge("x", "he"), edge("he", "r"), edge("x", "gl"), edge("gl", "i")])
    state = network(d, dtype=np.float64, outputs=["r", "i"], with_losses=False).state_dict()
    he, gl = state["he/W"].astype(np.float64), state["gl/W"].astype(np.float64)
    assert he.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.03)
    limit = np.sqrt(6 / (fan_in + units))
    assert np.abs(gl).max() <= limit
    assert gl.std() == pytest.approx(limit / np.sqrt(3), rel=0.03)  # uniform(-l, l)
    assert np.abs(he).max() > limit  # normal tails: not the Glorot bound
    assert abs(he.mean()) < 0.002 and abs(gl.mean()) < 0.002
    assert np.all(state["he/b"] == 0) and np.all(state["gl/b"] == 0)


# ---- state_dict and weights files ---------------------------------------------------------------
def test_state_dict_round_trip_through_a_file(tmp_path):
    src = network(mlp_dict(), seed=1, outputs=["fc2"], with_losses=False)
    dst = network(mlp_dict(), seed=2, outputs=["fc2"], with_losses=False)
    x = {"x": RNG.standard_normal((4, 4)).astype(np.float32)}
    assert not np.allclose(src.predict(x, "fc2"), dst.predict(x, "fc2"))
    state = src.state_dict()
    assert all(v.dtype == np.float32 for v in state.values())
    assert state["fc1/W"].shape == (4, 5) and state["fc2/b"].shape == (3,)
    path = tmp_path / "w.npz"
    save_weights(path, state)
    loaded = load_weights(path)
    assert loaded.keys() == state.keys()
    dst.load_state_dict(loaded, file=str(path))
    np.testing.assert_array_equal(src.predict(x, "fc2"), dst.predict(x, "fc2"))
    # state_dict is a copy: changing it leaves the network alone
    state["fc1/W"][...] = 0
    assert np.any(src.params["fc1/W"] != 0)


def test_load_state_dict_missing_key_names_it():
    net = network(mlp_dict())
    state = net.state_dict()
    del state["fc2/b"]
    with pytest.raises(WeightsError) as info:
        net.load_state_dict(state, file="w.npz")
    assert "'fc2/b'" in str(info.value) and "missing" in str(info.value)
    assert info.value.file == "w.npz"


def test_load_state_dict_wrong_shape_names_key_and_shapes():
    net = network(mlp_dict())
    before = net.state_dict()
    state = dict(before)
    state["fc1/W"] = np.zeros((5, 4), np.float32)
    with pytest.raises(WeightsError) as info:
        net.load_state_dict(state, file="w.npz")
    msg = str(info.value)
    assert "'fc1/W'" in msg and "[5, 4]" in msg and "expected [4, 5]" in msg
    assert msg.startswith("w.npz: ")


def test_load_state_dict_refuses_non_numbers():
    net = network(mlp_dict())
    state = net.state_dict()
    state["fc2/b"] = np.array(["a", "b", "c"])
    with pytest.raises(WeightsError, match="fc2/b"):
        net.load_state_dict(state)
    state["fc2/b"] = np.zeros(3, complex)
    with pytest.raises(WeightsError, match="fc2/b"):
        net.load_state_dict(state)


def test_weights_file_errors_name_the_file(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        load_weights(tmp_path / "absent.npz")
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(WeightsError, match="not a NumPy .npz") as info:
        load_weights(text)
    assert info.value.file == str(text)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(WeightsError, match="not a NumPy .npz"):
        load_weights(npy)
    objects = tmp_path / "objects.npz"
    np.savez(objects, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(WeightsError, match="never unpickled"):
        load_weights(objects)


def test_feeding_data_that_does_not_fit_names_node_and_field():
    net = network(mlp_dict(), outputs=["fc2"], with_losses=False)
    with pytest.raises(DataError) as info:
        net.forward({"x": np.zeros((2, 5))})
    assert info.value.node == "x"
    assert "field 'x'" in str(info.value) and "[5]" in str(info.value) and "[4]" in str(
        info.value)
    with pytest.raises(DataError, match="no array for field 'x'"):
        net.forward({"z": np.zeros((2, 4))})
    with pytest.raises(DataError, match="expected real numbers"):
        net.forward({"x": np.full((2, 4), "a")})


def test_default_output_feeds_the_first_loss():
    assert default_output(analyze(build(mlp_dict()))) == "fc2"
    d = mlp_dict()
    d["nodes"] = d["nodes"][:4]
    d["edges"] = d["edges"][:3]
    assert default_output(analyze(build(d))) == "fc2"


# ---- agreement with PyTorch ---------------------------------------------------------------------
def test_mlp_forward_and_backward_match_torch():
    torch = torch_ref.need_torch()
    net = network(mlp_dict(features=4, hidden=6, outputs=3), dtype=np.float64, seed=11,
                  outputs=["fc2"])
    for k in ("fc1/b", "fc2/b"):
        net.params[k][...] = RNG.standard_normal(net.params[k].shape) * 0.1
    batch = mlp_batch(n=8, features=4, outputs=3)
    res = net.loss_and_grads(batch)
    grads = net.gradients()

    fc1 = torch_ref.load(torch.nn.Linear(4, 6).double(), net.layers["fc1"])
    fc2 = torch_ref.load(torch.nn.Linear(6, 3).double(), net.layers["fc2"])
    x, y = torch_ref.tensor(batch["x"]), torch_ref.tensor(batch["y"])
    pred = fc2(torch.relu(fc1(x)))
    loss = torch.nn.functional.mse_loss(pred, y)
    loss.backward()

    np.testing.assert_allclose(res.values["fc2"], torch_ref.array(pred), rtol=1e-12)
    assert float(res.loss) == pytest.approx(loss.item(), rel=1e-12)
    for nid, module in (("fc1", fc1), ("fc2", fc2)):
        theirs = torch_ref.layer_grads(module, net.layers[nid])
        np.testing.assert_allclose(grads[f"{nid}/W"], theirs["W"], rtol=1e-10)
        np.testing.assert_allclose(grads[f"{nid}/b"], theirs["b"], rtol=1e-10)


def test_gradients_do_not_leak_between_steps():
    net = network(mlp_dict(), dtype=np.float64)
    batch = mlp_batch()
    net.loss_and_grads(batch)
    first = {k: np.array(v) for k, v in net.gradients().items()}
    net.loss_and_grads(batch)  # zero_grad first: the same batch gives the same gradient
    for k, v in net.gradients().items():
        np.testing.assert_allclose(v, first[k], rtol=1e-12)
