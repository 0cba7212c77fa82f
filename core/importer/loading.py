"""Load the user's module file, build the class, load a state_dict (``torch.load`` with
``weights_only=True``: nothing is unpickled but tensors and plain containers).

Loading the file runs its code, as ``python MODULE.py`` would without its ``__main__`` part:
it is code the user asked to run (docs/import.md says so)."""
from __future__ import annotations

import importlib.util
import inspect
import itertools
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from core.importer.errors import NEEDS_TORCH, TorchImportError

_count = itertools.count()


def need_torch():
    """The torch module, or the one-line error saying how to install it."""
    try:
        import torch
        import torch.fx  # noqa: F401
    except ImportError:
        raise TorchImportError(NEEDS_TORCH) from None
    return torch


def user_frame(tb, path: str) -> str | None:
    """``file:line: code`` of the innermost frame of traceback ``tb`` in the user's file."""
    found = None
    for fr in traceback.extract_tb(tb):
        if os.path.abspath(fr.filename) == os.path.abspath(path):
            found = f"{Path(fr.filename).name}:{fr.lineno}: {(fr.line or '').strip()}"
    return found


def load_class(spec: str, args: Any = None):
    """``(module instance, file path, class name)`` for ``MODULE.py:CLASS``, built with
    ``args`` (a JSON list: positional arguments, a JSON object: keyword arguments)."""
    torch = need_torch()
    path, sep, cls_name = str(spec).rpartition(":")
    if not sep or not path or not cls_name:
        raise TorchImportError(f"expected MODULE.py:CLASS, got {spec!r}")
    if not Path(path).is_file():
        raise TorchImportError("no such file", file=path)
    name = f"_neurocanvas_import_{next(_count)}"
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise TorchImportError("not a Python file", file=path)
    module = importlib.util.module_from_spec(mspec)
    folder = str(Path(path).resolve().parent)
    sys.path.insert(0, folder)  # the file may import its neighbours
    sys.modules[name] = module  # dataclasses and NamedTuples look themselves up there
    try:
        mspec.loader.exec_module(module)
    except SyntaxError as e:
        raise TorchImportError(f"syntax error on line {e.lineno}: {e.msg}", file=path) from None
    except Exception as e:  # noqa: BLE001 - the user's code: reported, not a traceback
        raise TorchImportError(f"running the file raised {type(e).__name__}: {e}",
                               where=user_frame(e.__traceback__, path), file=path) from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    cls = getattr(module, cls_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
        found = sorted(k for k, v in vars(module).items() if inspect.isclass(v)
                       and issubclass(v, torch.nn.Module) and v.__module__ == name)
        what = "is not a torch.nn.Module class" if cls is not None else "is not defined"
        raise TorchImportError(f"'{cls_name}' {what} in it (its nn.Module classes: "
                               f"{', '.join(found) or 'none'})", file=path)
    if args is None:
        pos, kw = [], {}
    elif isinstance(args, list):
        pos, kw = args, {}
    elif isinstance(args, dict):
        pos, kw = [], args
    else:
        raise TorchImportError("--args: expected a JSON list (positional arguments) or "
                               "object (keyword arguments)")
    try:
        model = cls(*pos, **kw)
    except Exception as e:  # noqa: BLE001 - the user's constructor
        raise TorchImportError(f"{cls_name}(...) raised {type(e).__name__}: {e}",
                               where=user_frame(e.__traceback__, path), file=path) from None
    return model, path, cls_name


def load_state(model, weights: str) -> str:
    """Load a state_dict file into ``model`` (strict); what was loaded, for the report.

    Accepts ``torch.save(model.state_dict())`` and the usual checkpoints holding one under
    ``"state_dict"``, ``"model_state_dict"`` or ``"model"``; a ``"module."`` prefix
    (DistributedDataParallel) is removed."""
    torch = need_torch()
    if not Path(weights).is_file():
        raise TorchImportError("no such file", file=weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable or unsafe file
        raise TorchImportError(f"cannot read it with torch.load(weights_only=True): "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                               file=weights) from None
    where = "the file"
    if isinstance(state, dict) and not _tensors(state):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict) and _tensors(state[key]):
                state, where = state[key], f"its '{key}' entry"
                break
    if not isinstance(state, dict) or not _tensors(state):
        raise TorchImportError("expected a state_dict (a dict of tensors), or a checkpoint "
                               "holding one under 'state_dict', 'model_state_dict' or 'model'",
                               file=weights)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise TorchImportError(f"does not fit the model: {first}", file=weights) from None
    return where


def _tensors(d: dict) -> bool:
    import torch

    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                           for k, v in d.items())
