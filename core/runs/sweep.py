"""Sweeps: one graph trained with several settings, every variant from the same start.

A sweep is the product of value lists, one per key (``main.py sweep --set KEY=V1,V2``,
docs/runs.md "Sweeps"): ``parse_set`` reads one list, ``variants`` makes the product and
``apply_variant`` makes the graph of one variant. A key is a training setting
(``optimizer.type``, ``optimizer.lr``, ``regularization.l2``, ``clip.norm``, ``batch_size``,
``steps``, ``seed``, ``dataset.noise``, ...) or a node parameter ``<node id>.<param>``.

*Same start*: every variant starts from the initial weights of the base graph, built with
its seed (``initial_weights``), for every array whose key and shape it has
(``core.weights.merge_state``; the rest starts fresh), and shuffles its batches with the base seed.
A variant that sets ``seed`` starts from its own seed's weights and batch order instead.

``run_sweep`` validates every variant first, then trains the ones that can train, ``jobs``
at a time in processes of their own, each recorded as a run of the store
(``core.runs.record.RunRecorder``). A variant that cannot train or fails is recorded as
failed with its reason; the others go on. No Qt here.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import catalogue, memory
from core.errors import NeuroCanvasError, ParamError, RunError
from core.fileformat import dumps, find_bad_value, loads
from core.files import atomic_write
from core.graph import Graph
from core.network import Network
from core.optim.hyperparams import OPTIMIZER_PARAMS
from core.readiness import analyze_for_training, blocking, first_culprit
from core.remote import blas_environ
from core.runs.diff import run_label
from core.runs.record import RunRecorder
from core.runs.store import Run, RunStore
from core.training import TrainConfig, Trainer, parse_training
from core.training.config import TRAINING_KEYS
from core.validate import analyze_with_dataset
from core.weights import load_weights, merge_state, save_weights

SWEEP_FORMAT = "neurocanvas.sweep"
SWEEP_VERSION = 1
SWEEPS_FOLDER = "sweeps"  # <store>/sweeps/<sweep id>/{sweep.json, initial.npz}
#: what ``--set optimizer.type=all`` stands for
ALL_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
#: the optimizer of a training section that names none (as ``parse_training`` reads it)
DEFAULT_OPTIMIZER = {"type": "sgd", "lr": 0.01}
_GROUPS = {
    "optimizer": {"type"} | {k for spec in OPTIMIZER_PARAMS.values() for k in spec},
    "regularization": {"l1", "l2"},
    "clip": {"norm", "value"},
    "dataset": None,  # its options depend on the dataset: checked against it
}
_KINDS = "a training setting (such as optimizer.lr or batch_size) or <node id>.<param>"


@dataclass
class SweepResult:
    """One variant of a sweep: its values, its run (None when none was recorded: it was
    never started), ``status`` finished / failed / stopped and the reason it failed."""
    values: dict
    run: Run | None
    status: str
    error: str | None
    label: str = ""
    error_node: str | None = None
    fresh: int = 0  # arrays that did not come from the shared start (new key or shape)
    own_start: bool = False  # the variant sets the seed: its own initial weights

    @property
    def summary(self) -> dict:
        return (self.run.summary if self.run is not None else None) or {}

    def figure(self, name: str) -> float | None:
        """``summary.final[name]`` (loss, val_loss, val_accuracy...), None when absent."""
        v = (self.summary.get("final") or {}).get(name)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ---- keys and values -------------------------------------------------------------------
def _split_values(text: str, whole: str) -> list[str]:
    """``text`` cut at the commas outside brackets, braces and double quotes."""
    parts, depth, start, quoted, escaped = [], [], 0, False, False
    pairs = {"[": "]", "{": "}"}
    for i, c in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in pairs:
            depth.append(pairs[c])
        elif c in "]}":
            if not depth or depth.pop() != c:
                raise ParamError(f"unbalanced '{c}' in {whole!r}", param="--set")
        elif c == "," and not depth:
            parts.append(text[start:i])
            start = i + 1
    if quoted or depth:
        what = '"' if quoted else ("[" if depth[-1] == "]" else "{")
        raise ParamError(f"unclosed '{what}' in {whole!r}", param="--set")
    parts.append(text[start:])
    return parts


def _reject_constant(name: str):
    raise ValueError(name)


def _read_value(text: str) -> Any:
    """JSON when ``text`` is JSON (0.1, true, null, "x", [2, 3]), else the plain string.
    NaN, Infinity and numbers too large to be finite are read as strings: a setting refuses
    them by name, and sweep.json stays valid JSON."""
    try:
        v = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text
    return text if find_bad_value(v) else v


def _identity(v: Any) -> str:
    """Equal for values a setting cannot tell apart (1 and 1.0), not for true and 1."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"n:{float(v)!r}"
    return "j:" + json.dumps(v, sort_keys=True)


