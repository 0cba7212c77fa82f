"""The base of every node type: its ports, parameters, shape inference, forward and backward.

A node type is a ``Layer`` subclass registered with ``@register``. One instance exists per
node of a compiled network. Forward returns the output and a *cache*: exactly what backward
will need (Chainer's retain_inputs / retain_outputs idea). Keeping the saved values in the
cache rather than on the layer lets the same layer run at many time steps of an unrolled
recurrent graph, and lets the plan free every activation that no cache holds.

Shapes are per sample (tuples, batch axis implied). Arrays carry the batch axis first.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from core.errors import ShapeError
from core.params import NodeRef, ParamSpec

Shape = tuple[int, ...]

REGISTRY: dict[str, type[Layer]] = {}

# Palette categories, in the order the editor shows them.
CATEGORIES = ("Data", "Core", "Convolution", "Recurrent", "Regularization", "Activations",
              "Merge", "Losses")


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: make ``cls`` a node type under ``cls.type_name``."""
    assert cls.type_name and cls.type_name not in REGISTRY, cls
    assert cls.category in CATEGORIES, cls
    REGISTRY[cls.type_name] = cls
    return cls


class Context:
    """What a forward or backward call may use besides its inputs.

    xp: the array module (numpy or cupy, from ``kernels.backend``).
    train: training mode (Dropout drops, BatchNorm uses batch statistics).
    rng: random generator of ``xp`` (Dropout masks), seeded by the network.
    dtype: the floating dtype of activations and parameters; backward's ``gout`` has it.
    """

    def __init__(self, xp, *, train: bool = False, rng=None, dtype=np.float32):
        self.xp = xp
        self.train = train
        self.rng = rng
        self.dtype = np.dtype(dtype)


