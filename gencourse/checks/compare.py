"""Checks of lab 06, "The five families side by side": a latency measurement, the Frechet distance from
features, bits per dimension of discrete images under a continuous density, one row of the scorecard, and
a choice of family under constraints.

Each check calls the learner's function on fixed inputs and compares it with the reference
(gencourse.evaluate.call_latency, frechet_from_features, dequantized_bits_per_dim, score and choose, the
rules chapter 6 states); before the generic "values differ" message it tries the
usual slips and names the one it recognises. `use` (from gencourse.checks) is re-exported here: the lab
builds its scorecard with the learner's functions once they pass.
"""

from __future__ import annotations

import math
import time
import torch

from .. import evaluate, flows, gan, vae
from . import call, close, fixed, graded, mismatch, observe, passed, seeded, use  # noqa: F401  (use: lab)


# ----------------------------------------------------------------------------- 6.1 latency

@graded("gencourse.evaluate.call_latency")
def call_latency(fn) -> None:
    """Exercise 6.1: fn(step, warmup, repeats, synchronize) -> the median ms of the timed calls."""
    log, took = [], []
    durations = iter([0.25, 0.06, 0.6, 0.02, 0.5, 0.5, 0.5])    # warm-up, then three timed calls, then spares

    def step():
        log.append("call")
        start = time.perf_counter()
        time.sleep(next(durations))
        took.append(1000 * (time.perf_counter() - start))      # what the call really took, in ms: a busy
                                                                # machine sleeps longer than asked

    def synchronize():
        log.append("sync")

    got = call("6.1", fn, step, 1, 3, synchronize)
    log = observe("the calls made", lambda: list(log))
    took = observe("how long each call took (ms)", lambda: list(took))
    calls = log.count("call")
    if calls != 4:
        raise AssertionError(f"Exercise 6.1: with warmup=1 and repeats=3, fn should be called 4 times (one "
                             f"untimed, then three timed), but it was called {calls} times.")
    if log[-9:] != ["sync", "call", "sync"] * 3:
        raise AssertionError("Exercise 6.1: call synchronize() just before starting the clock and again just "
                             "after fn() returns, for every timed call: on a GPU, fn() returns before the work "
                             f"is done. The calls your function made were: {log}")
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise AssertionError(f"Exercise 6.1: return a number of milliseconds, got {type(got).__name__}")
    timed = took[1:4]                                           # the warm-up is not timed
    median = sorted(timed)[1]

    def near(value, want):       # the learner's clock also counts its own loop: a little more, never less
        return want * 0.9 - 1 <= value <= want * 1.15 + 5

    if not near(got, median):
        slips = [(median / 1000, "that is in seconds: return milliseconds (multiply by 1000)."),
                 (sum(timed) / 3, "that is the mean of the timed calls: take the median, which one call that "
                                  "the machine interrupted cannot move."),
                 (min(timed), "that is the fastest call (the minimum): take the median of the timed calls."),
                 (max(timed), "that is the slowest call: take the median of the timed calls.")]
        for value, message in slips:
            if abs(got - value) <= 0.15 * value:
                raise AssertionError(f"Exercise 6.1: {message}")
        spent = ", ".join(f"{t:.0f}" for t in timed)
        raise AssertionError(f"Exercise 6.1: the timed calls took {spent} ms, so the median is about "
                             f"{median:.0f} ms; you return {got:.4g}.")
    passed("the latency is measured as it should be: warm-up untimed, synchronised, the median of the repeats")


# ----------------------------------------------------------------------------- 6.2 Frechet distance

def _features(n: int, seed: int, shift: float, scale: float) -> torch.Tensor:
    g = seeded(seed)
    mix = torch.randn(5, 5, generator=g) * 0.4 + torch.eye(5) * scale
    return torch.randn(n, 5, generator=g) @ mix + shift