def parse_set(text: str) -> tuple[str, list]:
    """``"optimizer.lr=0.1,0.01"`` -> ``("optimizer.lr", [0.1, 0.01])``.

    Values are read as JSON (``0.1``, ``true``, ``null``, ``"x"``, ``[2,3]``: commas inside
    brackets or quotes do not separate values), else as plain strings (``adam``). A value
    given twice counts once. ``optimizer.type=all`` stands for the six optimizers of
    ``ALL_OPTIMIZERS``. ``ParamError`` naming ``--set`` for text that is not ``KEY=V1,...``.
    """
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key or any(c.isspace() for c in key):
        raise ParamError(f"expected KEY=V1,V2,... (such as optimizer.lr=0.1,0.01), found "
                         f"{text!r}", param="--set")
    values: list = []
    seen: set[str] = set()
    for piece in _split_values(rest, text):
        piece = piece.strip()
        if not piece:
            raise ParamError(f"an empty value in {text!r} (values are separated by commas)",
                             param="--set")
        new = list(ALL_OPTIMIZERS) if key == "optimizer.type" and piece == "all" \
            else [_read_value(piece)]
        for v in new:
            if _identity(v) not in seen:
                seen.add(_identity(v))
                values.append(v)
    return key, values


def variants(sets: list[tuple[str, list]]) -> list[dict[str, object]]:
    """Every combination of the values, one dict per variant, keys in the order of ``sets``
    and the last key changing fastest; ``ParamError`` for a key given twice."""
    keys = [k for k, _ in sets]
    for k in keys:
        if keys.count(k) > 1:
            raise ParamError("set twice: give all its values in one --set", param=k)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(vals for _, vals in sets))]


def _resolve(graph: Graph, key: str) -> tuple[str, str, str | None]:
    """``("node", node id, param)`` or ``("training", group or key, sub-key or None)``;
    ``ParamError`` naming the key when it is neither. A node's id comes before a group of
    the same name."""
    head, dot, sub = key.partition(".")
    if dot and head in graph.nodes:
        node = graph.nodes[head]
        cls = catalogue.get(node.type)
        specs = cls.all_params_spec() if cls is not None else {}
        if sub not in specs:
            known = ", ".join(specs) or "none"
            raise ParamError(f"unknown sweep key: node '{head}' ({node.type}) has no parameter "
                             f"'{sub}' (it takes: {known})", param=key)
        return "node", head, sub
    if not dot:
        if key in TRAINING_KEYS:
            return "training", key, None
    elif head in _GROUPS:
        allowed = _GROUPS[head]
        if allowed is None or sub in allowed:
            return "training", head, sub
        raise ParamError(f"unknown sweep key: {head} takes {', '.join(sorted(allowed))}",
                         param=key)
    nodes = f"; no node has the id '{head}'" if dot else ""
    raise ParamError(f"unknown sweep key: expected {_KINDS}{nodes}", param=key)


def _order(key: str) -> int:
    """Whole settings first, then optimizer.type (it drops the old type's settings), then
    the rest, so that ``optimizer.type=adam`` with ``optimizer.eps=...`` keeps the eps."""
    return 0 if "." not in key else (1 if key == "optimizer.type" else 2)


