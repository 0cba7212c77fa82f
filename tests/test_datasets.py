"""core.datasets: built-in generators, npz and csv files, splitting, batching, field checks,
peeking at a dataset without loading it."""
from __future__ import annotations

import numpy as np
import pytest

from core.datasets import (
    Dataset,
    builtin_options,
    check_fields,
    csv_header,
    fit_problems,
    known_builtins,
    load_dataset,
    load_training_data,
    npz_arrays,
    peek_fields,
    peek_training_fields,
    validation_split_of,
)
from core.errors import DataError, ParamError


def builtin(name, **opts):
    return load_dataset({"source": "builtin", "name": name, **opts})


def small(n=10):
    """x[i] = [i, 10 i], y[i] = i: every sample says which one it is."""
    i = np.arange(n)
    return Dataset({"x": np.stack([i, 10 * i], axis=1).astype(np.float32),
                    "y": i.astype(np.int64)}, name="small")


# --------------------------------------------------------------------------- built-ins

EXPECTED = {  # name -> (x per-sample shape, y per-sample shape, y dtype) with default options
    "digits": ((64,), (), np.int64),
    "spirals": ((2,), (), np.int64),
    "moons": ((2,), (), np.int64),
    "xor": ((2,), (), np.int64),
    "sine": ((20, 1), (1,), np.float32),
    "sequences": ((20, 1), (), np.int64),
    "recall": ((50, 2), (1,), np.float32),
}


def test_known_builtins_lists_each_with_a_description():
    kb = known_builtins()
    assert set(EXPECTED) <= set(kb)
    for name, desc in kb.items():
        assert isinstance(desc, str) and desc and "\n" not in desc, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_shapes_and_dtypes(name):
    ds = builtin(name)
    x_shape, y_shape, y_dtype = EXPECTED[name]
    assert set(ds.fields) == {"x", "y"}
    assert ds["x"].dtype == np.float32 and ds["x"].shape[1:] == x_shape
    assert ds["y"].dtype == y_dtype and ds["y"].shape[1:] == y_shape
    assert len(ds) == len(ds["x"]) == len(ds["y"])
    assert np.all(np.isfinite(ds["x"]))
    assert ds.name == name and ds.file is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtins_are_deterministic_by_seed(name):
    a = load_dataset({"source": "builtin", "name": name}, seed=3)
    b = load_dataset({"source": "builtin", "name": name}, seed=3)
    for k in a.fields:
        np.testing.assert_array_equal(a[k], b[k])
    c = load_dataset({"source": "builtin", "name": name}, seed=4)
    if name == "digits":  # real data, nothing random in it
        np.testing.assert_array_equal(a["x"], c["x"])
    else:
        assert not np.array_equal(a["x"], c["x"])


def test_seed_option_overrides_the_training_seed():
    a = load_dataset({"source": "builtin", "name": "spirals", "seed": 7}, seed=1)
    b = load_dataset({"source": "builtin", "name": "spirals", "seed": 7}, seed=2)
    c = load_dataset({"source": "builtin", "name": "spirals"}, seed=7)
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["x"], c["x"])


