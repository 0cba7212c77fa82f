"""One side of ``main.py bench``, timed in a process of its own.

    python -m benchmarks.side ours|torch --spec JSON --weights W.npz --work DIR [options]

``benchmarks.suite`` starts one such process per workload and side, one at a time, so that
neither side's threads (OpenBLAS's keep spinning for about 0.1 s after a GEMM) share the cores
with the other side's. Both sides read the same weights (``--weights``, written by the suite)
and regenerate the same batch from ``--seed``.

- ``ours`` times three things: the **loop** (``main.py train`` itself, run in this process on
  an npz dataset of the workload's shapes written to ``--work``, with ``--log``: the step time
  is the gap between consecutive step events of the metrics log after warm-up, as an
  independent measurement through ``main.py train --log`` reads it); the bare **step**
  (``core.training.training_step`` on the batch); and the **floor**: the step's matrix
  products alone, with the exact shapes, memory layouts and buffer reuse the step has,
  found by tracing one forward and backward pass (``trace_gemms``) and replayed with the same
  BLAS threads (``GemmReplay``).
- ``torch`` times a PyTorch training loop as its users write it: ``zero_grad(set_to_none=
  True)``, forward, loss, ``backward()``, ``optimizer.step()``, ``loss.item()``.

Each part runs warm-up steps, then timed steps until ``--seconds`` have passed (at least
``--min-steps``, at most ``--max-steps``), each step timed on its own; the loop, whose steps
``main.py train`` must be told in advance, runs as many as the warm-up steps' time says fill
``--seconds``. The process prints one line,
``RESULT_PREFIX`` and a JSON object: per part the median, quartiles, extremes and every
step's ms, the first step's loss (before any update: both sides must agree on it), and the
environment (versions, BLAS, thread counts).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RESULT_PREFIX = "neurocanvas-bench-result "
LOOP_BATCHES = 8  # batches per epoch of the loop's dataset (epoch ends are part of a loop)
ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "NEUROCANVAS_KERNELS",
            "NEUROCANVAS_MALLOC")


# ---- statistics -------------------------------------------------------------------------------
def stats(ms: list[float]) -> dict:
    """Median, quartiles and extremes of per-step milliseconds, with the values themselves."""
    a = np.asarray(ms, dtype=np.float64)
    p25, med, p75 = np.percentile(a, [25, 50, 75])
    return {"median": float(med), "p25": float(p25), "p75": float(p75), "min": float(a.min()),
            "max": float(a.max()), "n": int(a.size), "ms": [round(float(v), 4) for v in a]}


def steps_for(estimate_ms: float, seconds: float, lo: int, hi: int) -> int:
    """How many timed steps fill ``seconds`` at ``estimate_ms`` a step, within [lo, hi]."""
    n = int(seconds * 1000.0 / max(estimate_ms, 1e-3))
    return max(lo, min(hi, n))


def _timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def _timed_for(fn, budget: Budget) -> list[float]:
    """Per-step ms of ``fn`` until ``budget.seconds`` have passed (at least ``min_steps``
    steps, at most ``max_steps``): a machine slower than the warm-up showed cannot stretch
    a part far beyond its time."""
    out: list[float] = []
    end = time.perf_counter() + budget.seconds
    while len(out) < budget.max_steps and (len(out) < budget.min_steps
                                           or time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


@dataclass
class Budget:
    seconds: float = 1.0  # timed seconds per part
    warmup: int = 3
    min_steps: int = 5
    max_steps: int = 500

    def steps(self, estimate_ms: float) -> int:
        return steps_for(estimate_ms, self.seconds, self.min_steps, self.max_steps)


# ---- environment -------------------------------------------------------------------------------
def _threadpools() -> list[dict] | str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer",
            "architecture")
    return [{k: d.get(k) for k in keep if k in d} for d in threadpool_info()]


def _numpy_blas() -> dict:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return {k: blas.get(k) for k in ("name", "version", "openblas configuration")
                if blas.get(k) is not None}
    except Exception:  # noqa: BLE001 - older NumPy: no dict form; the threadpools still say
        return {}


def ours_env() -> dict:
    from kernels import jit
    return {"python": platform.python_version(), "numpy": np.__version__,
            "numpy_blas": _numpy_blas(), "threadpools": _threadpools(),
            "kernels": jit.status(),
            "cpus": os.cpu_count(), "env": {k: os.environ[k] for k in ENV_VARS
                                            if k in os.environ}}


def torch_env(torch) -> dict:
    config = torch.__config__.show()
    blas = {key.lower(): m.group(1) for key in ("BLAS_INFO", "LAPACK_INFO")
            if (m := re.search(rf"\b{key}=([^,\s]+)", config))}
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available()), "torch_blas": blas,
            "threadpools": _threadpools(),
            "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ}}


# ---- the floor: the step's matrix products alone ---------------------------------------------
@dataclass(frozen=True)
class Operand:
    """Where one matmul operand (or result) lay: in which allocation, at which byte offset,
    with which shape, strides and dtype."""
    root: int  # index of the allocation, in order of first appearance
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Gemm:
    a: Operand
    b: Operand
    out: Operand

    @property
    def flops(self) -> int:
        k = self.a.shape[-1]
        return 2 * int(np.prod(self.out.shape, dtype=np.int64)) * int(k)


class _Tracer:
    """Records every matmul while installed: the ``@`` operator through an ndarray subclass
    that parameters, the batch and every array created through ``np.<creator>`` become, and
    ``np.matmul`` called as a function through a wrapper. Allocations are told apart by the
    address of the memory they own, so buffers the step reuses (a weight read at each time
    step, the slices of one state history) are the same buffer in the replay."""

    CREATORS = ("empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like",
                "full_like", "ascontiguousarray", "copy", "stack", "concatenate")

    def __init__(self):
        self.calls: list[Gemm] = []
        self.roots: dict[int, int] = {}  # address -> index
        self.sizes: list[int] = []  # bytes of each allocation (the most any use needed)
        self.real_matmul = np.matmul
        self._saved: dict[str, object] = {}

    # the ndarray subclass, made per tracer so that it can reach it
    def subclass(self):
        tracer = self

        class Traced(np.ndarray):
            def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kw):
                args = [_plain(i) for i in inputs]
                if out is not None:
                    kw["out"] = tuple(_plain(o) for o in out)
                res = getattr(ufunc, method)(*args, **kw)
                if ufunc is tracer.real_matmul and method == "__call__":
                    tracer.record(args[0], args[1], kw["out"][0] if out is not None else res)
                if out is not None:
                    return out[0] if len(out) == 1 else out
                return tracer.wrap(res)
        return Traced

    def wrap(self, res):
        if isinstance(res, np.ndarray) and not isinstance(res, self.Traced):
            return res.view(self.Traced)
        if isinstance(res, tuple):
            return tuple(self.wrap(r) for r in res)
        return res

    def operand(self, a: np.ndarray) -> Operand:
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        addr = root.__array_interface__["data"][0]
        offset = a.__array_interface__["data"][0] - addr
        lo = sum(min(0, (d - 1) * s) for d, s in zip(a.shape, a.strides, strict=True))
        hi = sum(max(0, (d - 1) * s) for d, s in zip(a.shape, a.strides, strict=True))
        inside = offset + lo >= 0
        if not inside:  # a view reaching below its root's start: an allocation of its own
            addr, offset = addr + offset + lo, -lo
        idx = self.roots.get(addr)
        if idx is None:
            idx = self.roots[addr] = len(self.sizes)
            self.sizes.append(0)
        self.sizes[idx] = max(self.sizes[idx], root.nbytes if inside else 0,
                              offset + hi + a.itemsize)
        return Operand(idx, offset, tuple(a.shape), tuple(a.strides), a.dtype.str)

    def record(self, a, b, out) -> None:
        a, b, out = np.asarray(a), np.asarray(b), np.asarray(out)
        self.calls.append(Gemm(self.operand(a), self.operand(b), self.operand(out)))

    def __enter__(self):
        self.Traced = self.subclass()
        tracer = self

        def matmul(a, b, /, out=None, **kw):
            a, b = _plain(a), _plain(b)
            res = tracer.real_matmul(a, b, out=_plain(out), **kw)
            tracer.record(a, b, res if out is None else _plain(out))
            return out if out is not None else tracer.wrap(res)

        def creator(fn):
            def make(*args, **kw):
                return tracer.wrap(fn(*args, **kw))
            return make

        self._saved["matmul"] = np.matmul
        np.matmul = matmul
        for name in self.CREATORS:
            self._saved[name] = getattr(np, name)
            setattr(np, name, creator(self._saved[name]))
        self._saved["as_strided"] = np.lib.stride_tricks.as_strided
        np.lib.stride_tricks.as_strided = creator(self._saved["as_strided"])
        # The compiled kernels take plain ndarrays only (``kernels.jit.usable``): without
        # this the traced step would run the NumPy code, whose products differ (the
        # NumPy LSTM's four per-gate GEMMs a step against the compiled one's one).
        # They get plain views of the traced arrays, so they write where the step reads.
        from kernels import jit
        self._jit = jit
        self._jit_saved = (jit.usable, jit.fused)
        usable, fused = self._jit_saved
        jit.usable = lambda *arrays: usable(*(_plain(a) for a in arrays))
        jit.fused = lambda: _PlainArgs(fused())
        return self

    def __exit__(self, *exc):
        self._jit.usable, self._jit.fused = self._jit_saved
        np.lib.stride_tricks.as_strided = self._saved.pop("as_strided")
        for name, fn in self._saved.items():
            setattr(np, name, fn)
        self._saved.clear()
        return False


class _PlainArgs:
    """``kernels.fused`` for the tracer: each kernel called with plain views of its array
    arguments (numba does not take ndarray subclasses)."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        if name in self._module.BLAS_LOOPS:  # their products are not np.matmul's: the
            return None  # layer takes its loop in Python, whose products are the same
        fn = getattr(self._module, name)
        if not callable(fn):
            return fn

        def call(*args, **kw):
            return fn(*(_plain(a) for a in args), **{k: _plain(v) for k, v in kw.items()})
        return call


