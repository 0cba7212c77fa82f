"""Choosing the device a network runs on, and saying why a device cannot be used.

``kernels.backend`` knows whether CuPy and a GPU are there; this module turns a device
setting (``auto``, ``cpu``, ``gpu``: the training section's ``device`` and ``--device``)
into the device to use, or into a ``DeviceError`` a user can act on.
"""
from __future__ import annotations

from core.errors import DeviceError
from kernels import backend

DEVICES = ("auto", "cpu", "gpu")


def resolve_device(device: str) -> tuple[str, str | None]:
    """('cpu' | 'gpu', note). ``auto`` picks the GPU when usable, else the CPU with a note."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected auto, cpu or gpu",
                          param="device")
    if device == "cpu":
        return "cpu", None
    why = backend.gpu_missing_reason()
    if why is None:
        return "gpu", None
    if device == "gpu":
        raise DeviceError(f"device 'gpu' asked for, but {why} (install the 'gpu' extra, "
                          "or use the cpu device)", param="device")
    return "cpu", "no usable GPU found; training on the CPU with NumPy"


def array_module(device: str):
    """The array module of a resolved device ('cpu' or 'gpu'); ``DeviceError`` when the
    GPU is asked for and not there."""
    if device == "gpu" and backend.gpu_missing_reason() is not None:
        raise DeviceError(f"no usable GPU: {backend.gpu_missing_reason()}", param="device")
    return backend.get_xp(device)
