"""Datasets read from files: npz archives and csv tables; and the two cheap readers the
settings page shows a file with before training reads it (an archive's array headers, a
table's column names), which read as the loaders do.

- ``{"source": "npz", "path": "data.npz"}``: one array per field, read with
  ``allow_pickle=False``; an object array (pickled data) is refused, never unpickled.
- ``{"source": "csv", "path": "t.csv", "target_column": "label"}``: a header row, then one
  sample per row; blank lines are skipped. The target column becomes field ``"y"`` of
  per-sample shape ``[]`` (int64 when every value is integral, else float32); every other
  column becomes field ``"x"`` float32 of shape ``[n_features]``, in file order. Every cell
  must be a finite number. ``"delimiter"`` (default ``","``) is an optional extension.
- ``{"source": "csv", ..., "sequence_column": "tokens"}``: a table of token sequences, one
  per row, its tokens separated by blanks; fields ``x`` [T] int64 (ids from the sorted
  vocabulary, or the ``"vocabulary"`` option, starting at 1; 0 pads), ``lengths`` [] int64
  and ``y``. ``"steps"`` fixes T (default: the longest sequence).
- Ragged sequences in an npz archive are a padded array plus a lengths array: two fields
  like any others.

A relative ``path`` is relative to ``base_dir``, the folder of the graph file. Problems with
a file (missing, unreadable, a bad cell) are a ``DataError`` naming the file.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from core.datasets.dataset import Dataset, check_keys, check_samples
from core.errors import DataError, ParamError
from core.npz import read_npz, read_npz_headers, regular_file
from core.params import Int

NPZ_KIND = "an .npz archive (one array per field, as np.savez writes)"
EXCERPT_CHARS = 60  # the most of a file's text a message quotes


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` as a message may quote it: characters that are not printable as ``?``, and
    cut to ``limit`` characters (ending in ``...``), so that naming the wrong file (say,
    /proc/self/environ) does not copy it into the message."""
    s = "".join(c if c.isprintable() else "?" for c in text)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def resolve(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None) -> Path:
    """The file ``cfg["path"]`` names: ``~`` expanded, a relative path under ``base_dir``
    (the working directory when None); a ``ParamError`` naming ``dataset.path`` when it
    is not a file name."""
    path = cfg.get("path")
    if not isinstance(path, str) or not path:
        raise ParamError(f"expected \"path\" to be a file name, found {path!r}",
                         param="dataset.path")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path(base_dir if base_dir is not None else ".") / p
    return p


# ---- npz -------------------------------------------------------------------------------------


def load_npz(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None) -> Dataset:
    """The npz dataset ``cfg`` describes: one field per array, each of numbers."""
    check_keys(cfg, ("path",), "an npz dataset")
    p = resolve(cfg, base_dir)
    fields = read_npz(p, DataError, NPZ_KIND)
    check_npz_arrays({k: (a.shape, a.dtype) for k, a in fields.items()}, p)
    return Dataset(fields, name=p.name, file=str(p))


def check_npz_arrays(arrays: Mapping[str, tuple[tuple[int, ...], Any]], p: Path) -> None:
    """What an npz dataset must hold, from its arrays' shapes and dtypes (so a peek at the
    headers refuses what loading refuses): numbers only, at least one array, equal lengths
    and at least one sample; a ``DataError`` naming the file otherwise."""
    for key, (_shape, dtype) in arrays.items():
        if np.dtype(dtype).kind not in "biuf":
            raise DataError(f"array '{key}' holds {dtype} values; expected numbers",
                            file=str(p))
    if not arrays:
        raise DataError("the archive holds no arrays", file=str(p))
    if check_samples({k: shape for k, (shape, _) in arrays.items()}, p.name, str(p)) == 0:
        raise DataError("holds no samples", file=str(p))


