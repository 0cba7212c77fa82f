"""core/files.py: atomic writes keep a replaced file's permissions and give a new file what
the umask says, write through symlinks and leave no temporary file behind (no Qt)."""
from __future__ import annotations

import errno
import io
import os
import stat
import time

import pytest

from core.files import atomic_write

posix_only = pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_the_bytes_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "g.ncg.json"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["g.ncg.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "g.ncg.json"
    atomic_write(path, b"old")
    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["g.ncg.json"]


@posix_only
@pytest.mark.parametrize("old_mode", [0o644, 0o640, 0o600, 0o664, 0o755])
def test_a_replaced_file_keeps_its_permission_bits(tmp_path, umask, old_mode):
    umask(0o077)  # a umask that would give 0600: the old file's bits must win
    path = tmp_path / "g.ncg.json"
    path.write_bytes(b"old")
    os.chmod(path, old_mode)
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert mode(path) == old_mode


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_a_new_file_gets_what_the_umask_gives(tmp_path, umask, mask):
    umask(mask)
    path = tmp_path / "new.ncg.json"
    atomic_write(path, b"data")
    assert mode(path) == 0o666 & ~mask


@posix_only
def test_a_new_file_is_not_owner_only_under_the_usual_umask(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "shared.ncg.json"
    atomic_write(path, b"data")
    assert mode(path) == 0o644


def no_temporaries(folder) -> bool:
    return not [n for n in os.listdir(folder) if n.endswith(".tmp")]


@posix_only
def test_a_symlink_stays_a_link_and_its_target_is_written(tmp_path):
    target = tmp_path / "real" / "g.ncg.json"
    target.parent.mkdir()
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.ncg.json"
    link.symlink_to(target)
    atomic_write(link, b"new")
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o640
    assert no_temporaries(tmp_path) and no_temporaries(target.parent)


@posix_only
def test_a_dangling_symlink_creates_its_target(tmp_path):
    target = tmp_path / "new.ncg.json"
    link = tmp_path / "link.ncg.json"
    link.symlink_to(target.name)
    atomic_write(link, b"data")
    assert link.is_symlink() and target.read_bytes() == b"data"


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_at_fsync_keeps_the_old_file_and_leaves_no_temporary(tmp_path,
                                                                           monkeypatch):
    path = tmp_path / "g.ncg.json"
    atomic_write(path, b"old")
    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(OSError) as e:
        atomic_write(path, b"new")
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["g.ncg.json"]


class _FullDiskFile(io.FileIO):
    """A file whose writes fail as on a full disk."""

    def write(self, b):
        enospc()


def test_a_full_disk_while_writing_the_data_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "g.ncg.json"
    atomic_write(path, b"old")
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        if "w" in mode:
            return io.BufferedWriter(_FullDiskFile(fd, "w"))
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(OSError) as e:
        atomic_write(path, b"new" * 100_000)  # more than a buffer: the write itself fails
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["g.ncg.json"]


def test_a_failed_rename_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "g.ncg.json"
    monkeypatch.setattr(os, "replace", enospc)
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_a_stale_temporary_of_the_same_file_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "g.ncg.json"
    stale = tmp_path / ".g.ncg.json.0123abcd.tmp"  # left by a write that was killed
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".g.ncg.json.89abcdef.tmp"  # another process writing right now
    fresh.write_bytes(b"in progress")
    other = tmp_path / ".other.ncg.json.0123abcd.tmp"  # another file's: not ours to remove
    other.write_bytes(b"x")
    os.utime(other, (old, old))
    atomic_write(path, b"data")
    assert path.read_bytes() == b"data"
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, fresh.name, other.name])