def apply_variant(graph: Graph, values: dict) -> Graph:
    """A copy of ``graph`` with the variant's values set; the value null removes a setting
    or parameter (its default applies). Values are not checked here (``analyze`` and
    ``parse_training`` do that), keys are: ``ParamError`` naming one that is neither a
    training setting nor ``<node id>.<param>`` of a parameter its node's type takes.

    ``optimizer.type`` keeps the learning rate of the graph and drops the settings of the
    old type (another type's momentum or betas); ``clip.norm`` replaces a ``clip.value``
    and the other way round (only one of them can be set)."""
    g = graph.copy()
    t = g.training
    for key in sorted(values, key=_order):
        value = values[key]
        kind, head, sub = _resolve(g, key)
        if kind == "node":
            g.set_param(head, sub, value)
        elif sub is None:
            _put(t, head, value)
        elif head == "optimizer" and sub == "type":
            old = t.get("optimizer")
            old = old if isinstance(old, dict) else dict(DEFAULT_OPTIMIZER)
            if value is None or value != old.get("type"):
                new = {} if value is None else {"type": value}
                if "lr" in old:
                    new["lr"] = old["lr"]
                t["optimizer"] = new
        else:
            group = t.get(head)
            group = dict(group) if isinstance(group, dict) else \
                (dict(DEFAULT_OPTIMIZER) if head == "optimizer" else {})
            if head == "clip" and value is not None:
                group = {}
            _put(group, sub, value)
            t[head] = group
    return g


def _put(d: dict, key: str, value: Any) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = json.loads(json.dumps(value))  # a copy of its own


def check_keys(graph: Graph, keys) -> None:
    """``ParamError`` naming the first key that is not one a sweep can set."""
    for k in keys:
        _resolve(graph, k)


# ---- the shared start ------------------------------------------------------------------
def initial_weights(graph: Graph, base_dir, seed) -> dict:
    """The initial weights (and buffers) of the base graph built with ``seed``: what every
    variant of a sweep starts from. Raises ``InvalidGraphError`` for an invalid graph."""
    a = analyze_with_dataset(graph, base_dir, only_if_auto=True)
    a.raise_if_invalid()
    return Network(a, seed=int(seed)).state_dict()


# ---- the sweep -------------------------------------------------------------------------
def _utc_now() -> tuple[str, str]:
    t = time.gmtime()
    return time.strftime("%Y%m%d-%H%M%S", t), time.strftime("%Y-%m-%dT%H:%M:%SZ", t)


@dataclass
class _Variant:
    index: int
    values: dict
    graph: Graph
    label: str
    overrides: dict
    config: TrainConfig | None = None
    bytes: int = 0  # the memory estimate
    own_start: bool = False
    result: SweepResult | None = None


def _check_variant(v: _Variant, base_dir, limit: int) -> tuple[str, str | None] | None:
    """Why the variant cannot train (one line, and the node), or None when it can; sets its
    config and memory estimate. A variant that alone needs more than the budget cannot."""
    a = analyze_for_training(v.graph, base_dir)
    stop = blocking(a)
    if stop:
        more = f" (and {len(stop) - 1} more)" if len(stop) > 1 else ""
        return _one_line(f"{stop[0]}{more}"), first_culprit(a)
    v.config = parse_training(v.graph.training)
    est = memory.training_estimate(a, v.config, base_dir)
    v.bytes = est.total
    over = memory.over_budget(est, limit)
    return None if over is None else (_one_line(str(over)), over.node)


@dataclass
class _Sweep:
    id: str
    folder: Path
    doc: dict = field(default_factory=dict)

    def write(self) -> None:
        p = self.folder / "sweep.json"
        try:
            atomic_write(p, (json.dumps(self.doc, indent=2) + "\n").encode("utf-8"))
        except OSError as e:
            raise RunError(f"cannot write: {e.strerror or e}", file=str(p)) from None


