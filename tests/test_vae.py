"""Unit tests of gencourse.vae (and its Keras twin): the pieces of the ELBO, the importance-weighted bound against
log p(x) integrated on a grid, vector quantisation, the VQ-VAE's codebook, the two-stage models, the helpers."""

from __future__ import annotations

import math

import pytest
import torch
from weights import gen as _g, same as _same, snapshot as _state
from torch.distributions import Bernoulli, Normal, kl_divergence

from gencourse import autoregressive as ar
from gencourse import data, train
from gencourse import diffusion as D
from gencourse import vae as V
from gencourse.diffusion import draw_normal


def tiny(**changes) -> V.VAEConfig:
    return V.VAEConfig.fast(**{**dict(latent_dim=2, hidden=16, depth=1, iw_samples=20), **changes})


def model(**changes) -> V.VAE:
    torch.manual_seed(0)
    return V.VAE(tiny(**changes))


def tiny_vq(**changes) -> V.VQVAE:
    torch.manual_seed(0)
    return V.VQVAE(V.VQVAEConfig.fast(**{**dict(codes=8, code_dim=4, base=8), **changes}))


def _fit(m, x, steps: int, lr: float = 1e-2, batch_size: int = 64) -> train.History:
    config = train.TrainConfig(steps=steps, batch_size=batch_size, lr=lr, schedule="constant", progress=False)
    return train.fit(m, x, config)


def _bound(m, x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """iw_bound with K fresh samples per example (B,)."""
    return V.iw_bound(m, x, draw_normal((k, len(x), m.config.latent_dim), _g(seed)))


@pytest.fixture(scope="module")
def digits():
    """Binarised 8x8 digits: (train images, test images)."""
    return data.digits("train", binarize=True).tensors[0], data.digits("test", binarize=True).tensors[0]


# ----------------------------------------------------------------------------- the pieces

def test_reparameterize_draws_n_mu_sigma_and_passes_gradients_to_both():
    mu, logvar = torch.tensor([0.5, -2.0, 3.0]), torch.tensor([0.0, 1.0, -2.0])
    z = V.reparameterize(mu, logvar, torch.randn(200_000, 3, generator=_g()))
    assert torch.allclose(z.mean(0), mu, atol=0.02)
    assert torch.allclose(z.std(0), torch.exp(logvar / 2), rtol=0.01)
    mu, logvar = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    eps = torch.randn(7, 3, generator=_g(1))
    V.reparameterize(mu, logvar, eps).sum().backward()
    assert torch.allclose(mu.grad, torch.full((3,), 7.0))                            # dz/dmu = 1
    assert torch.allclose(logvar.grad, (0.5 * torch.exp(logvar / 2) * eps).sum(0))   # dz/dlogvar = sigma eps / 2


def test_gaussian_kl_is_torch_distributions_kl_summed_and_zero_at_the_prior():
    mu, logvar = torch.randn(5, 4, generator=_g()), torch.randn(5, 4, generator=_g(1))
    want = kl_divergence(Normal(mu, torch.exp(logvar / 2)), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(V.gaussian_kl(mu, logvar), want, atol=1e-5)
    assert torch.equal(V.gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))
    assert (V.gaussian_kl(mu, logvar) > 0).all()


def test_normal_log_prob_matches_torch_distributions_and_broadcasts_over_samples():
    z = torch.randn(6, 5, 3, generator=_g())                         # (K, B, D), as log_weights uses it
    mu, logvar = torch.randn(5, 3, generator=_g(1)), torch.randn(5, 3, generator=_g(2))
    want = Normal(mu, torch.exp(logvar / 2)).log_prob(z).sum(-1)
    assert torch.allclose(V.normal_log_prob(z, mu, logvar), want, atol=1e-5)
    assert torch.allclose(V.normal_log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1), atol=1e-5)


