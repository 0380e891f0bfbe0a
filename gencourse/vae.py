"""Variational autoencoders: an encoder q(z|x), a decoder p(x|z), the ELBO; VQ-VAE; latent models.

Introduced in chapter 4 and lab 04. The papers it follows:
- Kingma & Welling (2014), "Auto-Encoding Variational Bayes", and Rezende,
  Mohamed & Wierstra (2014): the evidence lower bound (ELBO), the
  reparameterisation trick, the Gaussian KL in closed form.
- Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders":
  the K-sample bound, tighter as K grows; here it is `log_prob`.
- Higgins et al. (2017), beta-VAE: the weight beta on the KL term.
- van den Oord, Vinyals & Kavukcuoglu (2017), VQ-VAE: a codebook, the
  straight-through gradient and the commitment loss; a prior over the codes
  learnt afterwards by an autoregressive model (here chapter 1's GPT, the
  first DALL-E's recipe in miniature: Ramesh et al., 2021).
- Rombach et al. (2022), latent diffusion: chapter 2's diffusion model trained
  on the latents of a frozen autoencoder, then decoded.

Read top to bottom: the config, the pieces lab 04 asks you to write
(`reparameterize`, `gaussian_kl`, `negative_elbo`, `iw_bound`,
`vector_quantize`), the networks (MLP and convolutional), the `VAE` (which
meets the family contract, `gencourse.contract`), the `VQVAE`, and the two
two-stage models built on a frozen autoencoder: `CodePrior` and
`LatentDiffusion`. Notation: x the data, z the latent, mu and logvar the
encoder's Gaussian (log-variance, so that any real number is allowed),
K the number of importance samples, beta the weight of the KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import autoregressive as ar
from . import diffusion, train, validate
from . import nn as gnn
from .contract import evaluating, sampler
from .data import unpack
from .diffusion import draw_normal

NETWORKS = ("mlp", "conv")
DECODERS = ("bernoulli", "gaussian", "categorical")
LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- config

@dataclass
class VAEConfig:
    shape: tuple = (1, 8, 8)         # one example: (C, H, W) images in [0, 1], or (D,) vectors
    latent_dim: int = 16             # size of z
    network: str = "mlp"             # 'mlp' (any shape) or 'conv' (square images whose side divides by 4)
    hidden: int = 256                # MLP width
    depth: int = 2                   # MLP hidden layers (encoder and decoder each)
    base: int = 32                   # conv channels at full resolution (twice that at half)
    decoder: str = "bernoulli"       # p(x|z): 'bernoulli' (pixels in [0, 1]), 'gaussian' (learnt scale per dim)
                                     # or 'categorical' (each pixel one of `levels` grey values)
    levels: int = 17                 # grey values k / (levels - 1) of the categorical decoder (17: 8x8 digits)
    beta: float = 1.0                # weight of the KL term (1: the ELBO; other values: beta-VAE)
    iw_samples: int = 500            # K of the importance-weighted bound that log_prob computes

    def __post_init__(self):
        validate.choice("config.network", self.network, NETWORKS)
        validate.choice("config.decoder", self.decoder, DECODERS)
        for name in ("latent_dim", "hidden", "depth", "base", "iw_samples", "levels"):
            validate.positive_int(f"config.{name}", getattr(self, name))
        if self.levels < 2:
            raise ValueError(f"config.levels must be at least 2 grey values, got {self.levels}")
        if not self.beta >= 0:
            raise ValueError(f"config.beta must be >= 0 (1 is the ELBO), got {self.beta}")
        _check_conv_shape(self.network, self.shape)

    @classmethod
    def fast(cls, **changes) -> "VAEConfig":
        """8x8 digits: MLPs and a 16-dimensional latent; a few seconds on a laptop CPU (lab 04)."""
        return cls(**changes)

    @classmethod
    def full(cls, **changes) -> "VAEConfig":
        """28x28 MNIST with convolutional networks and a 32-dimensional latent, for a GPU (lab 04)."""
        return cls(**{**dict(shape=(1, 28, 28), latent_dim=32, network="conv", base=32), **changes})

    @property
    def outputs_per_dim(self) -> int:
        """Numbers the decoder gives per data dimension: a logit per grey value (categorical), else one."""
        return self.levels if self.decoder == "categorical" else 1


@dataclass
class VQVAEConfig:
    shape: tuple = (1, 8, 8)         # square images (C, S, S) in [0, 1]
    codes: int = 32                  # codebook size: the tokens' vocabulary
    code_dim: int = 8                # size of each codebook vector
    downsample: int = 1              # halvings of the side: 8 -> a 4x4 grid of codes; 28 (2) -> 7x7
    base: int = 32                   # conv channels
    commitment: float = 0.25         # weight of ||z_e - sg[z_q]||^2 (van den Oord et al. use 0.25)

    def __post_init__(self):
        for name in ("codes", "code_dim", "downsample", "base"):
            validate.positive_int(f"config.{name}", getattr(self, name))
        shape = tuple(self.shape)
        side = shape[-1] if len(shape) == 3 else 0
        if len(shape) != 3 or shape[1] != side or side % 2 ** self.downsample:
            raise ValueError(f"config.shape must be square images (C, S, S) whose side divides by "
                             f"2**downsample = {2 ** self.downsample}, got {shape}")
        if not self.commitment >= 0:
            raise ValueError(f"config.commitment must be >= 0, got {self.commitment}")

    @property
    def grid(self) -> int:
        """The side of the grid of codes: one token per cell."""
        return self.shape[-1] // 2 ** self.downsample

    @classmethod
    def fast(cls, **changes) -> "VQVAEConfig":
        """8x8 digits -> a 4x4 grid of 32 possible codes (16 tokens per image) (lab 04)."""
        return cls(**changes)

    @classmethod
    def full(cls, **changes) -> "VQVAEConfig":
        """28x28 MNIST -> a 7x7 grid of 128 codes, for a GPU (lab 04)."""
        return cls(**{**dict(shape=(1, 28, 28), codes=128, code_dim=32, downsample=2, base=64), **changes})


def _check_conv_shape(network: str, shape) -> None:
    shape = tuple(shape)
    if network == "conv" and (len(shape) != 3 or shape[1] != shape[2] or shape[1] % 4):
        raise ValueError(f"config.shape must be square images whose side divides by 4 for the conv "
                         f"networks (e.g. (1, 8, 8) or (1, 28, 28)), got {shape}")


# ----------------------------------------------------------------------------- the pieces (lab 04)

def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2) and eps ~ N(0, I) drawn by the caller (lab 04).

    A sample of N(mu, sigma^2) written as a differentiable function of mu and
    logvar: the randomness sits in eps, so gradients reach the encoder.
    """
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) per example, in nats: (B, D) -> (B,) (lab 04).

    In closed form: 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).
    """
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=1)


def normal_log_prob(z: torch.Tensor, mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dimension; N(0, I) when mu is None (chapter 4)."""
    if mu is None:
        return -0.5 * (z.square() + LOG_2PI).sum(dim=-1)
    if logvar is None:
        raise ValueError("normal_log_prob needs both mu and logvar (or neither, for the standard normal)")
    return -0.5 * ((z - mu).square() / logvar.exp() + logvar + LOG_2PI).sum(dim=-1)


