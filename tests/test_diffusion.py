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
        ddpm = s.step(xt, eps_pred, t, noise=noise)
        ddim = s.ddim_step(xt, eps_pred, t, t - 1, eta=1.0, noise=noise)
        assert torch.allclose(ddpm, ddim, atol=1e-5), t


def test_ddim_sampler_with_all_steps_and_eta_one_matches_ddpm_sampler():
    m = model(timesteps=15)
    a = D.ddpm_sample(m, 7, generator=torch.Generator().manual_seed(3))
    b = D.ddim_sample(m, 7, steps=15, eta=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-5)


def test_ddim_eta_zero_is_deterministic_given_the_start():
    s = D.NoiseSchedule.make("linear", 20)
    xt, eps_pred = torch.randn(2, 4, 2).unbind(0)
    a = s.ddim_step(xt, eps_pred, 10, 5, eta=0.0, generator=torch.Generator().manual_seed(0))
    b = s.ddim_step(xt, eps_pred, 10, 5, eta=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    final = s.ddim_step(xt, eps_pred, 10, -1)
    assert torch.allclose(final, s.predict_x0(xt, eps_pred, 10), atol=1e-6), "t_prev = -1 returns x0_pred"


def test_ddpm_last_step_adds_no_noise_and_denoises_an_exact_prediction():
    s = D.NoiseSchedule.make("linear", 20)
    x0, eps = torch.randn(2, 6, 2).unbind(0)
    x1 = s.add_noise(x0, eps, torch.zeros(6, dtype=torch.long))
    assert torch.allclose(s.step(x1, eps, 0, noise=torch.randn(6, 2)), x0, atol=1e-5)
    # at t > 0 the noise is added: sigma_t^2 = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)
    noise = torch.randn(6, 2)
    xt = s.add_noise(x0, eps, torch.full((6,), 5))
    mean = (xt - s.betas[5] / (1 - s.alpha_bar[5]).sqrt() * eps) / s.alphas[5].sqrt()
    var = s.betas[5] * (1 - s.alpha_bar[4]) / (1 - s.alpha_bar[5])
    assert torch.allclose(s.step(xt, eps, 5, noise=noise), mean + var.sqrt() * noise, atol=1e-5)
    g = torch.Generator().manual_seed(9)
    assert torch.allclose(s.step(xt, eps, 5, generator=g), mean + var.sqrt() * torch.randn(6, 2,
                          generator=torch.Generator().manual_seed(9)), atol=1e-5)


def test_clip_noise_keeps_the_implied_x0_in_range():
    s = D.NoiseSchedule.make("linear", 20)
    x0 = torch.tensor([[0.5, -0.2], [3.0, -4.0]])
    eps = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    t = 12
    xt = s.add_noise(x0, eps, torch.full((2,), t))
    clipped = s.clip_noise(xt, eps, t, 1.0)
    assert torch.allclose(s.predict_x0(xt, clipped, t), x0.clamp(-1, 1), atol=1e-4)
    assert torch.allclose(clipped[0], eps[0], atol=1e-4), "an x0 already in range keeps its noise"
    assert not torch.allclose(clipped[1], eps[1], atol=1e-2)


def test_ddim_timesteps_cover_the_schedule():
    s = D.NoiseSchedule.make("cosine", 300)
    ts = s.ddim_timesteps(20)
    assert len(ts) == 20 and ts[0] == 299 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    assert s.ddim_timesteps(300) == list(range(299, -1, -1))


@pytest.mark.parametrize("call, match", [
    (lambda s, x: s.step(x, x, 20), r"t must lie in \[0, 19\]"),
    (lambda s, x: s.step(x, x, -1), "t must lie"),
    (lambda s, x: s.step(x, x, 1.5), "t must be an int"),
    (lambda s, x: s.step(x, x[:, :1], 3), "eps_pred must have shape"),
    (lambda s, x: s.step(x.long(), x, 3), "xt must be a floating-point"),
    (lambda s, x: s.step(x, x, 3, noise=x[:2]), "noise must have shape"),
    (lambda s, x: s.step(x, x, 3, None), "positional"),                     # generator and noise are keywords
    (lambda s, x: s.ddim_step(x, x, 5, 5), "t_prev must come before t"),
    (lambda s, x: s.ddim_step(x, x, 5, -2), r"t_prev must lie in \[-1, 19\]"),
    (lambda s, x: s.ddim_step(x, x, 5, 2, eta=1.5), "eta must be"),
    (lambda s, x: s.ddim_step(x, x[:, :1], 5, 2), "eps_pred must have shape"),
    (lambda s, x: s.ddim_step(x, x, 5, 2, 0.5), "positional"),              # eta is a keyword
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


def test_sample_takes_one_label_for_all():
    m = model(num_classes=3)
    a = m.sample(4, y=2, guidance=2.0, generator=torch.Generator().manual_seed(0))
    b = m.sample(4, y=torch.tensor([2, 2, 2, 2]), guidance=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"y must have shape \(4\)"):
        m.sample(4, y=torch.tensor([0, 1]))


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


@pytest.mark.parametrize("sampler", [D.ddpm_sample,
                                     lambda m, n, generator: D.ddim_sample(m, n, steps=5, generator=generator),
                                     lambda m, n, generator: m.sample(n, generator=generator),
                                     lambda m, n, generator: m.sample(n, steps=5, eta=0.5, generator=generator)])
def test_sampling_is_reproducible_under_a_seed(sampler):
    m = model()
    a = sampler(m, 6, generator=torch.Generator().manual_seed(1))
    b = sampler(m, 6, generator=torch.Generator().manual_seed(1))
    c = sampler(m, 6, generator=torch.Generator().manual_seed(2))
    assert a.shape == (6, 2) and torch.equal(a, b) and not torch.equal(a, c)


def test_sample_is_ddpm_by_default_and_ddim_with_steps():
    m = model(timesteps=12)
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    assert torch.equal(m.sample(3, generator=g()), D.ddpm_sample(m, 3, generator=g()))
    assert torch.equal(m.sample(3, steps=4, generator=g()), D.ddim_sample(m, 3, steps=4, generator=g()))
    assert torch.equal(m.sample(3, steps=12, eta=1.0, generator=g()), D.ddim_sample(m, 3, steps=12, eta=1.0,
                                                                                     generator=g()))
    assert not torch.equal(m.sample(3, generator=g()), m.sample(3, steps=4, generator=g()))
    with pytest.raises(TypeError):
        D.ddim_sample(m, 3, 4)                             # steps is a keyword
    with pytest.raises(TypeError):
        D.ddpm_sample(m, 3, trajectory=True)               # the trajectory is its own function


def test_trajectory_holds_every_step_in_data_space():
    m = D.DiffusionModel(D.DiffusionConfig.fast(hidden=16, depth=1, emb_dim=8, timesteps=12))
    frames = D.trajectory(m, 3, steps=4, generator=torch.Generator().manual_seed(0))
    x = m.sample(3, steps=4, generator=torch.Generator().manual_seed(0))
    assert isinstance(frames, list) and len(frames) == 5 and torch.equal(frames[-1], x)
    start = m.to_data(m.noise(3, torch.Generator().manual_seed(0)))
    assert torch.equal(frames[0], start), "x_T first, in data space"
    assert all(f.shape == (3, 1, 8, 8) and f.device.type == "cpu" for f in frames)
    assert all(f.min() >= 0 and f.max() <= 1 for f in frames), "images come back in [0, 1]"
    frames = D.trajectory(m, 3, generator=torch.Generator().manual_seed(0))
    assert len(frames) == 13 and torch.equal(frames[-1], m.sample(3, generator=torch.Generator().manual_seed(0)))
    m.train()
    D.trajectory(m, 2, steps=2)
    assert m.training, "the model's mode is restored"
    with pytest.raises(ValueError, match="n must be at least 1"):
        D.trajectory(m, 0)


def test_reverse_process_yields_every_state_in_model_space():
    m = model(timesteps=10)
    x = m.noise(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ddpm = list(D.reverse_process(m, x, generator=torch.Generator().manual_seed(1)))
        ddim = list(D.reverse_process(m, x, steps=3))
    assert len(ddpm) == 11 and len(ddim) == 4 and ddpm[0] is x and ddim[0] is x
    # each DDIM state is one ddim_step from the one before
    ts = m.schedule.ddim_timesteps(3)
    for (t, t_prev), before, after in zip(zip(ts, ts[1:] + [-1]), ddim, ddim[1:]):
        with torch.no_grad():
            assert torch.allclose(after, m.schedule.ddim_step(before, m.predict_noise(before, t), t, t_prev), atol=1e-6)


def test_noise_prediction_loss_is_the_error_of_the_noise_at_x_t():
    s = D.NoiseSchedule.make("linear", 20)
    x0, eps = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0)).unbind(0)
    t = torch.tensor([0, 3, 7, 19, 10])
    seen = []

    def denoiser(xt, tt, y=None):
        seen.append((xt, tt, y))
        return torch.zeros_like(xt) + 0.5

    loss = D.noise_prediction_loss(denoiser, s, x0, t, eps)
    assert loss.dim() == 0 and torch.allclose(loss, (eps - 0.5).square().mean())
    xt, tt, y = seen[0]
    assert torch.allclose(xt, s.add_noise(x0, eps, t)) and torch.equal(tt, t) and y is None
    labels = torch.tensor([1, 0, 2, 2, 3])
    D.noise_prediction_loss(denoiser, s, x0, t, eps, y=labels)
    assert seen[1][2] is labels
    net = D.MLPDenoiser((3,), hidden=8, depth=1, emb_dim=4)
    exact = D.noise_prediction_loss(net, s, x0, t, eps)
    assert torch.allclose(exact, torch.nn.functional.mse_loss(net(s.add_noise(x0, eps, t), t), eps))


def test_fit_with_ema_learns_the_toy_data():
    torch.manual_seed(0)
    m = D.DiffusionModel(tiny(timesteps=50, hidden=64, depth=2))
    points = torch.randn(256, 2) * 0.1 + torch.tensor([2.0, -1.0])
    history = train.fit(m, points, train.TrainConfig(steps=800, batch_size=128, lr=3e-3, ema_decay=0.95,
                                                     progress=False))
    assert history.final("loss", 30) < 0.5 * history["loss"][0]
    samples = D.ddim_sample(m, 500, steps=25, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(samples.mean(0), torch.tensor([2.0, -1.0]), atol=0.3)


# ----------------------------------------------------------------------------- the denoisers

def test_mlp_denoiser_takes_labels_exactly_when_conditional():
    torch.manual_seed(0)
    plain, conditional = D.MLPDenoiser((2,), hidden=8, depth=1, emb_dim=4), D.MLPDenoiser((2,), 8, 1, 4, num_classes=3)
    x, t = torch.randn(4, 2), torch.tensor([0, 1, 2, 3])
    assert plain(x, t).shape == conditional(x, t, torch.tensor([0, 1, 2, 3])).shape == (4, 2)   # 3: no label
    with pytest.raises(ValueError, match="pass labels y"):
        plain(x, t, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="pass labels y"):
        conditional(x, t)
    assert conditional.label.num_embeddings == 4


def test_mlp_denoiser_reads_no_values(monkeypatch):
    """forward is the hot loop of sampling: no value checks there (they would sync a GPU)."""
    net = D.MLPDenoiser((2,), hidden=8, depth=1, emb_dim=4, num_classes=3)
    monkeypatch.setattr(D.validate, "tensor", lambda *a, **k: pytest.fail("forward must not check values"))
    monkeypatch.setattr(D.gnn.validate, "tensor", lambda *a, **k: pytest.fail("forward must not check values"))
    assert net(torch.randn(2, 2), torch.tensor([1, 2]), torch.tensor([0, 3])).shape == (2, 2)


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
    images = torch.rand(64, 1, 8, 8)
    history = km.fit(images.numpy(), batch_size=32, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and all(v == v for v in history.history["loss"])
    terms = km.loss_terms(images[:8])
    assert set(terms) == {"loss"} and torch.isfinite(torch.as_tensor(terms["loss"]))
    scores = km.evaluate(images.numpy(), batch_size=32, verbose=0, return_dict=True)     # test_step
    assert 0 < scores["loss"] < 10
    s = km.sample(4, steps=5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, 1, 8, 8) and 0 <= s.min() and s.max() <= 1
    assert torch.equal(s, km.sample(4, steps=5, generator=torch.Generator().manual_seed(0)))
    # predict_noise clips as the PyTorch model does: the implied x0 stays in [-clip, clip]
    xt = 3 * torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eps = km.predict_noise(xt, 5)
    assert eps.shape == (4, 64)
    assert km.schedule.predict_x0(xt, eps, 5).abs().max() <= km.config.clip + 1e-4
    with pytest.raises(TypeError):
        km.sample(4, 5)                                    # steps is a keyword
