"""The diffusion model of lab 02 in Keras 3, on the torch backend (no TensorFlow).

Introduced in lab 02's Keras section. The network is the residual MLP
denoiser of gencourse.diffusion written with Keras layers; the process is the
very same `NoiseSchedule` object (plain torch tensors, which is what Keras
layers take and return on the torch backend). Training follows keras-io's
"Customizing what happens in fit() with PyTorch": a `train_step` that zeroes
the gradients, runs the forward pass, calls `loss.backward()` and hands the
gradients to `optimizer.apply`. Only unconditional models are provided.
"""

from __future__ import annotations

import math

import keras  # gencourse.keras has set KERAS_BACKEND=torch
import torch
from keras import layers, ops

from .. import validate
from ..contract import sampler
from ..diffusion import DiffusionConfig, NoiseSchedule, draw_normal, reverse_process
from . import torch_update, tracked


def sinusoidal(t, dim: int, max_period: float = 10_000.0):
    """Timesteps (B,) -> (B, dim) sines and cosines, as gencourse.nn.SinusoidalEmbedding (lab 02)."""
    half = dim // 2
    freqs = ops.exp(-math.log(max_period) * ops.arange(half, dtype="float32") / half)
    angles = ops.cast(t, "float32")[:, None] * freqs[None, :]
    return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=1)


class KerasDiffusion(keras.Model):
    """Noise prediction with a residual MLP, trained by `fit(images)` with a custom train_step (lab 02).

    Images (N, *config.shape) in [0, 1]; `sample(n, steps=...)` runs DDIM with the shared schedule
    and the same sampling loop as the PyTorch model (`gencourse.diffusion.reverse_process`).
    """

    likelihood = None

    def __init__(self, config: DiffusionConfig, **kwargs):
        super().__init__(**kwargs)
        validate.instance("config", config, DiffusionConfig)
        if config.num_classes:
            raise ValueError("the Keras version is unconditional: leave config.num_classes as None")
        self.config = config
        self.schedule = NoiseSchedule.make(config.schedule, config.timesteps)
        self.dim = math.prod(config.shape)
        self.time1 = layers.Dense(config.hidden, activation="silu")
        self.time2 = layers.Dense(config.hidden)
        self.inp = layers.Dense(config.hidden)
        self.blocks = [(layers.Dense(config.hidden, activation="silu"), layers.Dense(config.hidden))
                       for _ in range(config.depth)]
        self.out = layers.Dense(self.dim)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self((ops.zeros((1, self.dim)), ops.zeros((1,))))  # create the weights now, not at fit's first batch

    def call(self, inputs):
        x, t = inputs                                                  # (B, dim), (B,)
        emb = self.time2(self.time1(sinusoidal(t, self.config.emb_dim)))
        h = self.inp(x)
        for dense1, dense2 in self.blocks:
            h = h + dense2(dense1(ops.silu(h + emb)))                  # residual block, as MLPDenoiser
        return self.out(ops.silu(h))

    @property
    def metrics(self):
        return [self.loss_tracker]

    def loss_terms(self, data) -> dict:
        """{"loss": the noise-prediction error} of a batch of images (B, *shape) in [0, 1]."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = torch.as_tensor(x)
        x0 = x.reshape(len(x), -1)
        x0 = 2 * x0 - 1 if self.config.rescale else x0
        t = torch.randint(0, self.schedule.timesteps, (len(x0),), device=x0.device)
        eps = torch.randn_like(x0)
        xt = self.schedule.add_noise(x0, eps, t)
        return {"loss": ops.mean(ops.square(self((xt, t)) - eps))}

    def train_step(self, data):
        self.zero_grad()                                     # torch-style: clear, forward, backward, apply
        return torch_update(self, self.loss_terms(data)["loss"])

    def test_step(self, data):
        return tracked(self, self.loss_terms(data))

    def predict_noise(self, xt: torch.Tensor, t: int) -> torch.Tensor:
        """eps_pred at step t for flattened xt (B, dim), clipped as DiffusionModel.predict_noise."""
        eps_pred = self((xt, torch.full((len(xt),), t, device=xt.device)), training=False)
        return eps_pred if self.config.clip is None else self.schedule.clip_noise(xt, eps_pred, t, self.config.clip)

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, steps: int = 20) -> torch.Tensor:
        """n images (n, *shape) in [0, 1] by deterministic DDIM in `steps` steps (lab 02)."""
        x = draw_normal((n, self.dim), generator).to(self.out.kernel.value.device)
        *_, x = reverse_process(self, x, steps=steps, generator=generator)   # every state; keep the last
        x = x.view(n, *self.config.shape)
        return ((x + 1) / 2).clamp(0, 1) if self.config.rescale else x
