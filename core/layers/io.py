"""Input and Target: where data enters the graph. The network feeds their outputs."""
from __future__ import annotations

from core.layers.base import Layer, register
from core.params import Bool, Choice, Identifier, Shape

DTYPES = ("float32", "float64", "int64", "int32")


@register
class Input(Layer):
    type_name = "Input"
    category = "Data"
    data_role = "input"
    starter_params = {"shape": [16]}
    doc = ("A model input: one field of the dataset, of the given per-sample shape. "
           "With 'sequence' the shape is [T, ...] and one step [...] is presented at a time.")
    params_spec = {
        "shape": Shape(doc="per-sample shape, e.g. [64] or [1, 28, 28]"),
        "field": Identifier(default="x", doc="dataset field this input reads"),
        "dtype": Choice(default="float32", choices=DTYPES, doc="element type"),
        "sequence": Bool(default=False, doc="a sequence [T, ...] presented step by step"),
    }

    @classmethod
    def input_ports(cls, params):
        return ()

    def presents_steps(self) -> bool:
        return bool(self.params.get("sequence"))

    def infer(self, in_shapes):
        shape = tuple(self.params["shape"])
        return shape[1:] if self.presents_steps() else shape  # one step of [T, ...]


@register
class Target(Layer):
    type_name = "Target"
    category = "Data"
    data_role = "target"
    starter_params = {"shape": []}
    doc = ("The training target: one field of the dataset (class indices as int64, or "
           "values/probabilities as float32). Feeds the 'target' port of a loss.")
    params_spec = {
        "shape": Shape(doc="per-sample shape, [] for a class index"),
        "field": Identifier(default="y", doc="dataset field this target reads"),
        "dtype": Choice(default="int64", choices=DTYPES, doc="element type"),
    }

    @classmethod
    def input_ports(cls, params):
        return ()

    def infer(self, in_shapes):
        return tuple(self.params["shape"])
