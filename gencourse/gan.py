"""Generative adversarial networks: a generator and a discriminator trained against each other.

Introduced in chapter 3 and lab 03. The papers it follows:
- Goodfellow et al. (2014), "Generative Adversarial Nets": the two-player
  game, the minimax loss and the non-saturating generator loss.
- Radford, Metz & Chintala (2016), DCGAN: strided convolutions instead of
  pooling, batch norm in the generator, LeakyReLU in the discriminator,
  Adam with beta1 = 0.5.
- Lim & Ye (2017), "Geometric GAN": the hinge loss (also used by SAGAN and BigGAN).
- Mescheder, Geiger & Nowozin (2018): the R1 penalty on the discriminator's
  gradient at real data, which makes the game converge locally.
- Mirza & Osindero (2014), conditional GANs; Miyato & Koyama (2018), the
  projection discriminator used for the labels here.

Read top to bottom: the config, the losses (plain functions of the
discriminator's logits, what lab 03 asks you to write), the networks (MLP and
DCGAN-style), the `GAN` model, which meets the family contract
(`gencourse.contract`) with its own `training_step` because its update is two
losses and two optimisers, and latent interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from . import nn as gnn
from . import train, validate
from .contract import evaluating, sampler
from .data import unpack
from .diffusion import draw_normal

LOSSES = ("minimax", "nonsaturating", "hinge")
NETWORKS = ("mlp", "dcgan")


# ----------------------------------------------------------------------------- config

@dataclass
class GANConfig:
    shape: tuple = (1, 8, 8)         # one example: (2,) for 2-D points, (C, H, W) for images
    latent_dim: int = 32             # z ~ N(0, I) of this size
    network: str = "mlp"             # 'mlp' (any shape) or 'dcgan' (images whose side divides by 4)
    hidden: int = 256                # MLP width
    depth: int = 2                   # MLP hidden layers
    base: int = 64                   # DCGAN channels at full resolution (twice that at half)
    num_classes: int | None = None   # set (e.g. 10) for a class-conditional GAN
    loss: str = "hinge"              # 'minimax' (saturates), 'nonsaturating' or 'hinge'
    r1: float = 0.1                  # weight gamma of the R1 penalty, gamma/2 E||grad D(x)||^2 (0: off)
    betas: tuple = (0.5, 0.999)      # Adam's betas for both players (DCGAN's beta1 = 0.5)
    rescale: bool = True             # images in [0, 1] become [-1, 1] inside; False for 2-D points

    def __post_init__(self):
        validate.choice("config.network", self.network, NETWORKS)
        validate.choice("config.loss", self.loss, LOSSES)
        for name in ("latent_dim", "hidden", "depth", "base"):
            validate.positive_int(f"config.{name}", getattr(self, name))
        if self.r1 < 0:
            raise ValueError(f"config.r1 must be >= 0 (0: no penalty), got {self.r1}")
        shape = tuple(self.shape)
        if self.network == "dcgan" and (len(shape) != 3 or shape[1] != shape[2] or shape[1] % 4):
            raise ValueError(f"config.shape must be square images whose side divides by 4 for the DCGAN "
                             f"networks (e.g. (1, 8, 8) or (1, 28, 28)), got {shape}")

    @classmethod
    def fast(cls, **changes) -> "GANConfig":
        """8x8 digits (64 numbers: MLPs suffice), hinge loss and R1: about 20 s on a laptop CPU (lab 03)."""
        return cls(**changes)

    @classmethod
    def full(cls, **changes) -> "GANConfig":
        """28x28 MNIST with DCGAN's convolutional networks, for a GPU (lab 03)."""
        return cls(**{**dict(shape=(1, 28, 28), latent_dim=64, network="dcgan", base=64), **changes})

    @classmethod
    def toy(cls, **changes) -> "GANConfig":
        """2-D points (the ring of eight Gaussians): MLPs, the non-saturating loss, no rescaling (lab 03)."""
        return cls(**{**dict(shape=(2,), latent_dim=8, hidden=128, depth=3, loss="nonsaturating",
                             rescale=False), **changes})


