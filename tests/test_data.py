"""Unit tests of gencourse.data: digits, MNIST (offline, from a file the test writes), 2-D sets, text."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from gencourse import data


# ----------------------------------------------------------------------------- digits

SIZES = {"train": 1257, "val": 180, "test": 360}


@pytest.fixture(scope="module")
def digit_splits():
    return {s: data.digits(s) for s in data.SPLITS}


@pytest.mark.parametrize("split", data.SPLITS)
def test_digits_shapes_dtypes_ranges(digit_splits, split):
    ds = digit_splits[split]
    assert isinstance(ds, TensorDataset)
    x, y = ds.tensors
    n = SIZES[split]
    assert len(ds) == n
    assert x.shape == (n, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() <= 1
    assert x.max() == 1.0  # scaled by 16: the brightest pixels reach exactly 1
    assert set(y.tolist()) == set(range(10))


def test_digits_scaling_matches_sklearn(digit_splits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    allowed = {v / 16 for v in range(17)}
    x = digit_splits["train"].tensors[0]
    assert set(x.unique().tolist()) <= allowed
    # every image of the split is one of the originals divided by 16, with its own label
    originals = {tuple((img / 16).astype(np.float32).ravel().tolist()): int(t) for img, t in zip(raw.images, raw.target)}
    for img, label in zip(*digit_splits["test"].tensors):
        assert originals[tuple(img.ravel().tolist())] == int(label)


def test_digits_splits_are_disjoint_and_cover(digit_splits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    order = np.random.default_rng(0).permutation(len(raw.target))
    assert sum(SIZES.values()) == len(raw.target) == 1797
    # compare actual rows: the images of each split are the originals at disjoint indices
    flat = torch.from_numpy(raw.images.reshape(len(raw.target), -1).astype(np.float32) / 16)
    seen = set()
    start = 0
    for split in data.SPLITS:
        n = SIZES[split]
        idx = order[start:start + n]
        start += n
        x = digit_splits[split].tensors[0].reshape(n, -1)
        assert torch.equal(x, flat[idx])
        assert not seen & set(idx.tolist())
        seen |= set(idx.tolist())
    assert seen == set(range(1797))


def test_digits_no_image_row_shared_between_splits(digit_splits):
    # independent of the index bookkeeping: no (image, label) row appears in two splits
    rows = {}
    for split in data.SPLITS:
        x, y = digit_splits[split].tensors
        for img, label in zip(x.reshape(len(x), -1), y):
            key = (tuple(img.tolist()), int(label))
            rows.setdefault(key, set()).add(split)
    # the UCI set contains a few exact duplicate images; a duplicate may legitimately land in two
    # splits, but only if it appears twice in the original data
    from sklearn.datasets import load_digits

    raw = load_digits()
    counts = {}
    for img, t in zip(raw.images, raw.target):
        key = (tuple((img / 16).astype(np.float32).ravel().tolist()), int(t))
        counts[key] = counts.get(key, 0) + 1
    for key, splits in rows.items():
        assert len(splits) <= counts[key]


def test_digits_deterministic(digit_splits):
    again = data.digits("train")
    for a, b in zip(again.tensors, digit_splits["train"].tensors):
        assert torch.equal(a, b)


def test_digits_default_split_is_train(digit_splits):
    assert torch.equal(data.digits().tensors[0], digit_splits["train"].tensors[0])


def test_digits_binarize(digit_splits):
    xb, yb = data.digits("val", binarize=True).tensors
    x, y = digit_splits["val"].tensors
    assert xb.dtype == torch.float32
    assert set(xb.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(xb, (x > 0.5).float())
    assert torch.equal(yb, y)


@pytest.mark.parametrize("bad", ["training", "valid", "", "TRAIN"])
def test_digits_bad_split(bad):
    with pytest.raises(ValueError, match="split"):
        data.digits(bad)


def test_images_dispatch(digit_splits):
    assert torch.equal(data.images("digits", "test").tensors[0], digit_splits["test"].tensors[0])
    with pytest.raises(ValueError, match="name must be one of \\['digits', 'mnist'\\]"):
        data.images("cifar")


def test_sides_and_levels_describe_the_digits(digit_splits):
    assert set(data.SIDES) == set(data.LEVELS) == {"digits", "mnist"}
    assert (data.SIDES["mnist"], data.LEVELS["mnist"]) == (28, 256)
    x = digit_splits["train"].tensors[0]
    assert x.shape[-2:] == (data.SIDES["digits"],) * 2
    k = x * (data.LEVELS["digits"] - 1)                    # the grey levels k / 16
    assert torch.allclose(k, k.round(), atol=1e-5) and set(k.round().unique().tolist()) == set(range(17))


# ----------------------------------------------------------------------------- batches and representations

def test_unpack():
    x, y = torch.zeros(2), torch.ones(2)
    assert data.unpack(x) == (x, None)
    assert data.unpack([x, y])[0] is x and data.unpack([x, y])[1] is y
    assert data.unpack((x, y))[1] is y
    assert data.unpack((x,)) == (x, None)


def test_binarize():
    x = torch.tensor([[0.0, 0.25, 0.5], [0.5001, 0.75, 1.0]])
    out = data.binarize(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert out.tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]        # 1 only strictly above the threshold
    assert data.binarize(x, threshold=0.2).tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    assert data.binarize(x.double()).dtype == torch.float32
    digits = data.digits("val").tensors[0]
    assert torch.equal(data.binarize(digits), data.digits("val", binarize=True).tensors[0])


@pytest.mark.parametrize("bad, exc, match", [
    (torch.tensor([0.0, 1.5]), ValueError, r"x must lie in \[0.0, 1.0\]"),
    (torch.tensor([-0.1, 0.5]), ValueError, r"x must lie in \[0.0, 1.0\]"),
    (torch.tensor([0.0, float("nan")]), ValueError, "x contains NaN"),
    (torch.tensor([0, 1]), TypeError, "x must be a floating-point"),
    ([0.0, 1.0], TypeError, "x must be a torch.Tensor"),
])
def test_binarize_and_dequantize_bad_x(bad, exc, match):
    with pytest.raises(exc, match=match):
        data.binarize(bad)
    with pytest.raises(exc, match=match):
        data.dequantize(bad, 17)


def test_dequantize_spreads_each_level_over_its_bin():
    levels = 17
    x = torch.arange(levels).float().repeat(200) / (levels - 1)       # every grey level, 200 times
    out = data.dequantize(x, levels, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() < 1                            # a density on [0, 1)
    k = (x * (levels - 1)).round()
    assert torch.equal((out * levels).floor(), k)                      # each value stays in its own bin
    u = out * levels - k                                               # the uniform noise, U[0, 1)
    assert abs(u.mean().item() - 0.5) < 0.03 and u.min() < 0.05 and u.max() > 0.95
    binary = data.dequantize(torch.tensor([0.0, 1.0]), 2, generator=torch.Generator().manual_seed(1))
    assert 0 <= binary[0] < 0.5 <= binary[1] < 1


def test_dequantize_is_reproducible_with_a_generator():
    x = data.digits("val").tensors[0][:10]
    a = data.dequantize(x, data.LEVELS["digits"], generator=torch.Generator().manual_seed(3))
    b = data.dequantize(x, data.LEVELS["digits"], generator=torch.Generator().manual_seed(3))
    c = data.dequantize(x, data.LEVELS["digits"], generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    d = data.dequantize(x, data.LEVELS["digits"])
    torch.manual_seed(0)
    assert torch.equal(d, data.dequantize(x, data.LEVELS["digits"]))   # no generator: the global seed


@pytest.mark.parametrize("levels, exc", [(1, ValueError), (0, ValueError), (17.0, TypeError), (None, TypeError)])
def test_dequantize_bad_levels(levels, exc):
    with pytest.raises(exc, match="levels"):
        data.dequantize(torch.zeros(3), levels)


# ----------------------------------------------------------------------------- MNIST, offline

def _write_mnist(folder, n_train: int, n_test: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    arrays["x_train"][0, 0, 0], arrays["x_train"][1, 0, 0] = 255, 0  # both ends of the range present
    np.savez(os.path.join(folder, "mnist.npz"), **arrays)
    return arrays


class _NoNetwork:
    """Stands in for keras: any download attempt fails, and is recorded."""

    def __init__(self):
        self.calls = []

        def get_file(**kwargs):
            self.calls.append(kwargs)
            raise OSError("network is unreachable")

        self.utils = type("utils", (), {"get_file": staticmethod(get_file)})


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty private cache and no network: a download attempt raises OSError."""
    monkeypatch.setenv("GENCOURSE_CACHE", str(tmp_path))
    fake = _NoNetwork()
    monkeypatch.setattr(data, "_keras", lambda: fake)
    return fake


