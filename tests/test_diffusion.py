"""Unit tests of gencourse.diffusion (and its Keras twin): schedules, forward process, samplers, guidance."""

from __future__ import annotations

import pytest
import torch

from gencourse import diffusion as D
from gencourse import train


def tiny(**changes) -> D.DiffusionConfig:
    return D.DiffusionConfig.toy(**{**dict(timesteps=20, hidden=16, depth=1, emb_dim=8), **changes})


def model(**changes) -> D.DiffusionModel:
    torch.manual_seed(0)
    return D.DiffusionModel(tiny(**changes)).eval()


# ----------------------------------------------------------------------------- schedules

@pytest.mark.parametrize("name", D.SCHEDULES)
@pytest.mark.parametrize("timesteps", [10, 300, 1000])
def test_schedules_are_monotone_and_in_range(name, timesteps):
    s = D.NoiseSchedule.make(name, timesteps)
    assert s.timesteps == timesteps and s.betas.shape == (timesteps,)
    assert (s.betas > 0).all() and (s.betas < 1).all()
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all(), "alpha_bar must fall at every step"
    assert (s.snr()[1:] < s.snr()[:-1]).all()
    assert 0.97 < s.alpha_bar[0] < 1 and s.alpha_bar[-1] < 1e-3, "starts near the data, ends near pure noise"
    assert s.alpha_bar_prev[0] == 1 and torch.equal(s.alpha_bar_prev[1:], s.alpha_bar[:-1])


def test_linear_schedule_is_ho_et_al_at_1000_steps():
    b = D.linear_betas(1000)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)


def test_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match="name"):
        D.NoiseSchedule.make("quadratic", 10)
    with pytest.raises(ValueError, match="betas"):
        D.NoiseSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="timesteps"):
        D.NoiseSchedule.make("cosine", 0)


# ----------------------------------------------------------------------------- forward process

def test_closed_form_matches_step_by_step_noising_in_distribution():
    s = D.NoiseSchedule.make("linear", 50)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.5, -0.5]).expand(40_000, 2)
    x = x0.clone()
    for t in range(30):  # q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I), steps 0..29
        x = s.alphas[t].sqrt() * x + s.betas[t].sqrt() * torch.randn(x.shape, generator=g)
    eps = torch.randn(x.shape, generator=g)
    closed = s.add_noise(x0, eps, torch.full((len(x0),), 29))
    abar = s.alpha_bar[29]
    for samples in (x, closed):
        assert torch.allclose(samples.mean(0), abar.sqrt() * x0[0], atol=0.02)
        assert torch.allclose(samples.std(0), (1 - abar).sqrt().expand(2), atol=0.02)
    assert torch.allclose(torch.cov(x.T), torch.cov(closed.T), atol=0.02)  # same covariance, no correlation


