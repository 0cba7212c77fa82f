"""The training part of an exported PyTorch script: the dataset loaded or generated as
NeuroCanvas does, the same optimizer and hyperparameters, L1/L2 and clipping, and a loop
that runs alone or under ``torchrun`` with DistributedDataParallel.

Only what the graph's settings need is written: the one dataset it uses, the penalty and
the clipping when it has them, the validation pass when it splits one off.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from core import datasets, optim
from core.errors import ParamError
from core.export.pytorch import ModelWriter
from core.export.source import INDENT, call, docstring, literal, quoted, wrapped_literal
from core.training import TrainConfig

TORCH_OPTIMIZERS = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "adagrad": "Adagrad",
                    "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}

CSV_CODE = """\
with open(DATA_FILE, newline="", encoding="utf-8-sig") as f:
    rows = [row for row in csv.reader(f, delimiter=DELIMITER) if any(c.strip() for c in row)]
header = [c.strip() for c in rows[0]]
values = np.array(rows[1:], dtype=np.float64)
column = header.index(TARGET_COLUMN)
y = values[:, column]
x = np.delete(values, column, axis=1).astype(np.float32)
y = y.astype(np.int64) if np.all(y == np.round(y)) else y.astype(np.float32)
return {"x": x, "y": y}"""

WEIGHTS_FUNCTIONS = '''\
def load_weights(model: Model, path: str | os.PathLike) -> None:
    """Copy a NeuroCanvas weights file (.npz, one array per "<node id>/<name>") into model."""
    state = model.state_dict()
    with np.load(path, allow_pickle=False) as archive:
        for key, (name, transposed) in WEIGHTS.items():
            if key not in archive:
                raise KeyError(f"{path}: missing key {key!r}")
            value = torch.from_numpy(archive[key])
            if transposed:
                value = value.T
            if value.shape != state[name].shape:
                raise ValueError(f"{path}: key {key!r} has shape {list(value.shape)}, "
                                 f"expected {list(state[name].shape)}")
            state[name].copy_(value)


def save_weights(model: Model, path: str | os.PathLike) -> None:
    """Write model's parameters and buffers as a NeuroCanvas weights file, atomically."""
    state = model.state_dict()
    arrays = {}
    for key, (name, transposed) in WEIGHTS.items():
        value = state[name].T if transposed else state[name]
        arrays[key] = value.detach().cpu().numpy().astype(np.float32)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
'''

HINGE_FUNCTION = '''\
def binary_hinge_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of max(0, margin - y·pred) with y = +1 where target > 0, else -1 (labels 0/1 or
    -1/+1), as NeuroCanvas's HingeLoss with one output."""
    sign = torch.where(target.reshape(pred.shape) > 0, 1.0, -1.0)
    return F.relu(margin - sign * pred).mean()