def _plain(a):
    """``a`` as a plain ndarray view (the tracer's subclass stripped), anything else as is."""
    if isinstance(a, np.ndarray) and type(a) is not np.ndarray:
        return a.view(np.ndarray)
    return a


def trace_gemms(net, batch: dict) -> tuple[list[Gemm], list[int]]:
    """Every matrix product of one forward and backward pass of ``net`` on ``batch`` (in
    order), and the byte size of each allocation they touch. ``net`` is used up: its
    parameters become the tracer's subclass (pass a network built for this alone)."""
    # One pass untraced first: numba compiles a kernel at its first call, looking up
    # ``np.zeros`` and the like as it goes, and inside the tracer those are its wrappers,
    # which numba cannot compile (with an empty cache every kernel would fail, and stay
    # failed for the rest of the process). Compiled now, the traced pass only calls them.
    with np.errstate(all="ignore"):
        net.loss_and_grads(batch)
    with _Tracer() as tracer, np.errstate(all="ignore"):
        for layer in net.layers.values():
            for k, v in list(layer.P.items()):
                if isinstance(v, np.ndarray) and not isinstance(v, tracer.Traced):
                    layer.P[k] = v.view(tracer.Traced)
        net.loss_and_grads({k: np.asarray(v).view(tracer.Traced) for k, v in batch.items()})
    return tracer.calls, tracer.sizes