def test_digits_values_and_image_option():
    flat = builtin("digits")
    img = builtin("digits", image=True)
    assert len(flat) == 1797
    assert flat["x"].min() == 0.0 and flat["x"].max() == 1.0
    assert img["x"].shape == (1797, 1, 8, 8) and img["x"].dtype == np.float32
    np.testing.assert_array_equal(img["x"].reshape(1797, 64), flat["x"])
    from sklearn.datasets import load_digits
    d = load_digits()
    np.testing.assert_allclose(flat["x"], d.data / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(flat["y"], d.target)
    assert set(np.unique(flat["y"])) == set(range(10))


def test_synthetic_options_n_and_noise():
    ds = builtin("spirals", n=500, noise=0.2)
    assert len(ds) == 500
    assert np.bincount(ds["y"]).tolist() == [250, 250]
    # without noise every point lies on its arm, within the unit disc
    clean = builtin("spirals", n=400, noise=0.0)
    assert np.all(np.linalg.norm(clean["x"], axis=1) <= 1.0 + 1e-6)
    moons = builtin("moons", n=300, noise=0.0)
    assert len(moons) == 300 and set(np.unique(moons["y"])) == {0, 1}


def test_xor_without_noise_is_the_truth_table():
    ds = builtin("xor", n=8, noise=0.0)
    assert len(ds) == 8
    for x, y in zip(ds["x"], ds["y"], strict=True):
        assert x.tolist() in ([0, 0], [0, 1], [1, 0], [1, 1])
        assert y == int(x[0]) ^ int(x[1])


def test_sine_target_is_the_next_step_of_the_sine():
    ds = builtin("sine", n=50, steps=7, noise=0.0)
    assert ds["x"].shape == (50, 7, 1) and ds["y"].shape == (50, 1)
    # noise-free windows of sin(phase + k dt): the next value follows the recurrence
    # s[k+1] = 2 cos(dt) s[k] - s[k-1]
    s = np.concatenate([ds["x"][:, :, 0], ds["y"]], axis=1).astype(np.float64)
    dt = np.arccos(np.clip((s[:, 2] + s[:, 0]) / (2 * s[:, 1]), -1, 1))
    pred = 2 * np.cos(np.median(dt)) * s[:, -2] - s[:, -3]
    np.testing.assert_allclose(pred, s[:, -1], atol=1e-4)


def test_sequences_options_and_class_balance():
    ds = builtin("sequences", n=90, steps=16, classes=3)
    assert ds["x"].shape == (90, 16, 1)
    assert np.bincount(ds["y"]).tolist() == [30, 30, 30]
    # the dominant frequency of a noise-free sequence is its class + 1 cycles
    clean = builtin("sequences", n=30, steps=32, classes=4, noise=0.0)
    spectrum = np.abs(np.fft.rfft(clean["x"][:, :, 0], axis=1))
    np.testing.assert_array_equal(spectrum.argmax(axis=1), clean["y"] + 1)
    with pytest.raises(ParamError) as e:
        builtin("sequences", steps=6, classes=3)
    assert e.value.param == "dataset.steps"


def test_recall_target_is_the_value_at_the_one_marked_step():
    ds = builtin("recall", n=400, steps=9)
    x, y = ds["x"], ds["y"]
    assert x.shape == (400, 9, 2) and y.shape == (400, 1)
    assert np.all(x[:, :, 1].sum(axis=1) == 1) and set(np.unique(x[:, :, 1])) == {0.0, 1.0}
    marked = x[:, :, 1].argmax(axis=1)
    np.testing.assert_array_equal(y[:, 0], x[np.arange(400), marked, 0])
    assert np.all(np.abs(x[:, :, 0]) <= 1)
    # the mark falls on every step, the first as well as the last
    assert set(marked.tolist()) == set(range(9))


def test_unknown_builtin_name_lists_the_known_ones():
    with pytest.raises(ParamError) as e:
        builtin("mnist")
    assert e.value.param == "dataset.name"
    assert "mnist" in str(e.value)
    for name in EXPECTED:
        assert name in str(e.value)


def test_unknown_or_bad_builtin_option_is_named():
    with pytest.raises(ParamError) as e:
        builtin("spirals", noize=0.1)
    assert e.value.param == "dataset.noize"
    assert "noise" in str(e.value)  # says what it takes
    with pytest.raises(ParamError) as e:
        builtin("spirals", n=0)
    assert e.value.param == "dataset.n"
    with pytest.raises(ParamError) as e:
        builtin("digits", image="yes")
    assert e.value.param == "dataset.image"


def test_builtin_options_describe_defaults():
    opts = builtin_options("sine")
    assert opts["steps"].default == 20 and opts["n"].default == 1000
    assert "seed" in opts


def test_bad_source():
    with pytest.raises(ParamError) as e:
        load_dataset({"source": "http", "path": "x"})
    assert e.value.param == "dataset.source"
    with pytest.raises(ParamError) as e:
        load_dataset("digits")
    assert e.value.param == "dataset"


# --------------------------------------------------------------------------- the container


def test_fields_of_unequal_length_are_refused():
    with pytest.raises(DataError, match="'x' has 3 samples, 'y' has 2"):
        Dataset({"x": np.zeros((3, 2)), "y": np.zeros(2)})


def test_split_sizes_disjoint_and_complete():
    ds = small(100)
    train, val = ds.split(0.2, seed=0)
    assert len(train) == 80 and len(val) == 20
    tr, va = set(train["y"].tolist()), set(val["y"].tolist())
    assert not tr & va and tr | va == set(range(100))
    # fields stay aligned and each part keeps the dataset's order
    np.testing.assert_array_equal(train["x"][:, 0], train["y"])
    assert np.all(np.diff(train["y"]) > 0) and np.all(np.diff(val["y"]) > 0)
    # seeded
    again = ds.split(0.2, seed=0)[1]
    np.testing.assert_array_equal(again["y"], val["y"])
    other = ds.split(0.2, seed=1)[1]
    assert not np.array_equal(other["y"], val["y"])


def test_split_rounds_and_zero_gives_no_validation_set():
    ds = small(10)
    assert len(ds.split(0.33, 0)[1]) == round(10 * 0.33)
    train, val = ds.split(0.0, seed=0)
    assert val is None and len(train) == 10
    assert ds.split(0.01, 0)[1] is None  # rounds to 0 samples
    with pytest.raises(ParamError) as e:
        ds.split(1.0, 0)
    assert e.value.param == "validation_split"
    with pytest.raises(DataError, match="no training sample"):
        ds.split(0.99, 0)


def test_batches_in_order_without_shuffle_and_last_partial_batch():
    ds = small(10)
    batches = list(ds.batches(4, shuffle=False))
    assert [b["y"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[0]["x"].shape == (4, 2) and batches[-1]["x"].shape == (2, 2)
    assert ds.num_batches(4) == 3 == len(batches)
    assert ds.num_batches(5) == 2 and ds.num_batches(64) == 1
    assert [len(b["y"]) for b in ds.batches(64)] == [10]


def test_shuffled_batches_cover_each_sample_once_per_epoch():
    ds = small(23)
    rng = np.random.default_rng(0)
    epochs = []
    for _ in range(3):
        batches = list(ds.batches(5, shuffle=True, rng=rng))
        assert [len(b["y"]) for b in batches] == [5, 5, 5, 5, 3]
        for b in batches:  # fields stay aligned
            np.testing.assert_array_equal(b["x"][:, 0], b["y"])
        order = np.concatenate([b["y"] for b in batches])
        assert sorted(order.tolist()) == list(range(23))
        epochs.append(order)
    assert not np.array_equal(epochs[0], np.arange(23))
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
    # same seed, same order
    a = np.concatenate([b["y"] for b in ds.batches(5, shuffle=True, rng=5)])
    b = np.concatenate([b["y"] for b in ds.batches(5, shuffle=True, rng=5)])
    np.testing.assert_array_equal(a, b)


def test_bad_batch_size():
    with pytest.raises(ParamError) as e:
        small().batches(0)
    assert e.value.param == "batch_size"


# --------------------------------------------------------------------------- npz


def test_npz_one_array_per_field(tmp_path):
    x = np.arange(24, dtype=np.float64).reshape(6, 2, 2)
    y = np.array([0, 1, 0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    ds = load_dataset({"source": "npz", "path": str(tmp_path / "d.npz")})
    assert set(ds.fields) == {"images", "labels"}
    np.testing.assert_array_equal(ds["images"], x)
    np.testing.assert_array_equal(ds["labels"], y)
    assert ds.name == "d.npz" and ds.file == str(tmp_path / "d.npz")


def test_relative_path_is_relative_to_base_dir(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "d.npz", x=np.zeros((3, 2)), y=np.arange(3))
    (tmp_path / "data" / "t.csv").write_text("a,label\n1,0\n2,1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    ds = load_dataset({"source": "npz", "path": "data/d.npz"}, base_dir=tmp_path)
    assert len(ds) == 3
    ds = load_dataset({"source": "csv", "path": "t.csv", "target_column": "label"},
                      base_dir=str(tmp_path / "data"))
    assert len(ds) == 2
    with pytest.raises(DataError):
        load_dataset({"source": "npz", "path": "data/d.npz"})  # relative to elsewhere


def test_missing_file_names_it(tmp_path):
    for cfg in ({"source": "npz", "path": "nope.npz"},
                {"source": "csv", "path": "nope.csv", "target_column": "y"}):
        with pytest.raises(DataError) as e:
            load_dataset(cfg, base_dir=tmp_path)
        assert e.value.file == str(tmp_path / cfg["path"])
        assert "nope" in str(e.value) and "no such file" in str(e.value)


def test_pickled_object_array_is_refused_not_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):  # would run on unpickling
            return (exec, ("raise SystemExit('unpickled!')",))

    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([Boom(), Boom()], dtype=object), y=np.arange(2))
    with pytest.raises(DataError) as e:
        load_dataset({"source": "npz", "path": str(path)})
    assert e.value.file == str(path)
    assert "'x'" in str(e.value) and "pickle" in str(e.value)


def test_not_an_npz_file(tmp_path):
    (tmp_path / "a.npz").write_text("hello")
    with pytest.raises(DataError, match="not an .npz") as e:
        load_dataset({"source": "npz", "path": "a.npz"}, base_dir=tmp_path)
    assert e.value.file == str(tmp_path / "a.npz")
    np.save(tmp_path / "b.npy", np.zeros(3))
    with pytest.raises(DataError, match=".npy"):
        load_dataset({"source": "npz", "path": "b.npy"}, base_dir=tmp_path)
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 2)), y=np.zeros(4))
    with pytest.raises(DataError, match="differ in length") as e:
        load_dataset({"source": "npz", "path": "c.npz"}, base_dir=tmp_path)
    assert e.value.file == str(tmp_path / "c.npz")
    np.savez(tmp_path / "s.npz", x=np.array(["a", "b"]))
    with pytest.raises(DataError, match="expected numbers"):
        load_dataset({"source": "npz", "path": "s.npz"}, base_dir=tmp_path)


def test_npz_arrays_reads_the_headers_as_the_loader_reads_the_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((6, 1, 2, 2), np.float32), labels=np.arange(6))
    ds = load_dataset({"source": "npz", "path": "d.npz"}, base_dir=tmp_path)
    assert npz_arrays(tmp_path / "d.npz") == {k: ((len(ds), *s), d)
                                               for k, (s, d) in ds.field_shapes().items()}
    np.savez(tmp_path / "evil.npz", x=np.array([{}, 1], dtype=object))
    (tmp_path / "a.npz").write_text("hello")
    for name in ("evil.npz", "a.npz", "nope.npz"):  # the loader's refusals, word for word
        with pytest.raises(DataError) as ours:
            load_dataset({"source": "npz", "path": name}, base_dir=tmp_path)
        with pytest.raises(DataError) as headers:
            npz_arrays(tmp_path / name)
        assert headers.value.message == ours.value.message and headers.value.file


