"""Importing PyTorch modules (core/importer, ``main.py import``, docs/import.md).

- Round trip: every example graph and every graph of tests/export_graphs.py exported to
  PyTorch and imported again is the same graph (types, parameters, edges, delays, shared
  parameters) apart from its loss side (a module has no loss), with the same ids where the
  exported code names them, and the same weights, array for array.
- Modules written by hand (a CNN with BatchNorm, an LSTM classifier over an Embedding, a
  residual block with two inputs, a time loop) import, and our network predicts what the
  torch module predicts.
- What cannot be mapped is refused with the operation and its source line; the command
  line says it in one line, exit status 2.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from core.export.pytorch import ModelWriter
from core.fileformat import load_graph
from core.importer import TorchImportError, import_torch, parse_shape
from core.network import Network, default_output
from core.validate import analyze
from core.weights import load_weights, save_weights
from tests import export_graphs as eg
from tests.cli_helpers import assert_user_error, run

EXAMPLES = sorted((eg.ROOT / "resources" / "examples").glob("*.ncg.json"))
# graphs of export_graphs that a module can express (a loss inside the recurrent region is
# computed in the exported losses, not in forward: what forward returns is imported)
GRAPHS = [n for n in eg.GRAPHS]


# ---- comparing graphs ------------------------------------------------------------------------
def model_side(a) -> set[str]:
    """The nodes of a graph a module holds: what forward's outputs depend on (no Target, no
    loss)."""
    outs = _outputs(a)
    keep = set(outs)
    for o in outs:
        keep |= nx.ancestors(a.nx_graph, o)
    return {n for n in keep if a.layers[n].data_role != "target" and not a.layers[n].is_loss}


def _outputs(a) -> list[str]:
    """What feeds the losses, apart from the targets (a triplet loss: its three inputs)."""
    losses = a.losses()
    if not losses:
        return [default_output(a)]
    target_side = set()
    for nid, layer in a.layers.items():
        if layer.data_role == "target":
            target_side |= {nid} | nx.descendants(a.nx_graph, nid)
    outs = []
    for nid in losses:
        for ref in a.inputs[nid].values():
            if ref.src not in outs and ref.src not in target_side:
                outs.append(ref.src)
    return outs


def labelled(a, keep: set[str]) -> nx.MultiDiGraph:
    """The graph with types and resolved parameters on its nodes, ports and delays on its
    edges. An Identity node is left out (its input goes where its output went): PyTorch
    code computes nothing for it, so there is nothing to trace."""
    g = nx.MultiDiGraph()
    identity = {n for n in a.graph.nodes if a.graph.nodes[n].type == "Identity"}

    def source(nid: str) -> str:
        while nid in identity:
            nid = next(e.src for e in a.graph.edges if e.dst == nid)
        return nid
    keep = keep - identity
    for nid in keep:
        params = {k: v for k, v in a.layers[nid].params.items() if k not in ("shared_with",
                                                                               "field")}
        if "shape" in params and a.layers[nid].data_role is None:
            params["shape"] = tuple(a.shapes[nid])  # a Reshape's -1 is exported resolved
        # the ids the exported code spells out must come back (the exporter writes a builtin
        # such as sum as sum_); Inputs are named after forward's arguments and a TimeCollect
        # after the node it collects
        named = a.layers[nid].data_role is None and not a.layers[nid].collects_steps
        g.add_node(nid, type=a.graph.nodes[nid].type, params=params,
                   name=nid.rstrip("_") if named else None)
    for e in a.graph.edges:
        if source(e.src) in keep and e.dst in keep:
            g.add_edge(source(e.src), e.dst, port=a.layers[e.dst].input_ports(
                a.layers[e.dst].params)[0] if e.dst_port is None else e.dst_port,
                delay=e.delay)
    return g


def match(orig, imported, outputs) -> dict[str, str]:
    """orig node id -> imported node id, the graphs being equal up to renaming.

    An output inside the recurrent region comes back through a TimeCollect "all": forward
    returns its steps stacked, and that is how a graph gives a whole sequence."""
    keep = {n for n in model_side(orig) if orig.graph.nodes[n].type != "Identity"}
    stacked = {n for n in outputs if imported.graph.nodes[n].type == "TimeCollect"
               and imported.layers[n].params["mode"] == "all"}
    stacked = {n for n in stacked if not any(orig.layers[o].collects_steps
                                             for o in _outputs(orig))}
    g1 = labelled(orig, keep)
    g2 = labelled(imported, set(imported.graph.nodes) - stacked)
    gm = nx.algorithms.isomorphism.MultiDiGraphMatcher(
        g1, g2, node_match=lambda x, y: x == y,
        edge_match=lambda x, y: sorted((d["port"], d["delay"]) for d in x.values())
        == sorted((d["port"], d["delay"]) for d in y.values()))
    assert gm.is_isomorphic(), (sorted((n, d["type"], d["params"]) for n, d in g1.nodes(data=True)),
                                sorted((n, d["type"], d["params"]) for n, d in g2.nodes(data=True)))
    mapping = gm.mapping
    for nid in keep:  # shared parameters: the same owner on both sides (a chain a <- b <- c
        # comes back as a <- b, a <- c: the module is called three times)
        owner = orig.shared_root.get(nid, nid)
        assert imported.shared_root.get(mapping[nid], mapping[nid]) == mapping[owner]
    return mapping


def roundtrip(graph, tmp_path: Path):
    """(original analysis, imported result, imported analysis, our weights, the model)."""
    from tests.torch_ref import need_torch

    torch = need_torch()
    a = analyze(graph)
    assert a.ok, a.problems
    module, path = eg.export_module(graph, tmp_path)
    model = module.Model()
    state = Network(a, seed=3).state_dict()
    w = tmp_path / "w.npz"
    save_weights(w, state)
    module.load_weights(model, w)
    fields = ModelWriter(a).inputs
    with torch.no_grad():
        result = import_torch(str(path), model=model, name="Model",
                              input_shapes=[f.shape for f in fields],
                              input_dtypes=[f.dtype for f in fields])
    return a, result, analyze(result.graph), load_weights(w), model


# ---- round trip ------------------------------------------------------------------------------
def _check_roundtrip(graph, tmp_path):
    a, result, b, state, _ = roundtrip(graph, tmp_path)
    assert b.ok, b.problems
    assert not b.losses()  # a module has no loss: the user adds one
    mapping = match(a, b, result.outputs)
    # the same weights, every array
    keep = set(mapping)
    mine = {k: v for k, v in state.items() if k.split("/")[0] in keep}
    theirs = {f"{_inverse(mapping)[k.split('/')[0]]}/{k.split('/')[1]}": v
              for k, v in result.weights.items()}
    assert set(theirs) == set(mine)
    for k in mine:
        np.testing.assert_array_equal(theirs[k], mine[k].astype(np.float32), err_msg=k)
    assert result.max_difference < 1e-4
    # every node's position is set by the layout: no two nodes in one place
    assert len({n.pos for n in result.graph.nodes.values()}) == len(result.graph.nodes)


def _inverse(mapping: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in mapping.items()}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_comes_back_from_pytorch(torch, path, tmp_path):
    _check_roundtrip(load_graph(path), tmp_path)


@pytest.mark.parametrize("name", GRAPHS)
def test_every_node_type_comes_back_from_pytorch(torch, name, tmp_path):
    _check_roundtrip(eg.GRAPHS[name](), tmp_path)


def test_the_imported_graph_predicts_what_the_original_predicts(torch, tmp_path):
    graph = load_graph(EXAMPLES[0])
    a, result, b, state, model = roundtrip(graph, tmp_path)
    batch = eg.batch_for(a, n=5, seed=4)
    net = Network(a, outputs=[default_output(a)], with_losses=False)
    net.load_state_dict(state)
    mine = Network(b, outputs=result.outputs, with_losses=False)
    mine.load_state_dict(result.weights)
    x = {k: v for k, v in batch.items() if k in [f.name for f in ModelWriter(a).inputs]}
    np.testing.assert_allclose(mine.predict(x, result.outputs[0]),
                               net.predict(x, default_output(a)), rtol=1e-5, atol=1e-6)


# ---- modules written by hand -----------------------------------------------------------------
HAND = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class SmallCNN(nn.Module):
        def __init__(self, classes: int = 10):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(8, 16, kernel_size=(3, 3), padding="same", bias=False),
                nn.BatchNorm2d(16, momentum=0.2), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
            )
            self.drop = nn.Dropout(0.25)
            self.head = nn.Linear(16, classes)

        def forward(self, x):
            x = self.features(x)
            x = torch.flatten(x, 1)
            return self.head(self.drop(x))


    class LSTMClassifier(nn.Module):
        def __init__(self, vocab=50, dim=8, hidden=16, classes=3):
            super().__init__()
            self.embed = nn.Embedding(vocab, dim)
            self.lstm = nn.LSTM(dim, hidden, batch_first=True)
            self.bn = nn.BatchNorm1d(hidden)
            self.out = nn.Linear(hidden, classes)

        def forward(self, tokens):
            out, (h, c) = self.lstm(self.embed(tokens))
            z = F.relu(self.bn(h[-1]))
            return self.out(z)


    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 6)
            self.b = nn.Linear(6, 6)
            self.c = nn.Linear(12, 4)

        def forward(self, x, y):
            h = torch.relu(self.a(x)) + self.b(y) + x
            g = h * torch.sigmoid(x)
            return self.c(torch.cat([g, y], dim=1)).softmax(dim=-1), F.leaky_relu(h, 0.2)


    class Elman(nn.Module):
        def __init__(self):
            super().__init__()
            self.wx = nn.Linear(2, 8)
            self.wh = nn.Linear(8, 8, bias=False)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            h = x.new_zeros(x.shape[0], 8)
            steps = []
            for t in range(5):
                h = torch.tanh(self.wx(x[:, t]) + self.wh(h))
                steps.append(h)
            return self.fc(h), torch.stack(steps, dim=1).mean(dim=1)


    class Gelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return F.gelu(self.fc(x))


    class Dilated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, dilation=2)

        def forward(self, x):
            return self.conv(x)


    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(x)
            return x


    class Direct(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4, 4))

        def forward(self, x):
            return x @ self.w
''')


@pytest.fixture
def hand(tmp_path) -> Path:
    path = tmp_path / "hand.py"
    path.write_text(HAND, encoding="utf-8")
    return path


def _predicts_like_torch(torch, result, model, inputs):
    b = analyze(result.graph)
    assert b.ok, b.problems
    net = Network(b, outputs=result.outputs, with_losses=False)
    net.load_state_dict(result.weights)
    model.eval()
    with torch.no_grad():
        theirs = model(*[torch.from_numpy(v) for v in inputs])
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    fields = [result.graph.nodes[n].params["field"] for n in list(result.graph.nodes)
              [:len(inputs)]]
    for out, ref in zip(result.outputs, theirs, strict=True):
        np.testing.assert_allclose(net.predict(dict(zip(fields, inputs, strict=True)), out),
                                   ref.numpy(), rtol=1e-5, atol=1e-5)


def _load(torch, path, cls):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"hand_{cls}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, cls)()


def _train_a_little(torch, model, inputs):
    """A few steps, so that BatchNorm's running statistics are not the initial ones."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        out = model(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        out.pow(2).mean().backward()
        opt.step()


