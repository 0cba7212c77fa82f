"""Where the editor keeps its own files: settings (recent files, theme), autosaved recovery
copies of unsaved work, and the example graphs.

``NEUROCANVAS_HOME`` moves all of it (tests point it at a temporary folder).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

from core.files import atomic_write

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "resources" / "examples"
MAX_RECENT = 10


def home() -> Path:
    override = os.environ.get("NEUROCANVAS_HOME")
    if override:
        return Path(override)
    base = QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)
    return Path(base or Path.home() / ".neurocanvas")


def settings() -> QSettings:
    path = home() / "settings.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.IniFormat)


def recent_files() -> list[str]:
    value = settings().value("recentFiles", [])
    if isinstance(value, str):  # QSettings gives a bare string for a one-item list
        value = [value]
    return [p for p in (value or []) if isinstance(p, str)]


def add_recent_file(path: str | Path) -> list[str]:
    p = str(Path(path).resolve())
    files = [p] + [f for f in recent_files() if f != p]
    files = files[:MAX_RECENT]
    settings().setValue("recentFiles", files)
    return files


def clear_recent_files() -> None:
    settings().setValue("recentFiles", [])


def examples() -> list[Path]:
    return sorted(EXAMPLES_DIR.glob("*.ncg.json"))


# ---- recovery --------------------------------------------------------------------------
def recovery_dir() -> Path:
    d = home() / "recovery"
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class Recovery:
    """An autosaved copy of a document that was never saved or closed cleanly."""
    graph_file: Path
    meta_file: Path
    original: str | None  # the file the document came from, if any
    saved_at: float
    pid: int

    @property
    def label(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        return f"{Path(self.original).name if self.original else 'an unsaved graph'} ({when})"

    def read(self) -> str:
        return self.graph_file.read_text(encoding="utf-8")

    def discard(self) -> None:
        for f in (self.graph_file, self.meta_file):
            f.unlink(missing_ok=True)


class Autosaver:
    """Writes a window's document to its own recovery file; removes it when the work is
    saved or closed on purpose. One per window, named by process and window number, so a
    crash leaves a file that the next start can offer back."""

    _count = 0

    def __init__(self):
        Autosaver._count += 1
        stem = f"autosave-{os.getpid()}-{Autosaver._count}"
        self.graph_file = recovery_dir() / f"{stem}.ncg.json"
        self.meta_file = recovery_dir() / f"{stem}.meta.json"

    def write(self, graph_json: str, original: Path | None) -> None:
        atomic_write(self.graph_file, graph_json.encode("utf-8"))
        meta = {"original": str(original) if original else None, "saved_at": time.time(),
                "pid": os.getpid()}
        atomic_write(self.meta_file, json.dumps(meta).encode("utf-8"))

    def clear(self) -> None:
        for f in (self.graph_file, self.meta_file):
            f.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def pending_recoveries(include_own_process: bool = False) -> list[Recovery]:
    """Recovery files left by editors that are no longer running (a crash), newest first."""
    out = []
    for meta_file in recovery_dir().glob("autosave-*.meta.json"):
        graph_file = meta_file.with_name(meta_file.name.replace(".meta.json", ".ncg.json"))
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            pid = int(meta.get("pid", 0))
            saved_at = float(meta.get("saved_at", 0.0))
            original = meta.get("original")
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        if not graph_file.exists():
            meta_file.unlink(missing_ok=True)
            continue
        if _alive(pid) and not (include_own_process and pid == os.getpid()):
            continue
        out.append(Recovery(graph_file, meta_file, original if isinstance(original, str)
                            else None, saved_at, pid))
    return sorted(out, key=lambda r: -r.saved_at)