@graded("gencourse.evaluate.frechet_from_features")
def frechet_from_features(fn) -> None:
    """Exercise 6.2: the Frechet distance between Gaussians fitted to two feature sets."""
    f1, f2 = _features(4000, 1, 0.0, 1.0), _features(3000, 2, 0.5, 1.6)
    got = call("6.2", fn, f1, f2)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise AssertionError(f"Exercise 6.2: return one number (a float), got {type(got).__name__}")
    want = evaluate.frechet_from_features(f1, f2)
    if not math.isclose(got, want, rel_tol=2e-3):
        mu1, mu2 = f1.double().mean(0), f2.double().mean(0)
        s1, s2 = torch.cov(f1.double().T), torch.cov(f2.double().T)
        means = (mu1 - mu2).square().sum().item()
        traces = (s1.trace() + s2.trace()).item()
        cross = want - means - traces            # -2 tr (S1 S2)^(1/2)
        slips = [(means, "only the means are compared: add the covariance term "
                         "tr(S1 + S2 - 2 (S1 S2)^(1/2))."),
                 (means + traces, "the cross term -2 tr((S1 S2)^(1/2)) is missing: without it two identical "
                                  "Gaussians would be far apart."),
                 (means + traces + cross / 2, "the cross term needs its factor 2: tr(S1 + S2 - 2 (S1 S2)^(1/2))."),
                 (means + traces - 2 * (s1 @ s2).trace().item(), "take the matrix square root of S1 S2 before the "
                                                                 "trace: tr((S1 S2)^(1/2)), not tr(S1 S2)."),
                 (means + traces - 2 * (s1 * s2).sqrt().trace().item(), "(S1 S2)^(1/2) is a matrix square root "
                  "of the matrix product, not the elementwise square root of S1 * S2."),
                 (math.sqrt(max(want, 0)), "that is the square root of the distance: the Frechet distance of FID "
                                          "is the squared one, ||mu1 - mu2||^2 + tr(...).")]
        raise mismatch("6.2", "the Frechet distance", got, want, "for the test features", slips, rtol=2e-3,
                       hint="mean and covariance of each set (torch.cov of the transposed features), then "
                            "||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).")
    same = call("6.2", fn, f1, f1)
    same = same.item() if isinstance(same, torch.Tensor) else same
    if not abs(same) < 1e-3 * want:
        raise AssertionError(f"Exercise 6.2: a feature set against itself should be at distance 0, you give "
                             f"{same:.4g}: the matrix square root is not accurate enough (use torch.linalg.eigh "
                             "on a symmetric matrix, as the hint says).")
    passed("the Frechet distance is right: the means' distance plus the covariances' trace term")


# ----------------------------------------------------------------------------- 6.3 bits per dimension

def _discrete_images(levels: int, seed: int) -> torch.Tensor:
    return torch.randint(0, levels, (12, 1, 4, 4), generator=seeded(seed)) / (levels - 1)


def _tilted(y: torch.Tensor) -> torch.Tensor:
    """log of a density on [0, 1)^D: a product of p(t) = 2 t, which favours bright pixels."""
    return torch.log(2 * y.clamp(min=1e-6)).flatten(1).sum(1)