def test_a_cnn_with_batchnorm_written_by_hand(torch, hand, tmp_path):
    model = _load(torch, hand, "SmallCNN")
    x = np.random.default_rng(0).standard_normal((6, 1, 12, 12)).astype(np.float32)
    _train_a_little(torch, model, [torch.from_numpy(x)])
    state = tmp_path / "state.pt"
    torch.save({"model_state_dict": model.state_dict(), "epoch": 3}, state)
    result = import_torch(f"{hand}:SmallCNN", input_shapes=[(1, 12, 12)], weights=str(state))
    g = result.graph
    assert [n.type for n in g.nodes.values()] == [
        "Input", "Conv2D", "BatchNorm", "ReLU", "MaxPool2D", "Conv2D", "BatchNorm", "ReLU",
        "GlobalAvgPool2D", "Dropout", "Dense"]
    assert g.nodes["features_0"].params == {"filters": 8, "kernel_size": 3, "padding": "same"}
    assert g.nodes["features_4"].params["bias"] is False
    assert g.nodes["features_5"].params == {"momentum": 0.2}
    assert result.loaded == "its 'model_state_dict' entry"
    np.testing.assert_array_equal(result.weights["features_1/running_mean"],
                                  model.features[1].running_mean.numpy())
    assert np.any(result.weights["features_1/running_mean"] != 0)
    _predicts_like_torch(torch, result, model, [x])