def test_decoder_log_likelihood_matches_torch_distributions_and_the_vae_uses_it():
    x = (torch.rand(4, 1, 8, 8, generator=_g()) < 0.4).float()
    out, log_scale = torch.randn(4, 1, 8, 8, generator=_g(1)), torch.randn(1, 8, 8, generator=_g(2))
    bernoulli = Bernoulli(logits=out).log_prob(x).flatten(1).sum(1)
    gaussian = Normal(out, log_scale.exp()).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(V.decoder_log_likelihood("bernoulli", x, out), bernoulli, atol=1e-4)
    assert torch.allclose(V.decoder_log_likelihood("gaussian", x, out, log_scale), gaussian, atol=1e-4)
    with pytest.raises(ValueError, match="kind"):
        V.decoder_log_likelihood("poisson", x, out)
    for decoder in V.DECODERS:
        m, z = model(decoder=decoder), torch.randn(4, 2, generator=_g(3))
        want = V.decoder_log_likelihood(decoder, x, m.decoder(z), m.log_scale)
        assert torch.equal(m.log_likelihood(x, z), want)


def test_negative_elbo_parts_add_up_and_use_one_reparameterised_draw():
    m, x = model(), torch.rand(8, 1, 8, 8, generator=_g())
    torch.manual_seed(3)
    out = V.negative_elbo(m, x, beta=0.3)
    assert set(out) == {"loss", "recon", "kl", "nll"}
    assert torch.allclose(out["nll"], out["recon"] + out["kl"])
    assert torch.allclose(out["loss"], out["recon"] + 0.3 * out["kl"])
    torch.manual_seed(3)                                             # the same draw, by hand
    mu, logvar = m.encode(x)
    z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
    assert torch.allclose(out["recon"], -m.log_likelihood(x, z).mean())
    assert torch.allclose(out["kl"], V.gaussian_kl(mu, logvar).mean())
    torch.manual_seed(3)
    assert torch.allclose(m.loss(x)["loss"], out["nll"])             # the model's loss: beta = 1


# ----------------------------------------------------------------------------- the importance-weighted bound

@pytest.fixture(scope="module")
def one_d(digits):
    """A VAE with a 1-D latent trained for a few steps, 16 test images, and their log p(x) integrated on a grid of z
    (a 1-D integral: the one case where the bound can be checked against the truth)."""
    x_train, x = digits[0], digits[1][:16]
    m = model(latent_dim=1, hidden=32)
    _fit(m, x_train, steps=20)
    m.eval()
    with torch.no_grad():
        z = torch.linspace(-10, 10, 8001)                            # p(z) < 1e-21 outside; steps of 0.0025
        out = m.decoder(z[:, None])                                  # (G, 1, 8, 8)
        grid = len(z)
        log_px_z = V.decoder_log_likelihood("bernoulli", x.expand(grid, *x.shape).flatten(0, 1),
                                            out[:, None].expand(grid, *x.shape).flatten(0, 1)).view(grid, len(x))
        log_px = torch.logsumexp(log_px_z + V.normal_log_prob(z[:, None, None]), dim=0) + math.log(z[1] - z[0])
    return m, x, log_px


def test_iw_bound_with_one_sample_is_the_elbo_in_expectation(one_d):
    m, x, _ = one_d
    many = x.repeat(1000, 1, 1, 1)                                    # 1000 draws per image
    with torch.no_grad():
        iw1 = _bound(m, many, 1, seed=0).mean()
        torch.manual_seed(0)
        elbo = -V.negative_elbo(m, many)["nll"]
    assert float(iw1) == pytest.approx(float(elbo), abs=0.05)


def test_iw_bound_rises_with_k_towards_log_px_from_below(one_d):
    """log p(x) is known here (1-D latent, integrated on a grid): the bound climbs to it as K grows."""
    m, x, log_px = one_d
    with torch.no_grad():                                            # each bound averaged over many draws
        bounds = {k: float(_bound(m, x.repeat(draws, 1, 1, 1), k, seed=k).mean())
                  for k, draws in ((1, 200), (10, 200), (100, 200), (1000, 20))}
    truth = float(log_px.mean())                                     # nats per image, averaged over the 16
    assert bounds[1] < bounds[10] < bounds[100] < truth + 0.01, (bounds, truth)
    assert truth - 0.02 < bounds[1000] < truth + 0.01, (bounds, truth)
    assert bounds[1] < truth - 0.1, "the ELBO lies further below log p(x) than the tighter bounds"


