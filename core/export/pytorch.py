"""Export a graph as a PyTorch module (docs/format.md section 7): ``class Model(nn.Module)`` with
one line per layer in ``__init__``, a pure ``forward(*inputs)`` in graph order with a comment
per node that returns the model's outputs only, the losses in ``Model.losses`` /
``Model.loss``, the ``WithLoss`` wrapper that training (and DistributedDataParallel) calls, and
the table that maps NeuroCanvas weights files onto the ``state_dict``.

``forward`` is written so that ``torch.jit.script``, ``torch.fx.symbolic_trace``,
``torch.export.export`` and both ONNX exporters take it: positional tensors only, no optional
arguments, one return type, and a recurrent cycle unrolled over the fixed number of time
steps of its sequence input (no Python control flow that depends on a tensor).

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
# ``losses`` and the attributes of nn.Module: no node id may become one of them.
MODULE_NAMES = (
    "argparse", "csv", "json", "math", "os", "time", "Path", "NamedTuple", "np", "torch",
    "dist", "F", "nn", "DistributedDataParallel", "DataLoader", "Dataset",
    "DistributedSampler", "WEIGHTS", "FIELDS", "INPUTS", "OUTPUTS", "CLASSIFIERS",
    "DATA_FILE", "TARGET_COLUMN", "SEED", "BATCH_SIZE", "EPOCHS", "STEPS", "SHUFFLE", "LR",
    "VALIDATION_SPLIT", "WEIGHTS_FILE", "Model", "Outputs", "WithLoss", "load_weights",
    "save_weights", "load_data", "prepare", "split", "Fields", "as_tensors", "EpochOrder",
    "AllReduceSum", "AllReduceBatchNorm", "sync_batchnorm", "epoch_object", "emit", "LOSSES",
    "USE_CUDA", "make_optimizer", "grad_norms", "train_step",
    "evaluate", "correct", "counts", "save_checkpoint", "binary_hinge_loss", "main",
    # tuple attributes: an output of several is a field of a NamedTuple
    "count", "index",
    # the built-in dataset generator a script embeds (core.datasets.builtin)
    *(b.make.__name__ for b in datasets.BUILTINS.values()))
FORWARD_LOCALS = ("self", "batch", "device", "t", "outputs", "targets")
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
    "zero_grad", "reset_parameters", "weights", "loss", "losses", "model")

INT_DTYPES = ("int64", "int32")


@dataclass
class Field:
    """A dataset field the model reads: the argument of ``forward`` that carries it (or, for
    a field only the losses read, the name its value gets in ``losses``)."""
    name: str  # the field, as in the file
    arg: str  # the Python parameter name
    shape: tuple[int, ...]
    dtype: str  # the node's dtype (int64, float32...)
    nodes: list[str] = field(default_factory=list)


class ModelWriter:
    """Writes ``class Model``, ``Outputs``, ``WithLoss``, ``WEIGHTS`` and the weights
    functions of one valid graph.

    outputs: the nodes ``forward`` returns (``--node``); by default the values the losses read
    from the model (the node feeding each loss's ``pred``, first the one ``predict`` reports),
    or the last node of a graph without a loss.
    """

    def __init__(self, analysis: Analysis, outputs: list[str] | None = None):
        self.a = analysis
        self.graph = analysis.graph
        self.losses = analysis.losses()
        self.output = default_output(analysis)
        # every node the losses and the default output need: for the losses' part
        self.full: Plan = compile_plan(analysis, [self.output], with_losses=bool(self.losses))
        self.all_steps = {s.node_id: s for s in self.full.steps}
        self.uses_f = False  # torch.nn.functional is needed
        self.uses_hinge = False  # the binary hinge helper is needed
        names = Namer(MODULE_NAMES + FORWARD_LOCALS + MODULE_ATTRIBUTES)
        self.targets: list[Field] = []  # the fields the losses read (by name, from a dict)
        self.deferred = self._target_side() | set(self.losses)
        self.loss_reads = self._loss_reads()
        self.outputs = self._outputs(outputs)
        self.output = self.outputs[0]
        # the losses can be computed from forward's outputs: the model can be trained
        self.trainable = bool(self.losses) and set(self.loss_reads) <= set(self.outputs)
        self.plan: Plan = compile_plan(analysis, self.outputs, with_losses=False)
        self.steps = {s.node_id: s for s in self.plan.steps}
        self.inputs: list[Field] = []
        self.lengths_args: dict[str, str] = {}  # a lengths field -> its argument of forward
        self._fields(names)
        # with sequence lengths in the recurrent loop: the [B, T] mask of valid steps and
        # the batch rows, computed once before the loop (docs/format.md section 2.6)
        lengths = self.plan.lengths or self.full.lengths
        self.valid_var = names("valid") if lengths else None
        # a built-in recurrent layer on variable-length sequences: Model(packed=...)
        self.packs = any(getattr(st.layer, "lengths_field", None) is not None
                         and torch_layers.entry(st.layer).packs for st in self.plan.steps)
        self.rows_var = names("rows") if lengths else None
        # One Python name per node: its value in forward and, for a layer, its attribute.
        self.var: dict[str, str] = {}
        for s in self.full.steps + self.plan.steps:
            if s.feed is None and s.node_id not in self.var:
                self.var[s.node_id] = names(s.node_id)
        for nid in self.outputs:  # an output that is an Input node is named after its node
            if nid not in self.var:
                self.var[nid] = names(nid)
        # the nodes the file computes: forward's, and the losses' when it has them
        self.used = set(self.steps) | (self.deferred if self.trainable else set())
        self.owner = {nid: analysis.shared_root.get(nid, nid) for nid in self.used}
        self.attr: dict[str, str] = {}
        for nid in [n for n in self.all_steps if n in self.used] + list(self.steps):
            owner = self.owner[nid]
            if owner not in self.attr and self._module(owner) is not None:
                self.attr[owner] = self.var.get(owner) or names(owner)
        self.seq_vars: dict[str, str] = {}  # sequence Input -> its value at step t
        for s in self.plan.region + self.full.region:
            if s.feed is not None and s.node_id not in self.seq_vars:
                self.seq_vars[s.node_id] = names(f"{self._field_of(s.node_id).arg}_t")
        self.collected = {s.sources[0] for s in self.plan.post if s.layer.collects_steps}
        self.step_lists: dict[str, str] = {}  # region node -> list of its per-step values
        for s in self.plan.region:
            nid = s.node_id
            if nid in self.collected or nid in self.outputs:
                self.step_lists[nid] = names(f"{self.var.get(nid, nid)}_steps")
        self.loss_lists: dict[str, str] = {}  # a loss inside the region -> its per-step values
        for s in self.full.region:
            if s.node_id in self.losses:
                self.loss_lists[s.node_id] = names(f"{self.var[s.node_id]}_steps")
        self.delays: dict[str, int] = {}  # region node -> largest delay forward reads it over
        for s in self.plan.region:
            for src, d in zip(s.sources, s.delays, strict=True):
                if d and src in self.steps and self.steps[src].timed:
                    self.delays[src] = max(self.delays.get(src, 0), d)
        self.prev: dict[tuple[str, int], str] = {}  # (node, d) -> its value d steps back
        for nid, most in self.delays.items():
            for d in range(1, most + 1):
                suffix = "prev" if most == 1 else f"prev{d}"
                self.prev[(nid, d)] = names(f"{self.var.get(nid, nid)}_{suffix}")
        self.in_losses = False  # writing Model.losses (values come from outputs and targets)
        self.row_filter: str | None = None  # the mask a loss at one step reads rows by

    # ---- fields, targets and outputs ---------------------------------------------------------
    def _fields(self, names: Namer) -> None:
        """Input fields forward reads (positional, file order), then the fields the losses
        read (the Target fields and any Input field a loss reads directly)."""
        by_name: dict[str, Field] = {}
        for nid in self.graph.nodes:
            if nid not in self.steps or self.a.layers[nid].data_role != "input":
                continue
            self._add(nid, by_name, self.inputs, names)
        for nid in self.graph.nodes:  # each sample's length: an argument after the inputs
            lf = self.a.layers[nid].params.get("lengths") if nid in self.steps else None
            if lf and self.a.layers[nid].data_role == "input":
                if lf not in by_name:
                    by_name[lf] = Field(lf, names(lf, prefix="field"), (), "int64")
                    self.inputs.append(by_name[lf])
                self.lengths_args[lf] = by_name[lf].arg
        loss_names: dict[str, Field] = {}
        readers = [s for s in self.full.steps if s.node_id in self.deferred]
        read = {src for s in readers for src in s.sources}
        for nid in self.graph.nodes:
            if nid in self.all_steps and self.all_steps[nid].feed is not None and (
                    nid in read or nid in self.deferred):
                known = by_name.get(self.a.layers[nid].params["field"])
                if known is not None and nid in known.nodes:
                    if known.name not in loss_names:
                        loss_names[known.name] = known
                        self.targets.append(known)
                    continue
                self._add(nid, loss_names, self.targets, names)

    def _add(self, nid: str, by_name: dict[str, Field], out: list[Field], names: Namer) -> None:
        p = self.a.layers[nid].params
        fld = by_name.get(p["field"])
        if fld is None:
            fld = Field(p["field"], names(p["field"], prefix="field"), tuple(p["shape"]),
                        p["dtype"])
            by_name[p["field"]] = fld
            out.append(fld)
        fld.nodes.append(nid)

    def _field_of(self, nid: str) -> Field:
        return next(f for f in self.inputs + self.targets if nid in f.nodes)

    def _target_side(self) -> set[str]:
        """Nodes that need a target: the Target nodes and everything after them. They are
        computed in ``losses``, so none may feed the output or run once per time step."""
        side: set[str] = set()
        for nid, step in self.all_steps.items():
            if step.layer.data_role == "target":
                side |= {nid} | (nx.descendants(self.a.nx_graph, nid) & set(self.all_steps))
        if self.output in side:
            raise ExportError("the model's output depends on a Target node; exported models "
                              "take targets only for their losses", node=self.output)
        for nid in side:
            step = self.all_steps[nid]
            if step.timed and not step.layer.is_loss:
                raise ExportError("a node that runs once per time step depends on a Target "
                                  "node; exported models take targets only for their losses",
                                  node=nid)
        return side

    def _loss_reads(self) -> list[str]:
        """The model's values the losses read, loss by loss in graph order and port by port:
        the node feeding each loss's pred first."""
        out: list[str] = []
        for loss in self.losses:
            need = nx.ancestors(self.a.nx_graph, loss)
            readers = [self.all_steps[loss]] + [s for s in self.full.steps
                                                 if s.node_id in need and s.node_id in
                                                 self.deferred]
            for s in readers:
                for src in s.sources:
                    if src not in self.deferred and self.all_steps[src].feed is None \
                            and src not in out:
                        out.append(src)
        return out or [self.output]

    def _outputs(self, wanted: list[str] | None) -> list[str]:
        if not wanted:
            return self.loss_reads if self.losses else [self.output]
        out: list[str] = []
        for nid in wanted:
            if nid not in self.a.layers:
                raise ExportError(f"no node {nid!r} in the graph", node=nid)
            if nid in self.deferred:
                raise ExportError("a loss, or a node that depends on a Target node, cannot be "
                                  "an output of the model", node=nid)
            if nid not in out:
                out.append(nid)
        return out

    @property
    def several(self) -> bool:
        return len(self.outputs) > 1

    # ---- value names and kinds -------------------------------------------------------------
    def value(self, src: str, delay: int = 0, timed: bool = False) -> str:
        """The expression for ``src``'s value as the node reading it sees it."""
        if self.in_losses:
            return self._loss_value(src, delay, timed)
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

    def _loss_value(self, src: str, delay: int, timed: bool) -> str:
        """In ``losses``: an output (per step at ``t`` when it is one of the recurrent loop,
        stacked [B, T, ...] by forward), a field, or a value computed there."""
        step = self.all_steps[src]
        if step.feed is not None:
            v = self._field_of(src).arg
            per_step = timed and self.a.layers[src].params.get("sequence")
        else:
            v = self.var[src]
            per_step = timed and step.timed
        if not per_step:
            return f"({v} if t >= {delay} else torch.zeros_like({v}))" if delay else v
        if delay:
            return f"({v}[:, t - {delay}] if t >= {delay} else torch.zeros_like({v}[:, 0]))"
        return f"{v}[:, t]"

    def lengths_arg(self, lengths_field: str | None) -> str | None:
        """The variable holding a lengths field's values (None for None)."""
        return None if lengths_field is None else self.lengths_args[lengths_field]

    def _valid_at(self, nid: str, t: str = "t") -> str:
        """The mask of samples valid at step ``t``, shaped to broadcast over ``nid``'s value."""
        return f"{self.valid_var}[:, {t}{', None' * len(self.shape(nid))}]"

    def is_int(self, src: str) -> bool:
        step = self.all_steps.get(src) or self.steps[src]
        return step.feed is not None and step.layer.params["dtype"] in INT_DTYPES

    def shape(self, nid: str) -> tuple[int, ...]:
        return tuple(self.a.shapes[nid])

    def output_shape(self, nid: str) -> tuple[int, ...]:
        """The per-sample shape forward returns for output ``nid`` ([T, ...] for a node
        of the recurrent loop)."""
        if nid in self.step_lists:
            return (self.a.steps,) + self.shape(nid)
        return self.shape(nid)

    # ---- __init__ --------------------------------------------------------------------------
    def _module(self, nid: str) -> str | None:
        """The constructor of node ``nid``'s module, or None for what forward writes inline."""
        return torch_layers.module_source(self.a.layers[nid])

    def attr_of(self, nid: str) -> str | None:
        """The attribute of the module node ``nid`` uses (its owner's, when shared)."""
        return self.attr.get(self.owner[nid])

    def init_lines(self) -> list[str]:
        ind = INDENT * 2
        if self.packs:  # built-in recurrent layers on variable-length sequences
            lines = [f"{INDENT}def __init__(self, packed: bool = True) -> None:",
                     f"{ind}super().__init__()"]
            lines += statement("self.packed = packed", ind,
                               "pack_padded_sequence; False for torch.fx, torch.export, ONNX")
        else:
            lines = [f"{INDENT}def __init__(self) -> None:", f"{ind}super().__init__()"]
        users: dict[str, list[str]] = {}
        for nid, owner in self.owner.items():
            users.setdefault(owner, []).append(nid)
        for owner, attr in self.attr.items():
            others = [n for n in users[owner] if n != owner]
            note = f"also used by {', '.join(others)}" if others else ""
            if owner not in self.used:
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

    def names_lines(self) -> list[str]:
        """INPUTS and OUTPUTS: the field behind each argument of forward, the node behind
        each output (the names an ONNX export gives them)."""
        lines = ["# The field behind each argument of Model.forward, and the node behind each of",
                 "# its outputs, in order."]
        lines += _tuple_lines("INPUTS", [f.name for f in self.inputs])
        return lines + _tuple_lines("OUTPUTS", self.outputs)

    # ---- forward ---------------------------------------------------------------------------
    def comment(self, nid: str) -> str:
        shape = fmt_shape(self.a.shapes.get(nid))
        text = f"{nid}: {shape}"
        if self.all_steps.get(nid, self.steps.get(nid)).timed:
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
        rows = self.row_filter if step.layer.is_loss else None
        if rows:  # a loss at one step with sequence lengths: the valid samples only
            ins = [f"{v}[{rows}]" for v in ins]
        lines = self.assign(self.var[nid], self.expr(step, ins), indent, self.comment(nid))
        lists = self.loss_lists if self.in_losses else self.step_lists
        if nid in lists:
            value = f"{self.var[nid]} * {rows}.sum()" if rows else self.var[nid]
            lines.append(f"{indent}{lists[nid]}.append({value})")
        return lines

    def return_type(self) -> str:
        return "Outputs" if self.several else "torch.Tensor"

    def forward_lines(self) -> list[str]:
        ind = INDENT * 2
        plan = self.plan
        lines = self._forward_head()
        for s in plan.pre:
            if s.feed is None:
                lines += self.node_lines(s, ind)
        if plan.region:
            lines += self._region_lines()
        for s in plan.post:
            lines += self.node_lines(s, ind)
        values = [self._output_value(n) for n in self.outputs]
        if not self.several:
            return lines + [f"{ind}return {values[0]}"]
        return lines + call("return Outputs", values, ind)

    def _output_value(self, nid: str) -> str:
        if nid in self.step_lists:
            stacked = f"torch.stack({self.step_lists[nid]}, dim=1)"
            if self.plan.lengths:  # zeros at the padded steps
                return f"{stacked} * {self.valid_var}[:, :{', None' * len(self.shape(nid))}]"
            return stacked
        return self.value(nid)

    def _forward_head(self) -> list[str]:
        ind = INDENT * 2
        params = ["self"] + [f"{f.arg}: torch.Tensor" for f in self.inputs]
        lines = call("def forward", params, INDENT, f" -> {self.return_type()}:")
        if self.several:
            doc = ["The outputs (an Outputs tuple, batch first) from the inputs (batch first):"]
        else:
            doc = [f"The output of {self.outputs[0]}, "
                   f"{_batch_shape(self.output_shape(self.outputs[0]))}, from the inputs "
                   "(batch first):"]
        for f in self.inputs:
            doc.append(f"{INDENT}{f.arg}: field {quoted(f.name)}, "
                       f"{_batch_shape(f.shape, self._seq(f))} {f.dtype}")
        if self.trainable:
            doc.append("The losses are Model.losses(outputs, targets).")
        doc.append("Comments give each node's output shape per sample.")
        return lines + docstring(doc, ind)

    def _seq(self, f: Field) -> bool:
        return any(self.a.layers[n].params.get("sequence") for n in f.nodes)

    def _state_source(self) -> tuple[str, str]:
        """(batch, like): the tensors whose batch size and whose dtype and device the
        recurrent state takes: the first input, and the first floating-point input (else a
        parameter of the model), so that ``Model().double()`` and ``.to(device)`` carry it."""
        batch = self.inputs[0].arg
        floats = [f.arg for f in self.inputs if f.dtype not in INT_DTYPES]
        if floats:
            return batch, floats[0]
        for _, name, _ in self.weight_entries():
            return batch, f"self.{name}"
        return batch, batch

    def _region_lines(self) -> list[str]:
        ind = INDENT * 2
        body = ind + INDENT
        plan = self.plan
        lines = [f"{ind}# the recurrent part: once per time step, {plan.T} steps (the length "
                 "of the sequence)"]
        if self.prev:
            batch, like = self._state_source()
            zeros = f"{like}.new_zeros" if like != batch or self.inputs[0].dtype \
                not in INT_DTYPES else None
            for (nid, d), var in self.prev.items():
                shape = ", ".join(str(n) for n in self.shape(nid))
                if zeros is None:  # integer inputs and no parameter: float32 state
                    code = f"{var} = torch.zeros({batch}.shape[0], {shape}, device={batch}.device)"
                else:
                    code = f"{var} = {zeros}({batch}.shape[0], {shape})"
                lines += statement(code, ind, f"{nid} {d} step{'s' if d > 1 else ''} back")
        for var in self.step_lists.values():
            lines.append(f"{ind}{var} = []")
        if plan.lengths:
            lens = self.lengths_arg(plan.lengths)
            modes = {s.layer.params["mode"] for s in plan.post if s.layer.collects_steps}
            if self.delays or modes - {"last"} or set(self.outputs) & set(self.step_lists):
                lines += statement(f"{self.valid_var} = torch.arange({plan.T}, device="
                                   f"{lens}.device) < {lens}[:, None]", ind,
                                   "[B, T]: step t of sample b is valid")
            if "last" in modes:
                lines.append(f"{ind}{self.rows_var} = torch.arange({lens}.shape[0], "
                             f"device={lens}.device)")
        lines.append(f"{ind}for t in range({plan.T}):")
        for s in plan.region:
            if s.feed is not None:
                lines += statement(f"{self.seq_vars[s.node_id]} = "
                                   f"{self._field_of(s.node_id).arg}[:, t]", body,
                                   f"{s.node_id} at step t: {fmt_shape(self.shape(s.node_id))}")
                if s.node_id in self.step_lists:
                    lines.append(f"{body}{self.step_lists[s.node_id]}.append("
                                 f"{self.seq_vars[s.node_id]})")
            else:
                lines += self.node_lines(s, body)
        for nid, most in self.delays.items():
            olds = [self.prev[(nid, d)] for d in range(most, 0, -1)]
            now = self.seq_vars.get(nid) or self.var[nid]
            if plan.lengths:  # a padded sample's state does not change
                now = f"torch.where({self._valid_at(nid)}, {now}, {self.prev[(nid, 1)]})"
            news = [self.prev[(nid, d)] for d in range(most - 1, 0, -1)] + [now]
            lines.append(f"{body}{', '.join(olds)} = {', '.join(news)}")
        return lines

    # ---- losses ----------------------------------------------------------------------------
    def losses_lines(self) -> list[str]:
        """``Model.losses(outputs, targets)`` (each loss by node id) and ``Model.loss``."""
        ind, body = INDENT * 2, INDENT * 3
        self.in_losses = True
        try:
            lines = call("def losses", ["self", f"outputs: {self.return_type()}",
                                        "targets: dict[str, torch.Tensor]"], INDENT,
                         " -> dict[str, torch.Tensor]:")
            lines += docstring(
                ["Each loss of the graph, by node id, from forward's outputs and the fields "
                 "in targets (field name -> tensor, batch first):"]
                + [f"{INDENT}{quoted(f.name)}: {_batch_shape(f.shape, self._seq(f))} {f.dtype}"
                   for f in self.targets]
                + ([f"{INDENT}{quoted(self.full.lengths)}: [B] int64, each sample's length"]
                   if self.full.lengths and self.loss_lists else []), ind)
            outs = [self.var[n] for n in self.outputs]
            lines.append(f"{ind}{', '.join(outs)}{',' if self.several and len(outs) == 1 else ''}"
                         " = outputs")
            for f in self.targets:
                lines += wrap_assign(f.arg, f"targets[{literal(f.name)}]", ind)
            deferred = [s for s in self.full.steps if s.node_id in self.deferred]
            static = [s for s in deferred if not s.timed and s.feed is None]
            before = [s for s in static if s.node_id not in {x.node_id for x in self.full.post}]
            after = [s for s in static if s not in before]
            for s in before:
                lines += self.node_lines(s, ind)
            timed = [s for s in deferred if s.timed]
            if timed and self.full.lengths:
                lines += self._masked_loss_lines(timed)
            elif timed:
                for var in self.loss_lists.values():
                    lines.append(f"{ind}{var} = []")
                lines.append(f"{ind}for t in range({self.full.T}):  # a loss at every time step")
                for s in timed:
                    lines += self.node_lines(s, body)
                for nid, var in self.loss_lists.items():
                    lines += statement(f"{self.var[nid]} = torch.stack({var}).mean()", ind,
                                       f"{nid}: mean over the time steps")
            for s in after:
                lines += self.node_lines(s, ind)
            entries = [f"{literal(n)}: {self.var[n]}" for n in self.losses]
            lines += _dict_return(entries, ind)
        finally:
            self.in_losses = False
        lines += [""] + call("def loss", ["self", f"outputs: {self.return_type()}",
                                          "targets: dict[str, torch.Tensor]"], INDENT,
                             " -> torch.Tensor:")
        lines += [f'{ind}"""The sum of the graph\'s losses: what training minimises."""',
                  f"{ind}return sum(self.losses(outputs, targets).values())"]
        return lines

    def _masked_loss_lines(self, timed: list[Step]) -> list[str]:
        """The losses inside the recurrent loop with sequence lengths: at each step the loss
        of the valid samples, weighted by their number; the mean over all valid (sample,
        step) pairs (docs/format.md section 2.6). The lengths come with the targets."""
        ind, body, inner = INDENT * 2, INDENT * 3, INDENT * 4
        fld = self.full.lengths
        lens = self.lengths_arg(fld)
        lines = wrap_assign(lens, f"targets[{literal(fld)}]", ind)
        for var in self.loss_lists.values():
            lines.append(f"{ind}{var} = []")
        lines.append(f"{ind}for t in range({self.full.T}):  # a loss at every time step")
        lines += statement(f"{self.valid_var} = t < {lens}", body, "the samples valid at t")
        lines.append(f"{body}if bool({self.valid_var}.any()):")
        self.row_filter = self.valid_var
        try:
            for s in timed:
                lines += self.node_lines(s, inner)
        finally:
            self.row_filter = None
        for nid, var in self.loss_lists.items():
            lines += statement(f"{self.var[nid]} = torch.stack({var}).sum() / {lens}.sum()",
                               ind, f"{nid}: mean over the valid steps")
        return lines

    def weights_method(self) -> list[str]:
        ind = INDENT * 2
        lines = [f"{INDENT}def weights(self) -> list[torch.Tensor]:",
                 f'{ind}"""The weights that L1 and L2 regularization apply to (not biases or '
                 'BatchNorm)."""']
        return lines + _list_return(self.weight_tensors(), ind)

    def outputs_lines(self) -> list[str]:
        """``class Outputs(NamedTuple)`` when forward returns several tensors."""
        if not self.several:
            return []
        lines = ["class Outputs(NamedTuple):"]
        lines += docstring(["What Model.forward returns: one tensor per node, batch first."],
                           INDENT)
        for nid in self.outputs:
            lines += statement(f"{self.var[nid]}: torch.Tensor", INDENT,
                               f"{nid}: {_batch_shape(self.output_shape(nid))}")
        return lines + ["", ""]

    def with_loss_lines(self) -> list[str]:
        if not self.trainable:
            return []
        ind, ind2 = INDENT, INDENT * 2
        args = [f"batch[{literal(f.name)}]" for f in self.inputs]
        lines = ["", "", "class WithLoss(nn.Module):"]
        lines += docstring(["The model and its losses as one module, as training runs it: "
                            "forward(batch) takes every field by name and returns (outputs, "
                            "losses). DistributedDataParallel wraps this module, so that the "
                            "loss is computed inside the forward it sees."], ind)
        lines += ["", f"{ind}def __init__(self, model: Model) -> None:",
                  f"{ind2}super().__init__()", f"{ind2}self.model = model", ""]
        lines += call("def forward", ["self", "batch: dict[str, torch.Tensor]"], ind,
                      f" -> tuple[{self.return_type()}, dict[str, torch.Tensor]]:")
        lines += call("outputs = self.model", args, ind2)
        return lines + [f"{ind2}return outputs, self.model.losses(outputs, batch)"]

    def model_lines(self, with_weights: bool = False) -> list[str]:
        forward = self.forward_lines()  # first: they find out which helpers are used
        losses = self.losses_lines() if self.trainable else []
        lines = self.outputs_lines()
        lines += ["class Model(nn.Module):"]
        lines += docstring([f"The graph {quoted(self.graph.name)} as a PyTorch module."], INDENT)
        lines.append("")
        lines += self.init_lines() + [""]
        reset = self.reset_lines()
        if reset:
            lines += reset + [""]
        lines += forward
        if losses:
            lines += [""] + losses
        if with_weights:
            lines += [""] + self.weights_method()
        return lines + self.with_loss_lines()


def wrap_assign(var: str, value: str, indent: str) -> list[str]:
    one = f"{indent}{var} = {value}"
    if len(one) <= LINE:
        return [one]
    return [f"{indent}{var} = (", f"{indent}{INDENT}{value}", f"{indent})"]


def _tuple_lines(name: str, items: list[str]) -> list[str]:
    values = [literal(i) for i in items]
    one = f"{name} = ({', '.join(values)}{',' if len(values) == 1 else ''})"
    if len(one) <= LINE:
        return [one]
    return [f"{name} = ("] + [f"{INDENT}{v}," for v in values] + [")"]


def _dict_return(entries: list[str], indent: str) -> list[str]:
    one = f"{indent}return {{{', '.join(entries)}}}"
    if len(one) <= LINE:
        return [one]
    return [f"{indent}return {{"] + [f"{indent}{INDENT}{e}," for e in entries] + [f"{indent}}}"]


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
