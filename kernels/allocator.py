"""Memory freed by one training step, kept for the next (glibc's malloc, on Linux).

A training step allocates and frees the same large arrays every step (activations, their
gradients, im2col buffers). glibc hands an array above its mmap threshold a mapping of its
own and returns it to the kernel when it is freed, and trims the heap's top above its trim
threshold: the next step then faults every page in again (thousands of minor page faults a
step for a small CNN). ``keep_freed_memory`` raises both thresholds once per process, so
freed arrays stay in the heap and the next step reuses them:

- ``M_MMAP_THRESHOLD`` to 32 MiB, glibc's largest on 64-bit systems (larger arrays still get
  mappings of their own, as before);
- ``M_TRIM_THRESHOLD`` to 512 MiB: the heap keeps up to that much free memory at its top.

A training process then holds on to memory it used once, as PyTorch's caching allocators do.
Nothing changes where the C library is not glibc (mallopt is missing) or off Linux, nor with
the environment variable ``NEUROCANVAS_MALLOC=default``.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 ** 2
TRIM_THRESHOLD = 512 * 1024 ** 2
ENV_VAR = "NEUROCANVAS_MALLOC"

_state: bool | None = None  # None: not tried yet; else whether the thresholds were set


def keep_freed_memory() -> bool:
    """Raise the allocator's thresholds (once per process); True when they are set."""
    global _state
    if _state is not None:
        return _state
    _state = False
    if not sys.platform.startswith("linux") or os.environ.get(ENV_VAR) == "default":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _state = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _state