def test_npz_unknown_option():
    with pytest.raises(ParamError) as e:
        load_dataset({"source": "npz", "path": "d.npz", "target_column": "y"})
    assert e.value.param == "dataset.target_column"


# --------------------------------------------------------------------------- csv


def test_csv_target_column_and_features(tmp_path):
    (tmp_path / "t.csv").write_text("a,label,b\n1,0,2.5\n3,1,4\n\n5,2,-6e-1\n")
    ds = load_dataset({"source": "csv", "path": "t.csv", "target_column": "label"},
                      base_dir=tmp_path)
    assert set(ds.fields) == {"x", "y"}
    assert ds["x"].dtype == np.float32 and ds["x"].shape == (3, 2)
    np.testing.assert_allclose(ds["x"], [[1, 2.5], [3, 4], [5, -0.6]])
    assert ds["y"].dtype == np.int64 and ds["y"].tolist() == [0, 1, 2]


def test_csv_fractional_target_is_float32(tmp_path):
    (tmp_path / "r.csv").write_text("x1,x2,price\n1,2,3.5\n2,3,1.0\n")
    ds = load_dataset({"source": "csv", "path": "r.csv", "target_column": "price"},
                      base_dir=tmp_path)
    assert ds["y"].dtype == np.float32 and ds["y"].shape == (2,)
    np.testing.assert_allclose(ds["y"], [3.5, 1.0])


