"""The editor never raises out of an open, a save or a paint: what it cannot show it refuses
with a message and keeps the current document.

Hostile graph files, made by mutating the examples with a fixed-seed generator (keys dropped
or repeated, every JSON type at every path, null, huge and non-finite numbers, negative
sizes, lone surrogates, very long strings, ids with newlines, far positions, unknown types,
dangling edges, a million ports, deep nesting) and a list of hand-made ones, are opened in the
real MainWindow the way the File menu opens them. For each: no exception escapes (pytest-qt
also captures those raised inside Qt's virtual methods, paint events included); the window
either shows the document, exactly when ``core.fileformat.load_graph`` reads it, or refuses
with a message and keeps the document it had; the window paints, with nothing selected and
with a node selected and the inspector showing it; and an opened document saves (through the
menu's path) and reopens as the same graph.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtGui import QImage, QPainter  # noqa: E402
from PySide6.QtWidgets import QMessageBox, QWidget  # noqa: E402

from core.errors import NeuroCanvasError  # noqa: E402
from core.fileformat import load_graph  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from tests.cli_helpers import ROOT  # noqa: E402
from tests.test_gui_open import settle  # noqa: E402

EXAMPLES = sorted((ROOT / "resources" / "examples").glob("*.ncg.json"))
RANDOM_CASES = 150  # mutated examples, in chunks of CHUNK per test
CHUNK = 25
SEED = 20240615


# ---- writing JSON that json.dumps cannot ---------------------------------------------------
class Raw(str):
    """JSON text written as it is: 1e999, NaN, "\\ud800", a duplicated key's object."""


class Dup:
    """An object written with one of its keys twice."""

    def __init__(self, pairs: list[tuple[str, object]]):
        self.pairs = pairs


