"""Files a dataset or weights path may name: regular files only (a FIFO, a device or a folder
is refused before it is opened), no NUL in a path, short excerpts of a file in messages, and
npz archives checked from their headers (a size cap, honest sizes) before any data is read."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import core.npz
from core.datasets import csv_header, load_csv, load_npz, npz_arrays, peek_fields
from core.datasets.peek import clear_cache
from core.errors import DataError, WeightsError
from core.network import Network
from core.npz import read_npz, read_npz_headers
from core.validate import analyze
from core.weights import load_weights, network_shapes, save_weights
from tests.graphs import build, mlp_dict

ROOT = Path(__file__).resolve().parent.parent

# Every reader, given a path: run in a subprocess so that a regression (a reader that opens
# a FIFO and waits for a writer, or reads /dev/zero forever) fails on a timeout, not a hang.
PROBE = """
import sys
from core.datasets import load_csv, load_npz, peek_fields, csv_header, npz_arrays
from core.datasets.peek import clear_cache
from core.errors import NeuroCanvasError
from core.weights import load_weights
path = sys.argv[1]
readers = {
    "npz": lambda: load_npz({"path": path}, None),
    "npz_arrays": lambda: npz_arrays(path),
    "csv": lambda: load_csv({"source": "csv", "path": path, "target_column": "y"}, None),
    "csv_header": lambda: csv_header(path),
    "peek_npz": lambda: peek_fields({"source": "npz", "path": path}),
    "peek_csv": lambda: peek_fields({"source": "csv", "path": path, "target_column": "y"}),
    "weights": lambda: load_weights(path),
    "weights_for": lambda: load_weights(path, {"a/W": (2, 2)}),
}
for name, read in readers.items():
    clear_cache()
    try:
        read()
    except NeuroCanvasError as e:
        print(name, type(e).__name__, e.file == path, e.message, sep="|")
    else:
        print(name, "read it", sep="|")
"""


def probe(path: str) -> list[list[str]]:
    r = subprocess.run([sys.executable, "-c", PROBE, path], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split("|") for line in r.stdout.splitlines()]
    assert len(rows) == 8, r.stdout
    return rows


def assert_refused(path: str, words: str) -> None:
    for name, kind, named, *message in probe(path):
        assert kind == ("WeightsError" if name.startswith("weights") else "DataError"), name
        assert named == "True", name
        assert words in "|".join(message), (name, message)


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    assert_refused(str(fifo), "is not a regular file")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused(device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    assert_refused(device, "is not a regular file")


def test_a_folder_is_refused(tmp_path):
    assert_refused(str(tmp_path), "is a directory")


def test_a_nul_in_a_path_is_a_clean_error(tmp_path):
    path = str(tmp_path / "a\x00b.npz")
    for read in (lambda: load_npz({"path": path}, None), lambda: npz_arrays(path),
                 lambda: load_csv({"path": path, "target_column": "y"}, None),
                 lambda: csv_header(path),
                 lambda: peek_fields({"source": "npz", "path": path}),
                 lambda: peek_fields({"source": "csv", "path": path, "target_column": "y"})):
        clear_cache()
        with pytest.raises(DataError, match="NUL") as info:
            read()
        assert "\x00" not in str(info.value)
    for read in (lambda: load_weights(path), lambda: load_weights(path, {"a": (1,)})):
        with pytest.raises(WeightsError, match="NUL"):
            read()


# ---- csv messages quote an excerpt -------------------------------------------------------


def test_csv_messages_quote_a_short_printable_excerpt(tmp_path):
    secret = "SECRET_" + "x" * 500
    (tmp_path / "t.csv").write_text(f"a b,{secret},c\n1,2,3\n")
    with pytest.raises(DataError, match="'label' is not a column") as info:
        load_csv({"path": "t.csv", "target_column": "label"}, tmp_path)
    msg = info.value.message
    quoted = msg.split("the header has: ", 1)[1]
    assert len(quoted) <= 60 and quoted.endswith("...")
    assert "\x07" not in msg and "x" * 100 not in msg
    (tmp_path / "dup.csv").write_text(f"{secret},{secret},label\n1,2,3\n")
    with pytest.raises(DataError, match="twice") as info:
        load_csv({"path": "dup.csv", "target_column": "label"}, tmp_path)
    assert "x" * 100 not in info.value.message
    (tmp_path / "cell.csv").write_text(f"a,label\n{secret},1\n")
    with pytest.raises(DataError, match="expected a number") as info:
        load_csv({"path": "cell.csv", "target_column": "label"}, tmp_path)
    assert "x" * 100 not in info.value.message


def test_a_file_that_is_not_csv_is_not_quoted(tmp_path):
    (tmp_path / "env").write_bytes(b"HOME=/secret\x00PATH=/also/secret\x00")
    with pytest.raises(DataError) as info:
        load_csv({"path": "env", "target_column": "y"}, tmp_path)
    assert "secret" not in str(info.value)
    assert "NUL" in info.value.message
    (tmp_path / "bell.csv").write_text("a\x07secret,label\n1,2\n")
    with pytest.raises(DataError, match="not printable") as info:
        load_csv({"path": "bell.csv", "target_column": "y"}, tmp_path)
    assert "secret" not in str(info.value)
    (tmp_path / "cell.csv").write_text("a,label\n1\x07,2\n")
    with pytest.raises(DataError, match="expected a number") as info:
        load_csv({"path": "cell.csv", "target_column": "label"}, tmp_path)
    assert "\x07" not in info.value.message and "'1?'" in info.value.message


# ---- npz: headers first ------------------------------------------------------------------


def forbid_reading(monkeypatch) -> list:
    """Make reading any array's data fail loudly; the list records attempts."""
    calls = []

    def read_array(*args, **kw):
        calls.append(args)
        raise AssertionError("array data was read")

    monkeypatch.setattr(np.lib.format, "read_array", read_array)
    return calls


