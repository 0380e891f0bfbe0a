"""Data for every lab: digits, MNIST, 2-D toy sets and a character-level text corpus.

Introduced in lab 00. The fast profile needs nothing from the network:
scikit-learn ships its 8x8 digits (Alpaydin & Kaynak's UCI data set), the 2-D
sets are drawn here, and the text is the English documentation that ships
with every CPython (`pydoc_data.topics`). The full profile downloads MNIST
(through keras.datasets) and tiny-shakespeare into the cache folder.

Images are float32 tensors of shape (N, 1, H, W) scaled to [0, 1] everywhere in
the package; labels are int64. A model that wants another representation makes
it from these with a named function: `binarize` (pixels 0 or 1, for chapter
1's pixel tokens), `dequantize` (uniform noise within each grey level, for
flows), or rescales inside itself (diffusion's [-1, 1]). Every split is
deterministic: the same on every machine and every run. Each loader takes its
choice of data from the caller; only a lab's config reads the profile.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from . import runtime, validate

SPLITS = ("train", "val", "test")
SIDES = {"digits": 8, "mnist": 28}     # image data set -> side of its square images
LEVELS = {"digits": 17, "mnist": 256}  # image data set -> grey levels of its pixels
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"  # as keras.datasets.mnist
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


# ----------------------------------------------------------------------------- batches

def unpack(batch):
    """A batch as (x, y): y is None for unlabelled data (lab 00)."""
    if isinstance(batch, (list, tuple)):
        return (batch[0], batch[1] if len(batch) > 1 else None)
    return batch, None


# ----------------------------------------------------------------------------- representations

def binarize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Images in [0, 1] -> 0/1 floats, 1 where a pixel exceeds `threshold` (lab 00, chapter 1)."""
    validate.tensor("x", x, dtype="float", low=0.0, high=1.0)
    return (x > threshold).float()


