"""The in-memory graph model (edits, events, ids) and the graph file (docs/format.md section 2)."""
from __future__ import annotations

import json
import os
import pickle

import pytest

from core import fileformat
from core.errors import EdgeError, GraphEditError, GraphFileError
from core.fileformat import dumps, load_graph, loads, save_graph
from core.graph import Edge, Graph, GraphEvent, Node
from tests.graphs import build, edge, graph_dict, mlp_dict, node, write


@pytest.fixture
def events() -> list[GraphEvent]:
    return []


@pytest.fixture
def g(events) -> Graph:
    """x -> d1 -> d2, plus a loose Dense d3; every later event lands in ``events``."""
    graph = Graph("edits")
    graph.add_node(Node("x", "Input", {"shape": [3]}))
    graph.add_node(Node("d1", "Dense", {"units": 4}))
    graph.add_node(Node("d2", "Dense", {"units": 2}))
    graph.add_node(Node("d3", "Dense", {"units": 4, "shared_with": "d1"}))
    graph.connect("x", "d1")
    graph.connect("d1", "d2")
    graph.subscribe(events.append)
    return graph


def edge_refs(graph: Graph) -> list[tuple[str, str]]:
    return [(e.src_ref, e.dst_ref) for e in graph.edges]


# ---- edits and their events ------------------------------------------------------------------
def test_add_node_stores_it_and_emits_one_event(g, events):
    n = g.add_node(Node("r", "ReLU", pos=(10, 20)))
    assert g.nodes["r"] is n
    assert list(g.nodes)[-1] == "r"
    assert [e.kind for e in events] == ["node_added"]
    assert events[0].node is n and events[0].node_id == "r"


def test_connect_and_disconnect_emit_events(g, events):
    e = g.connect("d1", "d3")
    assert [ev.kind for ev in events] == ["edge_added"]
    assert events[0].edge is e
    assert ("d1", "d3") in edge_refs(g)
    removed = g.disconnect("d1", "d3")
    assert removed is e
    assert [ev.kind for ev in events] == ["edge_added", "edge_removed"]
    assert events[1].edge is e
    assert ("d1", "d3") not in edge_refs(g)


def test_connect_with_named_ports(events):
    graph = build(graph_dict([node("p", "Input", shape=[2]),
                              node("t", "Target", shape=[2], dtype="float32"),
                              node("loss", "MSELoss")], []))
    graph.subscribe(events.append)
    graph.connect("p", "loss", dst_port="pred")
    graph.connect("t", "loss", dst_port="target")
    assert edge_refs(graph) == [("p", "loss:pred"), ("t", "loss:target")]
    assert [ev.kind for ev in events] == ["edge_added", "edge_added"]
    graph.disconnect("t", "loss", dst_port="target")
    assert edge_refs(graph) == [("p", "loss:pred")]


def test_disconnect_of_a_missing_edge_is_refused_without_an_event(g, events):
    with pytest.raises(GraphEditError, match="no edge from 'x' to 'd2'"):
        g.disconnect("x", "d2")
    assert events == []
    assert len(g.edges) == 2


def test_connect_refusal_leaves_graph_and_listeners_untouched(g, events):
    before = g.to_dict()
    with pytest.raises(EdgeError):
        g.connect("d3", "d1")  # d1:in is already fed by x
    with pytest.raises(GraphEditError, match="no node with id 'ghost'"):
        g.connect("ghost", "d3")
    assert g.to_dict() == before
    assert events == []


def test_set_param_emits_old_and_new_and_none_removes(g, events):
    g.set_param("d1", "units", 8)
    assert g.nodes["d1"].params["units"] == 8
    ev = events[-1]
    assert (ev.kind, ev.node_id, ev.name, ev.old, ev.new) == ("param_changed", "d1", "units", 4, 8)
    g.set_param("d1", "bias", False)
    assert events[-1].old is None and events[-1].new is False
    g.set_param("d1", "bias", None)
    assert "bias" not in g.nodes["d1"].params
    assert (events[-1].old, events[-1].new) == (False, None)
    assert len(events) == 3