def test_an_npz_larger_than_the_cap_is_refused_from_its_headers(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 4), np.float32), y=np.zeros(10, np.int64))
    assert load_npz({"path": "d.npz"}, tmp_path)["x"].shape == (10, 4)
    monkeypatch.setattr(core.npz, "MAX_NPZ_BYTES", 200)  # the arrays declare 240 bytes
    calls = forbid_reading(monkeypatch)
    for read in (lambda: load_npz({"path": "d.npz"}, tmp_path),
                 lambda: npz_arrays(tmp_path / "d.npz"),
                 lambda: peek_fields({"source": "npz", "path": "d.npz"}, tmp_path)):
        clear_cache()
        with pytest.raises(DataError, match="240 bytes, more than the 200") as info:
            read()
        assert info.value.file == str(tmp_path / "d.npz")
    with pytest.raises(WeightsError, match="more than the 200"):
        load_weights(tmp_path / "d.npz")
    assert calls == []
    # only the keys asked for count
    monkeypatch.undo()
    monkeypatch.setattr(core.npz, "MAX_NPZ_BYTES", 200)
    got = read_npz(tmp_path / "d.npz", DataError, "an archive", keys=["x", "absent"])
    assert list(got) == ["x"]


def bomb(path: Path, declared: tuple[int, ...], data: bytes) -> None:
    """An archive with one member 'x' whose .npy header declares ``declared`` float64 but
    whose data is ``data``, compressed."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": declared})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", buf.getvalue() + data)


def test_an_npz_whose_header_lies_about_its_size_is_refused(tmp_path):
    bomb(tmp_path / "big.npz", (1,), b"\0" * 10_000_000)  # 10 MB behind an 8-byte header
    assert (tmp_path / "big.npz").stat().st_size < 100_000
    bomb(tmp_path / "short.npz", (1000,), b"\0" * 8)
    for name in ("big.npz", "short.npz"):
        with pytest.raises(DataError, match="not the size its header declares"):
            load_npz({"path": name}, tmp_path)
        with pytest.raises(DataError, match="not the size its header declares"):
            npz_arrays(tmp_path / name)
        with pytest.raises(WeightsError, match="not the size its header declares"):
            load_weights(tmp_path / name)


def test_an_honest_npz_reads_as_before(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    f = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    np.savez_compressed(tmp_path / "c.npz", x=x, f=f, b=np.array([True, False]))
    got = read_npz(tmp_path / "c.npz", DataError, "an archive")
    np.testing.assert_array_equal(got["x"], x)
    np.testing.assert_array_equal(got["f"], f)
    assert got["b"].dtype == bool
    heads = read_npz_headers(tmp_path / "c.npz", DataError, "an archive")
    assert heads["x"] == ((3, 4), np.dtype(np.float32))


# ---- weights: keys and shapes from the headers -------------------------------------------


def mlp() -> Network:
    a = analyze(build(mlp_dict()))
    assert a.ok
    return Network(a)


def test_a_missing_weights_key_is_reported_from_the_headers(tmp_path, monkeypatch):
    net = mlp()
    state = net.state_dict()
    del state["fc2/b"]
    path = tmp_path / "w.npz"
    save_weights(path, state)
    calls = forbid_reading(monkeypatch)
    with pytest.raises(WeightsError, match="missing key 'fc2/b'") as info:
        load_weights(path, network_shapes(net))
    assert info.value.file == str(path)
    state = net.state_dict()
    state["fc1/W"] = np.zeros((5, 4), np.float32)
    save_weights(path, state)
    with pytest.raises(WeightsError, match=r"'fc1/W' has shape \[5, 4\], expected \[4, 5\]"):
        load_weights(path, network_shapes(net))
    assert calls == []


def test_weights_for_a_network_read_only_its_keys(tmp_path):
    net = mlp()
    state = net.state_dict()
    path = tmp_path / "w.npz"
    save_weights(path, {**state, "extra/W": np.zeros((3, 3))})
    loaded = load_weights(path, network_shapes(net))
    assert loaded.keys() == state.keys()
    net.load_state_dict(loaded, file=str(path))
    assert "extra/W" in load_weights(path)


# ---- predict -----------------------------------------------------------------------------


def test_predict_checks_weights_and_input_from_their_headers(tmp_path):
    from core.fileformat import load_graph
    from tests.cli_helpers import assert_user_error, run
    from tests.graphs import write

    graph = write(tmp_path / "mlp.ncg.json", mlp_dict())
    net = Network(analyze(load_graph(graph)), seed=1)
    weights, inputs = tmp_path / "w.npz", tmp_path / "x.npz"
    save_weights(weights, net.state_dict())
    np.savez(inputs, x=np.zeros((7, 4), np.float32), unused=np.zeros(2))
    r = run("predict", graph, "--weights", weights, "--input", inputs)
    assert r.returncode == 0, r.stderr
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    assert_user_error(run("predict", graph, "--weights", fifo, "--input", inputs),
                      str(fifo), "is not a regular file")
    assert_user_error(run("predict", graph, "--weights", weights, "--input", fifo),
                      str(fifo), "is not a regular file")
    state = net.state_dict()
    del state["fc1/W"]
    save_weights(weights, state)
    assert_user_error(run("predict", graph, "--weights", weights, "--input", inputs),
                      str(weights), "missing key 'fc1/W'")


def test_export_reads_only_the_weights_it_needs(tmp_path, monkeypatch):
    from core.export import export_graph

    graph = build(mlp_dict())
    net = mlp()
    state = net.state_dict()
    needed = sum(a.nbytes for a in state.values())
    path = tmp_path / "w.npz"
    save_weights(path, {**state, "extra/W": np.zeros((100, 100), np.float32)})  # 40 kB more
    monkeypatch.setattr(core.npz, "MAX_NPZ_BYTES", needed + 1000)
    with pytest.raises(WeightsError, match="more than the"):
        load_weights(path)  # the whole file is over the cap
    assert "class Model" in export_graph(graph, "pytorch", path)
    del state["fc2/b"]
    save_weights(path, state)
    calls = forbid_reading(monkeypatch)
    with pytest.raises(WeightsError, match="missing key 'fc2/b'"):
        export_graph(graph, "pytorch", path)
    assert calls == []
