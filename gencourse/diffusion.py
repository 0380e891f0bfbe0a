"""Diffusion models: a noise schedule, a denoising network, DDPM and DDIM samplers, guidance.

Introduced in chapter 2 and lab 02. The papers it follows:
- Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic Models" (DDPM):
  the forward process, the noise-prediction loss, the reverse step.
- Nichol & Dhariwal (2021), "Improved DDPM": the cosine schedule, and the
  linear schedule rescaled for fewer than 1000 steps.
- Song, Meng & Ermon (2021), "Denoising Diffusion Implicit Models" (DDIM):
  sampling on a subsequence of the steps, deterministic when eta = 0.
- Ho & Salimans (2022), "Classifier-Free Diffusion Guidance": one network,
  trained with labels dropped at random, that predicts the noise with and
  without its label; the two predictions are extrapolated at sampling time.

As in diffusers and denoising-diffusion-pytorch, the network is kept apart
from the process. `NoiseSchedule` holds the maths of the process (`add_noise`
for training, `step` and `ddim_step` for sampling) and knows nothing of
networks; a denoiser maps (x_t, t, y) to a prediction of the noise and knows
nothing of schedules; `DiffusionModel` joins them and meets the family
contract (`gencourse.contract`); the samplers `ddpm_sample` and `ddim_sample`
are plain loops over the timesteps, and `trajectory` keeps every state.

Notation (ASCII for the paper's symbols; book/notation.md has the table).
The book numbers the steps t = 1 .. T, with x_0 the data and x_T pure noise.
The code indexes its arrays from 0, so its `t` runs over range(T) = 0 .. T-1
and stands for the book's step t + 1: betas[t], alphas[t] and alpha_bar[t]
are the book's beta_{t+1}, alpha_{t+1} = 1 - beta_{t+1} and
alpha_bar_{t+1} = alpha_1 * ... * alpha_{t+1}; add_noise(x0, eps, t) draws the
book's x_{t+1}; step(xt, eps_pred, t) goes from the book's x_{t+1} to x_t, and
at t = 0 returns the data x_0. t_prev = -1 stands for the book's step 0, the
data itself (alpha_bar = 1). x0 is the data, xt a noisy version of it, eps
the standard Gaussian noise, eps_pred the network's estimate of eps.
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

SCHEDULES = ("linear", "cosine")
NETWORKS = ("mlp", "unet")


# ----------------------------------------------------------------------------- config

@dataclass
class DiffusionConfig:
    shape: tuple = (1, 8, 8)         # one example: (2,) for 2-D points, (C, H, W) for images
    timesteps: int = 300             # T, the number of noise levels (Ho et al. use 1000)
    schedule: str = "cosine"         # 'linear' (Ho et al., rescaled to T) or 'cosine' (Nichol & Dhariwal)
    network: str = "mlp"             # 'mlp' on flattened inputs, or 'unet' (gencourse.nn.TinyUNet; images)
    hidden: int = 256                # MLP width
    depth: int = 3                   # MLP hidden layers
    base: int = 32                   # UNet channels at full resolution
    emb_dim: int = 64                # size of the time (and label) embedding
    num_classes: int | None = None   # set (e.g. 10) for a class-conditional model
    label_dropout: float = 0.2       # chance that a training label is replaced by "no label" (for guidance)
    rescale: bool = True             # map data from [0, 1] to [-1, 1] and back (images); False for 2-D points
    clip: float | None = 1.0         # keep the x0 each noise estimate implies in [-clip, clip]; None for 2-D points

    @classmethod
    def fast(cls, **changes):
        """8x8 digits, an MLP denoiser, 300 steps: trains in under a minute on a laptop CPU."""
        return cls(**changes)

    @classmethod
    def full(cls, **changes):
        """28x28 MNIST, the small UNet, 1000 steps (a GPU)."""
        return cls(**{**dict(shape=(1, 28, 28), timesteps=1000, network="unet", base=64, emb_dim=128), **changes})

    @classmethod
    def toy(cls, **changes):
        """2-D points (the swiss roll of lab 02): a small MLP, no rescaling."""
        return cls(**{**dict(shape=(2,), timesteps=200, hidden=128, depth=3, emb_dim=32, rescale=False, clip=None), **changes})

    @classmethod
    def latent(cls, dim: int, **changes):
        """Vectors of `dim` numbers: an autoencoder's latents (latent diffusion, chapter 4), no rescaling;
        a narrower MLP than for pixels, since a few latents carry what 64 pixels do."""
        validate.positive_int("dim", dim)
        return cls(**{**dict(shape=(dim,), hidden=128, depth=3, rescale=False, clip=None), **changes})


def draw_normal(shape, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise drawn where the generator lives (the CPU by default), so that
    a seed gives the same samples whichever device the model is on (lab 02)."""
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=where)


