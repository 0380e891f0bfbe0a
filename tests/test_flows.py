"""Unit tests of gencourse.flows (and its Keras twin): every layer and whole flows invert and report the
log-determinant of their autograd Jacobian, ActNorm's data-dependent initialisation, the LU map, a trained
flow's density integrated on a grid, sampling at a temperature, bits per dimension, dequantisation, training
from an energy and importance weights, the configs' checks, and the Keras RealNVP learning two moons."""

from __future__ import annotations

import math

import pytest
import torch
from weights import gen as _g, same as _same, snapshot as _state
from torch.distributions import Normal

from gencourse import data, train
from gencourse import flows as F


def _perturb(module: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Random weights everywhere (a new coupling is the identity, which would test nothing)."""
    g = _g(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _flow(config: F.FlowConfig, seed: int = 0) -> F.Flow:
    """A flow in float64 with ActNorm initialised on a batch and every weight perturbed, in eval mode."""
    torch.manual_seed(seed)
    flow = F.Flow(config).double()
    x = torch.rand(16, *config.shape, generator=_g(seed + 1), dtype=torch.float64)
    if config.logit is None:
        x = 2 * x - 1
    flow(x * 0.9 + 0.05)                                      # training mode: ActNorm's init
    return _perturb(flow, seed).eval()


def _log_abs_det_jacobian(f, x: torch.Tensor) -> torch.Tensor:
    """log|det df/dx| per example, from the full autograd Jacobian of f on each example alone."""
    out = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: f(v.view(1, *xi.shape)).flatten(), xi.flatten())
        out.append(torch.linalg.slogdet(jac).logabsdet)      # slogdet: the LU map's det may be negative
    return torch.stack(out)


def _check_layer(layer, x: torch.Tensor) -> None:
    """inverse(forward(x)) = x, forward's log-det = log|det J|, inverse's = minus forward's."""
    y, log_det = layer(x)
    back, inv_log_det = layer.inverse(y)
    assert log_det.shape == (len(x),) and inv_log_det.shape == (len(x),)
    assert torch.allclose(back, x, atol=1e-5, rtol=0)
    assert torch.allclose(inv_log_det, -log_det, atol=1e-10)
    want = _log_abs_det_jacobian(lambda v: layer(v)[0], x)
    assert torch.allclose(log_det, want, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- the layers

def _coupling_cases():
    torch.manual_seed(0)
    image = F.checkerboard((2, 4, 4), 1)
    assert image.sum() == 16 and torch.equal(image + F.checkerboard((2, 4, 4), 0), torch.ones(2, 4, 4))
    return [("checkerboard_conv", F.AffineCoupling(image, F.ConvNet(2, 8)), (2, 4, 4)),
            ("channel_conv", F.AffineCoupling(F.channel_mask(4, 0), F.ConvNet(4, 8)), (4, 2, 2)),
            ("channel_conv_odd", F.AffineCoupling(F.channel_mask(4, 1), F.ConvNet(4, 8)), (4, 2, 2)),
            ("checkerboard_mlp", F.AffineCoupling(F.checkerboard((5,), 0), F.MLPNet((5,), 8, 2)), (5,))]


@pytest.mark.parametrize("name, layer, shape", _coupling_cases(), ids=lambda c: c if isinstance(c, str) else "")
def test_affine_coupling_inverts_and_its_log_det_is_the_jacobians(name, layer, shape):
    layer = _perturb(layer.double())
    x = torch.randn(3, *shape, generator=_g(1), dtype=torch.float64)
    _check_layer(layer, x)
    y, _ = layer(x)
    keep = layer.mask.bool().expand_as(x)
    assert torch.equal(y[keep], x[keep]), "the masked half passes unchanged"
    assert not torch.allclose(y[~keep], x[~keep]), "the perturbed coupling changes the other half"


def test_a_new_coupling_is_the_identity():
    layer = F.AffineCoupling(F.checkerboard((1, 4, 4), 0), F.MLPNet((1, 4, 4), 8, 1))
    x = torch.randn(3, 1, 4, 4, generator=_g())
    y, log_det = layer(x)
    assert torch.equal(y, x) and torch.equal(log_det, torch.zeros(3))


def test_logit_actnorm_lu_and_squeeze_invert_and_their_log_dets_are_the_jacobians():
    x01 = torch.rand(3, 1, 2, 3, generator=_g(), dtype=torch.float64) * 0.98 + 0.01
    _check_layer(F.LogitTransform(0.05), x01)
    _check_layer(F.LogitTransform(0.0), x01)
    images = torch.randn(3, 3, 2, 2, generator=_g(1), dtype=torch.float64)
    vectors = torch.randn(3, 4, generator=_g(2), dtype=torch.float64)
    for x in (images, vectors):
        torch.manual_seed(0)
        actnorm = F.ActNorm(x.shape[1]).double()
        actnorm(2 * x + 1)                                   # its data-dependent init, then a different batch
        _check_layer(actnorm.eval(), x)
        linear = _perturb(F.InvertibleLinear(x.shape[1]).double())
        _check_layer(linear, x)
    squeeze = F.Squeeze()
    x = torch.randn(2, 2, 4, 4, generator=_g(3), dtype=torch.float64)
    _check_layer(squeeze, x)
    y, _ = squeeze(x)
    assert y.shape == (2, 8, 2, 2)
    assert torch.equal(y[0, :4, 0, 0], x[0, 0, :2, :2].flatten()), "a 2x2 patch becomes 4 channels"


def test_logit_transform_maps_the_unit_interval_to_the_real_line():
    layer = F.LogitTransform(0.05)
    y, _ = layer(torch.tensor([[0.0, 0.5, 1.0]]))
    assert torch.allclose(y, torch.tensor([[math.log(0.05 / 0.95), 0.0, math.log(0.95 / 0.05)]]))


# ----------------------------------------------------------------------------- whole flows

FLOWS = {
    "toy": F.FlowConfig.toy(hidden=16, steps=4),
    "fast_logit": F.FlowConfig.fast(shape=(1, 4, 4), hidden=16, steps=2),
    "glow_levels_2": F.FlowConfig.fast(network="glow", shape=(1, 4, 4), levels=2, steps=2, hidden=8),
    "glow_levels_1": F.FlowConfig.fast(network="glow", shape=(2, 4, 4), levels=1, steps=2, hidden=8, logit=None),
}


@pytest.mark.parametrize("name", FLOWS)
def test_a_flow_inverts_and_its_log_det_is_the_jacobians(name):
    config = FLOWS[name]
    flow = _flow(config)
    x = torch.rand(3, *config.shape, generator=_g(2), dtype=torch.float64) * 0.9 + 0.05
    if config.logit is None:
        x = 4 * x - 2
    z, log_det = flow(x)
    assert z.shape == (3, flow.dims) and log_det.shape == (3,)
    back, inv_log_det = flow.inverse_and_log_det(z)
    assert torch.allclose(back, x, atol=1e-4, rtol=0)
    assert torch.allclose(inv_log_det, -log_det, atol=1e-6)
    assert torch.allclose(log_det, _log_abs_det_jacobian(lambda v: flow(v)[0], x), atol=1e-4, rtol=0)
    assert torch.allclose(flow.log_prob(x), F.standard_normal_log_prob(z) + log_det)
    assert torch.allclose(flow.log_prob(x), F.log_prob(flow, x))


def test_glow_on_digits_with_splits_inverts():
    config = F.FlowConfig.fast(network="glow", levels=2, steps=2, hidden=8)
    flow = _flow(config)
    assert sum(isinstance(layer, F.Split) for layer in flow.layers) == 1
    assert flow._part_shapes() == [(2, 4, 4), (8, 2, 2)]
    x = torch.rand(4, 1, 8, 8, generator=_g(3), dtype=torch.float64) * 0.9 + 0.05
    z, log_det = flow(x)
    assert z.shape == (4, 64)
    back, inv_log_det = flow.inverse_and_log_det(z)
    assert torch.allclose(back, x, atol=1e-4, rtol=0)
    assert torch.allclose(inv_log_det, -log_det, atol=1e-6)


# ----------------------------------------------------------------------------- ActNorm and the LU map

def test_actnorm_initialises_on_the_first_training_batch_only():
    x = 3 + 2 * torch.randn(64, 3, 4, 4, generator=_g())
    x[:, 1] *= 5
    layer = F.ActNorm(3)
    y, log_det = layer(x)
    assert bool(layer.initialized)
    per_channel = y.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(per_channel.std(1), torch.ones(3), atol=1e-4)
    assert torch.allclose(log_det, torch.full((64,), float(layer.log_scale.detach().sum()) * 16))
    before = _state(layer)
    layer(torch.randn(64, 3, 4, 4, generator=_g(1)))           # a second batch: no new init
    assert _same(before, _state(layer))
    fresh = F.ActNorm(3).eval()                                  # eval mode never initialises
    y, _ = fresh(x)
    assert torch.equal(y, x) and not bool(fresh.initialized)
    loaded = F.ActNorm(3)                                        # the flag is saved with the weights
    loaded.load_state_dict(layer.state_dict())
    loaded(torch.randn(8, 3, 4, 4, generator=_g(2)))
    assert _same(before, _state(loaded))


def test_actnorm_init_standardises_vectors_and_images():
    v = torch.randn(500, 4, generator=_g()) * torch.tensor([1.0, 2.0, 0.5, 3.0]) + torch.tensor([0.0, 1.0, -2.0, 5.0])
    bias, log_scale = F.actnorm_init(v)
    assert torch.allclose(bias, -v.mean(0)) and torch.allclose(log_scale, -torch.log(v.std(0)), atol=1e-5)
    y = (v + bias) * torch.exp(log_scale)
    assert torch.allclose(y.mean(0), torch.zeros(4), atol=1e-5) and torch.allclose(y.std(0), torch.ones(4), atol=1e-4)
    images = torch.randn(10, 2, 3, 3, generator=_g(1)) * 4 + 1
    bias, log_scale = F.actnorm_init(images)
    for c in range(2):
        assert torch.allclose(bias[c], -images[:, c].mean())
        assert torch.allclose(log_scale[c], -torch.log(images[:, c].std()), atol=1e-5)


def test_invertible_linear_weight_is_invertible_and_log_s_is_its_log_det():
    torch.manual_seed(0)
    layer = F.InvertibleLinear(5).double()
    w = layer.weight()
    assert torch.allclose(w @ w.T, torch.eye(5, dtype=torch.float64), atol=1e-6), "it starts as a rotation"
    _perturb(layer, std=0.5)                                     # as training would move it
    w = layer.weight()
    sign, log_abs_det = torch.linalg.slogdet(w)
    assert sign != 0
    assert torch.allclose(layer.log_s.sum(), log_abs_det, atol=1e-10)
    assert torch.allclose(w @ torch.linalg.inv(w), torch.eye(5, dtype=torch.float64), atol=1e-10)
    x = torch.randn(2, 5, 3, 3, generator=_g(), dtype=torch.float64)
    y, log_det = layer(x)
    assert torch.allclose(y[:, :, 1, 2], x[:, :, 1, 2] @ w.T), "the same map at every position"
    assert torch.allclose(log_det, log_abs_det * 9)


# ----------------------------------------------------------------------------- a flow trained on two moons

@pytest.fixture(scope="module")
def moons_flow() -> F.Flow:
    torch.manual_seed(0)
    flow = F.Flow(F.FlowConfig.toy(hidden=32, steps=4))
    train.fit(flow, data.toy2d("moons", n=2000), train.TrainConfig(steps=300, batch_size=256, lr=5e-3,
                                                                    progress=False))
    return flow.eval()


def test_a_trained_flows_density_integrates_to_one(moons_flow):
    n, lim = 400, 4.0
    h = 2 * lim / n
    t = torch.linspace(-lim + h / 2, lim - h / 2, n)                 # cell midpoints
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).view(-1, 2)
    with torch.no_grad():
        p = torch.cat([moons_flow.log_prob(part) for part in grid.split(20_000)]).exp()
    assert float(p.sum() * h * h) == pytest.approx(1.0, abs=0.02)
    test = data.toy2d("moons", n=500, seed=1)
    with torch.no_grad():
        assert float(moons_flow.log_prob(test).mean()) > float(moons_flow.log_prob(torch.zeros(1, 2))), \
            "the moons are denser than the gap between them"


def test_sampling_at_a_temperature(moons_flow):
    x = moons_flow.sample(2000, generator=_g())
    assert x.shape == (2000, 2) and torch.isfinite(x).all()
    cold = moons_flow.sample(3, generator=_g(), temperature=1e-7)
    origin = moons_flow.inverse(torch.zeros(1, 2)).detach()
    assert torch.allclose(cold, origin.expand(3, 2), atol=1e-4), "temperature -> 0 gives the image of z = 0"
    spread = {t: float((moons_flow.sample(2000, generator=_g(), temperature=t) - origin).norm(dim=1).mean())
              for t in (0.3, 0.6, 1.0)}
    assert spread[0.3] < spread[0.6] < spread[1.0]
    torch.manual_seed(0)
    linear = F.Flow(F.FlowConfig.toy(steps=2))                  # untrained: couplings are the identity
    assert torch.allclose(linear.sample(50, generator=_g(1), temperature=0.5),
                          0.5 * linear.sample(50, generator=_g(1)), atol=1e-6), "temperature scales the spread"
    with pytest.raises(ValueError, match="temperature"):
        moons_flow.sample(2, temperature=0.0)


def test_image_flow_samples_stay_in_the_unit_interval():
    torch.manual_seed(0)
    flow = _perturb(F.Flow(F.FlowConfig.fast(hidden=16, steps=2)))
    x = flow.sample(16, generator=_g(), temperature=3.0)
    assert x.shape == (16, 1, 8, 8) and 0 <= x.min() and x.max() <= 1


def test_trace_gives_every_layers_state_and_refuses_splits(moons_flow):
    x = data.toy2d("moons", n=7)
    states = F.trace(moons_flow, x)
    assert len(states) == len(moons_flow.layers) + 1 == 3 * moons_flow.config.steps + 1
    assert all(s.shape == (7, 2) for s in states) and torch.equal(states[0], x)
    with torch.no_grad():
        assert torch.allclose(states[-1], moons_flow(x)[0], atol=1e-6)
    glow = F.Flow(F.FlowConfig.fast(network="glow", levels=2, steps=1, hidden=8))
    with pytest.raises(ValueError, match="split"):
        F.trace(glow, torch.rand(2, 1, 8, 8))


# ----------------------------------------------------------------------------- images: dequantisation and bits

def test_dequantized_draws_fresh_noise_within_each_pixels_bin():
    images = data.digits("train").tensors[0][:20]
    levels = 17
    ds = data.Dequantized(images, levels)
    assert len(ds) == 20
    first, second = ds[3], ds[3]
    assert not torch.equal(first, second), "every access draws new noise"
    k = (images * (levels - 1)).round()
    for i in range(len(ds)):
        y = ds[i]
        assert (y >= k[i] / levels).all() and (y < (k[i] + 1) / levels).all()
    y = data.dequantize(images, levels, _g())
    assert torch.equal(torch.floor(y * levels), k) and torch.equal(y, data.dequantize(images, levels, _g()))


def test_bits_per_dim_by_hand_and_falling_with_training():
    images = data.digits("train").tensors[0]
    test = data.digits("test").tensors[0][:200]
    torch.manual_seed(0)                       # untrained, no logit: ActNorm off, a rotation, identity couplings
    flow = F.Flow(F.FlowConfig.fast(shape=(1, 8, 8), steps=1, hidden=8, logit=None))
    y = data.dequantize(test, 17, _g(4))
    nll = -Normal(0.0, 1.0).log_prob(y.double()).sum((1, 2, 3)).mean()
    want = (float(nll) + 64 * math.log(17)) / (64 * math.log(2))
    assert F.bits_per_dim(flow, test, 17, _g(4)) == pytest.approx(want, rel=1e-5)

    torch.manual_seed(0)
    flow = F.Flow(F.FlowConfig.fast(hidden=32, steps=2))
    before = F.bits_per_dim(flow, test, 17, _g(5))
    train.fit(flow, data.Dequantized(images[:512], 17), train.TrainConfig(steps=150, batch_size=64, lr=3e-3,
                                                                           progress=False))
    after = F.bits_per_dim(flow, test, 17, _g(5))
    assert after < before - 0.5, f"bits per dim {before:.2f} -> {after:.2f}"
    assert after < math.log2(17), "better than the uniform distribution over 17 grey levels"


# ----------------------------------------------------------------------------- training from an energy

def test_reverse_kl_loss_is_energy_plus_log_q_and_log_q_is_the_flows_density():
    flow = _flow(FLOWS["toy"])
    z = torch.randn(64, 2, generator=_g(), dtype=torch.float64)
    x, log_det = flow.inverse_and_log_det(z)
    log_q = F.standard_normal_log_prob(z) - log_det
    assert torch.allclose(log_q, flow.log_prob(x), atol=1e-4)
    loss = F.reverse_kl_loss(flow, F.double_well, z)
    assert float(loss) == pytest.approx(float((F.double_well(x) + flow.log_prob(x)).mean()), abs=1e-4)
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters() if p.requires_grad), "it trains every weight"


