"""Reading NumPy .npz archives safely: the one reader for weights files, ``predict`` inputs
and npz datasets (their arrays, or only the arrays' headers). Arrays are read with
``allow_pickle=False``; nothing is ever unpickled."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from core.errors import NeuroCanvasError


def read_npz(path: str | os.PathLike, error: type[NeuroCanvasError], kind: str
             ) -> dict[str, np.ndarray]:
    """Every array of the archive at ``path``, by name.

    Anything else (a missing file, a folder, a .npy or text file, a damaged archive, an array
    of Python objects) raises ``error`` naming the file. ``kind`` says what was expected,
    with its article ("a NumPy .npz weights file"). The signature is checked first: given a
    file that is neither zip nor .npy, ``np.load`` would take it for a pickle and say so.
    """
    p = _check_file(path, error, kind)
    return _read_archive(p, error, kind, p)


def read_npz_headers(path: str | os.PathLike, error: type[NeuroCanvasError], kind: str
                     ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{name: (shape, dtype)}`` of every array of the archive at ``path``, read from the
    arrays' headers alone (cheap for a large file). Refuses what ``read_npz`` refuses, with
    its messages, except damage inside an array's data, which only reading the data finds."""
    p = _check_file(path, error, kind)
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(p) as archive:
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
                if dtype.hasobject:
                    raise error(f"array '{key}' holds Python objects (pickled data), which "
                                "are never unpickled", file=p)
                out[key] = (tuple(shape), dtype)
    except NeuroCanvasError:
        raise
    except Exception:  # BadZipFile, zlib.error, a header that does not parse...
        raise error(f"not {kind}: the archive is damaged or holds other files", file=p) \
            from None
    return out


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
    """``path`` as a string once its first bytes say it is a zip archive; ``error`` otherwise."""
    p = str(path)
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


def _read_archive(source, error: type[NeuroCanvasError], kind: str, p: str | None
                  ) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(source, allow_pickle=False) as archive:
            for key in archive.files:
                try:
                    out[key] = archive[key]
                except ValueError as e:
                    if "pickle" in str(e) or "Object arrays" in str(e):
                        raise error(f"array '{key}' holds Python objects (pickled data), "
                                    "which are never unpickled", file=p) from None
                    raise
    except NeuroCanvasError:
        raise
    except Exception:  # BadZipFile, zlib.error, a member that is not an .npy array...
        raise error(f"not {kind}: the archive is damaged or holds other files", file=p) \
            from None
    for k, v in out.items():
        if not isinstance(v, np.ndarray):
            raise error(f"not {kind}: member '{k}' is not a NumPy array", file=p)
    return out
