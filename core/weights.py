"""Weights files (docs/format.md section 4): NumPy .npz, one float32 array per "<node id>/<name>"
key, written atomically and read with allow_pickle=False."""
from __future__ import annotations

import os

import numpy as np

from core.errors import WeightsError
from core.files import atomic_write
from core.npz import npz_bytes, read_npz


def save_weights(path: str | os.PathLike, state: dict[str, np.ndarray]) -> None:
    atomic_write(path, npz_bytes({k: np.asarray(v, dtype=np.float32) for k, v in state.items()}))


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of a weights file; ``WeightsError`` naming the file when it is unreadable."""
    return read_npz(path, WeightsError, "a NumPy .npz weights file")
