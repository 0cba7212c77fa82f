"""The editor's document: every edit is one undo step that restores the exact file."""
from __future__ import annotations

import json

import pytest

from core.errors import CycleError, EdgeError, GraphEditError, GraphFileError
from core.fileformat import load_graph
from gui.document import Document, EditLockedError
from tests.cli_helpers import ROOT

pytest.importorskip("pytestqt")

MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"


@pytest.fixture
def doc(qtbot):
    d = Document()
    d.open(MLP)
    return d


def file_dict(doc: Document) -> dict:
    return json.loads(doc.to_json())


def undo_redo_round_trip(doc: Document, edit) -> tuple[dict, dict]:
    """Apply ``edit``; check undo gives the file before and redo the file after."""
    before = file_dict(doc)
    n = doc.undo_stack.count()
    edit()
    after = file_dict(doc)
    assert after != before
    assert doc.undo_stack.count() == n + 1, "an edit must be exactly one undo step"
    doc.undo_stack.undo()
    assert file_dict(doc) == before
    doc.undo_stack.redo()
    assert file_dict(doc) == after
    return before, after


def test_add_node_is_one_step_with_a_fresh_valid_id(doc):
    ids = []
    undo_redo_round_trip(doc, lambda: ids.append(doc.add_node("Dense", (5, 7))))
    node = doc.graph.nodes[ids[0]]
    assert node.type == "Dense" and node.pos == (5.0, 7.0) and node.params == {"units": 64}
    with pytest.raises(GraphEditError, match="Dens"):
        doc.add_node("Dens")


def test_delete_and_undo_restores_node_edges_and_file_order(doc):
    edges_before = [str(e) for e in doc.graph.edges]
    undo_redo_round_trip(doc, lambda: doc.delete(["act1"]))
    doc.undo_stack.undo()
    assert [str(e) for e in doc.graph.edges] == edges_before
    assert list(doc.graph.nodes)[2] == "act1"


def test_delete_edges_only(doc):
    edge = doc.graph.edges[1]
    undo_redo_round_trip(doc, lambda: doc.disconnect(edge))


def test_move_is_one_step_and_nudges_merge(doc):
    old = doc.graph.nodes["fc1"].pos
    undo_redo_round_trip(doc, lambda: doc.move({"fc1": (old, (old[0] + 50, old[1]))}))
    n = doc.undo_stack.count()
    p = doc.graph.nodes["fc1"].pos
    for i in range(1, 4):  # three arrow-key nudges
        q = doc.graph.nodes["fc1"].pos
        doc.move({"fc1": (q, (p[0] + 10 * i, p[1]))}, merge=True)
    assert doc.undo_stack.count() == n + 1
    doc.undo_stack.undo()
    assert doc.graph.nodes["fc1"].pos == p


def test_connect_checks_and_replaces_the_edge_feeding_a_port(doc):
    with pytest.raises(CycleError, match="delay"):
        doc.connect("fc2", "out", "fc1", "in")
    new = doc.add_node("Dense", (0, 0))
    undo_redo_round_trip(doc, lambda: doc.connect("x", "out", new, "in"))
    # act1 is fed by fc1; connecting x into act1 replaces that edge in one step
    undo_redo_round_trip(doc, lambda: doc.connect("x", "out", "act1", "in"))
    assert [e.src for e in doc.graph.in_edges("act1")] == ["x"]
    with pytest.raises(EdgeError, match="no input port"):
        doc.connect("fc2", "out", "loss", "nope")


def test_delay_edge_closes_a_cycle_and_can_be_made_instant_again_only_if_legal(doc):
    # fc2 -> fc1 with a delay is a legal recurrent edge; the port of fc1 is taken, so it
    # replaces x -> fc1. Undo puts x -> fc1 back.
    undo_redo_round_trip(doc, lambda: doc.connect("fc2", "out", "fc1", "in", delay=1))
    edge = next(e for e in doc.graph.edges if e.delay)
    with pytest.raises(CycleError):
        doc.set_delay(edge, 0)


def test_param_change_updates_shapes_and_undoes(doc):
    assert doc.analysis.shapes["fc1"] != (32,)
    undo_redo_round_trip(doc, lambda: doc.set_param("fc1", "units", 32))
    assert doc.analysis.shapes["fc1"] == (32,)
    doc.undo_stack.undo()
    assert doc.analysis.shapes["fc1"] != (32,)


def test_rename_checks_uniqueness_and_undoes(doc):
    undo_redo_round_trip(doc, lambda: doc.rename("fc1", "hidden"))
    assert "hidden" in doc.graph.nodes and doc.graph.edges[0].dst == "hidden"
    with pytest.raises(GraphEditError, match="taken"):
        doc.rename("hidden", "fc2")
    with pytest.raises(GraphEditError):
        doc.rename("hidden", "bad id!")


def test_label_training_and_name_are_undoable(doc):
    undo_redo_round_trip(doc, lambda: doc.set_label("fc1", "first layer"))
    training = dict(doc.graph.training, epochs=99)
    undo_redo_round_trip(doc, lambda: doc.set_training(training))
    undo_redo_round_trip(doc, lambda: doc.set_name("renamed"))


def test_paste_gives_fresh_ids_and_keeps_inner_edges(doc):
    snap = doc.snapshot(["fc1", "act1"])
    ids = []
    undo_redo_round_trip(doc, lambda: ids.extend(doc.paste(snap, (100, 0))))
    assert len(ids) == 2 and not set(ids) & {"fc1", "act1"}
    assert any(e.src == ids[0] and e.dst == ids[1] for e in doc.graph.edges)
    assert doc.graph.nodes[ids[0]].pos[0] == doc.graph.nodes["fc1"].pos[0] + 100
    with pytest.raises(GraphFileError):
        doc.paste({"nodes": "not a list"})


