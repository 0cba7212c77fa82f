"""Training data (docs/format.md section 2, "Training section"): what ``training.dataset``
describes, loaded, split and checked against the graph.

A ``Dataset`` is a set of named *fields*, each a NumPy array whose first axis is the sample
axis; every field has the same number of samples. Sources, as written in
``training.dataset``: ``{"source": "builtin", "name": ...}``, ``{"source": "npz", ...}``,
``{"source": "csv", ...}``. Which file holds what:

- ``dataset.py``: the ``Dataset`` container (fields, split, batches) and the checks of the
  keys, validation split and batch size every source shares.
- ``builtin.py``: the built-in generators (digits, spirals, moons, xor, sine, sequences,
  recall), self-contained so the PyTorch exporter can copy them; their options,
  ``known_builtins``, ``builtin_options``, loading one.
- ``files.py``: npz and csv datasets, and the cheap readers the GUI shows a file with
  (``npz_arrays``, ``csv_header``).
- ``fields.py``: ``check_fields``, fitting the fields to the Input and Target nodes, and
  ``fit_problems``, the same checks from shapes and dtypes alone.
- ``peek.py``: ``peek_fields``, each field's shape and dtype without loading the data (a
  built-in's options, a file's headers), cached; for the editor and ``main.py check``.
- here: ``load_dataset`` (any source), ``validation_split_of``, ``load_training_data``.

``validation_split`` may be given inside the dataset dict (as in the example of
docs/format.md section 2) or at the training level (as in its training schema);
``validation_split_of`` accepts either (both at once only when equal). When absent it is
0.0: no validation set. The validation set is the last ``round(n * split)`` samples of a
permutation seeded by the training seed; both parts keep the dataset's order, so batches
without shuffling follow the file.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from core.datasets.builtin import (
    BUILTINS,
    Builtin,
    builtin_options,
    builtin_settings,
    known_builtins,
    load_builtin,
)
from core.datasets.dataset import SOURCES, Dataset, check_split, dataset_source
from core.datasets.fields import FieldProblem, FieldUse, check_fields, fit_problems
from core.datasets.files import csv_header, load_csv, load_npz, npz_arrays
from core.datasets.peek import DatasetFields, peek_fields, peek_training_fields
from core.errors import ParamError


def load_dataset(dataset_cfg: Mapping[str, Any], base_dir: str | os.PathLike | None = None,
                 *, seed: int = 0) -> Dataset:
    """The whole dataset described by ``training.dataset`` (not yet split).

    ``base_dir`` is the folder relative paths start from (the graph file's folder; the
    working directory when None). ``seed`` seeds built-in generators that have no ``"seed"``
    option of their own. Raises ``ParamError`` for a bad description and ``DataError`` for a
    file that is missing or unreadable.
    """
    source = dataset_source(dataset_cfg)
    if source == "builtin":
        return load_builtin(dataset_cfg, seed)
    if source == "npz":
        return load_npz(dataset_cfg, base_dir)
    return load_csv(dataset_cfg, base_dir)


def validation_split_of(training: Mapping[str, Any]) -> float:
    """The validation split of a training section: ``training.dataset.validation_split`` or
    ``training.validation_split`` (both only when equal), 0.0 when neither is given."""
    ds = training.get("dataset")
    inner = ds.get("validation_split") if isinstance(ds, Mapping) else None
    outer = training.get("validation_split")
    if inner is not None and outer is not None and inner != outer:
        raise ParamError(f"given twice with different values: {inner!r} in \"dataset\" and "
                         f"{outer!r} in \"training\"", param="validation_split")
    value = inner if inner is not None else outer
    return 0.0 if value is None else check_split(value)


def load_training_data(training: Mapping[str, Any], base_dir: str | os.PathLike | None = None
                       ) -> tuple[Dataset, Dataset | None]:
    """``(train, val)`` for a training section: ``load_dataset`` then ``Dataset.split`` with
    ``validation_split_of(training)``, both seeded by ``training.seed`` (default 0)."""
    cfg = training.get("dataset")
    if cfg is None:
        raise ParamError("training needs a dataset, and none is set", param="dataset")
    seed = training.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParamError(f"expected an integer >= 0, found {seed!r}", param="seed")
    split = validation_split_of(training)
    return load_dataset(cfg, base_dir, seed=seed).split(split, seed)


__all__ = ["Dataset", "Builtin", "BUILTINS", "SOURCES", "FieldUse", "known_builtins",
           "builtin_options", "builtin_settings", "load_dataset", "load_training_data",
           "validation_split_of", "check_fields", "fit_problems", "FieldProblem", "npz_arrays",
           "csv_header", "DatasetFields", "peek_fields", "peek_training_fields"]