def run_sweep(graph: Graph, sets: list[tuple[str, list]], *, base_dir, store: RunStore,
              steps: int | None = None, epochs: int | None = None, jobs: int | None = None,
              on_update: Callable[[SweepResult], None] | None = None,
              max_memory: int | None = None, graph_path: str | None = None,
              stop: threading.Event | None = None,
              on_note: Callable[[str], None] | None = None,
              on_start: Callable[[str, int], None] | None = None) -> list[SweepResult]:
    """Train every variant of ``sets`` from the same start; one result per variant, in the
    order of ``variants(sets)``.

    Before anything trains: every key is checked (``ParamError`` naming an unknown one), the
    base graph (with ``steps`` / ``epochs`` applied) must be valid and its settings parse
    (its errors are raised), and each variant is validated: one that cannot train, or needs
    more than the memory budget alone, is recorded as failed with the reason. The shared
    start is saved as ``<store>/sweeps/<sweep id>/initial.npz`` beside ``sweep.json``.

    ``jobs`` variants train at a time (default ``os.cpu_count()``), each in a process of its
    own (one variant at a time runs in this process), fewer when ``jobs`` of the largest
    would not fit the memory budget together (``on_note`` says so); ``on_start(sweep id,
    jobs)`` is called once they are known, before any trains. ``on_update(result)``
    is called, on this thread, as each variant finishes or fails. Setting ``stop`` stops
    the running variants after their current step (recorded as stopped) and starts no more.
    """
    keys = [k for k, _ in sets]
    variant_values = variants(sets)  # a key given twice
    check_keys(graph, keys)
    base = graph.copy()
    cli: dict[str, Any] = {}
    if steps is not None:
        cli["steps"] = steps
    if epochs is not None:
        cli["epochs"] = epochs
    base.training.update(cli)
    base_cfg = parse_training(base.training)
    for values in variant_values:  # unknown dataset options are unknown keys too
        _check_dataset_keys(base, values, base_dir)
    init = initial_weights(base, base_dir, base_cfg.seed)
    limit = memory.budget(max_memory)
    stop = stop if stop is not None else threading.Event()
    notify = on_update or (lambda r: None)

    sweep_id, created = _new_sweep_folder(store)
    sweep = _Sweep(sweep_id, Path(store.root) / SWEEPS_FOLDER / sweep_id)
    try:
        save_weights(sweep.folder / "initial.npz", init)
    except OSError as e:
        raise RunError(f"cannot write: {e.strerror or e}",
                       file=str(sweep.folder / "initial.npz")) from None
    todo: list[_Variant] = []
    for i, values in enumerate(variant_values):
        vg = apply_variant(base, values)
        overrides = dict(cli)
        overrides.update({k: v for k, v in values.items() if _resolve(base, k)[0] ==
                          "training"})
        todo.append(_Variant(i, values, vg, run_label(vg.training, values=values), overrides,
                             own_start="seed" in values))
    sweep.doc = {
        "format": SWEEP_FORMAT, "version": SWEEP_VERSION, "id": sweep_id, "created": created,
        "graph": None if graph_path is None else str(graph_path),
        "base_dir": str(base_dir), "seed": base_cfg.seed,
        "sets": [{"key": k, "values": v} for k, v in sets],
        "steps": steps, "epochs": epochs, "jobs": None,
        "initial_weights": "initial.npz",
        "variants": [_variant_doc(v) for v in todo]}
    sweep.write()

    def done(v: _Variant, result: SweepResult) -> None:
        v.result = result
        sweep.doc["variants"][v.index] = _variant_doc(v)
        with contextlib.suppress(RunError):  # the runs hold the results; sweep.json a list
            sweep.write()
        notify(result)

    runnable: list[_Variant] = []
    failed: list[tuple[_Variant, SweepResult]] = []
    for v in todo:  # every variant checked before any trains
        why = _check_variant(v, base_dir, limit)
        if why is not None:
            failed.append((v, _record_failure(store, v, base_cfg, sweep_id, *why)))
        else:
            runnable.append(v)

    jobs = max(1, int(jobs or os.cpu_count() or 1))
    fit = _jobs_that_fit(runnable, min(jobs, max(len(runnable), 1)), limit)
    if fit < min(jobs, len(runnable)) and on_note is not None:
        largest = max(runnable, key=lambda v: v.bytes)
        on_note(f"running {fit} variant{'s' if fit != 1 else ''} at a time instead of "
                f"{min(jobs, len(runnable))}: more would need over the memory budget of "
                f"{memory.fmt_bytes(limit)} together (largest: '{largest.label}', about "
                f"{memory.fmt_bytes(largest.bytes)})")
    sweep.doc["jobs"] = fit
    sweep.write()
    if on_start is not None:
        on_start(sweep_id, fit)
    for v, result in failed:
        done(v, result)
    init_path = str(sweep.folder / "initial.npz")
    jobs_of = {v.index: _job(v, store, base_dir, None if v.own_start else init_path,
                             sweep_id, limit) for v in runnable}
    if fit <= 1:
        for v in runnable:
            done(v, _result(v, _train_variant(jobs_of[v.index], stop)))
    else:
        _run_pool(runnable, jobs_of, fit, stop, lambda v, out: done(v, _result(v, out)))
    return [v.result for v in todo]


