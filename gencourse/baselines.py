"""Baselines every family should beat, built in lab 00: a Gaussian mixture for 2-D points,
independent pixels for images, and a mixture of independent-pixel models fitted by EM.

Both meet the family contract (`gencourse.contract`) with an exact likelihood,
so they train with `train.fit`, sample with `sample(n, generator=...)`, and
give chapters a floor to measure against: a deep model that cannot beat
independent pixels has learned nothing about how pixels go together.
The Gaussian mixture is fitted by gradient descent on the negative log-likelihood,
like every other model of the course; the mixture of independent pixels is
fitted by expectation-maximisation (Dempster et al., 1977; Bishop, 2006,
section 9.3.3), whose closed-form steps show what a latent variable buys.
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


# ----------------------------------------------------------------------------- a mixture of independent pixels

def _mixture_args(log_weights: torch.Tensor, probs: torch.Tensor, x: torch.Tensor) -> None:
    validate.tensor("log_weights", log_weights, ndim=1, dtype="float")
    validate.tensor("probs", probs, dtype="float", low=0.0, high=1.0)
    if probs.dim() < 2 or len(probs) != len(log_weights):
        raise ValueError(f"probs must have shape (K, C, H, W) with K = len(log_weights) = {len(log_weights)}, "
                         f"got {tuple(probs.shape)}")
    validate.tensor("x", x, dtype="float", shape=(None, *probs.shape[1:]), low=0.0, high=1.0)


def component_log_likelihoods(probs: torch.Tensor, x: torch.Tensor,
                              observed: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x | k) in nats for every image and component: probs (K, C, H, W), images
    (N, C, H, W) -> (N, K). With a boolean mask `observed` (C, H, W), only the pixels it marks
    count: the others are summed out. Pixels whose probability is exactly 0 or 1 give -inf where
    they disagree."""
    on, off = probs.log().flatten(1), torch.log1p(-probs).flatten(1)            # (K, D) each
    if observed is not None:
        seen = observed.flatten()                                               # where, not *: 0 * -inf is nan
        on, off = on.where(seen, 0.0), off.where(seen, 0.0)
    flat = x.flatten(1)                                                         # (N, D)
    return flat @ on.T + (1 - flat) @ off.T


def mixture_nll(log_weights: torch.Tensor, probs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) in nats per image under a mixture of independent-pixel models,
    p(x) = sum_k pi_k prod_i p_ki^x_i (1 - p_ki)^(1 - x_i): log_weights (K,) = log pi_k,
    probs (K, C, H, W), images (N, C, H, W) -> (N,) (lab 00)."""
    _mixture_args(log_weights, probs, x)
    return -torch.logsumexp(log_weights + component_log_likelihoods(probs, x), dim=1)


def responsibilities(log_weights: torch.Tensor, probs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The posterior p(k | x) of each component for each image, (N, K): the E-step of EM."""
    _mixture_args(log_weights, probs, x)
    return (log_weights + component_log_likelihoods(probs, x)).softmax(dim=1)


def em_step(x: torch.Tensor, log_weights: torch.Tensor, probs: torch.Tensor):
    """One step of expectation-maximisation for a mixture of independent pixels (lab 00).

    E-step: r_nk = p(k | x_n). M-step, with one pseudo-count per outcome as in
    `pixel_probabilities`: pi_k = (sum_n r_nk + 1) / (N + K) and
    p_ki = (sum_n r_nk x_ni + 1) / (sum_n r_nk + 2). Returns (log_weights, probs), shapes unchanged.
    """
    r = responsibilities(log_weights, probs, x)                                 # (N, K)
    counts = r.sum(dim=0)                                                       # (K,)
    weights = (counts + 1) / (len(x) + len(counts))
    on = r.T @ x.flatten(1)                                                     # (K, D)
    new_probs = (on + 1) / (counts[:, None] + 2)
    return weights.log(), new_probs.view_as(probs)


class BernoulliMixture(nn.Module):
    """p(x) = sum_k pi_k prod_i p_ki^x_i (1 - p_ki)^(1 - x_i): K independent-pixel models, one
    chosen per image (lab 00). A latent variable, the component k, makes the pixels depend on
    each other: seeing some pixels says which component drew the image, and so where the others are.

    Its state is two buffers, `log_weights` (K,) and `probs` (K, *shape), set by `em_step`
    rather than by gradient descent: `fit` does not train it.
    """

    likelihood = "exact"

    def __init__(self, components: int, shape: tuple = (1, 8, 8), generator: torch.Generator | None = None):
        super().__init__()
        validate.positive_int("components", components)
        self.register_buffer("log_weights", torch.full((components,), -math.log(components)))
        # away from 0 and 1, and different per component: identical components would stay identical under EM
        self.register_buffer("probs", 0.25 + 0.5 * torch.rand(components, *shape, generator=generator))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats: binary images (N, *shape) -> (N,)."""
        return -mixture_nll(self.log_weights, self.probs, x)

    def loss(self, batch) -> dict[str, torch.Tensor]:
        x, _ = unpack(batch)
        nll = -self.log_prob(x).mean()
        return {"loss": nll, "nll": nll}

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n binary images: for each, draw a component k by its weight, then every pixel from p_k."""
        where = generator.device if generator is not None else torch.device("cpu")
        k = torch.multinomial(self.log_weights.exp().to(where), n, replacement=True, generator=generator)
        images = torch.bernoulli(self.probs.to(where)[k], generator=generator)
        return images.to(self.probs.device)


def complete(log_weights: torch.Tensor, probs: torch.Tensor, x: torch.Tensor, observed: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill in the unobserved pixels of binary images from a mixture of independent pixels (lab 00).

    observed: a boolean mask (C, H, W), True where x is seen. Each image's component is drawn
    from its posterior given the observed pixels only, p(k | x_obs) (a pixel that is not observed
    is summed out, which removes its factor); the missing pixels are then drawn from that
    component. Observed pixels are returned unchanged. -> (N, C, H, W).
    """
    _mixture_args(log_weights, probs, x)
    validate.tensor("observed", observed, shape=tuple(probs.shape[1:]))
    if observed.dtype != torch.bool:
        raise TypeError(f"observed must be a boolean mask (True where a pixel is seen), got {observed.dtype}")
    posterior = log_weights + component_log_likelihoods(probs, x, observed)   # (N, K), up to a constant
    where = generator.device if generator is not None else torch.device("cpu")
    k = torch.multinomial(posterior.softmax(dim=1).to(where), 1, generator=generator)[:, 0]
    drawn = torch.bernoulli(probs.to(where)[k], generator=generator).to(x.device)
    return torch.where(observed, x, drawn)
