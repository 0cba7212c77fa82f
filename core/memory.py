"""How much memory training (or predicting) a graph will take, estimated before allocating.

``estimate(analysis, batch_size, optimizer_type, dataset_samples)`` adds up, from the shapes
and parameter counts of an ``Analysis`` alone (nothing is allocated, Python ints throughout, so
a layer of 10**12 parameters is just a number):

- parameters: ``param_count`` x 4 bytes (float32), and as much again for their gradients;
- optimizer state, per parameter: sgd 0; sgd with momentum, momentum, nesterov, adagrad 1;
  rmsprop 1, +1 with momentum, +1 centered; adam and adamw 2, +1 with amsgrad;
- activations of one batch: for every node prod(output shape) x batch x 4 bytes, x T for a
  node that runs once per time step (``analysis.timed``, T = ``analysis.steps``), x 2 when
  training: a rough factor for what the backward pass keeps and computes (gradients of the
  activations, masks, intermediate values);
- the dataset, when the number of samples is known: samples x the per-sample size of every
  field the Input and Target nodes read.

It is an estimate, a lower bound of the order of magnitude rather than a measurement: NumPy
temporaries, the interpreter and the libraries come on top. It also names the largest
contributors (a node's parameters, gradients, optimizer state and activations together).

The budget (``budget``): ``--max-memory SIZE`` of the command line, else the environment
variable ``NEUROCANVAS_MAX_MEMORY``, else ``DEFAULT_SHARE`` of the memory available now
(Linux ``MemAvailable``; else the physical memory; else 4 GiB). No Qt here.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import MemoryBudgetError, NeuroCanvasError

FLOAT_BYTES = 4  # float32
BACKWARD_FACTOR = 2  # activations kept for (and made by) the backward pass, roughly
DEFAULT_SHARE = 0.5  # of the available memory, when no budget is given
FALLBACK_MEMORY = 4 * 1024 ** 3  # when the machine's memory cannot be found
ENV_VAR = "NEUROCANVAS_MAX_MEMORY"
CLI_HINT = f"raise the budget with --max-memory or {ENV_VAR}"  # the editor says its own
PREDICT_BATCH = 1024  # Network.predict's batch

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4,
          "P": 1024 ** 5}


@dataclass
class MemoryEstimate:
    """Bytes, by kind; ``contributors``: ``(node id, bytes)``, largest first."""
    batch_size: int
    training: bool = True
    params: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    dataset: int = 0
    contributors: list[tuple[str, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.params + self.gradients + self.optimizer + self.activations + self.dataset

    def describe(self) -> str:
        """``about 1.2 GiB per training step with batch 64``."""
        what = "per training step" if self.training else "to predict"
        return f"about {fmt_bytes(self.total)} {what} with batch {self.batch_size}"

    def largest(self, n: int = 3) -> str:
        return ", ".join(f"'{nid}' {fmt_bytes(b)}" for nid, b in self.contributors[:n])


def optimizer_slots(optimizer: str | Mapping[str, Any] | None) -> int:
    """Arrays of parameter size the optimizer keeps (an optimizer type or a
    ``training.optimizer`` object; None: plain sgd)."""
    cfg: Mapping[str, Any] = {}
    if isinstance(optimizer, Mapping):
        cfg, kind = optimizer, optimizer.get("type", "sgd")
    else:
        kind = optimizer or "sgd"
    if kind == "sgd":
        return 1 if _positive(cfg.get("momentum")) else 0
    if kind in ("momentum", "nesterov", "adagrad"):
        return 1
    if kind == "rmsprop":
        return 1 + _positive(cfg.get("momentum")) + bool(cfg.get("centered"))
    if kind in ("adam", "adamw"):
        return 2 + bool(cfg.get("amsgrad"))
    return 2  # unknown: as adam (the type is checked elsewhere)


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def estimate(analysis, batch_size: int, optimizer_type: str | Mapping[str, Any] | None = None,
             dataset_samples: int | None = None, *, training: bool = True) -> MemoryEstimate:
    """The memory a step with ``batch_size`` samples takes (see the module's docstring).
    ``training=False``: a forward pass only (no gradients, no optimizer, no backward)."""
    batch = max(int(batch_size), 1)
    est = MemoryEstimate(batch, training)
    slots = optimizer_slots(optimizer_type) if training else 0
    steps = analysis.steps or 1
    per_node: dict[str, int] = {}
    for nid in analysis.order:
        count = analysis.param_count(nid)
        p = count * FLOAT_BYTES
        g = p if training else 0
        o = p * slots
        shape = analysis.shapes.get(nid)
        act = 0
        if shape is not None:
            act = math.prod(int(s) for s in shape) * batch * FLOAT_BYTES
            if nid in analysis.timed:
                act *= steps
            if training:
                act *= BACKWARD_FACTOR
        est.params += p
        est.gradients += g
        est.optimizer += o
        est.activations += act
        per_node[nid] = p + g + o + act
    if dataset_samples is not None:
        per_sample = 0
        seen: set[str] = set()
        for nid in analysis.order:
            layer = analysis.layers.get(nid)
            if layer is None or layer.data_role is None:
                continue
            fld, shape = layer.params.get("field"), layer.params.get("shape")
            if fld in seen or not isinstance(shape, (tuple, list)):
                continue
            seen.add(fld)
            per_sample += math.prod(int(s) for s in shape) * _itemsize(layer.params.get("dtype"))
        est.dataset = int(dataset_samples) * per_sample
    est.contributors = sorted(((n, b) for n, b in per_node.items() if b),
                              key=lambda nb: -nb[1])
    return est


def _itemsize(dtype: Any) -> int:
    m = re.fullmatch(r"[a-z]+(\d+)", str(dtype or ""))
    return int(m.group(1)) // 8 if m and int(m.group(1)) >= 8 else FLOAT_BYTES


def training_estimate(analysis: Any, config: Any, base_dir=None,
                      samples: int | None = None) -> MemoryEstimate:
    """``estimate`` of one training step of a ``TrainConfig`` (its batch size, optimizer
    and dataset; ``samples``: the dataset's when already known, else ``dataset_samples``)."""
    if samples is None:
        samples = dataset_samples(config.dataset, base_dir)
    return estimate(analysis, config.batch_size, config.optimizer, samples)


def dataset_samples(cfg: Any, base_dir=None) -> int | None:
    """The number of samples of a ``training.dataset`` description, when it is cheap to know
    (a built-in's ``n``, an .npz archive's array headers); None otherwise."""
    if not isinstance(cfg, Mapping):
        return None
    try:
        if cfg.get("source") == "builtin":
            n = cfg.get("n")
            if isinstance(n, int) and not isinstance(n, bool):
                return n
            return 1797 if cfg.get("name") == "digits" else 1000
        if cfg.get("source") == "npz":
            from core.datasets.files import resolve
            from core.npz import read_npz_headers
            headers = read_npz_headers(resolve(cfg, base_dir), NeuroCanvasError, "an .npz")
            firsts = [shape[0] for shape, _ in headers.values() if shape]
            return max(firsts) if firsts else None
    except (NeuroCanvasError, OSError, ValueError, TypeError):
        return None
    return None


# ---- the budget -----------------------------------------------------------------------------
def parse_size(text: str | int) -> int:
    """Bytes of ``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"100KB"`` or ``"1000000"``: every unit
    is a power of 1024 (K, KB and KiB alike). ValueError for anything else."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError("expected a size above 0")
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtpKMGTP]?)(i?[bB])?\s*", str(text))
    if not m or (m.group(3) and m.group(3).lower() == "ib" and not m.group(2)):
        raise ValueError(f"expected a size such as 8G, 512M, 1.5GiB or a number of bytes, "
                         f"found {str(text)!r}")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"expected a size of at least 1 byte, found {str(text)!r}")
    return int(value)


def available_memory() -> int:
    """Bytes of memory available now: Linux ``MemAvailable``, else the physical memory, else
    ``FALLBACK_MEMORY``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return FALLBACK_MEMORY


def budget(max_memory: int | None = None) -> int:
    """The budget in bytes: ``max_memory`` when given, else ``$NEUROCANVAS_MAX_MEMORY``, else
    ``DEFAULT_SHARE`` of the available memory. A bad environment value is a user error."""
    if max_memory is not None:
        return max_memory
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        try:
            return parse_size(env)
        except ValueError as e:
            raise NeuroCanvasError(str(e), param=ENV_VAR) from None
    return int(available_memory() * DEFAULT_SHARE)


def over_budget(est: MemoryEstimate, limit: int) -> MemoryBudgetError | None:
    """The error to raise when ``est`` is above ``limit`` (names the largest node)."""
    if est.total <= limit:
        return None
    top = est.contributors[0][0] if est.contributors else None
    return MemoryBudgetError(
        f"needs {est.describe()}, over the memory budget of {fmt_bytes(limit)} (largest: "
        f"{est.largest()}); make the layers or the batch smaller, or {CLI_HINT}", node=top)


def check_budget(est: MemoryEstimate, max_memory: int | None = None) -> None:
    """Raise ``MemoryBudgetError`` when ``est`` is above the budget."""
    err = over_budget(est, budget(max_memory))
    if err is not None:
        raise err


def fmt_bytes(n: int) -> str:
    """``512 B``, ``1.5 KiB``, ``7.8 GiB``, ``3.6 TiB``..."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024 or unit == "EiB":
            return f"{value:.1f} {unit}"
    return f"{n} B"  # not reached


def add_max_memory_option(parser) -> None:
    """``--max-memory SIZE`` on a command-line sub-command (a bad SIZE is a usage error
    naming the option)."""
    import argparse

    def size(text: str) -> int:
        try:
            return parse_size(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parser.add_argument("--max-memory", type=size, metavar="SIZE",
                        help="memory budget (e.g. 8G, 512M, 1.5GiB or bytes; default: "
                        f"${ENV_VAR}, else {round(DEFAULT_SHARE * 100)}%% of the available memory)")
