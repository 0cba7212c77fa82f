"""The errors importing a PyTorch module can cause: all user errors (exit status 2)."""
from __future__ import annotations

from core.errors import NeuroCanvasError

#: what to install when torch is missing
NEEDS_TORCH = ("importing a PyTorch module needs torch: install it with "
               "pip install torch (or pip install -e '.[dev]')")


class TorchImportError(NeuroCanvasError):
    """A module that cannot be loaded, traced or mapped onto NeuroCanvas's node types.

    ``op`` is the operation that could not be mapped (``torch.matmul``, ``nn.GELU``) and
    ``where`` the source line it comes from (``model.py:42: x = F.gelu(x)``), when known."""

    def __init__(self, message: str, *, op: str | None = None, where: str | None = None,
                 file: str | None = None):
        self.op = op
        self.where = where
        if where:
            message = f"{message} (at {where})"
        super().__init__(message, file=file)