'''


def block(code: str, indent: str) -> list[str]:
    return [indent + line if line else "" for line in code.splitlines()]


class TrainingWriter:
    """Writes the functions and ``main`` that train one model with its graph's settings."""

    def __init__(self, model: ModelWriter, config: TrainConfig, data_dir: str | None,
                 weights_path: str | None):
        self.m = model
        self.c = config
        self.data_dir = data_dir
        self.weights_path = weights_path
        self.imports: set[str] = {"argparse", "os", "dist", "ddp"}
        self.fields = model.inputs + model.targets
        head = model.losses[0]
        # (decision, target field) when the first loss classifies, as NeuroCanvas's accuracy
        self.accuracy = None
        layer = model.a.layers[head]
        target_src = model.a.inputs[head]["target"].src if "target" in model.a.inputs[head] \
            else None
        decision = layer.decision(model.a.shapes[model.output])
        if decision is not None and target_src in (n for f in model.targets for n in f.nodes):
            field = next(f for f in model.targets if target_src in f.nodes)
            self.accuracy = (decision, field)

    # ---- pieces ----------------------------------------------------------------------------
    def model_call(self, assigned: str, model: str, indent: str) -> list[str]:
        """``assigned = model(...)`` on a batch dict, wrapped when long."""
        args = [f"batch[{literal(f.name)}]" for f in self.m.inputs]
        args += [f"{f.arg}=batch[{literal(f.name)}]" for f in self.m.targets]
        if not self.m.targets:
            args.append("with_loss=True")
        return call(f"{assigned} = {model}", args, indent)

    def settings(self) -> list[str]:
        c = self.c
        lines = ["# The graph's training settings.",
                 f"SEED = {c.seed}",
                 f"BATCH_SIZE = {c.batch_size}",
                 f"EPOCHS = {c.epochs}"]
        if c.steps is not None:
            lines.append(f"STEPS = {c.steps}  # optimizer steps; overrides EPOCHS")
        if c.validation_split:
            lines.append(f"VALIDATION_SPLIT = {c.validation_split!r}")
        if self.weights_path is not None:
            lines.append("# the weights training starts from (--weights)")
            lines += wrapped_literal(self.weights_path, "", "WEIGHTS_FILE = ")
        return lines

    def data_lines(self) -> list[str]:
        ds = self.c.dataset
        source = ds.get("source")
        if source not in ("npz", "csv"):
            return self._builtin(ds)
        self.imports.add("Path")
        lines: list[str] = []
        path = Path(ds["path"]).expanduser()
        if self.data_dir is not None and not path.is_absolute():
            path = Path(self.data_dir) / path
        if path.is_absolute():
            lines += wrapped_literal(str(path), "", "DATA_FILE = Path(", ")")
        else:
            lines += wrapped_literal(str(path), "",
                                     "DATA_FILE = Path(__file__).resolve().parent / ")
        if source == "csv":
            lines += wrapped_literal(ds.get("target_column"), "", "TARGET_COLUMN = ")
        lines += ["", "", "def load_data() -> dict[str, np.ndarray]:"]
        if source == "npz":
            lines += docstring(["The dataset file: one array per field."], INDENT)
            return lines + [f"{INDENT}with np.load(DATA_FILE, allow_pickle=False) as archive:",
                            f"{INDENT * 2}return {{key: archive[key] for key in archive.files}}"]
        self.imports.add("csv")
        target = ds.get("target_column")
        lines += docstring([f"The csv file: column {quoted(target)} is the target y, "
                            "the other columns the features x."], INDENT)
        return lines + block(CSV_CODE.replace("DELIMITER", literal(ds.get("delimiter", ","))),
                             INDENT)

    def _builtin(self, ds: dict) -> list[str]:
        """The built-in's generator, copied from core.datasets.builtin (it is written to need
        only np), then ``load_data`` calling it with the graph's options and seed."""
        name, opts, seed = datasets.builtin_settings(ds)
        seed = self.c.seed if seed is None else seed
        make = datasets.BUILTINS[name].make
        lines = inspect.getsource(make).rstrip().splitlines()
        lines += ["", "", "def load_data() -> dict[str, np.ndarray]:"]
        lines += docstring([f"The built-in dataset {quoted(name)}, seed {seed}: the arrays "
                            "NeuroCanvas makes."], INDENT)
        args = [f"np.random.default_rng({seed})"]
        args += [f"{key}={literal(value)}" for key, value in opts.items()]
        return lines + call(f"return {make.__name__}", args, INDENT)

    def prepare_lines(self) -> list[str]:
        lines = ["# Every field the model reads: per-sample shape and dtype (integers as int64,",
                 "# floating point as float32, as NeuroCanvas computes).", "FIELDS = {"]
        seen = set()
        for f in self.fields:
            if f.name in seen:
                continue
            seen.add(f.name)
            dtype = "np.int64" if f.dtype in ("int64", "int32") else "np.float32"
            lines.append(f"{INDENT}{literal(f.name)}: ({literal(tuple(f.shape))}, {dtype}),")
        lines += ["}", "", "",
                  "def prepare(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:"]
        lines += docstring(["The fields of FIELDS, cast and shaped (an axis of size 1 may "
                            "differ, as NeuroCanvas allows)."], INDENT)
        return lines + [f"{INDENT}return {{f: data[f].astype(dtype).reshape(len(data[f]), *shape)",
                        f"{INDENT}        for f, (shape, dtype) in FIELDS.items()}}"]

    def split_lines(self) -> list[str]:
        if not self.c.validation_split:
            return []
        return ["", "",
                "def split(data: dict[str, np.ndarray], fraction: float, seed: int",
                "          ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:",
                *docstring(["(train, validation): validation is the last round(n * fraction) "
                            "samples of a permutation seeded by seed, both in the dataset's "
                            "order, as NeuroCanvas splits."], INDENT),
                f"{INDENT}n = len(next(iter(data.values())))",
                f"{INDENT}n_val = round(n * fraction)",
                f"{INDENT}order = np.random.default_rng(seed).permutation(n)",
                f"{INDENT}train, val = np.sort(order[:n - n_val]), np.sort(order[n - n_val:])",
                f"{INDENT}return ({{f: a[train] for f, a in data.items()}},",
                f"{INDENT}        {{f: a[val] for f, a in data.items()}})"]

    def optimizer_lines(self) -> list[str]:
        opt = dict(self.c.optimizer)
        kind = opt.pop("type")
        hyper = {k: spec.default for k, spec in optim.OPTIMIZER_PARAMS[kind].items()}
        hyper.update(opt)
        args = ["model.parameters()"]
        for key, value in hyper.items():
            if key == "betas":
                value = tuple(value)
            args.append(f"{key}={literal(value)}")
        if kind == "nesterov":
            args.append("nesterov=True")
        lines = ["def make_optimizer(model: Model) -> torch.optim.Optimizer:"]
        lines += docstring([f"The graph's optimizer, {quoted(kind)}: NeuroCanvas follows the "
                            "rules of torch.optim."], INDENT)
        return lines + call(f"return torch.optim.{TORCH_OPTIMIZERS[kind]}", args, INDENT)

    def step_lines(self) -> list[str]:
        c = self.c
        ind = INDENT
        lines = ["def train_step(net: nn.Module, model: Model, optimizer: torch.optim.Optimizer,",
                 "               batch: dict[str, torch.Tensor]) -> float:"]
        lines += docstring(["One optimizer step on a batch (field -> tensor); returns the "
                            "loss, regularization included. net is model, or model wrapped "
                            "in DistributedDataParallel."], ind)
        lines += self.model_call("_, loss", "net", ind)
        terms = []
        if c.l1:
            terms.append(f"{c.l1!r} * w.abs().sum()")
        if c.l2:
            terms.append(f"{c.l2!r} * w.square().sum()")
        if terms:
            lines.append(f"{ind}# L1/L2 regularization over the weights (not biases or "
                         "BatchNorm)")
            lines.append(f"{ind}loss = loss + sum({' + '.join(terms)} for w in model.weights())")
        lines += [f"{ind}optimizer.zero_grad()", f"{ind}loss.backward()"]
        if c.clip_norm is not None:
            lines.append(f"{ind}nn.utils.clip_grad_norm_(model.parameters(), {c.clip_norm!r})")
        elif c.clip_value is not None:
            lines.append(f"{ind}nn.utils.clip_grad_value_(model.parameters(), "
                         f"{c.clip_value!r})")
        return lines + [f"{ind}optimizer.step()", f"{ind}return loss.item()"]

    def correct_lines(self) -> list[str]:
        if self.accuracy is None:
            return []
        decision, _ = self.accuracy
        ind = INDENT
        lines = ["", "", "def correct(output: torch.Tensor, target: torch.Tensor) -> float:"]
        lines += docstring(["How many predictions of a batch are right, counted as NeuroCanvas "
                            "counts its accuracy (a sample with several outputs counts the "
                            "fraction of them that is right)."], ind)
        lines.append(f"{ind}n = len(output)")
        if decision.binary:
            return lines + [f"{ind}right = (output.reshape(n, -1) > 0) == "
                            f"(target.reshape(n, -1) > {decision.target_cut!r})",
                            f"{ind}return right.sum().item() / right.shape[1]"]
        lines.append(f"{ind}guess = output.argmax(dim=-1).reshape(n, -1)")
        lines.append(f"{ind}if target.dim() == output.dim():  # class probabilities")
        lines.append(f"{ind}{ind}target = target.argmax(dim=-1)")
        return lines + [f"{ind}right = guess == target.reshape(n, -1)",
                        f"{ind}return right.sum().item() / right.shape[1]"]

    def evaluate_lines(self) -> list[str]:
        if not self.c.validation_split:
            return []
        ind = INDENT
        ret = "tuple[float, float]" if self.accuracy else "float"
        what = "(mean loss, accuracy)" if self.accuracy else "The mean loss"
        lines = ["", "", "def evaluate(model: Model, data: dict[str, np.ndarray], "
                 "device: torch.device",
                 f"             ) -> {ret}:"]
        lines += docstring([f"{what} over data in evaluation mode, penalty excluded."], ind)
        lines += [f"{ind}model.eval()",
                  f"{ind}n = len(next(iter(data.values())))",
                  f"{ind}total = right = 0.0" if self.accuracy else f"{ind}total = 0.0",
                  f"{ind}with torch.no_grad():",
                  f"{ind * 2}for start in range(0, n, BATCH_SIZE):",
                  f"{ind * 3}batch = batch_of(data, slice(start, start + BATCH_SIZE), device)",
                  *self.model_call("output, loss", "model", ind * 3),
                  f"{ind * 3}total += loss.item() * len(output)"]
        if self.accuracy:
            field = self.accuracy[1]
            lines.append(f"{ind * 3}right += correct(output, batch[{literal(field.name)}])")
            return lines + [f"{ind}return total / max(n, 1), right / max(n, 1)"]
        return lines + [f"{ind}return total / max(n, 1)"]

    def batch_lines(self) -> list[str]:
        return ["def batch_of(data: dict[str, np.ndarray], index, device: torch.device",
                "             ) -> dict[str, torch.Tensor]:",
                *docstring(["The samples at index (a slice or an index array) of every field, "
                            "as tensors on device."], INDENT),
                f"{INDENT}return {{f: torch.from_numpy(a[index]).to(device) for f, a in "
                "data.items()}"]

    def main_lines(self) -> list[str]:
        c = self.c
        ind, ind2, ind3 = INDENT, INDENT * 2, INDENT * 3
        use_cuda = {"auto": "torch.cuda.is_available()", "cpu": "False",
                    "gpu": "True"}[c.device]
        lines = ["def main() -> None:",
                 f'{ind}parser = argparse.ArgumentParser(description="Train the model with the '
                 "graph's settings; \"",
                 f'{ind}                                 "under torchrun, with '
                 'DistributedDataParallel.")',
                 f'{ind}parser.add_argument("--epochs", type=int, default=EPOCHS)']
        steps_default = "STEPS" if c.steps is not None else "None"
        lines += [f'{ind}parser.add_argument("--steps", type=int, default={steps_default},',
                  f'{ind}                    help="stop after this many optimizer steps")']
        weights_default = "WEIGHTS_FILE" if self.weights_path is not None else "None"
        lines += [f'{ind}parser.add_argument("--weights", default={weights_default},',
                  f'{ind}                    help="start from this NeuroCanvas weights file")',
                  f'{ind}parser.add_argument("--save-weights",',
                  f'{ind}                    help="write the trained weights here (NeuroCanvas '
                  'format)")',
                  f"{ind}args = parser.parse_args()",
                  "",
                  f"{ind}distributed = \"LOCAL_RANK\" in os.environ  # started by torchrun",
                  f"{ind}use_cuda = {use_cuda}",
                  f"{ind}if distributed:",
                  f'{ind2}dist.init_process_group("nccl" if use_cuda else "gloo")',
                  f"{ind}rank = dist.get_rank() if distributed else 0",
                  f"{ind}world = dist.get_world_size() if distributed else 1",
                  f'{ind}local_rank = int(os.environ.get("LOCAL_RANK", 0))',
                  f'{ind}device = torch.device("cuda", local_rank) if use_cuda else '
                  'torch.device("cpu")',
                  f"{ind}if use_cuda:",
                  f"{ind2}torch.cuda.set_device(device)",
                  "",
                  f"{ind}torch.manual_seed(SEED)",
                  f"{ind}model = Model().to(device)",
                  f"{ind}if args.weights:",
                  f"{ind2}load_weights(model, args.weights)",
                  f"{ind}net = DistributedDataParallel(model) if distributed else model",
                  f"{ind}optimizer = make_optimizer(model)"]
        if c.validation_split:
            lines.append(f"{ind}train_set, val_set = split(prepare(load_data()), "
                         "VALIDATION_SPLIT, SEED)")
        else:
            lines.append(f"{ind}train_set = prepare(load_data())")
        lines += [f"{ind}n = len(next(iter(train_set.values())))",
                  f"{ind}if min(n, BATCH_SIZE) < world:",
                  f'{ind2}parser.error(f"{{world}} processes need batches of at least '
                  '{world} samples")',
                  f"{ind}total_steps = args.steps or -(-n // BATCH_SIZE) * args.epochs",
                  f"{ind}data_rng = np.random.default_rng(SEED)  # the order of the samples",
                  f"{ind}step = epoch = 0",
                  f"{ind}while step < total_steps:",
                  f"{ind2}model.train()",
                  f"{ind2}order = data_rng.permutation(n)" if c.shuffle
                  else f"{ind2}order = np.arange(n)",
                  f"{ind2}totals = torch.zeros(2, dtype=torch.float64, device=device)",
                  f"{ind2}for start in range(0, n, BATCH_SIZE):",
                  f"{ind3}# each process takes its share of the batch; DistributedDataParallel",
                  f"{ind3}# averages the gradients, so the step is that of the whole batch",
                  f"{ind3}index = order[start:start + BATCH_SIZE]",
                  f"{ind3}if len(index) < world:",
                  f"{ind3}{ind}break  # a last batch too small to share",
                  f"{ind3}batch = batch_of(train_set, index[rank::world], device)",
                  f"{ind3}size = len(index[rank::world])",
                  f"{ind3}totals += torch.tensor([train_step(net, model, optimizer, batch) * size,"
                  " size],",
                  f"{ind3}                       dtype=torch.float64, device=device)",
                  f"{ind3}step += 1",
                  f"{ind3}if step == total_steps:",
                  f"{ind3}{ind}break",
                  f"{ind2}if distributed:",
                  f"{ind3}dist.all_reduce(totals)",
                  f'{ind2}report = f"epoch {{epoch + 1}}  train_loss '
                  '{totals[0].item() / totals[1].item():.4f}"']
        if c.validation_split:
            if self.accuracy:
                lines += [f"{ind2}val_loss, val_accuracy = evaluate(model, val_set, device)",
                          f'{ind2}report += f"  val_loss {{val_loss:.4f}}  val_accuracy '
                          '{val_accuracy:.3f}"']
            else:
                lines.append(f'{ind2}report += f"  val_loss {{evaluate(model, val_set, '
                             'device):.4f}"')
        lines += [f"{ind2}if rank == 0:",
                  f"{ind3}print(report, flush=True)",
                  f"{ind2}epoch += 1",
                  f"{ind}if rank == 0 and args.save_weights:",
                  f"{ind2}save_weights(model, args.save_weights)",
                  f"{ind}if distributed:",
                  f"{ind2}dist.barrier()  # every process done before the group goes",
                  f"{ind2}dist.destroy_process_group()"]
        return lines

    def lines(self) -> list[str]:
        """Everything after the model: each top-level definition separated by two lines."""
        parts = [self.settings(), self.data_lines(), self.prepare_lines() + self.split_lines(),
                 self.batch_lines(), self.optimizer_lines(), self.step_lines()
                 + self.correct_lines() + self.evaluate_lines(), self.main_lines(),
                 ['if __name__ == "__main__":', f"{INDENT}main()"]]
        out: list[str] = []
        for part in parts:
            out += part + ["", ""]
        return out[:-2]


def check_training(config_source: dict) -> TrainConfig:
    """The training settings parsed (``ParamError`` naming ``training.<field>``)."""
    from core.training import parse_training

    cfg = parse_training(config_source)
    ds = cfg.dataset
    if ds.get("source") == "builtin":
        try:  # every option checked now, as training would (and the dataset is cheap)
            datasets.load_dataset(ds, None, seed=cfg.seed)
        except ParamError as e:
            raise ParamError(e.message, param=f"training.{e.param}") from None
    elif ds.get("source") in ("npz", "csv"):
        if not isinstance(ds.get("path"), str) or not ds["path"]:
            raise ParamError(f"expected a file name, found {ds.get('path')!r}",
                             param="training.dataset.path")
    else:
        raise ParamError(f"expected one of {', '.join(datasets.SOURCES)}, found "
                         f"{ds.get('source')!r}", param="training.dataset.source")
    return cfg


__all__ = ["TrainingWriter", "check_training", "WEIGHTS_FUNCTIONS", "HINGE_FUNCTION"]
