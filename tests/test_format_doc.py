"""docs/format.md states every contract; these tests keep its catalogue and its training
tables in step with the code.

- Section 3: every registered node type has exactly one table row (first cell `` `Type` ``)
  under the sub-heading of its palette category (``### 3.N Category``), and that row names
  every parameter of ``all_params_spec()`` (``shared_with`` included) in backticks, with its
  default: `` `name` (required) ``, `` `name` = `JSON` `` or, for a default of null,
  `` `name` (default: ...) ``.
- Section 2: every optimizer type of ``core.optim.OPTIMIZER_PARAMS`` has a row under the
  "Optimizers" sub-heading naming each hyperparameter with its default, and every built-in
  dataset of ``core.datasets.known_builtins()`` has a row under "Built-in datasets" naming
  each of its options (``builtin_options``) with its default.

``test_the_checker_can_fail`` feeds the checker altered copies of the document, so a checker
that accepts anything fails too.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

from core import catalogue
from core.datasets import builtin_options, known_builtins
from core.optim import OPTIMIZER_PARAMS
from core.params import ParamSpec

DOC = Path(__file__).resolve().parent.parent / "docs" / "format.md"


# ---- reading the document -------------------------------------------------------------------
def section(doc: str, number: int) -> str:
    """The text of ``## N. Title`` up to the next ``## `` heading."""
    m = re.search(rf"^## {number}\. .*?(?=^## |\Z)", doc, re.M | re.S)
    assert m, f"docs/format.md has no section '## {number}. ...'"
    return m.group(0)


def subsections(text: str) -> dict[str, str]:
    """``### N.M Title`` -> the text up to the next ``### `` heading (or the end)."""
    out = {}
    for m in re.finditer(r"^### [\d.]+ (.+?)\s*$(.*?)(?=^### |\Z)", text, re.M | re.S):
        out[m.group(1)] = m.group(2)
    return out


def rows(text: str, first_cell: str) -> list[str]:
    """The table rows of ``text`` whose first cell is exactly `` `first_cell` ``."""
    want = f"`{first_cell}`"
    return [line for line in text.splitlines()
            if line.startswith("|") and line.split("|")[1].strip() == want]


def _json_value(value):
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def param_problems(row: str, specs: Mapping[str, ParamSpec], where: str) -> list[str]:
    """What is missing or wrong about each parameter of ``specs`` in one table row."""
    problems = []
    for name, spec in specs.items():
        tick = f"`{name}`"
        if not re.search(rf"(?<![\w`]){re.escape(tick)}", row):
            problems.append(f"{where}: parameter {tick} is not in its row")
            continue
        given = re.search(rf"{re.escape(tick)} = `([^`]*)`", row)
        if spec.required:
            if f"{tick} (required)" not in row:
                problems.append(f"{where}: {tick} is required; write it as {tick} (required)")
            continue
        if given is None:
            if spec.default is None and f"{tick} (default:" in row:
                continue
            problems.append(f"{where}: {tick} has no default written as {tick} = `...`")
            continue
        try:
            value = json.loads(given.group(1))
        except json.JSONDecodeError:
            problems.append(f"{where}: the default of {tick}, {given.group(1)!r}, is not JSON")
            continue
        if not _same(value, _json_value(spec.default)):
            problems.append(f"{where}: {tick} = {given.group(1)} in the document, but the code's "
                            f"default is {json.dumps(_json_value(spec.default))}")
    return problems


def catalogue_problems(doc: str) -> list[str]:
    """Every node type and parameter that section 3 misses or gets wrong."""
    by_category = subsections(section(doc, 3))
    problems = []
    for type_name in catalogue.types():
        cls = catalogue.get(type_name)
        where = f"section 3, {type_name}"
        found = {cat: rows(text, type_name) for cat, text in by_category.items()}
        found = {cat: r for cat, r in found.items() if r}
        if cls.category not in by_category:
            problems.append(f"{where}: no sub-heading '### 3.N {cls.category}'")
            continue
        if set(found) - {cls.category}:
            problems.append(f"{where}: listed under {sorted(found)}, expected only under "
                            f"{cls.category}")
        mine = found.get(cls.category, [])
        if len(mine) != 1:
            problems.append(f"{where}: expected one row '| `{type_name}` |' under "
                            f"{cls.category}, found {len(mine)}")
            continue
        problems += param_problems(mine[0], cls.all_params_spec(), where)
    return problems