def test_set_param_copies_the_value(g):
    shape = [5]
    g.set_param("x", "shape", shape)
    shape.append(6)
    assert g.nodes["x"].params["shape"] == [5]


def test_set_pos_and_set_extra_emit_events(g, events):
    g.set_pos("d2", (120, -4.5))
    assert g.nodes["d2"].pos == (120.0, -4.5)
    assert (events[-1].kind, events[-1].old, events[-1].new) == ("node_moved", (0.0, 0.0),
                                                                 (120.0, -4.5))
    g.set_extra("d2", "label", "head")
    assert g.nodes["d2"].to_dict()["label"] == "head"
    assert (events[-1].kind, events[-1].name, events[-1].new) == ("node_extra_changed", "label",
                                                                  "head")
    g.set_extra("d2", "label", None)
    assert "label" not in g.nodes["d2"].to_dict()
    assert len(events) == 3


def test_edit_of_unknown_node_is_refused(g, events):
    for edit in (lambda: g.set_param("nope", "units", 1), lambda: g.set_pos("nope", (0, 0)),
                 lambda: g.remove_node("nope"), lambda: g.rename("nope", "other")):
        with pytest.raises(GraphEditError, match="no node with id 'nope'"):
            edit()
    assert events == []


def test_training_and_name_changes_emit_events(g, events):
    g.set_training({"batch_size": 8})
    g.set_name("renamed")
    assert [e.kind for e in events] == ["training_changed", "name_changed"]
    assert g.training == {"batch_size": 8} and g.name == "renamed"
    assert (events[1].old, events[1].new) == ("edits", "renamed")


def test_unsubscribe_stops_events(g, events):
    g.unsubscribe(events.append)
    g.add_node(Node("r", "ReLU"))
    assert events == []


# ---- rename -----------------------------------------------------------------------------------
def test_rename_updates_edges_shared_with_and_order(g, events):
    g.connect("d1", "d3")
    events.clear()
    g.rename("d1", "encoder")
    assert "d1" not in g.nodes and g.nodes["encoder"].id == "encoder"
    assert list(g.nodes) == ["x", "encoder", "d2", "d3"]  # keeps its place
    assert edge_refs(g) == [("x", "encoder"), ("encoder", "d2"), ("encoder", "d3")]
    assert g.nodes["d3"].params["shared_with"] == "encoder"
    assert [(e.kind, e.old, e.new) for e in events] == [("node_renamed", "d1", "encoder")]


def test_rename_keeps_ports():
    graph = build(graph_dict([node("p", "Input", shape=[2]),
                              node("t", "Target", shape=[2], dtype="float32"),
                              node("loss", "MSELoss")],
                             [edge("p", "loss:pred"), edge("t", "loss:target")]))
    graph.rename("loss", "mse")
    assert edge_refs(graph) == [("p", "mse:pred"), ("t", "mse:target")]


@pytest.mark.parametrize("new_id, match", [("d2", "already taken"), ("has space", "invalid id"),
                                           ("", "invalid id"), ("a:b", "invalid id"),
                                           ("z" * 65, "invalid id")])
def test_rename_refused(g, events, new_id, match):
    before = g.to_dict()
    with pytest.raises(GraphEditError, match=match) as info:
        g.rename("d1", new_id)
    assert info.value.node == "d1" and info.value.param == "id"
    assert g.to_dict() == before
    assert events == []


def test_rename_to_same_id_is_a_no_op(g, events):
    g.rename("d1", "d1")
    assert events == [] and "d1" in g.nodes


