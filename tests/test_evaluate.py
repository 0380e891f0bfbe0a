"""Unit tests of gencourse.evaluate: likelihood units, the digit classifier, Frechet distance, latency.

The digit classifier is trained once for the whole module (about 5 s), into a private cache folder.
"""

from __future__ import annotations

import copy
import math
import os
import time
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch

from gencourse import data, evaluate


# ----------------------------------------------------------------------------- bits per dim

def test_bits_per_dim_numbers():
    assert evaluate.bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)
    assert evaluate.bits_per_dim(784 * 8 * math.log(2), 784) == pytest.approx(8.0)
    assert evaluate.bits_per_dim(0.0, 10) == 0.0
    assert evaluate.bits_per_dim(3, 1) == pytest.approx(3 / math.log(2))  # ints are numbers too


def test_bits_per_dim_tensor():
    nll = torch.tensor([64 * math.log(2), 128 * math.log(2)])
    out = evaluate.bits_per_dim(nll, 64)
    assert isinstance(out, torch.Tensor)
    assert torch.allclose(out, torch.tensor([1.0, 2.0]))
    scalar = evaluate.bits_per_dim(torch.tensor(2 * math.log(2), dtype=torch.float64), 2)
    assert scalar.dtype == torch.float64 and scalar.item() == pytest.approx(1.0)


@pytest.mark.parametrize("bad, exc, name", [
    ("1.0", TypeError, "nll_nats"),
    (None, TypeError, "nll_nats"),
    (True, TypeError, "nll_nats"),
    ([1.0], TypeError, "nll_nats"),
    (torch.tensor([1, 2]), TypeError, "nll_nats"),
])
def test_bits_per_dim_bad_nll(bad, exc, name):
    with pytest.raises(exc, match=name):
        evaluate.bits_per_dim(bad, 64)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-3, ValueError), (64.0, TypeError)])
def test_bits_per_dim_bad_dims(bad, exc):
    with pytest.raises(exc, match="num_dims"):
        evaluate.bits_per_dim(1.0, bad)


# ----------------------------------------------------------------------------- nll

def std_normal_log_prob(x):
    flat = x.reshape(len(x), -1)
    return -0.5 * flat.square().sum(dim=1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def test_nll_of_a_gaussian_is_analytic():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, generator=g)
    # -log N(x; 0, I) averaged: D/2 log(2 pi) + mean ||x||^2 / 2
    expected = 1.5 * math.log(2 * math.pi) + 0.5 * x.double().square().sum(dim=1).mean().item()
    assert evaluate.nll(std_normal_log_prob, x, batch_size=3) == pytest.approx(expected, rel=1e-6)  # float32 log_prob
    assert evaluate.nll(std_normal_log_prob, x) == pytest.approx(expected, rel=1e-6)


def test_nll_at_the_mode_and_on_datasets():
    zeros = torch.zeros(7, 1, 8, 8)
    expected = 32 * math.log(2 * math.pi)  # D = 64 at x = 0
    ds = torch.utils.data.TensorDataset(zeros, torch.zeros(7, dtype=torch.long))
    assert evaluate.nll(std_normal_log_prob, ds, batch_size=2) == pytest.approx(expected)
    # and in bits per dimension: log2(2 pi) / 2 per pixel
    assert evaluate.bits_per_dim(evaluate.nll(std_normal_log_prob, zeros), 64) == pytest.approx(
        0.5 * math.log2(2 * math.pi))


def test_nll_batches_cover_every_example():
    seen = []

    def log_prob(x):
        seen.append(len(x))
        return torch.zeros(len(x))

    evaluate.nll(log_prob, torch.zeros(10, 2), batch_size=4)
    assert seen == [4, 4, 2]


def test_nll_bad_input():
    with pytest.raises(TypeError, match="log_prob"):
        evaluate.nll("not a function", torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"log_prob\(batch\) must have shape"):
        evaluate.nll(lambda x: torch.zeros(len(x), 1), torch.zeros(3, 2))
    with pytest.raises(TypeError, match=r"log_prob\(batch\)"):
        evaluate.nll(lambda x: torch.zeros(len(x), dtype=torch.long), torch.zeros(3, 2))
    with pytest.raises(TypeError, match="TensorDataset"):
        evaluate.nll(std_normal_log_prob, [[0.0, 1.0]])


def test_data_tensor():
    x = torch.zeros(3, 2)
    assert evaluate.data_tensor(x) is x
    assert evaluate.data_tensor(torch.utils.data.TensorDataset(x, torch.ones(3))) is x


