"""Optimizers, regularization and clipping compared with PyTorch on the same numbers."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from core import optim
from core.errors import ParamError, WeightsError
from kernels.backend import to_host
from tests import torch_ref

SHAPES = {"fc1/W": (5, 4), "fc1/b": (4,), "conv/W": (3, 2, 2, 2), "rnn/W_ih": (6,),
          "bn/gamma": (1,)}
STEPS = 7
TOL = {np.float64: dict(rtol=1e-11, atol=1e-13), np.float32: dict(rtol=2e-5, atol=2e-6)}


def initial_params(dtype, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def on(xp, arrays: dict) -> dict:
    """The same names with each array (None stays None) on ``xp`` (the same arrays on
    NumPy)."""
    return {k: None if v is None else xp.asarray(v) for k, v in arrays.items()}


def on_host(arrays: dict) -> dict:
    return {k: None if v is None else to_host(v) for k, v in arrays.items()}


def grad_sequence(dtype, steps=STEPS, seed=1) -> list[dict[str, np.ndarray | None]]:
    """Gradients per step; some are None so state starts late and steps are skipped."""
    rng = np.random.default_rng(seed)
    seq = []
    for t in range(steps):
        grads = {k: (rng.standard_normal(s) * (0.1 + t)).astype(dtype)
                 for k, s in SHAPES.items()}
        if t < 2:
            grads["rnn/W_ih"] = None  # state allocated at step 2, not 0
        if t == 4:
            grads["fc1/b"] = None  # skipped mid-run: no update, its step count stays
        seq.append(grads)
    return seq


# (id, our config, torch optimizer class, torch kwargs)
CASES = [
    ("sgd", {"type": "sgd", "lr": 0.1}, "SGD", {"lr": 0.1}),
    ("sgd-default", {"type": "sgd"}, "SGD", {}),
    ("sgd-wd", {"type": "sgd", "lr": 0.1, "weight_decay": 0.05}, "SGD",
     {"lr": 0.1, "weight_decay": 0.05}),
    ("momentum", {"type": "momentum", "lr": 0.05}, "SGD", {"lr": 0.05, "momentum": 0.9}),
    ("momentum-damp-wd", {"type": "momentum", "lr": 0.05, "momentum": 0.8, "dampening": 0.3,
                          "weight_decay": 0.01}, "SGD",
     {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}),
    ("sgd-with-momentum", {"type": "sgd", "lr": 0.05, "momentum": 0.5}, "SGD",
     {"lr": 0.05, "momentum": 0.5}),
    ("nesterov", {"type": "nesterov", "lr": 0.05}, "SGD",
     {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("nesterov-wd", {"type": "nesterov", "lr": 0.05, "momentum": 0.7, "weight_decay": 0.02},
     "SGD", {"lr": 0.05, "momentum": 0.7, "nesterov": True, "weight_decay": 0.02}),
    ("adagrad", {"type": "adagrad"}, "Adagrad", {}),
    ("adagrad-all", {"type": "adagrad", "lr": 0.1, "lr_decay": 0.2, "weight_decay": 0.03,
                     "initial_accumulator_value": 0.1, "eps": 1e-6}, "Adagrad",
     {"lr": 0.1, "lr_decay": 0.2, "weight_decay": 0.03, "initial_accumulator_value": 0.1,
      "eps": 1e-6}),
    ("rmsprop", {"type": "rmsprop"}, "RMSprop", {}),
    ("rmsprop-momentum", {"type": "rmsprop", "momentum": 0.6, "alpha": 0.9}, "RMSprop",
     {"momentum": 0.6, "alpha": 0.9}),
    ("rmsprop-centered", {"type": "rmsprop", "centered": True}, "RMSprop", {"centered": True}),
    ("rmsprop-centered-momentum-wd", {"type": "rmsprop", "centered": True, "momentum": 0.5,
                                      "weight_decay": 0.02, "alpha": 0.3}, "RMSprop",
     {"centered": True, "momentum": 0.5, "weight_decay": 0.02, "alpha": 0.3}),
    ("adam", {"type": "adam"}, "Adam", {}),
    ("adam-lr-wd", {"type": "adam", "lr": 0.01, "weight_decay": 0.1}, "Adam",
     {"lr": 0.01, "weight_decay": 0.1}),
    ("adam-betas-eps", {"type": "adam", "lr": 0.01, "betas": [0.3, 0.4], "eps": 1e-3}, "Adam",
     {"lr": 0.01, "betas": (0.3, 0.4), "eps": 1e-3}),
    ("adam-amsgrad", {"type": "adam", "lr": 0.01, "amsgrad": True}, "Adam",
     {"lr": 0.01, "amsgrad": True}),
    ("adamw", {"type": "adamw"}, "AdamW", {}),
    ("adamw-wd-amsgrad", {"type": "adamw", "lr": 0.01, "weight_decay": 0.2, "amsgrad": True},
     "AdamW", {"lr": 0.01, "weight_decay": 0.2, "amsgrad": True}),
    ("adamw-no-wd", {"type": "adamw", "lr": 0.01, "weight_decay": 0.0}, "AdamW",
     {"lr": 0.01, "weight_decay": 0.0}),
]


def torch_optimizer(name, kwargs, params: dict[str, np.ndarray]):
    torch = torch_ref.need_torch()
    tparams = torch_ref.parameters(params)
    # foreach=False: the single-tensor path, the rule our NumPy code follows
    return getattr(torch.optim, name)(list(tparams.values()), foreach=False, **kwargs), tparams


def torch_step(topt, tparams, grads):
    torch_ref.set_grads(tparams, grads)
    topt.step()


def assert_close(ours: dict, theirs: dict, dtype, what=""):
    for k in theirs:
        np.testing.assert_allclose(to_host(ours[k]), theirs[k], **TOL[dtype],
                                   err_msg=f"{what} {k}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(xp, torch, case, dtype):
    _, config, tname, tkwargs = case
    params = on(xp, initial_params(dtype))
    opt = optim.make_optimizer(config, list(params.items()))
    topt, tparams = torch_optimizer(tname, tkwargs, params)
    for t, grads in enumerate(grad_sequence(dtype)):
        if t == 5:  # a schedule changing lr mid-run
            opt.lr *= 0.5
            topt.param_groups[0]["lr"] *= 0.5
        opt.step(on(xp, grads))
        torch_step(topt, tparams, grads)
        assert_close(params, torch_ref.values(tparams), dtype, f"step {t}")
        for k, p in tparams.items():  # the state too, under torch's names
            tstate = topt.state.get(p, {})
            if k not in opt.state:  # torch's Adagrad allocates eagerly: still untouched there
                assert int(tstate.get("step", 0)) == 0, (t, k)
                continue
            ours = opt.state[k]
            for key, v in tstate.items():
                if v is None:
                    continue
                if key == "step":
                    assert ours["step"] == int(v), (t, k)
                else:
                    np.testing.assert_allclose(to_host(ours[key]), torch_ref.array(v),
                                               **TOL[dtype], err_msg=f"step {t} {k} {key}")
    for k in params:
        assert params[k].dtype == dtype


@pytest.mark.parametrize("kind", list(optim.OPTIMIZER_PARAMS))
def test_defaults_are_torch_defaults(torch, kind):
    """Spec defaults, class signature defaults and torch's defaults agree."""
    tname = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "adagrad": "Adagrad",
             "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}[kind]
    extra = {"momentum": {"momentum": 0.9}, "nesterov": {"momentum": 0.9, "nesterov": True}}
    tdefaults = getattr(torch.optim, tname)([torch.nn.Parameter(torch.zeros(1))],
                                            **extra.get(kind, {})).defaults
    opt = optim.make_optimizer({"type": kind}, [("W", np.zeros(1))])
    hyper = opt.hyperparameters()
    cls = type(opt)
    sig = inspect.signature(cls.__init__).parameters
    for key, spec in optim.OPTIMIZER_PARAMS[kind].items():
        want = tdefaults[key]
        want = list(want) if isinstance(want, tuple) else want
        assert hyper[key] == want, (kind, key)
        default = spec.default
        assert (list(default) if isinstance(default, tuple) else default) == want, (kind, key)
        if kind not in ("momentum", "nesterov"):  # SGD's own momentum default is torch's 0
            sig_default = sig[key].default
            assert (list(sig_default) if isinstance(sig_default, tuple) else sig_default) \
                == want, (kind, key)
    assert opt.kind == kind


