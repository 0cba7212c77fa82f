"""``main.py bench``: our training loop against a PyTorch training loop on identical work.

Each side of each workload runs in a process of its own (``benchmarks.side``), one process at
a time with a pause between them, so that neither side's threads share the cores with the
other's (OpenBLAS's workers spin for about 0.1 s after our GEMMs; timed in one process, torch
paid for them). Both processes start from the same weights (an npz the suite writes to a
temporary folder) and regenerate the same batch from the same seed; their first losses,
before any update, are reported side by side.

Per workload the table gives our **loop** (``main.py train`` itself: the median gap between
step events of its ``--log``), our bare **step** (``training_step``), **torch** (zero_grad,
forward, loss, backward, step, ``loss.item()``), each as the median ms per step with its
quartiles, the ratio loop / torch, and the **floor**: the step's matrix products alone, with
the shapes and layouts the step uses, timed with the same threads, and loop / floor.
``--scaling`` gives instead how the step time grows with the batch and the width for the MLP
and the LSTM. ``--json`` and ``--markdown`` write what was run.
"""
from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.side import RESULT_PREFIX, parse_result
from benchmarks.workloads import Workload, all_workloads, by_name, scaling_workloads
from core.errors import NeuroCanvasError
from core.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
FORMAT = "neurocanvas.bench"
VERSION = 2


@dataclass
class Settings:
    """How long each measurement runs (see ``benchmarks.side.Budget``) and how often."""
    seconds: float = 1.5  # timed seconds per part and process
    warmup: int = 5
    min_steps: int = 10
    max_steps: int = 1000
    rounds: int = 3  # processes per side and workload; the per-step times are pooled
    pause: float = 1.0  # seconds between two processes
    timeout: float = 900.0  # seconds one process may take

    @classmethod
    def quick(cls) -> Settings:
        return cls(seconds=0.5, warmup=2, min_steps=5, max_steps=200, rounds=1, pause=0.5)

    def to_json(self) -> dict:
        return dict(self.__dict__)


# what ``--json`` writes (documented in docs/engine.md, section Speed)
DOC_FIELDS = ("format", "version", "machine", "python", "numpy", "torch", "settings",
              "results", "geomean_ratio", "scaling")
ROW_FIELDS = ("workload", "description", "batch", "spec", "loop", "step", "torch", "floor",
              "ratio", "step_ratio", "loop_floor", "step_floor", "torch_floor", "floor_gemms",
              "floor_gflop", "first_loss", "env", "torch_missing")
SCALING_FIELDS = ("series", "axis", "value")  # a scaling row: these besides ROW_FIELDS
PART_FIELDS = ("median", "p25", "p75", "min", "max", "steps", "round_medians")


class BenchError(NeuroCanvasError):
    """A side process that failed or printed no result."""


# ---- running the sides ---------------------------------------------------------------------------
def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def write_weights(w: Workload, folder: Path) -> Path:
    """Our network's initial weights for ``w`` (seed 0) as the npz both sides start from."""
    from core.fileformat import graph_from_dict
    from core.network import Network
    from core.validate import analyze
    from core.weights import save_weights
    a = analyze(graph_from_dict(w.graph))
    a.raise_if_invalid()
    path = folder / f"{w.name}-weights.npz"
    save_weights(path, Network(a, seed=0).state_dict())
    return path


def run_side(side: str, w: Workload, weights: Path, work: Path, s: Settings, *,
             seed: int = 0, parts: str = "loop,step,floor") -> dict:
    """One ``python -m benchmarks.side`` process; its result. ``BenchError`` naming the
    workload and side with the process's last line of error output when it fails."""
    cmd = [sys.executable, "-m", "benchmarks.side", side, "--spec", json.dumps(w.spec),
           "--weights", str(weights), "--work", str(work), "--seed", str(seed),
           "--seconds", str(s.seconds), "--warmup", str(s.warmup),
           "--min-steps", str(s.min_steps), "--max-steps", str(s.max_steps), "--parts", parts]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=s.timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"bench: the {side} side of workload '{w.name}' took more than "
                         f"{s.timeout:.0f} s") from None
    if proc.returncode == 0 and RESULT_PREFIX in proc.stdout:
        return parse_result(proc.stdout)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    why = lines[-1].strip() if lines else f"exit status {proc.returncode}, no result"
    raise BenchError(f"bench: the {side} side of workload '{w.name}' failed: {why}")


def _pooled(results: list[dict], part: str) -> dict | None:
    """A part's figures over the rounds: the median of the rounds' medians (a round slowed
    down by the machine counts as one round, however few steps it fitted), and the quartiles
    and extremes of every timed step of every round."""
    found = [r[part] for r in results if part in r]
    if not found:
        return None
    ms = np.concatenate([np.asarray(f["ms"], dtype=np.float64) for f in found])
    p25, p75 = np.percentile(ms, [25, 75])
    med = np.median([f["median"] for f in found])
    return {"median": float(med), "p25": float(p25), "p75": float(p75),
            "min": float(ms.min()), "max": float(ms.max()), "steps": int(ms.size),
            "round_medians": [f["median"] for f in found]}


