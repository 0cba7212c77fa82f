"""What passes validation trains and exports: random valid graphs, drawn from the catalogue, each
validate, train one step to a finite loss, and export to PyTorch code that computes what ours
computes from the same weights: the outputs and the losses in evaluation mode, and one
training step (its loss and the weights after it, in float64).

The drawn graphs cover feedforward chains with branches and merges, convolutions and pooling,
built-in recurrent layers and drawn cycles (with per-step losses and delays of 1 and 2),
Embedding on integer (and whole-number float) tokens, inside and outside a recurrent region,
Reshape and Flatten (to and from scalars, with Dense and Softmax on other axes), Softmax
heads, every loss with each target layout it accepts (class indices of every integer dtype,
class probabilities, per-position classes, 0/1 and -1/+1 labels, [] against [1]), triplet
towers, and layer sharing (``shared_with``, chained) of Dense, Conv2D, Embedding, the
recurrent layers and BatchNorm. Every graph is valid by construction."""
from __future__ import annotations

import numpy as np
import pytest

from core import optim
from core.export.pytorch import ModelWriter
from core.network import Network
from core.optim import make_optimizer
from core.training import parse_training, training_step
from core.validate import analyze
from core.weights import load_weights, save_weights
from tests import export_graphs as eg
from tests.graphs import build, edge, graph_dict, node

SEEDS = range(64)
KINDS = ["vector", "image", "recurrent", "cycle", "tokens", "triplet", "reshape",
         "token_cycle"]
ACTIVATIONS = [("ReLU", {}), ("Tanh", {}), ("Sigmoid", {}), ("LeakyReLU", {"negative_slope": 0.1}),
               ("ELU", {"alpha": 0.5}), ("Identity", {})]
INT_DTYPES = ("int64", "int32")


