"""The family contract (gencourse.contract), checked for every model of every family.

A new model joins by one line in MODELS: a name, a function that builds a tiny
version, a function that makes a batch, the conditions its `sample` takes, and
what one sample looks like. Keras models meet the contract through Keras' API
(`loss_terms`, `fit`), marked keras=True.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch

from gencourse import autoregressive as ar
from gencourse import baselines, contract, data, diffusion, evaluate, flows, gan, train, vae
from gencourse.train import TrainConfig


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _points(n=32):
    return data.toy2d("eight_gaussians", n=n)


def _binary(n=16, side=4):
    return (torch.rand(n, 1, side, side, generator=_g(1)) < 0.3).float()


def _windows(n=8, length=9, vocab=7):
    return torch.randint(0, vocab, (n, length), generator=_g(2))


def _digits(n=32, labels=False):
    x, y = data.digits("train").tensors
    return (x[:n], y[:n] % 3) if labels else x[:n]


def _tiny_gpt():
    return ar.GPTConfig(vocab_size=7, block_size=12, n_layer=1, n_head=2, n_embd=16)


def _keras_gpt():
    from gencourse.keras import autoregressive as kar
    return kar.CharGPT(_tiny_gpt())


def _keras_diffusion():
    from gencourse.keras import diffusion as kd
    return kd.KerasDiffusion(diffusion.DiffusionConfig.fast(hidden=64, depth=1, timesteps=20))


def _keras_gan():
    from gencourse.keras import gan as kg
    return kg.KerasGAN(gan.GANConfig.fast(network="dcgan", base=8, r1=1.0))


def _keras_vae():
    from gencourse.keras import vae as kv
    return kv.KerasVAE(vae.VAEConfig.fast(shape=(1, 4, 4), latent_dim=4, hidden=32, iw_samples=50))


def _keras_realnvp():
    from gencourse.keras import flows as kf
    return kf.KerasRealNVP(flows.FlowConfig.toy(hidden=16, steps=4))


def _dequantized_digits():
    return data.dequantize(_digits(), 17, _g(5))


def _tiny_vqvae():
    torch.manual_seed(0)
    return vae.VQVAE(vae.VQVAEConfig.fast(codes=8, code_dim=4, base=8))


def _codes(n=16):
    return torch.randint(0, 8, (n, 4, 4), generator=_g(4))


def _latent_diffusion():
    tiny = vae.VAE(vae.VAEConfig.fast(latent_dim=4, hidden=32, decoder="gaussian"))
    return vae.LatentDiffusion(tiny, diffusion.DiffusionConfig.latent(4, hidden=64, depth=2, timesteps=20), 1.5)


@dataclass
class Model:
    name: str
    make: Callable                    # () -> an untrained tiny model
    batch: Callable                   # () -> one training batch
    shape: tuple                      # one sample's shape
    condition: dict = field(default_factory=dict)   # keywords for sample()
    tokens: bool = False              # samples are token ids (long) rather than floats in a range
    low_high: tuple | None = (0.0, 1.0)
    steps: int = 150                  # overfitting one batch: steps, learning rate, loss ratio to reach
    lr: float = 1e-2
    ratio: float = 0.5
    keras: bool = False
    score: Callable | None = None     # what falls when it overfits (model, batch) -> float; default: the loss
    train: Callable | None = None     # (model, batch, steps) for a model that train.fit does not train


def _distance_to_batch(model, batch) -> float:
    """For a model whose loss is a game (the GAN): how far its samples lie from the one batch it saw."""
    x = batch[0] if isinstance(batch, tuple) else batch
    condition = {"y": batch[1][:1].item()} if isinstance(batch, tuple) else {}
    samples = model.sample(64, generator=_g(3), **condition)
    return evaluate.nearest_distance(samples.flatten(1), x.flatten(1))


def _exp_loss(model, batch) -> float:
    """For a flow: exp of its loss (nats per dimension). A continuous density's nll can be negative (the
    dequantised digits' starts below zero, as the points' ends there when overfit), so a ratio of losses
    means nothing; a ratio r of exp(loss) is a fall of log(1 / r) nats per dimension, whatever the sign."""
    with torch.no_grad():
        terms = model.loss_terms(batch) if hasattr(model, "loss_terms") else model.loss(batch)
    return math.exp(float(terms["loss"]))


def _em(model, batch, steps):
    """The mixture of independent pixels trains by EM's closed-form steps, not by gradients."""
    for _ in range(steps):
        model.log_weights, model.probs = baselines.em_step(batch, model.log_weights, model.probs)


