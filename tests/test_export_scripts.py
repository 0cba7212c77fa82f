"""Exported scripts as a user runs them: the --to python round trip, hostile strings in a
graph, the PyTorch script under torchrun with two processes, and main.py export."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidGraphError, ParamError, WeightsError
from core.export import ExportError, export_graph
from core.fileformat import load_graph, save_graph
from core.network import Network
from core.training import Trainer, parse_training
from core.validate import analyze
from core.weights import load_weights, save_weights
from tests import export_graphs as eg
from tests.cli_helpers import assert_user_error, run
from tests.graphs import build, edge, graph_dict, mlp_dict, node

EXAMPLES = sorted((eg.ROOT / "resources" / "examples").glob("*.ncg.json"))


def without_pos(graph) -> dict:
    d = graph.to_dict()
    for n in d["nodes"]:
        n.pop("pos")
    return d


# ---- --to python ---------------------------------------------------------------------------
@pytest.mark.parametrize("source", list(eg.GRAPHS) + [p.name for p in EXAMPLES])
def test_python_export_rebuilds_the_same_graph(source, tmp_path):
    graph = eg.GRAPHS[source]() if source in eg.GRAPHS else load_graph(
        next(p for p in EXAMPLES if p.name == source))
    module, path = eg.export_module(graph, tmp_path, to="python")
    assert module.main(["--dump-graph", str(tmp_path / "g.json")]) == 0
    assert without_pos(load_graph(tmp_path / "g.json")) == without_pos(graph)
    assert eg.ruff(path).returncode == 0


def test_python_export_trains_as_main_py_train(tmp_path):
    """Run as a script: the same weights as our Trainer after the same steps."""
    np.random.seed(0)
    data = {"x": np.random.standard_normal((20, 6)).astype(np.float32),
            "y": np.random.standard_normal((20, 5)).astype(np.float32)}
    np.savez(tmp_path / "data.npz", **data)
    graph = eg.dense_activations()
    graph.set_param("drop", "rate", 0.0)
    graph.set_training(eg.training(optimizer={"type": "adam", "lr": 0.01}))
    init = tmp_path / "init.npz"
    save_weights(init, Network(analyze(graph), seed=8).state_dict())
    out = tmp_path / "model.py"
    out.write_text(export_graph(graph, "python", weights_path=init, base_dir=tmp_path))
    r = subprocess.run([sys.executable, str(out), "--steps", "3", "--save-weights",
                        str(tmp_path / "w.npz")], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["event"] == "epoch"
    cfg = parse_training(graph.training, steps=3)
    trainer = Trainer(analyze(graph), cfg, base_dir=tmp_path, init_weights=load_weights(init),
                      queue_events=False)
    assert trainer.run().error is None
    theirs = load_weights(tmp_path / "w.npz")
    for k, v in trainer.net.state_dict().items():
        np.testing.assert_array_equal(theirs[k], v, err_msg=k)


# ---- hostile strings -----------------------------------------------------------------------
PAYLOAD = "__import__('pathlib').Path('PWNED').touch()"
HOSTILE = [
    f'"; {PAYLOAD}; "',
    f"'''\n{PAYLOAD}\n'''",
    f'"""\n{PAYLOAD}\n"""',
    f"\\\n{PAYLOAD}",
    f"\r{PAYLOAD}\u2028{PAYLOAD}\x0c{PAYLOAD}",
    f"# comment\n{PAYLOAD}  # \\",
    "x" * 300 + "\\",
]


def hostile_graph(data_path: str) -> dict:
    """Odd ids (keywords, builtins, module names, digits first, 64 characters) and hostile
    text in the name, labels, extra keys, dataset options and an edge's extra key."""
    long_id = "L" * 64
    nodes = [node("class", "Input", shape=[3], field="import"),
             node("1st", "Dense", units=4), node("torch", "ReLU"),
             node("F", "Dense", units=4), node("self", "Tanh"), node("x-y", "Identity"),
             node("x_y", "Dense", units=2), node("forward", "Add"),
             node(long_id, "Dense", units=2, shared_with="x_y"),
             node("def", "Target", shape=[2], dtype="float32", field="return"),
             node("len", "MSELoss")]
    for i, n in enumerate(nodes):
        n["label"] = HOSTILE[i % len(HOSTILE)]
        n["color"] = {"note": HOSTILE[(i + 1) % len(HOSTILE)]}
    edges = [edge("class", "1st"), edge("1st", "torch"), edge("torch", "F"), edge("F", "self"),
             edge("self", "x-y"), edge("x-y", "x_y"), edge("x-y", long_id),
             edge("x_y", "forward:in0"), edge(long_id, "forward:in1"),
             edge("forward", "len:pred", note=HOSTILE[2]), edge("def", "len:target")]
    return graph_dict(nodes, edges, name="\n".join(HOSTILE),
                      training={"dataset": {"source": "csv", "path": data_path,
                                            "target_column": HOSTILE[0], "delimiter": "\t"},
                                "optimizer": {"type": "sgd", "lr": 0.1}, "batch_size": 4},
                      notes=HOSTILE)