class Drawer:
    """Builds one random graph: nodes and edges, and how to draw the data of each field."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[dict] = []
        self.edges: list[dict] = []
        # field -> (kind, argument): "normal", ("index", classes), "binary", "sign", "probs"
        self.fields: dict[str, tuple[str, int]] = {}

    def add(self, kind: str, src: str | None, port: str = "", **params) -> str:
        nid = f"{kind.lower()}{len(self.nodes)}"
        self.nodes.append(node(nid, kind, **params))
        if src is not None:
            self.edges.append(edge(src, f"{nid}:{port}" if port else nid))
        return nid

    def link(self, src: str, dst: str, port: str = "", **extra) -> None:
        self.edges.append(edge(src, f"{dst}:{port}" if port else dst, **extra))

    def data(self, role: str, shape, dtype: str, kind: str = "normal", arg: int = 0,
             **params) -> str:
        """An Input or Target reading a field of its own, whose data are of ``kind``."""
        fld = f"f{len(self.fields)}"
        self.fields[fld] = (kind, arg)
        return self.add(role, None, shape=list(shape), dtype=dtype, field=fld, **params)

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)

    # ---- bodies ------------------------------------------------------------------------------
    def vector_block(self, src: str, width: int) -> tuple[str, int]:
        """A few random layers on a vector of ``width`` features."""
        for _ in range(int(self.rng.integers(1, 4))):
            choice = self.pick(["dense", "act", "dropout", "batchnorm", "branch", "shared",
                                "reshape"])
            if choice == "dense":
                width = int(self.rng.integers(2, 9))
                src = self.add("Dense", src, units=width, bias=self.coin())
            elif choice == "act":
                kind, params = self.pick(ACTIVATIONS)
                src = self.add(kind, src, **params)
            elif choice == "dropout":
                src = self.add("Dropout", src, rate=0.3)
            elif choice == "batchnorm":
                src = self.add("BatchNorm", src)
            elif choice == "branch":  # two Dense branches, merged
                merge = self.pick(["Add", "Multiply", "Concat"])
                w = int(self.rng.integers(2, 7))
                a = self.add("Dense", src, units=w)
                b = self.add("Dense", src, units=w)
                src, width = self.merge(merge, [a, b]), (2 * w if merge == "Concat" else w)
            elif choice == "shared":  # the same Dense on two paths (a chain of sharing)
                w, bias = int(self.rng.integers(2, 7)), self.coin()
                a = self.add("Dense", src, units=w, bias=bias)
                b = self.add("Dense", self.add("Tanh", src), units=w, bias=bias, shared_with=a)
                outs = [a, b]
                if self.coin():
                    outs.append(self.add("Dense", self.add("Sigmoid", src), units=w, bias=bias,
                                         shared_with=self.pick([a, b])))
                merge = self.pick(["Add", "Multiply", "Concat"])
                src = self.merge(merge, outs)
                width = len(outs) * w if merge == "Concat" else w
            else:
                src, width = self.matrix_block(src, width)
        return src, width

    def merge(self, kind: str, srcs: list[str], **params) -> str:
        m = self.add(kind, srcs[0], "in0", inputs=len(srcs), **params)
        for i, s in enumerate(srcs[1:], 1):
            self.link(s, m, f"in{i}")
        return m

    def matrix_block(self, src: str, width: int) -> tuple[str, int]:
        """A vector reshaped to a matrix, worked on along either axis, and back to a vector."""
        rows = self.pick([d for d in (1, 2, 3, 4) if width % d == 0])
        cols = width // rows
        shape = self.pick([[rows, cols], [rows, -1], [-1, cols]])
        src = self.add("Reshape", src, shape=shape)
        for _ in range(int(self.rng.integers(1, 3))):
            choice = self.pick(["dense", "softmax", "concat", "act"])
            if choice == "dense":  # on the last axis
                cols = int(self.rng.integers(2, 6))
                src = self.add("Dense", src, units=cols)
            elif choice == "softmax":
                src = self.add("Softmax", src, axis=self.pick([0, 1, -1, -2]))
            elif choice == "concat":
                axis = self.pick([0, 1, -1, -2])
                other = self.add("Dense", src, units=cols)
                src = self.merge("Concat", [src, other], axis=axis)
                if axis in (0, -2):
                    rows *= 2
                else:
                    cols *= 2
            else:
                kind, params = self.pick(ACTIVATIONS)
                src = self.add(kind, src, **params)
        if self.coin():
            return self.add("Flatten", src), rows * cols
        return self.add("Reshape", src, shape=[-1]), rows * cols

    def image_block(self, src: str, c: int, hw: int) -> tuple[str, int]:
        """Convolutions and pooling on [c, hw, hw], then Flatten or global pooling."""
        for _ in range(int(self.rng.integers(1, 3))):
            c = int(self.rng.integers(2, 5))
            k = int(self.rng.integers(1, 4))
            if self.coin(0.3):  # a convolution used twice: on x and on relu(x)
                conv = self.add("Conv2D", src, filters=c, kernel_size=k, padding="same")
                twin = self.add("Conv2D", self.add("ReLU", src), filters=c, kernel_size=k,
                                padding="same", shared_with=conv)
                src = self.merge(self.pick(["Add", "Multiply"]), [conv, twin])
            else:
                src = self.add("Conv2D", src, filters=c, kernel_size=k, padding="same")
            src = self.add("ReLU", src)
            if self.coin(0.3):
                src = self.add("BatchNorm", src)
            if hw >= 4 and self.coin():
                src = self.add(self.pick(["MaxPool2D", "AvgPool2D"]), src, pool_size=2)
                hw //= 2
        if self.coin():
            return self.add("GlobalAvgPool2D", src), c
        return self.add("Flatten", src), c * hw * hw

    def recurrent_block(self, src: str, features: int, last: str | None = None,
                        share: bool | None = None) -> tuple[str, int]:
        """One or two built-in recurrent layers on a [T, features] sequence (the last of
        kind ``last``, as a pair sharing weights with ``share``; random when None); a last
        one returning every step is Flattened."""
        kind = self.pick(["RNN", "LSTM", "GRU"])
        h = int(self.rng.integers(2, 7))
        if self.coin():
            src = self.add(kind, src, units=h, return_sequences=True)
            kind = self.pick(["RNN", "LSTM", "GRU"])
        kind = last or kind
        seqs = self.coin(0.25)
        if self.coin(0.4) if share is None else share:
            a = self.add(kind, src, units=h, return_sequences=seqs)
            b = self.add(kind, self.add("Tanh", src), units=h, return_sequences=seqs,
                         shared_with=a)
            out = self.merge("Add", [a, b])
        else:
            out = self.add(kind, src, units=h, return_sequences=seqs)
        if seqs:
            return self.add("Flatten", out), eg.T * h
        return out, h

    def drawn_cycle(self, src: str) -> tuple[str, int]:
        """An Elman cell drawn with a delay edge, closed by a TimeCollect; sometimes with a
        loss inside the region as well."""
        h = int(self.rng.integers(2, 7))
        wx = self.add("Dense", src, units=h)
        wh = self.add("Dense", None, units=h, bias=self.coin())
        add = self.merge("Add", [wx, wh])
        if self.coin(0.3):  # a static input, the same at every step (or zeros until step d)
            k = int(self.rng.integers(1, 4))
            static = self.add("Dense", self.data("Input", [k], "float32"), units=h)
            next(n for n in self.nodes if n["id"] == add)["params"]["inputs"] = 3
            self.link(static, add, "in2", **({"delay": 1} if self.coin() else {}))
        act = self.add(self.pick(["Tanh", "Sigmoid"]), add)
        self.link(act, wh, delay=self.pick([1, 1, 2]))
        if self.coin(0.3):  # a per-step loss against a static target
            k = int(self.rng.integers(1, 4))
            y = self.data("Target", [k], "float32")
            loss = self.add("MSELoss", self.add("Dense", act, units=k), "pred")
            self.link(y, loss, "target")
        mode = self.pick(["last", "mean", "all"])
        tc = self.add("TimeCollect", act, mode=mode)
        if mode == "all":
            return self.add("Flatten", tc), eg.T * h
        return tc, h

    def tokens(self, sequence: bool = False) -> tuple[str, int]:
        """An Embedding of token indices: integers, or whole-number floats."""
        vocab, dim = int(self.rng.integers(3, 12)), int(self.rng.integers(2, 6))
        dtype = self.pick(["int64", "int32", "float32"])
        x = self.data("Input", [eg.T], dtype, "index", vocab, sequence=sequence)
        emb = self.add("Embedding", x, num_embeddings=vocab, dim=dim)
        if not sequence and self.coin(0.3):  # a second token field through the same table
            x2 = self.data("Input", [eg.T], dtype, "index", vocab)
            twin = self.add("Embedding", x2, num_embeddings=vocab, dim=dim, shared_with=emb)
            emb = self.merge(self.pick(["Add", "Concat"]), [emb, twin])
            dim *= 2 if self.nodes[-1]["type"] == "Concat" else 1
        return emb, dim

    # ---- heads -------------------------------------------------------------------------------
    def head(self, src: str) -> None:
        """A loss on a vector: every loss, with each target layout it accepts."""
        choice = self.pick(["ce", "ce_probs", "ce_positions", "mse", "softmax", "bce",
                            "hinge", "hinge_multi"])
        c = int(self.rng.integers(2, 5))
        if choice == "ce":
            self.loss("CrossEntropyLoss", self.add("Dense", src, units=c),
                      self.data("Target", [], self.pick(["int64", "int32", "float32"]),
                                "index", c))
        elif choice == "ce_probs":
            self.loss("CrossEntropyLoss", self.add("Dense", src, units=c),
                      self.data("Target", [c], "float32", "probs"))
        elif choice == "ce_positions":  # a class per position of a [k, C] prediction
            k = int(self.rng.integers(2, 4))
            pred = self.add("Reshape", self.add("Dense", src, units=k * c), shape=[k, c])
            target = self.pick([self.data("Target", [k], "int64", "index", c),
                                self.data("Target", [k, c], "float32", "probs")])
            self.loss("CrossEntropyLoss", pred, target)
        elif choice == "mse":
            self.loss("MSELoss", self.add("Dense", src, units=c),
                      self.data("Target", [c], self.pick(["float32", "float64"])))
        elif choice == "softmax":  # probabilities against probabilities
            k = int(self.rng.integers(1, 3))
            pred = self.add("Dense", src, units=k * c)
            if k > 1:
                pred = self.add("Reshape", pred, shape=[k, c])
            self.loss("MSELoss", self.add("Softmax", pred),
                      self.data("Target", [k, c] if k > 1 else [c], "float32", "probs"))
        elif choice == "bce":
            k = int(self.rng.integers(1, 4))
            pred = self.add("Dense", src, units=k)
            tshape = [k]
            if k == 1:
                tshape = self.pick([[], [1]])
                if self.coin():
                    pred = self.add("Reshape", pred, shape=[])
            self.loss("BinaryCrossEntropyLoss", pred,
                      self.data("Target", tshape, self.pick(["float32", "int64"]), "binary"))
        elif choice == "hinge":  # binary: one output, labels 0/1 or -1/+1
            pred = self.add("Dense", src, units=1)
            if self.coin():
                pred = self.add("Reshape", pred, shape=[])
            self.loss("HingeLoss", pred,
                      self.data("Target", self.pick([[], [1]]), self.pick(["float32", "int64"]),
                                self.pick(["binary", "sign"])),
                      margin=self.pick([1.0, 0.5, 0.0]))
        else:
            self.loss("HingeLoss", self.add("Dense", src, units=c),
                      self.data("Target", [], self.pick(["int64", "int32", "float32"]),
                                "index", c), margin=self.pick([1.0, 0.3]))

    def loss(self, kind: str, pred: str, target: str, **params) -> str:
        loss = self.add(kind, pred, "pred", **params)
        self.link(target, loss, "target")
        return loss

    def triplet(self) -> None:
        """Three towers of one design, sharing every parameter (a chain of sharing), feeding a
        TripletLoss; sometimes a classifier on the anchor's embedding as well."""
        steps = []
        for _ in range(int(self.rng.integers(1, 4))):
            choice = self.pick(["dense", "dense", "act", "batchnorm", "dropout"])
            if choice == "dense":
                steps.append(("Dense", {"units": int(self.rng.integers(2, 7)),
                                        "bias": self.coin()}))
            elif choice == "act":
                steps.append(self.pick(ACTIVATIONS))
            elif choice == "batchnorm":
                steps.append(("BatchNorm", {}))
            else:
                steps.append(("Dropout", {"rate": 0.2}))
        if not any(kind == "Dense" for kind, _ in steps):
            steps.insert(0, ("Dense", {"units": 4}))
        f = int(self.rng.integers(2, 6))
        towers: list[list[str]] = []
        for _ in range(3):
            src = self.data("Input", [f], "float32")
            ids = []
            for i, (kind, params) in enumerate(steps):
                extra = {}
                if kind in ("Dense", "BatchNorm") and towers:
                    extra["shared_with"] = self.pick([t[i] for t in towers])
                src = self.add(kind, src, **params, **extra)
                ids.append(src)
            towers.append(ids)
        ends = [t[-1] for t in towers]
        if self.coin(0.3):  # embeddings with a position axis: [2, D / 2]
            width = next(p["units"] for k, p in reversed(steps) if k == "Dense")
            if width % 2 == 0:
                ends = [self.add("Reshape", e, shape=[2, -1]) for e in ends]
        classify, first = self.coin(0.4), self.coin()
        if classify and first:  # the classifier's loss first: its pred is the output
            self.head(towers[0][-1])
        loss = self.add("TripletLoss", ends[0], "anchor", margin=self.pick([1.0, 0.2]))
        self.link(ends[1], loss, "positive")
        self.link(ends[2], loss, "negative")
        if classify and not first:
            self.head(towers[0][-1])


