"""Probes by name, for the training process's ``probe`` request (``core.remote``).

The editor asks its training process ``{"cmd": "probe", "id": n, "name": NAME, "args":
{...}}``; the process runs ``PROBES[NAME].run(trainer, **args)`` between two steps and
answers with the result's JSON in the reply's ``"result"`` and its arrays as the ``.npz``
payload; ``RemoteTrainer.probe(NAME, **args)`` gives back a Future of the decoded result.

A probe is registered once here with how it runs, how its result crosses the pipe and back,
and which arguments it takes (anything else is refused before it runs, naming the argument).
Nothing here imports Qt.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import NeuroCanvasError

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Probe:
    run: Callable[..., Any]  # (trainer, **args) -> result, between two steps
    encode: Callable[[Any], tuple[Any, Arrays]]  # result -> (JSON value, arrays)
    decode: Callable[[Any, Arrays], Any]  # (JSON value, arrays) -> result
    args: dict[str, Arg] = field(default_factory=dict)  # what it takes, by name


@dataclass(frozen=True)
class Arg:
    """An argument a probe takes: its JSON kinds and, for a number, its bounds (inclusive),
    so that no request can make a probe take the machine (a grid of 10**6 x 10**6)."""
    kinds: tuple[type, ...]
    lo: float | None = None
    hi: float | None = None

    def why_not(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, self.kinds) or isinstance(value, bool) \
                and bool not in self.kinds:
            return f"has the wrong kind: {str(value)[:40]!r}"
        if isinstance(value, (int, float)) and not (
                (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)):
            return f"must be between {self.lo} and {self.hi}, found {value!r}"
        return None


def _by_arrays(cls) -> tuple[Callable, Callable]:
    """Encoders of a result that is all arrays (``to_arrays`` / ``from_arrays``)."""
    return (lambda r: (None, r.to_arrays()),
            lambda _j, arrays: cls.from_arrays(arrays))


def _by_json(cls) -> tuple[Callable, Callable]:
    """Encoders of a result that is all JSON (``to_json`` / ``from_json``)."""
    return (lambda r: (r.to_json(), {}),
            lambda j, _arrays: cls.from_json(j))


PROBES: dict[str, Probe] = {}


def register(name: str, probe: Probe) -> None:
    PROBES[name] = probe


def check_args(name: Any, args: Any) -> str | None:
    """Why a probe request cannot be taken (an unknown name, an argument it does not take or
    of the wrong kind), or None."""
    if not isinstance(name, str) or name not in PROBES:
        return f"unknown probe {str(name)[:40]!r} (known: {', '.join(sorted(PROBES))})"
    if not isinstance(args, dict):
        return f"expected the arguments of probe {name!r} as an object"
    takes = PROBES[name].args
    for key, value in args.items():
        if key not in takes:
            return (f"probe {name!r} takes no argument {str(key)[:40]!r} (it takes: "
                    f"{', '.join(takes) or 'none'})")
        why = takes[key].why_not(value)
        if why is not None:
            return f"argument {key!r} of probe {name!r} {why}"
    return None


def run_probe(trainer, name: str, args: dict) -> Any:
    """The probe's result (call between two steps); a user error as ``NeuroCanvasError``."""
    why = check_args(name, args)
    if why is not None:
        raise NeuroCanvasError(why)
    return PROBES[name].run(trainer, **args)


def _register_builtin() -> None:
    from core.probe.cost import GraphCost
    from core.probe.embedding import Embedding
    from core.probe.gradcheck import GradCheck
    from core.probe.plane import PlaneMaps

    node = Arg((str,))
    register("plane", Probe(
        lambda tr, **kw: tr.probe_plane(**kw), *_by_arrays(PlaneMaps),
        {"unit_node": node, "resolution": Arg((int,), 2, 1000),
         "margin": Arg((int, float), 0, 10), "max_points": Arg((int,), 0, 100_000)}))
    register("embedding", Probe(
        lambda tr, **kw: tr.probe_embedding(**kw), *_by_arrays(Embedding),
        {"node": node, "max_samples": Arg((int,), 1, 100_000)}))
    register("gradcheck", Probe(
        lambda tr, **kw: tr.grad_check(**kw), *_by_json(GradCheck),
        {"node": node, "max_elements": Arg((int,), 1, 10_000)}))
    register("profile", Probe(
        lambda tr, **kw: tr.profile(**kw), *_by_json(GraphCost),
        {"steps": Arg((int,), 1, 100)}))


_register_builtin()


def _register_stepper() -> None:
    """"step": one walk through a training step (``Trainer.step_walk``; docs/probe.md,
    "Stepping"). All JSON: a stage carries at most ``max_values`` values of one sample."""
    from core.probe.stepper import StepState

    register("step", Probe(
        lambda tr, **kw: tr.step_walk(**kw), *_by_json(StepState),
        {"action": Arg((str,)), "sample": Arg((int,), 0, 1_000_000), "node": Arg((str,)),
         "element": Arg((int,), 0, 10**12), "t": Arg((int,), 0, 1_000_000),
         "index": Arg((int,), 0, 10**9), "max_values": Arg((int,), 1, 4096)}))


_register_stepper()
