"""Checks of lab 00, "The toolkit": the independent-pixel model of binarized digits.

The references are the package's own, gencourse.baselines.pixel_probabilities and bernoulli_nll.
"""

from __future__ import annotations

import math

import torch

from .. import baselines
from . import call, close, expect_tensor, graded, mismatch, passed, seeded


def _binary_images(n: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, 1, 8, 8, generator=seeded(seed)) < torch.linspace(0.05, 0.9, 64).view(1, 1, 8, 8)).float()


@graded("gencourse.baselines.pixel_probabilities")
def pixel_probabilities(fn) -> None:
    """Exercise 0.1: per-pixel probabilities with Laplace smoothing."""
    x = _binary_images(40, seed=1)
    x[:, :, 0, 0] = 0  # a pixel that is never on
    x[:, :, 7, 7] = 1  # and one that is always on
    got = expect_tensor("0.1", "pixel_probabilities(x)", call("0.1", fn, x), (1, 8, 8))
    want = baselines.pixel_probabilities(x)
    if not close(got, want):
        raise mismatch("0.1", "P(pixel on)", got[0], want[0], dims=("row", "column"), slips=[
            (x.mean(dim=0)[0],
             "you return the plain frequency x.mean(0). A pixel never on in training then gets probability 0 "
             "(see position (0, 0)), and a test digit with that pixel on gets log 0 = -inf. Add one pseudo-count "
             "for 'on' and one for 'off': (count + 1) / (N + 2)."),
        ], hint="Each pixel's probability is (times on + 1) / (number of images + 2).")
    passed("pixel probabilities are right, smoothing included")


@graded("gencourse.baselines.bernoulli_nll")
def bernoulli_nll(fn) -> None:
    """Exercise 0.2: negative log-likelihood of images under independent Bernoulli pixels."""
    x = _binary_images(6, seed=2)
    probs = baselines.pixel_probabilities(_binary_images(50, seed=3))
    got = expect_tensor("0.2", "bernoulli_nll(probs, x)", call("0.2", fn, probs, x), (6,))
    want = baselines.bernoulli_nll(probs, x)
    if not close(got, want):
        raise mismatch("0.2", "the negative log-likelihood in nats", got, want, dims=("image",), slips=[
            (-want, "the sign is flipped: return the NEGATIVE log-likelihood, which is >= 0."),
            (want / math.log(2), "these are bits (log base 2); the lab works in nats: use torch.log."),
            (want / 64, "you average over the 64 pixels; sum them: independent pixels multiply, so their "
                        "log-probabilities add."),
        ], hint="Each pixel contributes x log p + (1 - x) log(1 - p); sum over pixels, negate, one value per image.")
    passed("Bernoulli negative log-likelihood is right")
