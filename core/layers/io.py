"""Input and Target: where data enters the graph. The network feeds their outputs.

Their ``shape`` may be ``"auto"`` (also when left out): validation then takes the per-sample
shape of the dataset field the node reads (``core.validate.analyze`` with ``field_shapes``)
and writes it into the layer's params, so ``infer`` and the network see a real shape.
"""
from __future__ import annotations

from core.layers.base import Layer, register
from core.params import AUTO, Bool, Choice, Identifier, Shape

DTYPES = ("float32", "float64", "int64", "int32")


@register
class Input(Layer):
    type_name = "Input"
    category = "Data"
    data_role = "input"
    # a new node fits whatever dataset the graph trains on until the user fixes a shape
    starter_params = {"shape": AUTO}
    doc = ("A model input: one field of the dataset, of the given per-sample shape ('auto': "
           "the field's). With 'sequence' the shape is [T, ...] and one step [...] is "
           "presented at a time.")
    params_spec = {
        "shape": Shape(AUTO, "per-sample shape, e.g. [64] or [1, 28, 28]; \"auto\": the "
                       "dataset field's", allow_auto=True),
        "field": Identifier(default="x", doc="dataset field this input reads"),
        "dtype": Choice(default="float32", choices=DTYPES, doc="element type"),
        "sequence": Bool(default=False, doc="a sequence [T, ...] presented step by step"),
        "lengths": Identifier(default=None, doc="dataset field holding each sample's length "
                              "(1..T valid steps of a [T, ...] shape); null: all T are valid"),
    }

    @classmethod
    def input_ports(cls, params):
        return ()

    def presents_steps(self) -> bool:
        return bool(self.params.get("sequence"))

    def infer(self, in_shapes):
        if self.params["shape"] == AUTO:
            return None  # the dataset is not known: validation says so
        shape = tuple(self.params["shape"])
        return shape[1:] if self.presents_steps() else shape  # one step of [T, ...]


@register
class Target(Layer):
    type_name = "Target"
    category = "Data"
    data_role = "target"
    starter_params = {"shape": AUTO}
    doc = ("The training target: one field of the dataset (class indices as int64, or "
           "values/probabilities as float32). Feeds the 'target' port of a loss.")
    params_spec = {
        "shape": Shape(AUTO, "per-sample shape, [] for a class index; \"auto\": the dataset "
                       "field's", allow_auto=True),
        "field": Identifier(default="y", doc="dataset field this target reads"),
        "dtype": Choice(default="int64", choices=DTYPES, doc="element type"),
    }

    @classmethod
    def input_ports(cls, params):
        return ()

    def infer(self, in_shapes):
        if self.params["shape"] == AUTO:
            return None  # the dataset is not known: validation says so
        return tuple(self.params["shape"])