def _ratio(a: dict | None, b: dict | None) -> float | None:
    return a["median"] / b["median"] if a and b and b["median"] > 0 else None


def measure(w: Workload, folder: Path, s: Settings, with_torch: bool) -> dict:
    """Both sides of ``w``, ``s.rounds`` times (ours first in even rounds, torch first in odd
    ones), one process at a time; the row of the table."""
    weights = write_weights(w, folder)
    ours: list[dict] = []
    theirs: list[dict] = []
    for r in range(s.rounds):
        order = ("ours", "torch") if r % 2 == 0 else ("torch", "ours")
        for side in order:
            if side == "torch" and not with_torch:
                continue
            time.sleep(s.pause)
            (ours if side == "ours" else theirs).append(run_side(side, w, weights, folder, s))
    row: dict = {"workload": w.name, "description": w.description, "batch": w.batch,
                 "spec": w.spec}
    parts = {"loop": _pooled(ours, "loop"), "step": _pooled(ours, "step"),
             "floor": _pooled(ours, "floor"), "torch": _pooled(theirs, "step")}
    for k, v in parts.items():
        row[k] = v
    row["ratio"] = _ratio(parts["loop"], parts["torch"])  # loop / torch
    row["step_ratio"] = _ratio(parts["step"], parts["torch"])
    row["loop_floor"] = _ratio(parts["loop"], parts["floor"])
    row["step_floor"] = _ratio(parts["step"], parts["floor"])
    row["torch_floor"] = _ratio(parts["torch"], parts["floor"])
    f = ours[0].get("floor") if ours else None
    row["floor_gemms"] = f["gemms"] if f else None
    row["floor_gflop"] = f["gflop"] if f else None
    row["first_loss"] = {"ours": ours[0]["first_loss"] if ours else None,
                         "torch": theirs[0].get("first_loss") if theirs else None}
    row["env"] = {"ours": ours[0]["env"] if ours else None,
                  "torch": theirs[0].get("env") if theirs else None}
    row["torch_missing"] = not theirs or "missing" in theirs[0]
    return row


# ---- the report ----------------------------------------------------------------------------------
def _ms(p: dict | None) -> str:
    if not p:
        return "-"
    return f"{p['median']:.2f} [{p['p25']:.2f}-{p['p75']:.2f}]"


