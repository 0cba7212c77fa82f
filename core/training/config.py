"""The training settings of a graph (docs/format.md section 2) as a checked ``TrainConfig``."""
from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import ParamError
from core.optim.optimizers import make_optimizer

TRAINING_KEYS = {"dataset", "validation_split", "optimizer", "regularization", "clip",
                 "batch_size", "epochs", "shuffle", "seed", "device", "steps"}


@dataclass
class TrainConfig:
    dataset: dict
    optimizer: dict
    validation_split: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    clip_norm: float | None = None
    clip_value: float | None = None
    batch_size: int = 32
    epochs: int = 10
    steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    shuffle: bool = True
    seed: int = 0
    device: str = "auto"


def _num(d: dict, key: str, where: str, default, *, lo=None, hi=None, integer=False,
         open_lo=False):
    """``d[key]`` (or ``default``) checked to be a finite number in range, as int or float.
    null is accepted only where the default is null (no value: ``steps``, ``clip``); else
    ParamError naming ``training.<where><key>``, as for any other bad value."""
    v = d.get(key, default)
    if v is None and default is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and integer:
        ok = float(v).is_integer()
    if ok and lo is not None:
        ok = v > lo if open_lo else v >= lo
    if ok and hi is not None:
        ok = v <= hi
    if not ok:
        what = "an integer" if integer else "a number"
        if lo is not None:
            what += f" {'>' if open_lo else '>='} {lo}"
        if hi is not None:
            what += f" and <= {hi}"
        raise ParamError(f"expected {what}, found {_what(v)}", param=f"training.{where}{key}")
    return int(v) if integer else float(v)


NO_DATASET = ("training needs a dataset, and none is set: choose a built-in one, an .npz "
              "archive or a .csv table in the training settings (docs/format.md section 2.8)")


def _what(value) -> str:
    """A found value in words: an object by its keys (not as a Python dict)."""
    if isinstance(value, dict):
        return ("an object with " + ", ".join(str(k) for k in value)) if value else \
            "an empty object"
    return repr(value)


def parse_training(training: dict, **overrides) -> TrainConfig:
    """The training section as a ``TrainConfig``; ``overrides`` (from the command line) win.

    Raises ``ParamError`` naming ``training.<field>`` for a bad or unknown setting.
    """
    t = dict(training or {})
    for k, v in overrides.items():
        if v is not None:
            t[k] = v
    for k in t:
        if k not in TRAINING_KEYS:
            raise ParamError(f"unknown setting (known: {', '.join(sorted(TRAINING_KEYS))})",
                             param=f"training.{k}")
    ds = t.get("dataset")
    if ds is None:
        raise ParamError(NO_DATASET, param="training.dataset")
    if not isinstance(ds, dict):
        raise ParamError("expected a dataset description (an object naming its source: "
                         f"builtin, npz or csv), found {ds!r}", param="training.dataset")
    ds = dict(ds)
    split = ds.pop("validation_split", None)
    if "validation_split" in t:
        split = t["validation_split"]
    split = _num({} if split is None else {"validation_split": split}, "validation_split", "",
                 0.0, lo=0.0, hi=0.9)
    opt = t.get("optimizer", {"type": "sgd", "lr": 0.01})
    if not isinstance(opt, dict):
        raise ParamError("expected an optimizer description (an object naming its type, such "
                         f"as adam), found {opt!r}", param="training.optimizer")
    try:  # check the type and hyperparameters now, naming them as training.optimizer.<key>
        make_optimizer(opt, [])
    except ParamError as e:
        raise ParamError(e.message, param=f"training.{e.param}") from None
    reg = t.get("regularization", {}) or {}
    if not isinstance(reg, dict) or set(reg) - {"l1", "l2"}:
        raise ParamError("expected an object with the penalties l1 and l2 (numbers, each "
                         f"optional), found {_what(reg)}", param="training.regularization")
    clip = t.get("clip", {}) or {}
    if not isinstance(clip, dict) or set(clip) - {"norm", "value"} or len(clip) > 1:
        raise ParamError("expected an object with either norm or value (a number > 0), found "
                         f"{_what(clip)}", param="training.clip")
    shuffle = t.get("shuffle", True)
    if not isinstance(shuffle, bool):
        raise ParamError(f"expected true or false, found {_what(shuffle)}",
                         param="training.shuffle")
    device = t.get("device", "auto")
    if device not in ("auto", "cpu", "gpu"):
        raise ParamError(f"expected auto, cpu or gpu, found {_what(device)}",
                         param="training.device")
    cfg = TrainConfig(
        dataset=ds, optimizer=opt, validation_split=split,
        l1=_num(reg, "l1", "regularization.", 0.0, lo=0.0),
        l2=_num(reg, "l2", "regularization.", 0.0, lo=0.0),
        clip_norm=_num(clip, "norm", "clip.", None, lo=0.0, open_lo=True),
        clip_value=_num(clip, "value", "clip.", None, lo=0.0, open_lo=True),
        batch_size=_num(t, "batch_size", "", 32, lo=1, integer=True),
        epochs=_num(t, "epochs", "", 10, lo=1, integer=True),
        steps=_num(t, "steps", "", None, lo=1, integer=True),
        shuffle=shuffle, seed=_num(t, "seed", "", 0, lo=0, integer=True), device=device)
    return cfg