MODELS = [
    Model("gaussian_mixture", lambda: baselines.GaussianMixture(8), _points, (2,), low_high=None, lr=5e-2,
          ratio=0.6),
    Model("independent_pixels", lambda: baselines.IndependentPixels((1, 4, 4)),
          lambda: _binary(1).repeat(16, 1, 1, 1), (1, 4, 4), lr=1e-1),
    Model("bernoulli_mixture", lambda: baselines.BernoulliMixture(3, shape=(1, 4, 4), generator=_g(6)),
          lambda: _binary(2).repeat(8, 1, 1, 1), (1, 4, 4), steps=5, train=_em),
    Model("gpt", lambda: ar.GPT(_tiny_gpt()), _windows, (6,), dict(prompt=torch.tensor([1, 2]), max_new_tokens=4),
          tokens=True, low_high=(0, 6)),
    Model("image_ar", lambda: ar.ImageAR(ar.ImageARConfig(side=4, n_layer=1, n_head=2, n_embd=16, dropout=0.0)),
          _binary, (1, 4, 4)),
    Model("image_ar_conditional",
          lambda: ar.ImageAR(ar.ImageARConfig(side=4, num_classes=3, n_layer=1, n_head=2, n_embd=16, dropout=0.0)),
          lambda: (_binary(), torch.arange(16) % 3), (1, 4, 4), dict(y=2)),
    Model("diffusion_mlp", lambda: diffusion.DiffusionModel(diffusion.DiffusionConfig.fast(hidden=64, depth=2,
                                                                                           timesteps=20)),
          _digits, (1, 8, 8), ratio=0.7),
    Model("diffusion_ddim_toy",
          lambda: diffusion.DiffusionModel(diffusion.DiffusionConfig.toy(hidden=64, depth=2, timesteps=20)),
          _points, (2,), dict(steps=5), low_high=None, ratio=0.7),
    Model("diffusion_unet_guided",
          lambda: diffusion.DiffusionModel(diffusion.DiffusionConfig.fast(network="unet", base=8, emb_dim=16,
                                                                          timesteps=20, num_classes=3)),
          lambda: _digits(labels=True), (1, 8, 8), dict(y=1, guidance=2.0, steps=4), steps=100, ratio=0.8),
    Model("gan_mlp_toy", lambda: gan.GAN(gan.GANConfig.toy(hidden=32, depth=2)), _points, (2,), low_high=None,
          lr=1e-2, score=_distance_to_batch),
    Model("gan_dcgan_conditional",
          lambda: gan.GAN(gan.GANConfig.fast(network="dcgan", base=8, num_classes=3, r1=1.0)),
          lambda: _digits(labels=True), (1, 8, 8), dict(y=1), lr=2e-3, score=_distance_to_batch, ratio=0.7),
    Model("vae_mlp_bernoulli", lambda: vae.VAE(vae.VAEConfig.fast(shape=(1, 4, 4), latent_dim=4, hidden=32,
                                                                 iw_samples=50)),
          lambda: _binary(2).repeat(8, 1, 1, 1), (1, 4, 4), lr=1e-2),
    Model("vae_conv_gaussian", lambda: vae.VAE(vae.VAEConfig.fast(network="conv", base=8, decoder="gaussian",
                                                                 iw_samples=50)),
          _digits, (1, 8, 8), lr=1e-2),
    Model("vqvae", _tiny_vqvae, _digits, (1, 8, 8), lr=1e-2, ratio=0.8),   # grey pixels: cross-entropy has a floor
    Model("vq_code_prior", lambda: vae.CodePrior(_tiny_vqvae(), ar.ImageARConfig(n_layer=1, n_head=2, n_embd=16,
                                                                                   dropout=0.0)),
          _codes, (1, 8, 8)),
    Model("latent_diffusion", _latent_diffusion, _digits, (1, 8, 8), dict(steps=4), ratio=0.7),
    Model("keras_char_gpt", _keras_gpt, lambda: (_windows()[:, :-1], _windows()[:, 1:]), (6,),
          dict(prompt=torch.tensor([1, 2]), max_new_tokens=4), tokens=True, low_high=(0, 6), keras=True),
    Model("keras_diffusion", _keras_diffusion, _digits, (1, 8, 8), dict(steps=4), keras=True, ratio=0.7),
    Model("keras_dcgan", _keras_gan, _digits, (1, 8, 8), lr=1e-2, score=_distance_to_batch, ratio=0.8,
          keras=True),
    Model("keras_vae", _keras_vae, lambda: _binary(2).repeat(8, 1, 1, 1), (1, 4, 4), keras=True),
    Model("flow_toy", lambda: flows.Flow(flows.FlowConfig.toy(hidden=16, steps=4)), _points, (2,), low_high=None,
          score=_exp_loss),
    Model("flow_digits", lambda: flows.Flow(flows.FlowConfig.fast(hidden=32, steps=2)), _dequantized_digits,
          (1, 8, 8), score=_exp_loss),
    Model("flow_glow", lambda: flows.Flow(flows.FlowConfig.fast(network="glow", levels=2, steps=1, hidden=8)),
          _dequantized_digits, (1, 8, 8), score=_exp_loss),
    Model("keras_realnvp", _keras_realnvp, _points, (2,), low_high=None, keras=True, score=_exp_loss),
]
IDS = [m.name for m in MODELS]


