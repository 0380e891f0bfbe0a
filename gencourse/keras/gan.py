"""The DCGAN of lab 03 in Keras 3, on the torch backend (no TensorFlow).

Introduced in lab 03's Keras section. The networks follow Radford, Metz &
Chintala (2016), DCGAN: a generator that projects z and doubles the side twice
with transposed convolutions (batch norm and ReLU between, tanh at the end),
and a discriminator of strided convolutions with LeakyReLU. The model follows
keras-io's "DCGAN to generate face images": a keras.Model holding both
networks, `compile(d_optimizer, g_optimizer)`, and its own `train_step` that
makes one discriminator step, then one generator step, written torch-style
(zero the gradients, forward, `backward()`, `optimizer.apply`) as in keras-io's
"Customizing what happens in fit() with PyTorch". The losses and the R1
penalty are the very functions of `gencourse.gan` (Keras layers return torch
tensors on this backend). Images are channels-first, (N, C, S, S) in [0, 1],
as for the PyTorch GAN. Only unconditional models are provided.
"""

from __future__ import annotations

import keras  # gencourse.keras has set KERAS_BACKEND=torch
import torch
from keras import layers

from .. import validate
from ..contract import sampler
from ..diffusion import draw_normal
from ..gan import GANConfig, discriminator_loss, generator_loss, r1_penalty
from . import apply_gradients, tracked

CF = "channels_first"   # (N, C, H, W), as torch and the rest of the course


def make_generator(config: GANConfig) -> keras.Sequential:
    """z (B, latent_dim) -> (2 base, S/4, S/4) -> (base, S/2, S/2) -> (C, S, S) (Radford et al., 2016)."""
    c, side, _ = config.shape
    s, b = side // 4, config.base
    return keras.Sequential([
        keras.Input((config.latent_dim,)),
        layers.Dense(2 * b * s * s, use_bias=False), layers.BatchNormalization(momentum=0.9), layers.ReLU(),
        layers.Reshape((2 * b, s, s)),
        layers.Conv2DTranspose(b, 4, strides=2, padding="same", data_format=CF, use_bias=False),
        layers.BatchNormalization(axis=1, momentum=0.9), layers.ReLU(),
        layers.Conv2DTranspose(c, 4, strides=2, padding="same", data_format=CF,
                               activation="tanh" if config.rescale else None),
    ], name="generator")


def make_discriminator(config: GANConfig) -> keras.Sequential:
    """x (B, C, S, S) -> strided convolutions with LeakyReLU(0.2) -> one logit (B, 1) (Radford et al., 2016)."""
    b = config.base
    return keras.Sequential([
        keras.Input(tuple(config.shape)),
        layers.Conv2D(b, 4, strides=2, padding="same", data_format=CF), layers.LeakyReLU(0.2),
        layers.Conv2D(2 * b, 4, strides=2, padding="same", data_format=CF), layers.LeakyReLU(0.2),
        layers.Flatten(), layers.Dense(1),
    ], name="discriminator")


