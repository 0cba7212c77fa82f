"""The whole exported PyTorch file: docstring, imports, the model (pure ``forward``, the losses,
``WithLoss``), weights functions and, when the graph can be trained (a loss and a dataset),
the training script."""
from __future__ import annotations

from core.datasets.builtin import BUILTINS
from core.export.pytorch import ModelWriter
from core.export.pytorch_train import (
    HINGE_FUNCTION,
    PACK_FUNCTIONS,
    WEIGHTS_FUNCTIONS,
    TrainingWriter,
    check_training,
)
from core.export.source import docstring, quoted
from core.validate import Analysis


def pytorch_script(analysis: Analysis, weights_path: str | None, data_dir: str | None,
                   outputs: list[str] | None = None, out_dir: str | None = None) -> str:
    """The file's text. outputs: the nodes forward returns (default: what the losses read);
    out_dir: the folder the file is written to (relative paths are written relative to it)."""
    model = ModelWriter(analysis, outputs)
    training = None
    why_not = ""
    if not model.losses:
        why_not = "The graph has no loss node, so this file has no training part."
    elif not model.trainable:
        why_not = ("The outputs chosen for forward are not all the values the losses read, so "
                   "this file has no losses and no training part.")
    elif not analysis.graph.training.get("dataset"):
        why_not = "The graph names no training dataset, so this file has no training part."
    else:
        training = TrainingWriter(model, check_training(analysis.graph.training), data_dir,
                                  weights_path, out_dir)
    regularized = training is not None and bool(training.c.l1 or training.c.l2)
    model_lines = model.model_lines(with_weights=regularized)
    rest = training.lines() if training else []  # written first: it decides the imports

    name = quoted(analysis.graph.name)
    doc = [f"PyTorch model exported by NeuroCanvas from the graph {name}.", "",
           "Model() is the network: forward(*inputs) returns its outputs only (INPUTS and "
           "OUTPUTS name them)"
           + (", Model.losses(outputs, targets) and Model.loss(...) the graph's losses, and "
              "WithLoss(model) both as one module." if model.trainable else "."),
           "load_weights(model, path) and save_weights(model, path) read and write NeuroCanvas "
           "weights files (.npz)."]
    if training:
        doc += ["Run as a script, it trains with the graph's training settings:", "",
                "    python THIS_FILE.py [--epochs N] [--steps N] [--batch-size N] [--lr LR] "
                "[--seed N]",
                "        [--weights W.npz] [--save-weights W.npz] [--log METRICS.jsonl]",
                "        [--checkpoint CKPT.pt] [--resume CKPT.pt]",
                "    torchrun --nproc_per_node=N THIS_FILE.py ...",
                "",
                "With torchrun it trains with DistributedDataParallel (gloo on CPU, NCCL on "
                "GPUs, BatchNorm synchronised); every process takes its share of each batch "
                "through a DistributedSampler."]
        ds = training.c.dataset
        builtin = BUILTINS.get(ds.get("name")) if ds.get("source") == "builtin" else None
        if builtin is not None and builtin.needs:
            doc += ["", f"It needs torch and numpy, and {' and '.join(builtin.needs)} to make "
                    f"the built-in dataset {quoted(ds['name'])}."]
        else:
            doc += ["", "It needs only torch and numpy."]
    else:
        doc += ["", why_not, "", "It needs only torch and numpy."]

    lines = docstring(doc, "")
    lines += [""] + _imports(model, training) + ["", ""]
    lines += model_lines + ["", ""]
    lines += model.names_lines() + [""]
    lines += model.weights_table() + ["", ""]
    lines += WEIGHTS_FUNCTIONS.splitlines()
    if model.uses_hinge:
        lines += ["", ""] + HINGE_FUNCTION.splitlines()
    if model.packs:
        lines += ["", ""] + PACK_FUNCTIONS.splitlines()
    if rest:
        lines += ["", ""] + rest
    return "\n".join(lines) + "\n"


def _imports(model: ModelWriter, training: TrainingWriter | None) -> list[str]:
    """Sorted as isort (and ruff) wants: standard library, then third party."""
    used = training.imports if training else set()
    std = [f"import {m}" for m in ("argparse", "csv", "json", "math") if m in used]
    std.append("import os")  # the weights functions use os.replace and os.PathLike
    if "time" in used:
        std.append("import time")
    if "Path" in used:
        std.append("from pathlib import Path")
    if model.several:
        std.append("from typing import NamedTuple")
    third = ["import numpy as np", "import torch"]
    if "dist" in used:
        third.append("import torch.distributed as dist")
    if model.uses_f:
        third.append("import torch.nn.functional as F")
    third.append("from torch import nn")
    if "ddp" in used:
        third.append("from torch.nn.parallel import DistributedDataParallel")
    if "data" in used:
        third.append("from torch.utils.data import DataLoader, Dataset, DistributedSampler")
    return std + [""] + third