class GemmReplay:
    """The traced products on buffers of the same sizes, layouts and reuse, filled with
    small random numbers (never denormals or NaN, which would time something else); each
    product writes into a result buffer as the step's did, so a replay allocates nothing."""

    def __init__(self, calls: list[Gemm], sizes: list[int], seed: int = 0):
        rng = np.random.default_rng(seed)
        self.calls = calls
        self._bufs = []
        for n in sizes:
            raw = np.empty(n + 64, dtype=np.uint8)
            skip = (-raw.__array_interface__["data"][0]) % 64  # cache-line aligned
            self._bufs.append(raw[skip:skip + n])
        self.ops = []
        for g in calls:
            a, b, out = (self._view(o) for o in (g.a, g.b, g.out))
            for v in (a, b):
                if v.dtype.kind == "f":
                    v[...] = (rng.standard_normal(v.shape) * 0.1).astype(v.dtype)
            self.ops.append((a, b, out))

    def _view(self, o: Operand) -> np.ndarray:
        dt = np.dtype(o.dtype)
        first = self._bufs[o.root][o.offset:o.offset + dt.itemsize].view(dt)
        return np.lib.stride_tricks.as_strided(first, o.shape, o.strides, writeable=True)

    @property
    def flops(self) -> int:
        return sum(g.flops for g in self.calls)

    def __call__(self) -> None:
        mm = np.matmul
        for a, b, out in self.ops:
            mm(a, b, out=out)


