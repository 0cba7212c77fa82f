"""Writing files so that a crash never leaves a half-written one."""
from __future__ import annotations

import os
import re
import secrets
import stat
import time
from pathlib import Path

_NEW_FILE_MODE = 0o666  # what open() asks for; the kernel takes the user's umask off it

# A temporary file of a write that was killed (SIGKILL, power cut, a Ctrl-C in the instant
# between creating it and the ``try``) stays behind; the next write of the same file removes
# the ones older than this. Not "all but its own": another process may be writing the same
# file right now, and removing its temporary file would make its rename fail and lose its
# save. A live write keeps its file's mtime fresh while it writes, so ten minutes leaves any
# real write alone and still cleans up at the next save after a crash that long ago.
_STALE_AFTER_S = 600.0


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so a crash never leaves a half-written file.

    A file that replaces another keeps the other's permission bits; a new file gets what the
    user's umask gives (0666 & ~umask), as a plain ``open(path, "wb")`` would. A symbolic link
    stays a link: its target is written. No temporary file is left behind on an error
    (a full disk included), and stale ones of the same file from a killed write are removed.
    """
    p = Path(os.path.realpath(path))  # through symlinks, so the rename replaces the target
    try:
        keep_mode: int | None = stat.S_IMODE(os.stat(p).st_mode)
    except FileNotFoundError:
        keep_mode = None
    fd, tmp = _create_temp(p)
    try:
        with os.fdopen(fd, "wb") as f:  # closes fd on every path from here
            if keep_mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), keep_mode)
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
    _fsync_folder(p.parent)
    _remove_stale_temps(p)


def _temp_pattern(p: Path) -> re.Pattern[str]:
    return re.compile(re.escape(f".{p.name}.") + r"[0-9a-f]{8}\.tmp")


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


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); the data is in place already, so a folder
    that cannot be opened or synced is no error."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temps(p: Path) -> None:
    """Remove the temporary files of ``p`` older than ``_STALE_AFTER_S``; never raises."""
    pattern = _temp_pattern(p)
    cutoff = time.time() - _STALE_AFTER_S
    try:
        with os.scandir(p.parent) as entries:
            for e in entries:
                if not pattern.fullmatch(e.name):
                    continue
                try:
                    if e.is_file(follow_symlinks=False) and e.stat(
                            follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(e.path)
                except OSError:
                    pass
    except OSError:
        pass