def _check_dataset_keys(base: Graph, values: dict, base_dir) -> None:
    """``ParamError`` naming a ``dataset.<key>`` the variant's dataset does not take (an
    unknown key, refused before anything runs, rather than a failed variant)."""
    ds_keys = [k for k in values if k.startswith("dataset.") and k.split(".", 1)[0]
               not in base.nodes]
    if not ds_keys:
        return
    from core.datasets import peek_fields

    ds = apply_variant(base, values).training.get("dataset")
    try:
        peek_fields(ds, base_dir)
    except ParamError as e:
        if e.param in ds_keys and e.message.startswith("unknown option"):
            raise ParamError(f"unknown sweep key: {e.message}", param=e.param) from None
    except NeuroCanvasError:
        pass  # a file that cannot be read: the variant fails with it


def _new_sweep_folder(store: RunStore) -> tuple[str, str]:
    root = Path(store.root) / SWEEPS_FOLDER
    while True:
        stamp, created = _utc_now()
        sweep_id = f"{stamp}-{secrets.token_hex(2)}"
        try:
            (root / sweep_id).mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(f"cannot create the sweep folder: {e.strerror or e}",
                           file=str(root / sweep_id)) from None
        return sweep_id, created


def _variant_doc(v: _Variant) -> dict:
    r = v.result
    return {"values": v.values, "label": v.label,
            "run": r.run.id if r is not None and r.run is not None else None,
            "status": r.status if r is not None else "pending",
            "error": r.error if r is not None else None,
            "fresh": r.fresh if r is not None else None,
            "own_start": v.own_start}


def _jobs_that_fit(runnable: list[_Variant], jobs: int, limit: int) -> int:
    """The most variants (up to ``jobs``) whose largest ones fit the budget together."""
    sizes = sorted((v.bytes for v in runnable), reverse=True)
    while jobs > 1 and sum(sizes[:jobs]) > limit:
        jobs -= 1
    return jobs


def _record_failure(store: RunStore, v: _Variant, base_cfg: TrainConfig, sweep_id: str,
                    error: str, node: str | None) -> SweepResult:
    """A variant that cannot train, recorded as a failed run of 0 steps."""
    cfg = v.config or base_cfg  # settings that do not parse: the run.json shows the graph's
    try:
        rec = RunRecorder(store, v.graph, cfg, overrides=v.overrides, label=v.label,
                          sweep={"id": sweep_id, "values": v.values})
        run = rec.finish("failed", steps=0, error=error, error_node=node)
    except NeuroCanvasError as e:
        return SweepResult(v.values, None, "failed", f"{error} (not recorded: {e})", v.label,
                           node, 0, v.own_start)
    return SweepResult(v.values, run, "failed", error, v.label, node, 0, v.own_start)


def _job(v: _Variant, store: RunStore, base_dir, init: str | None, sweep_id: str,
         limit: int) -> dict:
    """What a training process needs for one variant: plain data."""
    return {"graph": dumps(v.graph), "base_dir": str(base_dir), "store": str(store.root),
            "init": init, "overrides": v.overrides, "label": v.label,
            "sweep": {"id": sweep_id, "values": v.values}, "max_memory": limit}


def _result(v: _Variant, out: dict) -> SweepResult:
    run = None
    if out.get("run") is not None:
        try:
            run = RunStore(out["store"]).get(out["run"])
        except NeuroCanvasError as e:
            out = {**out, "status": "failed", "error": f"the run cannot be read: {e}"}
    return SweepResult(v.values, run, out["status"], out.get("error"), v.label,
                       out.get("error_node"), out.get("fresh", 0), v.own_start)


# ---- training one variant (in this process or in a training process) -------------------
def _one_line(text: str) -> str:
    return " ".join(str(text).split()) if "\n" in str(text) else str(text)


