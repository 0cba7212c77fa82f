"""core/files.py: atomic writes keep a replaced file's permissions and give a new file what
the umask says (no Qt)."""
from __future__ import annotations

import os
import stat

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
