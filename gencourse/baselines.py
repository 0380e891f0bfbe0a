"""Baselines every family should beat, built in lab 00: a Gaussian mixture for 2-D points and
independent pixels for images.

Both meet the family contract (`gencourse.contract`) with an exact likelihood,
so they train with `train.fit`, sample with `sample(n, generator=...)`, and
give chapters a floor to measure against: a deep model that cannot beat
independent pixels has learned nothing about how pixels go together.
The mixture is fitted by gradient descent on the negative log-likelihood
(rather than EM; Bishop, 2006, ch. 9), like every other model of the course.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import validate
from .contract import sampler
from .data import unpack


class GaussianMixture(nn.Module):
    """p(x) = sum_k pi_k N(x; mu_k, diag(sigma_k^2)) in `dim` dimensions (lab 00)."""

    likelihood = "exact"

    def __init__(self, components: int, dim: int = 2):
        super().__init__()
        validate.positive_int("components", components)
        validate.positive_int("dim", dim)
        self.logits = nn.Parameter(torch.zeros(components))               # pi = softmax(logits)
        self.means = nn.Parameter(2 * torch.randn(components, dim))
        self.log_scales = nn.Parameter(torch.zeros(components, dim))      # sigma = exp(log_scales)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats: (B, dim) -> (B,)."""
        validate.tensor("x", x, dtype="float", shape=(None, self.means.shape[1]))
        z = (x[:, None, :] - self.means) / self.log_scales.exp()          # (B, K, dim)
        log_normal = (-0.5 * z**2 - self.log_scales - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(self.logits.log_softmax(0) + log_normal, dim=1)

    def loss(self, batch) -> dict[str, torch.Tensor]:
        x, _ = unpack(batch)
        nll = -self.log_prob(x).mean()
        return {"loss": nll, "nll": nll}

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points (n, dim): pick a component by its weight, then draw from its Gaussian."""
        where = generator.device if generator is not None else torch.device("cpu")
        k = torch.multinomial(self.logits.softmax(0).to(where), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, device=where)
        k, eps = k.to(self.means.device), eps.to(self.means.device)
        return self.means[k] + self.log_scales[k].exp() * eps


def pixel_probabilities(x: torch.Tensor) -> torch.Tensor:
    """Binary images (N, 1, H, W) -> P(pixel on) (1, H, W), with one pseudo-count for on and one
    for off (Laplace smoothing), so no pixel gets probability 0 or 1 (lab 00)."""
    validate.tensor("x", x, ndim=4, dtype="float", low=0.0, high=1.0)
    return (x.sum(dim=0) + 1) / (len(x) + 2)


def bernoulli_nll(probs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) in nats per image under independent Bernoulli pixels: probs (1, H, W),
    images (N, 1, H, W) -> (N,) (lab 00)."""
    validate.tensor("probs", probs, dtype="float")
    validate.tensor("x", x, dtype="float", shape=(None, *probs.shape))
    logp = x * probs.log() + (1 - x) * (1 - probs).log()
    return -logp.flatten(start_dim=1).sum(dim=1)


class IndependentPixels(nn.Module):
    """Every pixel an independent coin: p(x) = prod_i p_i^x_i (1 - p_i)^(1 - x_i) (lab 00).

    The weakest model of binary images that still has an exact likelihood: it
    knows where ink tends to be, and nothing about which pixels go together.
    `from_data` fits it in closed form (`pixel_probabilities`); `fit` reaches
    the same by gradient descent.
    """

    likelihood = "exact"

    def __init__(self, shape: tuple = (1, 8, 8)):
        super().__init__()
        self.shape = tuple(shape)
        self.logits = nn.Parameter(torch.zeros(self.shape))               # p = sigmoid(logits)

    @classmethod
    def from_data(cls, x: torch.Tensor) -> "IndependentPixels":
        """The maximum a posteriori fit to binary images x (N, *shape), Laplace-smoothed."""
        model = cls(tuple(x.shape[1:]))
        with torch.no_grad():
            model.logits.copy_(torch.logit(pixel_probabilities(x)))
        return model

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats: binary images (N, *shape) -> (N,)."""
        validate.tensor("x", x, dtype="float", shape=(None, *self.shape))
        # bernoulli_nll(sigmoid(logits), x), computed from the logits so that no log(0) can appear
        nll = F.binary_cross_entropy_with_logits(self.logits.expand_as(x), x, reduction="none")
        return -nll.flatten(start_dim=1).sum(dim=1)

    def loss(self, batch) -> dict[str, torch.Tensor]:
        """Nats per pixel (the loss) and nats per image ('nll')."""
        x, _ = unpack(batch)
        nll = -self.log_prob(x).mean()
        return {"loss": nll / math.prod(self.shape), "nll": nll}

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n binary images (n, *shape), each pixel drawn on its own."""
        where = generator.device if generator is not None else torch.device("cpu")
        probs = torch.sigmoid(self.logits).to(where)
        return torch.bernoulli(probs.expand(n, *self.shape), generator=generator).to(self.logits.device)
