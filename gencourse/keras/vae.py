"""The VAE of lab 04 in Keras 3, on the torch backend (no TensorFlow).

Introduced in lab 04's Keras section. The model follows keras-io's
"Variational AutoEncoder" (fchollet): an encoder that gives (z_mean,
z_log_var), a decoder, and a keras.Model whose own `train_step` draws z by the
reparameterisation trick and reports the total loss, the reconstruction loss
and the KL, each with a Mean tracker. The step is written torch-style (zero the
gradients, forward, `backward()`, `optimizer.apply`) as in keras-io's
"Customizing what happens in fit() with PyTorch".

What is the same as the PyTorch `gencourse.vae.VAE`: the config (`VAEConfig`),
the networks (MLPs with SiLU, or two strided convolutions and two transposed
ones), and the maths, which are the very functions of `gencourse.vae` (Keras
layers return torch tensors on this backend): `negative_elbo` (with
`reparameterize` and `gaussian_kl`), `decoder_log_likelihood` for Bernoulli and
Gaussian decoders, and `iw_bound` for `log_prob`. So "recon" and "kl" are in
nats per example, summed over the pixels as in keras-io. Images are
channels-first, (N, C, S, S) in [0, 1], as everywhere in the course.
"""

from __future__ import annotations

import math

import keras  # gencourse.keras has set KERAS_BACKEND=torch
import torch
from keras import layers

from .. import validate
from ..contract import evaluating, sampler
from ..diffusion import draw_normal
from ..vae import VAEConfig, decoder_log_likelihood, decoder_mean, iw_log_prob, negative_elbo
from . import apply_gradients, tracked

CF = "channels_first"   # (N, C, H, W), as torch and the rest of the course


def make_encoder(config: VAEConfig) -> keras.Sequential:
    """x (B, *shape) -> (B, 2 latent_dim): mu and logvar side by side (chapter 4). The conv network:
    (C, S, S) -> (b, S/2, S/2) -> (2b, S/4, S/4) -> flattened -> Dense, as `gencourse.vae.ConvEncoder`."""
    if config.network == "mlp":
        body = [layers.Flatten()] + [layers.Dense(config.hidden, activation="silu")
                                     for _ in range(config.depth)]
    else:
        b = config.base
        body = [layers.Conv2D(b, 4, strides=2, padding="same", data_format=CF, activation="silu"),
                layers.Conv2D(2 * b, 4, strides=2, padding="same", data_format=CF, activation="silu"),
                layers.Flatten()]
    head = layers.Dense(2 * config.latent_dim)
    return keras.Sequential([keras.Input(tuple(config.shape)), *body, head], name="encoder")


def make_decoder(config: VAEConfig) -> keras.Sequential:
    """z (B, latent_dim) -> the decoder's parameters (B, *shape): logits or means (chapter 4). The conv
    network: Dense -> (2b, S/4, S/4) -> (b, S/2, S/2) -> (C, S, S), as `gencourse.vae.ConvDecoder`."""
    if config.network == "mlp":
        body = [layers.Dense(config.hidden, activation="silu") for _ in range(config.depth)]
        body += [layers.Dense(math.prod(config.shape)), layers.Reshape(tuple(config.shape))]
    else:
        c, side, _ = config.shape
        s, b = side // 4, config.base
        body = [layers.Dense(2 * b * s * s, activation="silu"), layers.Reshape((2 * b, s, s)),
                layers.Conv2DTranspose(b, 4, strides=2, padding="same", data_format=CF, activation="silu"),
                layers.Conv2DTranspose(c, 4, strides=2, padding="same", data_format=CF)]
    return keras.Sequential([keras.Input((config.latent_dim,)), *body], name="decoder")