def test_mnist_reads_cached_file(offline, tmp_path):
    arrays = _write_mnist(tmp_path, n_train=120, n_test=30)
    train, val, test = (data.mnist(s) for s in data.SPLITS)
    assert offline.calls == []  # the file was there: no download attempted
    n_val = len(val)
    assert 1 <= n_val < len(train)
    assert len(train) + n_val == 120 and len(test) == 30
    for ds in (train, val, test):
        x, y = ds.tensors
        assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        assert x.min() >= 0 and x.max() <= 1
    # scaling: pixel / 255, and val is the last rows of the training arrays
    xt = arrays["x_train"].astype(np.float32) / 255
    assert torch.allclose(train.tensors[0][:, 0], torch.from_numpy(xt[:-n_val]))
    assert torch.allclose(val.tensors[0][:, 0], torch.from_numpy(xt[-n_val:]))
    assert train.tensors[0][0, 0, 0, 0] == 1.0 and train.tensors[0][1, 0, 0, 0] == 0.0
    assert torch.equal(val.tensors[1], torch.from_numpy(arrays["y_train"][-n_val:].astype(np.int64)))
    assert torch.allclose(test.tensors[0][:, 0], torch.from_numpy(arrays["x_test"].astype(np.float32) / 255))
    assert torch.equal(test.tensors[1], torch.from_numpy(arrays["y_test"].astype(np.int64)))