def decoder_log_likelihood(kind: str, x: torch.Tensor, out: torch.Tensor, log_scale: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """log p(x|z) per example (B,), summed over the data's dimensions, from the decoder's output `out`
    at z (chapter 4): logits for kind 'bernoulli', means for 'gaussian' (with log sigma `log_scale`),
    logits (B, *shape, levels) for 'categorical'.

    Bernoulli: x log p + (1 - x) log(1 - p) with p = sigmoid(logits) (grey
    pixels in [0, 1] are accepted as soft targets); Gaussian: log N(x; mean, sigma^2);
    categorical: log softmax(logits)[k] for the grey level k = x (levels - 1) (chapter 6).
    """
    validate.choice("kind", kind, DECODERS)
    if kind == "bernoulli":
        ll = -F.binary_cross_entropy_with_logits(out, x, reduction="none")
    elif kind == "categorical":
        ll = -F.cross_entropy(out.movedim(-1, 1), grey_levels(x, out.shape[-1]), reduction="none")
    else:
        ll = -0.5 * ((x - out).square() * torch.exp(-2 * log_scale) + 2 * log_scale + LOG_2PI)
    return ll.flatten(1).sum(dim=1)


def grey_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Pixels x in [0, 1] that take the values k / (levels - 1) -> the integers k (chapter 6). Anything
    between two levels is an error, never rounded silently: it means the data has another number of levels."""
    k = x * (levels - 1)
    if (k - k.round()).abs().max() > 1e-4:
        raise ValueError(f"a categorical decoder over {levels} grey levels needs pixels k / {levels - 1}; "
                         "these lie between levels (binarized or dequantised data? set config.levels)")
    return k.round().long()


def negative_elbo(model: "VAE", x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """The loss a VAE trains with, averaged over the batch (lab 04).

    Encode x to (mu, logvar), draw one z by the reparameterisation trick,
    score x under the decoder: recon = -log p(x|z) (nats per example), and
    kl = KL(q(z|x) || p(z)). loss = recon + beta * kl; with beta = 1 its
    negative is the ELBO, a lower bound on log p(x). Returns
    {"loss", "recon", "kl", "nll"}: "nll" is recon + kl, the negative ELBO
    whatever beta is (nats per example).
    """
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, torch.randn_like(mu))
    recon = -model.log_likelihood(x, z).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "nll": recon + kl}


def log_weights(model: "VAE", x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k|x) for K samples z_k = mu + sigma * eps_k per example: (K, B) (chapter 4).

    eps (K, B, latent_dim) ~ N(0, I), drawn by the caller.
    """
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, eps)                                          # (K, B, D)
    k = len(eps)
    log_px_z = model.log_likelihood(x.unsqueeze(0).expand(k, *x.shape).flatten(0, 1), z.flatten(0, 1))
    return log_px_z.view(k, len(x)) + normal_log_prob(z) - normal_log_prob(z, mu, logvar)


