"""Fitting a dataset to the graph: ``check_fields`` checks that each field has the
per-sample shape and dtype of the Input and Target nodes that read it, and casts it;
``fit_problems`` applies the same checks to what is known without the values (the shapes
and dtypes of a file's headers or of a built-in's options), for the editor.

Input and Target nodes read the field named by their ``params.field`` (``"x"`` and ``"y"``
by default). A per-sample shape may differ from the node's only by axes of size 1 (``[]``
versus ``[1]``, ``[T]`` versus ``[T, 1]``): the field is then reshaped.

An Input's ``params.lengths`` names a second field it reads, each sample's number of valid
steps: ``lengths_use(node, T)`` describes that use, a per-sample ``[]`` int64 field whose
problems name the node's ``lengths`` parameter and whose values must lie in 1..T (a padded
npz archive or a token table gives one).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.datasets.dataset import Dataset
from core.errors import DataError

# (node id, per-sample shape, dtype) or, for an Input's lengths field, as ``lengths_use``
# makes it: (node id, (), "int64", "lengths", T or None)
FieldUse = tuple
# What is known of a field without its values: (per-sample shape, dtype name or None when only
# the values decide it) and, optionally, whether its values are whole numbers (None: unknown).
FieldInfo = tuple


@dataclass(frozen=True)
class FieldProblem:
    """One way a field does not fit a node that reads it: the node, which of its parameters
    the user would change (``field``, ``shape`` or ``dtype``) and the message."""
    node: str
    param: str
    message: str


def _fmt(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"


def _fits(have: tuple[int, ...], want: Sequence[int | None]) -> bool:
    return len(have) == len(want) and all(w is None or w == h
                                          for h, w in zip(have, want, strict=True))


def _squeezable(have: tuple[int, ...], want: Sequence[int | None]) -> bool:
    """Equal once axes of size 1 are dropped ([] and [1], [T] and [T, 1])."""
    if any(w is None for w in want):
        return False
    return [h for h in have if h != 1] == [w for w in want if w != 1]


def lengths_use(node_id: str, steps: int | None) -> FieldUse:
    """The use of an Input's lengths field: per-sample ``[]`` int64, values 1..``steps`` (the
    Input's T; None: not known, only >= 1 is checked); its problems name ``lengths``."""
    return (node_id, (), "int64", "lengths", steps)


def _uses(uses: FieldUse | Sequence[FieldUse]) -> list[FieldUse]:
    return [uses] if isinstance(uses, tuple) else list(uses)


def _split_use(use: FieldUse) -> tuple[str, tuple, str, str | None, int | None]:
    """``(node id, shape, dtype, lengths parameter or None, T)`` of a use."""
    if len(use) > 3:
        return use[0], tuple(use[1]), use[2], use[3], use[4] if len(use) > 4 else None
    return use[0], tuple(use[1]), use[2], None, None


def _as_lengths(p: FieldProblem | None, param: str | None, field: str) -> FieldProblem | None:
    """A problem of a lengths field: named by the node's ``lengths`` parameter."""
    if p is None or param is None:
        return p
    msg = p.message.replace(f"reads field '{field}'", f"reads its lengths from field '{field}'",
                            1).replace("class indices", "lengths", 1)
    return FieldProblem(p.node, param, msg)


def _use_problem(field: str, node_id: str, want: tuple, dtype: str,
                 fields: Mapping[str, FieldInfo], where: str) -> FieldProblem | None:
    """What the field's shape and dtype alone say against one node reading it (the rule
    training and editing share; values are checked when they are cast)."""
    if field not in fields:
        have = ", ".join(fields) or "none"
        return FieldProblem(node_id, "field", f"reads field '{field}', but {where} has no such "
                                              f"field (its fields: {have})")
    info = fields[field]
    have_shape, have_dtype = tuple(info[0]), info[1]
    if not _fits(have_shape, want) and not _squeezable(have_shape, want):
        return FieldProblem(node_id, "shape", f"reads field '{field}' of shape {_fmt(want)}, "
                                              f"but {where} gives {_fmt(have_shape)}")
    try:
        want_dtype = np.dtype(dtype)
    except TypeError:
        return FieldProblem(node_id, "dtype", f"wants dtype {dtype!r}, which is not a NumPy "
                                              "dtype")
    if have_dtype is None:
        return None
    try:
        kind = np.dtype(have_dtype).kind
    except TypeError:  # a name NumPy does not parse back ("str32"): not numbers either
        kind = "?"
    if kind not in "biuf":
        return FieldProblem(node_id, "field", f"reads field '{field}', which holds "
                                              f"{have_dtype} values; expected numbers")
    whole = info[2] if len(info) > 2 else None
    if kind == "f" and whole is False and want_dtype.kind in "iub":
        return FieldProblem(node_id, "dtype", f"wants {want_dtype.name} class indices, "
                                              f"but field '{field}' of {where} holds fractions "
                                              f"({have_dtype} values)")
    return None


def _read_as(have_shape: tuple, want: tuple, dtype: str) -> tuple[np.dtype, tuple]:
    """The dtype and per-sample shape a field has once cast for a node."""
    return np.dtype(dtype), (have_shape if _fits(have_shape, want) else want)


def _conflict(field: str, node_id: str, want: tuple, mine: tuple, prev_node: str,
              prev: tuple) -> FieldProblem | None:
    if mine == prev:
        return None
    return FieldProblem(node_id, "dtype" if mine[0] != prev[0] else "shape",
                        f"reads field '{field}' as {mine[0]} {_fmt(want)}, but node "
                        f"'{prev_node}' reads it as {prev[0]} {_fmt(prev[1])}")