# ----------------------------------------------------------------------------- the losses

def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "nonsaturating"
                       ) -> torch.Tensor:
    """What the discriminator minimises, from its logits on real and on generated data (lab 03).

    'minimax' and 'nonsaturating' share it: the binary cross-entropy of calling
    real data real and fakes fake, -log D(x) - log(1 - D(G(z))) with D = sigmoid(logit),
    that is softplus(-real) + softplus(fake). 'hinge': relu(1 - real) + relu(1 + fake).
    Each term is averaged over its batch.
    """
    validate.choice("kind", kind, LOSSES)
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """What the generator minimises, from the discriminator's logits on its samples (lab 03).

    'minimax': log(1 - D(G(z))) = -softplus(fake), the game's own value, whose
    gradient vanishes where D confidently rejects the fakes (early in training).
    'nonsaturating': -log D(G(z)) = softplus(-fake), same fixed point, strong
    gradient exactly there (Goodfellow et al., 2014). 'hinge': -fake.
    """
    validate.choice("kind", kind, LOSSES)
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||grad_x D(x)||^2 at real data x (Mescheder et al., 2018) (chapter 3).

    `real` must require gradients and `real_logits` be computed from it. The
    caller weighs it by gamma / 2: it pushes D to be flat on the data, which
    stops the generator and discriminator from circling each other.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.flatten(start_dim=1).square().sum(dim=1).mean()


# ----------------------------------------------------------------------------- the networks

class MLPGenerator(nn.Module):
    """z (B, latent_dim) [+ a label embedding] -> x (B, *shape) through an MLP (chapter 3)."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.shape = tuple(config.shape)
        self.label = nn.Embedding(config.num_classes, config.latent_dim) if config.num_classes else None
        self.net = gnn.MLP(config.latent_dim, config.hidden, math.prod(self.shape), config.depth)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = z if self.label is None else z + self.label(y)
        return self.net(h).view(len(z), *self.shape)


class MLPDiscriminator(nn.Module):
    """x (B, *shape) [, labels] -> one logit per example: features, then a linear read-out
    plus, with labels, the projection <embed(y), features> (Miyato & Koyama, 2018) (chapter 3)."""

    def __init__(self, config: GANConfig):
        super().__init__()
        dims = [math.prod(config.shape)] + [config.hidden] * config.depth
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(nn.Flatten(), *layers)
        self.head = ProjectionHead(config.hidden, config.num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x), y)


class ProjectionHead(nn.Module):
    """Features (B, F) [, labels (B,)] -> logits (B,): linear, plus <embed(y), features> with labels."""

    def __init__(self, features: int, num_classes: int | None):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features) if num_classes else None

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(dim=1)
        return out


class DCGANGenerator(nn.Module):
    """z -> (2 base, S/4, S/4) -> upsample to (base, S/2, S/2) -> (C, S, S) (Radford et al., 2016).

    Transposed convolutions double the side twice (8: 2 -> 4 -> 8; 28: 7 -> 14 -> 28),
    with batch norm and ReLU between them, as DCGAN's rules ask (chapter 3).
    """

    def __init__(self, config: GANConfig):
        super().__init__()
        c, side, _ = config.shape
        self.start, b = side // 4, config.base
        self.label = nn.Embedding(config.num_classes, config.latent_dim) if config.num_classes else None
        width = 2 * b * self.start**2
        self.project = nn.Sequential(nn.Linear(config.latent_dim, width), nn.BatchNorm1d(width), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * b, b, 4, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU(),   # (b, S/2, S/2)
            nn.ConvTranspose2d(b, c, 4, stride=2, padding=1),                                    # (C, S, S)
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = z if self.label is None else z + self.label(y)
        h = self.project(h).view(len(z), -1, self.start, self.start)
        return self.up(h)


class DCGANDiscriminator(nn.Module):
    """x (C, S, S) -> strided convolutions with LeakyReLU -> logit (Radford et al., 2016) (chapter 3)."""

    def __init__(self, config: GANConfig):
        super().__init__()
        c, side, _ = config.shape
        b = config.base
        self.features = nn.Sequential(
            nn.Conv2d(c, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2),            # (b, S/2, S/2)
            nn.Conv2d(b, 2 * b, 4, stride=2, padding=1), nn.LeakyReLU(0.2),        # (2b, S/4, S/4)
            nn.Flatten(),
        )
        self.head = ProjectionHead(2 * b * (side // 4) ** 2, config.num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x), y)


def make_networks(config: GANConfig) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator a config asks for (chapter 3)."""
    if config.network == "mlp":
        return MLPGenerator(config), MLPDiscriminator(config)
    return DCGANGenerator(config), DCGANDiscriminator(config)


