"""The node catalogue: every node type, by name and by palette category."""
from __future__ import annotations

import difflib
import importlib
import pkgutil

import core.layers
from core.layers.base import CATEGORIES, REGISTRY, Layer

# Importing every module of core/layers registers its node types (one file per idea).
for _mod in sorted(m.name for m in pkgutil.iter_modules(core.layers.__path__)):
    importlib.import_module(f"core.layers.{_mod}")


def get(type_name: str) -> type[Layer] | None:
    return REGISTRY.get(type_name)


def types() -> list[str]:
    return list(REGISTRY)


def by_category() -> dict[str, list[type[Layer]]]:
    out: dict[str, list[type[Layer]]] = {c: [] for c in CATEGORIES}
    for cls in REGISTRY.values():
        out[cls.category].append(cls)
    return out


def suggest(type_name: str) -> str:
    """' (did you mean 'X'?)' for a near miss, else ''."""
    close = difflib.get_close_matches(type_name, list(REGISTRY), n=1, cutoff=0.6)
    if not close:
        lower = {k.lower(): k for k in REGISTRY}
        if type_name.lower() in lower:
            close = [lower[type_name.lower()]]
    return f" (did you mean '{close[0]}'?)" if close else ""