def iw_bound(model: "VAE", x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound (Burda et al., 2016) per example, in nats: (B,) (lab 04).

    With K = len(eps) samples z_k = mu + sigma * eps_k of q(z|x) (eps: (K, B, latent_dim)),
    log (1/K) sum_k p(x, z_k) / q(z_k|x), computed stably as the logsumexp
    over k of the log-weights minus log K. K = 1 is the ELBO; it rises
    towards log p(x) as K grows.
    """
    return torch.logsumexp(log_weights(model, x, eps), dim=0) - math.log(len(eps))


def vector_quantize(z_e: torch.Tensor, codebook: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace each vector by its nearest codebook entry (van den Oord et al., 2017) (lab 04).

    z_e (N, D) encoder outputs, codebook (K, D). Returns
    - z_q (N, D): the nearest entries, passed on with the straight-through
      gradient: forward it is the code, backward the gradient goes to z_e as if
      quantisation were the identity, z_e + (z_q - z_e) with the bracket detached;
    - indices (N,): which entry each vector chose;
    - codebook_loss: mean ||sg[z_e] - e||^2, which moves the entries to the encoder;
    - commitment_loss: mean ||z_e - sg[e]||^2, which keeps the encoder near its codes.
    """
    distances = torch.cdist(z_e, codebook)                              # (N, K)
    indices = distances.argmin(dim=1)
    e = codebook[indices]
    codebook_loss = F.mse_loss(e, z_e.detach())
    commitment_loss = F.mse_loss(z_e, e.detach())
    return z_e + (e - z_e).detach(), indices, codebook_loss, commitment_loss


# ----------------------------------------------------------------------------- the networks

class GaussianEncoder(nn.Module):
    """x -> self.net(x) (B, 2 latent_dim), read as (mu, logvar), each (B, latent_dim) (chapter 4)."""

    net: nn.Module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu, logvar


class MLPEncoder(GaussianEncoder):
    """x (B, *shape) -> flattened -> an MLP -> (mu, logvar) (chapter 4)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), gnn.MLP(math.prod(config.shape), config.hidden,
                                                       2 * config.latent_dim, config.depth))


class MLPDecoder(nn.Module):
    """z (B, latent_dim) -> the decoder's parameters (B, *shape): logits or means (chapter 4), or
    (B, *shape, levels) logits for the categorical decoder."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.shape, self.per_dim = tuple(config.shape), config.outputs_per_dim
        self.net = gnn.MLP(config.latent_dim, config.hidden, math.prod(self.shape) * self.per_dim, config.depth)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _per_dim(self.net(z).view(len(z), *self.shape, self.per_dim), self.per_dim)


class ConvEncoder(GaussianEncoder):
    """x (C, S, S) -> two strided convolutions -> (mu, logvar) (chapter 4)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        c, side, _ = config.shape
        b = config.base
        self.net = nn.Sequential(
            nn.Conv2d(c, b, 4, stride=2, padding=1), nn.SiLU(),              # (b, S/2, S/2)
            nn.Conv2d(b, 2 * b, 4, stride=2, padding=1), nn.SiLU(),          # (2b, S/4, S/4)
            nn.Flatten(), nn.Linear(2 * b * (side // 4) ** 2, 2 * config.latent_dim))


class ConvDecoder(nn.Module):
    """z -> (2b, S/4, S/4) -> two transposed convolutions -> (C, S, S) parameters (chapter 4)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        c, side, _ = config.shape
        b, self.per_dim = config.base, config.outputs_per_dim
        self.start, self.width = side // 4, 2 * b
        self.project = nn.Sequential(nn.Linear(config.latent_dim, 2 * b * self.start ** 2), nn.SiLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * b, b, 4, stride=2, padding=1), nn.SiLU(),  # (b, S/2, S/2)
            nn.ConvTranspose2d(b, c * self.per_dim, 4, stride=2, padding=1))  # (C [x levels], S, S)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(self.project(z).view(len(z), self.width, self.start, self.start))
        return _per_dim(out.unflatten(1, (-1, self.per_dim)).movedim(2, -1), self.per_dim)


