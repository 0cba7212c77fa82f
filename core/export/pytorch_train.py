"""The training part of an exported PyTorch script: the dataset loaded or generated as
NeuroCanvas does and fed by a DataLoader in NeuroCanvas's order, the same optimizer and
hyperparameters, L1/L2 and clipping, and a loop that runs alone or under ``torchrun`` with
DistributedDataParallel (a DistributedSampler, BatchNorm synchronised), writes the metrics
log of ``main.py train --log`` and checkpoints.

Only what the graph's settings need is written: the one dataset it uses, the penalty and
the clipping when it has them, the validation pass when it splits one off.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from core import datasets, optim
from core.datasets.files import encode_tokens
from core.errors import ParamError
from core.export import torch_layers
from core.export.errors import ExportError
from core.export.pytorch import ModelWriter
from core.export.source import INDENT, call, docstring, literal, quoted, wrapped_literal
from core.training import TrainConfig

TORCH_OPTIMIZERS = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "adagrad": "Adagrad",
                    "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}

CSV_CODE = """\
with open(DATA_FILE, newline="", encoding="utf-8-sig") as f:
    rows = [row for row in csv.reader(f, delimiter=DELIMITER) if any(c.strip() for c in row)]
header = [c.strip() for c in rows[0]]
column = header.index(TARGET_COLUMN)
x = np.array([row[:column] + row[column + 1:] for row in rows[1:]], dtype=np.float64)
x = x.astype(np.float32)
cells = [row[column].strip() for row in rows[1:]]
if CLASSES is None:  # a numeric target
    y = np.array(cells, dtype=np.float64)
    y = y.astype(np.int64) if np.all(y == np.round(y)) else y.astype(np.float32)
else:  # class names: class i is CLASSES[i]
    y = np.array([CLASSES.index(c) for c in cells], dtype=np.int64)
return {"x": x, "y": y}"""

TOKENS_CODE = """\
with open(DATA_FILE, newline="", encoding="utf-8-sig") as f:
    rows = [row for row in csv.reader(f, delimiter=DELIMITER) if any(c.strip() for c in row)]
header = [c.strip() for c in rows[0]]
target, column = header.index(TARGET_COLUMN), header.index(SEQUENCE_COLUMN)
x, lengths = encode_tokens([row[column].split() for row in rows[1:]], VOCABULARY, STEPS)
y = np.array([row[target] for row in rows[1:]], dtype=np.float64)
y = y.astype(np.int64) if np.all(y == np.round(y)) else y.astype(np.float32)
return {"x": x, "lengths": lengths, "y": y}"""

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

PACK_FUNCTIONS = '''\
def pack(x: torch.Tensor, lengths: torch.Tensor) -> nn.utils.rnn.PackedSequence:
    """The padded batch x [B, T, ...] as a packed sequence of each sample's valid steps."""
    return nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), True, False)


def unpack(out: nn.utils.rnn.PackedSequence, steps: int) -> torch.Tensor:
    """A packed output as [B, T, ...] again, zeros at the padded steps."""
    return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)[0]


def last_valid(out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sample's output at its last valid step (the padding comes after it, so it is
    the output the packed sequence gives)."""
    return out[torch.arange(out.shape[0], device=out.device), lengths - 1]


def valid_steps(out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """out [B, T, H] with zeros at the padded steps."""
    valid = torch.arange(out.shape[1], device=out.device) < lengths[:, None]
    return out * valid.unsqueeze(-1).to(out.dtype)


# one call each in a torch.fx graph (main.py import reads them back as sequence lengths)
torch.fx.wrap("last_valid")
torch.fx.wrap("valid_steps")
'''


def block(code: str, indent: str) -> list[str]:
    return [indent + line if line else "" for line in code.splitlines()]


DATA_CODE = '''\
class Fields(Dataset):
    """The samples of a dataset held as arrays (field -> [n, ...]); the DataLoader fetches a
    whole batch at once (__getitems__)."""

    def __init__(self, data: dict[str, np.ndarray]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(next(iter(self.data.values())))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {f: a[i] for f, a in self.data.items()}

    def __getitems__(self, index: list[int]) -> dict[str, np.ndarray]:
        return {f: a[index] for f, a in self.data.items()}


def as_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The DataLoader's collate_fn: a fetched batch as tensors."""
    return {f: torch.from_numpy(np.ascontiguousarray(a)) for f, a in batch.items()}