def test_add_noise_broadcasts_over_images_and_rejects_bad_input():
    s = D.NoiseSchedule.make("cosine", 10)
    x0, eps = torch.rand(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    t = torch.tensor([0, 5, 9])
    xt = s.add_noise(x0, eps, t)
    assert torch.allclose(xt[1], s.alpha_bar[5].sqrt() * x0[1] + (1 - s.alpha_bar[5]).sqrt() * eps[1])
    with pytest.raises(ValueError, match=r"t must lie in \[0, 9\]"):
        s.add_noise(x0, eps, torch.tensor([0, 5, 10]))
    with pytest.raises(ValueError, match="t must lie"):
        s.add_noise(x0, eps, torch.tensor([-1, 0, 0]))
    with pytest.raises(TypeError, match="integer"):
        s.add_noise(x0, eps, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="eps must have shape"):
        s.add_noise(x0, eps[:, :, :4], t)
    with pytest.raises(ValueError, match="t must have shape"):
        s.add_noise(x0, eps, t[:2])


# ----------------------------------------------------------------------------- reverse steps

def test_ddim_with_eta_one_and_every_step_is_the_ddpm_step():
    s = D.NoiseSchedule.make("cosine", 30)
    xt, eps_pred, noise = torch.randn(3, 5, 2).unbind(0)
    for t in range(30):
        ddpm = s.step(eps_pred, t, xt, noise=noise)
        ddim = s.ddim_step(eps_pred, t, t - 1, xt, eta=1.0, noise=noise)
        assert torch.allclose(ddpm, ddim, atol=1e-5), t


def test_ddim_sampler_with_all_steps_and_eta_one_matches_ddpm_sampler():
    m = model(timesteps=15)
    a = D.ddpm_sample(m, 7, generator=torch.Generator().manual_seed(3))
    b = D.ddim_sample(m, 7, steps=15, eta=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-5)


def test_ddim_eta_zero_is_deterministic_given_the_start():
    s = D.NoiseSchedule.make("linear", 20)
    xt, eps_pred = torch.randn(2, 4, 2).unbind(0)
    a = s.ddim_step(eps_pred, 10, 5, xt, eta=0.0, generator=torch.Generator().manual_seed(0))
    b = s.ddim_step(eps_pred, 10, 5, xt, eta=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    final = s.ddim_step(eps_pred, 10, -1, xt)
    assert torch.allclose(final, s.predict_x0(xt, eps_pred, 10), atol=1e-6), "t_prev = -1 returns x0_pred"


def test_ddpm_last_step_adds_no_noise_and_denoises_an_exact_prediction():
    s = D.NoiseSchedule.make("linear", 20)
    x0, eps = torch.randn(2, 6, 2).unbind(0)
    x1 = s.add_noise(x0, eps, torch.zeros(6, dtype=torch.long))
    assert torch.allclose(s.step(eps, 0, x1, noise=torch.randn(6, 2)), x0, atol=1e-5)


def test_ddim_timesteps_cover_the_schedule():
    s = D.NoiseSchedule.make("cosine", 300)
    ts = s.ddim_timesteps(20)
    assert len(ts) == 20 and ts[0] == 299 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    assert s.ddim_timesteps(300) == list(range(299, -1, -1))


@pytest.mark.parametrize("call, match", [
    (lambda s, x: s.step(x, 20, x), r"t must lie in \[0, 19\]"),
    (lambda s, x: s.step(x, -1, x), "t must lie"),
    (lambda s, x: s.step(x, 1.5, x), "t must be an int"),
    (lambda s, x: s.step(x[:, :1], 3, x), "eps_pred must have shape"),
    (lambda s, x: s.step(x, 3, x, noise=x[:2]), "noise must have shape"),
    (lambda s, x: s.ddim_step(x, 5, 5, x), "t_prev must come before t"),
    (lambda s, x: s.ddim_step(x, 5, -2, x), r"t_prev must lie in \[-1, 19\]"),
    (lambda s, x: s.ddim_step(x, 5, 2, x, eta=1.5), "eta must be"),
    (lambda s, x: s.ddim_timesteps(21), "steps must be at most"),
])
def test_reverse_steps_reject_bad_input(call, match):
    s = D.NoiseSchedule.make("linear", 20)
    with pytest.raises((ValueError, TypeError), match=match):
        call(s, torch.randn(4, 2))


# ----------------------------------------------------------------------------- guidance

def test_guided_noise_interpolates_and_extrapolates():
    u, c = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.equal(D.guided_noise(u, c, 0.0), u)
    assert torch.equal(D.guided_noise(u, c, 1.0), c)
    assert torch.equal(D.guided_noise(u, c, 3.0), 3 * c)
    with pytest.raises(ValueError, match="guidance scale must be >= 0"):
        D.guided_noise(u, c, -0.5)
    with pytest.raises(TypeError, match="guidance scale must be a number"):
        D.guided_noise(u, c, "2")


def test_conditional_model_guidance_zero_and_one_are_the_two_predictions():
    m = model(num_classes=3)
    m.config.clip = None
    x, y = torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 1])
    tt = torch.full((5,), 7)
    uncond = m.denoiser(x, tt, torch.full((5,), 3))
    cond = m.denoiser(x, tt, y)
    assert torch.allclose(m.predict_noise(x, 7, y, guidance=0.0), uncond, atol=1e-6)
    assert torch.allclose(m.predict_noise(x, 7, y, guidance=1.0), cond, atol=1e-6)
    assert torch.allclose(m.predict_noise(x, 7, y, guidance=2.5), uncond + 2.5 * (cond - uncond), atol=1e-5)
    assert torch.allclose(m.predict_noise(x, 7), uncond, atol=1e-6), "no label: the unconditional prediction"


@pytest.mark.parametrize("sampler", [D.ddpm_sample, D.ddim_sample])
def test_samplers_reject_negative_guidance_and_bad_labels(sampler):
    m = model(num_classes=3)
    with pytest.raises(ValueError, match="guidance scale must be >= 0"):
        sampler(m, 4, y=1, guidance=-1.0)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 2\]"):
        sampler(m, 4, y=3, guidance=2.0)
    with pytest.raises(ValueError, match="guidance needs labels"):
        sampler(m, 4, guidance=2.0)
    with pytest.raises(ValueError, match="class-conditional"):
        sampler(model(), 4, y=1)


def test_label_dropout_trains_the_no_label_embedding():
    m = model(num_classes=3, label_dropout=0.5)
    m.train()
    out = m.loss((torch.randn(64, 2), torch.randint(0, 3, (64,))))
    out["loss"].backward()
    assert m.denoiser.label.weight.grad[3].abs().sum() > 0, "index num_classes ('no label') gets gradients"