def test_importance_weights_of_a_flow_that_is_the_target_are_constant():
    flow = _flow(FLOWS["toy"])
    x, log_w = F.importance_sample(flow, lambda v: -flow.log_prob(v), 500, _g())
    assert x.shape == (500, 2)
    assert torch.allclose(log_w, torch.zeros_like(log_w), atol=1e-4)
    assert F.effective_sample_size(log_w) == pytest.approx(500, rel=1e-4)
    assert F.effective_sample_size(torch.tensor([0.0, -1e4, -1e4])) == pytest.approx(1.0)


def test_reweighted_mean_recovers_a_known_expectation():
    torch.manual_seed(0)
    flow = F.Flow(F.FlowConfig.toy(steps=2))        # untrained: a rotation of N(0, I), which is N(0, I)
    mu = torch.tensor([0.5, -0.3])
    x, log_w = F.importance_sample(flow, lambda v: 0.5 * (v - mu).square().sum(1), 20_000, _g())
    assert F.reweighted_mean(x[:, 0], log_w) == pytest.approx(0.5, abs=0.04)
    assert F.reweighted_mean(x[:, 1], log_w) == pytest.approx(-0.3, abs=0.04)
    assert abs(float(x[:, 0].mean())) < 0.04, "unweighted, the samples keep q's mean"
    assert F.reweighted_mean(torch.tensor([1.0, 3.0]), torch.zeros(2)) == pytest.approx(2.0)
    assert 0.5 * 20_000 < F.effective_sample_size(log_w) < 20_000