def _train_variant(job: dict, stop) -> dict:
    """Train one variant and record it; a dict of plain data: ``run`` (id), ``store``,
    ``status``, ``error``, ``error_node``, ``fresh``. Never raises for the variant's own
    failure. ``stop``: an Event (of threading or multiprocessing) that stops it."""
    out: dict[str, Any] = {"run": None, "store": job["store"], "status": "stopped",
                           "error": None, "error_node": None, "fresh": 0}
    if stop.is_set():
        out["error"] = "not started: the sweep was stopped"
        return out
    graph = loads(job["graph"])
    cfg = parse_training(graph.training)  # checked before the sweep started
    base_dir = job["base_dir"]
    try:
        rec = RunRecorder(RunStore(job["store"]), graph, cfg, overrides=job["overrides"],
                          label=job["label"], sweep=job["sweep"])
    except NeuroCanvasError as e:
        out.update(status="failed", error=f"cannot record the run: {e}")
        return out
    out["run"] = rec.id
    holder: dict[str, Trainer] = {}
    finished = threading.Event()

    def watch() -> None:  # a stop asked for while the trainer is built still stops it
        while not finished.is_set():
            if stop.wait(0.1):
                t = holder.get("trainer")
                if t is not None:
                    t.stop()
                    return
    threading.Thread(target=watch, name="neurocanvas-sweep-stop", daemon=True).start()
    trainer = None
    status, error, node = "failed", None, None
    try:
        a = analyze_with_dataset(graph, base_dir, only_if_auto=True)
        trainer = Trainer(a, cfg, base_dir=base_dir, on_event=rec.on_event,
                          queue_events=False, max_memory=job["max_memory"])
        if job["init"] is not None:
            merged, out["fresh"] = merge_state(trainer.net.state_dict(),
                                                 load_weights(job["init"]))
            trainer.net.load_state_dict(merged)
        holder["trainer"] = trainer
        if stop.is_set():
            trainer.stop()
        done = trainer.run()
        status = {"finished": "finished", "stopped": "stopped"}.get(done.reason, "failed")
        if done.error is not None:
            error, node = _describe(done.error)
    except Exception as e:  # noqa: BLE001 - the variant fails, the sweep goes on
        error, node = _describe(e)
    finally:
        finished.set()
    try:
        rec.finish(status, steps=trainer.step if trainer is not None else 0,
                   weights=trainer.net.state_dict() if trainer is not None else None,
                   error=error, error_node=node,
                   device=trainer.device if trainer is not None else None)
    except NeuroCanvasError as e:
        status, error = "failed", f"{error + '; ' if error else ''}{e}"
    except Exception as e:  # noqa: BLE001 - as above
        status, error = "failed", f"{error + '; ' if error else ''}{type(e).__name__}: {e}"
    out.update(status=status, error=error, error_node=node)
    return out


def _describe(e: BaseException) -> tuple[str, str | None]:
    """An error as one line and its node: a NeuroCanvasError as it reads, anything else
    (a bug of ours) with its type."""
    if isinstance(e, NeuroCanvasError):
        return _one_line(str(e)), e.node
    return _one_line(f"{type(e).__name__}: {e}"), None


_STOP = None  # the stop event of a training process (_init_worker)


def _init_worker(stop) -> None:
    """A training process of the pool: Ctrl-C is the parent's to handle (it sets ``stop``,
    and each variant stops after its current step and is recorded as stopped)."""
    import signal

    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_variant(job: dict) -> dict:
    return _train_variant(job, _STOP)


def _run_pool(runnable: list[_Variant], jobs_of: dict[int, dict], jobs: int,
              stop: threading.Event, done: Callable[[_Variant, dict], None]) -> None:
    ctx = multiprocessing.get_context("spawn")
    mp_stop = ctx.Event()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                               initargs=(mp_stop,))
    futures: dict[Future, _Variant] = {}
    try:
        with blas_environ(jobs):  # the processes start as the jobs are submitted
            for v in runnable:
                futures[pool.submit(_pool_variant, jobs_of[v.index])] = v
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            if stop.is_set():
                mp_stop.set()
            for fut in finished:
                v = futures[fut]
                try:
                    out = fut.result()
                except BrokenProcessPool:
                    out = {"run": None, "store": jobs_of[v.index]["store"],
                           "status": "failed", "error": "its training process ended "
                           "unexpectedly (killed, or out of memory)"}
                except Exception as e:  # noqa: BLE001 - the others go on
                    out = {"run": None, "store": jobs_of[v.index]["store"],
                           "status": "failed", "error": _describe(e)[0]}
                done(v, out)
    finally:
        mp_stop.set()  # also on a second Ctrl-C: the processes stop after their step
        pool.shutdown(wait=True, cancel_futures=True)


def best_index(results: list[SweepResult]) -> int | None:
    """The finished variant with the lowest validation loss (the final training loss when
    there is no validation split); None when none finished with a figure."""
    best, key = None, None
    for i, r in enumerate(results):
        if r.status != "finished":
            continue
        v = r.figure("val_loss")
        v = r.figure("loss") if v is None else v
        if v is None or not math.isfinite(v):
            continue
        if key is None or v < key:
            best, key = i, v
    return best
