"""The lesson examples (resources/examples/lesson_*.ncg.json) show what their descriptions and
their "compare" objects (docs/format.md section 2.2) say: every variant trains from the same
initial weights, with the file's seed, and the ordering of the outcomes is asserted.

Also: every example loads and is valid, every "compare" object is well formed (its keys are
ones a sweep can apply, each variant is a valid graph with valid settings), and the built-in
``digit_triplets`` dataset the Siamese lesson trains on gives what it promises."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits  # comes with scikit-learn

from core.datasets import load_dataset, peek
from core.errors import NonFiniteError
from core.fileformat import dumps, load_graph, loads
from core.graph import Graph
from core.network import Network
from core.runs.sweep import apply_variant, check_keys, variants
from core.training import DoneEvent, EpochEvent, StepEvent, Trainer, parse_training
from core.validate import analyze

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"
COMPARE_KEYS = {"set", "open", "steps", "epochs", "jobs", "finding"}


@pytest.fixture(autouse=True)
def one_blas_thread():
    """These networks are small: BLAS threads only fight over a busy machine's cores (a run
    takes several times longer with them). One thread changes no outcome asserted here."""
    with threadpool_limits(limits=1):
        yield


def lesson(name: str) -> Graph:
    return load_graph(EXAMPLES / f"{name}.ncg.json")


def initial_state(graph: Graph) -> dict[str, np.ndarray]:
    """The base graph's initial weights, built with its own seed: every variant starts here."""
    a = analyze(graph)
    assert a.ok, [str(p) for p in a.problems]
    return Network(a, seed=graph.training.get("seed", 0)).state_dict()


@dataclass
class Outcome:
    done: DoneEvent
    steps: list[StepEvent]
    epochs: list[EpochEvent]
    trainer: Trainer

    @property
    def train_loss(self) -> float:
        return self.epochs[-1].train_loss

    @property
    def val_loss(self) -> float:
        return self.epochs[-1].val_loss

    def tail_loss(self, n: int = 20) -> float:
        return float(np.mean([s.loss for s in self.steps[-n:]]))


def train(graph: Graph, values: dict | None = None,
          init: dict[str, np.ndarray] | None = None) -> Outcome:
    """Train ``graph`` with the variant ``values`` applied (as a sweep applies them) on the
    CPU, from ``init``."""
    g = apply_variant(graph, values or {})
    a = analyze(g)
    assert a.ok, [str(p) for p in a.problems]
    events: list = []
    trainer = Trainer(a, parse_training(g.training, device="cpu"), init_weights=init,
                      on_event=events.append, queue_events=False)
    done = trainer.run()
    return Outcome(done, [e for e in events if isinstance(e, StepEvent)],
                   [e for e in events if isinstance(e, EpochEvent)], trainer)


def compare_variants(graph: Graph) -> list[dict]:
    return variants(list(graph.extra["compare"]["set"].items()))


# ---- every example, every compare object ---------------------------------------------------
def all_examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.ncg.json"))


@pytest.mark.parametrize("path", all_examples(), ids=lambda p: p.name)
def test_every_example_loads_is_valid_and_keeps_its_compare_object(path):
    g = load_graph(path)
    a = analyze(g)
    assert a.ok, [str(p) for p in a.problems]
    parse_training(g.training, device="cpu")
    if "compare" in g.extra:  # a lesson says what to watch, and keeps its compare object
        assert isinstance(g.extra.get("description"), str) and g.extra["description"].strip()
        assert json.loads(dumps(loads(dumps(g))))["compare"] == g.extra["compare"]


@pytest.mark.parametrize("path", [p for p in all_examples()
                                  if "compare" in json.loads(p.read_text(encoding="utf-8"))],
                         ids=lambda p: p.name)