def test_nesterov_direct_construction_errors():
    with pytest.raises(ParamError) as e:
        optim.SGD([], momentum=0.9, dampening=0.1, nesterov=True)
    assert e.value.param == "optimizer.dampening"
    with pytest.raises(ParamError) as e:
        optim.SGD([], nesterov=True)  # torch's default momentum 0
    assert e.value.param == "optimizer.momentum"


def test_direct_construction_matches_make_optimizer():
    params = initial_params(np.float64)
    a = optim.SGD(dict(params), lr=0.1, momentum=0.9, nesterov=True)
    b = optim.make_optimizer({"type": "nesterov", "lr": 0.1}, dict(params))
    assert a.hyperparameters() == b.hyperparameters() and a.kind == b.kind == "nesterov"


# -- state and in-place updates ------------------------------------------------------------


@pytest.mark.parametrize("kind", list(optim.OPTIMIZER_PARAMS))
def test_state_is_lazy_and_updates_are_in_place(xp, kind):
    params = on(xp, initial_params(np.float64))
    before = on_host(params)
    before = {k: v.copy() for k, v in before.items()}
    arrays = dict(params)  # the same objects
    opt = optim.make_optimizer({"type": kind, "lr": 0.1}, params)
    assert opt.state == {}
    grads = on(xp, grad_sequence(np.float64)[0])  # rnn/W_ih has no gradient
    grads_before = {k: (None if g is None else to_host(g).copy()) for k, g in grads.items()}
    opt.step(grads)
    assert "rnn/W_ih" not in opt.state
    np.testing.assert_array_equal(to_host(params["rnn/W_ih"]), before["rnn/W_ih"])
    assert set(opt.state) == {k for k, g in grads.items() if g is not None}
    for k, p in params.items():
        assert opt.params[k] is p is arrays[k]  # never rebound
        if grads[k] is not None:
            assert not np.array_equal(to_host(p), before[k]), k
    for k, g in grads.items():  # the caller's gradients are not modified
        if g is not None:
            np.testing.assert_array_equal(to_host(g), grads_before[k])


