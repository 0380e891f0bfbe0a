"""The RealNVP of lab 05 in Keras 3, on the torch backend (no TensorFlow), for 2-D points.

Introduced in lab 05's Keras section. The model follows keras-io's "Density
estimation using Real NVP" (Mandolini): a stack of affine coupling layers with
alternating masks on 2-D data, each coupling with an s network and a t network
made of Dense layers, s bounded by a tanh, a standard normal base, and a
keras.Model whose own `train_step` minimises the negative log-likelihood. The
step is written torch-style (zero the gradients, forward, `backward()`,
`optimizer.apply`) as in keras-io's "Customizing what happens in fit() with
PyTorch".

What is the same as the PyTorch `gencourse.flows.Flow`: the config
(`FlowConfig`, shape (2,), network 'mlp': `steps` couplings, `hidden` units,
`depth` hidden layers), the couplings' parameterisation (the last Dense layer of
each network starts at zero, so every coupling starts as the identity;
s = tanh(raw) * a learnt scale per dimension, as `gencourse.flows.AffineCoupling`),
and the maths, which are the very functions of `gencourse.flows` (Keras layers
return torch tensors on this backend): `affine_coupling` both ways and
`log_prob` (the base density at z plus the log-determinants). What is left out: Glow's ActNorm and the
LU-parameterised linear map of each flow step (keras-io's example has neither),
so a step here is one coupling, the masks alternating between the two coordinates.
"""

from __future__ import annotations

import keras  # gencourse.keras has set KERAS_BACKEND=torch
import torch
from keras import layers

from .. import validate
from ..contract import evaluating, sampler
from ..diffusion import draw_normal
from ..flows import FlowConfig, affine_coupling, checkerboard, log_prob
from . import apply_gradients, tracked


def make_network(dim: int, hidden: int, depth: int, name: str) -> keras.Sequential:
    """(B, dim) -> (B, dim): `depth` Dense layers with ReLU, then a Dense layer that starts at zero."""
    body = [layers.Dense(hidden, activation="relu") for _ in range(depth)]
    head = layers.Dense(dim, kernel_initializer="zeros", bias_initializer="zeros")
    return keras.Sequential([keras.Input((dim,)), *body, head], name=name)


class Coupling(layers.Layer):
    """One affine coupling (keras-io's `Coupling`): the coordinates where the mask is 1 pass unchanged and
    give (s, t) for the others, s = scale * tanh(s_net(m x)), t = t_net(m x) (lab 05).

    `layer(x)` -> (y, log|det dy/dx|); `layer(y, reverse=True)` -> (x, log|det dx/dy|), by
    `gencourse.flows.affine_coupling`.
    """

    def __init__(self, dim: int, parity: int, hidden: int, depth: int, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.parity = dim, parity
        self.s_net = make_network(dim, hidden, depth, f"{self.name}_s")
        self.t_net = make_network(dim, hidden, depth, f"{self.name}_t")
        self.scale = self.add_weight(shape=(dim,), initializer="ones", name="scale")
        self.built = True

    def mask(self, like: torch.Tensor) -> torch.Tensor:
        """(dim,): 1 for the coordinates that pass unchanged (alternating with the parity)."""
        return checkerboard((self.dim,), self.parity).to(like)

    def st(self, x_masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scale.value * torch.tanh(self.s_net(x_masked)), self.t_net(x_masked)

    def call(self, x, reverse: bool = False):
        return affine_coupling(x, self.mask(x), self.st, reverse=reverse)


class KerasRealNVP(keras.Model):
    """RealNVP on 2-D points, trained by `fit(points)` with a custom train_step, as keras-io's (lab 05).

    Built from a `gencourse.flows.FlowConfig` with shape (2,) and network 'mlp'
    (steps couplings, hidden, depth). likelihood = "exact": `log_prob(x)` (B,) in
    nats. `loss_terms(batch)` -> {"loss": nats per dimension, "nll": nats per
    example}, as `Flow.loss`. `to_latent(x)` -> (z, log|det dz/dx|) (also `model(x)`),
    `inverse(z)` -> x, `sample(n, generator=..., temperature=T)` = inverse(T z), z ~ N(0, I).
    """

    likelihood = "exact"

    def __init__(self, config: FlowConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = validate.instance("config", config, FlowConfig)   # its fields are checked already
        if tuple(config.shape) != (2,) or config.network != "mlp":
            raise ValueError(f"the Keras RealNVP models 2-D points: set config.shape=(2,) and network='mlp', "
                             f"got shape={tuple(config.shape)} and network={config.network!r}")
        if config.logit is not None:
            raise ValueError("the Keras RealNVP models points on the real line: leave config.logit as None")
        self.dims = 2
        self.couplings = [Coupling(self.dims, k % 2, config.hidden, config.depth, name=f"coupling_{k}")
                          for k in range(config.steps)]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self(torch.zeros(1, self.dims))                    # create the weights now, not in fit

    @property
    def metrics(self):
        return [self.loss_tracker]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _x(self, x) -> torch.Tensor:
        x = validate.tensor("x", torch.as_tensor(x), dtype="float", shape=(None, self.dims))
        return x.to(self.device)

    # -- the change of variables
    def to_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 2) -> (z (B, 2), sum of log|det dz/dx| (B,)): the couplings in order."""
        log_det = x.new_zeros(len(x))
        for coupling in self.couplings:
            x, ld = coupling(x)
            log_det = log_det + ld
        return x, log_det

    def call(self, x, training=None):
        """x (B, 2) -> (z, log|det dz/dx|), as `to_latent`."""
        return self.to_latent(x)

    def inverse_and_log_det(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, 2) -> (x (B, 2), sum of log|det dx/dz| (B,)): the couplings backwards."""
        log_det = z.new_zeros(len(z))
        for coupling in reversed(self.couplings):
            z, ld = coupling(z, reverse=True)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, 2) -> x (B, 2): the flow run backwards."""
        return self.inverse_and_log_det(z)[0]

    def log_prob(self, x) -> torch.Tensor:
        """log p(x) = log N(z; 0, I) + log|det dz/dx| per example (B,), in nats, exact (chapter 5)."""
        return log_prob(self, self._x(x))                  # model(x) -> (z, log_det), as a Flow's forward

    # -- training, as keras-io's RealNVP: the negative log-likelihood, one tracker
    def loss_terms(self, data) -> dict:
        """{"loss": nats per dimension, "nll": nats per example} of a batch of points, as `Flow.loss`."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        nll = -self.log_prob(x).mean()
        return {"loss": nll / self.dims, "nll": nll}

    def train_step(self, data):
        self.zero_grad()                           # torch-style: clear, forward, backward, apply
        terms = self.loss_terms(data)
        apply_gradients(self.optimizer, terms["loss"], self.trainable_weights)
        return tracked(self, {"loss": terms["loss"].detach()})

    def test_step(self, data):
        return tracked(self, self.loss_terms(data))

    # -- the family contract
    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
               ) -> torch.Tensor:
        """n points (n, 2): x = inverse(T z) with z ~ N(0, I) (chapter 5)."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return self.inverse(temperature * draw_normal((n, self.dims), generator).to(self.device))

    def nll(self, x) -> float:
        """The mean negative log-likelihood of points x, in nats per example, in eval mode."""
        with evaluating(self):
            return -float(self.log_prob(x).mean())

