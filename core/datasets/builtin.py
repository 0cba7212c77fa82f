"""The built-in datasets: generators that need no download, their options, and loading one.

``{"source": "builtin", "name": "digits", ...options}`` names a generator of ``BUILTINS``.
Every built-in is deterministic given its seed: the dataset's own ``"seed"`` option if
present, else the seed passed to ``load_builtin`` (the training seed). Unknown names and
options are a ``ParamError`` naming ``dataset.<key>``.

Each generator ``make_<name>(rng, **options) -> {field: array}`` is self-contained: it uses
only ``np`` (and scikit-learn, imported inside, for digits and moons) and no other name of
this module, because the PyTorch exporter copies its source into the exported script,
which must make the same arrays without NeuroCanvas. Checks that raise NeuroCanvas errors
are therefore kept out of the generators, in ``Builtin.check``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.datasets.dataset import Dataset, check_keys
from core.errors import ParamError
from core.params import Bool, Float, Int, ParamSpec

# ---- the generators (copied verbatim into exported scripts: only np, nothing else) ---------


def make_digits(rng: np.random.Generator, image: bool) -> dict[str, np.ndarray]:
    """The 1797 handwritten digits of scikit-learn: x [64] (or [1, 8, 8] with image) float32
    in [0, 1], y int64 class 0-9, in scikit-learn's order (rng is not needed)."""
    from sklearn.datasets import load_digits  # scikit-learn ships them: no download

    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float32) / np.float32(16.0)  # pixels are 0..16
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return {"x": x, "y": np.asarray(digits.target, dtype=np.int64)}


def make_spirals(rng: np.random.Generator, n: int, noise: float, turns: float
                 ) -> dict[str, np.ndarray]:
    """Two interleaved spirals: x [n, 2] float32, y [n] int64 arm 0/1, in random order."""
    y = np.arange(n) % 2
    theta = np.sqrt(rng.random(n)) * turns * 2 * np.pi  # sqrt: even density along the arm
    r = theta / (turns * 2 * np.pi)  # radius grows to 1 at the outer end
    angle = theta + np.pi * y  # the second arm is the first turned by half a circle
    x = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    x = x + noise * rng.standard_normal(x.shape)
    order = rng.permutation(n)  # the arms alternate; mix them
    return {"x": x.astype(np.float32)[order], "y": y.astype(np.int64)[order]}


def make_moons(rng: np.random.Generator, n: int, noise: float) -> dict[str, np.ndarray]:
    """scikit-learn's make_moons seeded from rng: x [n, 2] float32, y [n] int64 0/1."""
    from sklearn.datasets import make_moons  # scikit-learn: needed for this dataset only

    seed = int(rng.integers(2**31 - 1))
    x, y = make_moons(n_samples=n, noise=noise or None, random_state=seed)
    return {"x": x.astype(np.float32), "y": y.astype(np.int64)}


def make_xor(rng: np.random.Generator, n: int, noise: float) -> dict[str, np.ndarray]:
    """Noisy corners of the unit square: x [n, 2] float32, y [n] int64 = x0 XOR x1."""
    corner = np.arange(n) % 4
    a, b = corner // 2, corner % 2
    x = np.stack([a, b], axis=1).astype(np.float64) + noise * rng.standard_normal((n, 2))
    order = rng.permutation(n)  # the corners cycle; mix them
    return {"x": x.astype(np.float32)[order], "y": (a ^ b).astype(np.int64)[order]}


def make_sine(rng: np.random.Generator, n: int, steps: int, noise: float
              ) -> dict[str, np.ndarray]:
    """Windows of a noisy sine: x [n, steps, 1] float32, y [n, 1] float32 the noise-free
    next value. Two steps are 0.2 radians apart."""
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    t = phase + 0.2 * np.arange(steps + 1)[None, :]  # [n, steps + 1]
    clean = np.sin(t)
    x = clean[:, :steps] + noise * rng.standard_normal((n, steps))
    return {"x": x[:, :, None].astype(np.float32), "y": clean[:, steps:].astype(np.float32)}


