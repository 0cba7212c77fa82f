"""Weights files (SPEC section 4): NumPy .npz, one float32 array per "<node id>/<name>" key,
written atomically and read with allow_pickle=False."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from core.errors import NeuroCanvasError, WeightsError
from core.fileformat import atomic_write


def save_weights(path: str | os.PathLike, state: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v, dtype=np.float32) for k, v in state.items()})
    atomic_write(path, buf.getvalue())


def read_npz(path: str | os.PathLike, error: type[NeuroCanvasError] = WeightsError,
             kind: str = "NumPy .npz weights file") -> dict[str, np.ndarray]:
    """Every array of an .npz file, read with allow_pickle=False.

    Anything else (a missing file, a .npy or text file, a zip of other things, object arrays)
    raises ``error`` naming the file. The zip signature is checked first: given a file that is
    neither zip nor .npy, ``np.load`` would take it for a pickle and say so, wrongly.
    """
    p = str(path)
    try:
        with open(p, "rb") as f:
            is_zip = zipfile.is_zipfile(f)
    except FileNotFoundError:
        raise error("no such file", file=p) from None
    except IsADirectoryError:
        raise error(f"is a directory, not a {kind}", file=p) from None
    except OSError as e:
        raise error(f"cannot read: {e.strerror}", file=p) from None
    if not is_zip:
        raise error(f"not a {kind}", file=p)
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        reason = "holds Python objects, which are never unpickled" if "pickle" in str(e) \
            else f"not a {kind}"
        raise error(reason, file=p) from None
    except Exception:  # a damaged archive (zlib.error and the like): not readable data
        raise error(f"not a {kind}: the archive is damaged", file=p) from None
    for k, v in out.items():
        if not isinstance(v, np.ndarray):  # a zip member that is not an .npy array
            raise error(f"not a {kind}: member '{k}' is not a NumPy array", file=p)
    return out


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of a weights file; ``WeightsError`` naming the file when it is unreadable."""
    return read_npz(path, WeightsError, "NumPy .npz weights file")