def test_log_prob_is_a_seeded_bound_and_refuses_a_bad_k():
    m, x = model(), torch.rand(5, 1, 8, 8, generator=_g())
    a = m.log_prob(x, k=30, generator=_g(3))
    torch.rand(10)                                                   # the global random state must not matter
    assert a.shape == (5,) and torch.equal(a, m.log_prob(x, k=30, generator=_g(3)))
    assert not torch.equal(a, m.log_prob(x, k=30, generator=_g(4)))
    assert torch.equal(m.log_prob(x, generator=_g(3), chunk=2), m.log_prob(x, k=20, generator=_g(3), chunk=2))
    with pytest.raises(ValueError, match="k"):
        m.log_prob(x, k=0)


# ----------------------------------------------------------------------------- vector quantisation

def test_vector_quantize_picks_the_nearest_code():
    z_e, codebook = torch.randn(50, 3, generator=_g()), torch.randn(7, 3, generator=_g(1))
    z_q, idx, _, _ = V.vector_quantize(z_e, codebook)
    brute = [min(range(7), key=lambda j: float((z_e[i] - codebook[j]).square().sum())) for i in range(50)]
    assert idx.tolist() == brute
    assert torch.allclose(z_q, codebook[idx], atol=1e-6)


def test_vector_quantize_passes_the_gradient_straight_through_and_splits_the_two_losses():
    def fresh():
        return torch.randn(20, 3, generator=_g()).requires_grad_(), torch.randn(5, 3, generator=_g(1)).requires_grad_()

    z_e, codebook = fresh()
    z_q, idx, _, _ = V.vector_quantize(z_e, codebook)
    w = torch.randn(20, 3, generator=_g(2))
    (z_q * w).sum().backward()
    assert torch.allclose(z_e.grad, w), "backward, quantisation must act as the identity"
    assert codebook.grad is None

    z_e, codebook = fresh()
    _, idx, codebook_loss, _ = V.vector_quantize(z_e, codebook)
    e = codebook[idx].detach()
    assert codebook_loss.item() == pytest.approx(float((e - z_e.detach()).square().mean()), rel=1e-5)
    codebook_loss.backward()
    assert z_e.grad is None and codebook.grad.abs().sum() > 0, "the codebook loss moves only the codebook"

    z_e, codebook = fresh()
    _, _, _, commitment_loss = V.vector_quantize(z_e, codebook)
    commitment_loss.backward()
    assert codebook.grad is None, "the commitment loss moves only the encoder"
    assert torch.allclose(z_e.grad, 2 * (z_e - e).detach() / z_e.numel(), atol=1e-6)


def test_vqvae_restarts_dead_codes(digits):
    """A codebook far from every encoder output: one code wins everything at first; the others, never chosen,
    are moved onto encoder outputs once their usage fades, and end up used."""
    x_train, _ = digits
    m = tiny_vq()
    with torch.no_grad():
        m.codebook.copy_(10 + 0.01 * torch.randn(m.codebook.shape, generator=_g()))
    used = lambda: int((V.codebook_usage(m.encode(x_train[:256]), 8) > 0).sum())  # noqa: E731
    assert used() == 1
    _fit(m, x_train, steps=400, batch_size=32)
    assert used() >= 5, f"only {used()} of 8 codes in use"
    assert V.codebook_usage(torch.tensor([[0, 2], [2, 7]]), 8).tolist() == [1, 0, 2, 0, 0, 0, 0, 1]


def test_vqvae_sample_decodes_uniform_random_codes():
    m = tiny_vq()
    x = m.sample(5, generator=_g(4))
    assert x.shape == (5, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, m.decode(torch.randint(8, (5, 4, 4), generator=_g(4))))
    codes = m.encode(torch.rand(3, 1, 8, 8, generator=_g()))
    assert codes.shape == (3, 4, 4) and codes.dtype == torch.long


# ----------------------------------------------------------------------------- two-stage models

