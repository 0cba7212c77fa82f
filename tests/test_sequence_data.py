"""Data for sequences of variable length (docs/format.md sections 2.8 and 2.9): the built-in
``parity``, ragged sequences in an npz archive as a padded array plus a lengths array, csv
tables of token sequences, and the check of an Input's lengths field."""
from __future__ import annotations

import numpy as np
import pytest

from core.datasets import Dataset, check_fields, fit_problems, load_dataset, peek_fields
from core.datasets.fields import lengths_use
from core.datasets.files import encode_tokens, token_csv_fields, token_vocabulary
from core.errors import DataError, ParamError


def parity(**opts) -> Dataset:
    return load_dataset({"source": "builtin", "name": "parity", **opts}, seed=0)


# ---- the built-in parity ---------------------------------------------------------------------
def test_parity_strings_have_their_lengths_their_parity_and_zero_padding():
    ds = parity(n=400, steps=9, min_length=2)
    x, lengths, y = ds["x"], ds["lengths"], ds["y"]
    assert x.shape == (400, 9) and x.dtype == np.int64
    assert lengths.shape == (400,) and lengths.dtype == np.int64 and y.dtype == np.int64
    assert lengths.min() == 2 and lengths.max() == 9  # the whole range is drawn
    valid = np.arange(9)[None, :] < lengths[:, None]
    assert np.all(np.isin(x[valid], [1, 2])) and np.all(x[~valid] == 0)
    np.testing.assert_array_equal(y, (x == 2).sum(axis=1) % 2)
    assert y.sum() == 200  # balanced classes
    # every length is about as common, and both classes at each length
    for length in range(2, 10):
        at = y[lengths == length]
        assert len(at) > 20 and 0 < at.mean() < 1, length


def test_parity_fields_declare_what_it_makes_and_it_is_seeded():
    ds = parity(n=30, steps=5)
    assert peek_fields({"source": "builtin", "name": "parity", "n": 30, "steps": 5}) == {
        "x": ((5,), "int64", True), "lengths": ((), "int64", True), "y": ((), "int64", True)}
    assert {k: (v[0], v[1]) for k, v in ds.field_shapes().items()} == {
        "x": ((5,), "int64"), "lengths": ((), "int64"), "y": ((), "int64")}
    again = parity(n=30, steps=5)
    other = load_dataset({"source": "builtin", "name": "parity", "n": 30, "steps": 5}, seed=1)
    assert all(np.array_equal(ds[k], again[k]) for k in ds.fields)
    assert not np.array_equal(ds["x"], other["x"])
    one = parity(n=10, steps=4, min_length=4)  # every string has all 4 steps
    assert np.all(one["lengths"] == 4) and np.all(one["x"] > 0)


def test_parity_refuses_a_shortest_string_longer_than_the_longest():
    with pytest.raises(ParamError) as e:
        parity(steps=4, min_length=5)
    assert e.value.param == "dataset.min_length" and "exceeds steps 4" in e.value.message
    with pytest.raises(ParamError) as e:
        parity(min_length=0)
    assert e.value.param == "dataset.min_length"


# ---- npz: a padded array plus a lengths array ------------------------------------------------
def test_an_npz_of_padded_sequences_and_their_lengths_feeds_an_input(tmp_path):
    x = np.zeros((3, 4, 2), np.float32)
    x[0, :2], x[1, :4], x[2, :1] = 1.0, 2.0, 3.0
    np.savez(tmp_path / "seq.npz", x=x, lengths=np.array([2, 4, 1]), y=np.array([0, 1, 0]))
    cfg = {"source": "npz", "path": "seq.npz"}
    ds = load_dataset(cfg, tmp_path)
    fields = peek_fields(cfg, tmp_path)
    assert fields["lengths"][:2] == ((), "int64") and fields["x"][0] == (4, 2)
    uses = {"x": [("x", (4, 2), "float32")], "lengths": [lengths_use("x", 4)],
            "y": [("y", (), "int64")]}
    assert fit_problems(fields, uses) == []
    got = check_fields(ds, uses)
    np.testing.assert_array_equal(got["lengths"], [2, 4, 1])
    assert got["lengths"].dtype == np.int64
    # lengths saved as [n, 1] floats of whole numbers are read as [] int64
    np.savez(tmp_path / "f.npz", x=x, lengths=np.array([[2.0], [4.0], [1.0]]), y=[0, 1, 0])
    got = check_fields(load_dataset({"source": "npz", "path": "f.npz"}, tmp_path), uses)
    assert got["lengths"].shape == (3,) and got["lengths"].dtype == np.int64