def test_torch_skips_none_grad_the_same_way(torch):
    p = torch.nn.Parameter(torch.ones(3))
    q = torch.nn.Parameter(torch.ones(2))
    topt = torch.optim.Adam([p, q])
    p.grad = torch.ones(3)
    topt.step()
    assert q not in topt.state or len(topt.state[q]) == 0
    assert torch.equal(q.detach(), torch.ones(2))


def test_wrong_gradient_shape():
    opt = optim.make_optimizer({"type": "sgd"}, [("fc/W", np.zeros((2, 3)))])
    with pytest.raises(ValueError, match="shape"):
        opt.step({"fc/W": np.zeros((3, 2))})


def test_duplicate_parameter_names():
    with pytest.raises(ValueError, match="twice"):
        optim.make_optimizer({"type": "sgd"}, [("W", np.zeros(1)), ("W", np.zeros(1))])


def test_zero_dim_and_noncontiguous(xp, torch):
    """Scratch views work for 0-d parameters and for gradients that are not contiguous."""
    p = {"s/W": xp.asarray(1.0), "m/W": xp.ones((3, 4))}
    tp = torch_ref.parameters(p)
    opt = optim.make_optimizer({"type": "adam", "lr": 0.1}, p)
    topt = torch.optim.Adam(list(tp.values()), lr=0.1, foreach=False)
    g = xp.arange(12.0).reshape(4, 3).T  # a transposed view
    assert not g.flags.c_contiguous
    grads = {"s/W": xp.asarray(0.5), "m/W": g}
    for _ in range(3):
        opt.step(grads)
        torch_step(topt, tp, grads)
    for k in p:
        np.testing.assert_allclose(to_host(p[k]), torch_ref.array(tp[k]), rtol=1e-12)


# -- checkpoints -----------------------------------------------------------------------------


