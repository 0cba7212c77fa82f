"""The run store: a folder of recorded runs, one sub-folder each (docs/format.md section 9).

``RunStore(root)`` lists, finds, renames, deletes and moves the runs of one folder; a
``Run`` is one of them as read from its ``run.json``, with ``graph()``, ``metrics()`` and
``weights()`` reading its other files on demand. ``core.runs.record.RunRecorder`` writes
them. A run folder that cannot be read is left out of ``list()``, never an exception.

Runs being written by a recorder of this process are *live* (``Run.live``); a run whose
``run.json`` still says "running" without a live recorder behind it was cut short (the
process was killed) and is listed as "interrupted".
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import NeuroCanvasError, RunError
from core.files import atomic_write

if TYPE_CHECKING:
    from core.graph import Graph
    from core.runs.record import RunRecorder
    from core.training.events import EpochEvent, StepEvent

RUN_FORMAT = "neurocanvas.run"
RUN_VERSION = 1
RUN_FILE = "run.json"
GRAPH_FILE = "graph.ncg.json"
METRICS_FILE = "metrics.jsonl"
WEIGHTS_FILE = "weights.npz"
STATUSES = ("running", "finished", "stopped", "failed")
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")

# the recorders of this process, by the resolved path of the folder each is writing
_live: dict[str, RunRecorder] = {}
_live_lock = threading.Lock()


def _key(path: Path) -> str:
    return os.path.realpath(path)


def register_live(recorder: RunRecorder) -> None:
    with _live_lock:
        _live[_key(recorder.path)] = recorder


def unregister_live(recorder: RunRecorder) -> None:
    with _live_lock:
        for k, r in list(_live.items()):
            if r is recorder:
                del _live[k]


def _live_recorder(path: Path) -> RunRecorder | None:
    with _live_lock:
        return _live.get(_key(path))


def runs_dir_for(graph_path: str | os.PathLike) -> Path:
    """Where a graph file's runs are kept: ``a/b/mlp.ncg.json`` -> ``a/b/mlp.runs``
    (``.ncg.json`` or ``.json`` taken off the file name, ``.runs`` put on)."""
    p = Path(graph_path)
    name = p.name
    for suffix in (".ncg.json", ".json"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[:-len(suffix)]
            break
    return p.with_name(name + ".runs")


def unsaved_runs_dir(data_dir: str | os.PathLike, key: str) -> Path:
    """Where the runs of a graph not saved yet are kept: ``data_dir/unsaved-runs/key``.
    ``key`` must be a plain folder name (RunError otherwise)."""
    if not isinstance(key, str) or not key or key in (".", "..") or "/" in key \
            or "\\" in key or "\x00" in key:
        raise RunError(f"not a usable folder name for unsaved runs: {key!r}")
    return Path(data_dir) / "unsaved-runs" / key


@dataclass
class Run:
    """One recorded run, as its ``run.json`` reads (docs/format.md section 9)."""
    path: Path  # the run folder
    id: str
    label: str
    created: str  # ISO 8601 UTC
    seed: int
    settings: dict  # the effective training section
    overrides: dict
    sweep: dict | None
    summary: dict  # "status" reads "interrupted" for a run cut short
    live: bool = field(default=False, compare=False)  # a recorder of this process writes it

    @property
    def status(self) -> str:
        return self.summary.get("status", "interrupted")

    def graph(self) -> Graph:
        """The graph as trained, with the effective training section."""
        from core.fileformat import load_graph
        return load_graph(self.path / GRAPH_FILE)

    def metrics(self) -> tuple[list[StepEvent], list[EpochEvent]]:
        """The steps and epochs of ``metrics.jsonl``; a torn last line (the writer was cut
        short in the middle of it) is left out. No file: no events."""
        return read_metrics(self.path / METRICS_FILE)

    def weights(self) -> dict[str, np.ndarray] | None:
        """The final weights, or None for a run that has none (one that failed at build)."""
        from core.weights import load_weights
        p = self.path / WEIGHTS_FILE
        if not p.is_file():
            return None
        return load_weights(p)

    def to_json(self) -> dict:
        """The ``run.json`` object (a live or cut-short run's status as it was written)."""
        summary = dict(self.summary)
        if summary.get("status") == "interrupted":
            summary["status"] = "running"
        return {"format": RUN_FORMAT, "version": RUN_VERSION, "id": self.id,
                "label": self.label, "created": self.created, "seed": self.seed,
                "settings": self.settings, "overrides": self.overrides, "sweep": self.sweep,
                "summary": summary}


def read_metrics(path: Path) -> tuple[list[StepEvent], list[EpochEvent]]:
    from core.training.events import EpochEvent, StepEvent
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], []
    except OSError as e:
        raise RunError(f"cannot read: {e.strerror or e}", file=str(path)) from None
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with a whole line
    steps: list[StepEvent] = []
    epochs: list[EpochEvent] = []
    for no, line in enumerate([*lines, torn], 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            kind = d.get("event") if isinstance(d, dict) else None
            if kind == "step":
                steps.append(StepEvent.from_json(d))
            elif kind == "epoch":
                epochs.append(EpochEvent.from_json(d))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            if no == len(lines) + 1:  # the torn last line of a writer cut short
                break
            raise RunError(f"line {no} is not a metrics object", file=str(path)) from None
    return steps, epochs


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError("no such file", file=str(path)) from None
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read: {getattr(e, 'strerror', None) or e}",
                       file=str(path)) from None
    if not isinstance(d, dict) or d.get("format") != RUN_FORMAT:
        raise RunError("not a NeuroCanvas run file", file=str(path))
    version = d.get("version")
    if type(version) is not int or version < 1:
        raise RunError(f"expected \"version\" to be a positive integer, found {version!r}",
                       file=str(path))
    if version > RUN_VERSION:
        raise RunError(f"written by a newer NeuroCanvas (run version {version}); update "
                       "NeuroCanvas to read it", file=str(path))
    return d


