"""Fitting a dataset to the graph: ``check_fields`` checks that each field has the
per-sample shape and dtype of the Input and Target nodes that read it, and casts it.

Input and Target nodes read the field named by their ``params.field`` (``"x"`` and ``"y"``
by default). A per-sample shape may differ from the node's only by axes of size 1 (``[]``
versus ``[1]``, ``[T]`` versus ``[T, 1]``): the field is then reshaped.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from core.datasets.dataset import Dataset
from core.errors import DataError

FieldUse = tuple[str, Sequence[int | None], str]  # (node id, per-sample shape, dtype)


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
    ...); fields no node reads are kept as they are.
    """
    out = dict(dataset.fields)
    done: dict[str, str] = {}  # field -> the node whose dtype and shape it now has
    where = f"dataset '{dataset.name}'"
    for field, uses in inputs.items():
        uses_list = [uses] if isinstance(uses, tuple) else list(uses)
        for node_id, shape, dtype in uses_list:
            if field not in dataset.fields:
                have = ", ".join(dataset.fields) or "none"
                raise DataError(f"reads field '{field}', but {where} has no such field "
                                f"(its fields: {have})", node=node_id, file=dataset.file)
            arr = dataset.fields[field]
            have_shape = tuple(arr.shape[1:])
            want = tuple(shape)
            if not _fits(have_shape, want):
                if not _squeezable(have_shape, want):
                    raise DataError(f"reads field '{field}' of shape {_fmt(want)}, but {where} "
                                    f"gives {_fmt(have_shape)}", node=node_id, file=dataset.file)
            converted = _cast(arr, dtype, field, node_id, dataset)
            if not _fits(have_shape, want):
                converted = converted.reshape((len(arr), *want))
            prev = out[field]
            if field in done and (prev.dtype != converted.dtype
                                  or prev.shape != converted.shape):
                raise DataError(f"reads field '{field}' as {converted.dtype} {_fmt(want)}, but "
                                f"node '{done[field]}' reads it as {prev.dtype} "
                                f"{_fmt(prev.shape[1:])}", node=node_id, file=dataset.file)
            out[field] = converted
            done[field] = node_id
    return Dataset(out, dataset.name, dataset.file)


def _cast(arr: np.ndarray, dtype: str, field: str, node_id: str, ds: Dataset) -> np.ndarray:
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
                raise DataError(f"wants {want.name} class indices, but field '{field}' of "
                                f"dataset '{ds.name}' holds fractions (first at sample {i})",
                                node=node_id, file=ds.file)
    if arr.dtype == want:
        return arr
    return arr.astype(want)
