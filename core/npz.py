"""Reading NumPy .npz archives safely: the one reader for weights files, ``predict`` inputs
and npz datasets (their arrays, or only the arrays' headers). Arrays are read with
``allow_pickle=False``; nothing is ever unpickled.

Every archive is checked from its arrays' headers before any array data is decompressed:
the sizes they declare must add up to at most ``MAX_NPZ_BYTES``, and each member's
uncompressed size must be exactly its header plus the data its header declares. Each array
is then read through the zip member's own stream, which never yields more than that size,
so an archive whose headers lie (a zip bomb) cannot make a reader allocate more."""
from __future__ import annotations

import io
import math
import os
import stat
import zipfile

import numpy as np

from core.errors import NeuroCanvasError

MAX_NPZ_BYTES = 4 * 1024 ** 3
"""The most array data (bytes, uncompressed, all arrays read together) one archive may
declare (docs/format.md sections 2.8 and 4); a larger one is refused from its headers."""


def regular_file(path: str | os.PathLike, error: type[NeuroCanvasError]) -> str:
    """``path`` as a string once ``os.stat`` says it is a regular file; ``error`` naming the
    file otherwise (missing, a folder, a FIFO or device, a path with a NUL character), so
    that nothing is opened that could block or never end.

    There is a race: the path could be replaced between this check and the ``open`` that
    follows. Callers open with no special flags; whoever can swap a FIFO in at that moment
    can already write the files a graph reads."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise error(f"not a file name: {path!r}") from None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if "\x00" in p:
        raise error("the path holds a NUL character, which no file name can",
                    file=p.replace("\x00", "\\0"))
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error("no such file", file=p) from None
    except (OSError, ValueError) as e:
        raise error(f"cannot read: {getattr(e, 'strerror', None) or e}", file=p) from None
    if stat.S_ISDIR(st.st_mode):
        raise error("is a directory, not a regular file", file=p)
    if not stat.S_ISREG(st.st_mode):
        raise error("is not a regular file (a FIFO, socket or device is never read)", file=p)
    return p


def read_npz(path: str | os.PathLike, error: type[NeuroCanvasError], kind: str,
             keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every array of the archive at ``path`` by name, or only those of ``keys`` that it
    holds (the caller checks for the ones missing).

    Anything else (a missing file, a folder, a FIFO or device, a .npy or text file, a
    damaged archive, an array of Python objects, arrays larger than ``MAX_NPZ_BYTES``)
    raises ``error`` naming the file. ``kind`` says what was expected, with its article ("a
    NumPy .npz weights file"). The signature is checked first: given a file that is neither
    zip nor .npy, ``np.load`` would take it for a pickle and say so.
    """
    p = _check_file(path, error, kind)
    return _read_archive(p, error, kind, p, keys)


def read_npz_headers(path: str | os.PathLike, error: type[NeuroCanvasError], kind: str,
                     keys: list[str] | None = None
                     ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{name: (shape, dtype)}`` of every array of the archive at ``path``, read from the
    arrays' headers alone (cheap for a large file). Refuses what ``read_npz`` refuses, with
    its messages, except damage inside an array's data, which only reading the data finds.
    With ``keys``, only those arrays count against the size cap (as ``read_npz`` reads them);
    every header is still given."""
    p = _check_file(path, error, kind)
    try:
        with zipfile.ZipFile(p) as archive:
            headers = _headers(archive, error, kind, p)
    except NeuroCanvasError:
        raise
    except Exception:  # BadZipFile, zlib.error, a header that does not parse...
        raise error(f"not {kind}: the archive is damaged or holds other files", file=p) \
            from None
    _check_size(headers if keys is None else {k: headers[k] for k in keys if k in headers},
                error, p)
    return {key: (shape, dtype) for key, (_info, shape, dtype) in headers.items()}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed .npz archive of ``arrays``, in memory."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_npz_bytes(data: bytes, error: type[NeuroCanvasError], kind: str,
                   where: str | None = None) -> dict[str, np.ndarray]:
    """``read_npz`` for an archive held in memory (``where`` names it in errors)."""
    if not data.startswith(b"PK"):
        raise error(f"not {kind}", file=where)
    return _read_archive(io.BytesIO(data), error, kind, where)


def _check_file(path: str | os.PathLike, error: type[NeuroCanvasError], kind: str) -> str:
    """``path`` as a string once it is a regular file whose first bytes say it is a zip
    archive; ``error`` otherwise."""
    p = regular_file(path, error)
    try:
        with open(p, "rb") as f:
            head = f.read(6)
    except FileNotFoundError:
        raise error("no such file", file=p) from None
    except IsADirectoryError:
        raise error(f"is a directory, not {kind}", file=p) from None
    except OSError as e:
        raise error(f"cannot read: {e.strerror or e}", file=p) from None
    if head.startswith(b"\x93NUMPY"):
        raise error(f"not {kind}: it is a .npy file (one array); expected an archive with one "
                    "named array each, as np.savez(path, x=..., y=...) writes", file=p)
    if not head.startswith(b"PK"):
        raise error(f"not {kind}", file=p)
    return p


def _headers(archive: zipfile.ZipFile, error: type[NeuroCanvasError], kind: str,
             p: str | None) -> dict[str, tuple[zipfile.ZipInfo, tuple[int, ...], np.dtype]]:
    """``{name: (member, shape, dtype)}`` from each member's .npy header; ``error`` for a
    member that is not an array, an object array, or a member whose size is not what its
    header declares."""
    out: dict[str, tuple[zipfile.ZipInfo, tuple[int, ...], np.dtype]] = {}
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        with archive.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
            except ValueError:
                version = None
            if version is None:  # np.load gives such a member as bytes
                raise error(f"not {kind}: member '{key}' is not a NumPy array", file=p)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:  # 2.0 and 3.0 headers differ only in the text's encoding
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
            header_len = f.tell()
        if dtype.hasobject:
            raise error(f"array '{key}' holds Python objects (pickled data), which "
                        "are never unpickled", file=p)
        if header_len + _nbytes(shape, dtype) != info.file_size:
            raise error(f"not {kind}: member '{key}' is not the size its header declares "
                        "(the archive is damaged)", file=p)
        out[key] = (info, tuple(int(n) for n in shape), dtype)
    return out


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(int(n) for n in shape) * dtype.itemsize


def _check_size(headers: dict, error: type[NeuroCanvasError], p: str | None) -> None:
    total = sum(_nbytes(shape, dtype) for _info, shape, dtype in headers.values())
    if total > MAX_NPZ_BYTES:
        raise error(f"its arrays declare {total} bytes, more than the {MAX_NPZ_BYTES} "
                    "bytes an archive may hold (core.npz.MAX_NPZ_BYTES)", file=p)


def _read_archive(source, error: type[NeuroCanvasError], kind: str, p: str | None,
                  keys: list[str] | None = None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(source) as archive:
            headers = _headers(archive, error, kind, p)
            if keys is not None:
                headers = {k: headers[k] for k in keys if k in headers}
            _check_size(headers, error, p)
            for key, (info, _shape, _dtype) in headers.items():
                with archive.open(info) as f:  # never yields more than info.file_size
                    out[key] = np.lib.format.read_array(f, allow_pickle=False)
    except NeuroCanvasError:
        raise
    except Exception:  # BadZipFile, zlib.error, a truncated member, a bad CRC...
        raise error(f"not {kind}: the archive is damaged or holds other files", file=p) \
            from None
    return out