def fit_problems(fields: Mapping[str, FieldInfo],
                 inputs: Mapping[str, FieldUse | Sequence[FieldUse]],
                 name: str = "dataset") -> list[FieldProblem]:
    """Every problem ``check_fields`` would find from the fields' shapes and dtypes alone
    (``fields``: ``{field: (per-sample shape, dtype or None[, whole])}``, as
    ``Dataset.field_shapes`` or a peek at a file give them), at most one per node: so the
    editor can mark a node whose field does not fit before any data is loaded. ``name``
    names the dataset in messages."""
    where = f"dataset '{name}'"
    out: list[FieldProblem] = []
    done: dict[str, tuple[str, tuple]] = {}  # field -> (node, how it reads it)
    for field, uses in inputs.items():
        for use in _uses(uses):
            node_id, want, dtype, lparam, _steps = _split_use(use)
            p = _use_problem(field, node_id, want, dtype, fields, where)
            if p is None:
                mine = _read_as(tuple(fields[field][0]), want, dtype)
                if field in done:
                    p = _conflict(field, node_id, want, mine, *done[field])
                else:
                    done[field] = (node_id, mine)
            p = _as_lengths(p, lparam, field)
            if p is not None:
                out.append(p)
    return out


def check_fields(dataset: Dataset, inputs: Mapping[str, FieldUse | Sequence[FieldUse]]
                 ) -> Dataset:
    """Check that ``dataset`` feeds the graph's Input/Target nodes; return it converted.

    ``inputs`` maps a field name to ``(node_id, per-sample shape, dtype)`` of the node that
    reads it, or to a list of such tuples when several nodes read one field (an autoencoder's
    Input and Target). A ``None`` in a shape matches any size. A per-sample shape that differs
    only by axes of size 1 (``[]`` versus ``[1]``) is reshaped; any other difference, a
    missing field, values that do not fit the dtype (a fraction for int64, NaN or Inf) or
    nodes that want one field in two dtypes are a ``DataError`` naming the node and the field.
    The returned dataset holds every field cast to its node's dtype (``float32``, ``int64``,
    ...); fields no node reads are kept as they are. The checks of shapes and dtypes are
    ``fit_problems``'s, so the editor finds the same problems before loading anything.
    """
    out = dict(dataset.fields)
    done: dict[str, tuple[str, tuple]] = {}  # field -> (node, how it reads it)
    where = f"dataset '{dataset.name}'"
    known = {k: (v.shape[1:], v.dtype) for k, v in dataset.fields.items()}
    for field, uses in inputs.items():
        for use in _uses(uses):
            node_id, want, dtype, lparam, steps = _split_use(use)
            p = _as_lengths(_use_problem(field, node_id, want, dtype, known, where), lparam,
                            field)
            if p is not None:
                raise DataError(p.message, node=node_id, file=dataset.file)
            arr = dataset.fields[field]
            have_shape = tuple(arr.shape[1:])
            converted = _cast(arr, dtype, field, node_id, dataset,
                              "lengths" if lparam is not None else "class indices")
            if not _fits(have_shape, want):
                converted = converted.reshape((len(arr), *want))
            if lparam is not None:
                _check_lengths(converted, steps, field, node_id, dataset)
            mine = _read_as(have_shape, want, dtype)
            if field in done:
                p = _as_lengths(_conflict(field, node_id, want, mine, *done[field]), lparam,
                                field)
                if p is not None:
                    raise DataError(p.message, node=node_id, file=dataset.file)
            out[field] = converted
            done[field] = (node_id, mine)
    return Dataset(out, dataset.name, dataset.file)


def _check_lengths(lengths: np.ndarray, steps: int | None, field: str, node_id: str,
                   ds: Dataset) -> None:
    """Each sample's length must be 1..steps: a ``DataError`` naming the first that is not."""
    hi = steps if steps is not None else np.iinfo(np.int64).max
    bad = (lengths < 1) | (lengths > hi)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        span = f"1 to {steps} (the Input's T)" if steps is not None else "at least 1"
        raise DataError(f"reads its lengths from field '{field}' of dataset '{ds.name}', whose "
                        f"sample {i} has length {int(lengths[i])}; expected {span}",
                        node=node_id, file=ds.file)


def _cast(arr: np.ndarray, dtype: str, field: str, node_id: str, ds: Dataset,
          what: str = "class indices") -> np.ndarray:
    """``arr`` as ``dtype``; a ``DataError`` when its values do not fit."""
    try:
        want = np.dtype(dtype)
    except TypeError:
        raise DataError(f"wants dtype {dtype!r}, which is not a NumPy dtype",
                        node=node_id) from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"reads field '{field}', which holds {arr.dtype} values; expected "
                        f"numbers", node=node_id, file=ds.file)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argwhere(bad)[0][0])
            raise DataError(f"reads field '{field}' of dataset '{ds.name}', which holds NaN or "
                            f"Inf (first at sample {i})", node=node_id, file=ds.file)
        if want.kind in "iub":
            frac = arr != np.round(arr)
            if frac.any():
                i = int(np.argwhere(frac)[0][0])
                raise DataError(f"wants {want.name} {what}, but field '{field}' of "
                                f"dataset '{ds.name}' holds fractions (first at sample {i})",
                                node=node_id, file=ds.file)
    if arr.dtype == want:
        return arr
    return arr.astype(want)