def _per_dim(out: torch.Tensor, per_dim: int) -> torch.Tensor:
    """(B, *shape, per_dim) -> (B, *shape) when the decoder gives one number per dimension."""
    return out.squeeze(-1) if per_dim == 1 else out


def make_networks(config: VAEConfig) -> tuple[nn.Module, nn.Module]:
    """The encoder and decoder a config asks for (chapter 4)."""
    if config.network == "mlp":
        return MLPEncoder(config), MLPDecoder(config)
    return ConvEncoder(config), ConvDecoder(config)


# ----------------------------------------------------------------------------- the VAE

class VAE(nn.Module):
    """A Gaussian encoder q(z|x), a standard normal prior p(z) and a decoder p(x|z) (chapter 4, lab 04).

    loss(batch) -> {"loss", "recon", "kl", "nll"} from `self.objective`
    (`negative_elbo` unless lab 04 plugs in yours); likelihood = "bound":
    `log_prob(x)` is the importance-weighted bound with config.iw_samples
    samples. sample(n) decodes z ~ N(0, I) to the decoder's mean, which for
    images is the usual picture of a VAE sample (drawing every pixel from
    its Bernoulli adds salt-and-pepper noise).
    """

    likelihood = "bound"

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = validate.instance("config", config, VAEConfig)
        self.shape = tuple(config.shape)
        self.encoder, self.decoder = make_networks(config)
        # log sigma per data dimension of the Gaussian decoder (learnt); unused by the Bernoulli one
        self.log_scale = nn.Parameter(torch.full(self.shape, -1.0)) if config.decoder == "gaussian" else None
        self.objective = negative_elbo

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _x(self, x: torch.Tensor) -> torch.Tensor:
        return validate.tensor("x", x, dtype="float", shape=(None, *self.shape))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x): (mu, logvar), each (B, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean for latents z (B, latent_dim): (B, *shape), by `decoder_mean`."""
        return decoder_mean(self.config, self.decoder(z))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example, summed over the data's dimensions: (B,) (chapter 4); the formulas
        are `decoder_log_likelihood`'s, which the Keras VAE shares."""
        return decoder_log_likelihood(self.config.decoder, x, self.decoder(z), self.log_scale)

    def loss(self, batch) -> dict[str, torch.Tensor]:
        x, _ = unpack(batch)
        return self.objective(self, self._x(x), self.config.beta)

    def log_prob(self, x: torch.Tensor, k: int | None = None, generator: torch.Generator | None = None,
                 chunk: int = 64) -> torch.Tensor:
        """A lower bound on log p(x) per example (B,), in nats, by `iw_log_prob` (chapter 4)."""
        return iw_log_prob(self, self._x(x), k, generator, chunk)

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I): (n, latent_dim) on the model's device."""
        validate.positive_int("n", n)
        return draw_normal((n, self.config.latent_dim), generator).to(self.device)

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples (n, *shape): the decoder's mean at z ~ N(0, I) (chapter 4)."""
        return self.decode(self.latent(n, generator))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's mean at the encoder's mean: what the autoencoder keeps of x (chapter 4)."""
        with evaluating(self):
            return self.decode(self.encode(self._x(x).to(self.device))[0])


def decoder_mean(config: VAEConfig, out: torch.Tensor) -> torch.Tensor:
    """The mean of p(x|z) from the decoder's output: sigmoid of the logits (Bernoulli), the expected grey
    value sum_k softmax(logits)_k k / (levels - 1) (categorical) or the output itself (Gaussian); images
    are kept in [0, 1], which a Gaussian mean can stray a little outside."""
    if config.decoder == "bernoulli":
        return torch.sigmoid(out)
    if config.decoder == "categorical":
        values = torch.linspace(0, 1, config.levels, device=out.device, dtype=out.dtype)
        return torch.softmax(out, dim=-1) @ values
    return out.clamp(0, 1) if len(config.shape) == 3 else out


@torch.no_grad()
def iw_log_prob(model, x: torch.Tensor, k: int | None = None, generator: torch.Generator | None = None,
                chunk: int = 64) -> torch.Tensor:
    """The K-sample importance-weighted bound per example (B,), K = model.config.iw_samples unless given,
    `chunk` examples at a time to bound the memory; the noise is drawn from `generator` (chapter 4).
    For evaluation, without gradients (K decoder passes per example); train on `iw_bound` itself."""
    k = validate.positive_int("k", k if k is not None else model.config.iw_samples)
    d = model.config.latent_dim
    return torch.cat([iw_bound(model, part, draw_normal((k, len(part), d), generator).to(part))
                      for part in x.split(chunk)])


def latent_grid(steps: int = 15, quantile: float = 0.95) -> torch.Tensor:
    """A steps x steps grid of 2-D latents (steps**2, 2), evenly spaced in probability under N(0, I)
    (through the Gaussian's inverse CDF, as in Kingma & Welling's figure), row by row with z_2
    falling down the rows: decoded, it shows what each region of a 2-D latent space means (chapter 4)."""
    validate.positive_int("steps", steps)
    if not 0.5 < quantile < 1:
        raise ValueError(f"quantile must lie in (0.5, 1), got {quantile}")
    p = torch.linspace(1 - quantile, quantile, steps)
    values = torch.distributions.Normal(0.0, 1.0).icdf(p)
    z1, z2 = torch.meshgrid(values, values.flip(0), indexing="xy")
    return torch.stack([z1.flatten(), z2.flatten()], dim=1)


def rate_distortion(model: VAE, x: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """(rate, distortion) of a VAE on data x, in nats per example: the mean KL(q(z|x) || p(z)) and the
    mean -log p(x|z) at one z ~ q(z|x) (chapter 4). Their sum is the negative ELBO; beta trades them."""
    with evaluating(model), torch.random.fork_rng():
        torch.manual_seed(seed)
        out = negative_elbo(model, model._x(x).to(model.device))
    return float(out["kl"]), float(out["recon"])


# ----------------------------------------------------------------------------- VQ-VAE

class VQVAE(nn.Module):
    """A convolutional autoencoder whose latent is a grid of codebook entries (chapter 4, lab 04).

    loss(batch) -> {"loss", "recon", "codebook", "commitment", "perplexity"}:
    recon is the Bernoulli -log p(x|z_q) in nats per image, perplexity
    exp(entropy) of the codes used in the batch (how many codes are in real
    use). Its own prior is uniform over the codes, so `sample` decodes random
    codes, which look like noise: a prior over its codes is learnt afterwards
    (`CodePrior`). likelihood is None.
    """

    likelihood = None

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = validate.instance("config", config, VQVAEConfig)
        self.shape = tuple(config.shape)
        c, b, d = config.shape[0], config.base, config.code_dim
        down: list[nn.Module] = [nn.Conv2d(c, b, 3, padding=1), nn.SiLU()]
        up: list[nn.Module] = [nn.Conv2d(d, b, 3, padding=1), nn.SiLU()]
        for _ in range(config.downsample):
            down += [nn.Conv2d(b, b, 4, stride=2, padding=1), nn.SiLU()]
            up += [nn.ConvTranspose2d(b, b, 4, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*down, nn.Conv2d(b, d, 1))
        self.decoder = nn.Sequential(*up, nn.Conv2d(b, c, 3, padding=1))
        self.codebook = nn.Parameter(torch.empty(config.codes, d).uniform_(-1 / config.codes, 1 / config.codes))
        # how often each code was chosen lately (a moving average of its share of the batch): codes
        # that fall out of use are moved to where the encoder's outputs are (Dhariwal et al., 2020)
        self.register_buffer("usage", torch.full((config.codes,), 1.0 / config.codes))
        self.quantize = vector_quantize

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _x(self, x: torch.Tensor) -> torch.Tensor:
        return validate.tensor("x", x, dtype="float", shape=(None, *self.shape))

    def _quantize(self, x: torch.Tensor):
        z_e = self.encoder(x)                                               # (B, D, G, G)
        flat = z_e.permute(0, 2, 3, 1).flatten(0, 2)                        # (B G G, D)
        z_q, idx, codebook_loss, commitment_loss = self.quantize(flat, self.codebook)
        if self.training and torch.is_grad_enabled():
            self._restart_dead_codes(flat.detach(), idx)
        g = self.config.grid
        z_q = z_q.view(len(x), g, g, -1).permute(0, 3, 1, 2)
        return z_q, idx.view(len(x), g, g), codebook_loss, commitment_loss

    @torch.no_grad()
    def _restart_dead_codes(self, vectors: torch.Tensor, idx: torch.Tensor, decay: float = 0.99) -> None:
        """Update the moving usage; a code whose share fell below 3% of a fair share (1/codes) is
        moved onto a random encoder output of this batch. Without this, most codes of a codebook
        initialised away from the data are never chosen and never move (codebook collapse)."""
        share = torch.bincount(idx, minlength=self.config.codes).float() / len(idx)
        self.usage.mul_(decay).add_((1 - decay) * share)
        dead = self.usage < 0.03 / self.config.codes
        if dead.any():
            n = int(dead.sum())
            pick = (torch.randperm(len(vectors), device=vectors.device)[:n] if n <= len(vectors)
                    else torch.randint(len(vectors), (n,), device=vectors.device))   # distinct where possible
            self.codebook[dead] = vectors[pick]
            self.usage[dead] = 1.0 / self.config.codes

    def loss(self, batch) -> dict[str, torch.Tensor]:
        x, _ = unpack(batch)
        x = self._x(x)
        z_q, idx, codebook_loss, commitment_loss = self._quantize(x)
        recon = F.binary_cross_entropy_with_logits(self.decoder(z_q), x, reduction="none").flatten(1).sum(1).mean()
        counts = torch.bincount(idx.flatten(), minlength=self.config.codes).float()
        p = counts / counts.sum()
        perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
        loss = recon + codebook_loss + self.config.commitment * commitment_loss
        return {"loss": loss, "recon": recon, "codebook": codebook_loss, "commitment": commitment_loss,
                "perplexity": perplexity.detach()}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, *shape) -> their codes (B, grid, grid), long (chapter 4)."""
        with evaluating(self):
            return self._quantize(self._x(x).to(self.device))[1]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, grid, grid) -> images (B, *shape) in [0, 1]: the decoder's mean (chapter 4)."""
        g = self.config.grid
        validate.tensor("codes", codes, dtype="int", shape=(None, g, g), low=0, high=self.config.codes - 1)
        with evaluating(self):
            z_q = self.codebook[codes.to(self.device)].permute(0, 3, 1, 2)
            return torch.sigmoid(self.decoder(z_q))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)): what survives the trip through the codebook."""
        return self.decode(self.encode(x))

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from codes drawn uniformly at random: the prior that VQ-VAE's training
        assumes (its KL term is then the constant log(codes)). They do not look like data: the codes
        of real images are far from independent, which is why a prior is learnt afterwards (`CodePrior`)."""
        g = self.config.grid
        where = generator.device if generator is not None else torch.device("cpu")
        codes = torch.randint(self.config.codes, (n, g, g), generator=generator, device=where)
        return self.decode(codes)


