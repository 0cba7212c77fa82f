"""Exported PyTorch code computes what our network computes: outputs with the same weights
(evaluation mode), and one training step (weights after it) for several optimizers, L1/L2
and clipping. Every node type of docs/format.md section 3 appears in one of
tests/export_graphs.py."""
from __future__ import annotations

import numpy as np
import pytest

from core import catalogue, optim
from core.fileformat import load_graph
from core.network import Network
from core.training import parse_training, training_step
from core.validate import analyze
from core.weights import load_weights, save_weights
from tests import export_graphs as eg
from tests.cli_helpers import run

# Every test here but the first imports an exported module, which imports torch: those take
# the ``torch`` fixture (skipped without torch); the coverage check runs anyway.

EXAMPLES = sorted((eg.ROOT / "resources" / "examples").glob("*.ncg.json"))


@pytest.fixture
def float64_default(torch):
    """Torch tensors made without a dtype (the zeros before a recurrent loop) in float64."""
    with eg.float64_default(torch):
        yield


def test_the_graphs_cover_every_node_type():
    used = {n.type for make in eg.GRAPHS.values() for n in make().nodes.values()}
    assert used == set(catalogue.types())


@pytest.mark.parametrize("name", list(eg.GRAPHS))
def test_outputs_equal_our_predict(torch, name, tmp_path):
    graph = eg.GRAPHS[name]()
    batch = eg.batch_for(analyze(graph), n=7, seed=1)
    ours, theirs = eg.predict_both(graph, tmp_path, batch)
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_exports_and_matches_our_predict(torch, path, tmp_path):
    graph = load_graph(path)
    a = analyze(graph)
    assert a.ok, a.problems
    batch = eg.batch_for(a, n=9, seed=2)
    ours, theirs = eg.predict_both(graph, tmp_path, batch)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)
    assert eg.ruff(*tmp_path.glob("exported_*.py")).returncode == 0


