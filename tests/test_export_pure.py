"""The exported ``Model`` is a pure module: ``forward(*inputs)`` takes one tensor per Input field
and returns the model's outputs only, so that ``torch.jit.script``, ``torch.fx.symbolic_trace``
and ``torch.export.export`` take every example and every test graph and compute what eager
mode computes; the losses are a separate method. (The ONNX exporters: test_export_onnx.py.)"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from core.export import ExportError, export_graph
from core.export.pytorch import ModelWriter
from core.fileformat import load_graph
from core.network import Network
from core.validate import analyze
from core.weights import save_weights
from tests import export_graphs as eg
from tests.graphs import build, edge, node

EXAMPLES = sorted((eg.ROOT / "resources" / "examples").glob("*.ncg.json"))
CASES = [p.name.split(".")[0] for p in EXAMPLES] + list(eg.GRAPHS)


def graph_of(name: str):
    if name in eg.GRAPHS:
        return eg.GRAPHS[name]()
    return load_graph(next(p for p in EXAMPLES if p.name.split(".")[0] == name))


def model_and_inputs(torch, name: str, tmp_path, n: int = 3):
    graph = graph_of(name)
    a = analyze(graph)
    module, _ = eg.export_module(graph, tmp_path)
    model = module.Model()
    save_weights(tmp_path / "w.npz", Network(a, seed=3).state_dict())
    module.load_weights(model, tmp_path / "w.npz")
    batch = eg.batch_for(a, n=n, seed=5)
    args = tuple(torch.from_numpy(eg._as_input(batch[f.name])) for f in ModelWriter(a).inputs)
    return module, model.eval(), args


def as_list(out) -> list:
    return list(out) if isinstance(out, tuple | list) else [out]


def assert_same(torch, got, want) -> None:
    got, want = as_list(got), as_list(want)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_script_trace_and_export_take_the_model_and_agree(torch, name, tmp_path):
    module, model, args = model_and_inputs(torch, name, tmp_path)
    with torch.no_grad():
        eager = model(*args)
        assert_same(torch, torch.jit.script(model)(*args), eager)
        if hasattr(model, "packed"):  # packed sequences: traced in the padded formulation
            model.packed = False
            assert_same(torch, model(*args), eager)
        assert_same(torch, torch.fx.symbolic_trace(model)(*args), eager)
        program = torch.export.export(model, args)
        assert_same(torch, program.module()(*args), eager)
    # forward takes the inputs only: positional parameters, no defaults, no keyword-only
    params = list(inspect.signature(module.Model.forward).parameters.values())[1:]
    assert len(params) == len(module.INPUTS) == len(args)
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
    assert len(as_list(eager)) == len(module.OUTPUTS)


def test_several_losses_give_named_outputs_and_reach_every_branch(torch, tmp_path):
    """vanishing_gradients: an RNN and an LSTM, each with its loss. Both are outputs, named
    after their nodes; ``--node`` picks one, and the other branch is then not computed."""
    module, model, args = model_and_inputs(torch, "vanishing_gradients", tmp_path)
    out = model(*args)
    assert module.OUTPUTS == ("rnn_fc", "lstm_fc") and out._fields == ("rnn_fc", "lstm_fc")
    assert out.lstm_fc.shape == (3, 1)
    targets = {"y": torch.zeros(3, 1)}
    losses = model.losses(out, targets)
    assert set(losses) == {"rnn_loss", "lstm_loss"}
    np.testing.assert_allclose(losses["lstm_loss"].item(), out.lstm_fc.square().mean().item(),
                               rtol=1e-6)

    code = export_graph(graph_of("vanishing_gradients"), "pytorch", outputs=["rnn_fc"])
    forward = code[code.index("    def forward"):code.index("# The field behind")]
    assert "self.rnn(" in forward and "self.lstm(" not in forward
    assert "def losses" not in code and "def main" not in code  # the losses need lstm_fc
    assert "OUTPUTS = (\"rnn_fc\",)" in code


def test_a_branch_that_feeds_no_loss_is_not_computed(torch, tmp_path):
    d = eg.dense_activations().to_dict()
    d["nodes"].append(node("probe", "Dense", units=2))
    d["edges"].append(edge("d1", "probe"))
    graph = build(d)
    code = export_graph(graph, "pytorch")
    assert "self.probe = nn.Linear" not in code and "probe =" not in code
    code = export_graph(graph, "pytorch", outputs=["sm", "probe"])
    assert "self.probe(" in code and "OUTPUTS = (\"sm\", \"probe\")" in code


@pytest.mark.parametrize("name", ["elman_cycle", "elman_all_delay2", "loss_in_region",
                                  "sequence_layers"])
def test_recurrent_state_follows_the_dtype_of_the_model(torch, name, tmp_path):
    module, model, args = model_and_inputs(torch, name, tmp_path)
    model = model.double()
    out = model(*[a.double() if a.is_floating_point() else a for a in args])
    assert all(o.dtype == torch.float64 for o in as_list(out))
    assert_same(torch, [o.float() for o in as_list(out)],
                module.Model.forward(model.float(), *args))


def test_outputs_the_losses_cannot_be_are_refused():
    graph = eg.dense_activations()
    for bad, why in (("loss", "a loss"), ("nope", "no node")):
        with pytest.raises(ExportError, match=why) as e:
            export_graph(graph, "pytorch", outputs=[bad])
        assert e.value.node == bad


def test_cli_node_chooses_the_outputs(tmp_path):
    from tests.cli_helpers import assert_user_error, run

    path = next(p for p in EXAMPLES if p.name.startswith("vanishing_gradients"))
    out = tmp_path / "m.py"
    r = run("export", path, "--to", "pytorch", "--node", "lstm_fc", "--node", "lstm", "-o", out)
    assert r.returncode == 0, r.stderr
    code = out.read_text()
    assert 'OUTPUTS = ("lstm_fc", "lstm")' in code and "self.rnn(" not in code
    assert_user_error(run("export", path, "--to", "pytorch", "--node", "lstm_loss"),
                      "lstm_loss")
    assert_user_error(run("export", path, "--to", "python", "--node", "lstm"), "--node")
