"""Export a graph as a PyTorch module (docs/format.md section 7): ``class Model(nn.Module)`` with
one line per layer in ``__init__``, ``forward`` in graph order with a comment per node, and the
table that maps NeuroCanvas weights files onto its ``state_dict``.

The training part of the exported script (datasets, optimizer, the DistributedDataParallel
loop) is written by ``core.export.pytorch_train``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from core import datasets
from core.export import torch_layers
from core.export.errors import ExportError
from core.export.source import INDENT, LINE, Namer, call, docstring, literal, quoted, statement
from core.export.torch_layers import Expr
from core.layers.base import fmt_shape
from core.network import default_output
from core.plan import Plan, Step, compile_plan
from core.validate import Analysis

# Names the exported file defines or imports at module level, the locals of ``forward`` and
# the attributes of nn.Module: no node id may become one of them.
MODULE_NAMES = (
    "argparse", "csv", "os", "Path", "np", "torch", "dist", "F", "nn", "DistributedDataParallel",
    "WEIGHTS", "FIELDS", "DATA_FILE", "TARGET_COLUMN", "SEED", "BATCH_SIZE", "EPOCHS", "STEPS",
    "VALIDATION_SPLIT", "WEIGHTS_FILE", "Model", "load_weights", "save_weights", "load_data",
    "prepare", "split", "batch_of", "make_optimizer", "train_step", "evaluate", "correct",
    "binary_hinge_loss", "main",
    # the built-in dataset generator a script embeds (core.datasets.builtin)
    *(b.make.__name__ for b in datasets.BUILTINS.values()))
FORWARD_LOCALS = ("self", "batch", "device", "t")
MODULE_ATTRIBUTES = (
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init",
    "children", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr",
    "float", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule",
    "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers", "named_children",
    "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule",
    "share_memory", "state_dict", "to", "to_empty", "train", "training", "type", "xpu",
    "zero_grad", "reset_parameters", "weights")

INT_DTYPES = ("int64", "int32")


@dataclass
class Field:
    """A dataset field the model reads: the argument of ``forward`` that carries it."""
    name: str  # the field, as in the file
    arg: str  # the Python parameter name
    shape: tuple[int, ...]
    dtype: str  # the node's dtype (int64, float32...)
    nodes: list[str] = field(default_factory=list)


class ModelWriter:
    """Writes ``class Model``, ``WEIGHTS`` and the weights functions of one valid graph."""

    def __init__(self, analysis: Analysis):
        self.a = analysis
        self.graph = analysis.graph
        self.losses = analysis.losses()
        self.output = default_output(analysis)
        self.plan: Plan = compile_plan(analysis, [self.output], with_losses=bool(self.losses))
        self.steps = {s.node_id: s for s in self.plan.steps}
        self.uses_f = False  # torch.nn.functional is needed
        self.uses_hinge = False  # the binary hinge helper is needed
        names = Namer(MODULE_NAMES + FORWARD_LOCALS + MODULE_ATTRIBUTES)
        self.inputs: list[Field] = []
        self.targets: list[Field] = []
        self._fields(names)
        # One Python name per node: its value in forward and, for a layer, its attribute.
        self.var: dict[str, str] = {}
        for s in self.plan.steps:
            if s.feed is None:
                self.var[s.node_id] = names(s.node_id)
        self.owner = {nid: analysis.shared_root.get(nid, nid) for nid in self.steps}
        self.attr: dict[str, str] = {}
        for nid in self.steps:
            owner = self.owner[nid]
            if owner not in self.attr and self._module(owner) is not None:
                self.attr[owner] = self.var.get(owner) or names(owner)
        # computed only when forward is asked for the loss: the losses and what needs a target
        self.deferred = self._target_side() | set(self.losses)
        self.seq_vars: dict[str, str] = {}  # sequence Input -> its value at step t
        for s in self.plan.region:
            if s.feed is not None:
                self.seq_vars[s.node_id] = names(f"{self._field_of(s.node_id).arg}_t")
        self.collected = {s.sources[0] for s in self.plan.post if s.layer.collects_steps}
        self.step_lists: dict[str, str] = {}  # region node -> list of its per-step values
        for s in self.plan.region:
            nid = s.node_id
            if nid in self.collected or nid == self.output or nid in self.losses:
                self.step_lists[nid] = names(f"{self.var.get(nid, nid)}_steps")
        self.delays: dict[str, int] = {}  # region node -> largest delay it is read over
        for s in self.plan.region:
            for src, d in zip(s.sources, s.delays, strict=True):
                if d and src in self.steps and self.steps[src].timed:
                    self.delays[src] = max(self.delays.get(src, 0), d)
        self.prev: dict[tuple[str, int], str] = {}  # (node, d) -> its value d steps back
        for nid, most in self.delays.items():
            for d in range(1, most + 1):
                suffix = "prev" if most == 1 else f"prev{d}"
                self.prev[(nid, d)] = names(f"{self.var.get(nid, nid)}_{suffix}")

    # ---- fields and targets ----------------------------------------------------------------
    def _fields(self, names: Namer) -> None:
        """Input fields (positional, file order), then the Target fields (keywords)."""
        by_name: dict[str, Field] = {}
        for role, out in (("input", self.inputs), ("target", self.targets)):
            for nid in self.graph.nodes:
                if nid not in self.steps or self.a.layers[nid].data_role != role:
                    continue
                p = self.a.layers[nid].params
                fld = by_name.get(p["field"]) if role == "input" else None
                if fld is None:
                    fld = Field(p["field"], names(p["field"], prefix="field"),
                                tuple(p["shape"]), p["dtype"])
                    out.append(fld)
                    if role == "input":
                        by_name[p["field"]] = fld
                fld.nodes.append(nid)

    def _field_of(self, nid: str) -> Field:
        return next(f for f in self.inputs + self.targets if nid in f.nodes)

    def _target_side(self) -> set[str]:
        """Nodes that need a target: the Target nodes and everything after them. They run
        only when ``forward`` is given the targets, so none may feed the output."""
        side: set[str] = set()
        for fld in self.targets:
            for nid in fld.nodes:
                side |= {nid} | (nx.descendants(self.a.nx_graph, nid) & set(self.steps))
        if self.output in side:
            raise ExportError("the model's output depends on a Target node; exported models "
                              "take targets only for their losses", node=self.output)
        for nid in side:
            step = self.steps[nid]
            if step.timed and not step.layer.is_loss:
                raise ExportError("a node that runs once per time step depends on a Target "
                                  "node; exported models take targets only for their losses",
                                  node=nid)
        return side

    # ---- value names and kinds -------------------------------------------------------------
    def value(self, src: str, delay: int = 0, timed: bool = False) -> str:
        """The expression for ``src``'s value as the node reading it sees it."""
        if delay and (src, delay) in self.prev:
            return self.prev[(src, delay)]
        if src in self.seq_vars and timed:
            return self.seq_vars[src]
        step = self.steps[src]
        if step.feed is not None:
            return self._field_of(src).arg
        if delay:  # a static value over a delay edge: zeros until step `delay`
            v = self.var[src]
            return f"({v} if t >= {delay} else torch.zeros_like({v}))"
        return self.var[src]

    def is_int(self, src: str) -> bool:
        step = self.steps[src]
        return step.feed is not None and step.layer.params["dtype"] in INT_DTYPES

    def shape(self, nid: str) -> tuple[int, ...]:
        return tuple(self.a.shapes[nid])

    # ---- __init__ --------------------------------------------------------------------------
    def _module(self, nid: str) -> str | None:
        """The constructor of node ``nid``'s module, or None for what forward writes inline."""
        return torch_layers.module_source(self.a.layers[nid])

    def attr_of(self, nid: str) -> str | None:
        """The attribute of the module node ``nid`` uses (its owner's, when shared)."""
        return self.attr.get(self.owner[nid])

    def init_lines(self) -> list[str]:
        ind = INDENT * 2
        lines = [f"{INDENT}def __init__(self) -> None:", f"{ind}super().__init__()"]
        users: dict[str, list[str]] = {}
        for nid, owner in self.owner.items():
            users.setdefault(owner, []).append(nid)
        for owner, attr in self.attr.items():
            others = [n for n in users[owner] if n != owner]
            note = f"also used by {', '.join(others)}" if others else ""
            if owner not in self.steps:
                note = f"{owner}'s parameters, used by {', '.join(others)}"
            lines += statement(f"self.{attr} = {self._module(owner)}", ind, note)
        if self._initialised():
            lines.append(f"{ind}self.reset_parameters()")
        return lines

    def _initialised(self) -> list[tuple[str, bool, bool]]:
        """(attribute, He?, has bias) of the Dense and Conv2D modules, whose initialisation
        NeuroCanvas chooses (the other layers use PyTorch's, as NeuroCanvas does)."""
        out = []
        for owner, attr in self.attr.items():
            layer = self.a.layers[owner]
            if torch_layers.entry(layer).reinit:
                he = any(self.a.layers[e.dst].relu_family
                         for e in self.graph.out_edges(owner) if e.dst in self.a.layers)
                out.append((attr, he, bool(layer.params["bias"])))
        return out

    def reset_lines(self) -> list[str]:
        init = self._initialised()
        if not init:
            return []
        ind = INDENT * 2
        lines = [f"{INDENT}def reset_parameters(self) -> None:",
                 f'{ind}"""NeuroCanvas\'s initialisation: He normal for a layer feeding a '
                 "ReLU-family",
                 f"{ind}activation, Glorot uniform for the other Dense and Conv2D layers, "
                 "zero biases.",
                 f'{ind}Recurrent layers, Embedding and BatchNorm keep PyTorch\'s, as in '
                 'NeuroCanvas."""']
        for attr, he, bias in init:
            if he:
                lines.append(f'{ind}nn.init.kaiming_normal_(self.{attr}.weight, '
                             'nonlinearity="relu")')
            else:
                lines.append(f"{ind}nn.init.xavier_uniform_(self.{attr}.weight)")
            if bias:
                lines.append(f"{ind}nn.init.zeros_(self.{attr}.bias)")
        return lines

    # ---- weights ---------------------------------------------------------------------------
    def weight_entries(self) -> list[tuple[str, str, bool]]:
        """(weights-file key, state_dict name, transposed) of every parameter and buffer."""
        out = []
        for owner, attr in self.attr.items():
            layer = self.a.layers[owner]
            names = torch_layers.torch_names(layer)
            for key in list(layer.param_shapes()) + list(layer.buffer_shapes()):
                torch_name, transposed = names[key]
                out.append((f"{owner}/{key}", f"{attr}.{torch_name}", transposed))
        return out

    def weight_tensors(self) -> list[str]:
        """``self.<attr>.<name>`` of every weight (our names starting with W): the tensors
        L1 and L2 regularization apply to."""
        return [f"self.{name}" for key, name, _ in self.weight_entries()
                if key.rsplit("/", 1)[1].startswith("W")]

    def weights_table(self) -> list[str]:
        lines = ["# Where each array of a NeuroCanvas weights file goes in Model's state_dict, and",
                 "# whether it is stored transposed (NeuroCanvas keeps Dense and recurrent",
                 "# weights as [in, out], PyTorch as [out, in])."]
        entries = self.weight_entries()
        if not entries:
            return lines + ["WEIGHTS: dict[str, tuple[str, bool]] = {}"]
        lines.append("WEIGHTS = {")
        for key, name, transposed in entries:
            lines.append(f"{INDENT}{literal(key)}: ({literal(name)}, {transposed}),")
        return lines + ["}"]

    # ---- forward ---------------------------------------------------------------------------
    def comment(self, nid: str) -> str:
        shape = fmt_shape(self.a.shapes.get(nid))
        text = f"{nid}: {shape}"
        if self.steps[nid].timed:
            text += " per step"
        owner = self.owner[nid]
        if owner != nid:
            text += f", {owner}'s parameters"
        label = self.graph.nodes[nid].extra.get("label")
        if isinstance(label, str) and label:
            text += f" {quoted(label, 30)}"
        return text

    def expr(self, step: Step, ins: list[str]) -> Expr:
        """The expression computing ``step`` from its input values ``ins``."""
        return torch_layers.expression(self, step, ins)

    def assign(self, var: str, e: Expr, indent: str, comment: str) -> list[str]:
        if e.op:
            code = f"{var} = {e.op.join(e.args)}"
            if len(indent + code) <= LINE:
                return statement(code, indent, comment)
            op = e.op.strip()
            return ([f"{indent}# {comment}"[:LINE], f"{indent}{var} = ("]
                    + [f"{indent}{INDENT}{e.args[0]}"]
                    + [f"{indent}{INDENT}{op} {a}" for a in e.args[1:]] + [f"{indent})"])
        if e.head is None:
            return statement(f"{var} = {e.args[0]}", indent, comment)
        code = f"{var} = {e.head}({', '.join(e.args)}){e.tail}"
        if len(indent + code) <= LINE:
            return statement(code, indent, comment)
        return [f"{indent}# {comment}"[:LINE]] + call(f"{var} = {e.head}", e.args, indent,
                                                      e.tail)

    def node_lines(self, step: Step, indent: str) -> list[str]:
        nid = step.node_id
        timed = step.timed
        ins = [self.value(src, d, timed) for src, d in zip(step.sources, step.delays,
                                                             strict=True)]
        lines = self.assign(self.var[nid], self.expr(step, ins), indent, self.comment(nid))
        if nid in self.step_lists:
            lines.append(f"{indent}{self.step_lists[nid]}.append({self.var[nid]})")
        return lines

    def targets_missing(self) -> str:
        """The condition under which forward returns the output alone."""
        if not self.targets:  # losses of inputs only (a triplet loss): asked for by a flag
            return "not with_loss"
        return " or ".join(f"{f.arg} is None" for f in self.targets)

    def targets_given(self) -> str:
        if not self.targets:
            return "with_loss"
        return " and ".join(f"{f.arg} is not None" for f in self.targets)

    def forward_lines(self) -> list[str]:
        ind = INDENT * 2
        plan = self.plan
        lines = self._forward_head()
        pre_main = [s for s in plan.pre if s.feed is None and s.node_id not in self.deferred]
        pre_loss = [s for s in plan.pre if s.feed is None and s.node_id in self.deferred]
        post_main = [s for s in plan.post if s.node_id not in self.deferred]
        post_loss = [s for s in plan.post if s.node_id in self.deferred]
        for s in pre_main:
            lines += self.node_lines(s, ind)
        if plan.region:
            # what a loss inside the loop needs from a target (a reshaped Target) comes first
            early = [s for s in pre_loss if not s.layer.is_loss]
            if early and any(s.node_id in self.deferred for s in plan.region):
                lines.append(f"{ind}if {self.targets_given()}:")
                for s in early:
                    lines += self.node_lines(s, ind + INDENT)
                pre_loss = [s for s in pre_loss if s.layer.is_loss]
            lines += self._region_lines()
        for s in post_main:
            lines += self.node_lines(s, ind)
        out = self._output_value()
        if not self.losses:
            return lines + [f"{ind}return {out}"]
        lines += [f"{ind}if {self.targets_missing()}:", f"{ind}{INDENT}return {out}"]
        for s in pre_loss + post_loss:
            lines += self.node_lines(s, ind)
        for nid in self.losses:
            if self.steps[nid].timed:
                lines += statement(f"{self.var[nid]} = torch.stack({self.step_lists[nid]})"
                                   ".mean()", ind, f"{nid}: mean over the time steps")
        total = " + ".join(self.var[n] for n in self.losses)
        return lines + [f"{ind}return {out}, {total}"]

    def _output_value(self) -> str:
        if self.output in self.step_lists:
            return f"torch.stack({self.step_lists[self.output]}, dim=1)"
        return self.value(self.output)

    def _forward_head(self) -> list[str]:
        ind = INDENT * 2
        params = ["self"] + [f"{f.arg}: torch.Tensor" for f in self.inputs]
        if self.targets:
            params += ["*"] + [f"{f.arg}: torch.Tensor | None = None" for f in self.targets]
        elif self.losses:
            params += ["*", "with_loss: bool = False"]
        ret = "torch.Tensor | tuple[torch.Tensor, torch.Tensor]" if self.losses \
            else "torch.Tensor"
        lines = call("def forward", params, INDENT, f" -> {ret}:")
        out_shape = self.a.shapes[self.output]
        if self.output in self.step_lists:
            out_shape = (self.a.steps,) + tuple(out_shape)
        doc = [f"The output of {self.output}, {_batch_shape(out_shape)}, from the inputs "
               "(batch first):"]
        for f in self.inputs:
            doc.append(f"{INDENT}{f.arg}: field {quoted(f.name)}, "
                       f"{_batch_shape(f.shape, self._seq(f))} {f.dtype}")
        if self.losses and not self.targets:
            doc.append("With with_loss, (output, loss), the loss being the sum of the graph's "
                       "losses.")
        elif self.losses:
            doc.append("Given the targets too, (output, loss), the loss being the sum of the "
                       "graph's losses:")
            for f in self.targets:
                doc.append(f"{INDENT}{f.arg}: field {quoted(f.name)}, "
                           f"{_batch_shape(f.shape)} {f.dtype}")
        doc.append("Comments give each node's output shape per sample.")
        return lines + docstring(doc, ind)

    def _seq(self, f: Field) -> bool:
        return any(self.a.layers[n].params.get("sequence") for n in f.nodes)

    def _region_lines(self) -> list[str]:
        ind = INDENT * 2
        body = ind + INDENT
        plan = self.plan
        seq = next(s for s in plan.region if s.feed is not None)
        first = self._field_of(seq.node_id).arg
        lines = [f"{ind}# the recurrent part: once per time step, {plan.T} steps"]
        if self.prev:
            lines.append(f"{ind}batch, device = {first}.shape[0], {first}.device")
            for (nid, d), var in self.prev.items():
                shape = ", ".join(str(n) for n in self.shape(nid))
                lines += statement(f"{var} = torch.zeros(batch, {shape}, device=device)", ind,
                                   f"{nid} {d} step{'s' if d > 1 else ''} back")
        for var in self.step_lists.values():
            lines.append(f"{ind}{var} = []")
        lines.append(f"{ind}for t in range({first}.shape[1]):")
        for s in plan.region:
            if s.feed is not None:
                lines += statement(f"{self.seq_vars[s.node_id]} = "
                                   f"{self._field_of(s.node_id).arg}[:, t]", body,
                                   f"{s.node_id} at step t: {fmt_shape(self.shape(s.node_id))}")
                if s.node_id in self.step_lists:
                    lines.append(f"{body}{self.step_lists[s.node_id]}.append("
                                 f"{self.seq_vars[s.node_id]})")
            elif s.node_id in self.deferred:  # a loss: only when the targets are given
                lines.append(f"{body}if {self.targets_given()}:")
                lines += self.node_lines(s, body + INDENT)
            else:
                lines += self.node_lines(s, body)
        for nid, most in self.delays.items():
            olds = [self.prev[(nid, d)] for d in range(most, 0, -1)]
            now = self.seq_vars.get(nid) or self.var[nid]
            news = [self.prev[(nid, d)] for d in range(most - 1, 0, -1)] + [now]
            lines.append(f"{body}{', '.join(olds)} = {', '.join(news)}")
        return lines

    def weights_method(self) -> list[str]:
        ind = INDENT * 2
        lines = [f"{INDENT}def weights(self) -> list[torch.Tensor]:",
                 f'{ind}"""The weights that L1 and L2 regularization apply to (not biases or '
                 'BatchNorm)."""']
        return lines + _list_return(self.weight_tensors(), ind)

    def model_lines(self, with_weights: bool = False) -> list[str]:
        forward = self.forward_lines()  # first: it finds out which helpers are used
        lines = ["class Model(nn.Module):"]
        lines += docstring([f"The graph {quoted(self.graph.name)} as a PyTorch module."], INDENT)
        lines.append("")
        lines += self.init_lines() + [""]
        reset = self.reset_lines()
        if reset:
            lines += reset + [""]
        lines += forward
        if with_weights:
            lines += [""] + self.weights_method()
        return lines


def _list_return(items: list[str], indent: str) -> list[str]:
    one = f"{indent}return [{', '.join(items)}]"
    if len(one) <= LINE:
        return [one]
    return [f"{indent}return ["] + [f"{indent}{INDENT}{i}," for i in items] + [f"{indent}]"]


def _batch_shape(shape, sequence: bool = False) -> str:
    dims = ["B"] + [str(d) for d in shape]
    if sequence:
        dims[1] = f"T={shape[0]}"
    return "[" + ", ".join(dims) + "]"