class KerasGAN(keras.Model):
    """A DCGAN trained by `fit(images)` with a custom train_step: one D step, then one G step (lab 03).

    Built from a `gencourse.gan.GANConfig` with network='dcgan' (shape, latent_dim,
    base, loss, r1, betas, rescale); `model(z)` and `sample(n)` give images
    (n, C, S, S) in [0, 1]. `compile(d_optimizer, g_optimizer)` takes one
    optimizer per player; `compile(optimizer=opt)` gives each a copy of opt,
    and with neither both get Adam(2e-3) with the config's betas (DCGAN's
    2e-4 is for 64x64 images and long runs; 2e-3 suits lab 03's 8x8 digits).
    """

    likelihood = None

    def __init__(self, config: GANConfig, **kwargs):
        super().__init__(**kwargs)
        validate.instance("config", config, GANConfig)               # its fields are checked when it is made
        if config.network != "dcgan":
            raise ValueError(f"the Keras GAN is the DCGAN: set config.network='dcgan', got {config.network!r}")
        if config.num_classes:
            raise ValueError("the Keras version is unconditional: leave config.num_classes as None")
        self.config = config
        self.generator = make_generator(config)
        self.discriminator = make_discriminator(config)
        self.loss_tracker = keras.metrics.Mean(name="loss")        # the discriminator's loss
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.discriminator(self(torch.zeros(2, config.latent_dim)))   # create the weights now

    def compile(self, d_optimizer=None, g_optimizer=None, *, optimizer=None, **kwargs):
        """One optimizer per player, each built on its own player's weights. Keras' `model.optimizer`
        is the discriminator's."""
        if optimizer is None:
            optimizer = keras.optimizers.Adam(2e-3, beta_1=self.config.betas[0], beta_2=self.config.betas[1])
        copy = lambda opt: opt.__class__.from_config(opt.get_config())   # noqa: E731
        d_optimizer = copy(optimizer) if d_optimizer is None else d_optimizer
        g_optimizer = copy(optimizer) if g_optimizer is None else g_optimizer
        if g_optimizer is d_optimizer:
            raise ValueError("the two players need two optimizers: pass different d_optimizer and g_optimizer")
        for opt, player in ((d_optimizer, self.discriminator), (g_optimizer, self.generator)):
            if not opt.built:
                opt.build(player.trainable_variables)
        super().compile(optimizer=d_optimizer, **kwargs)
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer

    @property
    def metrics(self):
        return [self.loss_tracker, self.g_loss_tracker]

    def call(self, z, training=None):
        """Latents (B, latent_dim) -> images (B, C, S, S) in [0, 1]."""
        x = self.generator(z, training=training)
        return ((x + 1) / 2).clamp(0, 1) if self.config.rescale else x

    # -- the two players' losses; images in model space ([-1, 1] with config.rescale)
    def _real(self, data) -> torch.Tensor:
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = validate.tensor("x", torch.as_tensor(x), dtype="float", shape=(None, *self.config.shape))
        x = x.to(self._device())
        return 2 * x - 1 if self.config.rescale else x

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _latents(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, device=self._device())

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss, plus config.r1 / 2 times the R1 penalty when gradients are on."""
        use_r1 = self.config.r1 > 0 and torch.is_grad_enabled()
        real = real.detach().requires_grad_(use_r1)
        real_logits = self.discriminator(real)[:, 0]
        loss = discriminator_loss(real_logits, self.discriminator(fake)[:, 0], self.config.loss)
        return loss + self.config.r1 / 2 * r1_penalty(real_logits, real) if use_r1 else loss

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """The generator's loss on its own samples (not detached)."""
        return generator_loss(self.discriminator(fake)[:, 0], self.config.loss)

    def loss_terms(self, data) -> dict:
        """{"loss": the discriminator's loss, "d_loss" (the same), "g_loss"} on a batch of images, no update."""
        real = self._real(data)
        fake = self.generator(self._latents(len(real)), training=False)
        d_loss = self.d_loss(real, fake.detach())
        return {"loss": d_loss, "d_loss": d_loss, "g_loss": self.g_loss(fake)}

    def train_step(self, data):
        real = self._real(data)
        self.zero_grad()                                # the discriminator: real against detached fakes
        fake = self.generator(self._latents(len(real)), training=True).detach()
        d_loss = self.d_loss(real, fake)
        apply_gradients(self.d_optimizer, d_loss, self.discriminator.trainable_weights)
        self.zero_grad()                                # the generator, judged by the updated discriminator
        g_loss = self.g_loss(self.generator(self._latents(len(real)), training=True))
        apply_gradients(self.g_optimizer, g_loss, self.generator.trainable_weights)
        self.loss_tracker.update_state(d_loss.detach())
        self.g_loss_tracker.update_state(g_loss.detach())
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        return tracked(self, self.loss_terms(data))

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, S, S) in [0, 1], one generator pass each (lab 03)."""
        z = draw_normal((n, self.config.latent_dim), generator)
        return self(z.to(self._device()), training=False)
