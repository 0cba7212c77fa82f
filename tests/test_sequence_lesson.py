"""The variable-length sequence examples (resources/examples/lstm_parity*.ncg.json): an
Embedding -> LSTM on the built-in ``parity`` learns when its Input names the lengths field,
and the same model reading the padding as data does worse on the same data, from the same
initial weights; and the editor shows the lengths in its shape labels (``[T≤16, 8]``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits  # comes with scikit-learn

from core.fileformat import load_graph
from core.network import Network
from core.training import EpochEvent, Trainer, parse_training
from core.validate import analyze

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small networks: BLAS threads only fight over a busy machine's cores."""
    with threadpool_limits(limits=1):
        yield


def train(name: str) -> tuple[Trainer, list[EpochEvent], dict]:
    """Train an example with its own settings (seeded) on the CPU, to the end; also return
    its initial weights."""
    a = analyze(load_graph(EXAMPLES / f"{name}.ncg.json"))
    assert a.ok, [str(p) for p in a.problems]
    init = Network(a, seed=a.graph.training["seed"]).state_dict()
    events: list = []
    trainer = Trainer(a, parse_training(a.graph.training, device="cpu"),
                      on_event=events.append, queue_events=False)
    done = trainer.run()
    assert done.reason == "finished", done.error
    return trainer, [e for e in events if isinstance(e, EpochEvent)], init


@pytest.fixture(scope="module")
def runs():
    with threadpool_limits(limits=1):
        return {name: train(name) for name in ("lstm_parity", "lstm_parity_padded")}


def test_the_twins_differ_only_in_the_lengths_and_train_on_the_same_data():
    masked = load_graph(EXAMPLES / "lstm_parity.ncg.json")
    padded = load_graph(EXAMPLES / "lstm_parity_padded.ncg.json")
    assert masked.nodes["x"].params["lengths"] == "lengths"
    assert "lengths" not in padded.nodes["x"].params
    assert masked.training == padded.training
    assert masked.training["dataset"]["name"] == "parity"
    for nid, n in masked.nodes.items():
        assert n.type == padded.nodes[nid].type
        if nid != "x":
            assert n.params == padded.nodes[nid].params, nid
    assert {n.type for n in masked.nodes.values()} >= {"Embedding", "LSTM", "CrossEntropyLoss"}


def test_with_lengths_the_lstm_learns_parity_and_without_them_it_does_worse(runs):
    trainer, masked, init = runs["lstm_parity"]
    p_trainer, padded, p_init = runs["lstm_parity_padded"]
    assert init.keys() == p_init.keys()  # the same initial weights
    for k in init:
        np.testing.assert_array_equal(init[k], p_init[k])
    np.testing.assert_array_equal(trainer.val_set["x"], p_trainer.val_set["x"])  # same data
    assert set(trainer.val_set["y"].tolist()) == {0, 1}  # chance is about 0.5
    acc, p_acc = masked[-1].val_accuracy, padded[-1].val_accuracy
    assert acc > 0.9, acc  # measured: 1.0 (from the 4th epoch on)
    assert acc > p_acc + 0.3, (acc, p_acc)  # measured: 0.505, chance
    assert masked[-1].val_loss < 0.5 * padded[-1].val_loss


def test_the_trained_model_ignores_what_stands_in_the_padding(runs):
    trainer = runs["lstm_parity"][0]
    val = {k: trainer.val_set[k] for k in trainer.val_set.fields}
    noisy = dict(val)
    pad = np.arange(val["x"].shape[1])[None, :] >= val["lengths"][:, None]
    assert pad.any()
    rng = np.random.default_rng(0)
    noisy["x"] = np.where(pad, rng.integers(1, 3, size=val["x"].shape), val["x"])
    clean = trainer.net.forward(val, train=False).values["fc"]
    scrambled = trainer.net.forward(noisy, train=False).values["fc"]
    np.testing.assert_allclose(scrambled, clean, rtol=1e-5, atol=1e-6)


# ---- the editor --------------------------------------------------------------------------
def test_the_editor_shows_the_lengths_in_shape_labels_and_the_inspector(qtbot, tmp_path):
    pytest.importorskip("PySide6")
    from gui.canvas import GraphScene
    from gui.document import Document
    from gui.inspector.node_editor import NodeEditor

    doc = Document()
    doc.open(EXAMPLES / "lstm_parity.ncg.json")
    scene = GraphScene(doc)
    try:
        shown = {nid: item.shape_text for nid, item in scene.nodes.items()}
        assert shown["x"] == "[T≤16]" and shown["embed"] == "[T≤16, 8]"
        assert shown["lstm"] == "[32]" and shown["fc"] == "[2]"  # the time axis is gone
        assert "1 to 16 valid steps" in scene.nodes["embed"].toolTip()
        assert "field 'lengths'" in scene.nodes["x"].toolTip()
        assert scene.nodes["lstm"].lengths_note is None
        editor = NodeEditor(doc)
        qtbot.addWidget(editor)
        editor.load("embed")
        assert editor.shape_label.text() == "[T≤16, 8]"
        assert "field 'lengths'" in editor.lengths_label.text()
        assert not editor.lengths_label.isHidden()
        editor.load("fc")
        assert editor.shape_label.text() == "[2]" and editor.lengths_label.isHidden()
        # without lengths, the labels are the plain shapes
        doc.set_param("x", "lengths", None)
        doc.flush()
        shown = {nid: item.shape_text for nid, item in scene.nodes.items()}
        assert shown["x"] == "[16]" and shown["embed"] == "[16, 8]"
        assert scene.nodes["embed"].lengths_note is None
    finally:
        scene.detach()


def test_a_recurrent_region_with_lengths_shows_its_steps_bound(qtbot, tmp_path):
    pytest.importorskip("PySide6")
    from gui.canvas import GraphScene
    from gui.document import Document
    from tests.graphs import edge, graph_dict, node, write

    d = graph_dict(
        [node("x", "Input", shape=[50, 16], sequence=True, lengths="n"),
         node("d", "Dense", units=8), node("c", "TimeCollect", mode="all"),
         node("last", "TimeCollect", mode="last")],
        [edge("x", "d"), edge("d", "c"), edge("d", "last")])
    doc = Document()
    doc.open(write(tmp_path / "r.ncg.json", d))
    scene = GraphScene(doc)
    try:
        shown = {nid: item.shape_text for nid, item in scene.nodes.items()}
        assert shown["x"] == "[16] per step, T≤50"
        assert shown["d"] == "[8] per step, T≤50"
        assert shown["c"] == "[T≤50, 8]" and shown["last"] == "[8]"
    finally:
        scene.detach()