def test_hostile_strings_reach_the_code_only_as_literals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch = pytest.importorskip("torch")
    graph = build(hostile_graph(HOSTILE[1] + ".csv"))
    assert analyze(graph).ok
    pt, pt_path = eg.export_module(graph, tmp_path)
    py, py_path = eg.export_module(graph, tmp_path, to="python")
    assert not (tmp_path / "PWNED").exists()
    assert eg.ruff(pt_path, py_path).returncode == 0
    # the model runs, reads its input by a safe name, and nothing ran on the way
    model = pt.Model().eval()
    x = torch.zeros(2, 3)
    assert model(x).shape == (2, 2)
    loss = model.loss(model(x), {"return": torch.zeros(2, 2)})
    assert loss.ndim == 0
    # the strings are data, exactly as in the file
    assert py.main(["--dump-graph", "g.json"]) == 0
    assert without_pos(load_graph(tmp_path / "g.json")) == without_pos(graph)
    assert pt.DATA_FILE.name == HOSTILE[1] + ".csv"
    assert not (tmp_path / "PWNED").exists()
    # no line of the files is longer than the limit, so no string was cut into code
    for path in (pt_path, py_path):
        assert PAYLOAD not in [ln.strip() for ln in path.read_text().splitlines()]


# ---- torchrun ------------------------------------------------------------------------------
def test_pytorch_script_under_torchrun_with_two_processes(tmp_path):
    """Two processes, each with half of every batch, end with the weights of one process
    that takes whole batches: DistributedDataParallel averages the gradients."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        pytest.skip("torchrun is not installed")
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((32, 4)).astype(np.float32),
             y=rng.standard_normal((32, 3)).astype(np.float32))
    graph = build(mlp_dict())  # no Dropout or BatchNorm, whose batches differ per process
    graph.set_training(eg.training(optimizer={"type": "momentum", "lr": 0.05}, batch_size=8,
                                   regularization={"l2": 0.001}, clip={"norm": 1.0}))
    init = tmp_path / "init.npz"
    save_weights(init, Network(analyze(graph), seed=1).state_dict())
    script = tmp_path / "model.py"
    script.write_text(export_graph(graph, "pytorch", weights_path=init, base_dir=tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--steps", "3"]
    two = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(script), *common,
                          "--save-weights", str(tmp_path / "two.npz")], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count('"event": "epoch"') == 1  # only rank 0 reports
    one = subprocess.run([sys.executable, str(script), *common, "--save-weights",
                          str(tmp_path / "one.npz")], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = load_weights(tmp_path / "one.npz"), load_weights(tmp_path / "two.npz")
    start = load_weights(init)
    for k in a:
        assert not np.array_equal(a[k], start[k]), k
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-6, err_msg=k)


def bn_dropout_graph(tmp_path, n: int = 20, **training):
    """dense_activations (BatchNorm, then Dropout) on an npz file of n samples, its graph
    file and initial weights written to tmp_path."""
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((n, 6)).astype(np.float32),
             y=rng.standard_normal((n, 5)).astype(np.float32))
    graph = eg.dense_activations()
    graph.set_training(eg.training(**{"optimizer": {"type": "adam", "lr": 0.01},
                                      "batch_size": 8, **training}))
    save_graph(graph, tmp_path / "g.ncg.json")
    save_weights(tmp_path / "init.npz", Network(analyze(graph), seed=4).state_dict())
    return graph


def run_script(script, *args, cwd, torchrun=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    head = [torchrun, "--standalone", "--nproc_per_node=2"] if torchrun else [sys.executable]
    r = subprocess.run([*head, str(script), *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_pytorch_script_trains_as_main_py_train_step_for_step(tmp_path):
    """From the same weights, the same batches in the same order (the DataLoader's sampler
    draws NeuroCanvas's permutations), a partial last batch, a validation split: the same
    weights and the same JSON Lines metrics, key for key, as main.py train --log."""
    pytest.importorskip("torch")
    # momentum, not Adam: Adam would blow the float32 noise in the zero gradient of the
    # bias before BatchNorm up to whole steps
    graph = bn_dropout_graph(tmp_path, validation_split=0.25,
                             optimizer={"type": "momentum", "lr": 0.1})
    graph.set_param("drop", "rate", 0.0)  # Dropout's masks are torch's own
    save_graph(graph, tmp_path / "g.ncg.json")
    out = tmp_path / "sub" / "model.py"
    out.parent.mkdir()
    r = run("export", tmp_path / "g.ncg.json", "--to", "pytorch", "-o", out, "--weights",
            tmp_path / "init.npz")
    assert r.returncode == 0, r.stderr
    code = out.read_text()
    # the paths the graph and the command gave relatively stay relative, to the script
    assert 'DATA_FILE = Path(__file__).resolve().parent / "../data.npz"' in code
    assert str(tmp_path / "init.npz") in code  # given as an absolute path: kept so
    run_script(out, "--steps", 5, "--log", "theirs.jsonl", "--save-weights", "theirs.npz",
               cwd=out.parent)
    r = run("train", tmp_path / "g.ncg.json", "--steps", 5, "--init-weights",
            tmp_path / "init.npz", "--log", tmp_path / "ours.jsonl", "--save-weights",
            tmp_path / "ours.npz")
    assert r.returncode == 0, r.stderr
    theirs, ours = read_log(out.parent / "theirs.jsonl"), read_log(tmp_path / "ours.jsonl")
    assert [e["event"] for e in theirs] == [e["event"] for e in ours]
    for t, o in zip(theirs, ours, strict=True):
        assert list(t) == list(o)
        for key in ("loss", "train_loss", "val_loss", "global_grad_norm"):
            if key in o:
                assert t[key] == pytest.approx(o[key], rel=1e-4), key
        if "grad_norm" in o:
            assert set(t["grad_norm"]) == set(o["grad_norm"])
    a, b = load_weights(out.parent / "theirs.npz"), load_weights(tmp_path / "ours.npz")
    for k in b:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_pytorch_script_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """4 steps at once equal 2 steps, a checkpoint (model and Adam state, where training
    is), then 2 more from it: the epoch boundary falls in between."""
    pytest.importorskip("torch")
    graph = bn_dropout_graph(tmp_path)
    graph.set_param("drop", "rate", 0.0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    script = tmp_path / "run" / "model.py"
    script.write_text(export_graph(graph, "pytorch", weights_path="init.npz",
                                   base_dir=tmp_path, out_dir=script.parent))
    # a relative weights path (from the current folder) is written relative to the script
    assert 'WEIGHTS_FILE = Path(__file__).resolve().parent / "../init.npz"' in \
        script.read_text()
    run_script(script, "--steps", 4, "--save-weights", "once.npz", cwd=tmp_path)
    run_script(script, "--steps", 2, "--checkpoint", "c.pt", cwd=tmp_path)
    assert not (tmp_path / "c.pt.tmp").exists()
    run_script(script, "--steps", 4, "--resume", "c.pt", "--save-weights", "twice.npz",
               cwd=tmp_path)
    a, b = load_weights(tmp_path / "once.npz"), load_weights(tmp_path / "twice.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_pytorch_script_under_torchrun_synchronises_batchnorm(tmp_path):
    """A graph with BatchNorm and Dropout under torchrun, 2 processes with half of each
    batch: after a step, BatchNorm's running statistics are those of the whole batch, as
    a single process computes them (unsynchronised, each process would have its half's)."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        pytest.skip("torchrun is not installed")
    pytest.importorskip("torch")
    graph = bn_dropout_graph(tmp_path, n=32)
    script = tmp_path / "model.py"
    script.write_text(export_graph(graph, "pytorch", weights_path=tmp_path / "init.npz",
                                   base_dir=tmp_path, out_dir=tmp_path))
    two = run_script(script, "--steps", 1, "--metrics", "two.jsonl", "--save-weights",
                     "two.npz", cwd=tmp_path, torchrun=torchrun)
    assert two.stdout.count('"event": "epoch"') == 1  # rank 0 alone reports
    run_script(script, "--steps", 1, "--log", "one.jsonl", "--save-weights", "one.npz",
               cwd=tmp_path)
    one, two = load_weights(tmp_path / "one.npz"), load_weights(tmp_path / "two.npz")
    start = load_weights(tmp_path / "init.npz")
    for k in ("bn/running_mean", "bn/running_var"):
        assert not np.allclose(one[k], start[k]), k
        np.testing.assert_allclose(two[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert read_log(tmp_path / "two.jsonl")[0]["loss"] == pytest.approx(
        read_log(tmp_path / "one.jsonl")[0]["loss"], rel=0.5)  # Dropout's masks differ
    # and it trains on, Dropout and all, for more steps than one epoch
    run_script(script, "--steps", 6, "--checkpoint", "c.pt", cwd=tmp_path, torchrun=torchrun)
    assert (tmp_path / "c.pt").exists()


# ---- errors and the command line -----------------------------------------------------------
def test_invalid_graph_is_a_typed_error():
    g = eg.dense_activations()
    g.set_param("d1", "units", -3)
    with pytest.raises(InvalidGraphError) as e:
        export_graph(g, "pytorch")
    assert "d1" in e.value.nodes


def test_bad_training_settings_name_the_field():
    g = eg.dense_activations()
    g.set_training({"dataset": {"source": "builtin", "name": "spirals", "n": "many"}})
    with pytest.raises(ParamError, match="training.dataset.n"):
        export_graph(g, "pytorch")


def test_a_target_feeding_the_output_cannot_be_exported():
    g = build(graph_dict(
        [node("x", "Input", shape=[2]), node("y", "Target", shape=[2], dtype="float32"),
         node("add", "Add"), node("loss", "MSELoss")],
        [edge("x", "add:in0"), edge("y", "add:in1"), edge("add", "loss:pred"),
         edge("y", "loss:target")]))
    with pytest.raises(ExportError) as e:
        export_graph(g, "pytorch")
    assert e.value.node == "add"


def test_weights_that_do_not_fit_are_refused_at_export(tmp_path):
    g = eg.dense_activations()
    state = Network(analyze(g)).state_dict()
    np.savez(tmp_path / "w.npz", **{**state, "d3/W": np.zeros((2, 2), np.float32)})
    with pytest.raises(WeightsError, match="d3/W"):
        export_graph(g, "python", weights_path=tmp_path / "w.npz")


def test_cli_export_to_stdout_and_to_a_file(tmp_path):
    path = EXAMPLES[0]
    r = run("export", path, "--to", "python")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('"""') and "def build_graph() -> Graph:" in r.stdout
    out = tmp_path / "m.py"
    r = run("export", path, "--to", "pytorch", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "class Model(nn.Module):" in out.read_text()


def test_cli_user_errors_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.ncg.json"
    d = json.loads(EXAMPLES[0].read_text())
    d["nodes"][1]["params"]["units" if "units" in d["nodes"][1]["params"] else "filters"] = 0
    bad.write_text(json.dumps(d))
    assert_user_error(run("export", bad, "--to", "pytorch"), "bad.ncg.json",
                      d["nodes"][1]["id"])
    assert_user_error(run("export", EXAMPLES[0], "--to", "pytorch", "--weights",
                          tmp_path / "none.npz"), "none.npz")
    assert_user_error(run("export", EXAMPLES[0], "--to", "rust"), "--to")
    assert_user_error(run("export", EXAMPLES[0], "--to", "python", "-o",
                          tmp_path / "no" / "dir.py"), "dir.py")


def test_saved_graph_round_trips_through_the_cli_export(tmp_path):
    """main.py export on a saved graph, the script's --dump-graph, compared as files."""
    graph = eg.elman("mean", 2)
    save_graph(graph, tmp_path / "g.ncg.json")
    out = tmp_path / "rebuild.py"
    assert run("export", tmp_path / "g.ncg.json", "--to", "python", "-o", out).returncode == 0
    r = subprocess.run([sys.executable, str(out), "--dump-graph", str(tmp_path / "back.json")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert without_pos(load_graph(tmp_path / "back.json")) == without_pos(graph)


@pytest.mark.parametrize("name, needs", [("digits", True), ("digit_triplets", True),
                                         ("moons", True), ("spirals", False)])
def test_the_script_says_what_its_builtin_dataset_needs(name, needs):
    d = mlp_dict()
    d["training"] = {"dataset": {"source": "builtin", "name": name}}
    code = export_graph(build(d), "pytorch")
    assert ("and scikit-learn to make the built-in dataset" in code) == needs
    assert ("It needs only torch and numpy." in code) != needs
