"""Normalizing flows: invertible maps with cheap Jacobians, so that the likelihood is exact.

Introduced in chapter 5 and lab 05. The papers it follows:
- Dinh, Krueger & Bengio (2015), NICE, and Dinh, Sohl-Dickstein & Bengio
  (2017), RealNVP: coupling layers, whose Jacobian is triangular; squeezing
  and a multi-scale architecture that factors half the dimensions out.
- Kingma & Dhariwal (2018), Glow: ActNorm with data-dependent initialisation,
  the invertible 1x1 convolution parameterised by an LU decomposition, and
  sampling at a temperature.
- Noe, Olsson, Koehler & Wu (2019), Boltzmann generators: a flow trained from
  an energy (reverse KL) whose exact density makes its samples reweightable.

Every layer maps x -> (y, log|det dy/dx|) in `forward` and y -> (x, log|det dx/dy|)
in `inverse`, one log-determinant per example. A `Flow` chains layers and a
standard normal base: log p(x) = log N(z) + sum of the layers' log-determinants
(the change of variables), sampling runs the layers backwards from z ~ N(0, T^2 I).
Dequantisation (`gencourse.data.Dequantized`) turns discrete pixels into a
density on [0, 1); `bits_per_dim` scores it as a discrete model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import nn as gnn
from . import validate
from .contract import evaluating, sampler
from .data import unpack
from .diffusion import draw_normal

NETWORKS = ("mlp", "glow")
LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- config

@dataclass
class FlowConfig:
    shape: tuple = (2,)              # one example: (D,) vectors or (C, H, W) images
    network: str = "mlp"             # 'mlp': couplings with MLPs on flat vectors; 'glow': multi-scale, conv
    steps: int = 8                   # flow steps (ActNorm, invertible linear map, coupling), per level for glow
    levels: int = 2                  # glow: levels, each squeezes and (except the last) factors half out
    hidden: int = 128                # width of the coupling networks (units, or channels for glow)
    depth: int = 2                   # hidden layers of an MLP coupling network
    logit: float | None = None       # images in [0, 1]: x -> logit(a + (1 - 2a) x) first, with a = this

    def __post_init__(self):
        validate.choice("config.network", self.network, NETWORKS)
        for name in ("steps", "levels", "hidden", "depth"):
            validate.positive_int(f"config.{name}", getattr(self, name))
        if self.logit is not None and not 0 <= self.logit < 0.5:
            raise ValueError(f"config.logit must lie in [0, 0.5) (or be None), got {self.logit}")
        shape = tuple(self.shape)
        side = shape[-1] if len(shape) == 3 else 0
        if self.network == "glow" and (len(shape) != 3 or shape[1] != side or side % 2 ** self.levels):
            raise ValueError(f"config.shape must be square images (C, S, S) whose side divides by "
                             f"2**levels = {2 ** self.levels} for the glow network, got {shape}")

    @classmethod
    def toy(cls, **changes) -> "FlowConfig":
        """2-D points: 8 steps of MLP couplings, 64 units wide (lab 05)."""
        return cls(**{**dict(hidden=64), **changes})

    @classmethod
    def fast(cls, **changes) -> "FlowConfig":
        """8x8 digits as 64 numbers: 6 steps of MLP couplings on a checkerboard, after a logit (lab 05)."""
        return cls(**{**dict(shape=(1, 8, 8), steps=6, hidden=128, depth=1, logit=0.05), **changes})

    @classmethod
    def full(cls, **changes) -> "FlowConfig":
        """28x28 MNIST, Glow's multi-scale architecture with conv couplings, for a GPU (lab 05)."""
        return cls(**{**dict(shape=(1, 28, 28), network="glow", levels=2, steps=8, hidden=128, logit=0.05),
                      **changes})


# ----------------------------------------------------------------------------- the change of variables

def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per example, summed over every dimension but the first: (B, ...) -> (B,)."""
    return -0.5 * (z.square() + LOG_2PI).flatten(1).sum(dim=1)


def affine_log_prob(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log p(x) per example (B,) when z = a * x + b (elementwise; x (B, D), a and b (D,)) is standard normal:
    log N(z; 0, I) + sum_j log|a_j|, the change of variables for a diagonal Jacobian (lab 05)."""
    return standard_normal_log_prob(a * x + b) + torch.log(a.abs()).sum()


def _sum(x: torch.Tensor) -> torch.Tensor:
    """Per-example sum over every dimension but the first."""
    return x.flatten(1).sum(dim=1)


# ----------------------------------------------------------------------------- layers

