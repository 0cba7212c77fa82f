"""Running ``main.py`` as a user does, and checking what a user error looks like."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def assert_user_error(r: subprocess.CompletedProcess, *names: str) -> str:
    """Exit status 2, one stderr line naming every one of ``names``, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("neurocanvas: error: "), line
    for name in names:
        assert name in line, (name, line)
    return line