def test_well_probability():
    assert F.well_probability(lambda x: F.double_well(x, tilt=0.0)) == pytest.approx(0.5, abs=1e-3)
    assert F.well_probability() < 0.5, "a positive tilt deepens the left well"
    assert F.double_well(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), tilt=0.5).tolist() == [-0.5, 0.5]


# ----------------------------------------------------------------------------- configs

def test_flow_config_checks_name_the_field():
    with pytest.raises(ValueError, match="config.network"):
        F.FlowConfig(network="resnet")
    for bad in (0.5, -0.1):
        with pytest.raises(ValueError, match="config.logit"):
            F.FlowConfig.fast(logit=bad)
    with pytest.raises(ValueError, match="config.shape"):
        F.FlowConfig.fast(network="glow", shape=(1, 6, 6), levels=2)
    with pytest.raises(ValueError, match="config.shape"):
        F.FlowConfig(network="glow", shape=(2,))
    with pytest.raises((TypeError, ValueError), match="config.steps"):
        F.FlowConfig(steps=0)
    assert F.FlowConfig.fast(network="glow", shape=(1, 12, 12), levels=2).levels == 2
    with pytest.raises(TypeError, match="config"):
        F.Flow(dict(shape=(2,)))


# ----------------------------------------------------------------------------- the Keras twin