# ---- our side ----------------------------------------------------------------------------------
def _build(w):
    from core.fileformat import graph_from_dict
    from core.training import parse_training
    from core.validate import analyze
    a = analyze(graph_from_dict(w.graph))
    a.raise_if_invalid()
    return a, parse_training(w.graph["training"])


def _net(a, state):
    from core.network import Network
    net = Network(a, seed=0)
    net.load_state_dict(state)
    return net


def train_argv(w, weights: Path, work: Path, seed: int, steps: int, tag: str = "") -> list[str]:
    """``main.py train``'s arguments for ``steps`` steps of workload ``w`` from ``weights`` on an
    npz dataset of LOOP_BATCHES batches of its shapes (written to ``work`` with the graph),
    logging to a metrics file in ``work`` (the last argument)."""
    from core.files import atomic_write
    from core.npz import npz_bytes
    data = w.make_batch(np.random.default_rng(seed + 1), w.batch * LOOP_BATCHES)
    data_path = work / f"{w.name}{tag}-data.npz"
    atomic_write(data_path, npz_bytes(data))
    graph = copy.deepcopy(w.graph)
    graph["training"]["dataset"] = {"source": "npz", "path": str(data_path)}
    graph_path = work / f"{w.name}{tag}.ncg.json"
    atomic_write(graph_path, json.dumps(graph).encode())
    log = work / f"{w.name}{tag}-metrics.jsonl"
    return ["train", str(graph_path), "--steps", str(steps), "--batch-size", str(w.batch),
            "--init-weights", str(weights), "--log", str(log)]


def run_loop(w, weights: Path, work: Path, seed: int, warmup: int, n: int) -> dict:
    """``main.py train GRAPH --steps warmup+n --batch-size B --init-weights W --log M`` in this
    process, on an npz dataset of LOOP_BATCHES batches of the workload's shapes; the gaps
    between the log's step events after ``warmup`` steps, as ``stats``."""
    from core import cli
    argv = train_argv(w, weights, work, seed, warmup + n)
    log = Path(argv[-1])
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = cli.run(argv)
    if rc != 0:
        raise RuntimeError(f"main.py train failed ({rc}): {err.getvalue().strip()}")
    times, first = [], None
    with open(log, encoding="utf-8") as f:
        for line in f:
            ev = json.loads(line)
            if ev.get("event") == "step":
                times.append(ev["time"])
                first = ev["loss"] if first is None else first
    gaps = np.diff(np.asarray(times)) * 1000.0
    out = stats(list(gaps[max(warmup - 1, 0):]))
    out["first_loss"] = first
    return out


