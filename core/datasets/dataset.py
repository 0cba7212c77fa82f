"""The ``Dataset`` container: named fields of equal length, split and cut into batches; and
the checks of the settings every dataset description shares (its keys, the validation split,
the batch size)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import DataError, ParamError
from core.params import Float, Int

# Keys every source takes beside its own (docs/format.md section 2 allows the split here).
SOURCES = ("builtin", "npz", "csv")
COMMON_KEYS = ("source", "validation_split")


class Dataset:
    """Named fields of equal length: ``fields[name]`` has shape ``[n, *per_sample_shape]``.

    ``name`` is what error messages call the dataset (a built-in's name or a file name);
    ``file`` is the path it was read from, or None for generated data.
    """

    def __init__(self, fields: Mapping[str, np.ndarray], name: str = "dataset",
                 file: str | None = None):
        self.name = name
        self.file = file
        arrays = {key: np.asarray(value) for key, value in fields.items()}
        n = check_samples({k: a.shape for k, a in arrays.items()}, name, file)
        self.fields = arrays
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, field: str) -> np.ndarray:
        return self.fields[field]

    def __contains__(self, field: object) -> bool:
        return field in self.fields

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {list(v.shape[1:])} {v.dtype}" for k, v in self.fields.items())
        return f"Dataset('{self.name}', {self._n} samples; {parts})"

    def field_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{field: (per-sample shape, dtype name)}``, for messages and the GUI."""
        return {k: (tuple(v.shape[1:]), v.dtype.name) for k, v in self.fields.items()}

    def subset(self, indices: np.ndarray | slice) -> Dataset:
        """The samples at ``indices`` (an index array or a slice), every field alike."""
        return Dataset({k: v[indices] for k, v in self.fields.items()}, self.name, self.file)

    def split(self, validation_split: float, seed: int = 0) -> tuple[Dataset, Dataset | None]:
        """``(train, val)``: ``val`` holds the last ``round(n * validation_split)`` samples of
        a permutation seeded by ``seed``, ``train`` the rest; both keep the dataset's order.

        ``val`` is None when that count is 0 (in particular for a split of 0). A split outside
        [0, 1) is a ``ParamError``; one that leaves no training sample is a ``DataError``.
        """
        split = check_split(validation_split)
        n = len(self)
        n_val = round(n * split)
        if n_val == 0:
            return self, None
        if n_val >= n:
            raise DataError(f"validation_split {split} of {n} samples leaves no training "
                            f"sample in dataset '{self.name}'", file=self.file)
        perm = np.random.default_rng(seed).permutation(n)
        train_idx = np.sort(perm[: n - n_val])
        val_idx = np.sort(perm[n - n_val:])
        return self.subset(train_idx), self.subset(val_idx)

    def num_batches(self, batch_size: int) -> int:
        """Batches per epoch: ``ceil(n / batch_size)`` (the last partial batch counts)."""
        return -(-len(self) // check_batch_size(batch_size))

    def batches(self, batch_size: int, shuffle: bool = False,
                rng: np.random.Generator | int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of batches, each ``{field: array of shape [b, *per_sample_shape]}``.

        Without ``shuffle`` the samples come in order; with it, in the order of one
        permutation drawn from ``rng`` (a Generator or an int seed), so every sample appears
        exactly once per epoch. The last batch holds the remaining ``n % batch_size`` samples
        when that is not zero.
        """
        bs = check_batch_size(batch_size)
        order = None
        if shuffle:
            gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            order = gen.permutation(len(self))
        return self._iter_batches(bs, order)

    def _iter_batches(self, bs: int, order: np.ndarray | None) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self), bs):
            if order is None:
                sel: np.ndarray | slice = slice(start, start + bs)
            else:
                sel = order[start:start + bs]
            yield {k: v[sel] for k, v in self.fields.items()}


def check_samples(shapes: Mapping[str, Sequence[int]], name: str, file: str | None = None
                  ) -> int:
    """The number of samples of fields of these full shapes (samples first); a
    ``DataError`` for no fields, a field of a single value or fields of unequal length.
    Shared by ``Dataset`` and the peek at a file's headers, so both refuse alike."""
    if not shapes:
        raise DataError(f"dataset '{name}' has no fields", file=file)
    n = None
    for key, shape in shapes.items():
        if len(shape) == 0:
            raise DataError(f"field '{key}' of dataset '{name}' is a single value; "
                            f"expected an array whose first axis is the samples", file=file)
        if n is None:
            n, first = shape[0], key
        elif shape[0] != n:
            raise DataError(f"fields of dataset '{name}' differ in length: '{first}' has "
                            f"{n} samples, '{key}' has {shape[0]}", file=file)
    return int(n or 0)


def check_split(value: Any) -> float:
    """A validation split in [0, 1); a ``ParamError`` naming ``validation_split`` otherwise."""
    try:
        return Float(min=0.0, max=1.0, max_open=True).coerce(value)
    except ParamError as e:
        raise ParamError(e.message, param="validation_split") from None


def check_batch_size(value: Any) -> int:
    """A batch size of at least 1; a ``ParamError`` naming ``batch_size`` otherwise."""
    try:
        return Int(min=1).coerce(value)
    except ParamError as e:
        raise ParamError(e.message, param="batch_size") from None


def check_keys(cfg: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    """Refuse a key of the dataset description ``cfg`` that is neither common nor in
    ``allowed``: a ``ParamError`` naming ``dataset.<key>``; ``what`` names the dataset kind."""
    known = (*COMMON_KEYS, *allowed)
    for key in cfg:
        if key not in known:
            raise ParamError(f"unknown option '{key}' of {what}; it takes: {', '.join(known)}",
                             param=f"dataset.{key}")


def dataset_source(cfg: Any) -> str:
    """The ``source`` of a dataset description (``training.dataset``), one of ``SOURCES``;
    ``ParamError`` naming ``dataset`` or ``dataset.source`` otherwise."""
    if not isinstance(cfg, Mapping):
        raise ParamError(f"expected a dataset description (an object naming its source: "
                         f"{', '.join(SOURCES)}), found {cfg!r}", param="dataset")
    source = cfg.get("source")
    if source not in SOURCES:
        raise ParamError(f"expected one of {', '.join(SOURCES)}, found {source!r}",
                         param="dataset.source")
    return source