# ----------------------------------------------------------------------------- the model

class GAN(nn.Module):
    """A generator and a discriminator, trained against each other by `train.fit` (chapter 3, lab 03).

    Its update is two losses and two optimisers, so it overrides
    `training_step(batch, optimizers, config)`: one discriminator step, then one
    generator step. `loss(batch)` reports both players' losses on a batch
    without updating (and is what validation reports); the weight average (EMA)
    covers the generator only. There is no likelihood: a GAN only samples.
    """

    likelihood = None

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = validate.instance("config", config, GANConfig)   # its fields are checked when it is made
        self.shape = tuple(config.shape)
        self.generator, self.discriminator = make_networks(config)
        # The parts of the game, swappable: lab 03 plugs in the learner's versions once they pass their checks.
        self.losses = (partial(discriminator_loss, kind=config.loss), partial(generator_loss, kind=config.loss))
        self.penalty = r1_penalty
        self.update = adversarial_step

    # -- data space <-> model space
    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x - 1 if self.config.rescale else x

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.config.rescale else x

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z) in model space: [-1, 1] for images (tanh), unbounded for points."""
        x = self.generator(z, y)
        return torch.tanh(x) if self.config.rescale else x

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I): (n, latent_dim) on the model's device, drawn where the generator lives."""
        validate.positive_int("n", n)
        return draw_normal((n, self.config.latent_dim), generator).to(next(self.parameters()).device)

    def _labels(self, y, n: int) -> torch.Tensor | None:
        if not self.config.num_classes:
            if y is not None:
                raise ValueError("labels y need a class-conditional GAN (config.num_classes)")
            return None
        if y is None:
            raise ValueError(f"this GAN is class-conditional ({self.config.num_classes} classes): pass labels y")
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y, dtype=torch.long)
        validate.tensor("y", y, shape=(n,), dtype="int", low=0, high=self.config.num_classes - 1)
        return y.to(next(self.parameters()).device)

    def _batch(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = unpack(batch)
        x = validate.tensor("x", x, dtype="float", shape=(None, *self.shape))
        return self.to_model(x), self._labels(y if self.config.num_classes else None, len(x))

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, y=None) -> dict[str, torch.Tensor]:
        """The discriminator's loss on real data and fakes (model space), with the R1 penalty when
        config.r1 > 0: {"d_loss", "d_real", "d_fake"[, "r1"]}, d_real/d_fake the mean D(x) (chapter 3)."""
        use_r1 = self.config.r1 > 0 and torch.is_grad_enabled()
        real = real.detach().requires_grad_(use_r1)
        real_logits, fake_logits = self.discriminator(real, y), self.discriminator(fake, y)
        out = {"d_loss": self.losses[0](real_logits, fake_logits),
               "d_real": torch.sigmoid(real_logits).mean().detach(),
               "d_fake": torch.sigmoid(fake_logits).mean().detach()}
        if use_r1:
            out["r1"] = self.penalty(real_logits, real)
            out["d_loss"] = out["d_loss"] + self.config.r1 / 2 * out["r1"]
        return out

    def g_loss(self, fake: torch.Tensor, y=None) -> torch.Tensor:
        """The generator's loss on its own samples (model space, not detached) (chapter 3)."""
        return self.losses[1](self.discriminator(fake, y))

    def loss(self, batch) -> dict[str, torch.Tensor]:
        """Both players' losses on a batch, without an update: "loss" is the discriminator's
        (for the non-saturating loss, log 4 = 1.39 when it cannot tell real from fake), "g_loss" the
        generator's."""
        real, y = self._batch(batch)
        z = torch.randn(len(real), self.config.latent_dim, device=real.device)
        fake = self.generate(z, y)
        d = self.d_loss(real, fake.detach(), y)
        return {"loss": d["d_loss"], **d, "g_loss": self.g_loss(fake, y)}

    def validation_step(self, batch) -> dict[str, torch.Tensor]:
        """What validation reports: the players' losses on held-out data (`loss`)."""
        return self.loss(batch)

    def configure_optimizers(self, config: train.TrainConfig) -> list[torch.optim.Optimizer]:
        """AdamW (Adam when config.weight_decay is 0) for each player at config.lr with the GAN's betas:
        [discriminator's, generator's]."""
        kwargs = dict(lr=config.lr, betas=self.config.betas, weight_decay=config.weight_decay)
        return [torch.optim.AdamW(self.discriminator.parameters(), **kwargs),
                torch.optim.AdamW(self.generator.parameters(), **kwargs)]

    def training_step(self, batch, optimizers, config: train.TrainConfig) -> dict[str, torch.Tensor]:
        """Draw latents for each player and make one alternating update with `self.update` (lab 03)."""
        real, y = self._batch(batch)
        z_d = torch.randn(len(real), self.config.latent_dim, device=real.device)
        z_g = torch.randn(len(real), self.config.latent_dim, device=real.device)
        return self.update(self, real, z_d, z_g, *optimizers, y=y, grad_clip=config.grad_clip)

    def ema_module(self) -> nn.Module:
        """Only the generator's weights are averaged: the discriminator is a training device."""
        return self.generator

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, y=None) -> torch.Tensor:
        """n samples in data space, one generator pass each (chapter 3). y: a label or labels (n,)."""
        y = self._labels(y, n)
        return self.to_data(self.generate(self.latent(n, generator), y))

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """G(z) in data space for given latents z (n, latent_dim), in eval mode without gradients."""
        validate.tensor("z", z, dtype="float", shape=(None, self.config.latent_dim))
        with evaluating(self):
            return self.to_data(self.generate(z.to(next(self.parameters()).device), self._labels(y, len(z))))