def read_run(folder: Path) -> Run:
    """The run of ``folder``; RunError naming its run.json when that cannot be read. The
    folder's name is the run's id."""
    p = folder / RUN_FILE
    d = _read_json(p)

    def get(key: str, kind, default=None):
        v = d.get(key, default)
        if v is None and default is None and kind is not str and kind is not int:
            return None
        if not isinstance(v, kind) or isinstance(v, bool):
            raise RunError(f"expected \"{key}\" to be {kind.__name__}, found {v!r}",
                           file=str(p))
        return v

    summary = dict(get("summary", dict, {}))
    live = _live_recorder(folder) is not None
    status = summary.get("status")
    if status not in STATUSES:
        raise RunError(f"unknown status {status!r}", file=str(p))
    if status == "running" and not live:
        summary["status"] = "interrupted"
    return Run(path=folder, id=folder.name, label=get("label", str, ""),
               created=get("created", str, ""), seed=get("seed", int, 0),
               settings=get("settings", dict, {}), overrides=get("overrides", dict, {}),
               sweep=get("sweep", dict), summary=summary, live=live)


def write_run_json(path: Path, data: dict) -> None:
    """``run.json`` atomically; RunError naming it when it cannot be written."""
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as e:
        raise RunError(f"cannot write: {e.strerror or e}", file=str(path)) from None


