"""Where the editor keeps its own files: settings (recent files, theme), autosaved recovery
copies of unsaved work, and the example graphs.

``NEUROCANVAS_HOME`` moves all of it (tests point it at a temporary folder).
"""
from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

from core.files import atomic_write

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "resources" / "examples"
MAX_RECENT = 10
APP_DIR_NAME = "NeuroCanvas"


def _data_base() -> Path | None:
    """The platform's folder for applications' data (~/.local/share on Linux)."""
    base = QStandardPaths.writableLocation(QStandardPaths.GenericDataLocation)
    return Path(base) if base else None


def home() -> Path:
    """The editor's own folder: ``$NEUROCANVAS_HOME``, else <data folder>/NeuroCanvas.

    Built from the generic data folder and one name rather than from AppDataLocation, which
    appends organization *and* application name (NeuroCanvas/NeuroCanvas) and, before the
    QApplication names are set, the name of the Python executable.
    """
    override = os.environ.get("NEUROCANVAS_HOME")
    if override:
        return Path(override)
    base = _data_base()
    if base is None:
        return Path.home() / ".neurocanvas"
    d = base / APP_DIR_NAME
    _move_doubled_folder(d)
    return d


def _move_doubled_folder(d: Path) -> None:
    """Earlier versions used <data>/NeuroCanvas/NeuroCanvas: move its settings and recovery
    files up one level, so an upgrade keeps them (and work left by a crash)."""
    old = d / APP_DIR_NAME
    if not old.is_dir():
        return
    for entry in old.iterdir():
        target = d / entry.name
        if not target.exists():
            try:
                entry.rename(target)
            except OSError:
                pass  # left where it was; the editor starts with fresh settings
    try:
        old.rmdir()  # only when everything moved
    except OSError:
        pass


def settings() -> QSettings:
    path = home() / "settings.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.IniFormat)


TENSORBOARD_KEY = "runs/tensorboard"


def tensorboard_runs() -> bool:
    """Train > Write TensorBoard Logs: every recorded run also writes TensorBoard event files
    into its folder (only where the tensorboard package is installed)."""
    from core.tensorboard import available_library
    value = settings().value(TENSORBOARD_KEY, False)
    on = value is True or (isinstance(value, str) and value.lower() == "true")
    return on and available_library() is not None


def set_tensorboard_runs(on: bool) -> None:
    settings().setValue(TENSORBOARD_KEY, bool(on))


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


# words the Examples menu writes in capitals
_ACRONYMS = {"mlp", "cnn", "rnn", "lstm", "gru", "mse", "l1", "l2", "xor"}


def _readable(name: str) -> str:
    """'mlp-spirals-l2-dropout' -> 'MLP spirals L2 dropout'."""
    words = [w for w in name.replace("_", "-").split("-") if w]
    out = [w.upper() if w.lower() in _ACRONYMS else w.lower() for w in words]
    if out and out[0].islower():
        out[0] = out[0][:1].upper() + out[0][1:]
    return " ".join(out)


@dataclass
class Example:
    """A shipped example graph as the Examples menu shows it."""
    path: Path
    title: str  # the file's "title" if it has one, else its graph name made readable
    description: str  # the file's "description", or ""
    compare: str = ""  # the comparison the file is made for ("compare"), in words, or ""

    @property
    def tooltip(self) -> str:
        """The file name, the description and the comparison below it (rich text, so Qt
        wraps it)."""
        if not self.description and not self.compare:
            return self.path.name
        parts = [f"<b>{html.escape(self.path.name)}</b>"]
        parts += [html.escape(t) for t in (self.description, self.compare) if t]
        return "<p>" + "<br>".join(parts) + "</p>"


def _value_text(value) -> str:
    return "off" if value is None else value if isinstance(value, str) else json.dumps(value)


def compare_text(compare) -> str:
    """A lesson's ``"compare"`` object (docs/format.md section 2.2) in words: "Compare:
    optimizer.type = sgd, adam (300 steps). Finding: ..."; "" when there is none or it is
    not an object. Parts of the wrong kind are left out, never an exception."""
    if not isinstance(compare, dict):
        return ""
    what = []
    sets = compare.get("set")
    if isinstance(sets, dict):
        what += [f"{k} = {', '.join(_value_text(v) for v in vals)}"
                 for k, vals in sets.items() if isinstance(vals, list)]
    opened = compare.get("open")
    if isinstance(opened, list) and opened:
        what.append("with " + ", ".join(str(f) for f in opened))
    text = "Compare: " + "; ".join(what) if what else ""
    steps = compare.get("steps")
    if text and isinstance(steps, int) and not isinstance(steps, bool):
        text += f" ({steps} steps)"
    finding = compare.get("finding")
    if isinstance(finding, str) and finding.strip():
        text += (". " if text else "") + f"Finding: {finding.strip()}"
    return text


def example_info(path: Path) -> Example:
    """Title and description of an example; a file that cannot be read gets its file name
    (opening it then says what is wrong)."""
    stem = path.name.removesuffix(".ncg.json").removesuffix(".json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        name = data.get("name")
        title = _readable(name if isinstance(name, str) and name != "untitled" else stem)
    description = data.get("description")
    return Example(path, title.strip() or stem,
                   description.strip() if isinstance(description, str) else "",
                   compare_text(data.get("compare")))


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