def test_an_lstm_classifier_over_an_embedding_written_by_hand(torch, hand):
    model = _load(torch, hand, "LSTMClassifier")
    result = import_torch(str(hand), model=model, input_shapes=[(7,)], input_dtypes=["int64"])
    g = result.graph
    assert [n.type for n in g.nodes.values()] == ["Input", "Embedding", "LSTM", "BatchNorm",
                                                 "ReLU", "Dense"]
    assert g.nodes["tokens"].params["dtype"] == "int64"
    assert "return_sequences" not in g.nodes["lstm"].params  # h[-1]: the last state
    tokens = np.random.default_rng(1).integers(0, 50, (4, 7))
    _predicts_like_torch(torch, result, model, [tokens])


def test_two_inputs_merges_and_two_outputs(torch, hand):
    model = _load(torch, hand, "TwoInputs")
    result = import_torch(str(hand), model=model, input_shapes=[(6,), (6,)])
    g = result.graph
    assert g.nodes["h"].type == "Add" and g.nodes["h"].params == {"inputs": 3}
    assert g.nodes["cat"].params == {"axis": 0}
    assert len(result.outputs) == 2
    rng = np.random.default_rng(2)
    _predicts_like_torch(torch, result, model, [rng.standard_normal((3, 6)).astype(np.float32),
                                                rng.standard_normal((3, 6)).astype(np.float32)])


