"""Writing files so that a crash never leaves a half-written one."""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

_NEW_FILE_MODE = 0o666  # what open() asks for; the kernel takes the user's umask off it


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so a crash never leaves a half-written file.

    A file that replaces another keeps the other's permission bits; a new file gets what the
    user's umask gives (0666 & ~umask), as a plain ``open(path, "wb")`` would.
    """
    p = Path(path)
    try:
        keep_mode: int | None = stat.S_IMODE(os.stat(p).st_mode)
    except FileNotFoundError:
        keep_mode = None
    fd, tmp = _create_temp(p)
    try:
        if keep_mode is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, keep_mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _create_temp(p: Path) -> tuple[int, str]:
    """A new, empty temporary file beside ``p``. Made with os.open and mode 0666 rather than
    tempfile.mkstemp, whose files are owner-only (0600) whatever the umask says."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    folder = p.parent
    while True:
        tmp = str(folder / f".{p.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, _NEW_FILE_MODE), tmp
        except FileExistsError:
            continue
