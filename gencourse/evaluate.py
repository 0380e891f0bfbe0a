"""How good is a generative model? Likelihoods, a digit classifier, Frechet distance, latency.

Introduced in lab 00 and used by every chapter.
- Likelihood models report negative log-likelihood in nats, or bits per
  dimension: NLL / (D ln 2), comparable across image sizes.
- Samples of digit models are judged by a small classifier trained here
  (deterministically, cached): its confidence, the histogram of the classes
  it sees, and the Frechet distance between the Gaussian statistics of its
  penultimate features for samples and for real test digits -- the recipe of
  FID (Heusel et al., 2017) with a digit network in place of Inception.
  The raw distance depends on the features and on the sample count, so we also
  report it as a ratio to the floor: the distance that the same number of
  real held-out digits reach. The caller names the data set ('digits' or
  'mnist'); its classifier and its test split are the yardstick.
- 2-D samples are judged by their nearest-neighbour distance to the data.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import data, runtime, validate

IMAGE_SETS = data.SIDES  # data set -> image side


# ----------------------------------------------------------------------------- likelihoods

def bits_per_dim(nll_nats, num_dims: int):
    """Convert a negative log-likelihood in nats per example into bits per dimension (lab 00).

    bits/dim = NLL / (D ln 2). Works on floats and tensors alike.
    """
    validate.positive_int("num_dims", num_dims)
    if isinstance(nll_nats, torch.Tensor):
        validate.tensor("nll_nats", nll_nats, dtype="float")
    elif not isinstance(nll_nats, (int, float)) or isinstance(nll_nats, bool):
        raise TypeError(f"nll_nats must be a number or a float tensor, got {type(nll_nats).__name__}")
    return nll_nats / (num_dims * math.log(2))


@torch.no_grad()
def nll(log_prob, dataset, batch_size: int = 256) -> float:
    """Mean negative log-likelihood in nats per example of `dataset` under `log_prob` (lab 00).

    log_prob maps a batch of examples (B, ...) to log-densities (B,).
    """
    if not callable(log_prob):
        raise TypeError("log_prob must be a function from a batch (B, ...) to log-probabilities (B,)")
    x = data_tensor(dataset)
    if len(x) == 0:
        raise ValueError("dataset is empty: there is no likelihood to average")
    total = 0.0
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        lp = log_prob(chunk)
        validate.tensor("log_prob(batch)", lp, shape=(len(chunk),), dtype="float")
        total += -lp.double().sum().item()
    return total / len(x)


def dequantized_bits_per_dim(log_density, x: torch.Tensor, levels: int,
                             generator: torch.Generator | None = None) -> float:
    """Bits per dimension of discrete images under a continuous density on [0, 1)^D (chapter 6, lab 06).

    x holds grey values k / (levels - 1); each is dequantised once, y = (k + u) / levels with
    u ~ U[0, 1) (`data.dequantize`, drawing from `generator`), and scored by `log_density` (B, ...) ->
    (B,). A bin of width 1 / levels holds probability P(k) >= exp(E_u log p(y)) / levels per dimension
    (Jensen), so -log P(x) <= -log p(y) + D log(levels): in bits per dimension, an upper bound on the
    discrete model's NLL (Theis et al., 2016); a uniform density scores exactly log2(levels).
    """
    if not callable(log_density):
        raise TypeError("log_density must be a function from a batch (B, ...) to log-densities (B,)")
    y = data.dequantize(x, levels, generator)
    d = math.prod(x.shape[1:])
    return (nll(log_density, y) + d * math.log(levels)) / (d * math.log(2))


def data_tensor(dataset) -> torch.Tensor:
    """The examples of a TensorDataset (its first tensor), or the tensor itself."""
    if isinstance(dataset, torch.Tensor):
        return dataset
    if hasattr(dataset, "tensors"):
        return dataset.tensors[0]
    raise TypeError(f"expected a tensor or a TensorDataset, got {type(dataset).__name__}")


# ----------------------------------------------------------------------------- digit classifier

class DigitClassifier(nn.Module):
    """A small CNN for (N, 1, S, S) digits in [0, 1]; `features` is its penultimate layer."""

    def __init__(self, side: int):
        super().__init__()
        self.side = side
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.hidden = nn.Sequential(nn.Linear(64 * 16, 128), nn.SiLU())
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        validate.tensor("images", x, dtype="float", shape=(None, 1, self.side, self.side))
        return self.hidden(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _junk(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Images that are not digits: uniform noise, and pixels of real digits shuffled in place."""
    noise = torch.rand(x.shape, generator=g)
    flat = x.flatten(1)
    shuffled = flat[:, torch.randperm(flat.shape[1], generator=g)].view_as(x)
    return torch.cat([noise[: len(x) // 2], shuffled[len(x) // 2:]])


def _train_classifier(name: str) -> DigitClassifier:
    """Deterministic: fixed seed, fixed order, CPU, one thread (the same arithmetic on a busy
    machine, and faster there); about 8 s on digits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():  # the caller's random state is the same with or without a cache
            return _train_classifier_on(name)
    finally:
        torch.set_num_threads(threads)


def _train_classifier_on(name: str) -> DigitClassifier:
    torch.manual_seed(0)
    train = data.images(name, "train")
    x, y = train.tensors
    model = DigitClassifier(IMAGE_SETS[name])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    epochs = 30 if name == "digits" else 3
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            xb = (x[idx] + 0.05 * torch.randn(x[idx].shape, generator=g)).clamp(0, 1)  # robust features
            junk = _junk(x[idx], g)
            # outlier exposure: real digits get their label, junk gets a flat prediction,
            # so that confidence means "this looks like a digit", not just "argmax"
            loss = F.cross_entropy(model(xb), y[idx]) - 0.5 * model(junk).log_softmax(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


_CLASSIFIERS: dict[str, DigitClassifier] = {}


def classifier(name: str = "digits") -> DigitClassifier:
    """The digit classifier for 'digits' (8x8) or 'mnist' (28x28), trained on that set's training split.

    Cached in memory and under the cache folder (GENCOURSE_CACHE or
    ~/.cache/gencourse); retrained when the file is missing or unreadable.
    """
    validate.choice("name", name, IMAGE_SETS)
    if name in _CLASSIFIERS:
        return _CLASSIFIERS[name]
    path = os.path.join(runtime.cache_dir(), f"classifier-{name}-v2.pt")
    model = DigitClassifier(IMAGE_SETS[name])
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception:  # missing or unreadable: a corrupt file raises almost any error from the unpickler
        model = _train_classifier(name)
        torch.save(model.state_dict(), path)
    _CLASSIFIERS[name] = model.eval()
    return _CLASSIFIERS[name]


def _check_images(images: torch.Tensor, dataset: str, name: str = "images") -> str:
    """The data set's name, once images are known to be its shape: (N, 1, side, side)."""
    validate.choice("dataset", dataset, IMAGE_SETS)
    side = IMAGE_SETS[dataset]
    validate.tensor(name, images, dtype="float", shape=(None, 1, side, side))
    return dataset


@torch.no_grad()
def _batched(fn, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    x = images.detach().float().cpu().clamp(0, 1)
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def classify(images: torch.Tensor, dataset: str) -> torch.Tensor:
    """Class probabilities (N, 10) that the classifier of `dataset` ('digits' or 'mnist') gives to images (lab 00)."""
    model = classifier(_check_images(images, dataset))
    return _batched(lambda x: model(x).softmax(dim=1), images)


@dataclass
class ClassReport:
    confidence: float        # mean probability of the predicted class
    histogram: list[int]     # how many images were classified as each digit 0..9

    def __str__(self) -> str:
        return f"confidence {self.confidence:.2f}, classes {self.histogram}"


def class_report(images: torch.Tensor, dataset: str) -> ClassReport:
    """Classifier confidence and class histogram of a batch of samples of `dataset` (lab 00).

    Sharp, varied samples give high confidence and a flat histogram; a model
    that collapsed onto a few modes shows up as spikes in the histogram.
    """
    probs = classify(images, dataset)
    return ClassReport(float(probs.max(dim=1).values.mean()),
                       torch.bincount(probs.argmax(dim=1), minlength=10).tolist())


# ----------------------------------------------------------------------------- Frechet distance

def _gaussian(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = feats.double()
    return f.mean(dim=0), torch.cov(f.T)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(a)
    return vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_from_features(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two feature sets (N, F)."""
    validate.tensor("f1", f1, ndim=2, dtype="float")
    validate.tensor("f2", f2, ndim=2, dtype="float")
    if len(f1) < 2 or len(f2) < 2:
        raise ValueError("the Frechet distance needs at least 2 examples per set")
    mu1, s1 = _gaussian(f1)
    mu2, s2 = _gaussian(f2)
    r1 = _sqrtm_psd(s1)
    cross = torch.linalg.eigvalsh(r1 @ s2 @ r1).clamp(min=0).sqrt().sum()  # tr (S1 S2)^(1/2)
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross)


@dataclass
class Frechet:
    distance: float   # raw Frechet distance to the real test digits
    floor: float      # what the same number of real held-out digits reach
    n: int            # samples compared

    @property
    def ratio(self) -> float:
        return self.distance / self.floor

    def __str__(self) -> str:
        return f"Frechet distance {self.distance:.1f} ({self.ratio:.1f}x the floor of {self.floor:.1f} for {self.n} real digits)"


_FLOORS: dict[tuple[str, int, bool], float] = {}


def _real_features(name: str, binarize: bool = False):
    model = classifier(name)
    test = data.images(name, "test", binarize=binarize).tensors[0]
    held_out = torch.cat([data.images(name, s, binarize=binarize).tensors[0] for s in ("val", "train")])
    return _batched(model.features, test), _batched(model.features, held_out)


def frechet_distance(samples: torch.Tensor, dataset: str, binarize: bool = False) -> Frechet:
    """Frechet distance between samples and the real test split of `dataset`, in its classifier's
    features (lab 00).

    Samples are digits (N, 1, 8, 8) for 'digits' or (N, 1, 28, 28) for 'mnist',
    in [0, 1] (values outside are clipped). The floor compares the first N real
    digits that are not in the test split (the validation split, then the
    training split) with the same test split: what real digits reach at that
    sample count. binarize=True compares with binarized real digits, for
    models of binary pixels (lab 01): grey real digits would count their
    greys against them.
    """
    name = _check_images(samples, dataset, "samples")
    test_f, held_f = _real_features(name, binarize)
    n = len(samples)
    if n < 2 or n > len(held_f):
        raise ValueError(f"samples must hold between 2 and {len(held_f)} images for a floor to compare with, got {n}")
    key = (name, n, binarize)
    if key not in _FLOORS:
        _FLOORS[key] = frechet_from_features(held_f[:n], test_f)
    distance = frechet_from_features(_batched(classifier(name).features, samples), test_f)
    return Frechet(distance, _FLOORS[key], n)


# ----------------------------------------------------------------------------- 2-D samples

def nearest_distance(points: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean distance from each point (N, 2) to its nearest neighbour in reference (M, 2) (lab 02).

    Samples that lie on the data score about what held-out data scores;
    samples off the data, or noise, score more.
    """
    validate.tensor("points", points, ndim=2, dtype="float")
    validate.tensor("reference", reference, dtype="float", shape=(None, points.shape[1]))
    if len(points) == 0 or len(reference) == 0:
        raise ValueError("points and reference must both hold at least one point")
    return torch.cdist(points.detach().cpu(), reference.detach().cpu()).min(dim=1).values.mean().item()


@dataclass
class ModeCoverage:
    modes: int               # modes that received at least min_share of the samples
    of: int                  # modes there are
    fraction: float          # share of the samples within `within` standard deviations of some mode
    counts: list[int]        # samples near each mode

    def __iter__(self):  # unpacks as (modes, fraction), the pair that lab 03's exercise returns
        return iter((self.modes, self.fraction))

    def __str__(self) -> str:
        return f"{self.modes} of {self.of} modes covered, {self.fraction:.0%} of samples near a mode"


def mode_coverage(points: torch.Tensor, modes: torch.Tensor, std: float, within: float = 3.0,
                  min_share: float = 0.025) -> ModeCoverage:
    """How many modes of a mixture a sampler reaches, and how many samples are near one (lab 03).

    A sample is near mode k when it lies within `within` standard deviations of
    its centre; a mode is covered when at least `min_share` of all samples are
    near it (a fifth of its fair share for eight modes). A collapsed GAN covers
    few modes, however good each sample looks; a blurry one has few samples near any.
    Points (N, 2), modes (K, 2).
    """
    validate.tensor("points", points, ndim=2, dtype="float")
    validate.tensor("modes", modes, dtype="float", shape=(None, points.shape[1]))
    if not std > 0 or not within > 0:
        raise ValueError(f"std and within must be > 0, got std={std}, within={within}")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must lie in (0, 1] (a share of all samples), got {min_share}")
    if len(points) == 0:
        raise ValueError("points must hold at least one sample")
    distance = torch.cdist(points.detach().cpu().float(), modes.cpu().float())   # (N, K)
    nearest = distance.min(dim=1)
    near = nearest.values <= within * std
    counts = torch.bincount(nearest.indices[near], minlength=len(modes))
    covered = int((counts >= min_share * len(points)).sum())
    return ModeCoverage(covered, len(modes), float(near.float().mean()), counts.tolist())


# ----------------------------------------------------------------------------- speed

def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def call_latency(fn, warmup: int = 1, repeats: int = 5, synchronize=None) -> float:
    """Milliseconds one call of `fn()` takes: the median of `repeats` timed calls after `warmup` untimed
    ones (chapter 6, lab 06). The warm-up keeps one-off costs (allocation, caching, compilation) out;
    the median keeps out a call that the machine interrupted; `synchronize()` (CUDA's, unless given)
    runs before the clock starts and before it stops, because a GPU works asynchronously and a call
    returns before its work is done."""
    if not callable(fn):
        raise TypeError("fn must be a function of no arguments, e.g. lambda: model.sample(64)")
    validate.positive_int("repeats", repeats)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")
    sync = synchronize or _synchronize
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def sampling_latency(fn, n: int, warmup: int = 1, repeats: int = 3) -> float:
    """Milliseconds per sample of `fn(n)`, the median of `repeats` timed calls after `warmup` (lab 00).

    `fn` must draw n samples; the first calls are not timed, so one-off costs
    (allocation, caching) do not count. On CUDA the clock waits for the GPU.
    """
    if not callable(fn):
        raise TypeError("fn must be a function that draws n samples, e.g. lambda n: model.sample(n)")
    validate.positive_int("n", n)
    return call_latency(lambda: fn(n), warmup, repeats) / n


# ----------------------------------------------------------------------------- the five families side by side

CONDITIONS = ("y", "prompt")   # keywords of `sample` that condition what is drawn (class labels, a prompt)
SCORE_BATCH = 64               # the scorecard times drawing this many samples in one call


class _ParameterUse(torch.overrides.TorchFunctionMode):
    """Counts, for each parameter of a model, the torch operations that read it while active."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.ids = {id(p): p for p in model.parameters()}
        self.uses: dict[int, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") == "__get__":   # reading .device or .shape computes nothing
            return func(*args, **kwargs)
        for arg in (*args, *kwargs.values()):
            for value in (arg if isinstance(arg, (list, tuple)) else (arg,)):
                if id(value) in self.ids:
                    self.uses[id(value)] = self.uses.get(id(value), 0) + 1
        return func(*args, **kwargs)


def network_passes(model: nn.Module, draw=None) -> tuple[int, int]:
    """(passes, parameters) of drawing from a model, measured rather than declared (chapter 6):
    `draw(model)` (two samples unless given) runs while every torch operation that reads one of the
    model's parameters is counted. `parameters` adds up the parameters read at all -- a GAN's
    generator but not its discriminator, a VAE's decoder but not its encoder -- and `passes` is how many
    times a typical one (the median) was read: the network evaluations one sample waits for in turn
    (64 for an autoregressive model of 64 pixels, T for diffusion, one for a GAN)."""
    validate.instance("model", model, nn.Module)
    draw = draw or (lambda m: m.sample(2, generator=torch.Generator().manual_seed(0)))
    counter = _ParameterUse(model)
    with torch.no_grad(), counter:
        draw(model)
    if not counter.uses:
        raise ValueError("drawing read none of the model's parameters: is draw(model) using this model?")
    counts = sorted(counter.uses.values())
    return counts[len(counts) // 2], sum(counter.ids[i].numel() for i in counter.uses)


def conditions(model: nn.Module) -> tuple[str, ...]:
    """The keywords among CONDITIONS that `model.sample` accepts: how it can be told what to draw."""
    import inspect

    return tuple(k for k in CONDITIONS if k in inspect.signature(model.sample).parameters)


@dataclass
class Contender:
    """A trained model as the scorecard sees it (chapter 6). By default the scorecard draws with
    `model.sample(n, generator=...)` and, for a model with a likelihood over the same discrete images it
    is scored on, takes bits per dimension from `model.log_prob`. A model that needs something else says
    so: `bits_per_dim(model, images)` (a flow on dequantised pixels) with `likelihood` its kind."""

    model: nn.Module
    history: object = None            # train.History: its `seconds` is the training time
    bits_per_dim: object = None       # (model, images) -> bits per dimension, where log_prob does not fit
    likelihood: str | None = None     # 'exact', 'bound' or None; model.likelihood unless given

    def __post_init__(self):
        validate.instance("model", self.model, nn.Module)
        if not callable(getattr(self.model, "sample", None)):
            raise TypeError(f"{type(self.model).__name__} has no sample(n): the scorecard compares samplers")
        if self.likelihood is None and self.bits_per_dim is None:
            self.likelihood = getattr(self.model, "likelihood", None)
        if self.likelihood not in ("exact", "bound", None):
            raise ValueError(f"likelihood must be 'exact', 'bound' or None, got {self.likelihood!r}")
        if self.bits_per_dim is not None and not callable(self.bits_per_dim):
            raise TypeError("bits_per_dim must be a function (model, images) -> float")


@dataclass
class Row:
    """One model's line of the scorecard (chapter 6)."""

    name: str
    parameters: int                # parameters a sample is computed from
    train_seconds: float | None    # as training measured it (None: not known)
    frechet: Frechet               # of `samples` samples against the real test images
    bits_per_dim: float | None     # negative log-likelihood of the test images, bits per dimension
    likelihood: str                # 'exact', 'bound' or 'n/a'
    ms: dict                       # device -> milliseconds to draw SCORE_BATCH samples
    passes: int                    # network evaluations one sample waits for in turn
    conditions: tuple              # keywords that condition sampling, e.g. ('y',)


HEADER = ("model", "params", "train s", "FD", "FD/floor", "NLL b/dim", "likelihood", "ms/64 cpu", "ms/64 gpu",
          "passes", "condition")


@dataclass
class Scorecard:
    rows: list

    def __getitem__(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row {name!r}; the scorecard has {[r.name for r in self.rows]}")

    def table(self) -> list[tuple[str, ...]]:
        """The rows as strings, rounded as printed: the same on every machine except the timings."""
        def number(value, fmt):
            return "n/a" if value is None else format(value, fmt)

        def ms(value):   # three significant figures, never in powers of ten
            return "n/a" if value is None else format(value, ".2f" if value < 10 else ".1f" if value < 100 else ".0f")
        return [(r.name, f"{r.parameters:,}", number(r.train_seconds, ".0f"), f"{r.frechet.distance:.1f}",
                 f"{r.frechet.ratio:.1f}", number(r.bits_per_dim, ".3f"), r.likelihood,
                 ms(r.ms.get("cpu")), ms(r.ms.get("cuda")), str(r.passes),
                 ", ".join(r.conditions) or "no") for r in self.rows]

    def __str__(self) -> str:
        lines = [HEADER, *self.table()]
        widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
        text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
                for line in lines]
        return "\n".join([text[0], "-" * len(text[0]), *text[1:]])

    def pareto(self, device: str = "cpu") -> list[str]:
        """The models no other beats on both quality (Frechet ratio) and latency on `device`, fastest
        first: the choices worth making. Every other model is slower and worse than one of these."""
        rows = sorted((r for r in self.rows if device in r.ms), key=lambda r: (r.ms[device], r.frechet.ratio))
        front, best = [], math.inf
        for row in rows:
            if row.frechet.ratio < best:
                front.append(row.name)
                best = row.frechet.ratio
        return front


NEEDS = {None: ("exact", "bound", "n/a"), "any": ("exact", "bound"), "exact": ("exact",)}  # kinds each accepts


def choose(card: Scorecard, max_ms: float, max_ratio: float, likelihood: str | None = None,
           device: str = "cpu") -> str | None:
    """The rules of chapter 6 (lab 06 has you write them): keep the rows that draw SCORE_BATCH samples within
    `max_ms` on `device`, whose Frechet ratio is at most `max_ratio`, and whose likelihood the use accepts
    (None: any or none; 'any': a bound or an exact one; 'exact'); of those, the best quality (lowest ratio),
    ties to the faster. None when no row meets every constraint."""
    if likelihood not in NEEDS:
        raise ValueError(f"likelihood must be None, 'any' or 'exact' (what the use needs), got {likelihood!r}")
    left = [r for r in card.rows if r.ms.get(device, math.inf) <= max_ms and r.frechet.ratio <= max_ratio
            and r.likelihood in NEEDS[likelihood]]
    return min(left, key=lambda r: (r.frechet.ratio, r.ms[device])).name if left else None


def _bits(contender: Contender, images: torch.Tensor) -> float | None:
    model = contender.model
    if contender.bits_per_dim is not None:
        return float(contender.bits_per_dim(model, images))
    if contender.likelihood is None:
        return None
    with torch.no_grad():
        nats = nll(lambda x: model.log_prob(x.to(next(model.parameters()).device)), images)
    return bits_per_dim(nats, math.prod(images.shape[1:]))


def draw_samples(model: nn.Module, n: int, seed: int = 0, chunk: int = 500, **options) -> torch.Tensor:
    """n samples of `model` on the CPU, drawn `chunk` at a time from a generator seeded with `seed`:
    the same samples on every run (chapter 6). `options` go to `model.sample` (e.g. steps=20)."""
    validate.positive_int("n", n)
    g = torch.Generator().manual_seed(seed)
    return torch.cat([model.sample(min(chunk, n - i), generator=g, **options).cpu()
                      for i in range(0, n, chunk)])


def score(name: str, contender, test_images: torch.Tensor, dataset: str = "digits", samples: int = 1000,
          seed: int = 0, repeats: int = 3) -> Row:
    """The scorecard's row for one model (chapter 6, lab 06): `samples` samples (seeded) scored by the
    Frechet distance, the test images' bits per dimension, the time to draw SCORE_BATCH samples on the
    CPU (and on CUDA where there is one), and the network passes and parameters of drawing."""
    import copy

    contender = contender if isinstance(contender, Contender) else Contender(contender)
    _check_images(test_images, dataset, "test_images")
    model = contender.model.eval()
    frechet = frechet_distance(draw_samples(model, samples, seed), dataset)
    passes, parameters = network_passes(model)
    ms = {}
    for device in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
        copy_on = copy.deepcopy(model).to(device)
        ms[device] = call_latency(lambda: copy_on.sample(SCORE_BATCH), warmup=1, repeats=repeats)
    with torch.random.fork_rng():   # a bound that samples (the VAE's) draws the same noise on every run
        torch.manual_seed(seed)
        bits = _bits(contender, test_images)
    seconds = getattr(contender.history, "seconds", None)
    return Row(name, parameters, seconds, frechet, bits,
               contender.likelihood or "n/a", ms, passes, conditions(model))


def scorecard(models: dict, test_data, dataset: str = "digits", samples: int = 1000, seed: int = 0,
              repeats: int = 3) -> Scorecard:
    """One row per model, all measured in this run by `score` (chapter 6): `models` maps a name to a
    trained model or a `Contender`; `test_data` holds the real test images (a TensorDataset or a tensor)
    that the likelihoods are computed on, in the representation every model shares."""
    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict from a name to a trained model (or a Contender)")
    images = data_tensor(test_data)
    return Scorecard([score(name, m, images, dataset, samples, seed, repeats) for name, m in models.items()])