def dequantize(x: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Discrete images -> continuous ones, for a density model (chapter 5).

    x in [0, 1] takes `levels` grey values k / (levels - 1), k = 0 .. levels - 1
    (17 for the 8x8 digits, 256 for MNIST). Each value becomes (k + u) / levels
    with u ~ U[0, 1): a continuous density on [0, 1) whose likelihood bounds the
    discrete model's (Theis et al., 2016).
    """
    validate.tensor("x", x, dtype="float", low=0.0, high=1.0)
    validate.positive_int("levels", levels)
    if levels < 2:
        raise ValueError(f"levels must be at least 2 (two grey values), got {levels}")
    k = (x * (levels - 1)).round()
    where = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(x.shape, generator=generator, device=where).to(x)
    return (k + u) / levels


class Dequantized(Dataset):
    """Discrete images whose every access is dequantised afresh (chapter 5, lab 05): item i is
    dequantize(x[i], levels), with new noise each time, so a flow trained on it for many epochs
    never sees the same continuous image twice and cannot put spikes of density on the grid."""

    def __init__(self, images: torch.Tensor, levels: int):
        validate.tensor("images", images, dtype="float", low=0.0, high=1.0)
        validate.positive_int("levels", levels)
        self.images, self.levels = images, levels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return dequantize(self.images[i], self.levels)


# ----------------------------------------------------------------------------- images

def _split(x: np.ndarray, y: np.ndarray, split: str, binary: bool, scale: float) -> TensorDataset:
    images = torch.from_numpy(x.astype(np.float32) / scale).unsqueeze(1)  # (N, 1, H, W) in [0, 1]
    if binary:
        images = binarize(images)
    return TensorDataset(images, torch.from_numpy(y.astype(np.int64)))


def digits(split: str = "train", binarize: bool = False) -> TensorDataset:
    """scikit-learn's 8x8 handwritten digits as (images, labels) (lab 00).

    Pixels count 0..16 in the original; we divide by 16 so they lie in [0, 1].
    With binarize=True a pixel is 1 where the scaled value exceeds 0.5.
    The 1797 images are shuffled once with seed 0 and cut into
    1257 train / 180 val / 360 test.
    """
    from sklearn.datasets import load_digits

    validate.choice("split", split, SPLITS)
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    cuts = {"train": order[:1257], "val": order[1257:1437], "test": order[1437:]}[split]
    return _split(bunch.images[cuts], bunch.target[cuts], split, binarize, 16.0)


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")  # keras 3 without TensorFlow
    import keras

    return keras


def _download(url: str, path: str, what: str, offline: str, sha256: str | None = None) -> None:
    """Fetch `url` into `path` with keras' downloader (which checks the hash), or fail with a
    message naming the file and the offline alternative."""
    try:
        _keras().utils.get_file(fname=os.path.basename(path), origin=url, file_hash=sha256,
                                cache_dir=os.path.dirname(path), cache_subdir="")
    except Exception as err:  # keras raises several kinds of errors for a failed download
        raise RuntimeError(
            f"could not download {what} to {path} ({type(err).__name__}: {err}). "
            f"Copy the file there by hand, or use the offline alternative: {offline}"
        ) from None


def mnist(split: str = "train", binarize: bool = False) -> TensorDataset:
    """MNIST 28x28 digits as (images, labels), for the full profile (lab 00).

    Reads `mnist.npz` (the keras.datasets file) from the cache folder, and
    downloads it there first when it is missing. Pixels are divided by 255.
    The 60000 training images are cut into 55000 train / 5000 val (the last
    5000); test is the official 10000.
    """
    validate.choice("split", split, SPLITS)
    path = os.path.join(runtime.cache_dir(), "mnist.npz")
    if not os.path.exists(path):
        _download(MNIST_URL, path, "MNIST (mnist.npz, the keras.datasets file)",
                  "gencourse.data.digits(), the 8x8 digits that ship with scikit-learn (fast profile)",
                  sha256=MNIST_SHA256)
    with np.load(path) as f:
        x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    n_val = min(5000, len(x_train) // 12 + 1)
    if split == "test":
        return _split(x_test, y_test, split, binarize, 255.0)
    cut = slice(None, -n_val) if split == "train" else slice(-n_val, None)
    return _split(x_train[cut], y_train[cut], split, binarize, 255.0)


def images(name: str, split: str = "train", binarize: bool = False) -> TensorDataset:
    """The image data of a profile: 'digits' (fast) or 'mnist' (full)."""
    validate.choice("name", name, SIDES)
    return (digits if name == "digits" else mnist)(split, binarize)


# ----------------------------------------------------------------------------- 2-D toy sets

TOY2D = ("moons", "swiss_roll", "eight_gaussians", "checkerboard")


def toy2d(name: str, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """n points of a 2-D toy distribution, shape (n, 2), roughly within [-4, 4] (lab 00).

    The four sets each stress a model differently: two interleaved arcs
    ('moons'), a thin spiral ('swiss_roll'), eight separated modes
    ('eight_gaussians'), and a density with sharp edges ('checkerboard').
    """
    validate.choice("name", name, TOY2D)
    validate.positive_int("n", n)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TypeError(f"seed must be a non-negative int, got {seed!r}")
    g = torch.Generator().manual_seed(seed)
    return {"moons": _moons, "swiss_roll": _swiss_roll,
            "eight_gaussians": _eight_gaussians, "checkerboard": _checkerboard}[name](n, g)


def _moons(n: int, g: torch.Generator) -> torch.Tensor:
    upper = torch.rand(n, generator=g) < 0.5
    angle = torch.rand(n, generator=g) * math.pi
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x - 0.5, y - 0.25], dim=1) * 2.0
    return points + 0.1 * torch.randn(n, 2, generator=g)


def _swiss_roll(n: int, g: torch.Generator) -> torch.Tensor:
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 4.5
    return points + 0.1 * torch.randn(n, 2, generator=g)


RING_RADIUS, RING_STD = 2.5, 0.2   # 'eight_gaussians': eight modes on a circle, each this wide


def ring_modes() -> torch.Tensor:
    """The eight centres (8, 2) of 'eight_gaussians', every 45 degrees on a circle of radius 2.5 (lab 03)."""
    k = torch.arange(8).float()
    return RING_RADIUS * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], dim=1)


def _eight_gaussians(n: int, g: torch.Generator) -> torch.Tensor:
    k = torch.randint(0, 8, (n,), generator=g)
    return ring_modes()[k] + RING_STD * torch.randn(n, 2, generator=g)


def _checkerboard(n: int, g: torch.Generator) -> torch.Tensor:
    x = torch.rand(n, generator=g) * 4 - 2
    offset = torch.randint(0, 2, (n,), generator=g).float() * 2
    y = torch.rand(n, generator=g) - offset + (torch.floor(x) % 2)
    return torch.stack([x, y], dim=1) * 1.5


# ----------------------------------------------------------------------------- text

def _stdlib_docs() -> str:
    from pydoc_data.topics import topics  # English prose and code shipped with CPython

    return "\n\n".join(topics[k].strip() for k in sorted(topics)) + "\n"


TEXTS = ("stdlib_docs", "shakespeare")


def text(name: str) -> str:
    """A text corpus as one string (lab 00).

    'stdlib_docs' (fast, offline): the Python documentation topics that ship
    with CPython, about 460 KB of English. 'shakespeare' (full): tiny
    shakespeare, about 1.1 MB, downloaded into the cache folder once.
    """
    validate.choice("name", name, TEXTS)
    if name == "stdlib_docs":
        return _stdlib_docs()
    path = os.path.join(runtime.cache_dir(), "tinyshakespeare.txt")
    if not os.path.exists(path):
        _download(SHAKESPEARE_URL, path, "tiny-shakespeare (tinyshakespeare.txt)",
                  "gencourse.data.text('stdlib_docs'), which ships with Python (fast profile)")
    with open(path, encoding="utf-8") as f:
        return f.read()


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of characters of a text (lab 00)."""

    def __init__(self, corpus: str):
        if not isinstance(corpus, str) or not corpus:
            raise ValueError("CharTokenizer needs a non-empty string to build its vocabulary")
        self.chars = sorted(set(corpus))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> torch.Tensor:
        """String -> int64 tensor of token ids; characters outside the vocabulary raise ValueError."""
        if not isinstance(s, str):
            raise TypeError(f"encode expects a str, got {type(s).__name__}")
        unknown = sorted(set(s) - self.stoi.keys())
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return torch.tensor([self.stoi[c] for c in s], dtype=torch.long)

    def decode(self, ids) -> str:
        """Token ids (a 1-D tensor or a list of ints) -> string."""
        if isinstance(ids, torch.Tensor):
            validate.tensor("ids", ids, ndim=1, dtype="int")
            ids = ids.tolist()
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got {bad[:5]}")
        return "".join(self.chars[i] for i in ids)


def split_tokens(tokens: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token sequence into train (the first part) and val (the last val_fraction)."""
    validate.tensor("tokens", tokens, ndim=1, dtype="int")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    cut = int(len(tokens) * (1 - val_fraction))
    return tokens[:cut], tokens[cut:]


class TokenWindows(Dataset):
    """Every window of `length` consecutive tokens; a model shifts it into inputs and targets."""

    def __init__(self, tokens: torch.Tensor, length: int):
        validate.tensor("tokens", tokens, ndim=1, dtype="int")
        validate.positive_int("length", length)
        if len(tokens) < length:
            raise ValueError(f"need at least length={length} tokens, got {len(tokens)}")
        self.tokens, self.length = tokens, length

    def __len__(self) -> int:
        return len(self.tokens) - self.length + 1

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tokens[i:i + self.length]