@graded("gencourse.evaluate.dequantized_bits_per_dim")
def dequantized_bits_per_dim(fn) -> None:
    """Exercise 6.3: bits per dimension of discrete images under a density on [0, 1)^D."""
    levels, x = 17, _discrete_images(17, 3)
    uniform = call("6.3", fn, lambda y: torch.zeros(len(y)), x, levels, seeded(0))
    if not isinstance(uniform, (int, float)) or isinstance(uniform, bool):
        raise AssertionError(f"Exercise 6.3: return one number (bits per dimension), got {type(uniform).__name__}")
    if not math.isclose(uniform, math.log2(levels), rel_tol=1e-4):
        slips = [(0.0, "a uniform density on [0, 1)^D puts probability 1/17 on each grey level, log2(17) = 4.09 "
                       "bits per pixel, but you give 0: add D log(levels) for the width 1/levels of each bin."),
                 (-math.log2(levels), "the bin width enters as + D log(levels): P(k) is about p(y) / levels, so "
                                      "-log P(k) = -log p(y) + log(levels)."),
                 (math.log(levels), "that is nats per dimension: divide by log 2 for bits."),
                 (16 * math.log2(levels), "that is bits per image: divide by the D = 16 dimensions.")]
        for value, message in slips:
            if math.isclose(uniform, value, rel_tol=1e-3, abs_tol=1e-6):
                raise AssertionError(f"Exercise 6.3: {message}")
        raise AssertionError(f"Exercise 6.3: under the uniform density every grey level has probability 1/17, "
                             f"so the answer is log2(17) = {math.log2(levels):.4f} bits per dimension; you give "
                             f"{uniform:.4g}.")
    got = call("6.3", fn, _tilted, x, levels, seeded(0))
    want = evaluate.dequantized_bits_per_dim(_tilted, x, levels, seeded(0))
    if not math.isclose(got, want, rel_tol=1e-4):
        k = (x * (levels - 1)).round()
        wrong_noise = -_tilted((k + 0.5) / levels).mean().item() / 16 / math.log(2) + math.log2(levels)
        slips = [(wrong_noise, "you place every pixel at the centre of its bin: dequantise with uniform noise "
                               "drawn from the generator, data.dequantize(x, levels, generator).")]
        raise mismatch("6.3", "bits per dimension", got, want, "for a density that favours bright pixels", slips,
                       hint="y = data.dequantize(x, levels, generator); NLL = -mean log_density(y); "
                            "(NLL + D log(levels)) / (D log 2).")
    passed("bits per dimension of discrete images are right: dequantise, score, add the bin width, convert")


# ----------------------------------------------------------------------------- 6.4 one row of the scorecard

def _tiny_contenders():
    def build():
        gan_model = gan.GAN(gan.GANConfig.fast(hidden=32))
        vae_model = vae.VAE(vae.VAEConfig.fast(decoder="categorical", hidden=16, latent_dim=2, iw_samples=4))
        flow = flows.Flow(flows.FlowConfig.fast(steps=2, hidden=16))
        return gan_model, vae_model, flow
    gan_model, vae_model, flow = fixed(build, 0)
    return {"GAN": evaluate.Contender(gan_model),
            "VAE": evaluate.Contender(vae_model),
            "flow": evaluate.Contender(flow, bits_per_dim=lambda m, x: flows.bits_per_dim(m, x, 17, seeded(0)),
                                       likelihood="bound")}


@graded("gencourse.evaluate.score")
def score_row(fn, test_images: torch.Tensor) -> None:
    """Exercise 6.4: fn(name, contender, test_images, dataset, samples, seed, repeats) -> evaluate.Row."""
    x = test_images[:100]
    for name, contender in _tiny_contenders().items():
        with torch.random.fork_rng():
            torch.manual_seed(5)
            got = call("6.4", fn, name, contender, x, "digits", 200, 0, 1)
        if not isinstance(got, evaluate.Row):
            raise AssertionError(f"Exercise 6.4: return an evaluate.Row(...), got {type(got).__name__}")
        with torch.random.fork_rng():
            torch.manual_seed(5)
            want = evaluate.score(name, contender, x, samples=200, seed=0, repeats=1)
        where = f"for the untrained {name}"
        if got.name != name:
            raise AssertionError(f"Exercise 6.4: the row's name should be {name!r}, got {got.name!r}")
        if got.parameters != want.parameters:
            total = sum(p.numel() for p in contender.model.parameters())
            hint = (" You count every parameter of the model; the scorecard counts those that sampling reads, "
                    "the second number of evaluate.network_passes(model)." if got.parameters == total else "")
            raise AssertionError(f"Exercise 6.4: parameters {where} should be {want.parameters:,}, got "
                                 f"{got.parameters}.{hint}")
        if got.passes != want.passes:
            raise AssertionError(f"Exercise 6.4: passes {where} should be {want.passes}, got {got.passes}: take the "
                                 "first number of evaluate.network_passes(model).")
        if not isinstance(got.frechet, evaluate.Frechet) or not close(got.frechet.distance, want.frechet.distance,
                                                                      rtol=1e-6):
            raise AssertionError(f"Exercise 6.4: the Frechet distance {where} differs from the reference's: draw "
                                 "the samples with evaluate.draw_samples(model, samples, seed) and score them with "
                                 "evaluate.frechet_distance(samples, 'digits').")
        if got.likelihood != want.likelihood:
            raise AssertionError(f"Exercise 6.4: likelihood {where} should be {want.likelihood!r}, got "
                                 f"{got.likelihood!r}: the contender's own kind, or 'n/a' when it has none.")
        if (got.bits_per_dim is None) != (want.bits_per_dim is None) or (
                want.bits_per_dim is not None and not close(got.bits_per_dim, want.bits_per_dim, rtol=0.02)):
            raise AssertionError(f"Exercise 6.4: bits_per_dim {where} should be {want.bits_per_dim}, got "
                                 f"{got.bits_per_dim}: use contender.bits_per_dim(model, images) where it is given, "
                                 "else bits from model.log_prob when the contender has a likelihood, else None.")
        if got.train_seconds != want.train_seconds:
            raise AssertionError(f"Exercise 6.4: train_seconds {where} should come from contender.history "
                                 f"(None without one), got {got.train_seconds}")
        if tuple(got.conditions) != want.conditions:
            raise AssertionError(f"Exercise 6.4: conditions {where} should be {want.conditions}: "
                                 "evaluate.conditions(model).")
        if not isinstance(got.ms, dict) or not got.ms.get("cpu", 0) > 0:
            raise AssertionError(f"Exercise 6.4: ms {where} should be a dict with the milliseconds of drawing "
                                 f"{evaluate.SCORE_BATCH} samples on 'cpu' (and 'cuda' where there is one), got "
                                 f"{got.ms!r}")
    passed("your scorecard rows match the reference's on three families")