def training_problems(doc: str) -> list[str]:
    """Every optimizer, hyperparameter, built-in dataset and option section 2 misses."""
    parts = subsections(section(doc, 2))
    optim_text = next((t for title, t in parts.items() if title == "Optimizers"), None)
    data_text = next((t for title, t in parts.items() if title == "Built-in datasets"), None)
    problems = []
    if optim_text is None:
        problems.append("section 2: no sub-heading '### 2.N Optimizers'")
    else:
        for kind, specs in OPTIMIZER_PARAMS.items():
            found = rows(optim_text, kind)
            if len(found) != 1:
                problems.append(f"section 2, optimizer {kind}: expected one row, found "
                                f"{len(found)}")
                continue
            problems += param_problems(found[0], specs, f"section 2, optimizer {kind}")
    if data_text is None:
        problems.append("section 2: no sub-heading '### 2.N Built-in datasets'")
    else:
        for name in known_builtins():
            found = rows(data_text, name)
            if len(found) != 1:
                problems.append(f"section 2, dataset {name}: expected one row, found "
                                f"{len(found)}")
                continue
            problems += param_problems(found[0], builtin_options(name),
                                       f"section 2, dataset {name}")
    return problems


# ---- the tests --------------------------------------------------------------------------------
def test_every_node_type_and_parameter_is_in_the_catalogue():
    problems = catalogue_problems(DOC.read_text(encoding="utf-8"))
    assert not problems, "docs/format.md section 3 is out of date:\n" + "\n".join(problems)


def test_every_optimizer_and_builtin_dataset_is_in_the_training_section():
    problems = training_problems(DOC.read_text(encoding="utf-8"))
    assert not problems, "docs/format.md section 2 is out of date:\n" + "\n".join(problems)


def test_sections_keep_their_numbers():
    doc = DOC.read_text(encoding="utf-8")
    titles = re.findall(r"^## (\d+)\. ", doc, re.M)
    assert titles == [str(n) for n in range(1, 10)]


def _drop_row(doc: str, first_cell: str) -> str:
    lines = doc.splitlines()
    kept = [x for x in lines if not (x.startswith("|") and x.split("|")[1].strip()
                                     == f"`{first_cell}`")]
    assert len(kept) < len(lines), first_cell
    return "\n".join(kept)


def _edit_row(doc: str, first_cell: str, old: str, new: str) -> str:
    """``doc`` with ``old`` replaced by ``new`` in the one row of ``first_cell``."""
    lines = doc.splitlines()
    hits = [i for i, x in enumerate(lines) if x.startswith("|")
            and x.split("|")[1].strip() == f"`{first_cell}`" and old in x]
    assert len(hits) == 1, (first_cell, old)
    lines[hits[0]] = lines[hits[0]].replace(old, new)
    return "\n".join(lines)


def test_the_checker_can_fail():
    doc = DOC.read_text(encoding="utf-8")
    assert not catalogue_problems(doc) and not training_problems(doc)
    # a node type's row is gone
    assert any("Dense" in p for p in catalogue_problems(_drop_row(doc, "Dense")))
    # a parameter is gone from its row
    gone = _edit_row(doc, "RNN", "`shared_with`", "shared_with")
    assert any("RNN" in p and "shared_with" in p for p in catalogue_problems(gone))
    # a wrong default
    wrong = _edit_row(doc, "Dropout", "`rate` = `0.5`", "`rate` = `0.25`")
    assert any("Dropout" in p and "0.25" in p for p in catalogue_problems(wrong))
    # a required parameter shown with a default
    assert any("Dense" in p and "units" in p for p in catalogue_problems(
        _edit_row(doc, "Dense", "`units` (required)", "`units` = `1`")))
    # a type listed under the wrong category
    moved = doc.replace("### 3.7 Merge", "### 3.7 Mergers")
    assert any("Add" in p for p in catalogue_problems(moved))
    # an optimizer, a hyperparameter, a dataset and an option
    assert any("adamw" in p for p in training_problems(_drop_row(doc, "adamw")))
    assert any("adam" in p and "amsgrad" in p for p in training_problems(
        _edit_row(doc, "adam", "`amsgrad`", "amsgrad")))
    assert any("recall" in p for p in training_problems(_drop_row(doc, "recall")))
    assert any("turns" in p for p in training_problems(
        _edit_row(doc, "spirals", "`turns` = `1.5`", "`turns` = `2.5`")))