class LogitTransform(nn.Module):
    """Images in [0, 1] -> the real line: y = logit(a + (1 - 2a) x) (Dinh et al., 2017) (chapter 5).

    The flow then models y, and this layer's log-determinant carries the density
    back to x. a keeps 0 and 1 away from infinity.
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        s = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        return y, _sum(math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s))

    def inverse(self, y):
        s = torch.sigmoid(y)
        x = (s - self.alpha) / (1 - 2 * self.alpha)
        return x, _sum(F.logsigmoid(y) + F.logsigmoid(-y) - math.log(1 - 2 * self.alpha))


class ActNorm(nn.Module):
    """y = (x + bias) * exp(log_scale), one pair per channel (or feature) (Kingma & Dhariwal, 2018).

    Data-dependent initialisation: on the first batch it sees while training,
    bias and log_scale are set so that the outputs have mean 0 and standard
    deviation 1 per channel (`actnorm_init`); after that they are ordinary weights.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.initializer = actnorm_init        # swappable: lab 05 plugs in yours once it passes its check

    def _view(self, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return p.view(1, -1, *[1] * (x.dim() - 2))

    def forward(self, x):
        if self.training and not self.initialized:
            with torch.no_grad():
                bias, log_scale = self.initializer(x)
                self.bias.copy_(bias)
                self.log_scale.copy_(log_scale)
                self.initialized.fill_(True)
        positions = x[0, 0].numel() if x.dim() > 2 else 1
        y = (x + self._view(self.bias, x)) * torch.exp(self._view(self.log_scale, x))
        return y, (self.log_scale.sum() * positions).expand(len(x))

    def inverse(self, y):
        if self.training and torch.is_grad_enabled() and not self.initialized:
            self.initialized.fill_(True)       # trained backwards (from an energy): keep the identity start
        positions = y[0, 0].numel() if y.dim() > 2 else 1
        x = y * torch.exp(-self._view(self.log_scale, y)) - self._view(self.bias, y)
        return x, (-self.log_scale.sum() * positions).expand(len(y))


def actnorm_init(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """ActNorm's data-dependent initialisation (lab 05): (bias, log_scale), one per channel (dim 1), such
    that (x + bias) * exp(log_scale) has mean 0 and standard deviation 1 per channel over the batch
    (and every position): bias = -mean, log_scale = -log(std + eps)."""
    flat = x.transpose(0, 1).flatten(1)                        # (C, B * positions)
    return -flat.mean(dim=1), -torch.log(flat.std(dim=1) + eps)


class InvertibleLinear(nn.Module):
    """y = W x over the channels (features), W = P L (U + diag(sign * exp(log_s))) (Kingma & Dhariwal, 2018).

    Glow's invertible 1x1 convolution, LU-parameterised: the log-determinant is
    sum(log_s) per position, no matrix determinant needed. P is a fixed
    permutation; W starts as a random rotation.
    """

    def __init__(self, channels: int, rotation: bool = True):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0] if rotation else torch.eye(channels)
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(len(self.log_s), device=self.log_s.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_s))
        return self.p @ lower @ upper

    @staticmethod
    def _mix(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bj...->bi...", w, x)

    def forward(self, x):
        positions = x[0, 0].numel() if x.dim() > 2 else 1
        return self._mix(self.weight(), x), (self.log_s.sum() * positions).expand(len(x))

    def inverse(self, y):
        positions = y[0, 0].numel() if y.dim() > 2 else 1
        return self._mix(torch.linalg.inv(self.weight()), y), (-self.log_s.sum() * positions).expand(len(y))


class AffineCoupling(nn.Module):
    """y = m x + (1 - m) (x exp(s) + t), with (s, t) = net(m x) (Dinh et al., 2017) (chapter 5, lab 05).

    The mask m (1 for the dimensions that pass unchanged) makes the Jacobian
    triangular, so log|det| = sum of (1 - m) s; the inverse needs no inverse of
    the network. s = scale * tanh(raw): bounded, so that training is stable.
    `net` maps (B, *shape) to (B, 2 * C, ...): raw s and t stacked on dim 1.
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.scale = nn.Parameter(torch.ones(mask.shape[0]))
        self.couple = affine_coupling          # swappable: lab 05 plugs in yours once it passes its check

    def _st(self, x_masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, t = self.net(x_masked).chunk(2, dim=1)
        scale = self.scale.view(1, -1, *[1] * (raw.dim() - 2))
        return scale * torch.tanh(raw), t

    def forward(self, x):
        return self.couple(x, self.mask, self._st)

    def inverse(self, y):
        return self.couple(y, self.mask, self._st, reverse=True)


def affine_coupling(x: torch.Tensor, mask: torch.Tensor, st, reverse: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """One affine coupling, either way (lab 05): returns (output, log|det| of this direction) per example.

    (s, t) = st(mask * x) depend only on the unchanged part. Forward: y = mask * x
    + (1 - mask) * (x * exp(s) + t), log|det| = sum (1 - mask) * s. Reverse (x from y):
    x = mask * y + (1 - mask) * (y - t) * exp(-s), log|det| = -sum (1 - mask) * s.
    """
    s, t = st(mask * x)
    free = 1 - mask
    if reverse:
        return mask * x + free * (x - t) * torch.exp(-s), -_sum(free * s)
    return mask * x + free * (x * torch.exp(s) + t), _sum(free * s)


class Squeeze(nn.Module):
    """(C, H, W) -> (4C, H/2, W/2): each 2x2 patch becomes 4 channels (Dinh et al., 2017). Volume-preserving."""

    def forward(self, x):
        b, c, h, w = x.shape
        y = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b)

    def inverse(self, y):
        b, c, h, w = y.shape
        x = y.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)
        return x, y.new_zeros(b)


class Flatten(nn.Module):
    """(B, *shape) -> (B, D) and back: image flows with MLP couplings work on flat vectors, so that ActNorm
    has one pair per pixel and the invertible linear map mixes all of them. Volume-preserving."""

    def __init__(self, shape: tuple):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.flatten(1), x.new_zeros(len(x))

    def inverse(self, y):
        return y.view(len(y), *self.shape), y.new_zeros(len(y))


class Split(nn.Module):
    """Multi-scale: the second half of the channels leaves the flow here as part of z (Dinh et al., 2017).

    `Flow` collects the factored-out halves; later layers work on the first half only.
    """

    def forward(self, x):
        return x.chunk(2, dim=1)


# ----------------------------------------------------------------------------- coupling networks and masks

def checkerboard(shape: tuple, parity: int) -> torch.Tensor:
    """A mask of one example's shape: 1 where (row + column + parity) is even; for vectors, alternate."""
    if len(shape) == 1:
        return ((torch.arange(shape[0]) + parity) % 2 == 0).float()
    c, h, w = shape
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((rows + cols + parity) % 2 == 0).float().expand(c, h, w).clone()


def channel_mask(channels: int, parity: int) -> torch.Tensor:
    """A (C, 1, 1) mask that keeps one half of the channels unchanged (Glow's split coupling)."""
    half = torch.arange(channels) < channels // 2
    return (half if parity == 0 else ~half).float().view(channels, 1, 1)


class MLPNet(nn.Module):
    """(B, *shape) -> (B, 2 C, ...) through an MLP on the flattened input; the last layer starts at zero,
    so that a new coupling is the identity."""

    def __init__(self, shape: tuple, hidden: int, depth: int):
        super().__init__()
        self.shape = tuple(shape)
        dim = math.prod(self.shape)
        self.net = gnn.MLP(dim, hidden, 2 * dim, depth)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):
        out = self.net(x.flatten(1)).view(len(x), 2, *self.shape)
        return torch.cat([out[:, 0], out[:, 1]], dim=1)