class EpochOrder(DistributedSampler):
    """A DistributedSampler with NeuroCanvas's order: epoch e takes the (e + 1)-th permutation
    drawn from np.random.default_rng(seed) (the file's order without shuffling), as main.py
    train does. Each of the world processes takes every world-th sample of it, so that with
    batches of batch_size / world per process, global batch k (order[k * B:(k + 1) * B]) is
    shared as index[rank::world]. The last n % world samples of an epoch are left out, so
    that every process has as many batches (none with one process)."""

    def __init__(self, n: int, shuffle: bool, seed: int, world: int = 1, rank: int = 0) -> None:
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=True)

    def __iter__(self):
        n = len(self.dataset)
        order = np.arange(n)
        if self.shuffle:
            rng = np.random.default_rng(self.seed)
            for _ in range(self.epoch + 1):
                order = rng.permutation(n)
        return iter(order[:self.total_size][self.rank::self.num_replicas].tolist())
'''

SYNC_BN_CODE = '''\
class AllReduceSum(torch.autograd.Function):
    """The sum of a tensor over the processes, whose gradient is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the whole batch across the processes
    (the sums all-reduced, their gradients too): nn.SyncBatchNorm, which runs only on GPUs,
    for gloo on CPUs. The same parameters and buffers as nn.BatchNorm1d/2d."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        n = torch.tensor(float(x.numel() // x.shape[1]), dtype=torch.float64)
        dist.all_reduce(n)
        n = n.item()
        mean = AllReduceSum.apply(x.sum(dims)) / n
        centred = x - mean.reshape(shape)
        var = AllReduceSum.apply(centred.square().sum(dims)) / n
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / (n - 1))
        y = centred / torch.sqrt(var.reshape(shape) + self.eps)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)


def sync_batchnorm(module: nn.Module, use_cuda: bool) -> nn.Module:
    """module with every BatchNorm taking the statistics of the whole batch across the
    processes: nn.SyncBatchNorm on GPUs, AllReduceBatchNorm on CPUs. The parameters and
    buffers stay the same tensors (the optimizer keeps them)."""
    if use_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            synced = AllReduceBatchNorm(child.num_features, child.eps, child.momentum)
            synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean = child.running_mean
            synced.running_var = child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            setattr(module, name, synced)
        else:
            sync_batchnorm(child, use_cuda)
    return module
'''

METRICS_CODE = '''\
def grad_norms(model: Model) -> dict[str, float]:
    """The L2 norm of every parameter's gradient, by weights-file key ("<owner id>/<name>")."""
    params = dict(model.named_parameters())
    norms = {}
    for key, (name, _) in WEIGHTS.items():
        p = params.get(name)
        if p is not None and p.grad is not None:
            norms[key] = p.grad.norm().item()
    return norms


def correct(output: torch.Tensor, target: torch.Tensor, binary: bool, cut: float) -> float:
    """How many predictions of a batch are right, counted as NeuroCanvas counts its accuracy
    (a sample with several outputs counts the fraction of them that is right)."""
    n = len(output)
    if binary:
        right = (output.reshape(n, -1) > 0) == (target.reshape(n, -1) > cut)
    else:
        guess = output.argmax(dim=-1).reshape(n, -1)
        if target.dim() == output.dim():  # class probabilities
            target = target.argmax(dim=-1)
        right = guess == target.reshape(n, -1)
    return right.sum().item() / right.shape[1]