def test_a_time_loop_becomes_a_drawn_cycle(torch, hand):
    model = _load(torch, hand, "Elman")
    result = import_torch(str(hand), model=model, input_shapes=[(5, 2)])
    g = result.graph
    assert g.nodes["x"].params["sequence"] is True
    delays = [(e.src, e.dst, e.delay) for e in g.edges if e.delay]
    assert len(delays) == 1 and delays[0][2] == 1
    assert g.nodes[delays[0][0]].type == "Tanh" and delays[0][1] == "wh"
    modes = sorted(n.params.get("mode", "last") for n in g.nodes.values()
                   if n.type == "TimeCollect")
    assert modes == ["last", "mean"]
    x = np.random.default_rng(3).standard_normal((4, 5, 2)).astype(np.float32)
    _predicts_like_torch(torch, result, model, [x])


# ---- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,shape,words", [
    ("Gelu", (4,), ["F.gelu", "hand.py:", "F.gelu(self.fc(x))"]),
    ("Dilated", (1, 9, 9), ["nn.Conv2d", "dilation", "self.conv(x)"]),
    ("Branchy", (4,), ["torch.fx cannot trace", "if x.sum() > 0"]),
    ("Direct", (4,), ["self.w", "x @ self.w"]),
])
def test_what_cannot_be_mapped_is_refused_with_its_line(torch, hand, cls, shape, words):
    with pytest.raises(TorchImportError) as err:
        import_torch(f"{hand}:{cls}", input_shapes=[shape])
    for w in words:
        assert w in str(err.value), str(err.value)