# ----------------------------------------------------------------------------- Frechet from features

def _reference_frechet(f1, f2):
    a, b = f1.double().numpy(), f2.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_identical_sets_is_zero():
    f = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    assert evaluate.frechet_from_features(f, f) == pytest.approx(0.0, abs=1e-8)
    # also when there are fewer examples than features (a singular covariance)
    g = torch.randn(5, 20, generator=torch.Generator().manual_seed(1))
    assert evaluate.frechet_from_features(g, g) == pytest.approx(0.0, abs=1e-6)


def test_frechet_shifted_copy_is_squared_shift():
    f = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0])
    assert evaluate.frechet_from_features(f, f + shift) == pytest.approx(shift.square().sum().item(), rel=1e-6)


def test_frechet_diagonal_gaussians_closed_form():
    # points (+-a, 0), (0, +-b): mean 0, sample covariance exactly diag(2a^2/3, 2b^2/3) (unbiased, N = 4)
    def cross(a, b, shift=(0.0, 0.0)):
        return torch.tensor([[a, 0.0], [-a, 0.0], [0.0, b], [0.0, -b]]) + torch.tensor(shift)

    f1, f2 = cross(1.0, 3.0), cross(2.0, 0.5, shift=(1.0, -1.0))
    s1 = [2 * 1.0**2 / 3, 2 * 3.0**2 / 3]
    s2 = [2 * 2.0**2 / 3, 2 * 0.5**2 / 3]
    # ||mu1 - mu2||^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2 for diagonal covariances
    expected = 2.0 + sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(s1, s2))
    assert evaluate.frechet_from_features(f1, f2) == pytest.approx(expected, rel=1e-9)


def test_frechet_matches_scipy_reference_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(400, 5, generator=g) @ torch.randn(5, 5, generator=g)
    f2 = torch.randn(300, 5, generator=g) @ torch.randn(5, 5, generator=g) + 0.3
    d12 = evaluate.frechet_from_features(f1, f2)
    assert d12 == pytest.approx(_reference_frechet(f1, f2), rel=1e-6)
    assert d12 == pytest.approx(evaluate.frechet_from_features(f2, f1), rel=1e-6)
    assert d12 > 0


def test_frechet_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        evaluate.frechet_from_features(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="f1 must have 2 dimensions"):
        evaluate.frechet_from_features(torch.zeros(5), torch.zeros(5, 3))
    with pytest.raises(TypeError, match="f2 must be a floating-point"):
        evaluate.frechet_from_features(torch.zeros(5, 3), torch.zeros(5, 3, dtype=torch.long))


# ----------------------------------------------------------------------------- the digit classifier

@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small convolutions on 8x8 images gain nothing from a second thread, and on a busy machine two
    threads per process slow the classifier's training tenfold; the result does not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train the digits classifier once, in a private cache; restore the environment afterwards."""
    cache = tmp_path_factory.mktemp("gencourse-cache")
    old_env = os.environ.get("GENCOURSE_CACHE")
    old_classifiers, old_floors = dict(evaluate._CLASSIFIERS), dict(evaluate._FLOORS)
    os.environ["GENCOURSE_CACHE"] = str(cache)
    evaluate._CLASSIFIERS.clear()
    evaluate._FLOORS.clear()
    try:
        start = time.perf_counter()
        model = evaluate.classifier("digits")
        seconds = time.perf_counter() - start
        files = sorted(cache.glob("*"))
        yield SimpleNamespace(model=model, cache=cache, files=files, path=files[0] if files else None, seconds=seconds)
    finally:
        if old_env is None:
            os.environ.pop("GENCOURSE_CACHE", None)
        else:
            os.environ["GENCOURSE_CACHE"] = old_env
        evaluate._CLASSIFIERS.clear()
        evaluate._CLASSIFIERS.update(old_classifiers)
        evaluate._FLOORS.clear()
        evaluate._FLOORS.update(old_floors)


@pytest.fixture(scope="module")
def test_digits():
    return data.digits("test").tensors


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_classifier_accuracy(trained, test_digits):
    x, y = test_digits
    model = trained.model
    assert isinstance(model, evaluate.DigitClassifier) and not model.training
    with torch.no_grad():
        acc = (model(x).argmax(dim=1) == y).float().mean().item()
    assert acc >= 0.95
    assert model.features(x).shape == (360, 128)


def test_classifier_cached_in_memory(trained):
    assert evaluate.classifier("digits") is trained.model
    assert evaluate.classifier() is trained.model