def codebook_usage(codes: torch.Tensor, size: int) -> torch.Tensor:
    """How often each of `size` codes occurs in `codes` (any shape): (size,) counts (chapter 4)."""
    validate.tensor("codes", codes, dtype="int", low=0, high=size - 1)
    return torch.bincount(codes.flatten().cpu(), minlength=size)


# ----------------------------------------------------------------------------- two-stage models

def freeze(module: nn.Module) -> nn.Module:
    """Stop a trained module's parameters from learning (a second stage trains on top of it)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class CodePrior(nn.Module):
    """A GPT over a frozen VQ-VAE's grid of codes in raster order, decoded to images (chapter 4, lab 04).

    The first DALL-E's recipe in miniature (Ramesh et al., 2021; there with a
    text prefix): stage one learns the codes (`VQVAE`), stage two learns
    their distribution with chapter 1's `ImageAR`, whose "pixels" here take
    `codes` values. It trains on the codes of the training images, made once
    by `vqvae.encode`: loss(batch of codes) -> the prior's nats per code
    ("loss") and per grid ("nll", of the codes, not of the pixels).
    """

    likelihood = None   # exact over codes, but a deterministic decoder defines no likelihood of images

    def __init__(self, vqvae: VQVAE, prior: ar.ImageARConfig | None = None):
        super().__init__()
        validate.instance("vqvae", vqvae, VQVAE)
        self.vqvae = freeze(vqvae)
        vq = vqvae.config
        config = prior or ar.ImageARConfig(n_layer=2, n_head=4, n_embd=64, dropout=0.1)
        self.prior = ar.ImageAR(ar.ImageARConfig(**{**vars(config), "side": vq.grid, "levels": vq.codes}))
        self.config = self.prior.config

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, G, G) -> the prior's input (B, 1, G, G): an 'image' whose levels are the codes."""
        return (codes.float() / (self.vqvae.config.codes - 1)).unsqueeze(1)

    def loss(self, batch) -> dict[str, torch.Tensor]:
        """batch: codes (B, G, G) of training images, made once by `vqvae.encode(images)`."""
        codes, _ = unpack(batch)
        g = self.vqvae.config.grid
        if isinstance(codes, torch.Tensor) and codes.is_floating_point():
            raise TypeError("CodePrior trains on codes, not images: encode the images once with "
                            "vqvae.encode(images) and train on those")
        validate.tensor("codes", codes, dtype="int", shape=(None, g, g), low=0, high=self.vqvae.config.codes - 1)
        return self.prior.loss(self.codes_to_tokens(codes))

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
               ) -> torch.Tensor:
        """n images: a grid of codes drawn token by token from the prior, then decoded (chapter 4)."""
        grid = self.prior.sample(n, generator=generator, temperature=temperature)     # (n, 1, G, G) in [0, 1]
        codes = (grid.squeeze(1) * (self.vqvae.config.codes - 1)).round().long()
        return self.vqvae.decode(codes)