class KerasVAE(keras.Model):
    """A VAE trained by `fit(images)` with a custom train_step, as keras-io's VAE (lab 04).

    Built from a `gencourse.vae.VAEConfig` (shape, latent_dim, network 'mlp' or
    'conv', hidden, depth, base, decoder 'bernoulli' or 'gaussian', beta,
    iw_samples). `loss_terms(batch)` -> {"loss", "recon", "kl", "nll"} as
    `VAE.loss`; `fit` reports loss, recon and kl. likelihood = "bound":
    `log_prob(x)` is the importance-weighted bound. `sample(n)` decodes
    z ~ N(0, I) to the decoder's mean; `model(x)` reconstructs x.
    """

    likelihood = "bound"

    def __init__(self, config: VAEConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = validate.instance("config", config, VAEConfig)   # its fields are checked already
        if config.decoder not in ("bernoulli", "gaussian"):
            raise ValueError(f"the Keras VAE has Bernoulli and Gaussian decoders, not {config.decoder!r}; "
                             "gencourse.vae.VAE has the categorical one")
        self.encoder = make_encoder(config)
        self.decoder = make_decoder(config)
        # log sigma per data dimension of the Gaussian decoder (learnt); the Bernoulli one has none
        self.log_scale = None
        if config.decoder == "gaussian":
            self.log_scale = self.add_weight(shape=tuple(config.shape), name="log_scale",
                                             initializer=keras.initializers.Constant(-1.0))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.recon_tracker = keras.metrics.Mean(name="recon")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self(torch.zeros(1, *config.shape))                  # create the weights now, not in fit

    @property
    def metrics(self):
        return [self.loss_tracker, self.recon_tracker, self.kl_tracker]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _x(self, x) -> torch.Tensor:
        x = validate.tensor("x", torch.as_tensor(x), dtype="float", shape=(None, *self.config.shape))
        return x.to(self.device)

    # -- what gencourse.vae's functions ask of a model: encode and log_likelihood, on torch tensors
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x): (mu, logvar), each (B, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example (B,), by `gencourse.vae.decoder_log_likelihood`."""
        log_scale = None if self.log_scale is None else self.log_scale.value
        return decoder_log_likelihood(self.config.decoder, x, self.decoder(z), log_scale)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean for latents z (B, latent_dim): (B, *shape); images kept in [0, 1]."""
        return decoder_mean(self.config, self.decoder(z))

    def call(self, x, training=None):
        """x (B, *shape) -> the decoder's mean at the encoder's mean."""
        return self.decode(self.encode(x)[0])

    # -- training, as keras-io's VAE: one loss, three trackers
    def loss_terms(self, data) -> dict:
        """{"loss": recon + beta kl, "recon", "kl", "nll": recon + kl} of a batch of images, in nats per
        example, one z per image: `gencourse.vae.negative_elbo`."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return negative_elbo(self, self._x(x), self.config.beta)

    def _logs(self, terms: dict) -> dict:
        self.recon_tracker.update_state(terms["recon"].detach())
        self.kl_tracker.update_state(terms["kl"].detach())
        return {**tracked(self, {"loss": terms["loss"].detach()}),
                "recon": self.recon_tracker.result(), "kl": self.kl_tracker.result()}

    def train_step(self, data):
        self.zero_grad()                           # torch-style: clear, forward, backward, apply
        terms = self.loss_terms(data)
        apply_gradients(self.optimizer, terms["loss"], self.trainable_weights)
        return self._logs(terms)

    def test_step(self, data):
        return self._logs(self.loss_terms(data))

    # -- the family contract
    def log_prob(self, x: torch.Tensor, k: int | None = None, generator: torch.Generator | None = None,
                 chunk: int = 64) -> torch.Tensor:
        """A lower bound on log p(x) per example (B,), in nats: the K-sample importance-weighted bound,
        K = config.iw_samples unless given, as `VAE.log_prob` (chapter 4)."""
        return iw_log_prob(self, self._x(x), k, generator, chunk)

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples (n, *shape): the decoder's mean at z ~ N(0, I) (chapter 4)."""
        return self.decode(draw_normal((n, self.config.latent_dim), generator).to(self.device))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's mean at the encoder's mean: what the autoencoder keeps of x (chapter 4)."""
        with evaluating(self):
            return self(self._x(x))
