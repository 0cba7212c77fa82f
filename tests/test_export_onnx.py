"""``main.py export --to onnx``: the model put through the dynamo ONNX exporter, run with
onnxruntime, gives our network's outputs (float32 tolerance) with a batch size other than the
one it was traced with; the TorchScript ONNX exporter (``dynamo=False``) takes the exported
model too. Skipped where torch, onnx, onnxscript or onnxruntime is not installed; without the
extra, the command says what to install."""
from __future__ import annotations

import contextlib
import io
import sys
import warnings

import numpy as np
import pytest

from core.export.onnx import export_onnx, missing_packages
from core.export.pytorch import ModelWriter
from core.fileformat import load_graph
from core.network import Network
from core.validate import analyze
from core.weights import save_weights
from tests import export_graphs as eg
from tests.cli_helpers import ROOT, assert_user_error, run
from tests.test_export_pure import CASES, graph_of

EXAMPLES = sorted((eg.ROOT / "resources" / "examples").glob("*.ncg.json"))


@pytest.fixture(scope="module")
def ort():
    if missing_packages():
        pytest.skip(f"not installed: {', '.join(missing_packages())}")
    return pytest.importorskip("onnxruntime")


def session(ort, path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", CASES)
def test_onnx_model_predicts_what_our_network_predicts(ort, name, tmp_path):
    graph = graph_of(name)
    a = analyze(graph)
    save_weights(tmp_path / "w.npz", Network(a, seed=3).state_dict())
    done = export_onnx(graph, tmp_path / "m.onnx", tmp_path / "w.npz")
    w = ModelWriter(a)
    assert done.inputs == [f.name for f in w.inputs] and done.outputs == w.outputs
    sess = session(ort, tmp_path / "m.onnx")
    assert [i.name for i in sess.get_inputs()] == done.inputs
    assert [o.name for o in sess.get_outputs()] == done.outputs
    assert all(not isinstance(i.shape[0], int) for i in sess.get_inputs())  # dynamic batch
    batch = eg.batch_for(a, n=5, seed=8)  # traced with 2 samples
    got = sess.run(None, {f: eg._as_input(batch[f]) for f in done.inputs})
    net = Network(a, outputs=done.outputs, with_losses=False)
    net.load_state_dict(Network(a, seed=3).state_dict())
    for nid, value in zip(done.outputs, got, strict=True):
        np.testing.assert_allclose(value, net.predict(batch, nid), rtol=1e-4, atol=1e-5,
                                   err_msg=nid)


@pytest.mark.parametrize("name", CASES)
def test_the_torchscript_onnx_exporter_takes_the_model_too(ort, torch, name, tmp_path):
    from tests.test_export_pure import as_list, model_and_inputs

    module, model, args = model_and_inputs(torch, name, tmp_path)
    if hasattr(model, "packed"):  # packed sequences are not traceable: the padded form
        model.packed = False
    names = list(module.INPUTS)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(tmp_path / "ts.onnx"), dynamo=False,
                          input_names=names, output_names=list(module.OUTPUTS),
                          dynamic_axes={n: {0: "batch"} for n in names})
    got = session(ort, tmp_path / "ts.onnx").run(
        None, {n: a.numpy() for n, a in zip(names, args, strict=True)})
    with torch.no_grad():
        want = as_list(model(*args))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-6)


def test_cli_onnx_equals_main_py_predict(ort, tmp_path):
    path = next(p for p in EXAMPLES if p.name.startswith("cnn_digits"))
    a = analyze(load_graph(path))
    save_weights(tmp_path / "w.npz", Network(a, seed=7).state_dict())
    batch = eg.batch_for(a, n=4, seed=1)
    np.savez(tmp_path / "x.npz", **batch)
    r = run("export", path, "--to", "onnx", "-o", tmp_path / "m.onnx", "--weights",
            tmp_path / "w.npz")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and r.stderr == ""
    r = run("predict", path, "--weights", tmp_path / "w.npz", "--input", tmp_path / "x.npz",
            "--output", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    sess = session(ort, tmp_path / "m.onnx")
    (got,) = sess.run(None, {i.name: eg._as_input(batch[i.name]) for i in sess.get_inputs()})
    np.testing.assert_allclose(got, np.load(tmp_path / "y.npy"), rtol=1e-4, atol=1e-5)


def test_without_the_extra_one_line_says_what_to_install(tmp_path):
    code = ("import runpy, sys; sys.modules['onnx'] = None; "
            f"sys.argv = ['main.py', 'export', {str(EXAMPLES[0])!r}, '--to', 'onnx', '-o', "
            f"{str(tmp_path / 'm.onnx')!r}]; "
            f"runpy.run_path({str(ROOT / 'main.py')!r}, run_name='__main__')")
    import subprocess
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert_user_error(r, "onnx", "pip install 'neurocanvas[onnx]'", "'.[onnx]'")
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_needs_an_output_file():
    assert_user_error(run("export", EXAMPLES[0], "--to", "onnx"), "-o")