def random_graph(seed: int):
    """(graph, field -> how to draw its data)."""
    d = Drawer(seed)
    kind = KINDS[seed % len(KINDS)]
    if kind == "vector":
        f = int(d.rng.integers(2, 7))
        dtype = d.pick(["float32", "float64"])
        x = d.data("Input", [f], dtype)
        src, width = d.vector_block(x, f)
        if d.coin(0.4):  # a second Input node reading the same field: one argument
            again = d.add("Input", None, **d.nodes[0]["params"])
            other = d.add("Dense", again, units=width)
            src = d.merge("Add", [src, other])
        if d.coin(0.3):  # an autoencoder: the Target reads the Input's field
            y = d.add("Target", None, **d.nodes[0]["params"])
            d.loss("MSELoss", d.add("Dense", src, units=f), y)
            return _built(d, seed)
    elif kind == "image":
        src, width = d.image_block(d.data("Input", [1, 6, 6], "float32"), 1, 6)
        src, width = d.vector_block(src, width)
    elif kind == "recurrent":
        src, width = d.recurrent_block(d.data("Input", [eg.T, 3], "float32"), 3,
                                       last=("RNN", "LSTM", "GRU")[seed // 8 % 3],
                                       share=seed // 8 % 2 == 0)
        src, width = d.vector_block(src, width)
    elif kind == "cycle":
        src, width = d.drawn_cycle(d.data("Input", [eg.T, 3], "float32", sequence=True))
    elif kind == "tokens":
        emb, dim = d.tokens()
        if d.coin():
            src, width = d.recurrent_block(emb, dim)
        else:
            src = emb
            if d.coin():  # Dense over the last axis of [T, dim]
                dim = int(d.rng.integers(2, 5))
                src = d.add("Dense", src, units=dim)
            src, width = d.add("Flatten", src), eg.T * dim
        src, width = d.vector_block(src, width)
    elif kind == "triplet":
        d.triplet()
        return _built(d, seed)
    elif kind == "reshape":
        if d.coin():  # one number per sample, flattened to [1]
            src, width = d.add("Flatten", d.data("Input", [], "float32")), 1
        else:
            f = d.pick([4, 6, 8, 12])
            src, width = d.matrix_block(d.data("Input", [f], "float32"), f)
        src, width = d.vector_block(src, width)
    else:  # token_cycle: an Embedding inside the recurrent region
        emb, _ = d.tokens(sequence=True)
        src, width = d.drawn_cycle(emb)
    d.head(src)
    return _built(d, seed)


def _built(d: Drawer, seed: int):
    graph = build(graph_dict(d.nodes, d.edges, name=f"random-{seed}",
                             training=eg.training(batch_size=6)))
    return graph, d.fields


def batch_for(graph, fields: dict, n: int, seed: int) -> dict[str, np.ndarray]:
    """Data for every field: floats as float64, integer fields in their node's dtype."""
    rng = np.random.default_rng(seed)
    dtypes = {nd.params["field"]: nd.params["dtype"] for nd in graph.nodes.values()
              if nd.type in ("Input", "Target")}
    shapes = {nd.params["field"]: tuple(nd.params["shape"]) for nd in graph.nodes.values()
              if nd.type in ("Input", "Target")}
    out = {}
    for fld, (kind, arg) in fields.items():
        shape = (n, *shapes[fld])
        if kind == "index":
            v = rng.integers(0, arg, size=shape)
        elif kind == "binary":
            v = rng.integers(0, 2, size=shape)
        elif kind == "sign":
            v = rng.choice([-1, 1], size=shape)
        elif kind == "probs":
            v = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        else:
            v = rng.standard_normal(shape)
        dtype = dtypes[fld]
        out[fld] = v.astype(dtype if dtype in INT_DTYPES else np.float64)
    return out


def exported_loss(model, graph, batch: dict, torch):
    """(output, loss) of the exported model in evaluation mode, the fields given as the
    docstrings say: Input fields positionally to ``forward``, the fields the losses read by name
    to ``loss``, each in its node's dtype (floats as float32)."""
    w = ModelWriter(analyze(graph))

    def t(f):
        v = batch[f.name]
        return torch.from_numpy(v if v.dtype.kind in "iu" else v.astype(np.float32))

    with torch.no_grad():
        outputs = model(*map(t, w.inputs))
        loss = model.loss(outputs, {f.name: t(f) for f in w.targets})
    out = outputs[0] if isinstance(outputs, tuple) else outputs
    return out.numpy(), float(loss)


def check_graph(graph, fields: dict, seed: int, tmp_path, torch) -> None:
    """Validates; trains one step to a finite loss; exports to code that agrees with us."""
    a = analyze(graph)
    assert a.ok, [str(p) for p in a.problems]
    batch = batch_for(graph, fields, n=6, seed=seed)

    net = Network(a, seed=seed)  # one training step, as training runs it
    cfg = parse_training(graph.training)
    opt = make_optimizer(cfg.optimizer, list(net.params.items()))
    loss, _, global_norm, _ = training_step(net, opt, batch, cfg)
    assert np.isfinite(loss) and np.isfinite(global_norm)
    state = net.state_dict()

    # outputs in evaluation mode, through a weights file as main.py predict reads it
    ours, theirs = eg.predict_both(graph, tmp_path, batch, state)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)

    # the losses in evaluation mode, targets given to forward as its docstring says
    module, _ = eg.export_module(graph, tmp_path)
    model = module.Model()
    module.load_weights(model, tmp_path / "w.npz")
    model.eval()
    out, their_loss = exported_loss(model, graph, batch, torch)
    np.testing.assert_allclose(out, theirs, rtol=1e-6, atol=1e-6)
    evaluated = Network(a)
    evaluated.load_state_dict(load_weights(tmp_path / "w.npz"))
    our_loss = float(evaluated.forward(batch, train=False).loss)
    assert their_loss == pytest.approx(our_loss, rel=1e-4, abs=1e-5)


def check_training_step(graph, fields: dict, seed: int, tmp_path, torch) -> None:
    """One float64 training step of the exported script's ``train_step`` equals ours: the
    loss, and every weight and buffer after it (Dropout off: its masks are not torch's)."""
    for nid, nd in graph.nodes.items():
        if nd.type == "Dropout":
            graph.set_param(nid, "rate", 0.0)
    graph.set_training(eg.training(optimizer={"type": "adam", "lr": 0.01}))
    a = analyze(graph)
    cfg = parse_training(graph.training)
    batch = batch_for(graph, fields, n=6, seed=seed + 1000)
    net = Network(a, dtype=np.float64, seed=seed)
    save_weights(tmp_path / "w64.npz", net.state_dict())
    net.load_state_dict(load_weights(tmp_path / "w64.npz"))
    opt = optim.make_optimizer(cfg.optimizer, net.params.items())
    our_loss, *_ = training_step(net, opt, batch, cfg)

    module, _ = eg.export_module(graph, tmp_path)
    with eg.float64_default(torch):
        model = module.Model()
        module.load_weights(model, tmp_path / "w64.npz")
        model.train()
        # as the script's loader gives them: integers as int64, floats in the model's dtype
        tb = {k: torch.from_numpy(v.astype(np.int64) if v.dtype.kind in "iu" else v)
              for k, v in batch.items()}
        loss = module.train_step(module.WithLoss(model), model, module.make_optimizer(model),
                                 tb)["loss"]
    assert loss == pytest.approx(float(our_loss), rel=1e-8, abs=1e-10)
    state = model.state_dict()
    ours = {**net.params, **net.buffers}
    assert set(module.WEIGHTS) == set(ours)
    for key, (name, transposed) in module.WEIGHTS.items():
        t = state[name].T if transposed else state[name]
        np.testing.assert_allclose(t.detach().numpy(), ours[key], rtol=1e-6, atol=1e-9,
                                   err_msg=key)


def test_the_drawn_graphs_cover_the_catalogue():
    """Every node type, every loss and layer sharing of every parameterised family appear."""
    from core import catalogue

    graphs = [random_graph(s)[0] for s in SEEDS]
    used = {nd.type for g in graphs for nd in g.nodes.values()}
    assert used == set(catalogue.types())
    shared = {nd.type for g in graphs for nd in g.nodes.values()
              if nd.params.get("shared_with")}
    assert shared == {"Dense", "Conv2D", "Embedding", "RNN", "LSTM", "GRU", "BatchNorm"}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_random_valid_graph_trains_and_exports_to_code_that_agrees(seed, tmp_path, torch):
    graph, fields = random_graph(seed)
    check_graph(graph, fields, seed, tmp_path, torch)
    check_training_step(graph, fields, seed, tmp_path, torch)


# ---- bugs the drawn graphs found -------------------------------------------------------------
@pytest.mark.parametrize("loss", ["CrossEntropyLoss", "HingeLoss"])
def test_exported_forward_takes_int32_class_indices_as_its_docstring_says(loss, tmp_path,
                                                                          torch):
    """losses documents an int32 Target field as int32; torch's cross_entropy and
    multi_margin_loss refuse int32 indices, so the export converts them (it used to pass
    them on as they were and fail with 'expected scalar type Long')."""
    graph = build(graph_dict(
        [node("x", "Input", shape=[3], dtype="float32", field="x"),
         node("fc", "Dense", units=4),
         node("y", "Target", shape=[], dtype="int32", field="y"), node("loss", loss)],
        [edge("x", "fc"), edge("fc", "loss:pred"), edge("y", "loss:target")],
        training=eg.training()))
    module, _ = eg.export_module(graph, tmp_path)
    assert '"y": [B] int32' in module.Model.losses.__doc__
    check_graph(graph, {"x": ("normal", 0), "y": ("index", 4)}, 0, tmp_path, torch)
