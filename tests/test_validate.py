"""Validation: every problem at once, typed, naming node / port / parameter, expected vs found."""
from __future__ import annotations

import pytest

from core.errors import (
    CycleError,
    EdgeError,
    GraphEditError,
    GraphProblem,
    InvalidGraphError,
    ParamError,
    ShapeError,
    SharedWithError,
    UnknownTypeError,
)
from core.validate import analyze
from tests.graphs import build, edge, graph_dict, mlp_dict, node

X = node("x", "Input", shape=[4])


def problems(d: dict) -> list[GraphProblem]:
    return analyze(build(d)).problems


def only(d: dict, kind: type) -> GraphProblem:
    """The single problem of ``d``, which must be of type ``kind``."""
    found = problems(d)
    assert len(found) == 1, [f"{type(p).__name__}: {p}" for p in found]
    assert type(found[0]) is kind, f"{type(found[0]).__name__}: {found[0]}"
    return found[0]


def dense_on_x(**params) -> dict:
    return graph_dict([X, node("d", "Dense", **params)], [edge("x", "d")])


# ---- a valid graph -----------------------------------------------------------------------------
def test_valid_mlp_has_no_problems_and_shapes():
    a = analyze(build(mlp_dict(features=4, hidden=5, outputs=3)))
    assert a.ok and a.problems == []
    assert a.shapes == {"x": (4,), "fc1": (5,), "act": (5,), "fc2": (3,), "y": (3,),
                        "loss": ()}
    assert a.param_count("fc1") == 4 * 5 + 5 and a.param_count("fc2") == 5 * 3 + 3
    assert a.order.index("fc1") < a.order.index("act") < a.order.index("fc2")
    assert a.losses() == ["loss"]
    a.raise_if_invalid()  # does not raise


# ---- one test per kind of problem ----------------------------------------------------------------
def test_unknown_type_names_node_and_suggests():
    d = graph_dict([X, node("d", "Dens", units=3)], [edge("x", "d")])
    p = only(d, UnknownTypeError)
    assert p.node == "d" and p.nodes == ("d",)
    assert "unknown node type 'Dens'" in str(p)
    assert "did you mean 'Dense'" in str(p)


def test_unknown_parameter():
    p = only(dense_on_x(units=3, unitz=4), ParamError)
    assert (p.node, p.param) == ("d", "unitz")
    assert "unknown parameter" in p.message
    assert "units" in p.message and "bias" in p.message  # what it could have been


def test_missing_parameter():
    p = only(dense_on_x(), ParamError)
    assert (p.node, p.param) == ("d", "units")
    assert "missing" in p.message
    assert str(p) == "node 'd' parameter 'units': missing required parameter"


@pytest.mark.parametrize("params, param, expected, found", [
    ({"units": "3"}, "units", "an integer >= 1", "'3' (a string)"),
    ({"units": 2.5}, "units", "an integer >= 1", "2.5 (a number)"),
    ({"units": True}, "units", "an integer >= 1", "True (a boolean)"),
    ({"units": 3, "bias": 1}, "bias", "true or false", "1 (an integer)"),
    ({"units": 3, "shared_with": "no way"}, "shared_with", "a name of letters",
     "'no way' (a string)"),
])
def test_ill_typed_parameter(params, param, expected, found):
    p = only(dense_on_x(**params), ParamError)
    assert (p.node, p.param) == ("d", param)
    assert f"expected {expected}" in p.message and f"found {found}" in p.message


@pytest.mark.parametrize("units", [0, -3])
def test_out_of_range_parameter(units):
    p = only(dense_on_x(units=units), ParamError)
    assert (p.node, p.param) == ("d", "units")
    assert p.message == f"expected an integer >= 1, found {units} (an integer)"


def test_bad_input_shape_parameter():
    d = graph_dict([node("x", "Input", shape=[4, 0]), node("r", "ReLU")], [edge("x", "r")])
    p = only(d, ParamError)
    assert (p.node, p.param) == ("x", "shape")
    assert "expected a list of positive integers" in p.message and "[4, 0]" in p.message


