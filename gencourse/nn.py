"""Building blocks shared by the families: MLP, conv blocks, time and label embeddings, a small UNet.

Introduced in lab 00; the UNet serves the diffusion chapter. The sinusoidal
embedding is the positional encoding of Vaswani et al. (2017), used for
diffusion timesteps as in Ho et al. (2020). The UNet follows Ronneberger et
al. (2015) in miniature: two resolutions, skip connections, and an embedding
(time, optionally class) added inside every block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import validate


class MLP(nn.Sequential):
    """in_dim -> [hidden] * depth -> out_dim, with SiLU between linear layers (lab 00)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, depth: int = 2):
        for name, v in (("in_dim", in_dim), ("hidden", hidden), ("out_dim", out_dim), ("depth", depth)):
            validate.positive_int(name, v)
        dims = [in_dim] + [hidden] * depth + [out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.SiLU())
        super().__init__(*layers)


class SinusoidalEmbedding(nn.Module):
    """Scalar positions or timesteps t (B,) -> (B, dim) features of sines and cosines (lab 00).

    Frequencies fall geometrically from 1 to 1/max_period, so nearby t get
    similar codes and the network can read both coarse and fine position.
    """

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        validate.positive_int("dim", dim)
        if dim % 2:
            raise ValueError(f"dim must be even (half sines, half cosines), got {dim}")
        self.dim, self.max_period = dim, max_period

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, device=t.device) / half)
        angles = t.float()[:, None] * freqs[None, :]  # (B, half)
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class TimeEmbedding(nn.Sequential):
    """Timesteps t (B,) -> (B, out_dim): sinusoidal features of size emb_dim, then a two-layer MLP
    (chapter 2). Diffusion's denoisers add it inside every block so each layer knows the noise level."""

    def __init__(self, emb_dim: int, out_dim: int | None = None):
        out_dim = out_dim or emb_dim
        super().__init__(SinusoidalEmbedding(emb_dim), nn.Linear(emb_dim, out_dim), nn.SiLU(),
                         nn.Linear(out_dim, out_dim))


class LabelEmbedding(nn.Embedding):
    """Class labels y (B,) in [0, num_classes] -> (B, dim) (chapter 2).

    The extra index num_classes means "no label": a model trained with labels
    dropped at random learns the unconditional distribution too, which
    classifier-free guidance needs.
    """

    def __init__(self, num_classes: int, dim: int):
        validate.positive_int("num_classes", num_classes)
        super().__init__(num_classes + 1, dim)
        self.num_classes = num_classes

    def null(self, n: int, device=None) -> torch.Tensor:
        """n "no label" indices (n,)."""
        return torch.full((n,), self.num_classes, dtype=torch.long, device=device)

    def drop(self, y: torch.Tensor, p: float) -> torch.Tensor:
        """y with each label replaced by "no label" with probability p (training for guidance)."""
        dropped = torch.rand(len(y), device=y.device) < p
        return torch.where(dropped, self.null(len(y), y.device), y)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU, an optional embedding added in between,
    and a residual connection (lab 00)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int | None = None, groups: int = 8):
        super().__init__()
        g = math.gcd(groups, out_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = nn.GroupNorm(g, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(g, out_ch)
        self.emb = nn.Linear(emb_dim, out_ch) if emb_dim else None
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        if self.emb is not None:
            if emb is None:
                raise ValueError("this ConvBlock was built with emb_dim, so forward needs emb (B, emb_dim)")
            h = h + self.emb(emb)[:, :, None, None]
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class TinyUNet(nn.Module):
    """A two-level UNet for 8x8 and 28x28 images, conditioned on a timestep and optionally a class.

    x (B, C, H, W), t (B,) -> (B, C, H, W). H and W must be even (8 -> 4, 28 -> 14).
    With num_classes set, label y (B,) in [0, num_classes] is embedded; the extra
    index num_classes means "no label", for classifier-free guidance (chapter 2).
    """

    def __init__(self, channels: int = 1, base: int = 32, emb_dim: int = 64, num_classes: int | None = None):
        super().__init__()
        self.channels, self.num_classes = channels, num_classes
        self.time = TimeEmbedding(emb_dim)
        self.label = LabelEmbedding(num_classes, emb_dim) if num_classes else None
        self.inp = nn.Conv2d(channels, base, 3, padding=1)
        self.down1 = ConvBlock(base, base, emb_dim)
        self.down2 = ConvBlock(base, 2 * base, emb_dim)
        self.mid = ConvBlock(2 * base, 2 * base, emb_dim)
        self.up2 = ConvBlock(4 * base, base, emb_dim)
        self.up1 = ConvBlock(2 * base, base, emb_dim)
        self.out = nn.Conv2d(base, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # start by predicting zero: a stable first step
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # hot code: shapes only, no value checks (those sync the device); DiffusionModel checks its inputs
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"x must have shape (B, {self.channels}, H, W) with even H and W, got {tuple(x.shape)}")
        emb = self.time(t)
        if (self.label is None) != (y is None):
            raise ValueError("pass labels y (B,) exactly when the UNet was built with num_classes "
                             "(num_classes itself means 'no label')")
        if self.label is not None:
            emb = emb + self.label(y)
        h1 = self.down1(self.inp(x), emb)                 # (B, base, H, W)
        h2 = self.down2(F.avg_pool2d(h1, 2), emb)        # (B, 2base, H/2, W/2)
        h = self.mid(h2, emb)
        h = self.up2(torch.cat([h, h2], dim=1), emb)      # (B, base, H/2, W/2)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.up1(torch.cat([h, h1], dim=1), emb)      # (B, base, H, W)
        return self.out(h)