def test_outputs_equal_main_py_predict(torch, tmp_path):
    """The command a user runs: main.py predict, against the exported module."""
    path = EXAMPLES[0]
    a = analyze(load_graph(path))
    batch = eg.batch_for(a, n=5, seed=4)
    net = Network(a, seed=7)
    save_weights(tmp_path / "w.npz", net.state_dict())
    np.savez(tmp_path / "x.npz", **batch)
    r = run("predict", path, "--weights", tmp_path / "w.npz", "--input", tmp_path / "x.npz",
            "--output", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    theirs = eg.exported_output(load_graph(path), tmp_path / "w.npz", batch, tmp_path)
    np.testing.assert_allclose(theirs, np.load(tmp_path / "y.npy"), rtol=1e-4, atol=1e-5)


def test_inputs_by_field_name_and_loss_with_targets(torch, tmp_path):
    graph = eg.siamese_merges()
    a = analyze(graph)
    batch = eg.batch_for(a, n=4)
    module, _ = eg.export_module(graph, tmp_path)
    model = module.Model().eval()
    t = {k: torch.from_numpy(v.astype(np.float32)) for k, v in batch.items()}
    positional = model(t["a"], t["p"], t["n"])
    by_name = model(n=t["n"], a=t["a"], p=t["p"])
    assert all(torch.equal(x, y) for x, y in zip(positional, by_name, strict=True))
    # the outputs are what the losses read: the encoders (triplet) and the head (ce)
    assert positional._fields == ("enc_a", "enc_p", "enc_n", "head")
    losses = model.losses(positional, t)
    assert list(losses) == ["triplet", "ce"] and losses["ce"].ndim == 0
    assert torch.equal(model.loss(positional, t), losses["triplet"] + losses["ce"])


def test_weights_round_trip_through_the_exported_module(torch, tmp_path):
    graph = eg.sequence_layers()
    net = Network(analyze(graph), seed=5)
    save_weights(tmp_path / "ours.npz", net.state_dict())
    module, _ = eg.export_module(graph, tmp_path)
    model = module.Model()
    module.load_weights(model, tmp_path / "ours.npz")
    module.save_weights(model, tmp_path / "back.npz")
    ours, back = load_weights(tmp_path / "ours.npz"), load_weights(tmp_path / "back.npz")
    assert set(ours) == set(back)
    for k in ours:
        np.testing.assert_array_equal(ours[k], back[k], err_msg=k)


def test_load_weights_names_a_missing_key_and_a_wrong_shape(torch, tmp_path):
    graph = eg.dense_activations()
    state = Network(analyze(graph)).state_dict()
    module, _ = eg.export_module(graph, tmp_path)
    model = module.Model()
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in state.items() if k != "d2/W"})
    with pytest.raises(KeyError, match="d2/W"):
        module.load_weights(model, tmp_path / "missing.npz")
    np.savez(tmp_path / "shape.npz", **{**state, "bn/gamma": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="bn/gamma"):
        module.load_weights(model, tmp_path / "shape.npz")


# ---- one training step ---------------------------------------------------------------------
STEP_CASES = {
    "sgd": ("dense_mlp", {"type": "sgd", "lr": 0.1}, {}),
    "momentum-l2": ("dense_mlp", {"type": "momentum", "lr": 0.05, "dampening": 0.1},
                    {"regularization": {"l2": 0.01}}),
    "nesterov-l1-clipnorm": ("dense_mlp", {"type": "nesterov", "lr": 0.05, "momentum": 0.8,
                                           "weight_decay": 0.01},
                             {"regularization": {"l1": 0.01}, "clip": {"norm": 0.05}}),
    "adagrad-clipvalue": ("dense_mlp", {"type": "adagrad", "lr": 0.1, "lr_decay": 0.01,
                                        "initial_accumulator_value": 0.1},
                          {"clip": {"value": 0.01}}),
    "rmsprop-centered": ("dense_mlp", {"type": "rmsprop", "lr": 0.01, "momentum": 0.5,
                                       "centered": True}, {"regularization": {"l1": 1e-3,
                                                                              "l2": 1e-3}}),
    "adam-amsgrad": ("convolutions", {"type": "adam", "lr": 0.01, "amsgrad": True}, {}),
    "adamw": ("sequence_layers", {"type": "adamw", "lr": 0.01, "weight_decay": 0.1},
              {"clip": {"norm": 1.0}}),
    "adam-siamese": ("siamese_merges", {"type": "adam", "lr": 0.01},
                     {"regularization": {"l2": 0.01}}),
    "sgd-elman": ("elman_all_delay2", {"type": "sgd", "lr": 0.5}, {}),
    "sgd-region-loss": ("loss_in_region", {"type": "momentum", "lr": 0.1}, {}),
}


def dense_mlp():
    """dense_activations without its Dropout, whose random masks differ from torch's."""
    g = eg.dense_activations()
    g.set_param("drop", "rate", 0.0)
    return g


@pytest.mark.parametrize("case", list(STEP_CASES))
def test_one_training_step_equals_ours(torch, case, tmp_path, float64_default):
    graph_name, optimizer, extra = STEP_CASES[case]
    graph = dense_mlp() if graph_name == "dense_mlp" else eg.GRAPHS[graph_name]()
    graph.set_training(eg.training(optimizer=optimizer, **extra))
    a = analyze(graph)
    cfg = parse_training(graph.training)
    batch = eg.batch_for(a, n=6, seed=11)

    net = Network(a, dtype=np.float64, seed=2)
    save_weights(tmp_path / "w.npz", net.state_dict())  # float32: both start from these
    net.load_state_dict(load_weights(tmp_path / "w.npz"))
    opt = optim.make_optimizer(cfg.optimizer, net.params.items())
    with np.errstate(all="ignore"):
        our_loss, *_ = training_step(net, opt, batch, cfg)
        our_loss2, *_ = training_step(net, opt, batch, cfg)  # a second step uses the state

    module, _ = eg.export_module(graph, tmp_path)
    model = module.Model()
    module.load_weights(model, tmp_path / "w.npz")
    model.train()
    tb = {k: torch.from_numpy(v) for k, v in batch.items()}
    topt = module.make_optimizer(model)
    task = module.WithLoss(model)
    loss = module.train_step(task, model, topt, tb)["loss"]
    loss2 = module.train_step(task, model, topt, tb)["loss"]
    assert loss == pytest.approx(our_loss, rel=1e-9, abs=1e-12)
    assert loss2 == pytest.approx(our_loss2, rel=1e-8, abs=1e-12)
    state = model.state_dict()
    ours = {**net.params, **net.buffers}
    assert set(module.WEIGHTS) == set(ours)
    for key, (name, transposed) in module.WEIGHTS.items():
        theirs = state[name].T if transposed else state[name]
        np.testing.assert_allclose(theirs.detach().numpy(), ours[key], rtol=1e-7, atol=1e-10,
                                   err_msg=key)


def test_exported_initialisation_follows_ours(torch, tmp_path):
    """He normal before ReLU-family activations, Glorot uniform elsewhere, zero biases."""
    graph = eg.convolutions()
    module, _ = eg.export_module(graph, tmp_path)
    torch.manual_seed(0)
    model = module.Model()
    conv1 = model.conv1.weight.detach()  # feeds a ReLU: std sqrt(2 / fan_in)
    assert conv1.std().item() == pytest.approx(np.sqrt(2 / (2 * 2 * 2)), rel=0.5)
    fc = model.fc.weight.detach()  # Glorot: |w| <= sqrt(6 / (fan_in + fan_out))
    assert fc.abs().max().item() <= np.sqrt(6 / (24 + 3)) + 1e-7
    assert not model.fc.bias.detach().any() and not model.conv1.bias.detach().any()


def test_without_a_loss_there_is_no_training_part(torch, tmp_path):
    graph = eg.dense_activations()
    for nid in ("loss", "y"):
        graph.remove_node(nid)
    module, path = eg.export_module(graph, tmp_path)
    assert not hasattr(module, "main") and "no loss node" in path.read_text()
    model = module.Model().eval()
    assert model(torch.zeros(2, 6)).shape == (2, 5)
    assert eg.ruff(path).returncode == 0


def test_generated_files_pass_ruff(torch, tmp_path):
    paths = [eg.export_module(make(), tmp_path)[1] for make in eg.GRAPHS.values()]
    r = eg.ruff(*paths)
    assert r.returncode == 0, r.stdout


def test_exported_data_is_generated_as_ours(torch, tmp_path):
    """Every built-in dataset's exported generator gives our arrays, bit for bit."""
    from core import datasets

    graph = eg.dense_activations()
    cases = [("spirals", {"n": 50, "noise": 0.2}), ("xor", {"n": 20}),
             ("sine", {"n": 10, "steps": 4}), ("moons", {"n": 30, "seed": 3}),
             ("sequences", {"n": 12, "steps": 9, "classes": 3}),
             ("recall", {"n": 8, "steps": 6}), ("digits", {"image": True}),
             ("digit_triplets", {"n": 20, "pool": 100}),
             ("parity", {"n": 16, "steps": 7, "min_length": 2})]
    assert {name for name, _ in cases} == set(datasets.known_builtins()), \
        "a new built-in dataset needs its exported generator checked here"
    for name, opts in cases:
        ds = {"source": "builtin", "name": name, **opts}
        graph.set_training({"dataset": ds, "seed": 5})
        module, _ = eg.export_module(graph, tmp_path)
        theirs = module.load_data()
        ours = datasets.load_dataset(ds, seed=5)
        assert set(theirs) == set(ours.fields), name
        for k, v in ours.fields.items():
            assert theirs[k].dtype == v.dtype, (name, k)
            np.testing.assert_array_equal(theirs[k], v, err_msg=f"{name} {k}")


def test_exported_csv_and_npz_loaders_read_as_ours(torch, tmp_path):
    from core import datasets

    (tmp_path / "t.csv").write_text("a;label;b\n1;0;2.5\n3;1;-1\n\n5;2;0\n", encoding="utf-8")
    np.savez(tmp_path / "d.npz", x=np.arange(6.0).reshape(3, 2), y=np.array([0, 1, 0]))
    graph = eg.dense_activations()
    for ds in ({"source": "csv", "path": "t.csv", "target_column": "label", "delimiter": ";"},
               {"source": "npz", "path": "d.npz"}):
        graph.set_training({"dataset": ds})
        module, _ = eg.export_module(graph, tmp_path, base_dir=tmp_path)
        theirs = module.load_data()
        ours = datasets.load_dataset(ds, tmp_path)
        for k, v in ours.fields.items():
            assert theirs[k].dtype == v.dtype
            np.testing.assert_array_equal(theirs[k], v)


def test_split_and_batches_follow_ours(torch, tmp_path):
    from core import datasets

    graph = eg.dense_activations()
    graph.set_training({"dataset": {"source": "builtin", "name": "xor", "n": 40},
                        "validation_split": 0.25, "seed": 9})
    module, _ = eg.export_module(graph, tmp_path)
    data = {"x": np.arange(40.0)[:, None], "y": np.arange(40)}
    train, val = module.split(data, 0.25, 9)
    ours_train, ours_val = datasets.Dataset(data).split(0.25, 9)
    np.testing.assert_array_equal(train["y"], ours_train["y"])
    np.testing.assert_array_equal(val["y"], ours_val["y"])