def _plain(x) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_plain(v) for v in x)
    return isinstance(x, (np.ndarray, bool, int, float, str))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_state_dict_round_trip(xp, case):
    config = case[1]
    seq = [on(xp, g) for g in grad_sequence(np.float64, steps=8)]
    params = on(xp, initial_params(np.float64))
    opt = optim.make_optimizer(config, params)
    for grads in seq[:4]:
        opt.step(grads)
    sd = opt.state_dict()
    assert _plain(sd)  # host arrays, whatever the parameters' module
    saved = {k: v.copy() for k, v in params.items()}

    # the original goes on; a fresh optimizer on a copy of the weights resumes from sd
    for grads in seq[4:]:
        opt.step(grads)
    resumed = {k: v.copy() for k, v in saved.items()}
    opt2 = optim.make_optimizer({"type": config["type"]}, resumed)  # defaults overwritten
    opt2.load_state_dict(sd)
    for grads in seq[4:]:
        opt2.step(grads)
    for k in params:
        np.testing.assert_array_equal(to_host(resumed[k]), to_host(params[k]), err_msg=k)
    # sd was a copy: the later steps did not change it
    for name, st in sd["state"].items():
        for key, v in st.items():
            if isinstance(v, np.ndarray) and xp is np:  # a device array is another memory
                assert not np.shares_memory(v, opt.state[name][key])


def test_state_dict_float32_params(xp):
    params = on(xp, initial_params(np.float32))
    opt = optim.make_optimizer({"type": "adam"}, params)
    opt.step(on(xp, grad_sequence(np.float32)[3]))
    sd = opt.state_dict()
    sd64 = {**sd, "state": {n: {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v)
                                for k, v in st.items()} for n, st in sd["state"].items()}}
    opt2 = optim.make_optimizer({"type": "adam"}, on(xp, initial_params(np.float32)))
    opt2.load_state_dict(sd64)
    assert opt2.state["fc1/W"]["exp_avg"].dtype == np.float32  # the parameter's dtype


def test_load_state_dict_errors(xp):
    params = on(xp, initial_params(np.float64))
    opt = optim.make_optimizer({"type": "adam", "lr": 0.01}, params)
    opt.step(on(xp, grad_sequence(np.float64)[3]))
    sd = opt.state_dict()

    other = optim.make_optimizer({"type": "rmsprop"}, params)
    with pytest.raises(WeightsError, match="adam"):
        other.load_state_dict(sd)

    fresh = optim.make_optimizer({"type": "adam"}, params)
    bad = {**sd, "state": {**sd["state"], "nope/W": sd["state"]["fc1/W"]}}
    with pytest.raises(WeightsError) as e:
        fresh.load_state_dict(bad)
    assert e.value.param == "nope/W"
    assert fresh.lr == 1e-3 and fresh.state == {}  # unchanged after a failed load

    st = dict(sd["state"]["fc1/W"], exp_avg=np.zeros((4, 5)))
    with pytest.raises(WeightsError, match=r"expected shape \[5, 4\], found \[4, 5\]"):
        fresh.load_state_dict({**sd, "state": {"fc1/W": st}})

    st = {k: v for k, v in sd["state"]["fc1/W"].items() if k != "exp_avg_sq"}
    with pytest.raises(WeightsError, match="exp_avg_sq"):
        fresh.load_state_dict({**sd, "state": {"fc1/W": st}})

    with pytest.raises(WeightsError, match="step"):
        fresh.load_state_dict({**sd, "state": {"fc1/W": dict(sd["state"]["fc1/W"], step=-1)}})

    with pytest.raises(WeightsError, match="hyperparameters"):
        fresh.load_state_dict({**sd, "hyper": dict(sd["hyper"], lr=-1.0)})

    with pytest.raises(WeightsError):
        fresh.load_state_dict({"state": {}})


# -- the configuration -----------------------------------------------------------------------