def test_classifier_cached_on_disk(trained, monkeypatch):
    # exactly one file, in the cache folder, named for the data set
    assert len(trained.files) == 1 and trained.path.is_file()
    assert trained.path.name.startswith("classifier-digits") and trained.path.suffix == ".pt"
    monkeypatch.setattr(evaluate, "_CLASSIFIERS", {})

    def no_training(name):
        raise AssertionError("the cached file should have been loaded, not retrained")

    monkeypatch.setattr(evaluate, "_train_classifier", no_training)
    start = time.perf_counter()
    again = evaluate.classifier("digits")
    assert time.perf_counter() - start < 1.0
    assert again is not trained.model
    assert _same_weights(again, trained.model)
    assert not again.training


@pytest.mark.parametrize("corruption", ["text", "random_bytes", "empty", "truncated", "other_model", "not_a_dict"])
def test_classifier_corrupt_cache_is_retrained(trained, monkeypatch, tmp_path, corruption):
    assert trained.path is not None
    path = tmp_path / trained.path.name
    good = tmp_path / "good.pt"
    torch.save(trained.model.state_dict(), good)
    if corruption == "text":
        path.write_text("this is not a checkpoint")
    elif corruption == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif corruption == "empty":
        path.write_bytes(b"")
    elif corruption == "truncated":
        path.write_bytes(good.read_bytes()[:1000])
    elif corruption == "other_model":
        torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    else:
        torch.save(torch.zeros(3), path)
    monkeypatch.setenv("GENCOURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(evaluate, "_CLASSIFIERS", {})
    calls = []

    def fake_training(name):  # stands in for the 5-second training
        calls.append(name)
        return copy.deepcopy(trained.model)

    monkeypatch.setattr(evaluate, "_train_classifier", fake_training)
    model = evaluate.classifier("digits")
    assert calls == ["digits"]
    assert _same_weights(model, trained.model)
    # the retrained weights replaced the corrupt file
    reloaded = evaluate.DigitClassifier(8)
    reloaded.load_state_dict(torch.load(path, weights_only=True))
    assert _same_weights(reloaded, trained.model)


def test_classifier_bad_name():
    with pytest.raises(ValueError, match="name"):
        evaluate.classifier("cifar10")


def test_classifier_features_validate_shape():
    model = evaluate.DigitClassifier(8)
    with pytest.raises(ValueError, match="images must have shape"):
        model(torch.zeros(2, 1, 28, 28))
    assert evaluate.DigitClassifier(28)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_classify_probabilities(trained, test_digits):
    x, y = test_digits
    probs = evaluate.classify(x[:50], "digits")
    assert probs.shape == (50, 10)
    assert torch.allclose(probs.sum(dim=1), torch.ones(50), atol=1e-5)
    assert (probs >= 0).all()
    assert (probs.argmax(dim=1) == y[:50]).float().mean() > 0.9
    # out-of-range values are clipped to [0, 1] before classifying
    assert torch.allclose(evaluate.classify(x[:50] * 3 - 1, "digits"),
                          evaluate.classify((x[:50] * 3 - 1).clamp(0, 1), "digits"))


def test_check_images():
    assert evaluate._check_images(torch.zeros(2, 1, 8, 8), "digits") == "digits"
    assert evaluate._check_images(torch.zeros(2, 1, 28, 28), "mnist") == "mnist"
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 8, 8\), got \(2, 1, 28, 28\)"):
        evaluate._check_images(torch.zeros(2, 1, 28, 28), "digits")      # named, never guessed from the size
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 28, 28\)"):
        evaluate._check_images(torch.zeros(2, 1, 8, 8), "mnist")
    with pytest.raises(ValueError, match="images must have shape"):
        evaluate._check_images(torch.zeros(2, 1, 16, 16), "digits")
    with pytest.raises(ValueError, match="images must have shape"):
        evaluate._check_images(torch.zeros(2, 3, 8, 8), "digits")
    with pytest.raises(ValueError, match="images must have shape"):
        evaluate._check_images(torch.zeros(2, 8, 8), "digits")
    with pytest.raises(TypeError, match="images must be a floating-point"):
        evaluate._check_images(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "digits")
    with pytest.raises(ValueError, match=r"dataset must be one of \['digits', 'mnist'\], got 'cifar10'"):
        evaluate._check_images(torch.zeros(2, 1, 8, 8), "cifar10")


