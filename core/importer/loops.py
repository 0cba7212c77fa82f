"""A loop over time steps, unrolled by tracing, folded back into a drawn recurrent cell.

``for t in range(T): x_t = x[:, t]; ...`` traces as T copies of the loop's body, one after
the other. When the copies repeat exactly (the same operations on the same modules), the
last copy is taken as the cell: a value it reads from d copies before becomes an edge with
``delay`` d (which must start from zeros, as NeuroCanvas's delay edges do), the sequence
input becomes an Input with ``sequence``, and values used after the loop are collected
with TimeCollect (``[-1]`` of the steps: "last"; ``torch.stack(steps, dim=1)``: "all",
and its ``.mean(dim=1)``: "mean"). docs/format.md section 2.6 is the drawn form.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

FULL = slice(None, None, None)


@dataclass
class Loop:
    T: int
    copies: list[list[str]]  # copies[k][j]: fx node of the body's j-th operation at step k
    index: dict[str, tuple[int, int]] = field(default_factory=dict)  # fx node -> (k, j)
    sequences: set[str] = field(default_factory=set)  # the placeholders sliced per step

    @property
    def last(self) -> int:
        return self.T - 1

    def template(self, j: int) -> str:
        return self.copies[self.last][j]


def step_slice(n, inputs: set[str]) -> tuple[str, int] | None:
    """(placeholder, t) for ``x[:, t]`` of an input, else None."""
    if n.op != "call_function" or n.target is not operator.getitem:
        return None
    src, idx = n.args
    if getattr(src, "name", None) not in inputs or not isinstance(idx, tuple) \
            or len(idx) not in (2, 3) or idx[0] != FULL or not isinstance(idx[1], int):
        return None
    if len(idx) == 3 and idx[2] != FULL:
        return None
    return src.name, idx[1]


def _signature(n, inputs: set[str]):
    s = step_slice(n, inputs)
    if s is not None:
        return ("slice", s[0])
    target = n.target if isinstance(n.target, str) else id(n.target)
    return (n.op, target, len(n.args), tuple(sorted(n.kwargs)))


def find_loop(gm, inputs: list[str]) -> Loop | None:
    """The unrolled time loop of a traced graph, or None where there is none (or it does not
    repeat exactly, and the per-step indexing is then refused as indexing)."""
    nodes = list(gm.graph.nodes)
    names = set(inputs)
    slices: dict[str, dict[int, int]] = {}
    for i, n in enumerate(nodes):
        s = step_slice(n, names)
        if s is not None:
            slices.setdefault(s[0], {}).setdefault(s[1], i)
    if not slices:
        return None
    first = next(iter(slices))
    pos = slices[first]
    T = len(pos)
    if T < 2 or sorted(pos) != list(range(T)):
        return None
    L = pos[1] - pos[0]
    if L <= 0 or any(pos[t] != pos[0] + t * L for t in range(T)):
        return None
    sig = [_signature(n, names) for n in nodes]
    start = pos[0]
    while start > 0 and pos[0] - start < L - 1 and nodes[start - 1].op != "placeholder" \
            and start - 1 + L < len(nodes) and sig[start - 1] == sig[start - 1 + L]:
        start -= 1
    end = start + T * L
    if end > len(nodes):
        return None
    for k in range(1, T):
        for j in range(L):
            if sig[start + k * L + j] != sig[start + j]:
                return None
    copies = [[nodes[start + k * L + j].name for j in range(L)] for k in range(T)]
    loop = Loop(T, copies)
    for k, copy in enumerate(copies):
        for j, name in enumerate(copy):
            loop.index[name] = (k, j)
    for name, ts in slices.items():
        if sorted(ts) == list(range(T)):
            loop.sequences.add(name)
    return loop