class ConvNet(nn.Module):
    """(B, C, H, W) -> (B, 2C, H, W): 3x3, 1x1, 3x3 convolutions (Glow's coupling network), last at zero."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * channels, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):
        return self.net(x)


def flow_step(shape: tuple, k: int, config: FlowConfig) -> list[nn.Module]:
    """One step of flow (Glow's): ActNorm, an invertible linear map of the channels (the features of a
    vector), an affine coupling whose mask alternates with k (a checkerboard over the image for the mlp
    network, halves of the channels for glow)."""
    channels = shape[0]
    if config.network == "glow":
        mask, net = channel_mask(channels, k % 2), ConvNet(channels, config.hidden)
    else:
        mask = checkerboard(tuple(config.shape), k % 2).flatten()
        net = MLPNet(shape, config.hidden, config.depth)
    # Glow starts its 1x1 convolutions at random rotations; on the flat vectors of the mlp network a
    # rotation would scramble the checkerboard's neighbourhoods, so that map starts as the identity
    return [ActNorm(channels), InvertibleLinear(channels, rotation=config.network == "glow"),
            AffineCoupling(mask, net)]


def make_layers(config: FlowConfig) -> list[nn.Module]:
    """The layers a config asks for: [logit], then for mlp [flatten] and `steps` flow steps on vectors;
    for glow, per level: squeeze, `steps` flow steps, and a split on every level but the last."""
    shape = tuple(config.shape)
    layers: list[nn.Module] = [LogitTransform(config.logit)] if config.logit is not None else []
    if config.network == "mlp":
        if len(shape) > 1:
            layers.append(Flatten(shape))
        for k in range(config.steps):
            layers += flow_step((math.prod(shape),), k, config)
        return layers
    c, s, _ = shape
    for level in range(config.levels):
        c, s = 4 * c, s // 2
        layers.append(Squeeze())
        for k in range(config.steps):
            layers += flow_step((c, s, s), k, config)
        if level < config.levels - 1:
            layers.append(Split())
            c //= 2
    return layers


# ----------------------------------------------------------------------------- the model

class Flow(nn.Module):
    """A normalizing flow: layers that map data x to z, and a standard normal base (chapter 5, lab 05).

    likelihood = "exact": log_prob(x) = log N(z) + the sum of the layers'
    log-determinants (`self.density`, the package's `log_prob` unless lab 05
    plugs in yours). loss(batch) -> {"loss": nats per dimension, "nll": nats
    per example}. sample(n, generator=..., temperature=T) runs the layers
    backwards from z ~ N(0, T^2 I) (Glow's temperature: T < 1 trades variety
    for typical samples). `forward(x) -> (z, log_det)`, `inverse(z) -> x`,
    `inverse_and_log_det(z) -> (x, log|det dx/dz|)`; z is flat, (B, D).
    """

    likelihood = "exact"

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = validate.instance("config", config, FlowConfig)
        self.shape = tuple(config.shape)
        self.dims = math.prod(self.shape)
        self.layers = nn.ModuleList(make_layers(config))
        self.density = log_prob

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _x(self, x: torch.Tensor) -> torch.Tensor:
        return validate.tensor("x", x, dtype="float", shape=(None, *self.shape))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, *shape) -> (z (B, D), sum of log|det dz/dx| (B,))."""
        log_det = x.new_zeros(len(x))
        parts = []
        for layer in self.layers:
            if isinstance(layer, Split):
                x, out = layer(x)
                parts.append(out.flatten(1))
                continue
            x, ld = layer(x)
            log_det = log_det + ld
        return torch.cat(parts + [x.flatten(1)], dim=1), log_det

    def _part_shapes(self) -> list[tuple]:
        """The shapes of the factored-out parts and of the last output, in the order z holds them."""
        shapes, shape = [], tuple(self.shape)
        for layer in self.layers:
            if isinstance(layer, Flatten):
                shape = (math.prod(shape),)
            elif isinstance(layer, Squeeze):
                shape = (4 * shape[0], shape[1] // 2, shape[2] // 2)
            elif isinstance(layer, Split):
                shape = (shape[0] // 2, *shape[1:])
                shapes.append(shape)
        return shapes + [shape]

    def inverse_and_log_det(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, D) -> (x (B, *shape), sum of log|det dx/dz| (B,))."""
        shapes = self._part_shapes()
        sizes = [math.prod(s) for s in shapes]
        parts = list(z.split(sizes, dim=1))
        x = parts.pop().view(len(z), *shapes[-1])
        log_det = z.new_zeros(len(z))
        for layer in reversed(self.layers):
            if isinstance(layer, Split):
                out = parts.pop()
                x = torch.cat([x, out.view(len(z), *x.shape[1:])], dim=1)
                continue
            x, ld = layer.inverse(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D) -> x (B, *shape): the flow run backwards."""
        return self.inverse_and_log_det(z)[0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per example (B,), in nats, exact (chapter 5)."""
        return self.density(self, self._x(x))

    def loss(self, batch) -> dict[str, torch.Tensor]:
        x, _ = unpack(batch)
        nll = -self.log_prob(x).mean()
        return {"loss": nll / self.dims, "nll": nll}

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
               ) -> torch.Tensor:
        """n samples (n, *shape): x = inverse(T z) with z ~ N(0, I) (chapter 5). Images stay in [0, 1]."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        z = temperature * draw_normal((n, self.dims), generator).to(self.device)
        x = self.inverse(z)
        return x.clamp(0, 1) if self.config.logit is not None else x


def log_prob(flow: Flow, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log N(z; 0, I) + log|det dz/dx| by composition, z = flow(x) (lab 05)."""
    z, log_det = flow(x)
    return standard_normal_log_prob(z) + log_det


def trace(flow: Flow, x: torch.Tensor) -> list[torch.Tensor]:
    """x and its image after every layer (vector flows without splits): the data carried towards z,
    step by step (chapter 5)."""
    if any(isinstance(layer, Split) for layer in flow.layers):
        raise ValueError("trace needs a flow without splits (network 'mlp')")
    states = [x]
    with evaluating(flow):
        for layer in flow.layers:
            x, _ = layer(x)
            states.append(x)
    return states


def bits_per_dim(flow: Flow, x: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> float:
    """Bits per dimension of discrete images x (k / (levels - 1) values in [0, 1]) under a flow trained on
    their dequantised versions: -log p of one dequantised draw, plus D log(levels) for the bin width
    1 / levels, over D log 2 (Theis et al., 2016) (chapter 5). An upper bound on the discrete model's."""
    from .evaluate import dequantized_bits_per_dim

    with evaluating(flow):
        return dequantized_bits_per_dim(lambda y: flow.log_prob(y.to(flow.device)), x, levels, generator)


# ----------------------------------------------------------------------------- training from an energy

def reverse_kl_loss(flow: Flow, energy, z: torch.Tensor) -> torch.Tensor:
    """KL(q || p) up to log Z, for p(x) = exp(-energy(x)) / Z: mean of energy(x) + log q(x), x = flow^-1(z)
    (Noe et al., 2019) (lab 05). z (B, D) ~ N(0, I); log q(x) = log N(z) - log|det dx/dz|."""
    x, log_det = flow.inverse_and_log_det(z)
    return (energy(x) + standard_normal_log_prob(z) - log_det).mean()


def fit_energy(flow: Flow, energy, steps: int, batch_size: int = 256, lr: float = 3e-3, loss=None,
               progress: bool = True) -> list[float]:
    """Train a flow from an energy alone, a Boltzmann generator (chapter 5, lab 05): `steps` Adam steps on
    loss(flow, energy, z) (`reverse_kl_loss` unless given) with fresh z ~ N(0, I) of `batch_size` each time.
    There is no data, so `train.fit` does not apply. Returns the loss of every step; the flow ends in eval mode."""
    from tqdm.auto import tqdm

    from . import train

    validate.positive_int("steps", steps)
    validate.positive_int("batch_size", batch_size)
    loss = loss or reverse_kl_loss
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    flow.train()
    losses = []
    for _ in tqdm(range(steps), disable=not progress, desc="reverse KL"):
        value = loss(flow, energy, torch.randn(batch_size, flow.dims, device=flow.device))
        train.step(value, optimizer, grad_clip=None)
        losses.append(float(value.detach()))
    flow.eval()
    return losses


@torch.no_grad()
def importance_sample(flow: Flow, energy, n: int, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples x ~ q and their log importance weights log w = -energy(x) - log q(x) (chapter 5):
    weighting by w turns averages under q into averages under p = exp(-energy) / Z."""
    with evaluating(flow):
        z = draw_normal((n, flow.dims), generator).to(flow.device)
        x, log_det = flow.inverse_and_log_det(z)
        return x, -energy(x) - standard_normal_log_prob(z) + log_det


def effective_sample_size(log_w: torch.Tensor) -> float:
    """(sum w)^2 / sum w^2 (Kish): how many independent samples of p the weighted ones are worth."""
    w = torch.softmax(log_w.double(), dim=0)
    return float(1.0 / w.square().sum())


def reweighted_mean(values: torch.Tensor, log_w: torch.Tensor) -> float:
    """The self-normalised importance-sampling estimate of E_p[values] from samples of q (chapter 5)."""
    return float((torch.softmax(log_w.double(), dim=0) * values.double()).sum())


def double_well(x: torch.Tensor, barrier: float = 2.0, tilt: float = 0.5) -> torch.Tensor:
    """A 2-D double-well energy (chapter 5): barrier (x1^2 - 1)^2 + tilt x1 + x2^2 / 2, per point (B,).
    Two wells near x1 = -1 and x1 = +1, the left one deeper when tilt > 0."""
    return barrier * (x[:, 0].square() - 1).square() + tilt * x[:, 0] + 0.5 * x[:, 1].square()


def well_probability(energy=double_well, lim: float = 4.0, resolution: int = 2001) -> float:
    """P(x1 > 0) under p = exp(-energy) / Z, by numerical integration on a grid (chapter 5)."""
    t = torch.linspace(-lim, lim, resolution, dtype=torch.float64)
    x1, x2 = torch.meshgrid(t, t, indexing="ij")
    log_p = -energy(torch.stack([x1.flatten(), x2.flatten()], dim=1)).view(resolution, resolution)
    w = torch.softmax(log_p.flatten(), dim=0).view(resolution, resolution)
    return float(w[t > 0].sum())