def test_csv_non_numeric_cell_names_file_row_and_column(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,0\n3,cat,1\n")
    with pytest.raises(DataError) as e:
        load_dataset({"source": "csv", "path": "t.csv", "target_column": "label"},
                     base_dir=tmp_path)
    msg = str(e.value)
    assert e.value.file == str(tmp_path / "t.csv") and str(tmp_path / "t.csv") in msg
    assert "row 2" in msg and "line 3" in msg and "'b'" in msg and "'cat'" in msg


def test_csv_problems(tmp_path):
    def load(text, target="label"):
        (tmp_path / "t.csv").write_text(text)
        return load_dataset({"source": "csv", "path": "t.csv", "target_column": target},
                            base_dir=tmp_path)

    with pytest.raises(DataError, match="'label' is not a column.*a, b"):
        load("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"row 2 \(line 3\) has 2 cells"):
        load("a,b,label\n1,2,0\n3,4\n")
    with pytest.raises(DataError, match="no data rows"):
        load("a,label\n")
    with pytest.raises(DataError, match="finite"):
        load("a,label\nnan,1\n")
    with pytest.raises(DataError, match="twice"):
        load("a,a,label\n1,2,3\n")
    with pytest.raises(ParamError) as e:
        load_dataset({"source": "csv", "path": "t.csv"}, base_dir=tmp_path)
    assert e.value.param == "dataset.target_column"


def test_csv_delimiter_option(tmp_path):
    (tmp_path / "t.tsv").write_text("a\tb\ty\n1\t2\t0\n")
    ds = load_dataset({"source": "csv", "path": "t.tsv", "target_column": "y",
                       "delimiter": "\t"}, base_dir=tmp_path)
    np.testing.assert_array_equal(ds["x"], [[1, 2]])


def test_csv_header_reads_the_first_row_as_the_loader_does(tmp_path):
    (tmp_path / "t.csv").write_text("\ufeff\n a ;label\n1;0\n", encoding="utf-8")
    assert csv_header(tmp_path / "t.csv", ";") == ["a", "label"]
    (tmp_path / "blank.csv").write_text("\n \n")
    assert csv_header(tmp_path / "blank.csv") == []
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe,1\n")
    with pytest.raises(DataError, match="UTF-8"):
        csv_header(tmp_path / "bin.csv")
    with pytest.raises(DataError, match="no such file"):
        csv_header(tmp_path / "nope.csv")
    with pytest.raises(ParamError) as e:
        csv_header(tmp_path / "t.csv", ";;")
    assert e.value.param == "dataset.delimiter"


# --------------------------------------------------------------------------- validation split


def test_validation_split_in_dataset_or_training():
    assert validation_split_of({"dataset": {"source": "builtin", "name": "xor"}}) == 0.0
    assert validation_split_of({"dataset": {"name": "xor", "validation_split": 0.2}}) == 0.2
    assert validation_split_of({"dataset": {"name": "xor"}, "validation_split": 0.3}) == 0.3
    assert validation_split_of({"dataset": {"validation_split": 0.3},
                                "validation_split": 0.3}) == 0.3
    with pytest.raises(ParamError):
        validation_split_of({"dataset": {"validation_split": 0.2}, "validation_split": 0.3})
    with pytest.raises(ParamError) as e:
        validation_split_of({"validation_split": -0.1})
    assert e.value.param == "validation_split"


def test_load_training_data_splits_with_the_training_seed():
    training = {"dataset": {"source": "builtin", "name": "moons", "n": 200,
                            "validation_split": 0.25}, "seed": 3}
    train, val = load_training_data(training)
    assert len(train) == 150 and len(val) == 50
    train2, val2 = load_training_data(training)
    np.testing.assert_array_equal(val["x"], val2["x"])
    train, val = load_training_data({"dataset": {"source": "builtin", "name": "xor"}})
    assert val is None and len(train) == 1000


# --------------------------------------------------------------------------- check_fields


def test_check_fields_casts_to_node_dtypes():
    ds = Dataset({"x": np.arange(6, dtype=np.int64).reshape(3, 2),
                  "y": np.array([0.0, 1.0, 2.0]), "extra": np.zeros(3)})
    out = check_fields(ds, {"x": ("in", (2,), "float32"), "y": ("t", (), "int64")})
    assert out["x"].dtype == np.float32 and out["y"].dtype == np.int64
    assert out["y"].tolist() == [0, 1, 2]
    assert out["extra"] is ds["extra"]  # unread fields are kept as they are
    assert ds["x"].dtype == np.int64  # the input dataset is left alone


def test_check_fields_shape_mismatch_names_node_field_and_dataset():
    ds = builtin("digits", image=True)
    with pytest.raises(DataError) as e:
        check_fields(ds, {"x": ("x", (64,), "float32"), "y": ("y", (), "int64")})
    msg = str(e.value)
    assert e.value.node == "x"
    assert "field 'x'" in msg and "[64]" in msg and "[1, 8, 8]" in msg and "'digits'" in msg


def test_check_fields_missing_field_lists_the_fields(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.zeros((4, 3)), labels=np.zeros(4))
    ds = load_dataset({"source": "npz", "path": "d.npz"}, base_dir=tmp_path)
    with pytest.raises(DataError) as e:
        check_fields(ds, {"x": ("inp", (3,), "float32")})
    msg = str(e.value)
    assert e.value.node == "inp" and e.value.file == str(tmp_path / "d.npz")
    assert "'x'" in msg and "features" in msg and "labels" in msg


def test_check_fields_size_one_axes_are_reshaped():
    ds = Dataset({"y": np.array([0.5, 1.5]), "s": np.zeros((2, 5))})
    out = check_fields(ds, {"y": ("t", (1,), "float32"), "s": ("in", (5, 1), "float32")})
    assert out["y"].shape == (2, 1) and out["s"].shape == (2, 5, 1)


def test_check_fields_values_that_do_not_fit_the_dtype():
    ds = Dataset({"y": np.array([0.0, 1.5])})
    with pytest.raises(DataError, match="fractions") as e:
        check_fields(ds, {"y": ("t", (), "int64")})
    assert e.value.node == "t"
    ds = Dataset({"x": np.array([[0.0], [np.nan]])})
    with pytest.raises(DataError, match="NaN"):
        check_fields(ds, {"x": ("in", (1,), "float32")})


def test_check_fields_one_field_read_by_two_nodes():
    ds = Dataset({"x": np.ones((3, 4), dtype=np.float64)})
    out = check_fields(ds, {"x": [("in", (4,), "float32"), ("target", (4,), "float32")]})
    assert out["x"].dtype == np.float32
    with pytest.raises(DataError) as e:
        check_fields(ds, {"x": [("in", (4,), "float32"), ("target", (4,), "int64")]})
    assert e.value.node == "target" and "'in'" in str(e.value)


def test_builtins_feed_their_documented_nodes():
    for name, (xs, ys, ydt) in EXPECTED.items():
        out = check_fields(builtin(name), {"x": ("x", xs, "float32"),
                                          "y": ("y", ys, np.dtype(ydt).name)})
        assert len(out) == len(builtin(name))


# --------------------------------------------------------------------------- peeking and fitting
# What the editor and `main.py check` know of a dataset without loading it must be what loading
# gives, and fit_problems must find what check_fields finds, with the same words.

PEEK_CASES = [(name, {}) for name in sorted(EXPECTED)] + [
    ("digits", {"image": True}), ("sine", {"steps": 7}), ("sequences", {"steps": 9}),
    ("recall", {"steps": 5, "n": 3}), ("spirals", {"n": 5})]


@pytest.mark.parametrize("name, opts", PEEK_CASES)
def test_peeking_at_a_builtin_gives_what_it_generates(name, opts):
    cfg = {"source": "builtin", "name": name, **opts}
    peek = peek_fields(cfg)
    ds = load_dataset(cfg)
    assert {k: (v[0], v[1]) for k, v in peek.items()} == ds.field_shapes()
    for key, (_shape, _dtype, whole) in peek.items():  # "whole numbers only", as it says
        assert whole == bool(np.all(ds[key] == np.round(ds[key]))), key
    assert peek.name == ds.name


def test_peeking_refuses_what_loading_refuses():
    for cfg in ({"source": "builtin", "name": "digitz"},
                {"source": "builtin", "name": "sine", "stepz": 3},
                {"source": "builtin", "name": "sequences", "steps": 4, "classes": 3},
                {"source": "parquet"}, "digits"):
        with pytest.raises(ParamError) as loading:
            load_dataset(cfg)
        with pytest.raises(ParamError) as peeking:
            peek_fields(cfg)
        assert (peeking.value.param, peeking.value.message) == \
            (loading.value.param, loading.value.message)
        assert "{" not in peeking.value.message  # sentences, not JSON


def test_peeking_at_an_npz_reads_its_headers_and_refuses_alike(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 3, 2), np.float32), y=np.arange(6))
    peek = peek_fields({"source": "npz", "path": "d.npz"}, tmp_path)
    assert peek == {"x": ((3, 2), "float32", None), "y": ((), "int64", True)}
    assert peek.name == "d.npz" and peek.file == str(tmp_path / "d.npz")
    np.savez(tmp_path / "s.npz", x=np.array(["a", "b"]))
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 2)), y=np.zeros(4))
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 2)))
    np.savez(tmp_path / "one.npz", x=np.float32(1.0))
    np.savez(tmp_path / "evil.npz", x=np.array([{}, 1], dtype=object))
    for name in ("s.npz", "c.npz", "e.npz", "one.npz", "evil.npz", "nope.npz"):
        cfg = {"source": "npz", "path": name}
        with pytest.raises(DataError) as loading:
            load_dataset(cfg, base_dir=tmp_path)
        with pytest.raises(DataError) as peeking:
            peek_fields(cfg, tmp_path)
        assert peeking.value.message == loading.value.message, name
        assert peeking.value.file == loading.value.file


