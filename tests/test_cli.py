"""The command line (docs/format.md section 6), run as a user runs it: ``python main.py ...``.

Every user error must exit with status 2 and print one line on stderr that names the culprit,
with no traceback.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.fileformat import load_graph
from core.network import Network
from core.validate import analyze
from core.weights import load_weights, save_weights
from tests.cli_helpers import assert_user_error, run
from tests.graphs import edge, graph_dict, mlp_dict, node, write


# ---- check -------------------------------------------------------------------------------------
def table(stdout: str) -> dict[str, list[str]]:
    """Rows of the check table by node id: [type, shape, params]."""
    rows = {}
    for line in stdout.splitlines()[2:]:
        if " nodes, " in line:
            break
        cells = line.split()
        rows[cells[0]] = [cells[1], " ".join(cells[2:-1]), cells[-1]]
    return rows


def test_check_prints_shapes_and_parameter_counts(tmp_path):
    path = write(tmp_path / "mlp.ncg.json", mlp_dict(features=64, hidden=128, outputs=10))
    r = run("check", path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["node", "type", "output", "shape", "params"]
    assert set(lines[1]) <= {"-", " "}
    assert table(r.stdout) == {
        "x": ["Input", "[64]", "0"],
        "fc1": ["Dense", "[128]", "8,320"],
        "act": ["ReLU", "[128]", "0"],
        "fc2": ["Dense", "[10]", "1,290"],
        "y": ["Target", "[10]", "0"],
        "loss": ["MSELoss", "[]", "0"],
    }
    assert "6 nodes, 5 edges, 9,610 parameters" in r.stdout
    assert lines[-1] == "OK"


def test_check_counts_shared_parameters_once(tmp_path):
    d = graph_dict([node("x", "Input", shape=[4]), node("a", "Dense", units=3),
                    node("b", "Dense", units=3, shared_with="a")],
                   [edge("x", "a"), edge("x", "b")])
    r = run("check", write(tmp_path / "siamese.ncg.json", d))
    assert r.returncode == 0, r.stderr
    assert "shared with a" in r.stdout
    assert "3 nodes, 2 edges, 15 parameters" in r.stdout


def test_check_invalid_graph_lists_every_problem(tmp_path):
    d = mlp_dict()
    d["nodes"][1]["params"] = {"units": 0}
    d["nodes"].append(node("odd", "Convolve3D"))
    d["edges"].append(edge("act", "ghost"))
    path = write(tmp_path / "bad.ncg.json", d)
    r = run("check", path)
    line = assert_user_error(r, str(path), "fc1", "units")
    assert "(and 2 more problems)" in line
    assert "3 problems:" in r.stdout
    assert "ParamError: node 'fc1' parameter 'units': expected an integer >= 1, found 0" \
        in r.stdout
    assert "UnknownTypeError: node 'odd': unknown node type 'Convolve3D'" in r.stdout
    assert "EdgeError: node 'act': edge act -> ghost: no node with id 'ghost'" in r.stdout
    assert table(r.stdout)["odd"] == ["Convolve3D", "?", "0"]
    assert "OK" not in r.stdout.splitlines()


def test_check_cycle_names_its_nodes(tmp_path):
    d = graph_dict([node("a", "Identity"), node("b", "Identity")],
                   [edge("a", "b"), edge("b", "a")])
    r = run("check", write(tmp_path / "loop.ncg.json", d))
    line = assert_user_error(r, "cycle")
    assert "a -> b -> a" in line or "b -> a -> b" in line


def test_check_missing_file(tmp_path):
    path = tmp_path / "absent.ncg.json"
    assert_user_error(run("check", path), str(path), "no such file")


@pytest.mark.parametrize("content, reason", [
    (b"this is not json", "not valid JSON"),
    (b"[]", "not a NeuroCanvas graph"),
    (b'{"format": "neurocanvas.graph", "version": 99}', "newer"),
    (b"\x80\x04\x95\x00", "not UTF-8"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_check_non_graph_file(tmp_path, content, reason):
    path = tmp_path / "junk.ncg.json"
    path.write_bytes(content)
    assert_user_error(run("check", path), str(path), reason)


def test_check_newline_in_a_name_stays_one_line(tmp_path):
    d = graph_dict([node("a", "Den\nse", units=3)], [])
    assert_user_error(run("check", write(tmp_path / "nl.ncg.json", d)), "Den\\nse")


def test_bad_options_are_user_errors(tmp_path):
    assert_user_error(run("check"), "GRAPH")
    path = write(tmp_path / "mlp.ncg.json", mlp_dict())
    assert_user_error(run("check", path, "--frobnicate"), "--frobnicate")


# ---- predict -----------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """A graph, its weights and an input file, all consistent."""
    graph = write(tmp_path / "mlp.ncg.json", mlp_dict(features=4, hidden=5, outputs=3))
    net = Network(analyze(load_graph(graph)), seed=123)
    weights = tmp_path / "w.npz"
    save_weights(weights, net.state_dict())
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32),
             unused=np.zeros(2))
    return {"graph": graph, "weights": weights, "input": inputs, "dir": tmp_path}


def in_process(files: dict[str, Path], node_id: str) -> np.ndarray:
    net = Network(analyze(load_graph(files["graph"])), outputs=[node_id], with_losses=False)
    net.load_state_dict(load_weights(files["weights"]))
    x = np.load(files["input"])["x"]
    return net.predict({"x": x}, node_id)


def predict(files: dict[str, Path], *extra: str | Path, weights=None, input=None):
    return run("predict", files["graph"], "--weights", weights or files["weights"],
               "--input", input or files["input"], *extra)


def test_predict_writes_the_default_output(files):
    out = files["dir"] / "y.npy"
    r = predict(files, "--output", out)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "'fc2'" in r.stdout and "[7, 3]" in r.stdout
    y = np.load(out, allow_pickle=False)
    assert y.shape == (7, 3)
    np.testing.assert_allclose(y, in_process(files, "fc2"), rtol=1e-6)
    assert sorted(p.name for p in files["dir"].iterdir()) == ["mlp.ncg.json", "w.npz",
                                                               "x.npz", "y.npy"]


def test_predict_other_node(files):
    out = files["dir"] / "h.npy"
    r = predict(files, "--node", "act", "--output", out)
    assert r.returncode == 0, r.stderr
    y = np.load(out)
    assert y.shape == (7, 5) and np.all(y >= 0)
    np.testing.assert_allclose(y, in_process(files, "act"), rtol=1e-6)


def test_predict_prints_without_output(files):
    r = predict(files)
    assert r.returncode == 0, r.stderr
    printed = np.array([float(v) for v in r.stdout.replace("[", " ").replace("]", " ").split()])
    np.testing.assert_allclose(printed.reshape(7, 3), in_process(files, "fc2"), atol=1e-5)


def test_predict_runs_in_evaluation_mode_and_ignores_targets(files):
    # no "y" array in the input: the loss and its target are not part of predicting
    assert "y" not in np.load(files["input"]).files
    r1, r2 = predict(files), predict(files)
    assert r1.returncode == 0 and r1.stdout == r2.stdout


def save_state(files, change) -> Path:
    state = load_weights(files["weights"])
    change(state)
    path = files["dir"] / "changed.npz"
    save_weights(path, state)
    return path


def test_predict_wrong_weights_shape_names_the_key(files):
    w = save_state(files, lambda s: s.update({"fc1/W": np.zeros((3, 5), np.float32)}))
    line = assert_user_error(predict(files, weights=w), str(w), "fc1/W", "[3, 5]", "[4, 5]")
    assert "expected" in line


def test_predict_missing_weights_key(files):
    w = save_state(files, lambda s: s.pop("fc2/b"))
    assert_user_error(predict(files, weights=w), str(w), "fc2/b", "missing")


def test_predict_missing_weights_file(files):
    w = files["dir"] / "nope.npz"
    assert_user_error(predict(files, weights=w), str(w), "no such file")


@pytest.mark.parametrize("what", ["text", "npy", "graph"])
def test_predict_weights_not_an_npz(files, what):
    w = files["dir"] / f"bad.{what}"
    if what == "text":
        w.write_text("hello")
    elif what == "npy":
        np.save(w, np.zeros(3))
    else:
        w = files["graph"]
    assert_user_error(predict(files, weights=w), str(w), "not a NumPy .npz")


def test_predict_weights_with_python_objects_are_not_unpickled(files):
    w = files["dir"] / "objects.npz"
    np.savez(w, **{"fc1/W": np.array([object()] * 20, dtype=object).reshape(4, 5)})
    assert_user_error(predict(files, weights=w), str(w), "never unpickled")


def test_predict_input_field_missing(files):
    x = files["dir"] / "other.npz"
    np.savez(x, features=np.zeros((2, 4), np.float32))
    line = assert_user_error(predict(files, input=x), str(x), "'x'", "features")
    assert "Input node 'x'" in line


def test_predict_input_wrong_per_sample_shape(files):
    x = files["dir"] / "wide.npz"
    np.savez(x, x=np.zeros((2, 6), np.float32))
    assert_user_error(predict(files, input=x), str(x), "node 'x'", "field 'x'", "[6]", "[4]")


@pytest.mark.parametrize("array, reason", [
    (np.float32(1.5), "single value"),
    (np.array([["a", "b", "c", "d"]]), "expected real numbers"),
    (np.zeros((2, 4), complex), "expected real numbers"),
])
def test_predict_input_that_is_not_samples_of_numbers(files, array, reason):
    x = files["dir"] / "odd.npz"
    np.savez(x, x=array)
    assert_user_error(predict(files, input=x), str(x), "'x'", reason)


def test_predict_input_not_an_npz(files):
    assert_user_error(predict(files, input=files["graph"]), str(files["graph"]), "not a NumPy")
    x = files["dir"] / "absent.npz"
    assert_user_error(predict(files, input=x), str(x), "no such file")


@pytest.mark.parametrize("node_id, names", [("nope", ["--node 'nope'", "no such node"]),
                                             ("loss", ["--node 'loss'", "is a loss"])])
def test_predict_bad_node(files, node_id, names):
    assert_user_error(predict(files, "--node", node_id), *names)


@pytest.mark.parametrize("drop", ["--weights", "--input"])
def test_predict_missing_options(files, drop):
    args = {"--weights": files["weights"], "--input": files["input"]}
    del args[drop]
    flat = [v for kv in args.items() for v in kv]
    assert_user_error(run("predict", files["graph"], *flat), drop, "required")


def test_predict_output_in_a_missing_folder(files):
    out = files["dir"] / "no" / "such" / "y.npy"
    assert_user_error(predict(files, "--output", out), str(out))


def test_predict_invalid_graph(files):
    d = mlp_dict()
    d["nodes"][3]["params"]["units"] = "three"
    graph = write(files["dir"] / "bad.ncg.json", d)
    r = run("predict", graph, "--weights", files["weights"], "--input", files["input"])
    assert_user_error(r, str(graph), "fc2", "units")


def test_predict_missing_graph(files):
    graph = files["dir"] / "absent.ncg.json"
    r = run("predict", graph, "--weights", files["weights"], "--input", files["input"])
    assert_user_error(r, str(graph), "no such file")