def test_edge_from_unknown_node():
    d = dense_on_x(units=3)
    d["nodes"].append(node("r", "ReLU"))
    d["edges"].append(edge("ghost", "r"))
    found = problems(d)
    assert all(isinstance(p, EdgeError) for p in found)
    p = next(p for p in found if "ghost" in p.message)
    assert p.node == "r"
    # ... so r's input port counts as not connected
    assert any((q.node, q.port) == ("r", "in") and "not connected" in q.message for q in found)
    assert "no node with id 'ghost'" in p.message and "ghost -> r" in p.message


def test_edge_to_unknown_node():
    d = dense_on_x(units=3)
    d["edges"].append(edge("d", "ghost"))
    p = only(d, EdgeError)
    assert p.node == "d" and "no node with id 'ghost'" in p.message


def test_edge_to_unknown_input_port():
    d = graph_dict([X, node("d", "Dense", units=3)], [edge("x", "d:bogus")])
    found = problems(d)
    port = [p for p in found if p.port == "bogus"]
    assert len(port) == 1 and isinstance(port[0], EdgeError)
    assert port[0].node == "d"
    assert "no input port 'bogus'" in port[0].message and "has: in" in port[0].message
    # the port the edge missed is then reported as not connected
    assert any(p.port == "in" and "not connected" in p.message for p in found)


def test_edge_from_unknown_output_port():
    d = graph_dict([X, node("d", "Dense", units=3)], [edge("x:value", "d")])
    p = next(p for p in problems(d) if p.port == "value")
    assert isinstance(p, EdgeError) and p.node == "x"
    assert "no output port 'value'" in p.message and "has: out" in p.message


def test_edge_into_port_of_node_that_has_several_needs_a_name():
    d = graph_dict([X, node("t", "Target", shape=[4], dtype="float32"), node("l", "MSELoss")],
                   [edge("x", "l"), edge("t", "l:target")])
    p = next(p for p in problems(d) if "several" in p.message)
    assert isinstance(p, EdgeError) and p.node == "l"
    assert "pred, target" in p.message


def test_two_edges_into_one_input_port():
    d = graph_dict([X, node("x2", "Input", shape=[4], field="x2"), node("d", "Dense", units=3)],
                   [edge("x", "d"), edge("x2", "d:in")])
    p = only(d, EdgeError)
    assert (p.node, p.port) == ("d", "in")
    assert "already fed by x" in p.message and "second edge from x2" in p.message


def test_unconnected_input_port():
    d = graph_dict([X, node("t", "Target", shape=[4], dtype="float32"), node("l", "MSELoss")],
                   [edge("x", "l:pred")])
    p = only(d, EdgeError)
    assert (p.node, p.port) == ("l", "target") and "not connected" in p.message


def test_shapes_that_do_not_fit_between_pred_and_target():
    d = mlp_dict(outputs=3)
    d["nodes"][4]["params"]["shape"] = [2]
    p = only(d, ShapeError)
    assert (p.node, p.port) == ("loss", "target")
    assert "expected the shape of 'pred' [3]" in p.message and "found [2]" in p.message


def test_shape_that_does_not_fit_a_layer():
    d = graph_dict([node("s", "Input", shape=[]), node("d", "Dense", units=3)],
                   [edge("s", "d")])
    p = only(d, ShapeError)
    assert (p.node, p.port) == ("d", "in")
    assert "expected at least 1 axis" in p.message and "found []" in p.message


def test_shape_problem_does_not_cascade_downstream():
    d = graph_dict([node("s", "Input", shape=[]), node("d", "Dense", units=3),
                    node("r", "ReLU")], [edge("s", "d"), edge("d", "r")])
    a = analyze(build(d))
    assert [p.node for p in a.problems] == ["d"]
    assert a.shapes["d"] is None and a.shapes["r"] is None


def test_cycle_without_delay_lists_its_nodes():
    d = graph_dict([X, node("a", "Dense", units=4), node("b", "ReLU"), node("c", "Identity"),
                    node("out", "Identity")],
                   [edge("c", "a"), edge("a", "b"), edge("b", "c"), edge("x", "out")])
    p = only(d, CycleError)
    assert set(p.nodes) == {"a", "b", "c"} and p.node in p.nodes
    for n in ("a", "b", "c"):
        assert f"'{n}'" in str(p) or n in p.message
    assert "delay" in p.message
    # the message walks the cycle: a -> b -> c -> a in some rotation
    assert p.message.count("->") == 3