def test_auto_layout_is_one_step_and_orders_left_to_right(doc):
    for nid in doc.graph.nodes:  # pile every node on one spot
        doc.graph.nodes[nid].pos = (0.0, 0.0)
    undo_redo_round_trip(doc, doc.auto_layout)
    x = {nid: n.pos[0] for nid, n in doc.graph.nodes.items()}
    assert x["x"] < x["fc1"] < x["act1"] < x["fc2"] < x["loss"]


def test_validation_runs_after_every_edit_and_is_signalled(doc, qtbot):
    with qtbot.waitSignal(doc.analysis_changed, timeout=2000) as sig:
        doc.delete(["act1"])
    assert not sig.args[0].ok
    with qtbot.waitSignal(doc.analysis_changed, timeout=2000) as sig:
        doc.undo_stack.undo()
    assert sig.args[0].ok


def test_save_open_round_trip_dirty_and_atomic(doc, tmp_path, qtbot):
    assert not doc.dirty
    doc.set_param("fc1", "units", 48)
    assert doc.dirty
    out = tmp_path / "g.ncg.json"
    doc.save(out)
    assert not doc.dirty and doc.path == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.ncg.json"], "no temporary file left"
    other = Document()
    other.open(out)
    assert file_dict(other) == file_dict(doc)
    assert load_graph(out).nodes["fc1"].params["units"] == 48


def test_invalid_graph_opens_and_non_graph_is_refused(doc, tmp_path):
    g = json.loads(MLP.read_text())
    g["edges"] = [e for e in g["edges"] if e["to"] != "act1"]
    bad = tmp_path / "bad.ncg.json"
    bad.write_text(json.dumps(g))
    doc.open(bad)
    assert not doc.analysis.ok and "act1" in doc.graph.nodes
    junk = tmp_path / "junk.ncg.json"
    junk.write_text("{ this is not json")
    with pytest.raises(GraphFileError):
        doc.open(junk)
    assert doc.path == bad, "a refused file leaves the open document as it was"


def test_locked_document_refuses_edits(doc):
    doc.set_locked(True)
    with pytest.raises(EditLockedError, match="training"):
        doc.add_node("Dense")
    doc.set_locked(False)
    doc.add_node("Dense")


# ---- the dataset and "can train" -----------------------------------------------------------------
def test_the_status_says_whether_the_graph_can_train_and_what_it_lacks(doc):
    assert doc.analysis.can_train and doc.status_text == "Ready to train"
    training = dict(doc.graph.training)
    doc.set_training({k: v for k, v in training.items() if k != "dataset"})
    a = doc.flush()
    assert a.ok and not a.can_train  # the graph is fine; training has no data
    assert doc.status_text == "Cannot train yet: needs a dataset"
    assert [p.param for p in a.not_ready] == ["training.dataset"]
    doc.undo_stack.undo()
    assert doc.flush().can_train and doc.status_text == "Ready to train"
    doc.delete(["loss"])
    assert doc.flush().not_ready and doc.status_text == "Cannot train yet: needs a loss"


def test_a_new_input_takes_its_shape_from_the_dataset(doc):
    nid = doc.add_node("Input", (0, 0))
    assert doc.graph.nodes[nid].params == {"shape": "auto"}
    a = doc.flush()
    assert a.shapes[nid] == (64,) and not a.problems_of(nid)  # the digits' x
    doc.new()
    nid = doc.add_node("Input", (0, 0))
    (p,) = doc.flush().problems_of(nid)
    assert p.param == "shape" and "the graph has no dataset" in p.message


def test_the_dataset_is_checked_while_editing(doc):
    doc.set_param("x", "shape", [32])
    (p,) = doc.flush().problems_of("x")
    assert p.param == "shape" and "[32]" in p.message and "'digits'" in p.message
    assert doc.status_text == "Cannot train: 1 problem"
    doc.set_param("y", "dtype", "float32")  # the digit classes read as floats still fit
    assert len(doc.flush().problems) == 1
    doc.set_param("x", "shape", None)  # back to the default: "auto"
    assert doc.flush().can_train and doc.analysis.shapes["x"] == (64,)


def test_a_changed_data_file_is_noticed_when_asked(qtbot, tmp_path):
    import numpy as np

    d = json.loads(MLP.read_text())
    d["training"]["dataset"] = {"source": "npz", "path": "data.npz"}
    np.savez(tmp_path / "data.npz", x=np.zeros((8, 64), np.float32), y=np.zeros(8, np.int64))
    (tmp_path / "g.ncg.json").write_text(json.dumps(d))
    doc = Document()
    doc.open(tmp_path / "g.ncg.json")
    assert doc.analysis.can_train
    np.savez(tmp_path / "data.npz", x=np.zeros((8, 60), np.float32), y=np.zeros(8, np.int64))
    assert doc.analysis.can_train  # nothing was edited: the last analysis stands
    with qtbot.waitSignal(doc.analysis_changed, timeout=1000):
        a = doc.recheck_dataset()
    assert [p.node for p in a.problems] == ["x"] and "[60]" in a.problems[0].message
    (tmp_path / "data.npz").unlink()
    a = doc.recheck_dataset()
    assert a.ok and not a.can_train and "no such file" in str(a.not_ready[0])


def test_edited_fires_for_what_the_graph_computes_not_for_moves(doc, qtbot):
    seen = []
    doc.edited.connect(lambda: seen.append(1))
    doc.move({"fc1": ((0.0, 0.0), (10.0, 10.0))})
    doc.set_label("fc1", "hidden")
    assert not seen
    doc.set_param("fc1", "units", 32)
    assert seen
    seen.clear()
    doc.set_training({**doc.graph.training, "epochs": 3})
    assert seen
