"""Training data (SPEC section 2, "Training section"): built-in generators, npz and csv files.

A ``Dataset`` is a set of named *fields*, each a NumPy array whose first axis is the sample
axis; every field has the same number of samples. ``Input`` and ``Target`` nodes read the
field named by their ``params.field`` (``"x"`` and ``"y"`` by default), and ``check_fields``
checks the per-sample shapes against the nodes and casts each field to its node's dtype.

Sources, as written in ``training.dataset``:

- ``{"source": "builtin", "name": "digits", ...options}``: a generator from ``known_builtins()``.
  Every built-in needs no download and is deterministic given its seed: the dataset's own
  ``"seed"`` option if present, else the ``seed`` passed to ``load_dataset`` (the training
  seed). Unknown names and options are a ``ParamError`` naming ``dataset.<key>``.
- ``{"source": "npz", "path": "data.npz"}``: one array per field, read with
  ``allow_pickle=False``; an object array (pickled data) is refused, never unpickled.
- ``{"source": "csv", "path": "t.csv", "target_column": "label"}``: a header row, then one
  sample per row. The target column becomes field ``"y"`` of per-sample shape ``[]`` (int64
  when every value is integral, else float32); every other column becomes field ``"x"``
  float32 of shape ``[n_features]``, in file order. Every cell must be a finite number.
  ``"delimiter"`` (default ``","``) is an optional extension.

A relative ``path`` is relative to ``base_dir``, the folder of the graph file. Problems with
a file (missing, unreadable, a bad cell) are a ``DataError`` naming the file.

``validation_split`` may be given inside the dataset dict (as in the SPEC's example) or at the
training level (as in the SPEC's training schema); ``validation_split_of`` accepts either
(both at once only when equal). When absent it is 0.0: no validation set. The validation set
is the last ``round(n * split)`` samples of a permutation seeded by the training seed; both
parts keep the dataset's order, so batches without shuffling follow the file.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError, ParamError
from core.npz import read_npz
from core.params import Bool, Float, Int, ParamSpec

SOURCES = ("builtin", "npz", "csv")
_COMMON_KEYS = ("source", "validation_split")


# --------------------------------------------------------------------------- the container


class Dataset:
    """Named fields of equal length: ``fields[name]`` has shape ``[n, *per_sample_shape]``.

    ``name`` is what error messages call the dataset (a built-in's name or a file name);
    ``file`` is the path it was read from, or None for generated data.
    """

    def __init__(self, fields: Mapping[str, np.ndarray], name: str = "dataset",
                 file: str | None = None):
        self.name = name
        self.file = file
        if not fields:
            raise DataError(f"dataset '{name}' has no fields", file=file)
        arrays: dict[str, np.ndarray] = {}
        n = None
        for key, value in fields.items():
            arr = np.asarray(value)
            if arr.ndim == 0:
                raise DataError(f"field '{key}' of dataset '{name}' is a single value; "
                                f"expected an array whose first axis is the samples", file=file)
            if n is None:
                n, first = len(arr), key
            elif len(arr) != n:
                raise DataError(f"fields of dataset '{name}' differ in length: '{first}' has "
                                f"{n} samples, '{key}' has {len(arr)}", file=file)
            arrays[key] = arr
        self.fields = arrays
        self._n = int(n or 0)

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
        split = _check_split(validation_split)
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
        return -(-len(self) // _check_batch_size(batch_size))

    def batches(self, batch_size: int, shuffle: bool = False,
                rng: np.random.Generator | int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of batches, each ``{field: array of shape [b, *per_sample_shape]}``.

        Without ``shuffle`` the samples come in order; with it, in the order of one
        permutation drawn from ``rng`` (a Generator or an int seed), so every sample appears
        exactly once per epoch. The last batch holds the remaining ``n % batch_size`` samples
        when that is not zero.
        """
        bs = _check_batch_size(batch_size)
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


def _check_split(value: Any) -> float:
    try:
        return Float(min=0.0, max=1.0, max_open=True).coerce(value)
    except ParamError as e:
        raise ParamError(e.message, param="validation_split") from None


def _check_batch_size(value: Any) -> int:
    try:
        return Int(min=1).coerce(value)
    except ParamError as e:
        raise ParamError(e.message, param="batch_size") from None


# --------------------------------------------------------------------------- built-ins


@dataclass(frozen=True)
class Builtin:
    """A built-in generator: ``make(rng, **options) -> {field: array}``."""
    description: str
    options: dict[str, ParamSpec]
    make: Callable[..., dict[str, np.ndarray]]


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships inside scikit-learn, no download

    d = load_digits()
    return np.asarray(d.data, dtype=np.float32), np.asarray(d.target, dtype=np.int64)


def _make_digits(rng: np.random.Generator, image: bool) -> dict[str, np.ndarray]:
    data, target = _digits_raw()
    x = data / np.float32(16.0)  # pixel values are 0..16
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return {"x": x, "y": target.copy()}


def _shuffled(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Mix the classes, which generators produce in blocks or cycles, into a random order."""
    perm = rng.permutation(len(x))
    return {"x": np.ascontiguousarray(x[perm]), "y": np.ascontiguousarray(y[perm])}


def _make_spirals(rng: np.random.Generator, n: int, noise: float, turns: float
                  ) -> dict[str, np.ndarray]:
    y = np.arange(n) % 2
    theta = np.sqrt(rng.random(n)) * turns * 2 * np.pi  # sqrt: even density along the arm
    r = theta / (turns * 2 * np.pi)  # radius grows to 1 at the outer end
    angle = theta + np.pi * y  # the second arm is the first turned by half a circle
    x = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    x = x + noise * rng.standard_normal(x.shape)
    return _shuffled(rng, x.astype(np.float32), y.astype(np.int64))


def _make_moons(rng: np.random.Generator, n: int, noise: float) -> dict[str, np.ndarray]:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise or None,
                      random_state=int(rng.integers(2**31 - 1)))
    return {"x": x.astype(np.float32), "y": y.astype(np.int64)}


def _make_xor(rng: np.random.Generator, n: int, noise: float) -> dict[str, np.ndarray]:
    corner = np.arange(n) % 4
    a, b = corner // 2, corner % 2
    x = np.stack([a, b], axis=1).astype(np.float64) + noise * rng.standard_normal((n, 2))
    return _shuffled(rng, x.astype(np.float32), (a ^ b).astype(np.int64))


SINE_DT = 0.2  # radians between two steps of the sine sequence


def _make_sine(rng: np.random.Generator, n: int, steps: int, noise: float
               ) -> dict[str, np.ndarray]:
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    t = phase + SINE_DT * np.arange(steps + 1)[None, :]  # [n, T + 1]
    clean = np.sin(t)
    x = clean[:, :steps] + noise * rng.standard_normal((n, steps))
    return {"x": x[:, :, None].astype(np.float32), "y": clean[:, steps:].astype(np.float32)}


def _make_sequences(rng: np.random.Generator, n: int, steps: int, classes: int, noise: float
                    ) -> dict[str, np.ndarray]:
    if 2 * classes >= steps:
        # class c makes c + 1 cycles per sequence; more than steps / 2 cannot be told apart
        raise ParamError(f"{classes} classes need more than {2 * classes} steps "
                         f"(class c makes c + 1 cycles per sequence), found steps = {steps}",
                         param="dataset.steps")
    y = np.arange(n) % classes
    cycles = (y + 1)[:, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    amp = rng.uniform(0.5, 1.5, size=(n, 1))
    t = np.arange(steps)[None, :] / steps
    x = amp * np.sin(2 * np.pi * cycles * t + phase) + noise * rng.standard_normal((n, steps))
    return _shuffled(rng, x[:, :, None].astype(np.float32), y.astype(np.int64))


def _make_recall(rng: np.random.Generator, n: int, steps: int) -> dict[str, np.ndarray]:
    """A long-range memory task: remember the value at the marked step until the end."""
    x = np.zeros((n, steps, 2), dtype=np.float32)
    x[:, :, 0] = rng.uniform(-1.0, 1.0, size=(n, steps))
    marked = rng.integers(0, steps, size=n)
    rows = np.arange(n)
    x[rows, marked, 1] = 1.0
    return {"x": x, "y": x[rows, marked, 0][:, None].copy()}


_N = Int(1000, "number of samples", min=1)

BUILTINS: dict[str, Builtin] = {
    "digits": Builtin(
        "1797 handwritten digits 8x8 (scikit-learn): x [64] in [0, 1], or [1, 8, 8] with "
        "image; y int64 class 0-9",
        {"image": Bool(False, "x as a [1, 8, 8] image instead of [64]")}, _make_digits),
    "spirals": Builtin(
        "two interleaved spirals: x [2] float32, y int64 arm 0/1",
        {"n": _N, "noise": Float(0.05, "std of Gaussian noise on x", min=0.0),
         "turns": Float(1.5, "turns of each arm", min=0.0, min_open=True)}, _make_spirals),
    "moons": Builtin(
        "two interleaving half circles (scikit-learn make_moons): x [2] float32, y int64 0/1",
        {"n": _N, "noise": Float(0.1, "std of Gaussian noise on x", min=0.0)}, _make_moons),
    "xor": Builtin(
        "noisy corners of the unit square: x [2] float32, y int64 = x0 XOR x1",
        {"n": _N, "noise": Float(0.1, "std of Gaussian noise on x", min=0.0)}, _make_xor),
    "sine": Builtin(
        "next value of a noisy sine: x [steps, 1] float32 window, y [1] float32 "
        "(noise-free next value)",
        {"n": _N, "steps": Int(20, "time steps per window (T)", min=1),
         "noise": Float(0.05, "std of Gaussian noise on x", min=0.0)}, _make_sine),
    "sequences": Builtin(
        "which frequency a noisy sinusoid has: x [steps, 1] float32, y int64 class "
        "(class c makes c + 1 cycles)",
        {"n": _N, "steps": Int(20, "time steps per sequence (T)", min=2),
         "classes": Int(3, "number of frequencies (classes)", min=2),
         "noise": Float(0.1, "std of Gaussian noise on x", min=0.0)}, _make_sequences),
    "recall": Builtin(
        "long-range memory: x [steps, 2] float32, channel 0 random values in [-1, 1], "
        "channel 1 marks one step (1 there, 0 elsewhere); y [1] float32 the marked value, "
        "to be remembered until the last step",
        {"n": _N, "steps": Int(50, "time steps per sequence (T)", min=1)}, _make_recall),
}

_SEED = Int(None, "seed of the generator (default: the training seed)", min=0)


def known_builtins() -> dict[str, str]:
    """``{name: one-line description}`` of every built-in dataset, for the GUI."""
    return {name: b.description for name, b in BUILTINS.items()}


def builtin_options(name: str) -> dict[str, ParamSpec]:
    """The options a built-in takes (with defaults and docs), ``seed`` included."""
    return {**BUILTINS[_builtin_name(name)].options, "seed": _SEED}


def _builtin_name(name: Any) -> str:
    if not isinstance(name, str) or name not in BUILTINS:
        raise ParamError(f"unknown built-in dataset {name!r}; known: {', '.join(BUILTINS)}",
                         param="dataset.name")
    return name


def _load_builtin(cfg: Mapping[str, Any], seed: int) -> Dataset:
    name = _builtin_name(cfg.get("name"))
    b = BUILTINS[name]
    _check_keys(cfg, ("name", "seed", *b.options), f"built-in dataset '{name}'")
    opts = {}
    for key, spec in {**b.options, "seed": _SEED}.items():
        if key not in cfg:
            opts[key] = spec.default
            continue
        try:
            opts[key] = spec.coerce(cfg[key])
        except ParamError as e:
            raise ParamError(e.message, param=f"dataset.{key}") from None
    gen_seed = opts.pop("seed")
    rng = np.random.default_rng(seed if gen_seed is None else gen_seed)
    return Dataset(b.make(rng, **opts), name=name)


# --------------------------------------------------------------------------- files


def _resolve(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None) -> Path:
    path = cfg.get("path")
    if not isinstance(path, str) or not path:
        raise ParamError(f"expected \"path\" to be a file name, found {path!r}",
                         param="dataset.path")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path(base_dir if base_dir is not None else ".") / p
    return p


def _read_head(p: Path, n: int) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except FileNotFoundError:
        raise DataError("no such file", file=str(p)) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a data file", file=str(p)) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=str(p)) from None


def _load_npz(cfg: Mapping[str, Any], base_dir) -> Dataset:
    _check_keys(cfg, ("path",), "an npz dataset")
    p = _resolve(cfg, base_dir)
    fields = read_npz(p, DataError, "an .npz archive (one array per field, as np.savez "
                                    "writes)")
    for key, arr in fields.items():
        if arr.dtype.kind not in "biuf":
            raise DataError(f"array '{key}' holds {arr.dtype} values; expected numbers",
                            file=str(p))
    if not fields:
        raise DataError("the archive holds no arrays", file=str(p))
    ds = Dataset(fields, name=p.name, file=str(p))
    if len(ds) == 0:
        raise DataError("holds no samples", file=str(p))
    return ds


def _load_csv(cfg: Mapping[str, Any], base_dir) -> Dataset:
    _check_keys(cfg, ("path", "target_column", "delimiter"), "a csv dataset")
    target = cfg.get("target_column")
    if not isinstance(target, str) or not target:
        raise ParamError(f"expected \"target_column\" to name the csv column holding the "
                         f"targets, found {target!r}", param="dataset.target_column")
    delimiter = cfg.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ParamError(f"expected one character, found {delimiter!r}",
                         param="dataset.delimiter")
    p = _resolve(cfg, base_dir)
    file = str(p)
    _read_head(p, 0)  # a clear message for a missing file or a folder
    try:
        rows = []  # (line number where the row ends, cells)
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for row in reader:
                rows.append((reader.line_num, row))
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text, so not a csv file", file=file) from None
    except csv.Error as e:
        raise DataError(f"not a valid csv file: {e}", file=file) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=file) from None
    rows = [(line, row) for line, row in rows if any(c.strip() for c in row)]  # blank lines
    if not rows:
        raise DataError("is empty; expected a header row and one row per sample", file=file)
    header = [c.strip() for c in rows[0][1]]
    seen = set()
    for col, name in enumerate(header, 1):
        if not name:
            raise DataError(f"header column {col} has no name", file=file)
        if name in seen:
            raise DataError(f"header names column '{name}' twice", file=file)
        seen.add(name)
    if target not in header:
        raise DataError(f"target_column '{target}' is not a column; the header has: "
                        f"{', '.join(header)}", file=file)
    if len(header) < 2:
        raise DataError(f"has only the target column '{target}'; expected feature columns "
                        f"beside it", file=file)
    body = rows[1:]
    if not body:
        raise DataError("has a header but no data rows", file=file)
    for i, (line, row) in enumerate(body, 1):
        if len(row) != len(header):
            raise DataError(f"row {i} (line {line}) has {len(row)} cells, the header has "
                            f"{len(header)}", file=file)
    values = _parse_cells(body, header, file)  # [n, columns] float64
    t = header.index(target)
    y = values[:, t]
    x = np.delete(values, t, axis=1).astype(np.float32)
    y_out = y.astype(np.int64) if np.all(y == np.round(y)) else y.astype(np.float32)
    return Dataset({"x": x, "y": y_out}, name=p.name, file=file)


def _parse_cells(body: list[tuple[int, list[str]]], header: list[str], file: str) -> np.ndarray:
    """The cells as a float64 array; a ``DataError`` naming row, line and column otherwise."""
    try:  # fast path: NumPy calls float() on each cell, which allows surrounding blanks
        values = np.array([row for _, row in body], dtype=np.float64)
    except ValueError:
        values = None
    if values is not None and np.all(np.isfinite(values)):
        return values
    for i, (line, row) in enumerate(body, 1):  # slow path: find the first bad cell
        for col, cell in enumerate(row):
            try:
                ok = math.isfinite(float(cell.strip()))
                why = "a finite number"
            except ValueError:
                ok, why = False, "a number"
            if not ok:
                raise DataError(f"row {i} (line {line}), column '{header[col]}': expected "
                                f"{why}, found {cell!r}", file=file)
    raise DataError("holds a cell that is not a number", file=file)  # pragma: no cover


# --------------------------------------------------------------------------- loading


def _check_keys(cfg: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    known = (*_COMMON_KEYS, *allowed)
    for key in cfg:
        if key not in known:
            raise ParamError(f"unknown option '{key}' of {what}; it takes: {', '.join(known)}",
                             param=f"dataset.{key}")


def load_dataset(dataset_cfg: Mapping[str, Any], base_dir: str | os.PathLike | None = None,
                 *, seed: int = 0) -> Dataset:
    """The whole dataset described by ``training.dataset`` (not yet split).

    ``base_dir`` is the folder relative paths start from (the graph file's folder; the
    working directory when None). ``seed`` seeds built-in generators that have no ``"seed"``
    option of their own. Raises ``ParamError`` for a bad description and ``DataError`` for a
    file that is missing or unreadable.
    """
    if not isinstance(dataset_cfg, Mapping):
        raise ParamError(f"expected an object like {{\"source\": \"builtin\", \"name\": "
                         f"\"digits\"}}, found {dataset_cfg!r}", param="dataset")
    source = dataset_cfg.get("source")
    if source == "builtin":
        return _load_builtin(dataset_cfg, seed)
    if source == "npz":
        return _load_npz(dataset_cfg, base_dir)
    if source == "csv":
        return _load_csv(dataset_cfg, base_dir)
    raise ParamError(f"expected one of {', '.join(SOURCES)}, found {source!r}",
                     param="dataset.source")


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
    return 0.0 if value is None else _check_split(value)


def load_training_data(training: Mapping[str, Any], base_dir: str | os.PathLike | None = None
                       ) -> tuple[Dataset, Dataset | None]:
    """``(train, val)`` for a training section: ``load_dataset`` then ``Dataset.split`` with
    ``validation_split_of(training)``, both seeded by ``training.seed`` (default 0)."""
    cfg = training.get("dataset")
    if cfg is None:
        raise ParamError("missing: training needs a \"dataset\"", param="dataset")
    seed = training.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParamError(f"expected an integer >= 0, found {seed!r}", param="seed")
    split = validation_split_of(training)
    return load_dataset(cfg, base_dir, seed=seed).split(split, seed)


# --------------------------------------------------------------------------- checking


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


__all__ = ["Dataset", "Builtin", "BUILTINS", "SOURCES", "known_builtins", "builtin_options",
           "load_dataset", "load_training_data", "validation_split_of", "check_fields"]