def test_peeking_at_a_csv_reads_only_its_header(tmp_path):
    (tmp_path / "t.csv").write_text("a,label,b\n1,0,2.5\n3,1,4\n")
    cfg = {"source": "csv", "path": "t.csv", "target_column": "label"}
    peek = peek_fields(cfg, tmp_path)
    ds = load_dataset(cfg, base_dir=tmp_path)
    assert peek["x"][:2] == ds.field_shapes()["x"]
    assert peek["y"][0] == () and peek["y"][1] is None  # int64 or float32: the values decide
    for text, target in (("", "y"), ("a,a,y\n1,2,3\n", "y"), ("a,b\n1,2\n", "y"),
                         ("y\n1\n", "y"), ("a,,y\n1,2,3\n", "y")):
        (tmp_path / "bad.csv").write_text(text)
        bad = {"source": "csv", "path": "bad.csv", "target_column": target}
        with pytest.raises(DataError) as loading:
            load_dataset(bad, base_dir=tmp_path)
        with pytest.raises(DataError) as peeking:
            peek_fields(bad, tmp_path)
        assert peeking.value.message == loading.value.message, text
    with pytest.raises(ParamError) as e:
        peek_fields({"source": "csv", "path": "t.csv"}, tmp_path)
    assert e.value.param == "dataset.target_column"