# ---- remove and undo ----------------------------------------------------------------------------
def test_remove_node_returns_its_edges_so_undo_restores_it(g, events):
    g.connect("d1", "d3")
    before = g.to_dict()
    events.clear()
    removed_node, removed_edges = g.remove_node("d1")
    assert removed_node.id == "d1"
    assert sorted(str(e) for e in removed_edges) == ["d1 -> d2", "d1 -> d3", "x -> d1"]
    assert "d1" not in g.nodes and g.edges == []
    kinds = [e.kind for e in events]
    assert kinds.count("edge_removed") == 3 and kinds[-1] == "node_removed"
    # undo: put the node and its edges back through the ordinary edits
    g.add_node(removed_node)
    for e in removed_edges:
        g.add_edge(e)
    after = g.to_dict()
    assert {n["id"]: n for n in after["nodes"]} == {n["id"]: n for n in before["nodes"]}
    assert sorted(map(json.dumps, after["edges"])) == sorted(map(json.dumps, before["edges"]))


# ---- ids ---------------------------------------------------------------------------------------
def test_unique_id_goes_past_every_existing_number(g):
    assert g.unique_id("d") == "d4"
    assert g.unique_id("Dense") == "dense1"
    g.add_node(Node("dense7", "Dense", {"units": 1}))
    assert g.unique_id("Dense") == "dense8"
    assert g.unique_id("My Layer!") == "mylayer1"  # only id characters kept
    assert g.unique_id("!!!") == "node1"
    fresh = g.unique_id("x" * 80)
    assert len(fresh) <= 64 and fresh not in g.nodes
    g.add_node(Node(fresh, "ReLU"))  # always a valid, free id


def test_duplicate_id_refused(g, events):
    with pytest.raises(GraphEditError, match="already exists") as info:
        g.add_node(Node("d1", "ReLU"))
    assert info.value.node == "d1"
    assert g.nodes["d1"].type == "Dense"
    assert events == []


@pytest.mark.parametrize("bad", ["", "with space", "colon:port", "dot.ted", "é", "z" * 65, 7,
                                 None])
def test_bad_id_refused(g, events, bad):
    with pytest.raises(GraphEditError, match="invalid id"):
        g.add_node(Node(bad, "ReLU"))
    assert events == []


@pytest.mark.parametrize("ok", ["a", "A-b_9", "z" * 64, "123"])
def test_good_ids_accepted(ok):
    graph = Graph()
    graph.add_node(Node(ok, "ReLU"))
    assert ok in graph.nodes


def test_ids_are_stable_across_edits_and_files(tmp_path):
    graph = build(mlp_dict())
    graph.remove_node("act")
    graph.add_node(Node(graph.unique_id("relu"), "ReLU"))
    path = tmp_path / "g.ncg.json"
    save_graph(graph, path)
    assert list(load_graph(path).nodes) == ["x", "fc1", "fc2", "y", "loss", "relu1"]


def test_copy_is_independent():
    graph = build(mlp_dict())
    dup = graph.copy()
    dup.set_param("fc1", "units", 99)
    dup.rename("fc2", "head")
    assert graph.nodes["fc1"].params["units"] == 5
    assert "fc2" in graph.nodes and ("act", "fc2") in edge_refs(graph)


# ---- the file: round trip ----------------------------------------------------------------------
def rich_graph_dict() -> dict:
    d = mlp_dict()
    d["nodes"][0]["pos"] = [-12.5, 40]
    d["nodes"][1].update(label="hidden layer", color="#ff8800", notes={"why": ["wide", 1]})
    d["nodes"][3]["pos"] = [600, 0]
    d["edges"][1]["style"] = "dashed"
    d["training"] = {"optimizer": {"type": "adam", "lr": 0.001}, "batch_size": 16,
                     "future_option": [1, 2]}
    d["meta"] = {"author": "Ada", "tags": ["demo"]}
    d["name"] = "round-trip ✓"
    return d