def test_keras_realnvp_learns_two_moons():
    from gencourse.keras import flows as kf
    kf.keras.utils.set_random_seed(0)
    m = kf.KerasRealNVP(F.FlowConfig.toy(hidden=32, steps=4))
    m.compile(optimizer=kf.keras.optimizers.Adam(5e-3))
    train_x, test_x = data.toy2d("moons", n=2048), data.toy2d("moons", n=500, seed=1)
    before = m.nll(test_x)
    z, log_det = m.to_latent(test_x)
    assert torch.allclose(z, test_x) and torch.equal(log_det, torch.zeros(500)), "it starts as the identity"
    history = m.fit(train_x.numpy(), batch_size=256, epochs=38, verbose=0)      # 304 steps
    after = m.nll(test_x)
    assert set(history.history) == {"loss"}
    assert after < before - 1.0, f"test nll {before:.2f} -> {after:.2f} nats"
    logs = m.evaluate(test_x.numpy(), batch_size=500, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(after / 2, rel=1e-4)
    x = test_x[:4].double().float()
    with torch.no_grad():
        z, log_det = m.to_latent(x)
        back, inv_log_det = m.inverse_and_log_det(z)
    assert torch.allclose(back, x, atol=1e-4) and torch.allclose(inv_log_det, -log_det, atol=1e-5)
    jac = _log_abs_det_jacobian(lambda v: m.to_latent(v)[0], x)
    assert torch.allclose(log_det, jac, atol=1e-3)
    samples = m.sample(2000, generator=_g())
    assert samples.shape == (2000, 2) and float(m.log_prob(samples).mean()) > -after - 0.5
    with pytest.raises(ValueError, match="shape"):
        kf.KerasRealNVP(F.FlowConfig.fast())


def test_full_preset_code_path_on_tiny_sizes():
    """The full profile's MNIST flow (28x28, Glow's multi-scale architecture), shrunk: it builds, trains two steps
    on dequantised images, inverts, scores bits per dimension and samples on the CPU."""
    config = F.FlowConfig.full(steps=1, hidden=4)
    assert (config.shape, config.network, config.levels) == ((1, 28, 28), "glow", 2)
    flow = F.Flow(config)
    images = (torch.rand(6, 1, 28, 28, generator=_g(3)) * 255).round() / 255
    train.fit(flow, data.Dequantized(images, 256), train.TrainConfig(steps=2, batch_size=3, progress=False))
    flow.eval()
    x = data.dequantize(images, 256, _g(4))
    z, _ = flow(x)
    assert z.shape == (6, 784) and (flow.inverse(z) - x).abs().max() < 1e-3
    assert math.isfinite(F.bits_per_dim(flow, images, 256, _g(5)))
    samples = flow.sample(2, generator=_g(6), temperature=0.7)
    assert samples.shape == (2, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1


def test_actnorm_keeps_its_data_dependent_init_for_data_and_its_identity_start_for_energies():
    """Sampling a new flow (eval mode, no gradient) must not use up ActNorm's first-batch initialisation; a flow
    trained backwards from an energy marks it done, so that a later forward pass cannot overwrite trained weights."""
    flow = F.Flow(F.FlowConfig.toy())
    actnorms = [layer for layer in flow.layers if isinstance(layer, F.ActNorm)]
    flow.sample(3, generator=_g())
    assert not any(bool(a.initialized) for a in actnorms)
    flow.train()
    flow(torch.randn(16, 2, generator=_g(1)) * 3 + 1)
    assert all(bool(a.initialized) for a in actnorms) and actnorms[0].bias.abs().sum() > 0
    energy_flow = F.Flow(F.FlowConfig.toy()).train()
    F.reverse_kl_loss(energy_flow, F.double_well, torch.randn(8, 2, generator=_g(2))).backward()
    trained = [layer for layer in energy_flow.layers if isinstance(layer, F.ActNorm)]
    assert all(bool(a.initialized) for a in trained) and all(a.bias.abs().sum() == 0 for a in trained)


def test_fit_energy_trains_a_flow_from_an_energy_with_the_loss_it_is_given():
    torch.manual_seed(0)
    flow = F.Flow(F.FlowConfig.toy(steps=2, hidden=16))
    calls = []

    def counting(flow_, energy, z):
        calls.append(z.shape)
        return F.reverse_kl_loss(flow_, energy, z)

    losses = F.fit_energy(flow, F.double_well, 60, batch_size=32, lr=1e-2, loss=counting, progress=False)
    assert len(losses) == 60 and calls[0] == (32, 2) and not flow.training
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.1