def test_a_lengths_field_out_of_range_or_missing_names_the_input_and_its_lengths(tmp_path):
    x = np.ones((3, 4), np.int64)
    ds = Dataset({"x": x, "lengths": np.array([2, 5, 1]), "y": np.zeros(3, np.int64)}, "d")
    with pytest.raises(DataError) as e:
        check_fields(ds, {"lengths": lengths_use("tokens", 4)})
    assert e.value.node == "tokens"
    assert "sample 1 has length 5" in e.value.message and "1 to 4" in e.value.message
    zero = Dataset({"x": x, "lengths": np.array([2, 0, 1])}, "d")
    with pytest.raises(DataError, match="sample 1 has length 0"):
        check_fields(zero, {"lengths": lengths_use("tokens", None)})
    half = Dataset({"x": x, "lengths": np.array([2.0, 1.5, 1.0])}, "d")
    with pytest.raises(DataError, match="wants int64 lengths, but field 'lengths'"):
        check_fields(half, {"lengths": lengths_use("tokens", 4)})
    fields = {"x": ((4,), "int64", True), "n": ((), "int64", True),
              "wide": ((2,), "int64", True), "frac": ((), "float32", False)}
    for field, words in (("lengths", "has no such field"), ("wide", "of shape []"),
                         ("frac", "int64 lengths, but field 'frac'")):
        (p,) = fit_problems(fields, {field: lengths_use("tokens", 4)})
        assert p.node == "tokens" and p.param == "lengths", field
        assert words in p.message, (field, p.message)
        if field != "frac":
            assert f"reads its lengths from field '{field}'" in p.message
    assert fit_problems(fields, {"n": lengths_use("tokens", 4)}) == []


# ---- csv tables of token sequences -----------------------------------------------------------
TABLE = "label,tokens\n1,( ( ) ( ) )\n0,) (\n\n1,\"( )\"\n"


def tokens_cfg(**extra) -> dict:
    return {"source": "csv", "path": "t.csv", "target_column": "label",
            "sequence_column": "tokens", **extra}


def test_a_token_table_reads_into_padded_ids_lengths_and_targets(tmp_path):
    (tmp_path / "t.csv").write_text(TABLE)
    ds = load_dataset(tokens_cfg(), tmp_path)
    assert set(ds.fields) == {"x", "lengths", "y"}
    np.testing.assert_array_equal(ds["x"], [[1, 1, 2, 1, 2, 2], [2, 1, 0, 0, 0, 0],
                                            [1, 2, 0, 0, 0, 0]])
    np.testing.assert_array_equal(ds["lengths"], [6, 2, 2])
    np.testing.assert_array_equal(ds["y"], [1, 0, 1])
    assert ds["x"].dtype == ds["lengths"].dtype == ds["y"].dtype == np.int64
    assert token_vocabulary(tokens_cfg(), tmp_path) == ["(", ")"]
    assert token_csv_fields(tokens_cfg(), tmp_path) == {
        "x": ((6,), "int64", True), "lengths": ((), "int64", True), "y": ((), "int64", True)}
    # a given vocabulary and T: ids follow the list, the padding reaches steps
    pinned = load_dataset(tokens_cfg(vocabulary=[")", "(", "x"], steps=8), tmp_path)
    np.testing.assert_array_equal(pinned["x"][1], [1, 2, 0, 0, 0, 0, 0, 0])
    assert token_vocabulary(tokens_cfg(vocabulary=[")", "("]), tmp_path) == [")", "("]


def test_the_vocabulary_is_sorted_by_code_point_and_tokens_are_any_text_without_blanks(
        tmp_path):
    (tmp_path / "t.csv").write_text("tokens;label\nthe cat\tsat;0.5\n\"a;b\" 10 2 the;1\n")
    cfg = {**tokens_cfg(), "delimiter": ";"}
    assert token_vocabulary(cfg, tmp_path) == ["10", "2", "a;b", "cat", "sat", "the"]
    ds = load_dataset(cfg, tmp_path)
    np.testing.assert_array_equal(ds["x"], [[6, 4, 5, 0], [3, 1, 2, 6]])
    assert ds["y"].dtype == np.float32  # a fraction among the targets: float32, as csv


def test_encode_tokens_alone_gives_what_the_loader_gives(tmp_path):
    (tmp_path / "t.csv").write_text(TABLE)
    ds = load_dataset(tokens_cfg(), tmp_path)
    x, lengths = encode_tokens([["(", "(", ")", "(", ")", ")"], [")", "("], ["(", ")"]],
                               ["(", ")"], 6)
    np.testing.assert_array_equal(x, ds["x"])
    np.testing.assert_array_equal(lengths, ds["lengths"])


