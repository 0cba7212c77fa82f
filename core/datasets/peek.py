"""What a dataset holds, without loading it: each field's per-sample shape and dtype, so the
editor and ``main.py check`` can check the graph against the dataset (docs/format.md section
2.8) and Input / Target nodes with ``"shape": "auto"`` can take their shapes from it.

``peek_fields(cfg, base_dir)`` answers from a built-in's options (nothing is generated),
from the array headers of an .npz archive, or from the header row of a csv table, and
refuses what ``load_dataset`` would refuse for the same reasons (``ParamError`` naming
``dataset.<key>``, ``DataError`` naming the file), as far as those parts show it. Files are
read again only when they change: answers (and refusals) are cached by path, modification
time and size, so an editor that asks on every edit costs one ``stat``.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.datasets.builtin import BUILTINS, builtin_settings
from core.datasets.dataset import check_keys, dataset_source
from core.datasets.files import (
    NPZ_KIND,
    check_csv_header,
    check_npz_arrays,
    csv_header,
    csv_settings,
    resolve,
    token_csv_fields,
    token_settings,
)
from core.errors import DataError, NeuroCanvasError, ParamError
from core.npz import read_npz_headers

_CACHE_SIZE = 32  # distinct files an editing session switches between


class DatasetFields(dict):
    """``{field: (per-sample shape, dtype name or None[, whole numbers only])}`` of a dataset,
    with the ``name`` messages call it by and the ``file`` it is read from (None for a
    built-in). A dtype is None where only the values decide it (a csv target column)."""

    def __init__(self, fields: Mapping[str, tuple], name: str = "dataset",
                 file: str | None = None):
        super().__init__(fields)
        self.name = name
        self.file = file


_cache: OrderedDict[tuple, DatasetFields | NeuroCanvasError] = OrderedDict()


def _stamp(p: Path) -> tuple | None:
    """What identifies this version of the file; None when it cannot be looked at (the
    reader then says why, uncached)."""
    try:
        st = os.stat(p)
        return (str(p.resolve()), st.st_mtime_ns, st.st_size)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None


def _cached(key: tuple | None, read) -> DatasetFields:
    if key is None:
        return read()
    hit = _cache.get(key)
    if hit is None:
        try:
            hit = read()
        except NeuroCanvasError as e:  # a bad file stays bad until it changes
            hit = e
        _cache[key] = hit
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    if isinstance(hit, NeuroCanvasError):
        raise hit
    return hit


def peek_fields(cfg: Any, base_dir: str | os.PathLike | None = None) -> DatasetFields:
    """The fields the dataset ``cfg`` (``training.dataset``) describes, without loading it.

    ``base_dir`` is where a relative path starts (the graph file's folder; the working
    directory when None). Raises as ``load_dataset`` would: ``ParamError`` for a bad
    description, ``DataError`` for a file that is missing or not of its kind.
    """
    source = dataset_source(cfg)
    if source == "builtin":
        name, opts, _seed = builtin_settings(cfg)
        b = BUILTINS[name]
        return DatasetFields(b.fields(opts) if b.fields else {}, name)
    if source == "npz":
        check_keys(cfg, ("path",), "an npz dataset")
        p = resolve(cfg, base_dir)
        stamp = _stamp(p)
        return _cached(("npz", stamp) if stamp else None, lambda: _peek_npz(p))
    target, delimiter, p = csv_settings(cfg, base_dir)  # csv
    stamp = _stamp(p)
    if token_settings(cfg) is not None:  # a table of token sequences: T is in its rows
        key = ("tokens", stamp, json.dumps(dict(cfg), sort_keys=True)) if stamp else None
        return _cached(key, lambda: DatasetFields(token_csv_fields(cfg, base_dir), p.name,
                                                  str(p)))
    key = ("csv", stamp, target, delimiter) if stamp else None
    return _cached(key, lambda: _peek_csv(p, target, delimiter))


def _peek_npz(p: Path) -> DatasetFields:
    arrays = read_npz_headers(p, DataError, NPZ_KIND)
    check_npz_arrays(arrays, p)
    # whole numbers: known for integer and bool arrays, not for floats without their values
    return DatasetFields({k: (tuple(shape[1:]), dtype.name, dtype.kind in "biu" or None)
                          for k, (shape, dtype) in arrays.items()}, p.name, str(p))


def _peek_csv(p: Path, target: str, delimiter: str) -> DatasetFields:
    header = check_csv_header(csv_header(p, delimiter), target, str(p))
    # y is int64 or float32 by its values (docs/format.md section 2.8): unknown from here
    return DatasetFields({"x": ((len(header) - 1,), "float32", None), "y": ((), None, None)},
                         p.name, str(p))


def peek_training_fields(training: Mapping[str, Any] | None,
                         base_dir: str | os.PathLike | None = None
                         ) -> tuple[DatasetFields | None, NeuroCanvasError | None]:
    """``(fields, None)`` for a training section whose dataset can be peeked at, ``(None,
    None)`` when it names no dataset, ``(None, error)`` when its dataset cannot be read (the
    error names ``training.dataset...`` or the file)."""
    cfg = (training or {}).get("dataset") if isinstance(training, Mapping) else None
    if cfg is None:
        return None, None
    try:
        return peek_fields(cfg, base_dir), None
    except ParamError as e:
        return None, ParamError(e.message, param=f"training.{e.param}" if e.param
                                else "training.dataset")
    except NeuroCanvasError as e:
        return None, e


def dataset_stamp(cfg: Any, base_dir: str | os.PathLike | None = None) -> tuple | None:
    """What changes when the file a dataset description reads changes (path, modification
    time, size); None for a built-in, a bad description or a file that is not there. The
    editor compares it to see whether its check of the dataset is stale."""
    if not isinstance(cfg, Mapping) or cfg.get("source") not in ("npz", "csv"):
        return None
    try:
        return _stamp(resolve(cfg, base_dir))
    except NeuroCanvasError:
        return None


def clear_cache() -> None:
    """Forget every peeked file (tests)."""
    _cache.clear()


__all__ = ["DatasetFields", "peek_fields", "peek_training_fields", "dataset_stamp",
           "clear_cache"]