def test_file_round_trip_keeps_everything(tmp_path):
    src = write(tmp_path / "in.ncg.json", rich_graph_dict())
    first = load_graph(src)
    out = tmp_path / "out.ncg.json"
    save_graph(first, out)
    second = load_graph(out)
    assert second.to_dict() == first.to_dict()
    saved = json.loads(out.read_text(encoding="utf-8"))
    fc1 = saved["nodes"][1]
    assert (fc1["label"], fc1["color"], fc1["notes"]) == ("hidden layer", "#ff8800",
                                                          {"why": ["wide", 1]})
    assert saved["nodes"][0]["pos"] == [-12.5, 40.0]
    assert saved["nodes"][3]["pos"] == [600, 0]
    assert saved["edges"][1] == {"from": "fc1", "to": "act", "style": "dashed"}
    assert saved["edges"][3] == {"from": "fc2", "to": "loss:pred"}
    assert saved["meta"] == {"author": "Ada", "tags": ["demo"]}
    assert saved["training"]["future_option"] == [1, 2]
    assert saved["name"] == "round-trip ✓"
    assert (saved["format"], saved["version"]) == ("neurocanvas.graph", 1)
    assert [n["id"] for n in saved["nodes"]] == ["x", "fc1", "act", "fc2", "y", "loss"]
    assert "round-trip ✓" in out.read_text(encoding="utf-8")  # written as UTF-8, not escaped


def test_round_trip_keeps_delay_and_edge_ports():
    d = graph_dict([node("a", "Dense", units=2), node("b", "Dense", units=2)],
                   [edge("a", "b:in"), edge("b:out", "a", delay=1)])
    again = loads(dumps(loads(json.dumps(d))))
    assert [e.to_dict() for e in again.edges] == [{"from": "a", "to": "b:in"},
                                                  {"from": "b:out", "to": "a", "delay": 1}]


def test_unknown_keys_survive_edits():
    graph = build(rich_graph_dict())
    graph.set_param("fc1", "units", 7)
    graph.rename("fc1", "hidden")
    d = graph.nodes["hidden"].to_dict()
    assert d["label"] == "hidden layer" and d["params"]["units"] == 7


def test_unknown_node_key_cannot_override_known_ones():
    graph = build(mlp_dict())
    graph.set_extra("fc1", "type", "Sneaky")
    assert graph.nodes["fc1"].to_dict()["type"] == "Dense"


# ---- the file: refusals ------------------------------------------------------------------------
def test_newer_version_refused_with_a_clear_message(tmp_path):
    d = mlp_dict()
    d["version"] = 2
    path = write(tmp_path / "future.ncg.json", d)
    with pytest.raises(GraphFileError) as info:
        load_graph(path)
    msg = str(info.value)
    assert info.value.file == str(path) and str(path) in msg
    assert "version 2" in msg and "newer" in msg and "update" in msg


BAD_FILES = {
    "not JSON": b"{\"format\": \"neurocanvas.graph\", ",
    "a list": b"[1, 2, 3]",
    "another format": json.dumps({"format": "other", "version": 1}).encode(),
    "no format": json.dumps({"version": 1, "nodes": []}).encode(),
    "no version": json.dumps({"format": "neurocanvas.graph", "nodes": []}).encode(),
    "version 0": json.dumps({"format": "neurocanvas.graph", "version": 0}).encode(),
    "version text": json.dumps({"format": "neurocanvas.graph", "version": "1"}).encode(),
    "not UTF-8": b"{\"format\": \"neurocanvas.graph\", \"name\": \"\xff\xfe\"}",
    "NaN": b"{\"format\": \"neurocanvas.graph\", \"version\": 1, \"x\": NaN}",
    "nodes not a list": json.dumps(graph_dict({}, [])).encode(),
    "node not an object": json.dumps(graph_dict(["x"], [])).encode(),
    "duplicate node id": json.dumps(graph_dict([node("a", "ReLU"), node("a", "ReLU")],
                                               [])).encode(),
    "bad node id": json.dumps(graph_dict([node("a b", "ReLU")], [])).encode(),
    "params not an object": json.dumps(graph_dict([{"id": "a", "type": "ReLU", "params": []}],
                                                  [])).encode(),
    "bad pos": json.dumps(graph_dict([{"id": "a", "type": "ReLU", "pos": [1]}], [])).encode(),
    "edge without to": json.dumps(graph_dict([], [{"from": "a"}])).encode(),
    "negative delay": json.dumps(graph_dict([], [edge("a", "b", delay=-1)])).encode(),
    "deeply nested": b"[" * 200_000,
    "empty": b"",
}