def test_mnist_documented_cut(offline, tmp_path):
    """The real file's sizes: 60000 train images -> 55000 train / 5000 val (the last 5000), test 10000."""
    rng = np.random.default_rng(1)
    x_train = np.zeros((60000, 28, 28), np.uint8)
    y_train = np.zeros(60000, np.uint8)
    y_train[-5000:] = 7  # mark the last 5000
    x_train[-5000:, 3, 4] = 51
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train,
             x_test=rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8), y_test=np.zeros(10000, np.uint8))
    train, val, test = (data.mnist(s) for s in data.SPLITS)
    assert (len(train), len(val), len(test)) == (55000, 5000, 10000)
    assert (val.tensors[1] == 7).all() and (train.tensors[1] == 0).all()
    assert torch.allclose(val.tensors[0][:, 0, 3, 4], torch.full((5000,), 0.2))
    assert train.tensors[0].max() == 0


def test_mnist_binarize(offline, tmp_path):
    arrays = _write_mnist(tmp_path, n_train=24, n_test=6)
    x = data.mnist("test", binarize=True).tensors[0]
    expected = torch.from_numpy((arrays["x_test"].astype(np.float32) / 255 > 0.5).astype(np.float32))
    assert torch.equal(x[:, 0], expected)


def test_mnist_offline_message(offline, tmp_path):
    with pytest.raises(RuntimeError) as err:
        data.mnist("train")
    msg = str(err.value)
    assert "mnist.npz" in msg
    assert "digits()" in msg
    assert str(tmp_path) in msg  # where to copy the file by hand
    assert len(offline.calls) == 1
    assert offline.calls[0]["origin"] == data.MNIST_URL
    assert offline.calls[0]["file_hash"] == data.MNIST_SHA256
    assert os.path.dirname(offline.calls[0]["cache_dir"] + os.sep) == str(tmp_path)
    assert not os.path.exists(tmp_path / "mnist.npz")