@pytest.mark.parametrize("fn", [evaluate.classify, evaluate.class_report, evaluate.frechet_distance])
def test_image_scores_name_their_dataset(fn, monkeypatch):
    """Checked before any classifier is trained or data set loaded: nothing is fetched for a bad call."""
    monkeypatch.setattr(evaluate, "classifier", lambda name: pytest.fail("checked before loading a classifier"))
    with pytest.raises(ValueError, match=r"dataset must be one of \['digits', 'mnist'\], got 'Digits'"):
        fn(torch.zeros(4, 1, 8, 8), "Digits")
    name = "samples" if fn is evaluate.frechet_distance else "images"     # each names its own argument
    with pytest.raises(ValueError, match=rf"{name} must have shape \(N, 1, 28, 28\), got \(4, 1, 8, 8\)"):
        fn(torch.zeros(4, 1, 8, 8), "mnist")
    with pytest.raises(ValueError, match=rf"{name} must have shape \(N, 1, 8, 8\)"):
        fn(torch.zeros(4, 1, 28, 28), "digits")
    with pytest.raises(TypeError):
        fn(torch.zeros(4, 1, 8, 8))                        # the data set is required


# ----------------------------------------------------------------------------- class report

def test_class_report_real_digits(trained, test_digits):
    report = evaluate.class_report(test_digits[0], "digits")
    assert report.confidence > 0.9
    assert len(report.histogram) == 10 and sum(report.histogram) == 360
    assert min(report.histogram) > 0
    # the histogram follows the true label counts closely
    true = torch.bincount(test_digits[1], minlength=10).tolist()
    assert sum(abs(a - b) for a, b in zip(report.histogram, true)) <= 36
    assert str(report).startswith("confidence 0.9")


def test_class_report_collapsed_samples(trained):
    report = evaluate.class_report(torch.zeros(100, 1, 8, 8), "digits")
    assert sum(report.histogram) == 100
    assert sum(1 for h in report.histogram if h > 0) == 1  # identical images: a single class
    assert max(report.histogram) == 100


# ----------------------------------------------------------------------------- Frechet distance

def test_frechet_distance_real_digits_near_floor(trained):
    real = data.digits("train").tensors[0][:180]
    result = evaluate.frechet_distance(real, "digits")
    assert isinstance(result, evaluate.Frechet)
    assert result.n == 180 and result.floor > 0
    assert result.ratio < 1.5
    assert result.ratio == pytest.approx(result.distance / result.floor)
    assert "floor" in str(result)


def test_frechet_distance_floor_is_the_held_out_split(trained):
    val = data.digits("val").tensors[0]  # exactly the first 180 held-out images
    result = evaluate.frechet_distance(val, "digits")
    assert result.distance == pytest.approx(result.floor, rel=1e-9)
    assert result.ratio == pytest.approx(1.0)


def test_frechet_distance_of_binary_samples_compares_with_binarized_digits(trained):
    """Lab 01's models draw binary pixels: against binarized real digits, binarized held-out digits are at
    the floor, while against grey ones the same digits look far off."""
    val = data.digits("val", binarize=True).tensors[0]
    binary = evaluate.frechet_distance(val, "digits", binarize=True)
    assert binary.distance == pytest.approx(binary.floor, rel=1e-9)
    assert evaluate.frechet_distance(val, "digits").ratio > 1.5


def test_frechet_distance_noise_is_far(trained):
    noise = torch.rand(180, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert evaluate.frechet_distance(noise, "digits").ratio > 5
    blank = torch.zeros(180, 1, 8, 8)
    assert evaluate.frechet_distance(blank, "digits").ratio > 5


def test_frechet_distance_clips_values(trained):
    real = data.digits("train").tensors[0][:100]
    stretched = real * 2 - 0.5  # 0 -> -0.5, 1 -> 1.5: clipping undoes the ends only
    assert evaluate.frechet_distance(stretched, "digits").distance == pytest.approx(
        evaluate.frechet_distance(stretched.clamp(0, 1), "digits").distance)


def test_frechet_distance_bad_input(trained):
    with pytest.raises(ValueError, match="samples must have shape"):
        evaluate.frechet_distance(torch.rand(50, 1, 10, 10), "digits")
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 1, 8, 8\), got \(50, 64\)"):
        evaluate.frechet_distance(torch.rand(50, 64), "digits")
    with pytest.raises(ValueError, match="samples must hold between 2 and 1437"):
        evaluate.frechet_distance(torch.rand(1, 1, 8, 8), "digits")
    with pytest.raises(ValueError, match="samples must hold"):
        evaluate.frechet_distance(torch.rand(1438, 1, 8, 8), "digits")