@pytest.mark.parametrize("text, extra, words", [
    ("label,tokens\n1,( )\n0,\n", {}, "row 2 (line 3), column 'tokens': holds no tokens"),
    ("label,tokens\n1,( )\n0,( ( )\n", {"steps": 2}, "row 2 (line 3) holds 3 tokens, more "
                                                       "than steps = 2"),
    ("label,tokens\n1,( x\n", {"vocabulary": ["(", ")"]}, "row 1 (line 2), column 'tokens': "
                                                           "token 'x' is not in the"),
    ("label,tokens\nyes,( )\n", {}, "row 1 (line 2), column 'label': expected a number"),
    ("label,words\n1,( )\n", {}, "sequence_column 'tokens' is not a column"),
    ("label,tokens,extra\n1,( ),3\n", {}, "it also has: extra"),
    ("label,tokens\n", {}, "has a header but no data rows"),
    ("label,tokens\n1,( ),4\n", {}, "row 1 (line 2) has 3 cells"),
])
def test_a_bad_token_table_is_refused_naming_the_file_and_the_place(tmp_path, text, extra,
                                                                    words):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError) as e:
        load_dataset(tokens_cfg(**extra), tmp_path)
    assert words in e.value.message and e.value.file == str(tmp_path / "t.csv")


@pytest.mark.parametrize("extra, param, words", [
    ({"vocabulary": "()"}, "dataset.vocabulary", "a list of distinct tokens"),
    ({"vocabulary": ["(", "("]}, "dataset.vocabulary", "twice"),
    ({"vocabulary": ["a b"]}, "dataset.vocabulary", "without blanks"),
    ({"steps": 0}, "dataset.steps", "from 1 to 100000"),
    ({"sequence_column": "label"}, "dataset.sequence_column", "target_column too"),
    ({"sequence_column": 3}, "dataset.sequence_column", "the name of the csv column"),
])
def test_bad_token_table_options_are_named(tmp_path, extra, param, words):
    (tmp_path / "t.csv").write_text(TABLE)
    with pytest.raises(ParamError) as e:
        load_dataset(tokens_cfg(**extra), tmp_path)
    assert e.value.param == param and words in e.value.message, e.value.message


def test_token_options_without_a_sequence_column_are_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a,label\n1,0\n")
    for key, value in (("vocabulary", ["a"]), ("steps", 3)):
        cfg = {"source": "csv", "path": "t.csv", "target_column": "label", key: value}
        with pytest.raises(ParamError) as e:
            load_dataset(cfg, tmp_path)
        assert e.value.param == f"dataset.{key}" and "sequence_column" in e.value.message
    plain = load_dataset({"source": "csv", "path": "t.csv", "target_column": "label"},
                         tmp_path)
    assert set(plain.fields) == {"x", "y"}  # a plain table reads as before


def test_a_graph_reading_a_token_table_checks_and_trains(tmp_path):
    import json

    from tests.cli_helpers import ROOT, run
    d = json.loads((ROOT / "resources" / "examples" / "lstm_parity.ncg.json").read_text())
    rows = ["label,tokens"] + [f"{i % 2},{' '.join('ab'[(i + k) % 2] for k in range(1 + i % 6))}"
                               for i in range(40)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    d["nodes"][0]["params"]["shape"] = [6]
    d["training"] = {"dataset": {"source": "csv", "path": "t.csv", "target_column": "label",
                                 "sequence_column": "tokens"}, "batch_size": 8,
                     "optimizer": {"type": "adam", "lr": 0.01}, "epochs": 1}
    g = tmp_path / "g.ncg.json"
    g.write_text(json.dumps(d))
    r = run("check", g)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    r = run("train", g, "--steps", "2")
    assert r.returncode == 0, r.stderr


def test_exported_code_reads_a_token_table_as_we_do(tmp_path):
    pytest.importorskip("torch")
    import json

    from core.fileformat import graph_from_dict
    from tests import export_graphs as eg
    from tests.cli_helpers import ROOT
    (tmp_path / "t.csv").write_text(TABLE)
    d = json.loads((ROOT / "resources" / "examples" / "lstm_parity.ncg.json").read_text())
    d["nodes"][0]["params"]["shape"] = [6]
    d["training"] = {"dataset": tokens_cfg()}
    graph = graph_from_dict(d)
    module, _ = eg.export_module(graph, tmp_path, base_dir=tmp_path)
    assert module.VOCABULARY == ["(", ")"] and module.STEPS == 6
    theirs, ours = module.load_data(), load_dataset(tokens_cfg(), tmp_path)
    assert set(theirs) == set(ours.fields)
    for k, v in ours.fields.items():
        assert theirs[k].dtype == v.dtype
        np.testing.assert_array_equal(theirs[k], v)
