"""Weights files (docs/format.md section 4): NumPy .npz, one float32 array per "<node id>/<name>"
key, written atomically and read with allow_pickle=False (and within ``core.npz``'s size cap,
checked from the arrays' headers before any data is read)."""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from core.errors import WeightsError
from core.files import atomic_write
from core.layers.base import fmt_shape
from core.npz import npz_bytes, read_npz, read_npz_headers

KIND = "a NumPy .npz weights file"


def save_weights(path: str | os.PathLike, state: dict[str, np.ndarray]) -> None:
    atomic_write(path, npz_bytes({k: np.asarray(v, dtype=np.float32) for k, v in state.items()}))


def load_weights(path: str | os.PathLike,
                 expected: Mapping[str, tuple[int, ...]] | None = None
                 ) -> dict[str, np.ndarray]:
    """All arrays of a weights file; ``WeightsError`` naming the file when it is unreadable.

    With ``expected`` (``{key: shape}``, what a network holds: see ``network_shapes``) the
    file's headers are checked first, so a missing key, a wrong shape or an array that is not
    real numbers is reported as ``Network.load_state_dict`` reports it without reading any
    array, and only the expected keys are read."""
    if expected is None:
        return read_npz(path, WeightsError, KIND)
    file = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    headers = read_npz_headers(path, WeightsError, KIND, keys=list(expected))
    for key, shape in expected.items():
        if key not in headers:
            raise WeightsError(f"missing key '{key}'", file=file)
        got, dtype = headers[key]
        if tuple(got) != tuple(shape):
            raise WeightsError(f"key '{key}' has shape {fmt_shape(tuple(got))}, expected "
                               f"{fmt_shape(tuple(shape))}", file=file)
        if dtype.kind not in "biuf":
            raise WeightsError(f"key '{key}' is not real numbers ({dtype})", file=file)
    return read_npz(path, WeightsError, KIND, keys=list(expected))


def network_shapes(net) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of every weight and buffer a ``Network`` loads."""
    return {k: tuple(a.shape) for k, a in list(net.params.items()) + list(net.buffers.items())}


def merge_state(state: Mapping[str, np.ndarray], init: Mapping[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], int]:
    """``state`` (a network's fresh weights) with every array taken from ``init`` whose key
    it has with the same shape (the graph may have changed since ``init`` was made);
    returns it and how many arrays were left fresh."""
    out, fresh = dict(state), 0
    for key, arr in state.items():
        got = init.get(key)
        if got is not None and tuple(np.shape(got)) == tuple(np.shape(arr)):
            out[key] = np.asarray(got)
        else:
            fresh += 1
    return out, fresh