def test_a_peeked_file_is_read_again_only_when_it_changes(tmp_path, monkeypatch):
    from core.datasets import peek

    peek.clear_cache()
    reads = []
    real = peek.read_npz_headers
    monkeypatch.setattr(peek, "read_npz_headers", lambda *a: reads.append(1) or real(*a))
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 2), np.float32))
    cfg = {"source": "npz", "path": "d.npz"}
    for _ in range(3):
        assert peek_fields(cfg, tmp_path)["x"][0] == (2,)
    assert len(reads) == 1
    stamp = peek.dataset_stamp(cfg, tmp_path)
    np.savez(path, x=np.zeros((4, 2, 5), np.float32))  # another size: another stamp
    assert peek.dataset_stamp(cfg, tmp_path) != stamp
    assert peek_fields(cfg, tmp_path)["x"][0] == (2, 5) and len(reads) == 2
    path.write_text("broken")  # a refusal is cached too, until the file changes again
    for _ in range(2):
        with pytest.raises(DataError):
            peek_fields(cfg, tmp_path)
    assert len(reads) == 3


def test_peek_training_fields_says_why_it_has_none(tmp_path):
    assert peek_training_fields({}) == (None, None)
    fields, err = peek_training_fields({"dataset": {"source": "npz", "path": "x.npz"}}, tmp_path)
    assert fields is None and isinstance(err, DataError) and "no such file" in str(err)
    fields, err = peek_training_fields({"dataset": {"source": "builtin", "name": "nope"}})
    assert fields is None and err.param == "training.dataset.name"