@pytest.mark.parametrize("what", list(BAD_FILES))
def test_bad_file_refused_naming_the_file(tmp_path, what):
    path = tmp_path / "bad.ncg.json"
    path.write_bytes(BAD_FILES[what])
    with pytest.raises(GraphFileError) as info:
        load_graph(path)
    assert info.value.file == str(path)
    assert str(info.value).startswith(str(path) + ": ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("what, expected", [
    ("not JSON", "not valid JSON"), ("a list", "expected a JSON object"),
    ("another format", "found 'other'"), ("not UTF-8", "not UTF-8"),
    ("version text", "found '1'"), ("duplicate node id", "duplicate node id"),
    ("NaN", "not valid JSON"),
])
def test_bad_file_says_what_is_wrong(tmp_path, what, expected):
    path = tmp_path / "bad.ncg.json"
    path.write_bytes(BAD_FILES[what])
    with pytest.raises(GraphFileError, match=expected):
        load_graph(path)


def test_missing_file_and_directory_refused(tmp_path):
    with pytest.raises(GraphFileError, match="no such file") as info:
        load_graph(tmp_path / "absent.ncg.json")
    assert info.value.file == str(tmp_path / "absent.ncg.json")
    with pytest.raises(GraphFileError, match="is a directory"):
        load_graph(tmp_path)


def test_invalid_but_well_formed_graph_still_loads(tmp_path):
    # unknown types and dangling edges are validation problems, not file problems
    d = graph_dict([node("a", "NoSuchLayer", whatever=1)], [edge("a", "ghost:in")])
    graph = load_graph(write(tmp_path / "g.ncg.json", d))
    assert graph.nodes["a"].type == "NoSuchLayer"
    assert graph.edges[0].dst == "ghost" and graph.edges[0].dst_port == "in"


# ---- nothing is executed or unpickled ----------------------------------------------------------
class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_looking_content_is_only_data(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)), protocol=0).decode("latin-1")

    def forbidden(*args, **kwargs):
        raise AssertionError("loading a graph must never unpickle or evaluate")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    d = mlp_dict()
    d["nodes"][1]["__reduce__"] = ["builtins.open", [str(marker), "w"]]
    d["nodes"][1]["py/object"] = "os.system"
    d["nodes"][2]["params"] = {"__class__": "os.system", "pickle": payload}
    d["__reduce__"] = payload
    path = write(tmp_path / "evil.ncg.json", d)
    graph = load_graph(path)
    assert graph.nodes["fc1"].extra["__reduce__"] == ["builtins.open", [str(marker), "w"]]
    assert graph.nodes["fc1"].extra["py/object"] == "os.system"
    assert graph.nodes["act"].params["pickle"] == payload
    assert graph.extra["__reduce__"] == payload
    save_graph(graph, tmp_path / "again.ncg.json")
    assert load_graph(tmp_path / "again.ncg.json").extra["__reduce__"] == payload
    assert not marker.exists()


def test_a_real_pickle_file_is_refused_not_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ncg.json"
    for protocol in (0, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps(_Exploit(str(marker)), protocol=protocol))
        with pytest.raises(GraphFileError):
            load_graph(path)
    assert not marker.exists()