@pytest.mark.parametrize("config, param, found", [
    ("adam", "optimizer", "'adam'"),
    ({"lr": 0.1}, "optimizer.type", "None"),
    ({"type": "adamax"}, "optimizer.type", "'adamax'"),
    ({"type": True}, "optimizer.type", "True"),
    ({"type": "adam", "beta1": 0.9}, "optimizer.beta1", "'beta1'"),
    ({"type": "adam", "momentum": 0.9}, "optimizer.momentum", "'momentum'"),
    ({"type": "sgd", "betas": [0.9, 0.99]}, "optimizer.betas", "'betas'"),
    ({"type": "nesterov", "dampening": 0.1}, "optimizer.dampening", "'dampening'"),
    ({"type": "sgd", "lr": -0.1}, "optimizer.lr", "-0.1"),
    ({"type": "sgd", "lr": "0.1"}, "optimizer.lr", "'0.1'"),
    ({"type": "sgd", "lr": True}, "optimizer.lr", "True"),
    ({"type": "sgd", "lr": float("nan")}, "optimizer.lr", "nan"),
    ({"type": "momentum", "momentum": 1.0}, "optimizer.momentum", "1.0"),
    ({"type": "nesterov", "momentum": 0.0}, "optimizer.momentum", "0.0"),
    ({"type": "adam", "betas": [0.9]}, "optimizer.betas", "[0.9]"),
    ({"type": "adam", "betas": [0.9, 1.0]}, "optimizer.betas", "[0.9, 1.0]"),
    ({"type": "adam", "betas": 0.9}, "optimizer.betas", "0.9"),
    ({"type": "adam", "eps": -1e-8}, "optimizer.eps", "-1e-08"),
    ({"type": "adamw", "weight_decay": -0.01}, "optimizer.weight_decay", "-0.01"),
    ({"type": "adam", "amsgrad": 1}, "optimizer.amsgrad", "1"),
    ({"type": "rmsprop", "alpha": 1.5}, "optimizer.alpha", "1.5"),
    ({"type": "rmsprop", "centered": "yes"}, "optimizer.centered", "'yes'"),
    ({"type": "adagrad", "lr_decay": -1}, "optimizer.lr_decay", "-1"),
])
def test_config_errors(config, param, found):
    with pytest.raises(ParamError) as e:
        optim.make_optimizer(config, [("fc/W", np.zeros(2))])
    assert e.value.param == param
    msg = str(e.value)
    assert "expected" in msg or "takes" in msg, msg
    assert f"found {found}" in msg, msg
    assert f"'{param}'" in msg, msg


def test_config_accepts_ints_and_json_lists():
    opt = optim.make_optimizer({"type": "adam", "lr": 1, "betas": [0, 0.5], "eps": 0},
                               [("W", np.zeros(2))])
    assert opt.lr == 1.0 and opt.betas == (0.0, 0.5) and opt.eps == 0.0


def test_key_message_lists_what_the_type_takes():
    with pytest.raises(ParamError, match="does not apply to optimizer 'adam'.*betas"):
        optim.make_optimizer({"type": "adam", "alpha": 0.9}, [])


# -- regularization --------------------------------------------------------------------------


def test_is_weight():
    assert optim.is_weight("fc1/W") and optim.is_weight("rnn/W_ih") and optim.is_weight("W")
    assert not optim.is_weight("fc1/b") and not optim.is_weight("bn/gamma")
    assert not optim.is_weight("Wnode/b")  # the node id does not count, only the last part


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("l1, l2", [(0.01, 0.0), (0.0, 0.02), (0.03, 0.05)])
def test_regularization_matches_torch_autograd(xp, torch, l1, l2, dtype):
    host_params = initial_params(dtype)
    host_params["fc1/W"][0, :2] = 0  # sign(0) = 0, as torch's abs backward
    host_params["Wnode/b"] = np.ones(3, dtype=dtype)  # a bias of a node whose id starts with W
    params = on(xp, host_params)
    grads = {k: xp.full(v.shape, 0.5, dtype=dtype) for k, v in params.items()}
    grads["rnn/W_ih"] = None  # a weight with no data gradient still gets the penalty's
    tparams = {k: torch_ref.tensor(v, grad=True) for k, v in host_params.items()}
    penalty = sum(l1 * p.abs().sum() + l2 * (p ** 2).sum()
                  for k, p in tparams.items() if k.rsplit("/", 1)[-1].startswith("W"))
    penalty.backward()

    tol = TOL[dtype]
    assert math.isclose(optim.regularization_penalty(params, l1, l2), penalty.item(),
                        rel_tol=tol["rtol"], abs_tol=tol["atol"])
    optim.add_regularization_grads(params, grads, l1, l2)
    for k, p in tparams.items():
        base = 0.0 if k == "rnn/W_ih" else 0.5
        tgrad = torch_ref.array(p.grad) if p.grad is not None else np.zeros(p.shape)
        np.testing.assert_allclose(to_host(grads[k]), base + tgrad, **tol, err_msg=k)
        assert grads[k].dtype == dtype


def test_no_regularization_is_free(xp):
    params = on(xp, initial_params(np.float64))
    grads = {k: xp.zeros_like(v) for k, v in params.items()}
    assert optim.regularization_penalty(params, 0.0, 0.0) == 0.0
    assert optim.regularization_penalty({"fc/b": xp.ones(3)}, 0.1, 0.1) == 0.0
    optim.add_regularization_grads(params, grads, 0.0, 0.0)
    assert all(not to_host(g).any() for g in grads.values())