def counts(outputs, batch: dict[str, torch.Tensor]) -> list[float]:
    """How many samples of a batch each loss of CLASSIFIERS classifies right."""
    values = outputs if isinstance(outputs, tuple) else (outputs,)
    return [correct(values[i], batch[f], binary, cut)
            for i, f, binary, cut in CLASSIFIERS.values()]


def evaluate(task: WithLoss, data: dict[str, np.ndarray], batch_size: int,
             device: torch.device) -> dict:
    """The mean loss (penalty excluded), each loss's mean and each classifier's accuracy over
    data, in evaluation mode."""
    task.eval()
    loader = DataLoader(Fields(data), batch_size=batch_size, collate_fn=as_tensors)
    sums = torch.zeros(1 + len(LOSSES) + len(CLASSIFIERS), dtype=torch.float64)
    with torch.no_grad():
        for batch in loader:
            batch = {f: v.to(device) for f, v in batch.items()}
            outputs, losses = task(batch)
            size = len(next(iter(batch.values())))
            sums += torch.tensor([size] + [losses[k].item() * size for k in LOSSES]
                                 + counts(outputs, batch), dtype=torch.float64)
    n = max(sums[0].item(), 1)
    means = (sums[1:] / n).tolist()
    losses = dict(zip(LOSSES, means, strict=True))
    return {"loss": sum(losses.values()), "losses": losses,
            "accuracy": dict(zip(CLASSIFIERS, means[len(LOSSES):], strict=True))}


def epoch_object(epoch: int, train: dict, val: dict | None, seconds: float) -> dict:
    """The epoch object of main.py train --log (docs/format.md section 5)."""
    first = next(iter(CLASSIFIERS), None)
    record = {"event": "epoch", "epoch": epoch, "train_loss": train["loss"]}
    if val is not None:
        record["val_loss"] = val["loss"]
    if first is not None:
        record["train_accuracy"] = train["accuracy"][first]
        if val is not None:
            record["val_accuracy"] = val["accuracy"][first]
    if len(LOSSES) > 1:
        record["losses"] = {}
        for k in LOSSES:
            figures = {"train_loss": train["losses"][k]}
            if val is not None:
                figures["val_loss"] = val["losses"][k]
            if k in CLASSIFIERS:
                figures["train_accuracy"] = train["accuracy"][k]
                if val is not None:
                    figures["val_accuracy"] = val["accuracy"][k]
            record["losses"][k] = figures
    record["seconds"] = round(seconds, 6)
    return record