def test_mnist_offline_when_keras_missing(monkeypatch, tmp_path):
    """Without keras installed the failure is the same clear RuntimeError, not an ImportError."""
    monkeypatch.setenv("GENCOURSE_CACHE", str(tmp_path))

    def no_keras():
        raise ImportError("No module named 'keras'")

    monkeypatch.setattr(data, "_keras", no_keras)
    with pytest.raises(RuntimeError, match="mnist.npz"):
        data.mnist("test")


def test_mnist_bad_split(offline):
    with pytest.raises(ValueError, match="split"):
        data.mnist("dev")
    assert offline.calls == []  # validated before any download


# ----------------------------------------------------------------------------- 2-D toy sets

@pytest.mark.parametrize("name", data.TOY2D)
def test_toy2d_shape_dtype_range(name):
    x = data.toy2d(name, n=1000, seed=0)
    assert x.shape == (1000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.abs().max() <= 5
    assert x.std(dim=0).min() > 0.3  # spread in both directions, not a degenerate line


@pytest.mark.parametrize("name", data.TOY2D)
def test_toy2d_deterministic_per_seed(name):
    assert torch.equal(data.toy2d(name, 500, seed=3), data.toy2d(name, 500, seed=3))
    assert not torch.allclose(data.toy2d(name, 500, seed=3), data.toy2d(name, 500, seed=4))


@pytest.mark.parametrize("name", data.TOY2D)
def test_toy2d_ignores_global_rng(name):
    torch.manual_seed(1)
    a = data.toy2d(name, 100)
    torch.manual_seed(2)
    assert torch.equal(a, data.toy2d(name, 100))


def test_toy2d_default_n():
    assert data.toy2d("moons").shape == (2000, 2)


def test_toy2d_n_one():
    assert data.toy2d("checkerboard", n=1).shape == (1, 2)


def test_eight_gaussians_has_eight_modes():
    x = data.toy2d("eight_gaussians", 4000, seed=0)
    r = x.norm(dim=1)
    assert abs(r.mean().item() - 2.5) < 0.05
    assert (r - 2.5).abs().max() < 1.2
    angle = torch.atan2(x[:, 1], x[:, 0])
    k = torch.round(angle / (math.pi / 4)) % 8
    resid = angle - torch.round(angle / (math.pi / 4)) * (math.pi / 4)
    assert resid.abs().max() < math.pi / 8  # every point closer to a mode than to the gap between
    counts = torch.bincount(k.long(), minlength=8)
    assert len(counts) == 8 and counts.min() > 400 and counts.max() < 600
    # each cluster is tight around its centre (std 0.2)
    centers = 2.5 * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], dim=1)
    assert abs((x - centers).std().item() - 0.2) < 0.02


def test_moons_lie_on_two_arcs():
    x = data.toy2d("moons", 4000, seed=0)
    assert x.mean(dim=0).abs().max() < 0.1  # centred
    c_upper, c_lower = torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.5])
    d = torch.minimum(((x - c_upper).norm(dim=1) - 2).abs(), ((x - c_lower).norm(dim=1) - 2).abs())
    assert (d < 0.5).float().mean() > 0.99
    assert d.mean() < 0.2
    # both arcs hold about half the points
    upper = ((x - c_upper).norm(dim=1) - 2).abs() < ((x - c_lower).norm(dim=1) - 2).abs()
    assert 0.4 < upper.float().mean() < 0.6
    # the upper arc bulges up (points above its centre), the lower one down
    assert x[upper, 1].mean() > c_upper[1] + 0.8 and x[~upper, 1].mean() < c_lower[1] - 0.8