def test_code_prior_refuses_images_and_says_to_encode_them():
    prior = V.CodePrior(tiny_vq(), ar.ImageARConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    with pytest.raises(TypeError, match="encode"):
        prior.loss(torch.rand(4, 1, 8, 8))
    out = prior.loss(torch.randint(8, (4, 4, 4), generator=_g()))
    assert torch.isfinite(out["loss"])


def test_latent_diffusion_refuses_a_shape_other_than_the_latent():
    with pytest.raises(ValueError, match=r"DiffusionConfig\.latent"):
        V.LatentDiffusion(model(latent_dim=4), D.DiffusionConfig.fast())
    with pytest.raises(ValueError, match=r"DiffusionConfig\.latent\(4\)"):
        V.LatentDiffusion(model(latent_dim=4), D.DiffusionConfig.latent(3, hidden=16, depth=1))


def test_latent_diffusion_trains_its_own_weights_and_leaves_the_vae_alone():
    vae = model(latent_dim=4)
    ld = V.LatentDiffusion(vae, D.DiffusionConfig.latent(4, hidden=16, depth=1, timesteps=10), scale=1.5)
    before_vae, before_diffusion = _state(vae), _state(ld.diffusion)
    _fit(ld, torch.rand(32, 1, 8, 8, generator=_g()), steps=3, batch_size=16)
    assert _same(before_vae, _state(vae)), "the frozen VAE moved"
    assert not _same(before_diffusion, _state(ld.diffusion))
    assert float(ld.scale) == 1.5
    x = ld.sample(3, generator=_g(), steps=2)
    assert x.shape == (3, 1, 8, 8) and 0 <= x.min() and x.max() <= 1


# ----------------------------------------------------------------------------- configs and helpers

@pytest.mark.parametrize("changes, match", [
    (dict(network="resnet"), "config.network"),
    (dict(decoder="poisson"), "config.decoder"),
    (dict(beta=-0.5), "config.beta"),
    (dict(beta=float("nan")), "config.beta"),
    (dict(latent_dim=0), "config.latent_dim"),
    (dict(network="conv", shape=(1, 10, 10)), "config.shape"),
    (dict(network="conv", shape=(64,)), "config.shape"),
])
def test_bad_vae_configs_are_refused_by_name(changes, match):
    with pytest.raises(ValueError, match=match):
        tiny(**changes)


@pytest.mark.parametrize("changes, match", [
    (dict(shape=(1, 10, 10), downsample=2), "config.shape"),
    (dict(shape=(1, 8, 6)), "config.shape"),
    (dict(commitment=-1.0), "config.commitment"),
    (dict(codes=0), "config.codes"),
])
def test_bad_vqvae_configs_are_refused_by_name(changes, match):
    with pytest.raises(ValueError, match=match):
        V.VQVAEConfig.fast(**changes)


def test_models_refuse_a_config_of_the_wrong_kind():
    with pytest.raises(TypeError, match="config"):
        V.VAE(V.VQVAEConfig.fast())
    with pytest.raises(TypeError, match="config"):
        V.VQVAE(tiny())


def test_latent_grid_is_symmetric_and_z2_falls_down_the_rows():
    grid = V.latent_grid(steps=5, quantile=0.9)
    edge = Normal(0.0, 1.0).icdf(torch.tensor(0.9))
    assert grid.shape == (25, 2)
    rows = grid.view(5, 5, 2)
    assert torch.allclose(rows[0, 0], torch.stack([-edge, edge]))     # top left: z1 low, z2 high
    assert torch.allclose(rows[-1, -1], torch.stack([edge, -edge]))
    assert (rows[:, 1:, 0] > rows[:, :-1, 0]).all() and (rows[:, :, 1] == rows[:, :1, 1]).all()  # z1 along a row
    assert (rows[1:, :, 1] < rows[:-1, :, 1]).all() and (rows[:, :, 0] == rows[:1, :, 0]).all()  # z2 down rows
    assert torch.allclose(grid, -grid.flip(0), atol=1e-6)                 # symmetric about the origin
    assert rows[2, 2].abs().max() < 1e-6
    with pytest.raises(ValueError, match="quantile"):
        V.latent_grid(5, quantile=0.4)


def test_rate_distortion_is_the_negative_elbo_split_under_the_same_seed():
    m, x = model(), torch.rand(16, 1, 8, 8, generator=_g())
    torch.manual_seed(99)
    after = torch.rand(3)
    torch.manual_seed(99)
    rate, distortion = V.rate_distortion(m, x, seed=5)
    assert torch.equal(torch.rand(3), after), "rate_distortion must leave the global random state alone"
    torch.manual_seed(5)
    with torch.no_grad():
        out = V.negative_elbo(m, x)
    assert rate == pytest.approx(float(out["kl"]), rel=1e-6)
    assert distortion == pytest.approx(float(out["recon"]), rel=1e-6)
    assert V.rate_distortion(m, x, seed=5) == (rate, distortion)


@pytest.mark.parametrize("network", V.NETWORKS)
def test_gaussian_decoder_samples_of_images_stay_in_0_1_and_vectors_are_not_clipped(network):
    m = model(network=network, decoder="gaussian", base=4)
    with torch.no_grad():
        m.decoder.net[-1].bias.fill_(0.5)
        m.decoder.net[-1].weight.mul_(20)                            # a decoder whose means leave [0, 1]
        raw = m.decoder(draw_normal((50, 2), _g()))
    assert raw.min() < 0 and raw.max() > 1
    x = m.sample(50, generator=_g())
    assert x.shape == (50, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    vectors = model(shape=(3,), decoder="gaussian")
    z = torch.randn(4, 2, generator=_g())
    assert torch.equal(vectors.decode(z), vectors.decoder(z))


# ----------------------------------------------------------------------------- the Keras twin

def _keras_vae(config: V.VAEConfig):
    from gencourse.keras import vae as kv
    kv.keras.utils.set_random_seed(0)
    return kv, kv.KerasVAE(config)


def _copy_weights(torch_vae: V.VAE, keras_vae) -> None:
    """A PyTorch VAE's weights into a KerasVAE of the same config (same layers in the same order)."""
    params = [p.detach() for name, p in torch_vae.named_parameters() if name != "log_scale"]
    weights = [w for w in keras_vae.weights if w is not keras_vae.log_scale]
    assert len(params) == len(weights)
    for w, p in zip(weights, params):
        if p.dim() == 2:                                             # Linear (out, in) -> Dense (in, out)
            p = p.T
        elif p.dim() == 4:                                           # (out|in, in|out, kh, kw) -> (kh, kw, ., .)
            p = p.permute(2, 3, 1, 0)
        w.assign(p.contiguous())
    if torch_vae.log_scale is not None:
        keras_vae.log_scale.assign(torch_vae.log_scale.detach())


@pytest.mark.parametrize("network, decoder", [("mlp", "bernoulli"), ("conv", "gaussian")])
def test_keras_vae_with_the_same_weights_computes_what_the_pytorch_vae_does(network, decoder):
    config = tiny(network=network, decoder=decoder, base=4)
    torch_vae = model(network=network, decoder=decoder, base=4)
    _, keras_vae = _keras_vae(config)
    _copy_weights(torch_vae, keras_vae)
    x = torch.rand(6, 1, 8, 8, generator=_g())
    with torch.no_grad():
        torch.manual_seed(1)
        want = torch_vae.loss(x)
        torch.manual_seed(1)
        got = keras_vae.loss_terms(x)
        for key in ("loss", "recon", "kl", "nll"):
            assert got[key].item() == pytest.approx(want[key].item(), rel=1e-5), key
        assert torch.allclose(keras_vae.log_prob(x, generator=_g(2)), torch_vae.log_prob(x, generator=_g(2)))
        assert torch.allclose(keras_vae.sample(4, generator=_g(3)), torch_vae.sample(4, generator=_g(3)), atol=1e-6)
        assert torch.allclose(keras_vae.reconstruct(x), torch_vae.reconstruct(x), atol=1e-6)


def test_keras_vae_refuses_what_it_cannot_build():
    kv, _ = _keras_vae(tiny())
    with pytest.raises(TypeError, match="config"):
        kv.KerasVAE(V.VQVAEConfig.fast())
    m = kv.KerasVAE(tiny())
    with pytest.raises(ValueError, match="x must have shape"):
        m.loss_terms(torch.rand(4, 1, 4, 4))


def test_keras_vae_learns_the_digits_and_trains_its_decoder_scale(digits):
    x_train, x_test = digits
    kv, m = _keras_vae(tiny(latent_dim=8, hidden=64))
    m.compile(optimizer=kv.keras.optimizers.Adam(3e-3))

    def test_nll() -> float:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            return float(m.loss_terms(x_test)["nll"])

    before = test_nll()
    history = m.fit(x_train.numpy(), batch_size=64, epochs=15, verbose=0)
    after = test_nll()
    assert set(history.history) == {"loss", "recon", "kl"}
    assert after < 0.6 * before, f"test negative ELBO {before:.1f} -> {after:.1f} nats"
    logs = m.evaluate(x_test.numpy(), batch_size=len(x_test), verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(after, rel=0.05)

    kv, g = _keras_vae(tiny(decoder="gaussian"))
    g.compile(optimizer=kv.keras.optimizers.Adam(1e-2))
    scale = g.log_scale.numpy().copy()
    g.fit(x_train[:64].numpy(), batch_size=32, epochs=1, verbose=0)
    assert (g.log_scale.numpy() != scale).all(), "the Gaussian decoder's log sigma is a trained weight"


def test_full_presets_code_path_on_tiny_sizes():
    """The full profile's MNIST models (28x28), shrunk: the conv VAE, the VQ-VAE's 7x7 grid with its code
    prior, and latent diffusion on the conv VAE each build, train a step and sample on the CPU."""
    x = torch.rand(6, 1, 28, 28)
    budget = train.TrainConfig(steps=2, batch_size=3, progress=False)
    conv = V.VAE(V.VAEConfig.full(base=4, latent_dim=4, iw_samples=3))
    assert (conv.config.shape, conv.config.network) == ((1, 28, 28), "conv")
    train.fit(conv, x, budget)
    assert conv.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 28, 28)
    assert conv.log_prob(x[:2]).shape == (2,)
    vq = V.VQVAE(V.VQVAEConfig.full(codes=8, code_dim=4, base=4))
    assert vq.config.grid == 7
    train.fit(vq, x, budget)
    codes = vq.encode(x)
    assert codes.shape == (6, 7, 7)
    prior = V.CodePrior(vq, ar.ImageARConfig(n_layer=1, n_head=2, n_embd=8))
    train.fit(prior, codes, budget)
    assert prior.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 28, 28)
    model, scale = V.fit_latent_diffusion(conv, x, D.DiffusionConfig.latent(4, hidden=8, timesteps=5),
                                            budget)
    latent = V.LatentDiffusion(conv, model, scale)
    samples = latent.sample(2, generator=torch.Generator().manual_seed(0), steps=2)
    assert samples.shape == (2, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1


@pytest.mark.parametrize("network", V.NETWORKS)
def test_categorical_decoder_scores_grey_levels_and_means_lie_between_them(network):
    """The categorical decoder (chapter 6) gives a distribution over the 17 grey levels of each pixel: its
    log-likelihood is torch's Categorical, its mean the expected grey value, and off-grid data is an error."""
    m = model(network=network, decoder="categorical", levels=17, base=4)
    z = torch.randn(3, 2, generator=_g(1))
    logits = m.decoder(z)
    assert logits.shape == (3, 1, 8, 8, 17)
    k = torch.randint(0, 17, (3, 1, 8, 8), generator=_g(2))
    x = k / 16
    want = torch.distributions.Categorical(logits=logits).log_prob(k).flatten(1).sum(1)
    assert torch.allclose(m.log_likelihood(x, z), want, atol=1e-4)
    mean = m.decode(z)
    assert mean.shape == (3, 1, 8, 8) and mean.min() >= 0 and mean.max() <= 1
    expected = (torch.softmax(logits, -1) * torch.arange(17) / 16).sum(-1)
    assert torch.allclose(mean, expected, atol=1e-6)
    with pytest.raises(ValueError, match="between levels"):
        m.log_likelihood(torch.full((3, 1, 8, 8), 0.03), z)
    assert m.log_prob(x, k=4).shape == (3,)
    with pytest.raises(ValueError, match="levels"):
        V.VAEConfig(decoder="categorical", levels=1)