def test_compare_objects_are_well_formed_and_every_variant_is_valid(path):
    g = load_graph(path)
    c = g.extra["compare"]
    assert isinstance(c, dict) and set(c) <= COMPARE_KEYS, sorted(c)
    assert isinstance(c.get("finding"), str) and c["finding"].strip()
    assert isinstance(c.get("set"), dict) and c["set"]  # what Compare fills its rows with
    for k in ("steps", "epochs", "jobs"):
        if k in c:
            assert isinstance(c[k], int) and not isinstance(c[k], bool) and c[k] >= 1, k
    for other in c.get("open", []):
        other_path = EXAMPLES / other
        assert other_path.is_file() and other_path != path, other
        o = load_graph(other_path)
        assert analyze(o).ok
        assert path.name in o.extra["compare"]["open"]  # each file names the other
    sets = c["set"]
    for key, vals in sets.items():
        assert isinstance(vals, list) and len(vals) >= 2, key
        assert len({json.dumps(v, sort_keys=True) for v in vals}) == len(vals), key
    check_keys(g, sets)
    for values in variants(list(sets.items())):
        v = apply_variant(g, values)
        a = analyze(v)
        assert a.ok, (values, [str(p) for p in a.problems])
        cfg = parse_training(v.training, device="cpu")
        if "steps" in c:  # the steps the file itself trains
            per_epoch = -(-trainer_samples(v) // cfg.batch_size)
            assert (cfg.steps or cfg.epochs * per_epoch) == c["steps"], values


def trainer_samples(graph: Graph) -> int:
    """Training samples of a graph's dataset (after its validation split)."""
    t = graph.training
    ds = load_dataset(t["dataset"], EXAMPLES, seed=t.get("seed", 0))
    return len(ds) - round(len(ds) * t.get("validation_split", 0.0))


def test_the_examples_menu_shows_the_comparison():
    from gui import files

    info = files.example_info(EXAMPLES / "lesson_optimizers.ncg.json")
    assert "optimizer.type" in info.compare and "adam" in info.compare
    assert "Finding: adam" in info.compare and "reach the lowest loss" in info.compare
    assert info.compare in info.tooltip or "optimizer.type" in info.tooltip
    both = files.example_info(EXAMPLES / "lesson_batchnorm_without.ncg.json")
    assert "lesson_batchnorm_with.ncg.json" in both.compare
    plain = files.example_info(EXAMPLES / "mlp_digits.ncg.json")
    assert plain.compare == ""


# ---- 1. optimizers ---------------------------------------------------------------------------
def test_optimizers_adam_and_rmsprop_win_plain_sgd_is_last():
    g = lesson("lesson_optimizers")
    init = initial_state(g)
    runs = {v["optimizer.type"]: train(g, v, init) for v in compare_variants(g)}
    assert set(runs) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    loss = {k: r.train_loss for k, r in runs.items()}
    assert all(r.done.reason == "finished" and len(r.steps) == 300 for r in runs.values())
    # the same start: every optimizer's first step has the same loss
    assert len({round(r.steps[0].loss, 6) for r in runs.values()}) == 1
    # the finding: adam and rmsprop lowest (which of the two first depends on the seed),
    # plain sgd highest
    assert min(loss, key=loss.get) in ("adam", "rmsprop") and max(loss, key=loss.get) == "sgd"
    assert max(loss["adam"], loss["rmsprop"]) < min(loss["momentum"], loss["nesterov"]), loss
    assert max(loss["momentum"], loss["nesterov"]) < loss["adagrad"] < loss["sgd"], loss
    assert loss["adam"] < 0.2 * loss["sgd"], loss
    assert runs["adam"].epochs[-1].val_accuracy > 0.9 > runs["sgd"].epochs[-1].val_accuracy


# ---- 2. overfitting --------------------------------------------------------------------------
def small_weights(outcome: Outcome, key: str = "fc1/W") -> float:
    return float(np.mean(np.abs(outcome.trainer.net.state_dict()[key]) < 1e-3))


def test_overfitting_every_regularizer_beats_the_plain_network_and_l1_makes_weights_sparse():
    g = lesson("lesson_overfitting")
    init = initial_state(g)
    cases = {"plain": {}, "l2": {"regularization.l2": 0.001},
             "l1": {"regularization.l1": 0.001}, "dropout": {"drop.rate": 0.5}}
    offered = compare_variants(g)
    for values in cases.values():  # each is one of the comparison's variants
        full = {k: values.get(k, 0) for k in g.extra["compare"]["set"]}
        assert full in offered, full
    runs = {name: train(g, v, init) for name, v in cases.items()}
    plain = runs["plain"]
    # the plain network overfits: its validation loss climbs far above its best while the
    # training loss keeps falling
    best = min(e.val_loss for e in plain.epochs)
    assert plain.val_loss > 1.3 * best
    assert plain.train_loss < 0.5 * plain.val_loss
    for name in ("l2", "l1", "dropout"):
        assert runs[name].val_loss < 0.75 * plain.val_loss, (name, runs[name].val_loss,
                                                            plain.val_loss)
        gap = runs[name].val_loss - runs[name].train_loss
        assert gap < plain.val_loss - plain.train_loss, name
    assert small_weights(runs["l1"]) > 0.5 > 0.05 > small_weights(plain)
    assert small_weights(runs["l1"]) > small_weights(runs["l2"])


# ---- 3. batch normalization ------------------------------------------------------------------
def test_batchnorm_trains_the_deep_sigmoid_network_that_is_stuck_without_it():
    without, with_bn = lesson("lesson_batchnorm_without"), lesson("lesson_batchnorm_with")
    init_a, init_b = initial_state(without), initial_state(with_bn)
    for k in init_a:  # the same Dense layers start from the same weights
        np.testing.assert_array_equal(init_a[k], init_b[k], err_msg=k)
    assert any(n.type == "BatchNorm" for n in with_bn.nodes.values())
    assert not any(n.type == "BatchNorm" for n in without.nodes.values())
    lrs = [v["optimizer.lr"] for v in compare_variants(without)]
    assert lrs == [v["optimizer.lr"] for v in compare_variants(with_bn)] == [0.01, 0.1, 1.0]
    for lr in lrs:
        a = train(without, {"optimizer.lr": lr}, init_a)
        b = train(with_bn, {"optimizer.lr": lr}, init_b)
        assert len(a.steps) == len(b.steps) == 200
        assert a.tail_loss() > 2.0, lr  # about log(10): chance, whatever the learning rate
        assert b.tail_loss() < a.tail_loss() - 0.7, (lr, b.tail_loss())
        assert a.epochs[-1].val_accuracy < 0.3
        if lr == 0.1:  # the files' own setting
            assert b.tail_loss() < 0.25 * a.tail_loss() and b.epochs[-1].val_accuracy > 0.9


# ---- 4. exploding gradients ------------------------------------------------------------------
def test_exploding_gradients_diverge_without_clipping_and_train_with_it():
    g = lesson("lesson_exploding_gradients")
    init = initial_state(g)
    norms = [v["clip.norm"] for v in compare_variants(g)]
    assert norms == [None, 1.0, 0.25]
    runs = {n: train(g, {"clip.norm": n}, init) for n in norms}
    free = runs[None]
    assert free.done.reason == "error" and isinstance(free.done.error, NonFiniteError)
    assert "non-finite" in str(free.done.error)
    assert len(free.steps) < 20
    first = free.steps[0]
    assert free.steps[-1].global_grad_norm > 1000 * first.global_grad_norm
    for n in (1.0, 0.25):
        r = runs[n]
        assert r.done.reason == "finished" and len(r.steps) == 300, r.done.error
        assert r.steps[0].loss == pytest.approx(first.loss, rel=1e-6)  # the same start
        assert max(s.global_grad_norm for s in r.steps) < 100 * first.global_grad_norm
        assert r.tail_loss() < 0.8 * first.loss
    assert runs[0.25].tail_loss() < 0.2 * first.loss
    assert runs[0.25].tail_loss() < 0.5 * runs[1.0].tail_loss()


# ---- 5. Siamese network with a triplet loss --------------------------------------------------
def nearest_neighbour_accuracy(graph: Graph, state: dict[str, np.ndarray]) -> float:
    """Embed every digit with the anchor tower; each digit outside the triplets' pool gets
    the class of its nearest pool digit."""
    pool = graph.training["dataset"]["pool"]
    digits = load_dataset({"source": "builtin", "name": "digits"})
    x, y = digits["x"], digits["y"]
    net = Network(analyze(graph), outputs=["a_emb"], with_losses=False)
    net.load_state_dict(state)
    emb = net.predict({"anchor": x}, "a_emb")
    ref, test = emb[:pool], emb[pool:]
    d = (test ** 2).sum(1)[:, None] - 2 * test @ ref.T + (ref ** 2).sum(1)[None, :]
    return float(np.mean(y[:pool][d.argmin(1)] == y[pool:]))


def test_siamese_embeddings_classify_unseen_digits_by_their_nearest_neighbour():
    g = lesson("lesson_siamese_triplets")
    shared = [n for n in g.nodes.values() if n.params.get("shared_with")]
    assert {n.params["shared_with"] for n in shared} == {"a_fc", "a_emb"} and len(shared) == 4
    init = initial_state(g)
    assert not any(k.startswith(("p_", "n_")) for k in init)  # stored once, at the owner
    assert [v["triplet.margin"] for v in compare_variants(g)] == [0.0, 0.2, 1.0]
    runs = {m: train(g, {"triplet.margin": m}, init) for m in (0.0, 1.0)}
    for r in runs.values():
        assert r.done.reason == "finished" and len(r.steps) == 1000
    untrained = nearest_neighbour_accuracy(g, init)
    acc = {m: nearest_neighbour_accuracy(g, r.trainer.net.state_dict()) for m, r in runs.items()}
    assert acc[1.0] > 0.9, acc
    assert acc[1.0] > untrained + 0.1, (acc, untrained)
    assert acc[1.0] > acc[0.0], acc
    assert runs[1.0].tail_loss() < 0.1 * runs[1.0].steps[0].loss


# ---- the digit_triplets built-in -------------------------------------------------------------
@pytest.mark.parametrize("image", [False, True])
def test_digit_triplets_hold_same_and_other_digit_images_from_the_pool(image):
    cfg = {"source": "builtin", "name": "digit_triplets", "n": 400, "pool": 100, "image": image}
    ds = load_dataset(cfg, seed=3)
    digits = load_dataset({"source": "builtin", "name": "digits"})
    x, y = digits["x"][:100], digits["y"][:100]
    shape = (1, 8, 8) if image else (64,)
    assert ds.field_shapes() == {"anchor": (shape, "float32"), "positive": (shape, "float32"),
                                 "negative": (shape, "float32"), "y": ((), "int64"),
                                 "anchor_class": ((), "int64"), "positive_class": ((), "int64"),
                                 "negative_class": ((), "int64")}
    promised = peek.peek_fields(cfg)  # what validation checks the graph against
    assert {k: v[:2] for k, v in promised.items()} == ds.field_shapes()

    def which(images):  # the pool index of each image
        flat = images.reshape(len(images), -1)
        eq = (flat[:, None, :] == x[None, :, :]).all(-1)
        assert eq.any(1).all()  # every image comes from the first `pool` digits
        return eq.argmax(1)

    a, p, n = (which(ds[k]) for k in ("anchor", "positive", "negative"))
    assert (y[a] == ds["y"]).all() and (y[p] == ds["y"]).all() and (y[n] != ds["y"]).all()
    for k, idx in (("anchor", a), ("positive", p), ("negative", n)):
        np.testing.assert_array_equal(ds[f"{k}_class"], y[idx])  # each image's own digit
    assert np.mean(a != p) > 0.95  # another image of the digit, not the anchor again
    assert len(np.unique(n)) > 50 and set(np.unique(y[n])) == set(range(10))
    again = load_dataset(cfg, seed=3)
    other = load_dataset(cfg, seed=4)
    for k in ds.fields:
        np.testing.assert_array_equal(ds[k], again[k])
    assert not np.array_equal(ds["anchor"], other["anchor"])
