"""The five families on one footing: the same digits, each model at the size its lab uses (chapter 6).

Every family sees the 8x8 digits at their native 17 grey levels (MNIST's 256
in the full profile), in the representation it needs, made from the same
images by a named function:
- the autoregressive model reads each pixel as one of 17 tokens (chapter 1's
  `ImageAR` with levels=17, where lab 01 binarized);
- diffusion and the GAN take the grey values as numbers in [0, 1] and rescale
  inside (labs 02 and 03);
- the VAE's decoder is categorical over the 17 levels (lab 04's was Bernoulli
  on binarized pixels);
- the flow trains on dequantised pixels and is scored with the bin width
  accounted for (lab 05), which makes its discrete likelihood a bound.

Each `Recipe` copies its lab's model config and training budget (a test holds
them equal), and `train` goes through `train.fit_or_load`, so a model that the
chapter trained is loaded, not trained again, by the lab.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from . import autoregressive as ar
from . import data, diffusion, evaluate, flows, gan, train, vae

FAMILIES = ("autoregressive", "diffusion", "GAN", "VAE", "flow")   # the source document's order


@dataclass
class Recipe:
    """How one family's model is made and trained for the comparison (chapter 6)."""

    family: str
    name: str                        # its train.fit_or_load name: one cache entry for chapter and lab
    make: Callable                   # () -> an untrained model, seeded
    budget: train.TrainConfig
    representation: Callable         # training images in [0, 1] -> what the model trains on
    bits_per_dim: Callable | None = None   # (model, test images) -> bits per dim, where log_prob does not fit
    likelihood: str | None = None          # its kind, with bits_per_dim
    val: bool = False                # train with the validation images (evaluation only; as its lab does)


def _seeded(build, config):
    def make():
        torch.manual_seed(0)
        return build(config)
    return make


def _images(x):
    return x


def _lab_budgets(images: str) -> dict[str, train.TrainConfig]:
    """The training budgets of labs 01-05's digit models (fast profile), or their full-profile ones."""
    fast = train.TrainConfig.fast
    full = train.TrainConfig.full
    game = dict(schedule="constant", grad_clip=None)
    if images == "digits":
        return {"autoregressive": fast(steps=1000, batch_size=64, lr=3e-3, warmup=50, eval_every=200,
                                       eval_batches=5),
                "diffusion": fast(steps=3300, batch_size=256, lr=2e-3, warmup=100, ema_decay=0.998),
                "GAN": fast(steps=2000, batch_size=128, lr=1e-3, ema_decay=0.995, **game),
                "VAE": fast(steps=1500, batch_size=128, lr=2e-3),
                "flow": fast(steps=800, batch_size=64, lr=2e-3)}
    return {"autoregressive": full(steps=4000, batch_size=64, lr=3e-3, warmup=50, eval_every=200, eval_batches=5),
            "diffusion": fast(steps=20000, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.999),
            "GAN": fast(steps=20000, batch_size=128, lr=2e-4, ema_decay=0.999, **game),
            "VAE": fast(steps=10000, batch_size=128, lr=1e-3),
            "flow": fast(steps=10000, batch_size=64, lr=1e-3)}


def recipes(images: str = "digits", progress: bool = False) -> dict[str, Recipe]:
    """The five recipes for `images` ('digits': the fast profile's sizes; 'mnist': the full one's), keyed
    by family in the source document's order (chapter 6, lab 06)."""
    if images not in evaluate.IMAGE_SETS:
        raise ValueError(f"images must be one of {sorted(evaluate.IMAGE_SETS)}, got {images!r}")
    levels, small = data.LEVELS[images], images == "digits"
    budgets = {k: replace(b, progress=progress) for k, b in _lab_budgets(images).items()}
    configs = {
        "autoregressive": (ar.ImageARConfig.fast if small else ar.ImageARConfig.full)(levels=levels),
        "diffusion": diffusion.DiffusionConfig.fast(hidden=384) if small else diffusion.DiffusionConfig.full(),
        "GAN": gan.GANConfig.fast() if small else gan.GANConfig.full(),
        "VAE": (vae.VAEConfig.fast if small else vae.VAEConfig.full)(decoder="categorical", levels=levels),
        "flow": flows.FlowConfig.fast() if small else flows.FlowConfig.full(),
    }
    models = {"autoregressive": ar.ImageAR, "diffusion": diffusion.DiffusionModel, "GAN": gan.GAN,
              "VAE": vae.VAE, "flow": flows.Flow}
    short = {"autoregressive": "ar", "diffusion": "diffusion", "GAN": "gan", "VAE": "vae", "flow": "flow"}

    def flow_bits(model, x):
        return flows.bits_per_dim(model, x, levels, torch.Generator().manual_seed(0))

    out = {}
    for family in FAMILIES:
        extra = {}
        if family == "flow":
            extra = dict(representation=lambda x: data.Dequantized(x, levels), bits_per_dim=flow_bits,
                         likelihood="bound")
        out[family] = Recipe(family, f"compare-{short[family]}-{images}", _seeded(models[family], configs[family]),
                             budgets[family], **{"representation": _images, **extra},
                             val=family == "autoregressive")
    return out


def train_all(recipes: dict[str, Recipe], images: str = "digits") -> dict[str, evaluate.Contender]:
    """Every recipe trained on the same training images (or loaded from the cache when it was trained
    before), as contenders for `evaluate.scorecard`, in the recipes' order (chapter 6, lab 06)."""
    train_images = data.images(images, "train").tensors[0]
    val_images = data.images(images, "val").tensors[0]
    out = {}
    for family, recipe in recipes.items():
        model, history = train.fit_or_load(recipe.name, recipe.make, recipe.representation(train_images),
                                           recipe.budget, val_data=val_images if recipe.val else None)
        out[family] = evaluate.Contender(model, history, recipe.bits_per_dim, recipe.likelihood)
    return out
