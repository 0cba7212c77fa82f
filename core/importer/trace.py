"""Trace a module with ``torch.fx`` and find each traced node's shape and source line."""
from __future__ import annotations

import ast
import contextlib
import inspect
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.importer.errors import TorchImportError
from core.importer.loading import need_torch, user_frame

LENGTH_FUNCTIONS = ("last_valid", "valid_steps")  # an export's helpers on sequence lengths
BATCH = 3  # samples of the example inputs: a batch axis no per-sample axis is likely to match

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<fn>\S+)\n(?P<code>.*)')


@dataclass
class Traced:
    gm: object  # torch.fx.GraphModule
    inputs: list[str]  # the placeholders fed by the user's inputs, in forward's order
    fixed: set[str]  # placeholders given a constant (arguments with a default)
    examples: list  # one example tensor per input, BATCH samples
    outputs: list  # the torch module's outputs on the examples (evaluation mode)
    where: dict[str, str] = field(default_factory=dict)  # fx node -> "file:line: code"
    assigned: dict[str, str] = field(default_factory=dict)  # fx node -> the name it is assigned
    lengths: set[str] = field(default_factory=set)  # inputs that are sequence lengths


def forward_inputs(model) -> tuple[list[str], dict]:
    """(names of forward's inputs, constants for the arguments with defaults)."""
    sig = inspect.signature(model.forward)
    names, fixed = [], {}
    for name, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TorchImportError(f"forward takes *{name}: name its inputs for tracing")
        if p.default is p.empty:
            names.append(name)
        else:
            fixed[name] = p.default
    return names, fixed


def trace(model, path: str, shapes: list[tuple[int, ...]], dtypes: list[str],
          low: list[int] | None = None) -> Traced:
    torch = need_torch()
    import torch.fx as fx
    from torch.fx.passes.shape_prop import ShapeProp

    names, fixed = forward_inputs(model)
    if len(shapes) != len(names):
        raise TorchImportError(f"forward takes {len(names)} input{'s' * (len(names) != 1)} "
                               f"({', '.join(names)}) but {len(shapes)} --input-shape "
                               f"{'were' if len(shapes) != 1 else 'was'} given")
    model.eval()
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(model, concrete_args=fixed or None)
    except Exception as e:  # noqa: BLE001 - control flow fx cannot follow, etc.
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        where = user_frame(e.__traceback__, path)
        if "pack_padded_sequence" in str(where or ""):  # no tracer follows a packed sequence
            raise TorchImportError("torch.fx cannot trace a packed sequence "
                                   "(pack_padded_sequence): run the recurrent module on the "
                                   "padded batch and take the valid steps out of it (as a "
                                   "NeuroCanvas export does with packed=False)",
                                   where=where, file=path) from None
        raise TorchImportError(f"torch.fx cannot trace {type(model).__name__}.forward: {msg}",
                               where=where, file=path) from None
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    gm.graph.eliminate_dead_code()  # what forward computes and throws away ("h, c = ...")
    gen = torch.Generator().manual_seed(0)
    examples = []
    # sequence lengths: the inputs a NeuroCanvas export hands to last_valid / valid_steps
    lengths = {a.target for n in gm.graph.nodes if n.op == "call_function"
               and getattr(n.target, "__name__", "") in LENGTH_FUNCTIONS
               for a in n.args[1:2] if getattr(a, "op", None) == "placeholder"}
    steps = min((s[0] for s, name in zip(shapes, names, strict=False)
                 if s and name not in lengths), default=1)
    for i, (shape, dtype) in enumerate(zip(shapes, dtypes, strict=True)):
        if names[i] in lengths:  # 1..T valid steps a sample
            examples.append(torch.randint(1, steps + 1, (BATCH, *shape), generator=gen,
                                          dtype=getattr(torch, dtype)))
            continue
        if dtype in ("int64", "int32"):
            hi = max(1, (low or [2] * len(shapes))[i])
            examples.append(torch.randint(0, hi, (BATCH, *shape), generator=gen,
                                          dtype=getattr(torch, dtype)))
        else:
            examples.append(torch.randn((BATCH, *shape), generator=gen,
                                        dtype=getattr(torch, dtype)))
    try:
        with torch.no_grad():
            outputs = model(*examples)  # first: its errors point into the user's code
            with contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints tracebacks
                ShapeProp(gm).propagate(*examples)
    except Exception as e:  # noqa: BLE001 - inputs of the wrong shape, mostly
        e = e.__cause__ or e  # ShapeProp's own wrapper says less than torch's error
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        shp = ", ".join(str(list(s)) for s in shapes)
        if any(isinstance(m, torch.nn.Embedding) for m in model.modules()) \
                and not any(d.startswith("int") for d in dtypes):
            msg += " (an Embedding reads indices: give --input-dtype int64)"
        raise TorchImportError(f"the module fails on inputs of shape {shp} per sample: {msg}",
                               where=user_frame(e.__traceback__, path), file=path) from None
    inputs = [n.name for n in gm.graph.nodes if n.op == "placeholder" and n.target in names]
    fixed_nodes = {n.name for n in gm.graph.nodes if n.op == "placeholder"
                   and n.target not in names}
    t = Traced(gm, inputs, fixed_nodes, examples, _flat_tensors(outputs),
               lengths={n.name for n in gm.graph.nodes
                        if n.op == "placeholder" and n.target in lengths})
    last_of_line: dict[tuple[str, int], str] = {}
    for node in gm.graph.nodes:
        loc = _location(node.meta.get("stack_trace") or "", torch)
        if loc is not None:
            file, line, code = loc
            t.where[node.name] = f"{Path(file).name}:{line}: {code}"
            if node.op != "output":
                last_of_line[(file, line)] = node.name
    for name in last_of_line.values():
        # the name a line assigns goes to its last (outermost) operation
        target = _assigned_name(t.where[name].split(": ", 1)[1])
        if target:
            t.assigned[name] = target
    return t


def _flat_tensors(value) -> list:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_tensors(v)]
    return []


def _location(stack: str, torch) -> tuple[str, int, str] | None:
    """The innermost frame of a node's stack trace outside torch: (file, line, code)."""
    torch_dir = str(Path(torch.__file__).resolve().parent)
    found = None
    for m in _FRAME.finditer(stack):
        if not str(Path(m["file"]).resolve()).startswith(torch_dir):
            found = (m["file"], int(m["line"]), m["code"].strip())
    return found


def _assigned_name(code: str) -> str | None:
    """``h`` for the line ``h = self.h(add)  # comment``: a single name assigned."""
    try:
        tree = ast.parse(code.split("#", 1)[0].strip() or "pass")
    except SyntaxError:
        return None
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign):
        targets = tree.body[0].targets
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            return targets[0].id
    return None