# ----------------------------------------------------------------------------- 6.5 a choice under constraints

def _synthetic_card() -> evaluate.Scorecard:
    def row(name, ms, ratio, likelihood):
        return evaluate.Row(name, 1000, 1.0, evaluate.Frechet(ratio, 1.0, 100), None if likelihood == "n/a" else 1.0,
                            likelihood, {"cpu": ms}, 1, ())
    return evaluate.Scorecard([row("ar", 300.0, 1.5, "exact"), row("diffusion", 900.0, 1.2, "n/a"),
                               row("gan", 2.0, 2.5, "n/a"), row("vae", 1.0, 4.0, "bound"),
                               row("flow", 3.0, 3.0, "bound"), row("slow gan", 5.0, 2.5, "n/a")])


SCENARIOS = [  # (max_ms, max_ratio, likelihood, what the scenario teaches)
    (1000.0, 10.0, None, "with room for everything, the best quality wins"),
    (100.0, 10.0, None, "a latency budget rules out the slow samplers"),
    (100.0, 2.8, None, "two GANs tie on quality; the faster of them wins"),
    (1000.0, 10.0, "any", "a use that needs a likelihood rules out the GAN and diffusion here"),
    (100.0, 10.0, "exact", "an exact likelihood within 100 ms: nothing qualifies"),
    (2.5, 3.5, "any", "every constraint at once"),
    (0.5, 10.0, None, "a budget nothing meets: None"),
    (10.0, 10.0, "any", "'any' accepts a bound as well as an exact likelihood"),
    (3.0, 10.0, "any", "a budget is a maximum: a model that takes exactly the budget meets it"),
]


@graded("gencourse.evaluate.choose")
def choose_model(fn) -> None:
    """Exercise 6.5: fn(card, max_ms, max_ratio, likelihood) -> a row's name or None, by the chapter's rules."""
    card = _synthetic_card()
    for max_ms, max_ratio, likelihood, lesson in SCENARIOS:
        got = call("6.5", fn, card, max_ms, max_ratio, likelihood)
        want = evaluate.choose(card, max_ms, max_ratio, likelihood)
        if got != want:
            raise AssertionError(f"Exercise 6.5: with max_ms={max_ms}, max_ratio={max_ratio}, likelihood="
                                 f"{likelihood!r} the choice is {want!r}, you chose {got!r} ({lesson}). The "
                                 "rules: latency on the CPU within max_ms, Frechet ratio within max_ratio, the "
                                 "likelihood the use needs; then the lowest ratio, ties to the faster.")
    passed("your choices follow the chapter's rules in every scenario")