def npz_arrays(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of the arrays of an .npz archive, from their headers alone
    (nothing is unpickled, no data read); a ``DataError`` for what ``load_npz`` could not
    read at all."""
    return {key: (shape, str(dtype))
            for key, (shape, dtype) in read_npz_headers(path, DataError, NPZ_KIND).items()}


# ---- csv -------------------------------------------------------------------------------------


def _delimiter(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 1:
        raise ParamError(f"expected one character, found {value!r}", param="dataset.delimiter")
    return value


def _open_text(p: Path) -> TextIO:
    regular_file(p, DataError)  # a FIFO or device is refused before it is opened
    try:
        return open(p, newline="", encoding="utf-8-sig")  # -sig: a BOM is no header text
    except FileNotFoundError:
        raise DataError("no such file", file=str(p)) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a data file", file=str(p)) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=str(p)) from None


def _csv_rows(p: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number where the row ends, cells)`` of each row that is not blank, read as
    they are asked for; a ``DataError`` naming the file when it cannot be read as csv."""
    file = str(p)
    with _open_text(p) as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            for row in reader:
                if any("\x00" in c for c in row):  # binary, or /proc/self/environ
                    raise DataError(f"line {reader.line_num} holds a NUL character, so this "
                                    "is not a csv text file", file=file)
                if any(c.strip() for c in row):
                    yield reader.line_num, row
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text, so not a csv file", file=file) from None
        except csv.Error as e:
            raise DataError(f"not a valid csv file: {e}", file=file) from None
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", file=file) from None


def csv_header(path: str | os.PathLike, delimiter: str = ",") -> list[str]:
    """The column names of a csv file (its first row that is not blank, each name stripped),
    reading no further; ``[]`` for a blank file. A ``DataError`` when the file cannot be
    read as ``load_csv`` reads it, a ``ParamError`` for a delimiter of other than one
    character."""
    for _line, row in _csv_rows(Path(path), _delimiter(delimiter)):
        return [c.strip() for c in row]
    return []


def csv_settings(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None
                 ) -> tuple[str, str, Path]:
    """``(target column, delimiter, file)`` of a csv dataset description; a ``ParamError``
    naming ``dataset.<key>`` for a bad one."""
    check_keys(cfg, ("path", "target_column", "delimiter", "classes", *TOKEN_KEYS),
               "a csv dataset")
    class_names(cfg)  # checked with the rest
    target = cfg.get("target_column")
    if not isinstance(target, str) or not target:
        raise ParamError(f"expected \"target_column\" to name the csv column holding the "
                         f"targets, found {target!r}", param="dataset.target_column")
    delimiter = _delimiter(cfg.get("delimiter", ","))
    return target, delimiter, resolve(cfg, base_dir)


def check_csv_header(header: list[str], target: str, file: str) -> list[str]:
    """``header`` (the stripped names of the first row; ``[]`` for an empty file) once it is
    a usable one for ``target``: a ``DataError`` naming the file otherwise."""
    if not header:
        raise DataError("is empty; expected a header row and one row per sample", file=file)
    seen = set()
    for col, name in enumerate(header, 1):
        if not name:
            raise DataError(f"header column {col} has no name", file=file)
        if not name.isprintable():  # no part of such a file is quoted
            raise DataError(f"header column {col} has a name that is not printable text",
                            file=file)
        if name in seen:
            raise DataError(f"header names column '{excerpt(name)}' twice", file=file)
        seen.add(name)
    if target not in header:
        raise DataError(f"target_column '{target}' is not a column; the header has: "
                        f"{excerpt(', '.join(header))}", file=file)
    if len(header) < 2:
        raise DataError(f"has only the target column '{target}'; expected feature columns "
                        f"beside it", file=file)
    return header


def load_csv(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None) -> Dataset:
    """The csv dataset ``cfg`` describes: fields ``x`` (the features) and ``y`` (the target
    column)."""
    target, delimiter, p = csv_settings(cfg, base_dir)
    if token_settings(cfg) is not None:
        return load_token_csv(cfg, base_dir)
    file = str(p)
    rows = list(_csv_rows(p, delimiter))
    header = check_csv_header([c.strip() for c in rows[0][1]] if rows else [], target, file)
    body = rows[1:]
    if not body:
        raise DataError("has a header but no data rows", file=file)
    for i, (line, row) in enumerate(body, 1):
        if len(row) != len(header):
            raise DataError(f"row {i} (line {line}) has {len(row)} cells, the header has "
                            f"{len(header)}", file=file)
    t = header.index(target)
    features = [h for j, h in enumerate(header) if j != t]
    x = _parse_cells([(line, row[:t] + row[t + 1:]) for line, row in body], features, file)
    y = target_values([(line, row[t]) for line, row in body], class_names(cfg), target, file)
    return Dataset({"x": x.astype(np.float32), "y": y}, name=p.name, file=file)


MAX_CLASSES = 1000  # as a built-in dataset's classes


def class_names(cfg: Mapping[str, Any]) -> list[str] | None:
    """A csv dataset's ``"classes"`` option: the names its target column may hold, class i
    being ``classes[i]``; None when not given. A ``ParamError`` for a bad one."""
    names = cfg.get("classes")
    if names is None:
        return None
    if not (isinstance(names, list) and names and len(names) <= MAX_CLASSES
            and all(isinstance(n, str) and n.strip() == n and n for n in names)):
        raise ParamError(f"expected a list of 1 to {MAX_CLASSES} class names (text without "
                         f"surrounding blanks), found {excerpt(repr(names))}",
                         param="dataset.classes")
    if len(set(names)) != len(names):
        raise ParamError("names a class twice", param="dataset.classes")
    return list(names)


def target_values(cells: list[tuple[int, str]], classes: list[str] | None, column: str,
                  file: str) -> np.ndarray:
    """A target column's cells (line, text) as y: numbers (int64 when every one is whole,
    else float32), or class names mapped to indices, in the order of ``classes`` when given,
    else sorted (by code point), as ``class_mapping`` tells them."""
    texts = [c.strip() for _, c in cells]
    if classes is None:
        try:
            y = np.array(texts, dtype=np.float64)
        except ValueError:
            y = None
        if y is not None:
            bad = np.flatnonzero(~np.isfinite(y))
            if bad.size:
                i = int(bad[0])
                raise DataError(f"row {i + 1} (line {cells[i][0]}), column "
                                f"'{excerpt(column)}': expected a finite number, found "
                                f"{excerpt(texts[i])!r}", file=file)
            return _target(y)
        classes = sorted(set(texts))
        if len(classes) > MAX_CLASSES:
            raise DataError(f"column '{excerpt(column)}' holds {len(classes)} different names, "
                            f"more than {MAX_CLASSES} classes", file=file)
    index = {name: i for i, name in enumerate(classes)}
    for i, ((line, _), text) in enumerate(zip(cells, texts, strict=True), 1):
        if text not in index:
            raise DataError(f"row {i} (line {line}), column '{excerpt(column)}': "
                            f"{excerpt(text)!r} is not one of the classes "
                            f"{excerpt(', '.join(classes))}", file=file)
    return np.array([index[t] for t in texts], dtype=np.int64)


def class_mapping(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None
                  ) -> list[str] | None:
    """The class names of a csv dataset's target column, class i first: the ``"classes"``
    option, else the column's names sorted when it holds names; None for a numeric target
    (or a dataset that is no csv table)."""
    if cfg.get("source") != "csv" or token_settings(cfg) is not None:
        return None
    given = class_names(cfg)
    if given is not None:
        return given
    target, delimiter, p = csv_settings(cfg, base_dir)
    rows = list(_csv_rows(p, delimiter))
    header = check_csv_header([c.strip() for c in rows[0][1]] if rows else [], target, str(p))
    t = header.index(target)
    texts = [row[t].strip() for _, row in rows[1:] if len(row) > t]
    try:
        np.array(texts, dtype=np.float64)
        return None
    except ValueError:
        return sorted(set(texts))


def _target(y: np.ndarray) -> np.ndarray:
    """A target column: int64 when every value is a whole number, else float32."""
    return y.astype(np.int64) if np.all(y == np.round(y)) else y.astype(np.float32)


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
                raise DataError(f"row {i} (line {line}), column '{excerpt(header[col])}': "
                                f"expected {why}, found {excerpt(cell)!r}", file=file)
    raise DataError("holds a cell that is not a number", file=file)  # pragma: no cover


# ---- csv token tables --------------------------------------------------------------------
# A csv dataset with ``"sequence_column"`` is a table of token sequences (docs/format.md
# section 2.8): that column holds each sample's tokens separated by blanks, the target column
# a number. It gives x [n, T] int64 (token ``vocabulary[i]`` is ``i + 1``, 0 pads), lengths
# [n] int64 (1..T) and y, as a padded npz archive would hold them.

TOKEN_KEYS = ("sequence_column", "vocabulary", "steps")
MAX_VOCABULARY = 1_000_000
_STEPS = Int(None, "time steps (T) the sequences are padded to", min=1, max=100_000)


@dataclass(frozen=True)
class TokenSettings:
    """What a token table's description says beside the csv keys: the column holding the
    sequences, the vocabulary (None: the file's tokens, sorted) and T (None: the longest)."""
    column: str
    vocabulary: tuple[str, ...] | None
    steps: int | None


def token_settings(cfg: Mapping[str, Any]) -> TokenSettings | None:
    """The token-table settings of a csv dataset description, None for a plain table; a
    ``ParamError`` naming ``dataset.<key>`` for a bad one."""
    if "sequence_column" not in cfg:
        for key in ("vocabulary", "steps"):
            if key in cfg:
                raise ParamError(f"\"{key}\" is for a table of token sequences; set "
                                 "\"sequence_column\" to the column holding them",
                                 param=f"dataset.{key}")
        return None
    column = cfg["sequence_column"]
    if not isinstance(column, str) or not column:
        raise ParamError(f"expected the name of the csv column holding the token sequences, "
                         f"found {column!r}", param="dataset.sequence_column")
    if column == cfg.get("target_column"):
        raise ParamError(f"'{column}' is the target_column too; the sequences need their own "
                         "column", param="dataset.sequence_column")
    vocabulary = cfg.get("vocabulary")
    if vocabulary is not None:
        vocabulary = _vocabulary(vocabulary)
    try:
        steps = _STEPS.coerce(cfg["steps"]) if cfg.get("steps") is not None else None
    except ParamError as e:
        raise ParamError(e.message, param="dataset.steps") from None
    return TokenSettings(column, vocabulary, steps)


def _vocabulary(value: Any) -> tuple[str, ...]:
    bad = ParamError(f"expected a list of distinct tokens (strings without blanks), found "
                     f"{excerpt(repr(value))}", param="dataset.vocabulary")
    if not isinstance(value, list) or not value or len(value) > MAX_VOCABULARY:
        raise bad
    for tok in value:
        if not isinstance(tok, str) or not tok or tok.split() != [tok]:
            raise ParamError(f"expected tokens without blanks, found {excerpt(repr(tok))}",
                             param="dataset.vocabulary")
    if len(set(value)) != len(value):
        twice = next(t for i, t in enumerate(value) if t in value[:i])
        raise ParamError(f"lists token {excerpt(repr(twice))} twice",
                         param="dataset.vocabulary")
    return tuple(value)


def encode_tokens(sequences: list[list[str]], vocabulary: list[str] | tuple[str, ...],
                  steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, lengths)`` of token sequences: x [n, steps] int64 with ``vocabulary[i]`` as
    ``i + 1`` and 0 after each sequence's end, lengths [n] int64. Self-contained (only np),
    for an exported script to copy: every token must be in ``vocabulary`` and no sequence
    longer than ``steps``."""
    index = {tok: i + 1 for i, tok in enumerate(vocabulary)}
    x = np.zeros((len(sequences), steps), dtype=np.int64)
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for i, seq in enumerate(sequences):
        x[i, :len(seq)] = [index[t] for t in seq]
        lengths[i] = len(seq)
    return x, lengths


def _token_table(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None
                 ) -> tuple[Path, list[list[str]], np.ndarray, tuple[str, ...], int]:
    """``(file, sequences, y, vocabulary, T)`` of a token table, every check made."""
    target, delimiter, p = csv_settings(cfg, base_dir)
    ts = token_settings(cfg)
    assert ts is not None
    file = str(p)
    rows = list(_csv_rows(p, delimiter))
    header = check_csv_header([c.strip() for c in rows[0][1]] if rows else [], target, file)
    if ts.column not in header:
        raise DataError(f"sequence_column '{excerpt(ts.column)}' is not a column; the header "
                        f"has: {excerpt(', '.join(header))}", file=file)
    extra = [h for h in header if h not in (target, ts.column)]
    if extra:
        raise DataError(f"a table of token sequences holds only the target column '{target}' "
                        f"and the sequence column '{ts.column}'; it also has: "
                        f"{excerpt(', '.join(extra))}", file=file)
    body = rows[1:]
    if not body:
        raise DataError("has a header but no data rows", file=file)
    t_col, s_col = header.index(target), header.index(ts.column)
    sequences: list[list[str]] = []
    for i, (line, row) in enumerate(body, 1):
        if len(row) != len(header):
            raise DataError(f"row {i} (line {line}) has {len(row)} cells, the header has "
                            f"{len(header)}", file=file)
        seq = row[s_col].split()
        if not seq:
            raise DataError(f"row {i} (line {line}), column '{excerpt(ts.column)}': holds no "
                            "tokens; every sequence needs at least one", file=file)
        sequences.append(seq)
    y = _parse_cells([(line, [row[t_col]]) for line, row in body], [target], file)[:, 0]
    if ts.vocabulary is None:
        vocabulary = tuple(sorted({t for seq in sequences for t in seq}))
    else:
        vocabulary = ts.vocabulary
        known = set(vocabulary)
        for i, seq in enumerate(sequences):
            unknown = next((t for t in seq if t not in known), None)
            if unknown is not None:
                raise DataError(f"row {i + 1} (line {body[i][0]}), column "
                                f"'{excerpt(ts.column)}': token {excerpt(repr(unknown))} is "
                                "not in the dataset's vocabulary", file=file)
    longest = max(len(seq) for seq in sequences)
    steps = ts.steps if ts.steps is not None else longest
    if longest > steps:
        i = next(i for i, seq in enumerate(sequences) if len(seq) > steps)
        raise DataError(f"row {i + 1} (line {body[i][0]}) holds {len(sequences[i])} tokens, "
                        f"more than steps = {steps}", file=file)
    return p, sequences, y, vocabulary, steps


def load_token_csv(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None) -> Dataset:
    """The table of token sequences ``cfg`` describes: fields x [T] int64 (0 pads),
    lengths [] int64 and y (the target column)."""
    p, sequences, y, vocabulary, steps = _token_table(cfg, base_dir)
    x, lengths = encode_tokens(sequences, vocabulary, steps)
    return Dataset({"x": x, "lengths": lengths, "y": _target(y)}, name=p.name, file=str(p))


def token_vocabulary(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None
                     ) -> list[str]:
    """The vocabulary of a table of token sequences, in id order (token ``i`` is id ``i +
    1``): its ``vocabulary`` option, else the file's tokens sorted. Written into the
    dataset description as ``"vocabulary"``, it pins the ids when the file changes."""
    return list(_token_table(cfg, base_dir)[3])


def token_csv_fields(cfg: Mapping[str, Any], base_dir: str | os.PathLike | None
                     ) -> dict[str, tuple[tuple[int, ...], str, bool]]:
    """``{field: (per-sample shape, dtype, whole numbers only)}`` of a table of token
    sequences, as ``load_token_csv`` makes them (the file is read: T may be its longest
    sequence)."""
    ds = load_token_csv(cfg, base_dir)
    y = ds["y"]
    return {"x": ((ds["x"].shape[1],), "int64", True), "lengths": ((), "int64", True),
            "y": ((), y.dtype.name, y.dtype.kind == "i")}