def make_sequences(rng: np.random.Generator, n: int, steps: int, classes: int, noise: float
                   ) -> dict[str, np.ndarray]:
    """Noisy sinusoids of random phase and amplitude: x [n, steps, 1] float32, y [n] int64
    class c, which makes c + 1 cycles per sequence; in random order."""
    y = np.arange(n) % classes
    cycles = (y + 1)[:, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    amp = rng.uniform(0.5, 1.5, size=(n, 1))
    t = np.arange(steps)[None, :] / steps
    x = amp * np.sin(2 * np.pi * cycles * t + phase) + noise * rng.standard_normal((n, steps))
    order = rng.permutation(n)  # the classes cycle; mix them
    return {"x": x[:, :, None].astype(np.float32)[order], "y": y.astype(np.int64)[order]}


def make_recall(rng: np.random.Generator, n: int, steps: int) -> dict[str, np.ndarray]:
    """Long-range memory: x [n, steps, 2] float32 (channel 0 random values in [-1, 1],
    channel 1 marks one step), y [n, 1] float32 the value at the marked step."""
    x = np.zeros((n, steps, 2), dtype=np.float32)
    x[:, :, 0] = rng.uniform(-1.0, 1.0, size=(n, steps))
    marked = rng.integers(0, steps, size=n)
    rows = np.arange(n)
    x[rows, marked, 1] = 1.0
    return {"x": x, "y": x[rows, marked, 0][:, None].copy()}


def make_digit_triplets(rng: np.random.Generator, n: int, pool: int, image: bool
                        ) -> dict[str, np.ndarray]:
    """Triplets of scikit-learn's digits for a Siamese network: anchor, positive (another
    image of the anchor's digit) and negative (an image of another digit), each [n, 64]
    (or [n, 1, 8, 8] with image) float32 in [0, 1], y [n] int64 the anchor's digit, and
    anchor_class, positive_class, negative_class [n] int64 each image's digit. The
    images come from the first ``pool`` digits only (at least 20: two of each), so the
    others stay unseen, for testing the embedding."""
    from sklearn.datasets import load_digits  # scikit-learn ships them: no download

    digits = load_digits()
    x = np.asarray(digits.data[:pool], dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(digits.target[:pool], dtype=np.int64)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    by_digit = np.argsort(labels, kind="stable")  # the images of 0, then of 1, ...
    sizes = np.bincount(labels, minlength=10)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # where each digit's images begin
    rank = np.empty(pool, dtype=np.int64)
    rank[by_digit] = np.arange(pool)
    anchor = rng.integers(0, pool, size=n)
    y = labels[anchor]
    # the positive is another image of the anchor's digit: its place among them shifted by
    # 1 .. size - 1 (round)
    shift = 1 + (rng.random(n) * (sizes[y] - 1)).astype(np.int64)
    positive = by_digit[start[y] + (rank[anchor] - start[y] + shift) % sizes[y]]
    other = (y + rng.integers(1, 10, size=n)) % 10  # any digit but the anchor's
    negative = by_digit[start[other] + (rng.random(n) * sizes[other]).astype(np.int64)]
    return {"anchor": x[anchor], "positive": x[positive], "negative": x[negative], "y": y,
            "anchor_class": y.copy(), "positive_class": y.copy(),
            "negative_class": labels[negative]}


def make_parity(rng: np.random.Generator, n: int, steps: int, min_length: int
                ) -> dict[str, np.ndarray]:
    """Bit strings of variable length: x [n, steps] int64 tokens (1 for a 0 bit, 2 for a 1
    bit, then 0 = padding after the string), lengths [n] int64 each string's length, from
    min_length to steps (uniform), y [n] int64 the parity (1 when the string holds an odd
    number of 1 bits). Half the samples are odd, in random order."""
    lengths = rng.integers(min_length, steps + 1, size=n)
    bits = rng.integers(0, 2, size=(n, steps))
    valid = np.arange(steps)[None, :] < lengths[:, None]
    bits = bits * valid
    y = (np.arange(n) % 2).astype(np.int64)[rng.permutation(n)]  # balanced classes
    # make each string's parity y by flipping its last bit where needed
    rows = np.arange(n)
    wrong = bits.sum(axis=1) % 2 != y
    bits[rows[wrong], lengths[wrong] - 1] ^= 1
    x = np.where(valid, bits + 1, 0)
    return {"x": x.astype(np.int64), "lengths": lengths.astype(np.int64), "y": y}


# ---- the registry ----------------------------------------------------------------------------


FieldInfo = tuple[tuple[int, ...], str, bool]  # per-sample shape, dtype, whole numbers only


@dataclass(frozen=True)
class Builtin:
    """A built-in generator: ``make(rng, **options) -> {field: array}``, self-contained (see
    the module docstring); ``check(options)``, when given, refuses options that are each
    valid but do not go together, with a ``ParamError`` naming ``dataset.<key>``;
    ``fields(options)``: what ``make`` gives without making it, ``{field: (per-sample shape,
    dtype, whether every value is a whole number)}``, so the editor can check the graph
    against it on every edit (tests compare it with the generated arrays)."""
    description: str
    options: dict[str, ParamSpec]
    make: Callable[..., dict[str, np.ndarray]]
    check: Callable[[dict[str, Any]], None] | None = None
    fields: Callable[[dict[str, Any]], dict[str, FieldInfo]] | None = None
    needs: tuple[str, ...] = ()  # packages beyond NumPy that ``make`` imports (an export says so)


def _xy(x: tuple[int, ...], y: tuple[int, ...], y_dtype: str = "int64"
        ) -> dict[str, FieldInfo]:
    """Float x of per-sample shape ``x`` (fractions), y of shape ``y``: class indices
    (int64) or float values."""
    return {"x": (x, "float32", False), "y": (y, y_dtype, y_dtype == "int64")}


def _triplet_fields(x: tuple[int, ...]) -> dict[str, FieldInfo]:
    """anchor, positive and negative images of per-sample shape ``x``; y the anchor's class,
    and each image's class."""
    parts = ("anchor", "positive", "negative")
    return {**{k: (x, "float32", False) for k in parts}, "y": ((), "int64", True),
            **{f"{k}_class": ((), "int64", True) for k in parts}}

def _check_sequences(opts: dict[str, Any]) -> None:
    classes, steps = opts["classes"], opts["steps"]
    if 2 * classes >= steps:
        # class c makes c + 1 cycles per sequence; more than steps / 2 cannot be told apart
        raise ParamError(f"{classes} classes need more than {2 * classes} steps "
                         f"(class c makes c + 1 cycles per sequence), found steps = {steps}",
                         param="dataset.steps")



def _check_parity(opts: dict[str, Any]) -> None:
    if opts["min_length"] > opts["steps"]:
        raise ParamError(f"min_length {opts['min_length']} exceeds steps {opts['steps']} "
                         "(the longest string)", param="dataset.min_length")

# upper bounds keep a typo (n: 10**10) from exhausting the machine; docs/format.md 2.9
_N = Int(1000, "number of samples", min=1, max=10_000_000)

BUILTINS: dict[str, Builtin] = {
    "digits": Builtin(
        "1797 handwritten digits 8x8 (scikit-learn): x [64] in [0, 1], or [1, 8, 8] with "
        "image; y int64 class 0-9",
        {"image": Bool(False, "x as a [1, 8, 8] image instead of [64]")}, make_digits,
        fields=lambda o: _xy((1, 8, 8) if o["image"] else (64,), ()), needs=("scikit-learn",)),
    "spirals": Builtin(
        "two interleaved spirals: x [2] float32, y int64 arm 0/1",
        {"n": _N, "noise": Float(0.05, "std of Gaussian noise on x", min=0.0),
         "turns": Float(1.5, "turns of each arm", min=0.0, min_open=True)}, make_spirals,
        fields=lambda o: _xy((2,), ())),
    "moons": Builtin(
        "two interleaving half circles (scikit-learn make_moons): x [2] float32, y int64 0/1",
        {"n": _N, "noise": Float(0.1, "std of Gaussian noise on x", min=0.0)}, make_moons,
        fields=lambda o: _xy((2,), ()), needs=("scikit-learn",)),
    "xor": Builtin(
        "noisy corners of the unit square: x [2] float32, y int64 = x0 XOR x1",
        {"n": _N, "noise": Float(0.1, "std of Gaussian noise on x", min=0.0)}, make_xor,
        fields=lambda o: _xy((2,), ())),
    "sine": Builtin(
        "next value of a noisy sine: x [steps, 1] float32 window, y [1] float32 "
        "(noise-free next value)",
        {"n": _N, "steps": Int(20, "time steps per window (T)", min=1, max=100_000),
         "noise": Float(0.05, "std of Gaussian noise on x", min=0.0)}, make_sine,
        fields=lambda o: _xy((o["steps"], 1), (1,), "float32")),
    "sequences": Builtin(
        "which frequency a noisy sinusoid has: x [steps, 1] float32, y int64 class "
        "(class c makes c + 1 cycles)",
        {"n": _N, "steps": Int(20, "time steps per sequence (T)", min=2, max=100_000),
         "classes": Int(3, "number of frequencies (classes)", min=2, max=1000),
         "noise": Float(0.1, "std of Gaussian noise on x", min=0.0)}, make_sequences,
        _check_sequences, fields=lambda o: _xy((o["steps"], 1), ())),
    "recall": Builtin(
        "long-range memory: x [steps, 2] float32, channel 0 random values in [-1, 1], "
        "channel 1 marks one step (1 there, 0 elsewhere); y [1] float32 the marked value, "
        "to be remembered until the last step",
        {"n": _N, "steps": Int(50, "time steps per sequence (T)", min=1, max=100_000)}, make_recall,
        fields=lambda o: _xy((o["steps"], 2), (1,), "float32")),
    "digit_triplets": Builtin(
        "triplets of handwritten digits for a Siamese network: anchor, positive (same digit) "
        "and negative (another digit), each [64] in [0, 1] or [1, 8, 8] with image; y int64 "
        "the anchor's digit",
        {"n": _N, "pool": Int(1797, "triplets use only the first pool of the 1797 digits "
                              "(the rest stay unseen)", min=20, max=1797),
         "image": Bool(False, "images as [1, 8, 8] instead of [64]")}, make_digit_triplets,
        fields=lambda o: _triplet_fields((1, 8, 8) if o["image"] else (64,)),
        needs=("scikit-learn",)),
    "parity": Builtin(
        "parity of a variable-length bit string: x [steps] int64 tokens (1 = bit 0, "
        "2 = bit 1, 0 = padding), lengths int64 (min_length..steps), y int64 0/1",
        {"n": _N, "steps": Int(16, "longest string: time steps per sample (T)", min=1,
                               max=100_000),
         "min_length": Int(1, "shortest string", min=1, max=100_000)}, make_parity,
        _check_parity, fields=lambda o: {"x": ((o["steps"],), "int64", True),
                                         "lengths": ((), "int64", True),
                                         "y": ((), "int64", True)}),
}

_SEED = Int(None, "seed of the generator (default: the training seed)", min=0)


def known_builtins() -> dict[str, str]:
    """``{name: one-line description}`` of every built-in dataset, for the GUI."""
    return {name: b.description for name, b in BUILTINS.items()}


def builtin_options(name: str) -> dict[str, ParamSpec]:
    """The options a built-in takes (with defaults and docs), ``seed`` included."""
    return {**BUILTINS[builtin_name(name)].options, "seed": _SEED}


def builtin_name(name: Any) -> str:
    """``name`` when it is a built-in's; a ``ParamError`` naming ``dataset.name`` otherwise."""
    if not isinstance(name, str) or name not in BUILTINS:
        raise ParamError(f"unknown built-in dataset {name!r}; known: {', '.join(BUILTINS)}",
                         param="dataset.name")
    return name


def builtin_settings(cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any], int | None]:
    """``(name, options, seed)`` of a built-in dataset description: every option checked
    and defaulted (``seed`` apart, None when not given), in the order of the generator's
    arguments; a ``ParamError`` naming ``dataset.<key>`` otherwise."""
    name = builtin_name(cfg.get("name"))
    b = BUILTINS[name]
    check_keys(cfg, ("name", "seed", *b.options), f"built-in dataset '{name}'")
    opts = {}
    for key, spec in {**b.options, "seed": _SEED}.items():
        if key not in cfg:
            opts[key] = spec.default
            continue
        try:
            opts[key] = spec.coerce(cfg[key])
        except ParamError as e:
            raise ParamError(e.message, param=f"dataset.{key}") from None
    seed = opts.pop("seed")
    if b.check is not None:
        b.check(opts)
    return name, opts, seed


def load_builtin(cfg: Mapping[str, Any], seed: int) -> Dataset:
    """The built-in dataset ``cfg`` describes, generated with its own ``"seed"`` option or,
    without one, with ``seed``."""
    name, opts, own_seed = builtin_settings(cfg)
    rng = np.random.default_rng(seed if own_seed is None else own_seed)
    return Dataset(BUILTINS[name].make(rng, **opts), name=name)