# ---- atomic save -------------------------------------------------------------------------------
def test_save_writes_through_a_temporary_file(tmp_path):
    path = tmp_path / "g.ncg.json"
    save_graph(build(mlp_dict()), path)
    save_graph(build(mlp_dict(hidden=9)), path)  # overwrite
    assert os.listdir(tmp_path) == ["g.ncg.json"]
    assert load_graph(path).nodes["fc1"].params["units"] == 9


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "g.ncg.json"
    save_graph(build(mlp_dict()), path)
    old = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileformat.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        save_graph(build(mlp_dict(hidden=9)), path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["g.ncg.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "g.ncg.json"
    save_graph(build(mlp_dict()), path)
    old = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(fileformat.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        save_graph(build(mlp_dict(hidden=9)), path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["g.ncg.json"]


def test_add_edge_keeps_the_edge_object():
    graph = build(mlp_dict())
    e = Edge("fc2", "act", delay=1)
    assert graph.add_edge(e) is e and graph.edges[-1] is e


# ---- strings and numbers from files are sane (format.md 2.3) -------------------------------------
GRAPH_HEAD = '{"format": "neurocanvas.graph", "version": 1, '


def _load_text(tmp_path, text: str):
    path = tmp_path / "hostile.ncg.json"
    path.write_bytes(text.encode("utf-8"))  # the JSON text itself is plain UTF-8
    return load_graph(path)


@pytest.mark.parametrize("body, where, node_id", [
    ('"nodes": [{"id": "a", "type": "ReLU", "label": "x\\ud800y"}]', '"label"', "a"),
    ('"nodes": [{"id": "a", "type": "Re\\udfffLU"}]', '"type"', "a"),
    ('"nodes": [{"id": "a", "type": "ReLU", "params": {"k": ["ok", "\\ud800"]}}]',
     '"params"."k"[1]', "a"),
    ('"nodes": [{"id": "a", "type": "ReLU", "\\ud800": 1}]', "a key", "a"),
    ('"name": "\\ud800"', '"name"', None),
    ('"training": {"optimizer": {"type": "\\udc00"}}', '"training"."optimizer"."type"', None),
    ('"edges": [{"from": "a", "to": "b", "note": "\\ud800"}]', "edge #0", None),
])
def test_lone_surrogate_refused_naming_where(tmp_path, body, where, node_id):
    with pytest.raises(GraphFileError) as info:
        _load_text(tmp_path, GRAPH_HEAD + body + "}")
    msg = str(info.value)
    assert "not valid Unicode" in msg and where in msg
    assert info.value.node == node_id
    msg.encode("utf-8")  # the message itself can be printed and logged
    assert "\n" not in msg


@pytest.mark.parametrize("body, where, node_id", [
    ('"nodes": [{"id": "a", "type": "ReLU", "label": 1e999}]', '"label"', "a"),
    ('"nodes": [{"id": "a", "type": "Dense", "params": {"units": -1e999}}]',
     '"params"."units"', "a"),
    ('"nodes": [{"id": "a", "type": "ReLU", "pos": [1e999, 0]}]', '"pos"[0]', "a"),
    ('"training": {"optimizer": {"lr": 1e400}}', '"training"."optimizer"."lr"', None),
    ('"x": [[1e999]]', '"x"[0][0]', None),
])
def test_number_overflowing_to_inf_refused_naming_where(tmp_path, body, where, node_id):
    with pytest.raises(GraphFileError) as info:
        _load_text(tmp_path, GRAPH_HEAD + body + "}")
    msg = str(info.value)
    assert "not finite" in msg and where in msg
    assert info.value.node == node_id


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_refused(tmp_path, literal):
    with pytest.raises(GraphFileError, match="not valid JSON"):
        _load_text(tmp_path, GRAPH_HEAD + '"nodes": [{"id": "a", "type": "ReLU", "label": '
                   + literal + "}]}")


@pytest.mark.parametrize("bad_id", ["a\n", "a\r\n", "\na", "a\x00", "é", "a" * 65, ""])
def test_id_must_match_in_full(bad_id):
    with pytest.raises(GraphFileError, match="invalid id"):
        build(graph_dict([node(bad_id, "ReLU")], []))
    graph = Graph("g")
    with pytest.raises(GraphEditError):
        graph.add_node(Node(bad_id, "ReLU"))


def test_trailing_newline_id_refused_in_file_and_rename(tmp_path):
    with pytest.raises(GraphFileError, match="invalid id 'fc1\\\\n'"):
        _load_text(tmp_path, GRAPH_HEAD + '"nodes": [{"id": "fc1\\n", "type": "ReLU"}]}')
    graph = build(mlp_dict())
    with pytest.raises(GraphEditError):
        graph.rename("fc1", "fc9\n")
    assert "fc1" in graph.nodes


def test_identifier_params_must_match_in_full():
    from core.errors import ParamError
    from core.params import Identifier, NodeRef
    assert Identifier().coerce("fc1") == "fc1" and NodeRef().coerce("a-b_9") == "a-b_9"
    for bad in ("fc1\n", "fc 1", "", "x" * 65, "é", 5, None):
        with pytest.raises(ParamError):
            Identifier().coerce(bad)
        with pytest.raises(ParamError):
            NodeRef().coerce(bad)


def test_shared_with_with_trailing_newline_is_a_problem():
    from core.validate import analyze
    d = mlp_dict()
    d["nodes"][3]["params"]["shared_with"] = "fc1\n"
    problems = analyze(build(d)).problems
    assert any(p.node == "fc2" and getattr(p, "param", None) == "shared_with"
               for p in problems)


@pytest.mark.parametrize("pos", [[1e12, 0], [0, -1e12], [1000001, 0], [10 ** 400, 0],
                                 [0, -(10 ** 400)]])
def test_far_position_refused_naming_the_node(tmp_path, pos):
    d = mlp_dict()
    d["nodes"][2]["pos"] = pos
    path = tmp_path / "far.ncg.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(GraphFileError) as info:
        load_graph(path)
    assert info.value.node == "act" and "out of range" in str(info.value)
    assert "1e+06" in str(info.value)


def test_position_at_the_limit_loads():
    d = mlp_dict()
    d["nodes"][2]["pos"] = [1e6, -1000000]
    assert build(d).nodes["act"].pos == (1e6, -1e6)


def test_set_pos_clamps_to_the_documented_range(g, events):
    from core.elements import POS_LIMIT
    g.set_pos("d2", (1e12, -1e12))
    assert g.nodes["d2"].pos == (POS_LIMIT, -POS_LIMIT) and events[-1].new == g.nodes["d2"].pos
    g.set_pos("d2", (float("nan"), float("inf")))
    assert g.nodes["d2"].pos == (0.0, 0.0)
    g.set_pos("d2", (10 ** 400, 3))
    assert g.nodes["d2"].pos == (POS_LIMIT, 3.0)
    loads(dumps(g))  # what the editor moved it to always loads again


def test_extra_keys_of_any_json_type_are_kept():
    d = mlp_dict()
    d["nodes"][1].update({"label": {"a": [1, None, True]}, "color": 5, "z": None})
    graph = build(d)
    assert graph.nodes["fc1"].extra == {"label": {"a": [1, None, True]}, "color": 5, "z": None}
    back = json.loads(dumps(graph))["nodes"][1]
    assert back["label"] == {"a": [1, None, True]} and back["color"] == 5 and back["z"] is None


@pytest.mark.parametrize("label", ["🧠 layer ✓", "שכבה נסתרת", "ctl\x00\x01\x1f\t\n\u202e",
                                   "\u200b\ufeff", "x" * 5000])
def test_odd_but_valid_label_saves_and_reloads(tmp_path, label):
    graph = build(mlp_dict())
    graph.set_extra("fc1", "label", label)
    path = tmp_path / "odd.ncg.json"
    save_graph(graph, path)
    assert load_graph(path).nodes["fc1"].extra["label"] == label


@pytest.mark.parametrize("value, what", [("\ud800", "not valid Unicode"),
                                         (float("inf"), "not finite"),
                                         (float("nan"), "not finite"),
                                         ({1, 2}, "JSON cannot hold")])
def test_dumps_refuses_what_a_file_cannot_hold_as_a_graph_file_error(tmp_path, value, what):
    graph = build(mlp_dict())
    graph.set_extra("fc1", "label", value)
    path = tmp_path / "g.ncg.json"
    with pytest.raises(GraphFileError, match=what) as info:
        save_graph(graph, path)
    assert info.value.node == "fc1" and '"label"' in str(info.value)
    assert not path.exists()
    graph.set_extra("fc1", "label", None)
    graph.training = {"optimizer": {"lr": float("inf")}}
    with pytest.raises(GraphFileError, match="not finite"):
        dumps(graph)