FIT_CASES = [  # (fields of a dataset, what the nodes read): each must fail the same way
    ({"x": np.zeros((3, 8))}, {"x": ("in", (4,), "float32")}),
    ({"x": np.zeros((3, 8))}, {"z": ("in", (8,), "float32")}),
    ({"x": np.zeros((3, 2), np.complex64)}, {"x": ("in", (2,), "float32")}),
    ({"x": np.ones((3, 4))}, {"x": [("in", (4,), "float32"), ("t", (4,), "int64")]}),
    ({"x": np.ones((3, 4))}, {"x": [("in", (4,), "float32"), ("t", (4, 1), "float32")]}),
    ({"y": np.zeros((3, 1))}, {"y": ("t", (), "int64")}),  # fits: size-1 axes may differ
]


@pytest.mark.parametrize("arrays, uses", FIT_CASES)
def test_fit_problems_find_what_check_fields_finds_in_its_words(arrays, uses):
    ds = Dataset(arrays, name="d")
    found = fit_problems(ds.field_shapes(), uses, "d")
    try:
        check_fields(ds, uses)
    except DataError as e:
        assert found and (found[0].node, found[0].message) == (e.node, e.message)
        assert found[0].param in ("field", "shape", "dtype")
    else:
        assert found == []


def test_fit_problems_list_every_node_and_know_builtin_fractions():
    fields = peek_fields({"source": "builtin", "name": "sine"})
    found = fit_problems(fields, {"x": ("in", (19, 1), "float32"), "y": ("t", (1,), "int64"),
                                  "z": ("z", (), "float32")}, fields.name)
    assert [(p.node, p.param) for p in found] == [("in", "shape"), ("t", "dtype"),
                                                   ("z", "field")]
    assert "fractions" in found[1].message and "'sine'" in found[1].message
    ds = load_dataset({"source": "builtin", "name": "sine"})
    with pytest.raises(DataError, match="fractions"):  # what training says of it
        check_fields(ds, {"y": ("t", (1,), "int64")})


