"""Weights files (SPEC section 4): NumPy .npz, one float32 array per "<node id>/<name>" key,
written atomically and read with allow_pickle=False."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from core.errors import WeightsError
from core.fileformat import atomic_write


def save_weights(path: str | os.PathLike, state: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v, dtype=np.float32) for k, v in state.items()})
    atomic_write(path, buf.getvalue())


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of a weights file; ``WeightsError`` naming the file when it is unreadable."""
    p = str(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise WeightsError("no such file", file=p) from None
    except IsADirectoryError:
        raise WeightsError("is a directory, not a weights file", file=p) from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        reason = "holds Python objects, which are never unpickled" if "pickle" in str(e) \
            else "not a NumPy .npz weights file"
        raise WeightsError(reason, file=p) from None