class LatentDiffusion(nn.Module):
    """Chapter 2's diffusion model trained on a frozen VAE's latents, then decoded (chapter 4, lab 04).

    Rombach et al.'s latent diffusion in miniature: an image x becomes the
    encoder's mean mu(x), divided by `scale` (the latents' standard deviation
    on the training data, so that the diffusion sees unit-variance data as in
    pixel space); `diffusion.DiffusionModel` learns those vectors; a sample
    is a diffusion sample, times scale, through the decoder's mean. The
    denoiser works on latent_dim numbers instead of the image's pixels.
    `denoiser`: a `DiffusionConfig` (a new model, trained by `train.fit` on
    images through `loss`) or a `DiffusionModel` already trained on the
    scaled latents (as `fit_latent_diffusion` returns).
    """

    likelihood = None

    def __init__(self, vae: VAE, denoiser: diffusion.DiffusionConfig | diffusion.DiffusionModel,
                 scale: float | torch.Tensor = 1.0):
        super().__init__()
        validate.instance("vae", vae, VAE)
        if isinstance(denoiser, diffusion.DiffusionConfig):
            denoiser = diffusion.DiffusionModel(denoiser)          # new and untrained
        validate.instance("denoiser", denoiser, diffusion.DiffusionModel)
        if tuple(denoiser.shape) != (vae.config.latent_dim,):
            raise ValueError(f"the diffusion model's shape must be the VAE's latent, ({vae.config.latent_dim},), got "
                             f"{denoiser.shape}: use diffusion.DiffusionConfig.latent({vae.config.latent_dim})")
        self.vae = freeze(vae)
        self.diffusion = denoiser
        self.config = denoiser.config
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).clone())

    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> scaled latents (B, latent_dim): the encoder's mean over `scale` (no gradient)."""
        return encoder_means(self.vae, x) / self.scale

    def loss(self, batch) -> dict[str, torch.Tensor]:
        x, _ = unpack(batch)
        return self.diffusion.loss(self.to_latent(x))

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, steps: int | None = None
               ) -> torch.Tensor:
        """n images: latents drawn by the diffusion model (DDPM, or DDIM with `steps`), decoded."""
        return self.vae.decode(self.diffusion.sample(n, generator=generator, steps=steps) * self.scale)


