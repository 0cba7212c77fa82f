"""core.readiness: "valid" means "can train". What stops training beyond validation (no
Input, no loss, no Target, no dataset, bad settings, a dataset that cannot be read), each a
typed problem with a sentence; the status-bar texts; and graphs whose Input and Target take
their shapes from the dataset ("shape": "auto"), checked, trained and predicted from the
command line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import GraphProblem, ParamError
from core.fileformat import graph_from_dict
from core.readiness import (
    READY,
    ReadinessError,
    analyze_for_training,
    first_culprit,
    refusal,
    status_text,
)
from core.training import Trainer, parse_training
from core.validate import analyze
from tests.cli_helpers import assert_user_error, run
from tests.graphs import edge, graph_dict, node, write

DIGITS = {"dataset": {"source": "builtin", "name": "digits"}}


def classifier(training: dict | None = None, **shapes) -> dict:
    """Input -> Dense(10) -> CrossEntropyLoss <- Target, shapes "auto" unless given."""
    d = graph_dict([node("x", "Input", **({"shape": shapes["x"]} if "x" in shapes else {})),
                    node("fc", "Dense", units=10),
                    node("y", "Target", **({"shape": shapes["y"]} if "y" in shapes else {})),
                    node("loss", "CrossEntropyLoss")],
                   [edge("x", "fc"), edge("fc", "loss:pred"), edge("y", "loss:target")])
    if training is not None:
        d["training"] = training
    return d


def ready(d: dict, base_dir=None):
    return analyze_for_training(graph_from_dict(d), base_dir)


def test_a_graph_with_a_loss_a_target_and_a_dataset_is_ready():
    a = ready(classifier(DIGITS))
    assert a.ok and a.can_train and a.not_ready == []
    assert status_text(a) == READY == "Ready to train"
    assert refusal(a) is None and first_culprit(a) is None
    assert a.shapes["x"] == (64,) and a.shapes["y"] == ()  # "auto" from the dataset


def test_an_empty_graph_is_not_ready_and_says_so():
    a = ready(graph_dict([], []))
    assert a.ok and not a.can_train  # nothing is wrong with it; it just cannot train
    empty, dataset = a.not_ready
    assert isinstance(empty, ReadinessError) and "empty" in empty.message
    assert dataset.param == "training.dataset"
    assert status_text(a) == "Cannot train yet: the graph is empty"
    assert refusal(a).startswith("Cannot train: 2 problems (first: the graph is empty")
    a = ready(graph_dict([], [], training=DIGITS))
    assert [p.needs for p in a.not_ready] == ["nodes"]


def test_no_dataset_is_named_as_training_dataset_in_a_sentence():
    a = ready(classifier(x=[64], y=[]))
    assert a.ok
    (p,) = a.not_ready
    assert isinstance(p, GraphProblem) and p.param == "training.dataset"
    assert "needs a dataset" in p.message
    assert "{" not in str(p) and "None" not in str(p)  # a sentence, not JSON or a repr
    assert status_text(a) == "Cannot train yet: needs a dataset"


def test_what_is_missing_is_listed_loss_input_and_target():
    no_loss = graph_dict([node("x", "Input", shape=[64]), node("fc", "Dense", units=10)],
                         [edge("x", "fc")], training=DIGITS)
    a = ready(no_loss)
    assert [p.needs for p in a.not_ready] == ["a loss"]
    assert status_text(a) == "Cannot train yet: needs a loss"

    no_input = graph_dict([node("y", "Target", shape=[]), node("r", "ReLU")],
                          [edge("y", "r")], training=DIGITS)
    assert [p.needs for p in ready(no_input).not_ready] == ["an Input", "a loss"]
    assert status_text(ready(no_input)) == "Cannot train yet: needs an Input and a loss"

    d = classifier(DIGITS, x=[64])
    d["nodes"] = [n for n in d["nodes"] if n["id"] != "y"]
    d["edges"] = [e for e in d["edges"] if e["from"] != "y"]
    a = ready(d)
    assert not a.ok  # the loss's target port is not connected ...
    needs = [p for p in a.not_ready if isinstance(p, ReadinessError)]
    assert [p.needs for p in needs] == ["a Target"]  # ... and what to add says so
    assert "'loss'" in needs[0].message and "target" in needs[0].message
    assert status_text(a) == "Cannot train: 1 problem; needs a Target"


def test_bad_training_settings_and_a_missing_dataset_are_listed_together():
    d = classifier({"batch_size": 0}, x=[64], y=[])
    a = ready(d)
    params = sorted(p.param for p in a.not_ready)
    assert params == ["training.batch_size", "training.dataset"]
    bad = next(p for p in a.not_ready if p.param == "training.batch_size")
    assert isinstance(bad, ParamError) and "found 0" in bad.message
    assert status_text(a) == ("Cannot train yet: needs a dataset and a valid "
                              "training.batch_size")


def test_a_dataset_file_that_cannot_be_read_stops_training_but_not_validation(tmp_path):
    a = ready(classifier({"dataset": {"source": "npz", "path": "gone.npz"}}, x=[64], y=[]),
              tmp_path)
    assert a.ok and not a.can_train
    (p,) = a.not_ready
    assert p.param == "training.dataset" and "gone.npz" in str(p) and "no such file" in str(p)
    # an unknown built-in: the ParamError names the key inside the dataset
    a = ready(classifier({"dataset": {"source": "builtin", "name": "digitz"}}, x=[64], y=[]))
    (p,) = a.not_ready
    assert p.param == "training.dataset.name" and "digits" in p.message


def test_refusal_counts_every_problem_and_names_the_first():
    d = classifier(DIGITS)
    d["nodes"] += [node("drop1", "Dropout"), node("drop2", "Dropout")]
    a = ready(d)
    assert refusal(a) == ("Cannot train: 2 problems (first: node 'drop1' port 'in': input port "
                          "is not connected)")
    assert first_culprit(a) == "drop1"
    assert status_text(a) == "Cannot train: 2 problems"


def test_a_mismatch_with_the_dataset_is_a_shape_problem_on_the_node():
    a = ready(classifier(DIGITS, x=[32]))
    (p,) = a.problems
    assert (p.node, p.param) == ("x", "shape") and "[32]" in p.message and "[64]" in p.message
    assert status_text(a) == "Cannot train: 1 problem"


def test_parse_training_messages_are_sentences():
    for training, param in (({}, "training.dataset"),
                            ({"dataset": "digits"}, "training.dataset"),
                            ({"dataset": {}, "optimizer": "adam"}, "training.optimizer"),
                            ({"dataset": {}, "regularization": {"l3": 1}},
                             "training.regularization"),
                            ({"dataset": {}, "clip": {"norm": 1, "value": 1}}, "training.clip")):
        with pytest.raises(ParamError) as e:
            parse_training(training)
        assert e.value.param == param
        msg = e.value.message
        assert "{" not in msg and "None" not in msg, msg


# ---- "shape": "auto" end to end -----------------------------------------------------------------
def sine_rnn() -> dict:
    """A drawn Elman cell on the built-in sine; x and y take their shapes from the data."""
    return graph_dict(
        [node("x", "Input", shape="auto", sequence=True), node("h", "Dense", units=8),
         node("add", "Add"), node("t", "Tanh"), node("tc", "TimeCollect"),
         node("out", "Dense", units=1), node("y", "Target", dtype="float32"),
         node("loss", "MSELoss")],
        [edge("x", "h"), edge("h", "add:in0"), edge("t", "add:in1", delay=1), edge("add", "t"),
         edge("t", "tc"), edge("tc", "out"), edge("out", "loss:pred"),
         edge("y", "loss:target")],
        training={"dataset": {"source": "builtin", "name": "sine", "steps": 6, "n": 48},
                  "epochs": 1, "batch_size": 16, "device": "cpu"})


def test_auto_shapes_come_from_the_dataset_per_step_for_a_sequence_input():
    a = ready(sine_rnn())
    assert a.can_train and a.auto_shaped == {"x", "y"}
    assert a.steps == 6 and a.shapes["x"] == (1,) and a.shapes["y"] == (1,)


def test_without_the_dataset_an_auto_shape_is_one_problem_per_node():
    d = sine_rnn()
    a = analyze(graph_from_dict(d))  # the dataset is there, but was not looked at
    assert sorted((p.node, p.param) for p in a.problems) == [("x", "shape"), ("y", "shape")]
    assert all(p.message == "shape comes from the dataset, but the dataset was not read to "
               "find it" for p in a.problems)
    del d["training"]
    a = analyze(graph_from_dict(d))
    assert all(p.message == "shape comes from the dataset, but the graph has no dataset"
               for p in a.problems) and len(a.problems) == 2


def test_the_trainer_resolves_auto_shapes_from_the_loaded_data():
    g = graph_from_dict(sine_rnn())
    tr = Trainer(analyze(g), parse_training(g.training, steps=2))  # as the training process
    assert tr.analysis.shapes["x"] == (1,) and tr.run().reason == "finished"


def test_check_train_and_predict_an_auto_shaped_graph_from_the_command_line(tmp_path):
    path = write(tmp_path / "auto.ncg.json", sine_rnn())
    r = run("check", path)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), r.stdout + r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[2:]}
    assert "[1] per step" in rows["x"]
    r = run("train", path, "--steps", "2", "--save-weights", tmp_path / "w.npz")
    assert r.returncode == 0, r.stderr
    np.savez(tmp_path / "in.npz", x=np.zeros((3, 6, 1), np.float32))
    r = run("predict", path, "--weights", tmp_path / "w.npz", "--input", tmp_path / "in.npz")
    assert r.returncode == 0, r.stderr


def test_check_reports_a_dataset_mismatch_and_an_auto_shape_without_dataset(tmp_path):
    d = classifier(DIGITS, x=[32])
    r = run("check", write(tmp_path / "bad.ncg.json", d))
    line = assert_user_error(r, "node 'x'", "[32]", "[64]")
    assert "ShapeError" in r.stdout and line
    d = json.loads(json.dumps(sine_rnn()))
    del d["training"]
    r = run("check", write(tmp_path / "nodata.ncg.json", d))
    assert_user_error(r, "node 'x'", "shape comes from the dataset")


def test_an_auto_shaped_graph_exports_with_its_dataset_shapes(torch):
    from core.export import export_graph

    namespace = {"__name__": "exported"}
    exec(compile(export_graph(graph_from_dict(sine_rnn()), "pytorch"), "<export>", "exec"),
         namespace)
    assert namespace["FIELDS"]["x"][0] == (6, 1) and namespace["FIELDS"]["y"][0] == (1,)
    out = namespace["Model"]()(torch.zeros(3, 6, 1))
    assert tuple(out.shape) == (3, 1)