def test_swiss_roll_is_a_spiral():
    x = data.toy2d("swiss_roll", 4000, seed=0)
    r = x.norm(dim=1)
    # the angle t runs from 1.5 pi to 4.5 pi, and the radius is proportional to it: r = t / scale
    lo, hi = torch.quantile(r, torch.tensor([0.01, 0.99])).tolist()
    assert 2.4 < hi / lo < 3.3
    # some scale makes the direction of every point follow its radius, (cos t, sin t) with t = scale * r
    direction = x / r[:, None]
    t = torch.linspace(2.0, 8.0, 301)[:, None] * r[None, :]  # (scales, points)
    cos = direction[:, 0] * torch.cos(t) + direction[:, 1] * torch.sin(t)
    best = (cos > 0.5).float().mean(dim=1).max().item()
    assert best > 0.95  # nearly every point lies on the spiral arm (noise 0.1 blurs a few)
    # a blob with the same radii does not look like a spiral
    blob = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    blob = blob / blob.norm(dim=1, keepdim=True) * r[:, None]
    t = 3.5 * r
    assert (blob / r[:, None] * torch.stack([torch.cos(t), torch.sin(t)], dim=1)).sum(dim=1).mean().abs() < 0.1


def test_checkerboard_occupies_alternate_squares():
    x = data.toy2d("checkerboard", 4000, seed=0)
    cell = torch.floor(x / 1.5)
    assert cell[:, 0].min() == -2 and cell[:, 0].max() == 1
    assert cell[:, 1].min() == -2 and cell[:, 1].max() == 1
    parity = cell.sum(dim=1) % 2
    assert (parity == 0).float().mean() > 0.999
    # the eight black squares are filled about evenly
    occupied = torch.unique(cell, dim=0, return_counts=True)[1]
    assert len(occupied) == 8 and occupied.min() > 400


def test_toy2d_sets_differ():
    sets = {name: data.toy2d(name, 1000, seed=0) for name in data.TOY2D}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.allclose(sets[a], sets[b], atol=0.5)


@pytest.mark.parametrize("bad", ["circles", "Moons", "", "eight-gaussians"])
def test_toy2d_bad_name(bad):
    with pytest.raises(ValueError, match="name"):
        data.toy2d(bad)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-5, ValueError), (10.0, TypeError), ("10", TypeError)])
def test_toy2d_bad_n(bad, exc):
    with pytest.raises(exc, match="n must"):
        data.toy2d("moons", n=bad)


# ----------------------------------------------------------------------------- text

@pytest.fixture(scope="module")
def docs():
    return data.text("stdlib_docs")


def test_stdlib_docs_is_long_english(docs):
    assert isinstance(docs, str)
    assert len(docs) > 300_000
    for word in (" the ", " and ", " of ", " is "):
        assert docs.count(word) > 100
    assert docs.endswith("\n")


def test_stdlib_docs_deterministic(docs):
    assert data.text("stdlib_docs") == docs


def test_text_needs_a_name_and_ignores_the_profile(monkeypatch, tmp_path, docs):
    """The caller chooses the corpus (a lab's config reads the profile); the loader never guesses."""
    assert data.TEXTS == ("stdlib_docs", "shakespeare")
    with pytest.raises(TypeError):
        data.text()
    monkeypatch.setenv("GENCOURSE_PROFILE", "full")
    monkeypatch.setenv("GENCOURSE_CACHE", str(tmp_path))
    (tmp_path / "tinyshakespeare.txt").write_text("ROMEO:\nhello\n", encoding="utf-8")
    assert data.text("stdlib_docs") == docs
    monkeypatch.setenv("GENCOURSE_PROFILE", "fast")
    assert data.text("shakespeare") == "ROMEO:\nhello\n"


def test_text_shakespeare_from_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GENCOURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "_keras", lambda: pytest.fail("must not download when the file is cached"))
    body = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak. \u00e9\n"
    (tmp_path / "tinyshakespeare.txt").write_text(body, encoding="utf-8")
    assert data.text("shakespeare") == body


