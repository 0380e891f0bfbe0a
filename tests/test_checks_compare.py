"""The checks of lab 06 pass on correct answers and on the package's references, and fail on stubs and on
typical slips, each with its own message."""

from __future__ import annotations

import copy
import math
import time

import pytest
from checks_contract import fails_untouched, passes_quietly
import torch

from gencourse import data, evaluate
from gencourse.checks import compare as checks

TEST = data.digits("test").tensors[0]

# ----------------------------------------------------------------------------- what a learner writes
# Written independently of gencourse.evaluate where the exercise is a formula, so that the checks' tolerances are
# exercised as well as their logic.


def call_latency(fn, warmup, repeats, synchronize, *, mean=False, seconds=False, sync=True, timed_warmup=False,
                 minimum=False):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats + (warmup if timed_warmup else 0)) if timed_warmup else range(repeats):
        if sync:
            synchronize()
        start = time.perf_counter()
        fn()
        if sync:
            synchronize()
        times.append(time.perf_counter() - start)
    if mean:
        value = sum(times) / len(times)
    elif minimum:
        value = min(times)
    else:
        value = sorted(times)[len(times) // 2]
    return value if seconds else 1000 * value


def frechet(f1, f2, *, cross=True, factor=2.0, sqrt_product=True, root=False, elementwise=False, biased=False):
    """By scipy-free means: the symmetric form via Cholesky-free eigendecomposition of S2^(1/2) S1 S2^(1/2)."""
    f1, f2 = f1.double(), f2.double()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    correction = 0 if biased else 1
    s1, s2 = torch.cov(f1.T, correction=correction), torch.cov(f2.T, correction=correction)
    vals, vecs = torch.linalg.eigh(s2)
    r2 = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    if elementwise:
        tr = (s1 * s2).sqrt().trace()
    elif sqrt_product:
        tr = torch.linalg.eigvalsh(r2 @ s1 @ r2).clamp(min=0).sqrt().sum()
    else:
        tr = (s1 @ s2).trace()
    d = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - (factor * tr if cross else 0)
    return float(d.sqrt() if root else d)


def bits(log_density, x, levels, generator, *, width=True, sign=1, nats=False, per_image=False, centre=False):
    if centre:
        y = ((x * (levels - 1)).round() + 0.5) / levels
    else:
        y = data.dequantize(x, levels, generator)
    d = x[0].numel()
    total = -log_density(y).mean().item() + (sign * d * math.log(levels) if width else 0)
    per = total if per_image else total / d
    return per if nats else per / math.log(2)


def score_row(name, contender, test_images, dataset="digits", samples=1000, seed=0, repeats=3, *,
              all_parameters=False, no_history=False, fresh_samples=False):
    row = evaluate.score(name, contender, test_images, dataset, samples, seed, repeats)
    if all_parameters:
        row.parameters = sum(p.numel() for p in contender.model.parameters())
    if no_history:
        row.likelihood = "exact"
    if fresh_samples:
        row.frechet = evaluate.frechet_distance(contender.model.sample(samples), dataset)
    return row


def choose(card, max_ms, max_ratio, likelihood=None, *, fastest=False, any_means_exact=False, strict=False):
    rows = []
    for row in card.rows:
        if (row.ms["cpu"] < max_ms if strict else row.ms["cpu"] <= max_ms) and row.frechet.ratio <= max_ratio:
            if likelihood == "exact" or (likelihood == "any" and any_means_exact):
                ok = row.likelihood == "exact"
            elif likelihood == "any":
                ok = row.bits_per_dim is not None
            else:
                ok = True
            if ok:
                rows.append(row)
    if not rows:
        return None
    key = (lambda r: (r.ms["cpu"], r.frechet.ratio)) if fastest else (lambda r: (r.frechet.ratio, r.ms["cpu"]))
    return sorted(rows, key=key)[0].name


def score_check(fn):
    checks.score_row(fn, TEST)


REFERENCES = [(checks.call_latency, call_latency), (checks.frechet_from_features, frechet),
              (checks.dequantized_bits_per_dim, bits), (score_check, score_row), (checks.choose_model, choose)]


@pytest.mark.parametrize("check, fn", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_on_a_correct_answer(check, fn, capsys):
    passes_quietly(check, fn, capsys)


@pytest.mark.parametrize("check, fn", [
    (checks.call_latency, evaluate.call_latency), (checks.frechet_from_features, evaluate.frechet_from_features),
    (checks.dequantized_bits_per_dim, evaluate.dequantized_bits_per_dim), (score_check, evaluate.score),
    (checks.choose_model, evaluate.choose)], ids=lambda v: getattr(v, "__name__", ""))
def test_the_packages_own_functions_pass_their_checks(check, fn, capsys):
    passes_quietly(check, fn, capsys)


@pytest.mark.parametrize("k, check", list(enumerate([checks.call_latency, checks.frechet_from_features,
                                                 checks.dequantized_bits_per_dim, score_check,
                                                 checks.choose_model], start=1)))
def test_check_fails_on_an_untouched_exercise(k, check):
    fails_untouched(check, f"6.{k}")


def test_a_biased_covariance_is_accepted_too(capsys):
    passes_quietly(checks.frechet_from_features, lambda a, b: frechet(a, b, biased=True), capsys)


def _with(fn, **switches):
    return lambda *args, **kwargs: fn(*args, **kwargs, **switches)


@pytest.mark.parametrize("switches, match", [
    (dict(mean=True), "mean of the timed calls"),
    (dict(seconds=True), "in seconds"),
    (dict(minimum=True), "fastest call"),
    (dict(sync=False), "synchronize"),
    (dict(timed_warmup=True), "called 4 times"),
])
def test_call_latency_slips(switches, match):
    with pytest.raises(AssertionError, match=match):
        checks.call_latency(_with(call_latency, **switches))


@pytest.mark.parametrize("switches, match", [
    (dict(cross=False), "cross term"),
    (dict(factor=1.0), "factor 2"),
    (dict(sqrt_product=False), "matrix square root of S1 S2 before the trace"),
    (dict(elementwise=True), "not the elementwise square root"),
    (dict(root=True), "square root of the distance"),
])
def test_frechet_slips(switches, match):
    with pytest.raises(AssertionError, match=match):
        checks.frechet_from_features(_with(frechet, **switches))


def test_frechet_of_means_only_is_named():
    with pytest.raises(AssertionError, match="only the means"):
        checks.frechet_from_features(lambda a, b: float((a.double().mean(0) - b.double().mean(0)).square().sum()))


@pytest.mark.parametrize("switches, match", [
    (dict(width=False), "add D log\\(levels\\)"),
    (dict(sign=-1), "enters as \\+ D log"),
    (dict(nats=True), "nats per dimension"),
    (dict(per_image=True), "bits per image"),
    (dict(centre=True), "centre of its bin"),
])
def test_bits_slips(switches, match):
    with pytest.raises(AssertionError, match=match):
        checks.dequantized_bits_per_dim(_with(bits, **switches))


@pytest.mark.parametrize("switches, match", [
    (dict(all_parameters=True), "counts those that sampling reads"),
    (dict(no_history=True), "likelihood for the untrained GAN"),
    (dict(fresh_samples=True), "evaluate.draw_samples"),
])
def test_score_row_slips(switches, match):
    with pytest.raises(AssertionError, match=match):
        checks.score_row(_with(score_row, **switches), TEST)


def test_score_row_must_return_a_row():
    with pytest.raises(AssertionError, match="return an evaluate.Row"):
        checks.score_row(lambda *args: {"name": args[0]}, TEST)


@pytest.mark.parametrize("switches, match", [
    (dict(fastest=True), "the lowest ratio, ties to the faster"),
    (dict(any_means_exact=True), "likelihood='any'"),
    (dict(strict=True), "max_ms"),
])
def test_choose_slips(switches, match):
    with pytest.raises(AssertionError, match=match):
        checks.choose_model(_with(choose, **switches))


def test_choose_on_a_card_follows_every_rule():
    card = checks._synthetic_card()
    assert evaluate.choose(card, math.inf, math.inf) == "diffusion"
    assert evaluate.choose(card, 100.0, math.inf) == "gan"
    assert evaluate.choose(card, math.inf, math.inf, "any") == "ar"
    assert evaluate.choose(card, 100.0, math.inf, "exact") is None
    slower = copy.deepcopy(card)
    slower.rows[2].ms["cpu"] = 10.0
    assert evaluate.choose(slower, 100.0, 2.8) == "slow gan"
    with pytest.raises(ValueError, match="likelihood must be None, 'any' or 'exact'"):
        evaluate.choose(card, 100.0, 2.8, "bound")