def encoder_means(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """mu(x), the encoder's means (B, latent_dim), in eval mode without gradients (chapter 4)."""
    with evaluating(vae):
        return vae.encode(vae._x(x).to(vae.device))[0]


def latent_scale(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """The standard deviation of the encoder's means over images x: the scale `LatentDiffusion` divides
    by (Rombach et al. rescale their latents the same way) (chapter 4)."""
    return encoder_means(vae, x).std()


def fit_latent_diffusion(vae: VAE, images: torch.Tensor, config: diffusion.DiffusionConfig, budget
                         ) -> tuple[diffusion.DiffusionModel, torch.Tensor]:
    """Latent diffusion from the pieces (lab 04): freeze the VAE, encode every image to its encoder mean,
    divide by the latents' standard deviation `scale`, and train a `DiffusionModel(config)` on those
    vectors with `train.fit(model, latents, budget)`. Returns (the trained model, scale);
    `LatentDiffusion(vae, model, scale)` then samples images from it."""
    validate.instance("config", config, diffusion.DiffusionConfig)
    if tuple(config.shape) != (vae.config.latent_dim,):
        raise ValueError(f"config.shape must be the VAE's latent, ({vae.config.latent_dim},), got {config.shape}: "
                         f"use diffusion.DiffusionConfig.latent({vae.config.latent_dim})")
    freeze(vae)
    mu = encoder_means(vae, images)
    scale = mu.std()
    model = diffusion.DiffusionModel(config).to(vae.device)
    train.fit(model, mu / scale, budget)
    return model, scale