def test_bad_shapes_class_and_state(torch, hand, tmp_path):
    with pytest.raises(TorchImportError, match="fails on inputs of shape"):
        import_torch(f"{hand}:SmallCNN", input_shapes=[(3, 12, 12)])
    with pytest.raises(TorchImportError, match="takes 2 inputs"):
        import_torch(f"{hand}:TwoInputs", input_shapes=[(6,)])
    with pytest.raises(TorchImportError, match="SmallCNN"):  # lists the classes there
        import_torch(f"{hand}:Nope", input_shapes=[(6,)])
    bad = tmp_path / "bad.pt"
    torch.save({"head.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(TorchImportError, match="does not fit the model"):
        import_torch(f"{hand}:SmallCNN", input_shapes=[(1, 12, 12)], weights=str(bad))
    assert parse_shape("1,28,28") == (1, 28, 28) and parse_shape("") == ()
    with pytest.raises(TorchImportError):
        parse_shape("1,a")


# ---- the command line --------------------------------------------------------------------------
def test_main_py_import_writes_a_graph_and_its_weights(torch, hand, tmp_path):
    out, w = tmp_path / "cnn.ncg.json", tmp_path / "cnn.npz"
    r = run("import", f"{hand}:SmallCNN", "--input-shape", "1,12,12", "--args", '{"classes": 4}',
            "-o", out, "--save-weights", w)
    assert r.returncode == 0, r.stderr
    assert "no loss" in r.stdout
    graph = load_graph(out)
    assert graph.nodes["head"].params == {"units": 4}
    chk = run("check", out)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    x = tmp_path / "x.npz"
    np.savez(x, x=np.zeros((2, 1, 12, 12), np.float32))
    pr = run("predict", out, "--weights", w, "--input", x)
    assert pr.returncode == 0, pr.stderr


def test_main_py_import_refuses_in_one_line(torch, hand, tmp_path):
    r = run("import", f"{hand}:Gelu", "--input-shape", "4", "-o", tmp_path / "g.ncg.json")
    assert_user_error(r, "F.gelu", "hand.py:")
    assert not (tmp_path / "g.ncg.json").exists()


def test_without_torch_it_says_what_to_install(tmp_path):
    """torch hidden from a child process: one line naming what to install, exit status 2."""
    (tmp_path / "torch.py").write_text("raise ImportError('hidden for the test')\n")
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, str(eg.ROOT / "main.py"), "import", "m.py:M",
                        "--input-shape", "4", "-o", str(tmp_path / "g.ncg.json")],
                       cwd=eg.ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert_user_error(r, "pip install torch")


# ---- the editor --------------------------------------------------------------------------------
@pytest.fixture
def window(qtbot):
    from gui.main_window import MainWindow

    w = MainWindow()
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.document.undo_stack.setClean()
    w.close()
    w.deleteLater()


def test_the_dialog_imports_in_a_process_of_its_own(torch, qtbot, hand, tmp_path, window):
    from PySide6.QtGui import QAction

    from gui.import_dialog import ImportDialog

    action = window.findChild(QAction, "actionImportPyTorch")
    assert action is not None and action.isVisible()
    assert action in window.menuBar().actions()[0].menu().actions()  # in File
    dialog = ImportDialog(window)
    dialog.show()
    dialog.set_file(str(hand))
    assert [dialog.class_box.itemText(i) for i in range(3)] == ["SmallCNN", "LSTMClassifier",
                                                               "TwoInputs"]
    dialog.class_box.setCurrentText("Gelu")
    dialog.shapes_edit.setText("4")
    dialog.start()
    assert dialog.running()  # the UI thread goes on while the child traces
    qtbot.waitUntil(lambda: not dialog.running(), timeout=120_000)
    assert "F.gelu" in dialog.message.text() and dialog.message.isVisible()
    dialog.grab().save(str(tmp_path / "import-error.png"))

    dialog.class_box.setCurrentText("SmallCNN")
    dialog.shapes_edit.setText("1, 12, 12")
    dialog.args_edit.setText('{"classes": 4}')
    dialog.imported.connect(window.open_imported)
    with qtbot.waitSignal(dialog.imported, timeout=120_000) as got:
        dialog.start()
    text, weights, report = got.args
    assert "no loss" in report
    g = window.document.graph
    assert g.nodes["head"].params == {"units": 4}
    assert window.document.path is None and window.document.dirty  # new, unsaved
    window.grab().save(str(tmp_path / "imported.png"))
    # no loss yet, but the weights are held for the first run, whatever is added to it
    assert set(window.training._loaded) == set(load_weights(weights))
    doc = window.document
    y = doc.add_node("Target", (0.0, 300.0))
    doc.set_param(y, "shape", [])
    loss = doc.add_node("CrossEntropyLoss", (300.0, 300.0))
    doc.connect("head", None, loss, "pred")
    doc.connect(y, None, loss, "target")
    doc.flush()
    assert window.training._loaded is not None
    assert set(window.training._loaded) == set(load_weights(weights))
    np.testing.assert_array_equal(window.training._loaded["head/W"],
                                  load_weights(weights)["head/W"])
    dialog.cleanup()


def test_the_dialog_says_what_is_missing(qtbot):
    from gui.import_dialog import ImportDialog, module_classes

    dialog = ImportDialog()
    qtbot.addWidget(dialog)
    dialog.start()
    assert "module file" in dialog.message.text() and not dialog.running()
    assert module_classes("class A(nn.Module):\n    pass\nclass B:\n    pass\n") == ["A", "B"]