# -- clipping and norms ----------------------------------------------------------------------


def _grads(dtype, scale):
    g = grad_sequence(dtype)[0]
    return {k: (None if v is None else v * dtype(scale)) for k, v in g.items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipped, and left alone
def test_clip_grad_norm_matches_torch(xp, torch, max_norm, dtype):
    host_grads = _grads(dtype, 3.0)
    grads = on(xp, host_grads)
    tgrads = {k: None if g is None else torch_ref.tensor(g) for k, g in host_grads.items()}
    tparams = []
    for g in tgrads.values():
        if g is not None:
            p = torch.nn.Parameter(torch.zeros_like(g))
            p.grad = g
            tparams.append(p)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, max_norm, foreach=False)
    before = {k: None if g is None else to_host(g).copy() for k, g in grads.items()}
    norm = optim.clip_grad_norm(grads, max_norm)
    assert math.isclose(norm, tnorm.item(), rel_tol=TOL[dtype]["rtol"])
    for k, g in grads.items():
        if g is None:
            continue
        np.testing.assert_allclose(to_host(g), torch_ref.array(tgrads[k]), **TOL[dtype],
                                   err_msg=k)
        assert g.dtype == dtype
    if max_norm > norm:
        for k, g in grads.items():
            if g is not None:
                np.testing.assert_array_equal(to_host(g), before[k])
    # with the norm handed in, the same result
    again = on(xp, _grads(dtype, 3.0))
    _, total = optim.grad_norms(again)
    assert optim.clip_grad_norm(again, max_norm, total_norm=total) == total
    for k, g in again.items():
        if g is not None:
            np.testing.assert_array_equal(to_host(g), to_host(grads[k]))


def test_clip_grad_value_matches_torch(xp, torch):
    grads = on(xp, _grads(np.float64, 30.0))
    tgrads = []
    for g in grads.values():
        if g is not None:
            p = torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64))
            p.grad = torch_ref.tensor(g)
            tgrads.append(p)
    ids = [id(g) for g in grads.values()]
    torch.nn.utils.clip_grad_value_(tgrads, 1.5, foreach=False)
    optim.clip_grad_value(grads, 1.5)
    assert [id(g) for g in grads.values()] == ids  # in place
    ours = [to_host(g) for g in grads.values() if g is not None]
    for g, p in zip(ours, tgrads, strict=True):
        np.testing.assert_array_equal(g, torch_ref.array(p.grad))
    assert max(np.abs(g).max() for g in ours) == 1.5


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_grad_norms_match_torch(xp, torch, dtype):
    host_grads = _grads(dtype, 2.0)
    grads = on(xp, host_grads)
    norms, total = optim.grad_norms(grads)
    assert set(norms) == {k for k, g in grads.items() if g is not None}
    tg = [torch_ref.tensor(g) for g in host_grads.values() if g is not None]
    for k, n in norms.items():
        assert isinstance(n, float)
        assert math.isclose(n, torch.linalg.vector_norm(torch_ref.tensor(host_grads[k])).item(),
                            rel_tol=TOL[dtype]["rtol"])
    ttotal = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in tg]))
    assert isinstance(total, float)
    assert math.isclose(total, ttotal.item(), rel_tol=TOL[dtype]["rtol"])
    assert optim.grad_norms({}) == ({}, 0.0)
    assert optim.grad_norms({"a/W": None}) == ({}, 0.0)


def test_clip_grad_norm_nonfinite_leaves_grads(xp):
    grads = {"a/W": xp.asarray(np.array([np.nan, 1.0]))}
    assert math.isnan(optim.clip_grad_norm(grads, 1.0))
    assert to_host(grads["a/W"])[1] == 1.0


@pytest.mark.parametrize("kind", [["adam"], {"adam": 1}, 3, True, None])
def test_an_optimizer_type_that_is_not_a_name_is_a_param_error(kind):
    from core.errors import ParamError
    from core.optim.optimizers import make_optimizer
    with pytest.raises(ParamError, match="expected one of sgd") as info:
        make_optimizer({"type": kind}, [])
    assert info.value.param == "optimizer.type"