def test_self_loop_is_a_cycle():
    d = graph_dict([node("r", "Identity")], [edge("r", "r")])
    found = [p for p in problems(d) if isinstance(p, CycleError)]
    assert len(found) == 1 and found[0].nodes == ("r",)


def test_two_separate_cycles_are_two_problems():
    d = graph_dict([node("a", "Identity"), node("b", "Identity"), node("c", "Identity"),
                    node("e", "Identity")],
                   [edge("a", "b"), edge("b", "a"), edge("c", "e"), edge("e", "c")])
    cycles = [p for p in problems(d) if isinstance(p, CycleError)]
    assert sorted(sorted(p.nodes) for p in cycles) == [["a", "b"], ["c", "e"]]


def test_cycle_with_a_delay_edge_is_not_a_cycle_error():
    d = graph_dict([X, node("a", "Dense", units=4), node("b", "ReLU"), node("c", "Identity")],
                   [edge("c", "a", delay=1), edge("a", "b"), edge("b", "c")])
    a = analyze(build(d))
    assert not any(isinstance(p, CycleError) for p in a.problems)
    assert a.recurrent
    assert a.order.index("a") < a.order.index("b") < a.order.index("c")


def test_shared_with_missing_node():
    p = only(dense_on_x(units=3, shared_with="ghost"), SharedWithError)
    assert (p.node, p.param) == ("d", "shared_with")
    assert "'ghost'" in p.message and "not a node" in p.message


def test_shared_with_node_of_another_type():
    p = only(dense_on_x(units=3, shared_with="x"), SharedWithError)
    assert (p.node, p.param) == ("d", "shared_with")
    assert "type Input" in p.message and "expected a Dense" in p.message


def test_shared_with_other_configuration():
    d = graph_dict([X, node("a", "Dense", units=4), node("b", "Dense", units=5, shared_with="a")],
                   [edge("x", "a"), edge("x", "b")])
    p = only(d, SharedWithError)
    assert (p.node, p.param) == ("b", "shared_with")
    assert "different configuration (units)" in p.message


def test_shared_with_parameters_of_other_shapes():
    # same configuration, but b sees 5 features where a sees 4: W would be [5, 5] vs [4, 5]
    d = graph_dict([X, node("a", "Dense", units=5), node("b", "Dense", units=5, shared_with="a")],
                   [edge("x", "a"), edge("a", "b")])
    p = only(d, SharedWithError)
    assert (p.node, p.param) == ("b", "shared_with")
    assert "W [5, 5] vs [4, 5]" in p.message


def test_shared_with_loop():
    d = graph_dict([X, node("a", "Dense", units=4, shared_with="b"),
                    node("b", "Dense", units=4, shared_with="a")],
                   [edge("x", "a"), edge("x", "b")])
    found = problems(d)
    assert found and all(isinstance(p, SharedWithError) for p in found)
    assert all("loop" in p.message for p in found)


def test_shared_with_on_a_type_without_parameters_is_an_unknown_parameter():
    d = graph_dict([X, node("r", "ReLU", shared_with="x")], [edge("x", "r")])
    p = only(d, ParamError)
    assert (p.node, p.param) == ("r", "shared_with")


def test_valid_sharing_records_the_owner():
    d = graph_dict([X, node("a", "Dense", units=4), node("b", "Dense", units=4, shared_with="a")],
                   [edge("x", "a"), edge("x", "b")])
    a = analyze(build(d))
    assert a.ok
    assert a.shared_root == {"b": "a"}
    assert a.param_count("a") == 20 and a.param_count("b") == 0