def encode(v) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, Dup):
        return "{" + ", ".join(f"{json.dumps(k)}: {encode(x)}" for k, x in v.pairs) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {encode(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(encode(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def deep(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


HOSTILE = [
    "text", "", 0, -1, -(10 ** 6), 1.5, 10 ** 6, 10 ** 30, 2 ** 63, 1e308, 1e12, -1e12,
    True, False, None, [], {}, [1, 2, 3], [[1]], {"a": 1}, ["x"], [None], [-3, 4],
    Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("Infinity"), Raw('"\\ud800"'),
    Raw('"a\\udfffb"'), Raw('{"\\ud800": 1}'), "x" * 20000, "a\nb", "line\r\n", "\u202etxt",
    "\x00", "tab\there", "🙂" * 100, [10 ** 6] * 3, [1e12, 1e12], deep(50), deep(3000),
]


# ---- mutating a document -------------------------------------------------------------------
def paths(v, prefix=()):
    """Every path (tuple of keys and indices) in a parsed JSON value, the root included."""
    yield prefix
    if isinstance(v, dict):
        for k, x in v.items():
            yield from paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from paths(x, prefix + (i,))


def get(v, path):
    for p in path:
        v = v[p]
    return v


def mutate(doc: dict, rng: random.Random) -> tuple[dict | Raw, str, str | None]:
    """(the mutated document, what was done, the node id it touched or None)."""
    all_paths = [p for p in paths(doc) if p]
    path = rng.choice(all_paths)
    parent, key = get(doc, path[:-1]), path[-1]
    node_id = None
    if len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
        node_id = doc["nodes"][path[1]].get("id")
    op = rng.choice(["replace"] * 6 + ["delete", "duplicate", "rename_key"])
    where = "/".join(map(str, path))
    if op == "delete" and isinstance(parent, dict):
        del parent[key]
        return doc, f"delete {where}", node_id
    if op == "delete":  # a list item
        parent.pop(key)
        return doc, f"delete item {where}", node_id
    if op == "duplicate" and isinstance(parent, dict):
        pairs = list(parent.items()) + [(key, rng.choice(HOSTILE))]
        set_at(doc, path[:-1], Dup(pairs))
        return doc, f"duplicate key {where}", node_id
    if op == "rename_key" and isinstance(parent, dict):
        value = parent.pop(key)
        parent[rng.choice(["", "ID", key + "\n", "x" * 300, "from", "params", "\u0000"])] = value
        return doc, f"rename key {where}", node_id
    value = rng.choice(HOSTILE)
    parent[key] = value
    return doc, f"replace {where} with {encode(value)[:40]}", node_id


def set_at(doc, path, value):
    if not path:
        raise ValueError("the root")
    get(doc, path[:-1])[path[-1]] = value


def random_cases(count: int) -> list[tuple[str, str, str | None]]:
    """(description, file text, node to select) for ``count`` mutated examples."""
    rng = random.Random(SEED)
    texts = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in EXAMPLES}
    cases = []
    for i in range(count):
        name = rng.choice(sorted(texts))
        doc = json.loads(json.dumps(texts[name]))
        what = []
        node_id = None
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            try:
                doc, did, nid = mutate(doc, rng)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                break  # the root was replaced, or a Dup/Raw stands in the way: enough
            what.append(did)
            node_id = node_id or nid
            if not isinstance(doc, dict) or any(isinstance(x, (Raw, Dup))
                                                for x in walk(doc)):
                break
        cases.append((f"#{i} {name}: {'; '.join(what)}", encode(doc), node_id))
    return cases


def walk(v):
    yield v
    if isinstance(v, dict):
        for x in v.values():
            yield from walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x)


def base(name: str = "mlp_digits.ncg.json") -> dict:
    return json.loads((ROOT / "resources" / "examples" / name).read_text(encoding="utf-8"))


def with_nodes(*nodes, edges=(), name="mlp_digits.ncg.json") -> str:
    doc = base(name)
    doc["nodes"] += list(nodes)
    doc["edges"] += list(edges)
    return encode(doc)


def changed(fn, name="mlp_digits.ncg.json") -> str:
    doc = base(name)
    fn(doc)
    return encode(doc)


def _node(nid, type_name, **params):
    return {"id": nid, "type": type_name, "params": params, "pos": [100, 500]}


HAND_MADE: list[tuple[str, str | bytes, str | None]] = [
    ("empty file", "", None),
    ("only whitespace", "  \n\t ", None),
    ("top-level list", "[]", None),
    ("top-level string", '"neurocanvas.graph"', None),
    ("top-level number", "1e999", None),
    ("not UTF-8", b"\xff\xfe{\"format\": 1}", None),
    ("UTF-8 BOM", "\ufeff" + encode(base()), None),
    ("truncated", encode(base())[:200], None),
    ("binary noise", bytes(random.Random(1).randrange(256) for _ in range(2000)), None),
    ("deeply nested top level", "[" * 100000 + "]" * 100000, None),
    ("deeply nested params", changed(lambda d: d["nodes"][1].__setitem__(
        "params", {"units": deep(100000)})), None),
    ("NUL bytes", "\x00" * 100, None),
    ("version 2", changed(lambda d: d.__setitem__("version", 2)), None),
    ("version true", changed(lambda d: d.__setitem__("version", True)), None),
    ("version 1.0", changed(lambda d: d.__setitem__("version", 1.0)), None),
    ("version huge", changed(lambda d: d.__setitem__("version", 10 ** 400)), None),
    ("unknown node type", with_nodes(_node("odd", "Denze", units=3)), "odd"),
    ("empty type", with_nodes(_node("odd", "")), "odd"),
    ("type with newline", with_nodes(_node("odd", "Dense\nReLU")), "odd"),
    ("type very long", with_nodes(_node("odd", "D" * 100000)), "odd"),
    ("dangling edges", with_nodes(edges=[{"from": "nowhere", "to": "fc1"},
                                         {"from": "x", "to": "nowhere:in"},
                                         {"from": "x:nope", "to": "loss:nope"}]), None),
    ("self loop", with_nodes(edges=[{"from": "fc1", "to": "fc1"}]), "fc1"),
    ("self loop with delay", with_nodes(edges=[{"from": "act1", "to": "fc1", "delay": 3}]),
     "fc1"),
    ("delay huge", with_nodes(edges=[{"from": "act1", "to": "fc1", "delay": 10 ** 9}]),
     "fc1"),
    ("delay negative", with_nodes(edges=[{"from": "act1", "to": "fc1", "delay": -1}]), None),
    ("a million ports", with_nodes(_node("many", "Add", inputs=10 ** 6),
                                   edges=[{"from": "x", "to": "many:in999999"}]), "many"),
    ("sixty-four ports, all wired", with_nodes(
        _node("cat", "Concat", inputs=64),
        edges=[{"from": "x", "to": f"cat:in{i}"} for i in range(64)]), "cat"),
    ("ports as a string", with_nodes(_node("many", "Add", inputs="64")), "many"),
    ("huge shape", changed(lambda d: d["nodes"][0]["params"].__setitem__(
        "shape", [10 ** 6, 10 ** 6, 10 ** 6])), "x"),
    ("negative shape", changed(lambda d: d["nodes"][0]["params"].__setitem__("shape", [-64])),
     "x"),
    ("zero units", changed(lambda d: d["nodes"][1]["params"].__setitem__("units", 0)), "fc1"),
    ("huge units", changed(lambda d: d["nodes"][1]["params"].__setitem__("units", 10 ** 12)),
     "fc1"),
    ("units 1e308", changed(lambda d: d["nodes"][1]["params"].__setitem__("units", 1e308)),
     "fc1"),
    ("id with newline", changed(lambda d: d["nodes"][1].__setitem__("id", "fc1\n")), None),
    ("id very long", changed(lambda d: d["nodes"][1].__setitem__("id", "f" * 10000)), None),
    ("duplicate ids", changed(lambda d: d["nodes"][1].__setitem__("id", "x")), None),
    ("position 1e12", changed(lambda d: d["nodes"][1].__setitem__("pos", [1e12, -1e12])),
     None),
    ("position at the limit", changed(lambda d: d["nodes"][1].__setitem__(
        "pos", [1000000, -1000000])), "fc1"),
    ("position of three", changed(lambda d: d["nodes"][1].__setitem__("pos", [1, 2, 3])),
     None),
    ("label very long", changed(lambda d: d["nodes"][1].__setitem__(
        "label", "L" * 100000 + "\n" * 1000)), "fc1"),
    ("label with controls", changed(lambda d: d["nodes"][1].__setitem__(
        "label", "\u202e\x1b[31m\r\n\t🙂")), "fc1"),
    ("label not a string", changed(lambda d: d["nodes"][1].__setitem__(
        "label", {"a": [1, 2]})), "fc1"),
    ("name very long", changed(lambda d: d.__setitem__("name", "N" * 100000)), None),
    ("name with newlines", changed(lambda d: d.__setitem__("name", "a\nb\rc")), None),
    ("three hundred nodes", with_nodes(*[_node(f"n{i}", "ReLU") for i in range(300)]), "n299"),
    ("training a list", changed(lambda d: d.__setitem__("training", [1])), None),
    ("dataset /dev/zero", changed(lambda d: d["training"].__setitem__(
        "dataset", {"source": "npz", "path": "/dev/zero"})), None),
    ("dataset path with NUL", changed(lambda d: d["training"].__setitem__(
        "dataset", {"source": "csv", "path": "a\u0000b", "target_column": "y"})), None),
    ("dataset huge n", changed(lambda d: d["training"]["dataset"].__setitem__(
        "name", "spirals") or d["training"]["dataset"].__setitem__("n", 10 ** 12)), None),
    ("batch size huge", changed(lambda d: d["training"].__setitem__("batch_size", 10 ** 15)),
     None),
    ("lr non-finite", changed(lambda d: d["training"]["optimizer"].__setitem__(
        "lr", Raw("1e999"))), None),
    ("betas of strings", changed(lambda d: d["training"]["optimizer"].__setitem__(
        "betas", ["a", "b"])), None),
    ("shared_with a loop", with_nodes(_node("s1", "Dense", units=3, shared_with="s2"),
                                      _node("s2", "Dense", units=3, shared_with="s1")), "s1"),
    ("shared_with itself", with_nodes(_node("s1", "Dense", units=3, shared_with="s1")), "s1"),
    ("param names odd", with_nodes(_node("odd", "Dense", **{"units": 3, "": 1, "a\nb": 2,
                                                            "x" * 500: None})), "odd"),
    ("surrogate in a param", changed(lambda d: d["nodes"][1]["params"].__setitem__(
        "units", Raw('"\\udc00"'))), None),
    ("surrogate in a key", changed(lambda d: d["nodes"][1].__setitem__(
        "params", Raw('{"\\ud83d": 1}'))), None),
]


# ---- the window ------------------------------------------------------------------------------
@pytest.fixture
def window(qtbot, monkeypatch):
    """A shown main window whose message boxes are recorded, not shown."""
    messages: list[tuple[str, str]] = []

    def record(kind):
        def box(parent, title, text, *args, **kwargs):
            messages.append((title, text))
            return QMessageBox.Ok if kind != "question" else QMessageBox.Discard
        return box

    for kind in ("warning", "critical", "information", "question"):
        monkeypatch.setattr(QMessageBox, kind, record(kind))
    w = MainWindow()
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    w.messages = messages
    yield w
    w.document.undo_stack.setClean()
    w.close()
    w.deleteLater()


def paint(w: MainWindow) -> None:
    """Paint the whole window (canvas, inspector, problems) and the canvas on its own."""
    w.document.flush()
    settle()
    w.grab()  # the canvas as the view shows it, the inspector, the problems
    image = QImage(400, 300, QImage.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    try:
        w.scene.render(painter)  # every node, however far out of view
    finally:
        painter.end()


def paint_selected(w: MainWindow, node_id: str | None) -> None:
    """Paint with ``node_id`` (or the first node) selected and shown in the inspector, then
    with nothing selected (the training settings)."""
    ids = list(w.document.graph.nodes)
    if ids:
        chosen = node_id if node_id in w.document.graph.nodes else ids[0]
        w.focus_node(chosen)
        settle()
        assert w.scene.selected_node_ids() == [chosen]
        paint(w)
    w.scene.select_nodes([])
    paint(w)


def shown(messages) -> list[str]:
    return [text[:300] for _, text in messages]


def check_case(w: MainWindow, qtbot, tmp_path: Path, i: int, what: str, text, node_id):
    path = tmp_path / f"case{i}.ncg.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_graph(path)
        readable = True
    except NeuroCanvasError:
        readable = False
    before_json, before_path = w.document.to_json(), w.document.path
    del w.messages[:]
    with qtbot.capture_exceptions() as raised:
        opened = w.open_path(path)
        settle()
        if opened:
            assert w.document.path == path and not w.messages, what
            paint_selected(w, node_id)
            saved = tmp_path / f"saved{i}.ncg.json"
            assert w._save_to(saved), (what, shown(w.messages))
            after_save = w.document.to_json()
            assert w.open_path(saved), (what, shown(w.messages))
            assert w.document.to_json() == after_save, what
            paint(w)
        else:
            assert len(w.messages) == 1 and w.messages[0][1].strip(), what
            assert w.document.to_json() == before_json and w.document.path == before_path, what
            paint(w)
    assert not raised, (what, [str(e[1]) for e in raised])
    assert opened == readable, (what, shown(w.messages))


def cases_in_chunk(k: int):
    cases = random_cases(RANDOM_CASES)
    return cases[k * CHUNK:(k + 1) * CHUNK]


@pytest.mark.parametrize("chunk", range(RANDOM_CASES // CHUNK))
def test_mutated_examples_open_or_are_refused_and_paint(window, qtbot, tmp_path, chunk):
    window.open_file(EXAMPLES[0])
    for i, (what, text, node_id) in enumerate(cases_in_chunk(chunk)):
        check_case(window, qtbot, tmp_path, i, what, text, node_id)


def test_hand_made_hostile_files_open_or_are_refused_and_paint(window, qtbot, tmp_path):
    window.open_file(EXAMPLES[0])
    for i, (what, text, node_id) in enumerate(HAND_MADE):
        check_case(window, qtbot, tmp_path, i, what, text, node_id)


def test_the_generator_makes_both_kinds_of_file(tmp_path):
    """The mutated files are neither all refused nor all read: both paths are exercised."""
    readable = 0
    cases = random_cases(RANDOM_CASES)
    for i, (_, text, _) in enumerate(cases):
        p = tmp_path / f"{i}.json"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_graph(p)
            readable += 1
        except NeuroCanvasError:
            pass
    assert 0.2 * len(cases) < readable < 0.9 * len(cases)
    assert len({c[1] for c in cases}) == len(cases)


def test_a_refused_file_keeps_the_document_and_says_why(window, qtbot, tmp_path):
    """The check itself can fail: a refused open leaves the open graph, with one message."""
    window.open_file(EXAMPLES[0])
    before = window.document.to_json()
    bad = tmp_path / "bad.ncg.json"
    bad.write_text('{"format": "neurocanvas.graph", "version": 1, "nodes": {}}', "utf-8")
    assert window.open_path(bad) is False
    assert window.document.to_json() == before and len(window.messages) == 1
    assert "bad.ncg.json" in window.messages[0][1]


WRONG = ["x" * 5000, -7, 10 ** 30, [[]], {"a": None}, 0.5, "", True]


@pytest.mark.parametrize("round_", range(3))
def test_every_parameter_of_every_type_with_a_wrong_value(window, qtbot, tmp_path, round_):
    """One node of every type, each parameter a value of the wrong kind or out of range:
    the graph opens with its problems, and every node, selected, paints in the inspector."""
    from core import catalogue

    nodes = []
    for i, type_name in enumerate(sorted(catalogue.types())):
        spec = catalogue.get(type_name).all_params_spec()
        params = {name: WRONG[(i + j + 3 * round_) % len(WRONG)]
                  for j, name in enumerate(spec)}
        nodes.append({"id": f"n{i}", "type": type_name, "params": params,
                      "pos": [i * 150, round_ * 100]})
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(len(nodes) - 1)]
    doc = {"format": "neurocanvas.graph", "version": 1, "nodes": nodes, "edges": edges}
    path = tmp_path / "wrong.ncg.json"
    path.write_text(encode(doc), encoding="utf-8")
    with qtbot.capture_exceptions() as raised:
        assert window.open_path(path), window.messages
        for nid in window.document.graph.nodes:
            window.focus_node(nid)
            settle()
            assert window.inspector.isVisible()
            window.inspector.grab()
        paint(window)
        assert window._save_to(tmp_path / "saved.ncg.json"), window.messages
    assert not raised, [str(e[1]) for e in raised]
    assert window.problems.problem_count() > 0


# ---- crashes this test found -----------------------------------------------------------------
def test_training_settings_that_are_not_text_show_without_a_crash(window, qtbot, tmp_path):
    """The training inspector looked names up in dicts: a dataset name that is a list raised
    TypeError (unhashable) out of every selection change; a dataset path that is a number,
    holds a NUL or is too long for the file system raised too."""
    for dataset, optimizer in [({"source": "builtin", "name": [1, 2, 3]}, {"type": 3}),
                               ({"source": ["npz"], "path": 5}, {"type": None}),
                               ({"source": "npz", "path": "a\u0000b"}, {"type": True}),
                               ({"source": "csv", "path": "p" * 5000}, {"type": "adam"})]:
        doc = base()
        doc["training"] = {"dataset": dataset, "optimizer": optimizer}
        path = tmp_path / "t.ncg.json"
        path.write_text(encode(doc), encoding="utf-8")
        with qtbot.capture_exceptions() as raised:
            assert window.open_path(path), window.messages
            window.focus_node("fc1")
            settle()
            window.scene.select_nodes([])  # the training settings
            paint(window)
        assert not raised, (str(dataset)[:100], [str(e[1])[:300] for e in raised])


def test_a_very_long_type_name_is_shown_clipped(window, qtbot, tmp_path):
    """A 100,000-character type name used to go whole into the inspector's title and the
    problem texts: every layout of the window measured it (seconds per repaint) and the
    inspector asked to be 100,000 characters wide. The graph keeps the name whole."""
    path = tmp_path / "long.ncg.json"
    path.write_text(with_nodes(_node("odd", "D" * 100000)), encoding="utf-8")
    assert window.open_path(path)
    window.focus_node("odd")
    settle()
    editor = window.inspector.findChild(QWidget, "nodeProblems").parentWidget()
    assert len(editor.title.text()) <= 60 and editor.title.text().endswith("…")
    assert len(window.inspector.findChild(QWidget, "nodeProblems").text()) < 5000
    item = window.problems.item_for("odd")
    assert item is not None and len(item.text(0)) <= 300
    assert window.inspector.minimumSizeHint().width() < 2000
    assert window.document.graph.nodes["odd"].type == "D" * 100000


def test_an_optimizer_type_that_is_a_list_opens_with_a_problem(window, qtbot, tmp_path):
    doc = base()
    doc["training"]["optimizer"] = {"type": ["adam"]}
    path = tmp_path / "t.ncg.json"
    path.write_text(encode(doc), encoding="utf-8")
    try:
        with qtbot.capture_exceptions() as raised:
            opened = window.open_path(path)
            window.scene.select_nodes([])
            paint(window)
    finally:
        with qtbot.capture_exceptions():  # a valid graph again, before the window closes
            window.open_file(EXAMPLES[0])
            settle()
    if raised:
        raise raised[0][1]
    assert opened
