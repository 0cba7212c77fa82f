"""The benchmark compares like with like: each recurrent workload's PyTorch twin computes the
same loss and gradients as our network from the same weights, and ``bench --quick`` runs a
smaller set than the full bench."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.workloads import (
    SEQ_CLASSES,
    SEQ_F,
    SEQ_H,
    SEQ_T,
    all_workloads,
    by_name,
    from_spec,
    scaling_workloads,
    tiny_mlp,
)
from core.fileformat import graph_from_dict
from core.network import Network
from core.validate import analyze
from tests import torch_ref

RECURRENT = {"lstm": "rnn", "gru": "rnn", "elman_cycle": "h"}


def workload(name: str):
    return next(w for w in all_workloads() if w.name == name)


@pytest.mark.parametrize("name", list(RECURRENT))
def test_recurrent_workload_and_its_torch_twin_agree(torch, name):
    w = workload(name)
    a = analyze(graph_from_dict(w.graph))
    assert a.ok, [str(p) for p in a.problems]
    net = Network(a, seed=0)
    batch = w.make_batch(np.random.default_rng(0), w.batch)
    assert batch["x"].shape == (32, SEQ_T, SEQ_F) and w.batch == 32
    res = net.loss_and_grads(batch)
    model = w.torch_factory(w.graph, net.state_dict())
    assert model.rnn.hidden_size == SEQ_H and model.fc.out_features == SEQ_CLASSES
    loss = torch.nn.functional.cross_entropy(model(torch_ref.tensor(batch["x"])),
                                             torch_ref.tensor(batch["y"]))
    loss.backward()
    assert float(res.loss) == pytest.approx(loss.item(), rel=1e-5)
    g = net.gradients()
    np.testing.assert_allclose(g["fc/W"], torch_ref.layer_grads(model.fc, "Dense")["W"],
                               rtol=1e-3, atol=1e-6)
    w_hh = g["rnn/W_hh"] if name != "elman_cycle" else g["wh/W"]
    rnn_type = type(model.rnn).__name__  # nn.LSTM / GRU / RNN: our type of the same name
    np.testing.assert_allclose(w_hh, torch_ref.layer_grads(model.rnn, rnn_type)["W_hh"],
                               rtol=1e-3, atol=1e-6)


def test_quick_bench_is_a_subset_with_every_kind_of_workload():
    full = [w.name for w in all_workloads()]
    quick = [w.name for w in all_workloads(quick=True)]
    assert {"lstm", "gru", "elman_cycle", "mlp_small", "lenet"} <= set(full)
    assert set(quick) < set(full) and "elman_cycle" in quick and "lstm" in quick


def test_every_workload_is_rebuilt_from_its_spec():
    # the side processes get the workload as its spec: the very graph and batch come back
    scaling = [w for _, _, _, w in scaling_workloads()]
    for w in [*all_workloads(), tiny_mlp(), *scaling]:
        back = from_spec(json.loads(json.dumps(w.spec)))
        assert (back.name, back.batch, back.graph) == (w.name, w.batch, w.graph), w.name
        a = np.random.default_rng(3)
        b1, b2 = w.make_batch(a, 2), back.make_batch(np.random.default_rng(3), 2)
        assert all(np.array_equal(b1[k], b2[k]) for k in b1)
    assert by_name("mlp_tiny").spec == tiny_mlp().spec
    with pytest.raises(ValueError):
        from_spec({"family": "transformer"})


def test_scaling_covers_batch_and_width_for_the_mlp_and_the_lstm():
    points = scaling_workloads()
    for model in ("mlp", "lstm"):
        batches = [v for m, axis, v, _ in points if m == model and axis == "batch"]
        widths = [v for m, axis, v, _ in points if m == model and axis == "width"]
        assert batches == [32, 64, 128, 256, 512, 1024] and len(widths) >= 5
    for m, axis, v, w in points:
        if axis == "batch":
            assert w.batch == v
        else:
            units = w.spec["sizes"][1] if m == "mlp" else w.spec["hidden"]
            assert units == v
    quick = scaling_workloads(quick=True)
    assert len(quick) < len(points) and {p[:2] for p in quick} == {p[:2] for p in points}