def run_ours(w, weights: Path, work: Path, seed: int, budget: Budget,
             parts: tuple[str, ...] = ("loop", "step", "floor")) -> dict:
    from core.optim import make_optimizer
    from core.training import training_step
    from core.weights import load_weights
    a, cfg = _build(w)
    state = load_weights(weights)
    batch = w.make_batch(np.random.default_rng(seed), w.batch)
    result: dict = {"side": "ours", "workload": w.name, "env": ours_env()}

    def fresh_step():
        net = _net(a, state)
        opt = make_optimizer(cfg.optimizer, list(net.params.items()))
        return lambda: training_step(net, opt, batch, cfg)[0]

    # the first loss (before any update) and an estimate of the step's time
    step = fresh_step()
    result["first_loss"] = float(step())
    est = float(np.median(_timed(step, max(budget.warmup - 1, 1))))
    n = budget.steps(est)
    del step
    if "loop" in parts:
        result["loop"] = run_loop(w, weights, work, seed, max(budget.warmup, 1), n)
    if "step" in parts:
        step = fresh_step()
        _timed(step, budget.warmup)
        result["step"] = stats(_timed_for(step, budget))
        del step
    if "floor" in parts:
        calls, sizes = trace_gemms(_net(a, state), batch)
        replay = GemmReplay(calls, sizes, seed)
        _timed(replay, max(budget.warmup, 1))
        floor = stats(_timed_for(replay, budget))
        floor.update(gemms=len(calls), gflop=replay.flops / 1e9,
                     mbytes=round(sum(sizes) / 2**20, 2))
        result["floor"] = floor
    return result


# ---- PyTorch's side ----------------------------------------------------------------------------
TORCH_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
                    "adagrad": "Adagrad"}


def torch_optimizer(torch, config: dict, params):
    """torch.optim's optimizer for a graph's optimizer settings (the keys are torch's)."""
    kind = config.get("type", "adam")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()
              if k != "type"}
    return getattr(torch.optim, TORCH_OPTIMIZERS[kind])(params, **kwargs)


def run_torch(w, weights: Path, seed: int, budget: Budget) -> dict:
    import torch

    from benchmarks.workloads import torch_model
    from core.weights import load_weights
    state = load_weights(weights)
    model = (w.torch_factory or torch_model)(w.graph, state)
    model.train()
    opt = torch_optimizer(torch, w.graph["training"]["optimizer"], model.parameters())
    batch = w.make_batch(np.random.default_rng(seed), w.batch)
    x, y = torch.from_numpy(batch["x"]), torch.from_numpy(batch["y"])
    loss_fn = torch.nn.CrossEntropyLoss()  # every workload ends in a CrossEntropyLoss

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    result: dict = {"side": "torch", "workload": w.name, "env": torch_env(torch),
                    "first_loss": float(step())}
    _timed(step, max(budget.warmup - 1, 1))
    result["step"] = stats(_timed_for(step, budget))
    return result


# ---- the process ---------------------------------------------------------------------------------
def parse_result(stdout: str) -> dict:
    """The result object a side process printed; ValueError when there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise ValueError("no result line in the side process's output")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.side",
                                description="time one side of main.py bench")
    p.add_argument("side", choices=("ours", "torch"))
    p.add_argument("--spec", required=True, help="the workload, as JSON (Workload.spec)")
    p.add_argument("--weights", required=True, type=Path, help="the starting weights (.npz)")
    p.add_argument("--work", type=Path, help="a folder for the loop's files (ours)")
    p.add_argument("--seed", type=int, default=0, help="the batch's seed")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per part")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--min-steps", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--parts", default="loop,step,floor", help="ours: which parts to time")
    args = p.parse_args(argv)
    from benchmarks.workloads import from_spec
    from core.errors import NeuroCanvasError
    w = from_spec(json.loads(args.spec))
    budget = Budget(args.seconds, args.warmup, args.min_steps, args.max_steps)
    if args.side == "ours":
        from kernels.allocator import keep_freed_memory
        keep_freed_memory()  # as every training process does (core.training.Trainer)
        if args.work is None:
            p.error("ours needs --work DIR")
        parts = tuple(s for s in args.parts.split(",") if s)
        try:
            res = run_ours(w, args.weights, args.work, args.seed, budget, parts)
        except NeuroCanvasError as e:  # one line, which the suite repeats
            print(f"{p.prog}: error: {e}", file=sys.stderr)
            return 2
    else:
        try:
            import torch  # noqa: F401
        except ImportError:
            res = {"side": "torch", "workload": w.name, "missing": "PyTorch is not installed"}
        else:
            res = run_torch(w, args.weights, args.seed, budget)
    sys.stdout.write(RESULT_PREFIX + json.dumps(res) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
