"""Checks of lab 00, "The toolkit": the independent-pixel model of binarized digits."""

from __future__ import annotations

import math

import torch

from . import call, expect_tensor, passed


def reference_pixel_probabilities(x: torch.Tensor) -> torch.Tensor:
    """P(pixel = 1) per position, with one pseudo-count for 'on' and one for 'off' (Laplace smoothing)."""
    return (x.sum(dim=0) + 1) / (len(x) + 2)


def reference_bernoulli_nll(probs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) in nats per image under independent Bernoulli pixels."""
    logp = x * probs.log() + (1 - x) * (1 - probs).log()
    return -logp.flatten(start_dim=1).sum(dim=1)


def _binary_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 8, 8, generator=g) < torch.linspace(0.05, 0.9, 64).view(1, 1, 8, 8)).float()


def pixel_probabilities(fn) -> None:
    """Exercise 0.1: per-pixel probabilities with Laplace smoothing."""
    x = _binary_images(40, seed=1)
    x[:, :, 0, 0] = 0  # a pixel that is never on
    x[:, :, 7, 7] = 1  # and one that is always on
    got = expect_tensor("0.1", "pixel_probabilities(x)", call("0.1", fn, x), (1, 8, 8))
    want = reference_pixel_probabilities(x)
    if torch.allclose(got, x.mean(dim=0), atol=1e-6):
        raise AssertionError(
            "Exercise 0.1: you return the plain frequency x.mean(0). A pixel never on in training then gets "
            "probability 0 (see position (0, 0)), and a test digit with that pixel on gets log 0 = -inf. "
            "Add one pseudo-count for 'on' and one for 'off': (count + 1) / (N + 2).")
    if not torch.allclose(got, want, atol=1e-5):
        i = int((got - want).abs().flatten().argmax())
        raise AssertionError(
            f"Exercise 0.1: at pixel (row {i // 8}, column {i % 8}) you give {got.flatten()[i]:.4f}, "
            f"expected {want.flatten()[i]:.4f} = (times on + 1) / (number of images + 2).")
    passed("pixel probabilities are right, smoothing included")


def bernoulli_nll(fn) -> None:
    """Exercise 0.2: negative log-likelihood of images under independent Bernoulli pixels."""
    x = _binary_images(6, seed=2)
    probs = reference_pixel_probabilities(_binary_images(50, seed=3))
    got = expect_tensor("0.2", "bernoulli_nll(probs, x)", call("0.2", fn, probs, x), (6,))
    want = reference_bernoulli_nll(probs, x)
    if torch.allclose(got, -want, rtol=1e-4):
        raise AssertionError("Exercise 0.2: the sign is flipped: return the NEGATIVE log-likelihood, which is >= 0.")
    if torch.allclose(got, want / math.log(2), rtol=1e-4):
        raise AssertionError("Exercise 0.2: these are bits (log base 2); the lab works in nats: use torch.log.")
    if torch.allclose(got, want / 64, rtol=1e-4):
        raise AssertionError("Exercise 0.2: you average over the 64 pixels; sum them: "
                             "independent pixels multiply, so their log-probabilities add.")
    if not torch.allclose(got, want, rtol=1e-4):
        raise AssertionError(
            f"Exercise 0.2: for the first image you give {got[0]:.3f} nats, expected {want[0]:.3f}. "
            "Each pixel contributes x log p + (1 - x) log(1 - p); sum over pixels, negate, one value per image.")
    passed("Bernoulli negative log-likelihood is right")