@pytest.fixture(params=MODELS, ids=IDS)
def case(request):
    torch.manual_seed(0)
    spec = request.param
    model = spec.make()
    if spec.keras:
        import keras
        keras.utils.set_random_seed(0)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=spec.lr))
    return spec, model


def _loss(spec: Model, model, batch) -> dict:
    return model.loss_terms(batch) if spec.keras else model.loss(batch)


def _mean_loss(spec: Model, model, batch, draws: int = 8) -> float:
    """The loss of a batch averaged over the model's own randomness (diffusion draws t and noise)."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(123)
        return sum(float(_loss(spec, model, batch)["loss"]) for _ in range(draws)) / draws


def test_declares_the_contract(case):
    spec, model = case
    assert isinstance(model, torch.nn.Module)
    assert model.likelihood in contract.LIKELIHOODS
    if spec.keras:
        assert callable(model.loss_terms) and callable(model.sample)
    else:
        assert isinstance(model, contract.GenerativeModel)
    assert (model.likelihood is not None) == callable(getattr(model, "log_prob", None))


def test_sample_shape_dtype_device_and_range(case):
    spec, model = case
    x = model.sample(5, generator=_g(), **spec.condition)
    assert tuple(x.shape) == (5, *spec.shape)
    assert x.dtype == (torch.long if spec.tokens else torch.float32)
    assert x.device == next(iter([*model.parameters(), *model.buffers()])).device
    if spec.low_high:
        assert spec.low_high[0] <= x.min() and x.max() <= spec.low_high[1], "samples leave the data's range"
    assert torch.isfinite(x.float()).all()


def test_same_generator_same_samples(case):
    spec, model = case
    a = model.sample(5, generator=_g(7), **spec.condition)
    torch.rand(100)  # the global random state must not matter
    b = model.sample(5, generator=_g(7), **spec.condition)
    c = model.sample(5, generator=_g(8), **spec.condition)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_samples_carry_no_gradient(case):
    spec, model = case
    with torch.enable_grad():
        x = model.sample(3, generator=_g(), **spec.condition)
    assert not x.requires_grad and x.grad_fn is None


@pytest.mark.parametrize("training", [True, False])
def test_sampling_runs_in_eval_mode_and_restores_the_mode(case, training):
    spec, model = case
    model.train(training)
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append(mod.training)) for m in model.modules()]
    model.sample(2, generator=_g(), **spec.condition)
    for h in hooks:
        h.remove()
    assert all(mode is False for mode in seen), "sample() must run the network in eval mode"
    assert model.training is training and all(m.training is training for m in model.modules())


def test_log_prob_agrees_with_loss(case):
    spec, model = case
    if model.likelihood is None:
        pytest.skip(f"{spec.name} has no likelihood")
    batch = spec.batch()
    out = _loss(spec, model, batch)
    assert "nll" in out, "a model with a likelihood reports 'nll' (nats per example) in its loss"
    if spec.keras and spec.tokens:                                   # the Keras GPT's (inputs, targets) -> windows
        args = (torch.cat([batch[0], batch[1][:, -1:]], dim=1),)
    else:
        args = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    with torch.no_grad():
        log_p = model.log_prob(*args).detach()
    assert log_p.shape == (len(args[0]),)
    if model.likelihood == "exact":
        assert math.isclose(-float(log_p.mean()), float(out["nll"]), rel_tol=1e-4, abs_tol=1e-4)
    else:  # a bound: log_prob (tighter) is at least the training bound
        assert float(log_p.mean()) >= -float(out["nll"].detach()) - 1e-3


def test_a_tiny_model_overfits_one_batch(case):
    spec, model = case
    batch = spec.batch()
    score = spec.score or (lambda model, batch: _mean_loss(spec, model, batch))
    before = score(model, batch)
    if spec.train:
        spec.train(model, batch, spec.steps)
    elif spec.keras:
        x, y = batch if isinstance(batch, tuple) else (batch, None)
        reps = spec.steps
        xs = x.repeat(reps, *[1] * (x.dim() - 1)).numpy()
        ys = None if y is None else y.repeat(reps, 1).numpy()
        model.fit(xs, ys, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    else:
        dataset = torch.utils.data.TensorDataset(*(batch if isinstance(batch, tuple) else (batch,)))
        train.fit(model, dataset, train.TrainConfig(steps=spec.steps, batch_size=len(dataset), lr=spec.lr,
                                                    schedule="constant", progress=False))
    after = score(model, batch)
    assert after < spec.ratio * before, f"{spec.name}: {before:.4f} -> {after:.4f} on one batch"


# ----------------------------------------------------------------------------- configs

PRESETS = [  # every config: fast(**changes) and full(**changes), one signature; a field to change and its value
    (TrainConfig.fast, "steps", 7), (TrainConfig.full, "steps", 7),
    (ar.GPTConfig.fast, "n_layer", 3), (ar.GPTConfig.full, "n_layer", 3),
    (ar.ImageARConfig.fast, "n_layer", 3), (ar.ImageARConfig.full, "n_layer", 3),
    (diffusion.DiffusionConfig.fast, "timesteps", 17), (diffusion.DiffusionConfig.full, "timesteps", 17),
    (diffusion.DiffusionConfig.toy, "timesteps", 17),
    (gan.GANConfig.fast, "latent_dim", 5), (gan.GANConfig.full, "latent_dim", 5), (gan.GANConfig.toy, "latent_dim", 5),
    (vae.VAEConfig.fast, "latent_dim", 5), (vae.VAEConfig.full, "latent_dim", 5),
    (vae.VQVAEConfig.fast, "codes", 5), (vae.VQVAEConfig.full, "codes", 5),
    (flows.FlowConfig.fast, "hidden", 17), (flows.FlowConfig.full, "hidden", 17),
    (flows.FlowConfig.toy, "hidden", 17),
]


@pytest.mark.parametrize("preset, name, value", PRESETS, ids=lambda p: getattr(p, "__qualname__", str(p)))
def test_presets_take_keyword_changes(preset, name, value):
    base, changed = preset(), preset(**{name: value})
    assert getattr(changed, name) == value
    assert {**vars(changed), name: getattr(base, name)} == vars(base)           # the rest is the preset's
    with pytest.raises(TypeError, match=name + "s"):
        preset(**{name + "s": value})                                          # a misspelt field is refused