class RunStore:
    """The runs of one folder (it need not exist yet: it is made by the first run)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def _folders(self) -> list[Path]:
        try:
            entries = list(os.scandir(self.root))
        except OSError:  # no folder yet, or one that cannot be read: no runs
            return []
        out = []
        for e in entries:
            try:
                if e.is_dir() and not e.name.startswith(".") \
                        and os.path.isfile(os.path.join(e.path, RUN_FILE)):
                    out.append(Path(e.path))
            except OSError:
                continue
        return out

    def list(self) -> list[Run]:
        """Every readable run, oldest first (by creation time, then id). A folder that is
        not a readable run is left out."""
        runs = []
        for folder in self._folders():
            try:
                runs.append(read_run(folder))
            except (NeuroCanvasError, OSError, ValueError, TypeError, KeyError):
                continue
        runs.sort(key=lambda r: (r.created, r.id))
        return runs

    def _folder(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not run_id or run_id in (".", "..") \
                or "/" in run_id or "\\" in run_id or "\x00" in run_id:
            raise RunError(f"not a run id: {run_id!r}", file=str(self.root))
        folder = self.root / run_id
        if not (folder / RUN_FILE).is_file():
            raise RunError(f"no run '{run_id}'", file=str(self.root))
        return folder

    def get(self, run_id: str) -> Run:
        """The run ``run_id``; RunError when there is none or it cannot be read."""
        return read_run(self._folder(run_id))

    def rename(self, run_id: str, label: str) -> None:
        """Give a run another label (one line; an empty one gives it back its automatic
        label), rewriting its run.json atomically."""
        from core.runs.diff import run_label
        if not isinstance(label, str):
            raise RunError(f"expected a label (text), found {label!r}", param="label")
        label = " ".join(label.split())  # one line, no control characters
        folder = self._folder(run_id)
        rec = _live_recorder(folder)
        if rec is not None:
            if not label:
                label = run_label(rec.settings, values=(rec.sweep or {}).get("values"))
            rec.set_label(label)  # and it writes run.json, under its own lock
            return
        p = folder / RUN_FILE
        d = _read_json(p)
        if not label:
            sweep = d.get("sweep") if isinstance(d.get("sweep"), dict) else {}
            settings = d.get("settings") if isinstance(d.get("settings"), dict) else {}
            label = run_label(settings, values=sweep.get("values"))
        d["label"] = label
        write_run_json(p, d)

    def delete(self, run_id: str) -> None:
        """Remove a run's folder. A run still being recorded here is refused."""
        folder = self._folder(run_id)
        if _live_recorder(folder) is not None:
            raise RunError(f"run '{run_id}' is still being recorded; stop it first",
                           file=str(self.root))
        try:
            shutil.rmtree(folder)
        except OSError as e:
            raise RunError(f"cannot delete: {e.strerror or e}", file=str(folder)) from None

    def move_to(self, new_root: str | os.PathLike) -> RunStore:
        """Move every run into ``new_root`` (made if need be; runs already there stay),
        and return the store there. A run whose id is taken there gets a new id. A run
        being recorded moves too: its recorder goes on writing in its new place. What else
        the folder holds (the sweeps' records) is merged in beside them, where its names
        are free. This folder is removed when it is left empty."""
        target = RunStore(new_root)
        if _key(target.root) == _key(self.root):
            return target
        folders = self._folders()
        try:
            others = [Path(e.path) for e in os.scandir(self.root)
                      if not e.name.startswith(".") and Path(e.path) not in folders]
        except OSError:
            others = []
        if not folders and not others:
            return target
        try:
            target.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create the run folder: {e.strerror or e}",
                           file=str(target.root)) from None
        for folder in sorted(folders):
            dest = target.root / folder.name
            new_id = None
            while dest.exists():
                new_id = new_run_id(folder.name[:15] if RUN_ID.fullmatch(folder.name) else None)
                dest = target.root / new_id
            rec = _live_recorder(folder)
            try:
                if rec is not None:
                    rec.relocate(dest)
                else:
                    shutil.move(str(folder), str(dest))
            except OSError as e:
                raise RunError(f"cannot move the run to {dest}: {e.strerror or e}",
                               file=str(folder)) from None
            if new_id is not None:
                self._set_id(dest, new_id, rec)
        for other in others:
            try:
                _merge_move(other, target.root / other.name)
            except OSError as e:
                raise RunError(f"cannot move to {target.root}: {e.strerror or e}",
                               file=str(other)) from None
        try:
            self.root.rmdir()
        except OSError:
            pass  # other files, or runs that could not move: left where they are
        return target

    @staticmethod
    def _set_id(folder: Path, new_id: str, rec: RunRecorder | None) -> None:
        if rec is not None:
            rec.set_id(new_id)
            return
        p = folder / RUN_FILE
        try:
            d = _read_json(p)
        except RunError:
            return  # unreadable: moved as it is
        d["id"] = new_id
        write_run_json(p, d)


_last_id: list[str] = [""]  # the latest id made here
_id_lock = threading.Lock()


def _merge_move(src: Path, dst: Path) -> None:
    """``src`` moved to ``dst``; into it, entry by entry, when both are folders; left where
    it is when ``dst`` is a file already."""
    if not dst.exists():
        shutil.move(str(src), str(dst))
    elif src.is_dir() and dst.is_dir() and not src.is_symlink():
        for child in list(src.iterdir()):
            _merge_move(child, dst / child.name)
        try:
            src.rmdir()
        except OSError:
            pass


def new_run_id(stamp: str | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxx``: the UTC time now (or ``stamp``, its first 15 characters),
    and 4 hex digits, random but growing within one second in this process, so that the ids
    of one process sort by creation even within a second (a sweep makes several)."""
    import secrets
    import time
    with _id_lock:
        while True:
            now = stamp or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            last_stamp, _, last_hex = _last_id[0].rpartition("-")
            if last_stamp != now:
                n = secrets.randbelow(0x8000)
            else:
                n = int(last_hex, 16) + 1 + secrets.randbelow(16)
            if n <= 0xFFFF:
                break
            if stamp is not None:  # no room left after it: any other will do
                n = secrets.randbelow(0x10000)
                break
            time.sleep(0.05)  # this second is full: the next one
        _last_id[0] = f"{now}-{n:04x}"
        return _last_id[0]


def _jsonable(value: Any) -> Any:
    """Non-finite floats as None (run.json is strict JSON)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