def test_text_shakespeare_offline(offline, tmp_path):
    with pytest.raises(RuntimeError) as err:
        data.text("shakespeare")
    msg = str(err.value)
    assert "tinyshakespeare.txt" in msg and "stdlib_docs" in msg
    assert offline.calls[0]["origin"] == data.SHAKESPEARE_URL


def test_text_bad_name():
    with pytest.raises(ValueError, match="name must be one of \\['shakespeare', 'stdlib_docs'\\]"):
        data.text("wikipedia")
    with pytest.raises(ValueError, match="name"):
        data.text(None)


# ----------------------------------------------------------------------------- tokenizer

def test_char_tokenizer_vocab_sorted_and_round_trip():
    tok = data.CharTokenizer("hello world")
    assert tok.chars == sorted(set("hello world")) == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.vocab_size == 8
    ids = tok.encode("hold")
    assert ids.dtype == torch.int64
    assert ids.tolist() == [3, 5, 4, 1]
    assert tok.decode(ids) == "hold"
    assert tok.decode([3, 5, 4, 1]) == "hold"
    assert tok.encode("").shape == (0,)
    assert tok.decode([]) == ""


def test_char_tokenizer_round_trips_corpus(docs):
    piece = docs[:5000]
    tok = data.CharTokenizer(docs)
    ids = tok.encode(piece)
    assert ids.max() < tok.vocab_size and ids.min() >= 0
    assert tok.decode(ids) == piece
    assert tok.chars == sorted(tok.chars) and len(set(tok.chars)) == tok.vocab_size


def test_char_tokenizer_unknown_char():
    tok = data.CharTokenizer("abc")
    with pytest.raises(ValueError, match="z"):
        tok.encode("abz")
    with pytest.raises(TypeError, match="str"):
        tok.encode(["a"])


def test_char_tokenizer_decode_rejects():
    tok = data.CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="-1"):
        tok.decode(torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="ids"):
        tok.decode(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="ids"):
        tok.decode(torch.tensor([[0, 1]]))


@pytest.mark.parametrize("bad", ["", None, ["a"]])
def test_char_tokenizer_bad_corpus(bad):
    with pytest.raises(ValueError, match="non-empty string"):
        data.CharTokenizer(bad)


def test_split_tokens():
    tokens = torch.arange(100)
    train, val = data.split_tokens(tokens, 0.1)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))
    train, val = data.split_tokens(torch.arange(10), 0.25)
    assert len(train) == 7 and len(val) == 3
    train, val = data.split_tokens(tokens)  # default 0.1
    assert len(val) == 10


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5])
def test_split_tokens_bad_fraction(bad):
    with pytest.raises(ValueError, match="val_fraction"):
        data.split_tokens(torch.arange(10), bad)


def test_split_tokens_bad_tokens():
    with pytest.raises(TypeError, match="tokens"):
        data.split_tokens(torch.arange(10.0))
    with pytest.raises(ValueError, match="tokens"):
        data.split_tokens(torch.zeros(2, 5, dtype=torch.long))


def test_token_windows():
    w = data.TokenWindows(torch.arange(10), 4)
    assert len(w) == 7
    assert torch.equal(w[0], torch.tensor([0, 1, 2, 3]))
    assert torch.equal(w[6], torch.tensor([6, 7, 8, 9]))
    assert all(len(w[i]) == 4 for i in range(len(w)))
    assert len(data.TokenWindows(torch.arange(4), 4)) == 1
    loader = torch.utils.data.DataLoader(w, batch_size=3)
    assert next(iter(loader)).shape == (3, 4)


def test_token_windows_bad():
    with pytest.raises(ValueError, match="length=5"):
        data.TokenWindows(torch.arange(4), 5)
    with pytest.raises(ValueError, match="length"):
        data.TokenWindows(torch.arange(4), 0)
    with pytest.raises(TypeError, match="tokens"):
        data.TokenWindows(torch.arange(4.0), 2)
