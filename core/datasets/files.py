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

A relative ``path`` is relative to ``base_dir``, the folder of the graph file. Problems with
a file (missing, unreadable, a bad cell) are a ``DataError`` naming the file.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from core.datasets.dataset import Dataset, check_keys, check_samples
from core.errors import DataError, ParamError
from core.npz import read_npz, read_npz_headers, regular_file

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
    check_keys(cfg, ("path", "target_column", "delimiter"), "a csv dataset")
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
                raise DataError(f"row {i} (line {line}), column '{excerpt(header[col])}': "
                                f"expected {why}, found {excerpt(cell)!r}", file=file)
    raise DataError("holds a cell that is not a number", file=file)  # pragma: no cover