class Layer:
    type_name: ClassVar[str] = ""
    category: ClassVar[str] = "Core"
    doc: ClassVar[str] = ""
    params_spec: ClassVar[dict[str, ParamSpec]] = {}
    # Names of the trainable parameters (docs/format.md section 3 layouts) and buffers a node of
    # this type can have; ``param_shapes()`` / ``buffer_shapes()`` give the ones a node has.
    param_names: ClassVar[tuple[str, ...]] = ()
    buffer_names: ClassVar[tuple[str, ...]] = ()
    is_loss: ClassVar[bool] = False
    # Activation functions that follow a layer decide its init (He for these, Glorot else).
    relu_family: ClassVar[bool] = False
    # "input" or "target" for a node the network feeds from a dataset field
    # (``params["field"]``, ``params["shape"]``, ``params["dtype"]``); None for the others.
    data_role: ClassVar[str | None] = None
    # True for the node that closes a recurrent region: it receives its input's value at
    # every time step and gives one whole-sequence value (TimeCollect).
    collects_steps: ClassVar[bool] = False
    # Parameters a node fresh from the palette starts with, so that it is valid as soon as
    # it is wired (values for the required parameters; the user edits them).
    starter_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, node_id: str, params: dict[str, Any]):
        self.id = node_id
        self.params = params
        # Set by the network when it is built:
        self.in_shapes: dict[str, Shape] = {}
        self.out_shape: Shape = ()
        self.P: dict[str, Any] = {}  # parameters (arrays on the device)
        self.G: dict[str, Any] = {}  # their gradients (None until the first backward)
        self.B: dict[str, Any] = {}  # buffers (BatchNorm running statistics)
        # Per input port: must backward return its gradient? The plan clears this for
        # inputs with no parameter behind them (a first Dense layer skips x's gradient).
        self.needs_input_grad: list[bool] | None = None

    # ---- description -------------------------------------------------------------------
    @classmethod
    def all_params_spec(cls) -> dict[str, ParamSpec]:
        """The parameter specs, with ``shared_with`` for types that have parameters."""
        spec = dict(cls.params_spec)
        if cls.param_names:
            spec["shared_with"] = NodeRef(default=None,
                                          doc="id of a node whose parameters this one uses")
        return spec

    @classmethod
    def input_ports(cls, params: dict[str, Any]) -> tuple[str, ...]:
        """Names of the input ports (may depend on params, e.g. ``inputs`` of Add)."""
        return ("in",)

    output_ports: ClassVar[tuple[str, ...]] = ("out",)

    def presents_steps(self) -> bool:
        """True for a data node that presents a sequence one time step at a time (an Input
        with ``sequence``): its output shape is one step's, and what it feeds runs per step."""
        return False

    # ---- shapes ------------------------------------------------------------------------
    def infer(self, in_shapes: dict[str, Shape | None]) -> Shape | None:
        """The output shape for these input shapes; raise ``ShapeError`` naming the port.

        An input is None when its shape is not known yet (fed by a delay edge on a first
        pass), and absent when its port is not connected: use ``in_shapes.get``. Return
        None when the output cannot be known without it.
        """
        s = in_shapes.get("in")
        return s

    def param_shapes(self) -> dict[str, Shape]:
        """Shapes of the parameters, in the stored layout (docs/format.md section 3) (uses
        ``self.in_shapes``)."""
        return {}

    def buffer_shapes(self) -> dict[str, Shape]:
        return {}

    def param_count(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.param_shapes().values()))

    def macs(self, in_shapes: dict[str, Shape], out_shape: Shape) -> int:
        """Multiply-adds per sample of one forward call, for per-sample ``in_shapes`` (by
        port) and ``out_shape`` (docs/probe.md, "Cost"). 0 unless the type multiplies:
        activations, shape operations, pooling, Add, Dropout, losses and data nodes count 0."""
        return 0

    def init_params(self, rng: np.random.Generator, he: bool) -> dict[str, np.ndarray]:
        """Fresh float64 host arrays for the parameters and buffers.

        ``he``: the layer feeds a ReLU-family activation (He init), else Glorot.
        """
        return {}

    # ---- computation -------------------------------------------------------------------
    def forward(self, ctx: Context, inputs: list) -> tuple[Any, Any]:
        """(output, cache). ``inputs`` are in ``input_ports`` order."""
        raise NotImplementedError

    def backward(self, ctx: Context, cache: Any, gout) -> list:
        """Gradients w.r.t. the inputs (None where an input needs none, e.g. an integer
        target). Parameter gradients are accumulated into ``self.G`` via ``accumulate``."""
        raise NotImplementedError

    def wants_grad(self, i: int) -> bool:
        """Whether backward should compute the gradient of input ``i`` (see needs_input_grad)."""
        return self.needs_input_grad is None or self.needs_input_grad[i]

    # Weight gradients of the calls of one backward pass, gathered to be taken as one
    # product at its end (``defer_weight_grads``); None: each call accumulates its own.
    deferred: list | None = None
    defers_weight_grads: ClassVar[bool] = False  # the layer can gather them (Dense)

    def flush_deferred(self) -> None:
        """Accumulate what ``deferred`` gathered and stop gathering (a layer that gathers
        overrides this)."""
        self.deferred = None

    def accumulate(self, name: str, grad) -> None:
        """Add ``grad`` to the gradient of parameter ``name`` (shared parameters add up).

        The first gradient is stored as it is (no copy, no memset) and later ones are added
        to it in place, so ``grad`` must be a fresh array the layer owns, never ``gout``
        or a view of an input.
        """
        g = self.G.get(name)
        if g is None:
            self.G[name] = grad
        else:
            g += grad

    # ---- helpers for subclasses ----------------------------------------------------------
    def shape_error(self, message: str, port: str | None = "in") -> ShapeError:
        return ShapeError(message, node=self.id, port=port)


def fmt_shape(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join(str(d) for d in shape) + "]"


def glorot_uniform(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int
                   ) -> np.ndarray:
    limit = np.sqrt(6.0 / max(1, fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def he_normal(rng: np.random.Generator, shape: Shape, fan_in: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / max(1, fan_in)), size=shape)


def init_weight(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, he: bool
                ) -> np.ndarray:
    """He normal (std sqrt(2/fan_in)) before ReLU-family activations, Glorot uniform else."""
    if he:
        return he_normal(rng, shape, fan_in)
    return glorot_uniform(rng, shape, fan_in, fan_out)