# ----------------------------------------------------------------------------- 2-D samples

def test_nearest_distance_by_hand():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    reference = torch.tensor([[0.0, 1.0], [3.0, 0.0], [10.0, 10.0]])
    # (0, 0): 1 to (0, 1); (3, 4): 4 to (3, 0), against sqrt(18) to (0, 1)
    d = evaluate.nearest_distance(points, reference)
    assert isinstance(d, float) and d == pytest.approx(2.5)
    assert evaluate.nearest_distance(reference, reference) == 0.0
    assert evaluate.nearest_distance(points[:1], reference) == pytest.approx(1.0)
    assert evaluate.nearest_distance(points.double(), reference.double()) == pytest.approx(2.5)
    assert evaluate.nearest_distance(torch.zeros(4, 3), torch.ones(2, 3)) == pytest.approx(3 ** 0.5)   # any dimension


def test_nearest_distance_tells_data_from_noise():
    moons = data.toy2d("moons", n=2000, seed=0)
    held_out = data.toy2d("moons", n=300, seed=1)
    noise = torch.randn(300, 2, generator=torch.Generator().manual_seed(0)) * moons.std(0) + moons.mean(0)
    on_data, off_data = evaluate.nearest_distance(held_out, moons), evaluate.nearest_distance(noise, moons)
    assert off_data > 2 * on_data
    points = torch.zeros(3, 2, requires_grad=True)
    assert evaluate.nearest_distance(points, moons) > 0        # samples that still carry a graph are fine


@pytest.mark.parametrize("points, reference, exc, match", [
    (torch.zeros(4), torch.zeros(3, 2), ValueError, "points must have 2 dimensions"),
    (torch.zeros(4, 2), torch.zeros(3, 3), ValueError, r"reference must have shape \(N, 2\)"),
    (torch.zeros(4, 2), torch.zeros(3), ValueError, "reference must have shape"),
    (torch.zeros(4, 2, dtype=torch.long), torch.zeros(3, 2), TypeError, "points must be a floating-point"),
    (torch.zeros(4, 2), torch.zeros(3, 2, dtype=torch.long), TypeError, "reference must be a floating-point"),
    ([[0.0, 0.0]], torch.zeros(3, 2), TypeError, "points must be a torch.Tensor"),
    (torch.zeros(0, 2), torch.zeros(3, 2), ValueError, "at least one point"),
    (torch.zeros(4, 2), torch.zeros(0, 2), ValueError, "at least one point"),
])
def test_nearest_distance_bad_input(points, reference, exc, match):
    with pytest.raises(exc, match=match):
        evaluate.nearest_distance(points, reference)


# ----------------------------------------------------------------------------- latency

def test_sampling_latency_per_sample():
    calls = []

    def sleepy(n):
        calls.append(n)
        time.sleep(0.010)

    ms = evaluate.sampling_latency(sleepy, n=10, warmup=1, repeats=3)
    assert calls == [10] * 4  # one warm-up and three timed calls, each with n
    assert 0.9 <= ms < 3.0  # 10 ms per call over 10 samples: about 1 ms per sample


def test_sampling_latency_ignores_warmup():
    calls = []

    def slow_first(n):
        calls.append(n)
        time.sleep(0.3 if len(calls) <= 2 else 0.005)

    ms = evaluate.sampling_latency(slow_first, n=5, warmup=2, repeats=3)
    assert 0.9 <= ms < 5.0  # about 5 ms / 5 samples; the 300 ms warm-up calls do not count


def test_sampling_latency_median():
    durations = iter([0.0, 0.002, 0.2, 0.002])  # warm-up, then one slow outlier among three

    def fn(n):
        time.sleep(next(durations))

    assert evaluate.sampling_latency(fn, n=1) < 50  # the median ignores the 200 ms outlier


def test_sampling_latency_runs_without_grad():
    flags = []
    evaluate.sampling_latency(lambda n: flags.append(torch.is_grad_enabled()), n=1)
    assert flags and not any(flags)


def test_sampling_latency_bad_input():
    with pytest.raises(TypeError, match="fn must be a function"):
        evaluate.sampling_latency(None, 10)
    with pytest.raises(ValueError, match="n must be at least 1"):
        evaluate.sampling_latency(lambda n: None, 0)
    with pytest.raises(TypeError, match="n must be an int"):
        evaluate.sampling_latency(lambda n: None, 2.0)
    with pytest.raises(ValueError, match="repeats"):
        evaluate.sampling_latency(lambda n: None, 1, repeats=0)