# ----------------------------------------------------------------------------- the process

def linear_betas(timesteps: int) -> torch.Tensor:
    """Ho et al.'s betas, 1e-4 to 0.02 over 1000 steps, scaled by 1000 / T for other T (chapter 2)."""
    validate.positive_int("timesteps", timesteps)
    scale = 1000 / timesteps
    return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's schedule: alpha_bar follows cos^2, betas clipped at 0.999 (chapter 2)."""
    validate.positive_int("timesteps", timesteps)
    u = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


class NoiseSchedule:
    """The forward process and the maths of one reverse step; no network inside (chapter 2).

    Holds betas (T,), alphas = 1 - betas, alpha_bar = cumprod(alphas) and
    alpha_bar_prev (alpha_bar shifted right, with 1 for t = 0), as float32.
    Index t holds the book's step t + 1 (module docstring): alpha_bar[t] is the
    book's alpha_bar_{t+1}, alpha_bar_prev[t] its alpha_bar_t.
    """

    def __init__(self, betas: torch.Tensor):
        validate.tensor("betas", betas, ndim=1, dtype="float")
        if len(betas) == 0 or betas.min() <= 0 or betas.max() >= 1:
            raise ValueError("betas must be a non-empty 1-D tensor with every value in (0, 1)")
        alpha_bar = torch.cumprod(1 - betas.double(), dim=0)
        self.betas = betas.float()
        self.alphas = (1 - betas.double()).float()
        self.alpha_bar = alpha_bar.float()
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]]).float()

    @classmethod
    def make(cls, name: str, timesteps: int) -> "NoiseSchedule":
        """A 'linear' or 'cosine' schedule of `timesteps` steps (chapter 2)."""
        validate.choice("name", name, SCHEDULES)
        return cls(linear_betas(timesteps) if name == "linear" else cosine_betas(timesteps))

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) of each step (T,); index t is the book's
        step t + 1 (chapter 2)."""
        return self.alpha_bar / (1 - self.alpha_bar)

    def _t(self, t: int, name: str = "t", allow_minus_one: bool = False) -> int:
        if isinstance(t, torch.Tensor) and t.numel() == 1:
            t = int(t)
        if isinstance(t, bool) or not isinstance(t, int):
            raise TypeError(f"{name} must be an int timestep, got {type(t).__name__}")
        low = -1 if allow_minus_one else 0
        if not low <= t < self.timesteps:
            raise ValueError(f"{name} must lie in [{low}, {self.timesteps - 1}] for a schedule of "
                             f"{self.timesteps} steps, got {t}")
        return t

    def _abar(self, t: int, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar at step t as a scalar tensor on `like`'s device; 1 for t = -1."""
        return self.alpha_bar[t].to(like) if t >= 0 else torch.ones((), dtype=like.dtype, device=like.device)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(xt | x0) in closed form: xt = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps (lab 02).

        x0 and eps have the same shape (B, ...); t (B,) holds one integer index in 0 .. T-1 per
        example, and the result is the book's x_{t+1}.
        """
        validate.tensor("x0", x0, dtype="float")
        validate.tensor("eps", eps, shape=tuple(x0.shape), dtype="float")
        validate.tensor("t", t, shape=(x0.shape[0],), dtype="int", low=0, high=self.timesteps - 1)
        abar = self.alpha_bar.to(x0.device)[t].view(-1, *[1] * (x0.dim() - 1))  # (B, 1, ...) to broadcast
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    def _noise(self, xt: torch.Tensor, noise, generator) -> torch.Tensor:
        if noise is None:
            return draw_normal(xt.shape, generator).to(xt)
        return validate.tensor("noise", noise, shape=tuple(xt.shape), dtype="float")

    def _check_step(self, xt: torch.Tensor, eps_pred: torch.Tensor) -> None:
        validate.tensor("xt", xt, dtype="float")
        validate.tensor("eps_pred", eps_pred, shape=tuple(xt.shape), dtype="float")

    def step(self, xt: torch.Tensor, eps_pred: torch.Tensor, t: int, *, generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """One DDPM reverse step (Ho et al.'s Algorithm 2) (lab 02): from the state at index t, the
        book's x_{t+1}, to the one a step less noisy, the book's x_t.

        With beta, alpha, alpha_bar and alpha_bar_prev taken at index t:
        mean = (xt - beta / sqrt(1 - alpha_bar) * eps_pred) / sqrt(alpha), plus sigma * noise
        with sigma^2 the variance of the true posterior q(x_t | x_{t+1}, x_0) (book's indices),
        beta (1 - alpha_bar_prev) / (1 - alpha_bar). No noise is added at t = 0, the last step,
        which returns the book's x_0.
        """
        t = self._t(t)
        self._check_step(xt, eps_pred)
        beta, alpha, abar = (v[t].to(xt) for v in (self.betas, self.alphas, self.alpha_bar))
        mean = (xt - beta / (1 - abar).sqrt() * eps_pred) / alpha.sqrt()
        if t == 0:
            return mean
        var = beta * (1 - self.alpha_bar_prev[t].to(xt)) / (1 - abar)
        return mean + var.sqrt() * self._noise(xt, noise, generator)

    def predict_x0(self, xt: torch.Tensor, eps_pred: torch.Tensor, t: int) -> torch.Tensor:
        """The clean data implied by a noise estimate: (xt - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        abar = self._abar(self._t(t), xt)
        return (xt - (1 - abar).sqrt() * eps_pred) / abar.sqrt()

    def clip_noise(self, xt: torch.Tensor, eps_pred: torch.Tensor, t: int, clip: float) -> torch.Tensor:
        """The noise estimate whose implied clean data x0 is clipped to [-clip, clip] (chapter 2).

        diffusers' `clip_sample`: predict x0 from (xt, eps_pred), clip it, and return the eps that implies it.
        """
        x0_pred = self.predict_x0(xt, eps_pred, t).clamp(-clip, clip)
        abar = self._abar(t, xt)
        return (xt - abar.sqrt() * x0_pred) / (1 - abar).sqrt()

    def ddim_step(self, xt: torch.Tensor, eps_pred: torch.Tensor, t: int, t_prev: int, *, eta: float = 0.0,
                  generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One DDIM step from index t to any earlier index t_prev (-1: the clean data) (lab 02);
        in the book's numbering, from x_{t+1} to x_{t_prev+1}.

        x0_pred = (xt - sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_bar_t)
        sigma   = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_prev)
        x_prev  = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma^2) eps_pred + sigma * noise
        eta = 0 is deterministic; eta = 1 with t_prev = t - 1 is the DDPM step.
        """
        t = self._t(t)
        t_prev = self._t(t_prev, "t_prev", allow_minus_one=True)
        if t_prev >= t:
            raise ValueError(f"t_prev must come before t (t_prev < t), got t={t}, t_prev={t_prev}")
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
            raise ValueError(f"eta must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta!r}")
        self._check_step(xt, eps_pred)
        abar, abar_prev = self._abar(t, xt), self._abar(t_prev, xt)
        x0_pred = (xt - (1 - abar).sqrt() * eps_pred) / abar.sqrt()
        sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).sqrt()
        direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps_pred
        x_prev = abar_prev.sqrt() * x0_pred + direction
        if eta > 0 and t_prev >= 0:
            x_prev = x_prev + sigma * self._noise(xt, noise, generator)
        return x_prev

    def ddim_timesteps(self, steps: int) -> list[int]:
        """`steps` indices evenly spread over [0, T-1], from the noisiest down to 0 (chapter 2); index t
        is the book's step t + 1."""
        validate.positive_int("steps", steps)
        if steps > self.timesteps:
            raise ValueError(f"steps must be at most the schedule's {self.timesteps} timesteps, got {steps}")
        ts = torch.linspace(0, self.timesteps - 1, steps).round().long().tolist()
        return sorted(set(ts), reverse=True)


def guided_noise(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: eps_uncond + scale * (eps_cond - eps_uncond) (lab 02).

    scale 0 is the unconditional model, 1 the plain conditional one, above 1
    the prediction is pushed further in the direction the label points.
    """
    validate.tensor("eps_uncond", eps_uncond, dtype="float")
    validate.tensor("eps_cond", eps_cond, shape=tuple(eps_uncond.shape), dtype="float")
    _guidance(scale)
    return eps_uncond + scale * (eps_cond - eps_uncond)


def _guidance(scale) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"guidance scale must be a number, got {type(scale).__name__}")
    if not scale >= 0:
        raise ValueError(f"guidance scale must be >= 0 (0: unconditional, 1: conditional, >1: guided), got {scale}")
    return float(scale)


# ----------------------------------------------------------------------------- the networks

class MLPDenoiser(nn.Module):
    """A residual MLP that predicts the noise of 2-D points or small flattened images (chapter 2).

    x (B, *shape), t (B,) integer steps, y (B,) labels in [0, num_classes] where
    num_classes means "no label" -> eps_pred (B, *shape). The embedding of t
    (plus that of y) is added before every block, so each layer knows the
    noise level; each block is a gencourse.nn.MLP with a skip connection.
    """

    def __init__(self, shape: tuple, hidden: int = 512, depth: int = 3, emb_dim: int = 64,
                 num_classes: int | None = None):
        super().__init__()
        self.shape, self.num_classes = tuple(shape), num_classes
        dim = math.prod(self.shape)
        self.time = gnn.TimeEmbedding(emb_dim, hidden)
        self.label = gnn.LabelEmbedding(num_classes, hidden) if num_classes else None
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(gnn.MLP(hidden, hidden, hidden, depth=1) for _ in range(depth))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # hot code: no value checks here (they sync the device); DiffusionModel checks its inputs
        if (self.label is None) != (y is None):
            raise ValueError("pass labels y (B,) exactly when the denoiser was built with num_classes "
                             "(num_classes itself means 'no label')")
        emb = self.time(t)                                            # (B, hidden)
        if self.label is not None:
            emb = emb + self.label(y)
        h = self.inp(x.flatten(1))                                    # (B, hidden)
        for block in self.blocks:
            h = h + block(F.silu(h + emb))
        return self.out(F.silu(h)).view_as(x)


def make_denoiser(config: DiffusionConfig) -> nn.Module:
    """The noise-predicting network a config asks for: MLPDenoiser or TinyUNet (chapter 2)."""
    validate.choice("config.network", config.network, NETWORKS)
    if config.network == "mlp":
        return MLPDenoiser(config.shape, config.hidden, config.depth, config.emb_dim, config.num_classes)
    if len(config.shape) != 3:
        raise ValueError(f"the UNet needs image shapes (C, H, W), got config.shape={config.shape}")
    return gnn.TinyUNet(config.shape[0], config.base, config.emb_dim, config.num_classes)


def noise_prediction_loss(denoiser: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor,
                          eps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Ho et al.'s simple loss: mean of (eps - denoiser(x_t, t, y))^2 with x_t = add_noise(x0, eps, t)
    (chapter 2, lab 02)."""
    xt = schedule.add_noise(x0, eps, t)
    return F.mse_loss(denoiser(xt, t) if y is None else denoiser(xt, t, y), eps)


def training_loss(model: "DiffusionModel", x0: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of one step of Ho et al.'s Algorithm 1 on a batch x0 (B, *shape) in model space
    (chapter 2, lab 02): one step t per example, uniform over the code's 0 .. T-1 (the book's 1 .. T),
    noise eps ~ N(0, I), and `noise_prediction_loss` at x_t. With labels y (B,), each is first replaced
    by "no label" with chance model.config.label_dropout, so that the one network also learns the
    unconditional prediction that classifier-free guidance needs (Ho & Salimans)."""
    t = torch.randint(0, model.schedule.timesteps, (len(x0),), device=x0.device)
    eps = torch.randn_like(x0)
    if y is not None:
        y = model.denoiser.label.drop(y, model.config.label_dropout)   # learn "no label" too
    return noise_prediction_loss(model.denoiser, model.schedule, x0, t, eps, y)


# ----------------------------------------------------------------------------- the model

class DiffusionModel(nn.Module):
    """A denoiser and a schedule, joined for `train.fit()` and the samplers (chapter 2).

    loss(batch) -> {"loss": self.objective(self, x0) or, for a class-conditional
    model, self.objective(self, x0, y)}, with x0 the batch in model space:
    `training_loss` unless lab 02 plugs in the learner's. Batches are x (B, *shape)
    or (x, y) for a class-conditional model; images in [0, 1].
    sample(n, generator=..., y=..., guidance=..., steps=...) draws by DDPM, or by
    DDIM when `steps` is given. No likelihood is computed here (the ELBO of
    diffusion exists, but the course does not evaluate it).
    """

    likelihood = None

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        validate.instance("config", config, DiffusionConfig)
        if not 0 <= config.label_dropout < 1:
            raise ValueError(f"config.label_dropout must lie in [0, 1), got {config.label_dropout}")
        self.config = config
        self.shape = tuple(config.shape)
        self.num_classes = config.num_classes
        self.schedule = NoiseSchedule.make(config.schedule, config.timesteps)
        self.denoiser = make_denoiser(config)
        self.objective = training_loss   # objective(model, x0[, y]) -> the scalar loss of one batch

    # -- data space <-> model space
    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x - 1 if self.config.rescale else x

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.config.rescale else x

    def _labels(self, y, n: int) -> torch.Tensor | None:
        """Labels (n,) on the model's device, checked; an int means n copies of it."""
        if y is None:
            return None
        if not self.num_classes:
            raise ValueError("labels y need a class-conditional model (config.num_classes)")
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y, dtype=torch.long)
        validate.tensor("y", y, shape=(n,), dtype="int", low=0, high=self.num_classes - 1)
        return y.to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def loss(self, batch) -> dict[str, torch.Tensor]:
        x, y = unpack(batch)
        x0 = self.to_model(validate.tensor("x", x, dtype="float", shape=(None, *self.shape)))
        if not self.num_classes:
            return {"loss": self.objective(self, x0)}
        if y is None:
            raise ValueError("a class-conditional model trains on (images, labels) batches")
        return {"loss": self.objective(self, x0, self._labels(y, len(x0)))}

    def predict_noise(self, xt: torch.Tensor, t: int, y: torch.Tensor | None = None,
                      guidance: float | None = None) -> torch.Tensor:
        """eps_pred at step t for every example of xt (B, *shape) (chapter 2).

        Unconditional models ignore y. A class-conditional model with y=None
        predicts without a label; with labels y and a guidance scale it runs
        the network with and without the labels and combines them (`guided_noise`).
        With config.clip, the estimate is corrected so that the clean data it
        implies lies in the data's range (diffusers' `clip_sample`).
        """
        eps_pred = self._predict_noise(xt, t, y, guidance)
        return eps_pred if self.config.clip is None else self.schedule.clip_noise(xt, eps_pred, t, self.config.clip)

    def _predict_noise(self, xt, t, y, guidance):
        if guidance is not None and (y is None or not self.num_classes):
            raise ValueError("guidance needs a class-conditional model and labels y to guide towards")
        tt = torch.full((len(xt),), t, dtype=torch.long, device=xt.device)
        if not self.num_classes:
            return self.denoiser(xt, tt)
        null = self.denoiser.label.null(len(xt), xt.device)
        if y is None:
            return self.denoiser(xt, tt, null)
        if guidance is None or guidance == 1:
            return self.denoiser(xt, tt, y)
        eps_uncond, eps_cond = self.denoiser(xt.repeat(2, *[1] * (xt.dim() - 1)), tt.repeat(2),
                                             torch.cat([null, y])).chunk(2)  # one pass for both
        return guided_noise(eps_uncond, eps_cond, guidance)

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T ~ N(0, I): n examples of pure noise on the model's device (chapter 2)."""
        validate.positive_int("n", n)
        return draw_normal((n, *self.shape), generator).to(self.device)

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, y=None, guidance: float | None = None,
               steps: int | None = None, eta: float = 0.0) -> torch.Tensor:
        """n samples in data space (chapter 2): DDPM's T steps, or DDIM's `steps` when given.

        y: a label or labels (n,) of a class-conditional model; guidance: its scale.
        """
        return self.to_data(_last(self._reverse_process(n, generator, y, guidance, steps, eta)))

    def _reverse_process(self, n, generator, y, guidance, steps, eta):
        if guidance is not None:
            _guidance(guidance)
            if y is None:
                raise ValueError("guidance needs labels y to guide towards")
        return reverse_process(self, self.noise(n, generator), steps=steps, eta=eta, generator=generator,
                               y=self._labels(y, n), guidance=guidance)


# ----------------------------------------------------------------------------- sampling

def reverse_process(model, x: torch.Tensor, *, steps: int | None = None, eta: float = 0.0,
                    generator: torch.Generator | None = None, **condition):
    """Yield x_T and then the state after every reverse step, down to x_0, in model space
    (chapter 2). The loop's t counts from T-1 down to 0: the book's steps T down to 1.

    DDPM over all T steps when `steps` is None, else DDIM over `steps` evenly
    spaced ones. `model` needs a `schedule` and `predict_noise(x, t, **condition)`:
    the PyTorch and the Keras models share this loop.
    """
    yield x
    if steps is None:
        for t in reversed(range(model.schedule.timesteps)):          # T-1, ..., 0: one network pass each
            x = model.schedule.step(x, model.predict_noise(x, t, **condition), t, generator=generator)
            yield x
        return
    ts = model.schedule.ddim_timesteps(steps)
    for t, t_prev in zip(ts, ts[1:] + [-1]):
        x = model.schedule.ddim_step(x, model.predict_noise(x, t, **condition), t, t_prev, eta=eta,
                                     generator=generator)
        yield x


def _last(states):
    for x in states:
        pass
    return x


def ddpm_sample(model: DiffusionModel, n: int, *, generator: torch.Generator | None = None, y=None,
                guidance: float | None = None) -> torch.Tensor:
    """Ancestral sampling: T network passes, from x_T ~ N(0, I) down to x_0 (chapter 2).

    y: a label or labels (n,) for a class-conditional model; guidance: its scale.
    Returns samples (n, *shape) in data space.
    """
    return model.sample(n, generator=generator, y=y, guidance=guidance)


def ddim_sample(model: DiffusionModel, n: int, *, steps: int = 20, eta: float = 0.0,
                generator: torch.Generator | None = None, y=None, guidance: float | None = None) -> torch.Tensor:
    """DDIM: `steps` network passes on an evenly spaced subsequence of the timesteps (chapter 2).

    eta = 0 is deterministic given x_T; eta = 1 with steps = T is DDPM. Other
    arguments as `ddpm_sample`.
    """
    return model.sample(n, generator=generator, y=y, guidance=guidance, steps=steps, eta=eta)


def trajectory(model: DiffusionModel, n: int, *, generator: torch.Generator | None = None, y=None,
               guidance: float | None = None, steps: int | None = None, eta: float = 0.0) -> list[torch.Tensor]:
    """Every state of the reverse process in data space, on the CPU: x_T first, the sample last
    (chapter 2). The arguments are those of `DiffusionModel.sample`."""
    validate.positive_int("n", n)
    with evaluating(model):
        return [model.to_data(x).cpu() for x in model._reverse_process(n, generator, y, guidance, steps, eta)]