def test_csv_class_names_map_to_indices_in_sorted_order_or_as_given(tmp_path):
    from core.datasets.files import class_mapping
    from core.errors import DataError, ParamError
    (tmp_path / "t.csv").write_text("a,label,b\n1,dog,2\n3,cat,4\n5,emu,6\n7,cat,8\n")
    cfg = {"source": "csv", "path": "t.csv", "target_column": "label"}
    ds = load_dataset(cfg, tmp_path)
    np.testing.assert_array_equal(ds["y"], [1, 0, 2, 0])  # cat, dog, emu
    np.testing.assert_array_equal(ds["x"], [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert class_mapping(cfg, tmp_path) == ["cat", "dog", "emu"]
    pinned = {**cfg, "classes": ["emu", "dog", "cat"]}
    np.testing.assert_array_equal(load_dataset(pinned, tmp_path)["y"], [1, 2, 0, 2])
    assert class_mapping(pinned, tmp_path) == ["emu", "dog", "cat"]
    with pytest.raises(DataError, match=r"row 3 \(line 4\), column 'label': 'emu' is not one"):
        load_dataset({**cfg, "classes": ["cat", "dog"]}, tmp_path)
    with pytest.raises(ParamError, match="names a class twice"):
        load_dataset({**cfg, "classes": ["cat", "cat"]}, tmp_path)
    (tmp_path / "n.csv").write_text("a,label\n1,0\n2,inf\n")
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 'label': expected a finite"):
        load_dataset({**cfg, "path": "n.csv"}, tmp_path)
    assert class_mapping({**cfg, "path": "n.csv"}, tmp_path) is None


def test_exported_code_maps_csv_class_names_as_we_do(tmp_path):
    pytest.importorskip("torch")
    from tests import export_graphs as eg
    (tmp_path / "t.csv").write_text("a,label,b\n1,dog,2\n3,cat,4\n5,emu,6\n7,cat,8\n")
    graph = eg.dense_activations()
    ds = {"source": "csv", "path": "t.csv", "target_column": "label"}
    graph.set_training({"dataset": ds})
    module, _ = eg.export_module(graph, tmp_path, base_dir=tmp_path)
    assert module.CLASSES == ["cat", "dog", "emu"]
    theirs, ours = module.load_data(), load_dataset(ds, tmp_path)
    for k in ("x", "y"):
        assert theirs[k].dtype == ours[k].dtype
        np.testing.assert_array_equal(theirs[k], ours[k])
