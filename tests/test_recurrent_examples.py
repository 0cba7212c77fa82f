"""The recurrent examples in resources/examples train and show learning: an LSTM on the noisy
sine, a GRU classifying sequences, a drawn Elman cycle, and a tanh RNN beside an LSTM on a
long-range memory task, where the RNN's gradient vanishes and the LSTM learns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.fileformat import load_graph
from core.training import EpochEvent, StepEvent, Trainer, parse_training
from core.validate import Analysis, analyze
from tests.cli_helpers import run

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"
RECURRENT = ("lstm_sine", "gru_sequences", "elman_cycle", "vanishing_gradients")


def example(name: str) -> Analysis:
    a = analyze(load_graph(EXAMPLES / f"{name}.ncg.json"))
    assert a.ok, [str(p) for p in a.problems]
    return a


def train(name: str, **overrides) -> tuple[Trainer, list[StepEvent], list[EpochEvent]]:
    """Train an example with its own settings (seeded) on the CPU, to the end."""
    a = example(name)
    events: list = []
    trainer = Trainer(a, parse_training(a.graph.training, device="cpu", **overrides),
                      on_event=events.append, queue_events=False)
    done = trainer.run()
    assert done.reason == "finished", done.error
    return (trainer, [e for e in events if isinstance(e, StepEvent)],
            [e for e in events if isinstance(e, EpochEvent)])


def validation(trainer: Trainer) -> dict[str, np.ndarray]:
    return {k: trainer.val_set[k] for k in trainer.val_set.fields}


def val_losses(trainer: Trainer) -> dict[str, float]:
    """Each loss node's mean over the whole validation set, in evaluation mode."""
    res = trainer.net.forward(validation(trainer), train=False)
    return {k: float(v) for k, v in res.losses.items()}


@pytest.mark.parametrize("name", RECURRENT)
def test_example_passes_check_and_trains_20_steps_from_the_command_line(tmp_path, name):
    path = EXAMPLES / f"{name}.ncg.json"
    r = run("check", path)
    assert r.returncode == 0, r.stderr
    log = tmp_path / "m.jsonl"
    r = run("train", path, "--steps", "20", "--log", log)
    assert r.returncode == 0, r.stderr
    steps = [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(20))
    # every recurrent example reports the per-step state gradient norms
    assert all(e["state_grad_norm"] for e in steps)


def test_lstm_learns_the_noisy_sine_far_better_than_repeating_the_last_value():
    trainer, steps, epochs = train("lstm_sine")
    assert {n.type for n in trainer.analysis.graph.nodes.values()} >= {"LSTM", "MSELoss"}
    val = validation(trainer)
    naive = float(np.mean((val["x"][:, -1] - val["y"]) ** 2))  # y_hat = the last input
    loss = val_losses(trainer)["loss"]
    assert loss < 0.25 * naive, (loss, naive)
    assert loss < 0.02 * float(np.var(val["y"]))
    assert steps[-1].loss < 0.05 * steps[0].loss
    assert len(steps[0].state_grad_norm["lstm"]) == 20


def test_gru_classifies_sequences_well_above_chance():
    trainer, steps, epochs = train("gru_sequences")
    assert {n.type for n in trainer.analysis.graph.nodes.values()} >= {"GRU",
                                                                        "CrossEntropyLoss"}
    classes = trainer.analysis.graph.training["dataset"]["classes"]
    assert classes == 4  # chance is 0.25
    assert epochs[-1].val_accuracy > 0.9
    assert epochs[-1].train_loss < 0.1 * epochs[0].train_loss
    logits = trainer.net.predict(validation(trainer), "fc")
    assert np.mean(logits.argmax(axis=1) == trainer.val_set["y"]) == \
        pytest.approx(epochs[-1].val_accuracy)


def test_drawn_elman_cycle_learns_to_classify_sequences():
    trainer, steps, epochs = train("elman_cycle")
    g = trainer.analysis.graph
    assert not {"RNN", "LSTM", "GRU"} & {n.type for n in g.nodes.values()}  # drawn, not built in
    assert any(e.delay for e in g.edges)
    assert "clip" in g.training  # the example shows clipping on a drawn cycle too
    assert epochs[-1].val_accuracy > 0.9  # 3 classes: chance is 1/3
    assert epochs[-1].train_loss < 0.1 * epochs[0].train_loss
    assert len(steps[0].state_grad_norm["h"]) == 20


def test_tanh_rnn_gradient_vanishes_where_the_lstm_learns_the_long_range_task():
    trainer, steps, epochs = train("vanishing_gradients")
    T = trainer.analysis.graph.training["dataset"]["steps"]
    assert T == 50
    # at the start, the gradient reaching the RNN's state at step 0 is many orders of
    # magnitude below the one at its last step
    rnn0 = steps[0].state_grad_norm["rnn"]
    assert len(rnn0) == T and rnn0[-1] > 0
    assert rnn0[0] < 1e-6 * rnn0[-1]
    assert all(rnn0[t] < rnn0[t + 10] for t in range(0, T - 10, 10))  # it shrinks going back
    # the LSTM learns the task: it recalls the marked value; the RNN stays near guessing 0,
    # whose loss is the variance of the targets (uniform in [-1, 1]: 1/3)
    losses = val_losses(trainer)
    var = float(np.var(trainer.val_set["y"]))
    assert losses["lstm_loss"] < 0.05 * var, losses
    assert losses["rnn_loss"] > 0.7 * var, losses
    assert losses["lstm_loss"] < 0.1 * losses["rnn_loss"]
    # trained, the LSTM carries gradient back to the first steps; the RNN still does not
    rnn, lstm = steps[-1].state_grad_norm["rnn"], steps[-1].state_grad_norm["lstm"]
    assert lstm[0] > 1e-3 * lstm[-1]
    assert rnn[0] < 1e-6 * rnn[-1]