def save_checkpoint(path: str, model: Model, optimizer: torch.optim.Optimizer, epoch: int,
                    step: int, batch: int) -> None:
    """Model and optimizer state and where training is (the epoch, the optimizer steps, the
    batches of the epoch done), written atomically; --resume continues from it."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "epoch": epoch, "step": step, "batch": batch}
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def emit(log, record: dict) -> None:
    """One JSON line of the metrics log, flushed."""
    if log is not None:
        log.write(json.dumps(record) + "\\n")
        log.flush()
'''

MAIN_CODE = '''\
def main() -> None:
    parser = argparse.ArgumentParser(description="Train the model with the graph's settings; "
                                     "under torchrun, with DistributedDataParallel.")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--steps", type=int, default=STEPS,
                        help="stop after this many optimizer steps (instead of --epochs)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="the global batch, shared by the processes")
    parser.add_argument("--lr", type=float, default=LR, help="the learning rate")
    parser.add_argument("--seed", type=int, default=SEED,
                        help="initialisation, validation split, data order and Dropout")
    parser.add_argument("--weights", default=WEIGHTS_FILE,
                        help="start from this NeuroCanvas weights file")
    parser.add_argument("--save-weights", help="write the trained weights here (NeuroCanvas "
                        "format)")
    parser.add_argument("--log", "--metrics", dest="log", help="write JSON Lines metrics here, "
                        "as main.py train --log (under torchrun, which takes --log... options "
                        "itself, write --metrics)")
    parser.add_argument("--checkpoint", help="save the model and optimizer state here after "
                        "every epoch")
    parser.add_argument("--resume", help="continue from this checkpoint")
    args = parser.parse_args()

    distributed = "LOCAL_RANK" in os.environ  # started by torchrun
    use_cuda = USE_CUDA
    if distributed:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if args.batch_size % world:
        parser.error(f"--batch-size {args.batch_size} is not a multiple of the {world} "
                     "processes")

    torch.manual_seed(args.seed)  # the same initial weights in every process
    model = Model().to(device)
    if args.weights:
        load_weights(model, args.weights)
    optimizer = make_optimizer(model, args.lr)
    step = epoch = done = 0  # done: batches of the epoch taken before a checkpoint
    if args.resume:
        state = torch.load(args.resume, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, done = state["step"], state["epoch"], state["batch"]
    if distributed or args.resume:  # Dropout: every process its own masks
        torch.manual_seed(args.seed + 1000003 * step + rank)
    task = WithLoss(model)
    net = task
    if distributed:
        net = DistributedDataParallel(SYNCED,
                                      device_ids=[local_rank] if use_cuda else None)

    data = prepare(load_data())
    SPLIT
    order = EpochOrder(len(Fields(train_set)), SHUFFLE, args.seed, world, rank)
    loader = DataLoader(Fields(train_set), batch_size=args.batch_size // world, sampler=order,
                        collate_fn=as_tensors)
    total_steps = args.steps or len(loader) * args.epochs
    log = open(args.log, "w", encoding="utf-8") if rank == 0 and args.log else None
    start = time.monotonic()
    while step < total_steps:
        order.set_epoch(epoch)
        task.train()
        began = time.monotonic()
        totals = torch.zeros(2 + len(LOSSES) + len(CLASSIFIERS), dtype=torch.float64)
        for i, batch in enumerate(loader):
            if i < done:
                continue  # taken before the checkpoint this run resumed from
            batch = {f: v.to(device) for f, v in batch.items()}
            result = train_step(net, model, optimizer, batch)
            size = len(next(iter(batch.values())))
            stats = torch.tensor([result["loss"] * size, size]
                                 + [result["losses"][k] * size for k in LOSSES]
                                 + counts(result["outputs"], batch),
                                 dtype=torch.float64, device=device)
            if distributed:  # the figures of the whole batch
                dist.all_reduce(stats)
            stats = stats.cpu()
            totals += stats
            if log is not None:
                record = {"event": "step", "epoch": epoch, "step": step,
                          "time": round(time.monotonic() - start, 6),
                          "loss": stats[0].item() / stats[1].item()}
                if len(LOSSES) > 1:
                    record["losses"] = {k: stats[2 + j].item() / stats[1].item()
                                        for j, k in enumerate(LOSSES)}
                record["grad_norm"] = result["grad_norm"]
                record["global_grad_norm"] = math.sqrt(sum(
                    v * v for v in result["grad_norm"].values()))
                emit(log, record)
            step += 1
            done = i + 1
            if step == total_steps:
                break
        n = max(totals[1].item(), 1)
        means = (totals[2:] / n).tolist()
        train = {"loss": totals[0].item() / n,
                 "losses": dict(zip(LOSSES, means[:len(LOSSES)], strict=True)),
                 "accuracy": dict(zip(CLASSIFIERS, means[len(LOSSES):], strict=True))}
        if rank == 0:  # evaluates and reports; the other processes wait in the next step
            val = VALIDATE
            record = epoch_object(epoch, train, val, time.monotonic() - began)
            print(json.dumps(record), flush=True)
            emit(log, record)
        if done == len(loader):  # the epoch is complete
            epoch, done = epoch + 1, 0
        if args.checkpoint and rank == 0:
            save_checkpoint(args.checkpoint, model, optimizer, epoch, step, done)
    if log is not None:
        log.close()
    if rank == 0 and args.save_weights:
        save_weights(model, args.save_weights)
    if distributed:
        dist.barrier()  # every process done before the group goes
        dist.destroy_process_group()
        # Leave now: everything is written, and under load gloo's threads can abort the
        # interpreter's teardown after a finished run ("terminate called without an active
        # exception", exit status -6, which torchrun reports as a failure).
        print(end="", flush=True)
        os._exit(0)
'''


class TrainingWriter:
    """Writes the functions and ``main`` that train one model with its graph's settings."""

    def __init__(self, model: ModelWriter, config: TrainConfig, data_dir: str | None,
                 weights_path: str | None, out_dir: str | None = None):
        self.m = model
        self.c = config
        self.data_dir = data_dir
        self.out_dir = out_dir
        self.weights_path = weights_path
        self.imports: set[str] = {"argparse", "json", "math", "os", "time", "dist", "ddp",
                                  "data"}
        self.fields = model.inputs + model.targets
        # the modules DistributedDataParallel must synchronise
        self.has_batchnorm = any((torch_layers.module_source(model.a.layers[o]) or "")
                                 .startswith("nn.BatchNorm") for o in model.attr)
        # loss id -> (output position, target field, binary?, target cut) of each loss that
        # classifies, as NeuroCanvas's accuracy
        self.classifiers: dict[str, tuple[int, str, bool, float]] = {}
        for nid in model.losses:
            layer = model.a.layers[nid]
            ports = model.a.inputs[nid]
            first = layer.input_ports(layer.params)[0]
            if first not in ports or "target" not in ports:
                continue
            pred, target = ports[first].src, ports["target"].src
            decision = layer.decision(model.a.shapes[pred])
            fld = next((f for f in model.targets if target in f.nodes), None)
            if decision is None or fld is None or pred not in model.outputs:
                continue
            self.classifiers[nid] = (model.outputs.index(pred), fld.name, decision.binary,
                                     float(decision.target_cut))

    # ---- pieces ----------------------------------------------------------------------------
    def _path(self, path: str, var: str, base: str | None) -> list[str]:
        """``var = <path>``: a relative path (from ``base``) relative to the script when the
        script's folder is known, or when there is no ``base`` to resolve it against;
        otherwise absolute."""
        p = Path(path).expanduser()
        if not p.is_absolute() and self.out_dir is not None:
            full = (Path(base) if base is not None else Path.cwd()) / p
            p = Path(os.path.relpath(full.resolve(), Path(self.out_dir).resolve()))
        elif not p.is_absolute() and base is not None:
            p = Path(base) / p
        self.imports.add("Path")
        if p.is_absolute():
            return wrapped_literal(str(p), "", f"{var} = Path(", ")")
        return wrapped_literal(p.as_posix(), "", f"{var} = Path(__file__).resolve().parent / ")

    def settings(self) -> list[str]:
        c = self.c
        lr = dict(c.optimizer).get("lr", optim.OPTIMIZER_PARAMS[c.optimizer["type"]]["lr"].default)
        use_cuda = {"auto": "torch.cuda.is_available()", "cpu": "False",
                    "gpu": "True"}[c.device]
        lines = ["# The graph's training settings (the script's options override most).",
                 f"SEED = {c.seed}",
                 f"BATCH_SIZE = {c.batch_size}",
                 f"EPOCHS = {c.epochs}",
                 f"STEPS = {c.steps!r}  # optimizer steps; overrides EPOCHS when set",
                 f"SHUFFLE = {c.shuffle!r}",
                 f"LR = {lr!r}",
                 f"VALIDATION_SPLIT = {float(c.validation_split or 0.0)!r}",
                 f"USE_CUDA = {use_cuda}"]
        lines.append("# the weights training starts from (--weights)")
        if self.weights_path is not None:
            lines += self._path(self.weights_path, "WEIGHTS_FILE", None)
        else:
            lines.append("WEIGHTS_FILE = None")
        lines += ["# the losses by node id, and those that classify: (output, target field, "
                  "binary, cut)"]
        lines += _tuple(self.m.losses, "LOSSES")
        if not self.classifiers:
            lines.append("CLASSIFIERS: dict[str, tuple[int, str, bool, float]] = {}")
        else:
            lines.append("CLASSIFIERS = {")
            for nid, value in self.classifiers.items():
                lines.append(f"{INDENT}{literal(nid)}: {literal(value)},")
            lines.append("}")
        return lines

    def data_lines(self) -> list[str]:
        ds = self.c.dataset
        source = ds.get("source")
        if source not in ("npz", "csv"):
            return self._builtin(ds)
        lines = self._path(ds["path"], "DATA_FILE", self.data_dir)
        tokens = self._tokens(ds) if source == "csv" else None
        if source == "csv":
            lines += wrapped_literal(ds.get("target_column"), "", "TARGET_COLUMN = ")
        if tokens is not None:  # a table of token sequences: its vocabulary and T pinned
            column, vocabulary, steps = tokens
            lines += wrapped_literal(column, "", "SEQUENCE_COLUMN = ")
            lines += wrapped_literal(vocabulary, "", "VOCABULARY = ")
            lines += [f"STEPS = {steps}", "", ""]
            lines += inspect.getsource(encode_tokens).rstrip().splitlines()
        elif source == "csv":
            lines += wrapped_literal(self._classes(ds), "", "CLASSES = ")
        lines += ["", "", "def load_data() -> dict[str, np.ndarray]:"]
        if source == "npz":
            lines += docstring(["The dataset file: one array per field."], INDENT)
            return lines + [f"{INDENT}with np.load(DATA_FILE, allow_pickle=False) as archive:",
                            f"{INDENT * 2}return {{key: archive[key] for key in archive.files}}"]
        self.imports.add("csv")
        target = ds.get("target_column")
        delimiter = literal(ds.get("delimiter", ","))
        if tokens is not None:
            lines += docstring([f"The csv table of token sequences: column {quoted(tokens[0])}"
                                " holds each sample's tokens (ids in VOCABULARY's order from "
                                f"1, 0 padding up to STEPS), column {quoted(target)} the "
                                "target y."], INDENT)
            return lines + block(TOKENS_CODE.replace("DELIMITER", delimiter), INDENT)
        lines += docstring([f"The csv file: column {quoted(target)} is the target y, "
                            "the other columns the features x."], INDENT)
        return lines + block(CSV_CODE.replace("DELIMITER", delimiter), INDENT)

    def _tokens(self, ds: dict) -> tuple[str, list[str], int] | None:
        """(sequence column, vocabulary, T) of a table of token sequences as NeuroCanvas
        reads it now, or None for another table. A table that cannot be read now is an
        ExportError: its ids cannot be pinned."""
        from core.datasets.files import token_csv_fields, token_settings, token_vocabulary
        from core.errors import NeuroCanvasError
        ts = token_settings(ds)
        if ts is None:
            return None
        try:
            vocabulary = token_vocabulary(ds, self.data_dir)
            steps = token_csv_fields(ds, self.data_dir)["x"][0][0]
        except (NeuroCanvasError, OSError) as e:
            raise ExportError(f"the table of token sequences cannot be read to pin its "
                              f"vocabulary: {e}") from None
        return ts.column, vocabulary, int(steps)

    def _classes(self, ds: dict) -> list[str] | None:
        """The class names of a csv target column, pinned now as NeuroCanvas maps them
        (the ``classes`` option, else the file's names sorted); None for numbers, or when
        the file cannot be read now (then a numeric target is assumed)."""
        from core.datasets.files import class_mapping
        from core.errors import NeuroCanvasError
        try:
            return class_mapping(ds, self.data_dir)
        except (NeuroCanvasError, OSError):
            return None

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
            args.append("lr=lr" if key == "lr" else f"{key}={literal(value)}")
        if kind == "nesterov":
            args.append("nesterov=True")
        lines = ["def make_optimizer(model: Model, lr: float = LR) -> torch.optim.Optimizer:"]
        lines += docstring([f"The graph's optimizer, {quoted(kind)}: NeuroCanvas follows the "
                            "rules of torch.optim."], INDENT)
        return lines + call(f"return torch.optim.{TORCH_OPTIMIZERS[kind]}", args, INDENT)

    def step_lines(self) -> list[str]:
        c = self.c
        ind = INDENT
        lines = ["def train_step(net: nn.Module, model: Model, optimizer: torch.optim.Optimizer,",
                 "               batch: dict[str, torch.Tensor]) -> dict:"]
        lines += docstring(["One optimizer step on a batch (field -> tensor, on the model's "
                            "device); net is WithLoss(model), or that wrapped in "
                            "DistributedDataParallel. Returns the loss (penalty included), "
                            "each loss's value, every parameter's gradient norm before "
                            "clipping (by weights-file key) and the outputs."], ind)
        lines += [f"{ind}outputs, losses = net(batch)", f"{ind}loss = sum(losses.values())"]
        terms = []
        if c.l1:
            terms.append(f"{c.l1!r} * w.abs().sum()")
        if c.l2:
            terms.append(f"{c.l2!r} * w.square().sum()")
        if terms:
            lines.append(f"{ind}# L1/L2 regularization over the weights (not biases or "
                         "BatchNorm)")
            lines.append(f"{ind}loss = loss + sum({' + '.join(terms)} for w in model.weights())")
        lines += [f"{ind}optimizer.zero_grad()", f"{ind}loss.backward()",
                  f"{ind}norms = grad_norms(model)"]
        if c.clip_norm is not None:
            lines.append(f"{ind}nn.utils.clip_grad_norm_(model.parameters(), {c.clip_norm!r})")
        elif c.clip_value is not None:
            lines.append(f"{ind}nn.utils.clip_grad_value_(model.parameters(), "
                         f"{c.clip_value!r})")
        return lines + [f"{ind}optimizer.step()",
                        f'{ind}return {{"loss": loss.item(), "losses": {{k: v.item() for k, v '
                        'in losses.items()},',
                        f'{ind}        "grad_norm": norms, "outputs": outputs}}']

    def main_lines(self) -> list[str]:
        code = MAIN_CODE
        if self.c.validation_split:
            split = "train_set, val_set = split(data, VALIDATION_SPLIT, args.seed)"
            validate = "evaluate(task, val_set, args.batch_size, device)"
        else:
            split = "train_set = data"
            validate = "None  # the graph splits off no validation data"
        synced = "sync_batchnorm(task, use_cuda)" if self.has_batchnorm else "task"
        code = code.replace("SPLIT", split).replace("val = VALIDATE", f"val = {validate}")
        code = code.replace("SYNCED", synced)
        return code.splitlines()

    def lines(self) -> list[str]:
        """Everything after the model: each top-level definition separated by two lines."""
        parts = [self.settings(), self.data_lines(), self.prepare_lines() + self.split_lines(),
                 DATA_CODE.rstrip().splitlines()]
        if self.has_batchnorm:
            parts.append(SYNC_BN_CODE.rstrip().splitlines())
        parts += [self.optimizer_lines(), self.step_lines(),
                  METRICS_CODE.rstrip().splitlines(), self.main_lines(),
                  ['if __name__ == "__main__":', f"{INDENT}main()"]]
        out: list[str] = []
        for part in parts:
            out += part + ["", ""]
        return out[:-2]


def _tuple(items: list[str], name: str) -> list[str]:
    values = [literal(i) for i in items]
    one = f"{name} = ({', '.join(values)}{',' if len(values) == 1 else ''})"
    if len(one) <= 100:
        return [one]
    return [f"{name} = ("] + [f"{INDENT}{v}," for v in values] + [")"]


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


__all__ = ["TrainingWriter", "check_training", "WEIGHTS_FUNCTIONS", "HINGE_FUNCTION",
           "PACK_FUNCTIONS"]