# ---- all at once -------------------------------------------------------------------------------
def test_problems_are_collected_all_at_once():
    d = graph_dict(
        [X,
         node("d", "Dense", units=0, foo=2),
         node("q", "Nope"),
         node("m", "MSELoss"),
         node("s", "Dense", units=3, shared_with="ghost"),
         node("c1", "Identity"), node("c2", "Identity")],
        [edge("x", "d"), edge("x", "zz"), edge("x", "s"), edge("c1", "c2"), edge("c2", "c1")])
    found = problems(d)
    kinds = {(type(p).__name__, p.node, p.port, p.param) for p in found}
    assert ("ParamError", "d", None, "foo") in kinds
    assert ("ParamError", "d", None, "units") in kinds
    assert ("UnknownTypeError", "q", None, None) in kinds
    assert ("EdgeError", "x", None, None) in kinds  # x -> zz
    assert ("EdgeError", "m", "pred", None) in kinds
    assert ("EdgeError", "m", "target", None) in kinds
    assert ("SharedWithError", "s", None, "shared_with") in kinds
    assert any(isinstance(p, CycleError) and set(p.nodes) == {"c1", "c2"} for p in found)
    assert len(found) == 8

    with pytest.raises(InvalidGraphError) as info:
        analyze(build(d)).raise_if_invalid(file="g.ncg.json")
    err = info.value
    assert len(err.problems) == 8
    assert str(err).startswith("g.ncg.json: ") and "(and 7 more problems)" in str(err)
    assert {"d", "q", "m", "s", "c1", "c2"} <= set(err.nodes)


def test_problems_of_a_node():
    d = dense_on_x(units=0, foo=1)
    a = analyze(build(d))
    assert {p.param for p in a.problems_of("d")} == {"units", "foo"}
    assert a.problems_of("x") == []


def test_every_problem_is_one_line_naming_its_node():
    d = graph_dict([X, node("d", "Dense", units="many"), node("q", "Nope")],
                   [edge("x", "d"), edge("q", "d")])
    for p in problems(d):
        assert p.node and f"node '{p.node}'" in str(p)
        assert "\n" not in str(p)


# ---- check_connection: what the editor asks before drawing an edge -----------------------------
@pytest.fixture
def chain():
    """x -> a -> b, with c loose: a, b, c are Dense."""
    return build(graph_dict([X, node("a", "Dense", units=4), node("b", "Dense", units=4),
                             node("c", "Dense", units=4)],
                            [edge("x", "a"), edge("a", "b")]))


def test_check_connection_refuses_an_occupied_port(chain):
    with pytest.raises(EdgeError) as info:
        chain.connect("c", "b")
    assert (info.value.node, info.value.port) == ("b", "in")
    assert "already fed by a" in info.value.message and "disconnect" in info.value.message
    assert len(chain.edges) == 2


def test_check_connection_refuses_an_unknown_port(chain):
    with pytest.raises(EdgeError) as info:
        chain.connect("a", "c", dst_port="weights")
    assert (info.value.node, info.value.port) == ("c", "weights")
    assert "no input port 'weights'" in info.value.message and "has: in" in info.value.message
    with pytest.raises(EdgeError, match="no output port 'aux'"):
        chain.connect("a", "c", src_port="aux")


def test_check_connection_refuses_an_input_as_target(chain):
    with pytest.raises(EdgeError, match="has no input port") as info:
        chain.connect("c", "x")
    assert info.value.node == "x"


def test_check_connection_refuses_a_cycle_and_names_it():
    graph = build(graph_dict([node("a", "Dense", units=4), node("b", "ReLU"),
                              node("c", "Identity")],
                             [edge("a", "b"), edge("b", "c")]))
    with pytest.raises(CycleError) as info:
        graph.connect("c", "a")
    assert set(info.value.nodes) == {"a", "b", "c"}
    assert "a -> b -> c -> a" in info.value.message and "delay" in info.value.message
    with pytest.raises(CycleError) as info:
        graph.connect("a", "a")  # a's input port is free, so only the loop is wrong
    assert info.value.nodes == ("a",)
    # the same edge with a delay builds a recurrent network
    e = graph.connect("c", "a", delay=1)
    assert e.delay == 1 and graph.edges[-1] is e


def test_check_connection_unknown_node(chain):
    with pytest.raises(GraphEditError, match="no node with id 'ghost'"):
        chain.connect("a", "ghost")


def test_check_connection_accepts_a_free_port(chain):
    chain.connect("b", "c")
    assert analyze(chain).ok


def test_null_accepted_where_the_default_is_null():
    from core.params import IntPair, resolve_params
    specs = {"stride": IntPair(default=None), "pool_size": IntPair(default=(2, 2))}
    out, problems = resolve_params(specs, {"stride": None}, "p")
    assert out["stride"] is None and not problems
    out, problems = resolve_params(specs, {"pool_size": None}, "p")
    assert problems and problems[0].param == "pool_size"