def adversarial_step(model: GAN, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor,
                     opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer, y=None,
                     grad_clip: float | None = None) -> dict[str, torch.Tensor]:
    """One round of the game (Goodfellow et al.'s Algorithm 1 with k = 1) (chapter 3, lab 03).

    First the discriminator: real data against G(z_d), the fakes detached so
    that this step cannot move the generator. Then the generator: G(z_g) judged
    by the updated discriminator. real is in model space; returns the logs.
    """
    d = model.d_loss(real, model.generate(z_d, y).detach(), y)
    train.step(d["d_loss"], opt_d, grad_clip)
    g_loss = model.g_loss(model.generate(z_g, y), y)
    train.step(g_loss, opt_g, grad_clip)
    return {"loss": d["d_loss"], **d, "g_loss": g_loss}


def slerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` latents on the great circle from z0 to z1 (both (latent_dim,)) (chapter 3).

    Spherical rather than straight: Gaussian latents of high dimension lie near
    a sphere, and the straight line between two of them passes inside it,
    where the generator saw few latents (White, 2016).
    """
    validate.tensor("z0", z0, ndim=1, dtype="float")
    validate.tensor("z1", z1, dtype="float", shape=tuple(z0.shape))
    validate.positive_int("steps", steps)
    omega = torch.arccos((F.normalize(z0, dim=0) * F.normalize(z1, dim=0)).sum().clamp(-1, 1))
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)[:, None]
    if torch.sin(omega).abs() < 1e-6:      # (almost) the same or opposite direction: no unique great circle
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)