# ----------------------------------------------------------------------------- model contract

def test_loss_is_finite_and_differentiable_and_rejects_wrong_shapes():
    m = D.DiffusionModel(D.DiffusionConfig.fast(hidden=16, depth=1, emb_dim=8, timesteps=10))
    out = m.loss(torch.rand(8, 1, 8, 8))
    assert set(out) == {"loss"} and out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1, 8, 8\)"):
        m.loss(torch.rand(8, 1, 28, 28))
    with pytest.raises(ValueError, match="x must have shape"):
        m.loss(torch.rand(8, 64))
    with pytest.raises(ValueError, match="label_dropout"):
        D.DiffusionModel(tiny(label_dropout=1.0))
    with pytest.raises(TypeError, match="DiffusionConfig"):
        D.DiffusionModel({"timesteps": 10})


@pytest.mark.parametrize("sampler", [D.ddpm_sample, lambda m, n, generator: D.ddim_sample(m, n, 5, generator=generator)])
def test_sampling_is_reproducible_under_a_seed(sampler):
    m = model()
    a = sampler(m, 6, generator=torch.Generator().manual_seed(1))
    b = sampler(m, 6, generator=torch.Generator().manual_seed(1))
    c = sampler(m, 6, generator=torch.Generator().manual_seed(2))
    assert a.shape == (6, 2) and torch.equal(a, b) and not torch.equal(a, c)


def test_trajectory_holds_every_step_in_data_space():
    m = D.DiffusionModel(D.DiffusionConfig.fast(hidden=16, depth=1, emb_dim=8, timesteps=12))
    x, frames = D.ddim_sample(m, 3, steps=4, generator=torch.Generator().manual_seed(0), trajectory=True)
    assert len(frames) == 5 and torch.equal(frames[-1], x)
    assert x.min() >= 0 and x.max() <= 1, "images come back in [0, 1]"
    x, frames = D.ddpm_sample(m, 3, trajectory=True)
    assert len(frames) == 13


def test_fit_with_ema_learns_the_toy_data():
    torch.manual_seed(0)
    m = D.DiffusionModel(tiny(timesteps=50, hidden=64, depth=2))
    points = torch.randn(256, 2) * 0.1 + torch.tensor([2.0, -1.0])
    history = train.fit(m, points, train.TrainConfig(steps=800, batch_size=128, lr=3e-3, ema_decay=0.95,
                                                     progress=False))
    assert history.final("loss", 30) < 0.5 * history["loss"][0]
    samples = D.ddim_sample(m, 500, steps=25, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(samples.mean(0), torch.tensor([2.0, -1.0]), atol=0.3)


# ----------------------------------------------------------------------------- the full profile (UNet)

def test_full_preset_is_mnist_with_the_unet():
    c = D.DiffusionConfig.full()
    assert c.shape == (1, 28, 28) and c.network == "unet" and c.timesteps == 1000


@pytest.mark.parametrize("num_classes", [None, 10])
def test_full_profile_code_path_on_tiny_sizes(num_classes):
    torch.manual_seed(0)
    m = D.DiffusionModel(D.DiffusionConfig.full(base=8, emb_dim=16, timesteps=6, num_classes=num_classes))
    from gencourse.nn import TinyUNet
    assert isinstance(m.denoiser, TinyUNet)
    x = torch.rand(2, 1, 28, 28)
    batch = (x, torch.tensor([3, 7])) if num_classes else x
    m.loss(batch)["loss"].backward()
    kwargs = dict(y=5, guidance=2.0) if num_classes else {}
    s = D.ddim_sample(m, 2, steps=3, generator=torch.Generator().manual_seed(0), **kwargs)
    assert s.shape == (2, 1, 28, 28) and torch.isfinite(s).all()
    with pytest.raises(ValueError, match="UNet needs image shapes"):
        D.make_denoiser(D.DiffusionConfig.toy(network="unet"))


# ----------------------------------------------------------------------------- Keras twin

def test_keras_denoiser_trains_and_samples_with_the_shared_schedule():
    from gencourse.keras import diffusion as kd

    kd.keras.utils.set_random_seed(0)
    km = kd.KerasDiffusion(D.DiffusionConfig.fast(hidden=32, depth=1, emb_dim=8, timesteps=10))
    km.compile(optimizer=kd.keras.optimizers.Adam(1e-3))
    history = km.fit(torch.rand(64, 1, 8, 8).numpy(), batch_size=32, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and all(v == v for v in history.history["loss"])
    s = km.sample(4, steps=5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, 1, 8, 8) and 0 <= s.min() and s.max() <= 1