# ---- the dataset: "shape": "auto" and fields that do not fit ---------------------------------
def data_graph(x: dict, y: dict | None = None) -> dict:
    """Input x -> Dense(3) -> MSELoss <- Target y (float32; "auto" unless given)."""
    return graph_dict([node("x", "Input", **x), node("d", "Dense", units=3),
                       node("y", "Target", dtype="float32", **(y or {})),
                       node("loss", "MSELoss")],
                      [edge("x", "d"), edge("d", "loss:pred"), edge("y", "loss:target")])


FIELDS = {"x": ((5, 2), "float32"), "y": ((5, 3), "float32")}


def test_the_shape_spec_takes_auto_only_where_allowed():
    from core.params import AUTO, Shape
    assert Shape(allow_auto=True).coerce("auto") == AUTO
    with pytest.raises(ParamError, match='"auto"'):
        Shape(allow_auto=True).coerce("automatic")
    with pytest.raises(ParamError):
        Shape().coerce("auto")
    p = only(graph_dict([X, node("r", "Reshape", shape="auto")], [edge("x", "r")]), ParamError)
    assert p.param == "shape"


def test_an_object_is_named_by_its_keys_not_as_a_python_dict():
    p = only(dense_on_x(units={"n": 3}), ParamError)
    assert "an object with keys n" in p.message and "{" not in p.message


def test_auto_takes_the_field_shape_and_a_left_out_shape_is_auto():
    for x in ({"shape": "auto"}, {}):
        a = analyze(build(data_graph(x)), FIELDS)
        assert a.ok, [str(p) for p in a.problems]
        assert a.shapes["x"] == (5, 2) and a.shapes["d"] == (5, 3) and a.shapes["y"] == (5, 3)
        assert a.auto_shaped == {"x", "y"}
        assert a.layers["x"].params["shape"] == (5, 2)  # the network is built from it
    a = analyze(build(data_graph({"shape": "auto", "sequence": True})), FIELDS)
    assert a.shapes["x"] == (2,) and a.steps == 5 and "d" in a.timed  # [T, ...] per step


def test_auto_without_a_dataset_is_one_problem_and_no_more():
    a = analyze(build(data_graph({"shape": "auto", "sequence": True}, {"shape": [3]})))
    (p,) = a.problems  # not also "a recurrent graph needs a sequence Input" after it
    assert type(p) is ShapeError and (p.node, p.param) == ("x", "shape")
    assert p.message == "shape comes from the dataset, but the graph has no dataset"
    assert a.shapes["x"] is None and a.shapes["d"] is None
    a = analyze(build(data_graph({}, {"shape": [3]})), None,
                no_dataset="the dataset cannot be read (gone)")
    assert a.problems[0].message.endswith("but the dataset cannot be read (gone)")


def test_a_field_that_does_not_fit_is_marked_on_its_node():
    a = analyze(build(data_graph({"shape": [5, 3]})), FIELDS)
    (p,) = a.problems
    assert type(p) is ShapeError and (p.node, p.param) == ("x", "shape")
    assert p.message == "reads field 'x' of shape [5, 3], but dataset 'dataset' gives [5, 2]"
    assert a.problems_of("x") == [p]
    # axes of size 1 may differ, as in training
    assert analyze(build(data_graph({"shape": [5, 2, 1]})), FIELDS).problems_of("x") == []
    # a missing field: a ParamError on 'field'; an "auto" node reading it gets no shape
    a = analyze(build(data_graph({"field": "z"})), FIELDS)
    (p,) = a.problems
    assert type(p) is ParamError and (p.node, p.param) == ("x", "field")
    assert "'z'" in p.message and "its fields: x, y" in p.message
    assert a.shapes["x"] is None and a.shapes["d"] is None


def test_the_dataset_check_names_the_dataset_and_agrees_with_training():
    import numpy as np

    from core.datasets import Dataset, DatasetFields, check_fields
    from core.errors import DataError

    ds = Dataset({"x": np.zeros((4, 5, 2), np.float32), "y": np.zeros((4, 3), np.float32)},
                 name="toy.npz")
    a = analyze(build(data_graph({"shape": [10]})), DatasetFields(ds.field_shapes(), ds.name))
    with pytest.raises(DataError) as e:
        check_fields(ds, {"x": ("x", (10,), "float32")})
    assert [p.message for p in a.problems] == [e.value.message]