def _x(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "-"


def _pools(env: dict | None) -> str:
    pools = (env or {}).get("threadpools")
    if isinstance(pools, str):
        return pools
    parts = []
    for p in pools or []:
        name = " ".join(str(p[k]) for k in ("prefix", "version") if p.get(k))
        extra = ", ".join(str(p[k]) for k in ("threading_layer", "architecture")
                          if p.get(k) not in (None, "unknown"))
        parts.append(f"{name or p.get('internal_api')}: {p.get('num_threads')} threads"
                     + (f" ({extra})" if extra else ""))
    return "; ".join(parts) or "none found"


def header_lines(rows: list[dict], s: Settings) -> list[str]:
    """The environment of a run, from its first row's processes."""
    ours = next((r["env"]["ours"] for r in rows if r["env"]["ours"]), None) or {}
    theirs = next((r["env"]["torch"] for r in rows if r["env"]["torch"]), None)
    blas = ours.get("numpy_blas") or {}
    blas_name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    lines = [f"- ours: Python {ours.get('python')}, NumPy {ours.get('numpy')} (BLAS "
             f"{blas_name}), {ours.get('kernels', 'NumPy kernels')}, thread pools: "
             f"{_pools(ours)}; {ours.get('cpus')} CPUs"]
    if theirs:
        tb = theirs.get("torch_blas") or {}
        lines.append(f"- torch: PyTorch {theirs.get('torch')}, {theirs.get('threads')} threads "
                     f"(interop {theirs.get('interop_threads')}), BLAS "
                     f"{tb.get('blas_info', '?')}, oneDNN "
                     f"{'on' if theirs.get('mkldnn') else 'off'}; thread pools in its "
                     f"process: {_pools(theirs)}")
    else:
        lines.append("- torch: PyTorch is not installed: its columns are empty")
    env = {**(ours.get("env") or {}), **((theirs or {}).get("env") or {})}
    if env:
        lines.append("- environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    lines.append(f"- each side in a process of its own, one at a time, {s.pause:g} s apart; "
                 f"{s.rounds} round(s); about {s.seconds:g} s timed per part after "
                 f"{s.warmup} warm-up steps; ms per step as median [25th-75th percentile] "
                 "of every timed step")
    return lines


TABLE_HEAD = ("| workload | ours loop ms | ours step ms | torch ms | loop / torch | floor ms "
              "| loop / floor | torch / floor |\n|---|---:|---:|---:|---:|---:|---:|---:|")


def table_row(r: dict) -> str:
    return (f"| `{r['workload']}` | {_ms(r['loop'])} | {_ms(r['step'])} | {_ms(r['torch'])} "
            f"| {_x(r['ratio'])} | {_ms(r['floor'])} | {_x(r['loop_floor'])} "
            f"| {_x(r['torch_floor'])} |")


SCALING_HEAD = ("| model | batch | width | ours loop ms | ours step ms | torch ms | loop / torch "
                "| floor ms | loop / floor |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def scaling_row(r: dict) -> str:
    spec = r["spec"]
    width = spec["sizes"][1] if spec["family"] == "mlp" else spec["hidden"]
    return (f"| {r['series']} | {r['batch']} | {width} | {_ms(r['loop'])} | {_ms(r['step'])} "
            f"| {_ms(r['torch'])} | {_x(r['ratio'])} | {_ms(r['floor'])} "
            f"| {_x(r['loop_floor'])} |")


def geomean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v]
    return float(np.exp(np.mean(np.log(vals)))) if vals else None


def markdown(doc: dict) -> str:
    s = Settings(**doc["settings"])
    lines = header_lines(doc["results"] or doc["scaling"], s) + [""]
    if doc["results"]:
        lines += [TABLE_HEAD] + [table_row(r) for r in doc["results"]]
        g = geomean([r["ratio"] for r in doc["results"]])
        lines.append(f"\ngeomean loop / torch: {_x(g)}")
    if doc["scaling"]:
        if doc["results"]:
            lines.append("")
        lines += [SCALING_HEAD] + [scaling_row(r) for r in doc["scaling"]]
    return "\n".join(lines) + "\n"


def run(quick: bool = False, out=None, *, workloads: list[Workload] | None = None,
        scaling: bool = False, settings: Settings | None = None) -> dict:
    """Run the suite (or, with ``scaling``, the scaling table), printing it as it goes;
    the whole run as the document ``--json`` writes."""
    out = out if out is not None else sys.stdout
    s = settings or (Settings.quick() if quick else Settings())
    with_torch = torch_available()
    doc: dict = {"format": FORMAT, "version": VERSION, "machine": platform.machine(),
                 "python": platform.python_version(), "numpy": np.__version__,
                 "settings": s.to_json(), "results": [], "geomean_ratio": None,
                 "scaling": []}
    if scaling:
        todo = [(w, {"series": series, "axis": axis, "value": v})
                for series, axis, v, w in scaling_workloads(quick)]
        key, head, fmt = "scaling", SCALING_HEAD, scaling_row
    else:
        todo = [(w, {}) for w in (workloads if workloads is not None else all_workloads(quick))]
        key, head, fmt = "results", TABLE_HEAD, table_row
    with tempfile.TemporaryDirectory(prefix="neurocanvas-bench-") as tmp:
        for i, (w, extra) in enumerate(todo):
            row = measure(w, Path(tmp), s, with_torch)
            row.update(extra)
            doc[key].append(row)
            if i == 0:
                out.write("\n".join(header_lines([row], s)) + "\n\n" + head + "\n")
            out.write(fmt(row) + "\n")
            out.flush()
    if doc["results"]:
        doc["geomean_ratio"] = geomean([r["ratio"] for r in doc["results"]])
        out.write(f"\ngeomean loop / torch: {_x(doc['geomean_ratio'])}\n")
    torch_v = next((r["env"]["torch"].get("torch") for r in doc[key] if r["env"]["torch"]), None)
    doc["torch"] = torch_v
    return doc


def cmd_bench(args) -> int:
    from core.cli.common import UsageError
    workloads = None
    if args.workload:
        try:
            workloads = [by_name(n) for n in args.workload]
        except KeyError as e:
            known = ", ".join(w.name for w in all_workloads())
            raise UsageError(f"bench: no workload named {e} (known: {known})") from None
        if args.scaling:
            raise UsageError("bench: --workload and --scaling do not go together")
    s = Settings.quick() if args.quick else Settings()
    if args.scaling:
        s.rounds = 1  # a table of 23 points; --rounds asks for more
    if args.rounds is not None:
        if args.rounds < 1:
            raise UsageError("bench: --rounds must be at least 1")
        s.rounds = args.rounds
    doc = run(quick=args.quick, workloads=workloads, scaling=args.scaling, settings=s)
    if args.json:
        atomic_write(args.json, (json.dumps(doc, indent=2) + "\n").encode())
    if args.markdown:
        atomic_write(args.markdown, markdown(doc).encode())
    return 0


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="time our training loop against a PyTorch loop")
    b.add_argument("--quick", action="store_true", help="a short run (fewer workloads, "
                   "one round, shorter timing)")
    b.add_argument("--scaling", action="store_true", help="instead of the workloads: the "
                   "step time against batch size and width, MLP and LSTM, ours and torch")
    b.add_argument("--workload", action="append", metavar="NAME",
                   help="only this workload (repeatable)")
    b.add_argument("--rounds", type=int, metavar="N", help="processes per side and workload")
    b.add_argument("--json", metavar="OUT.json", help="also write the run as JSON")
    b.add_argument("--markdown", metavar="OUT.md", help="also write the tables as markdown")
    b.set_defaults(func=cmd_bench)
