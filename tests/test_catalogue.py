"""What the rest of the program asks of every node type, checked for every registered one:
adding a layer is its layer file plus one PyTorch export entry, and nothing else."""
from __future__ import annotations

import pytest

from core import catalogue
from core.export.torch_layers import TORCH, entry
from core.layers.losses import Loss
from core.params import resolve_params

TYPES = catalogue.types()


@pytest.mark.parametrize("type_name", TYPES)
def test_every_type_has_one_pytorch_export_entry(type_name):
    cls = catalogue.get(type_name)
    e = entry(cls)
    layouts = set(e.params)
    # every parameter and buffer a node of this type can have goes somewhere in torch
    assert set(cls.param_names) | set(cls.buffer_names) <= layouts, type_name
    assert e.data == (cls.data_role is not None)
    if not e.data:
        assert e.module is not None or e.expr is not None, f"{type_name} exports to nothing"


def test_the_export_table_names_no_type_that_is_not_registered():
    assert set(TORCH) == {catalogue.get(t) for t in TYPES}


@pytest.mark.parametrize("type_name", TYPES)
def test_a_node_fresh_from_the_palette_has_valid_parameters(type_name):
    cls = catalogue.get(type_name)
    resolved, problems = resolve_params(cls.all_params_spec(), dict(cls.starter_params), "n")
    assert not problems, [str(p) for p in problems]
    missing = [k for k, s in cls.all_params_spec().items() if s.required and k not in resolved]
    assert not missing, f"{type_name} starts without {missing}"


@pytest.mark.parametrize("type_name", TYPES)
def test_roles_are_class_attributes_that_agree(type_name):
    cls = catalogue.get(type_name)
    assert cls.data_role in (None, "input", "target")
    if cls.data_role is not None:  # the network feeds these from a dataset field
        assert {"field", "shape", "dtype"} <= set(cls.params_spec)
        assert cls.input_ports({}) == ()
    assert cls.is_loss == issubclass(cls, Loss)