def test_a_refused_shape_is_not_replaced_by_the_dataset():
    a = analyze(build(data_graph({"shape": [0]})), FIELDS)
    (p,) = a.problems
    assert type(p) is ParamError and p.param == "shape"
    assert a.shapes["x"] is None and "x" not in a.auto_shaped


def test_load_valid_looks_at_the_dataset_only_for_auto_shapes(tmp_path):
    import numpy as np

    from core.validate import load_valid
    from tests.graphs import write

    d = data_graph({})
    d["training"] = {"dataset": {"source": "npz", "path": "d.npz"}}
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 7), np.float32), y=np.zeros((2, 3)))
    a = load_valid(str(write(tmp_path / "g.ncg.json", d)))
    assert a.shapes["x"] == (7,)
    d = data_graph({"shape": [7]}, {"shape": [3]})
    d["training"] = {"dataset": {"source": "npz", "path": "missing.npz"}}
    assert load_valid(str(write(tmp_path / "h.ncg.json", d))).ok  # predict needs no dataset


# ---- what passes validation can train: the recurrent part ends at its TimeCollect ----------
def _after_timecollect(extra_nodes, extra_edges, target_delay=0):
    nodes = [node("x", "Input", shape=[4, 3], sequence=True), node("wx", "Dense", units=5),
             node("h", "Tanh"), node("tc", "TimeCollect"),
             node("y", "Target", shape=[5], dtype="float32"), node("loss", "MSELoss")]
    edges = [edge("x", "wx"), edge("wx", "h"), edge("h", "tc"),
             edge("y", "loss:target", delay=target_delay)]
    return analyze(build(graph_dict(nodes + extra_nodes, edges + extra_edges)))


def test_a_delay_edge_into_a_loss_after_the_timecollect_is_refused():
    a = _after_timecollect([], [edge("tc", "loss:pred")], target_delay=1)
    (p,) = a.problems
    assert isinstance(p, EdgeError) and (p.node, p.port) == ("loss", "target")
    assert "delay edge must stay inside the recurrent part" in p.message


def test_a_delay_edge_back_from_after_the_timecollect_is_refused():
    a = _after_timecollect([node("add", "Add"), node("out", "Dense", units=5)],
                           [edge("tc", "add:in0"), edge("out", "add:in1", delay=1),
                            edge("add", "out"), edge("out", "loss:pred")])
    (p,) = a.problems
    assert (p.node, p.port) == ("add", "in1") and "runs once, after it" in p.message
    assert a.timed == {"x", "wx", "h"}


def test_a_node_after_the_timecollect_cannot_read_a_per_step_value():
    a = _after_timecollect([node("add", "Add")],
                           [edge("tc", "add:in0"), edge("h", "add:in1"),
                            edge("add", "loss:pred")])
    (p,) = a.problems
    assert (p.node, p.port) == ("add", "in1") and "put a TimeCollect between them" in p.message


# ---- bounds: no value can make validation itself slow or large -------------------------------
@pytest.mark.parametrize("kind", ["Add", "Multiply", "Concat"])
def test_a_port_count_has_an_upper_bound(kind):
    a = analyze(build(graph_dict([node("m", kind, inputs=10**8)], [])))
    bad = [p for p in a.problems if p.param == "inputs"]
    assert bad and "from 2 to 64" in bad[0].message
    assert len(a.problems) == 3  # and the two default ports, not 10**8 of them


@pytest.mark.parametrize("options", [{"name": "spirals", "n": 10**10},
                                     {"name": "sine", "steps": 2**63},
                                     {"name": "sequences", "classes": 10**6}])
def test_built_in_dataset_options_have_upper_bounds(options):
    from core.datasets import load_dataset
    with pytest.raises(ParamError) as e:
        load_dataset({"source": "builtin", **options}, None, seed=0)
    key = next(k for k in options if k != "name")
    assert e.value.param.endswith(key) and "to" in e.value.message
