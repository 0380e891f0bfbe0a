"""Unit tests of gencourse.gan (and its Keras twin): the losses, R1, the alternating update, EMA, sampling, slerp."""

from __future__ import annotations

import math

import pytest
import torch
from weights import gen as _g, same as _same, snapshot as _state

from gencourse import data, evaluate, train
from gencourse import gan as G
from gencourse.diffusion import draw_normal


def tiny(**changes) -> G.GANConfig:
    return G.GANConfig.fast(**{**dict(latent_dim=4, hidden=16, depth=1, base=4), **changes})


def model(**changes) -> G.GAN:
    torch.manual_seed(0)
    return G.GAN(tiny(**changes))


def _fit(m: G.GAN, x, steps: int = 3, **changes) -> train.History:
    config = dict(steps=steps, batch_size=8, lr=1e-2, schedule="constant", progress=False)
    return train.fit(m, x, train.TrainConfig(**{**config, **changes}))


REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-3.0, 0.0, 1.5, 0.2])
sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# ----------------------------------------------------------------------------- the losses

@pytest.mark.parametrize("kind", ["minimax", "nonsaturating"])
def test_discriminator_loss_is_the_cross_entropy_of_real_against_fake(kind):
    want = mean(-math.log(sigmoid(r)) for r in REAL.tolist()) + mean(-math.log(1 - sigmoid(f)) for f in FAKE.tolist())
    assert G.discriminator_loss(REAL, FAKE, kind).item() == pytest.approx(want, rel=1e-6)


def test_discriminator_loss_hinge_and_the_value_at_indifference():
    want = mean(max(0, 1 - r) for r in REAL.tolist()) + mean(max(0, 1 + f) for f in FAKE.tolist())
    assert G.discriminator_loss(REAL, FAKE, "hinge").item() == pytest.approx(want, rel=1e-6)
    zeros = torch.zeros(5)  # D(x) = 1/2 everywhere: log 4, as GAN.loss's docstring says
    assert G.discriminator_loss(zeros, zeros, "nonsaturating").item() == pytest.approx(math.log(4))


@pytest.mark.parametrize("kind, per_logit", [
    ("minimax", lambda f: math.log(1 - sigmoid(f))),
    ("nonsaturating", lambda f: -math.log(sigmoid(f))),
    ("hinge", lambda f: -f),
])
def test_generator_loss_matches_its_definition(kind, per_logit):
    assert G.generator_loss(FAKE, kind).item() == pytest.approx(mean(map(per_logit, FAKE.tolist())), rel=1e-6)


def test_minimax_generator_loss_saturates_where_the_nonsaturating_one_does_not():
    """Early in training D rejects fakes confidently (logit -10): the minimax loss gives G almost no gradient."""
    grads = {}
    for kind in ("minimax", "nonsaturating"):
        fake = torch.full((4,), -10.0, requires_grad=True)
        G.generator_loss(fake, kind).backward()
        grads[kind] = fake.grad.abs().mean().item()
    assert grads["minimax"] == pytest.approx(sigmoid(-10) / 4, rel=1e-4)        # about 1e-5
    assert grads["nonsaturating"] == pytest.approx(sigmoid(10) / 4, rel=1e-4)   # about 1/4
    assert grads["nonsaturating"] > 1000 * grads["minimax"]


def test_the_losses_reject_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        G.discriminator_loss(REAL, FAKE, "wasserstein")
    with pytest.raises(ValueError, match="kind"):
        G.generator_loss(FAKE, "wasserstein")


def test_r1_penalty_of_a_linear_discriminator_is_the_squared_norm_of_its_weights():
    w = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)         # D(x) = w.x: grad_x D = w everywhere
    x = torch.randn(6, 3, generator=_g()).requires_grad_()
    penalty = G.r1_penalty(x @ w, x)
    assert penalty.item() == pytest.approx(w.detach().square().sum().item())
    (grad_w,) = torch.autograd.grad(penalty, w)                     # differentiable: D can be trained on it
    assert torch.allclose(grad_w, 2 * w.detach())


def test_d_loss_adds_r1_only_with_gradients_on():
    m = model(r1=2.0)
    real, fake = torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8)
    out = m.d_loss(real, fake)
    base = G.discriminator_loss(m.discriminator(real), m.discriminator(fake), m.config.loss)
    assert out["d_loss"].item() == pytest.approx((base + 2.0 / 2 * out["r1"]).item(), rel=1e-5)
    with torch.no_grad():
        assert "r1" not in m.d_loss(real, fake) and "r1" not in m.loss(real)


# ----------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("changes, match", [
    (dict(network="resnet"), "config.network"),
    (dict(loss="wasserstein"), "config.loss"),
    (dict(r1=-0.1), "config.r1"),
    (dict(network="dcgan", shape=(1, 10, 10)), "divides by 4"),
    (dict(network="dcgan", shape=(64,)), "square images"),
])
def test_bad_configs_are_refused_by_name(changes, match):
    with pytest.raises(ValueError, match=match):
        G.GAN(tiny(**changes))


def test_config_must_be_a_gan_config():
    with pytest.raises(TypeError, match="config"):
        G.GAN(dict(latent_dim=4))


def test_labels_must_match_the_kind_of_gan():
    plain, conditional = model(), model(num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        plain.sample(2, y=1)
    with pytest.raises(ValueError, match="labels y"):
        conditional.sample(2)
    with pytest.raises(ValueError, match="labels y"):
        conditional.loss(torch.rand(4, 1, 8, 8))
    with pytest.raises(ValueError, match="y must lie in"):
        conditional.sample(2, y=3)


# ----------------------------------------------------------------------------- the update

def _optimizers(m: G.GAN, lr_d: float, lr_g: float):
    return (torch.optim.Adam(m.discriminator.parameters(), lr=lr_d),
            torch.optim.Adam(m.generator.parameters(), lr=lr_g))


@pytest.mark.parametrize("network", G.NETWORKS)
def test_each_player_moves_only_by_its_own_optimizer(network):
    m = model(network=network)
    real = m.to_model(torch.rand(8, 1, 8, 8, generator=_g()))
    z_d, z_g = torch.randn(8, 4), torch.randn(8, 4)
    d0, g0 = _state(m.discriminator), _state(m.generator)
    G.adversarial_step(m, real, z_d, z_g, *_optimizers(m, lr_d=1e-2, lr_g=0.0))
    assert _same(g0, _state(m.generator)), "the discriminator's step moved the generator"
    assert not _same(d0, _state(m.discriminator))
    d1 = _state(m.discriminator)
    G.adversarial_step(m, real, z_d, z_g, *_optimizers(m, lr_d=0.0, lr_g=1e-2))
    assert _same(d1, _state(m.discriminator)), "the generator's step moved the discriminator"
    assert not _same(g0, _state(m.generator))


def test_the_discriminator_step_sends_no_gradient_to_the_generator():
    m = model()
    opt_d, opt_g = _optimizers(m, 1e-3, 1e-3)
    seen = []
    step = opt_d.step
    opt_d.step = lambda *a, **k: (seen.extend(p.grad for p in m.generator.parameters()), step(*a, **k))[1]
    G.adversarial_step(m, m.to_model(torch.rand(8, 1, 8, 8)), torch.randn(8, 4), torch.randn(8, 4), opt_d, opt_g)
    assert seen and all(grad is None for grad in seen), "the fakes must be detached for D's step"


def test_configure_optimizers_gives_each_player_its_own_parameters():
    m = model(network="dcgan")
    opt_d, opt_g = m.configure_optimizers(train.TrainConfig(lr=3e-4))
    ids = lambda opt: {id(p) for group in opt.param_groups for p in group["params"]}  # noqa: E731
    assert ids(opt_d) == {id(p) for p in m.discriminator.parameters()}
    assert ids(opt_g) == {id(p) for p in m.generator.parameters()}
    assert not ids(opt_d) & ids(opt_g) and len(ids(opt_d) | ids(opt_g)) == len(list(m.parameters()))
    for opt in (opt_d, opt_g):
        assert opt.param_groups[0]["lr"] == 3e-4 and opt.param_groups[0]["betas"] == m.config.betas


def test_fit_averages_the_generator_only():
    m = model(network="dcgan")
    x = torch.rand(16, 1, 8, 8, generator=_g())
    decay = 0.5
    shadow = {k: v.detach().clone() for k, v in m.generator.state_dict().items()}
    last = {}

    def hook(step, model_, logs):          # runs after each update: what the EMA sees, and the trained weights
        for k, v in model_.generator.state_dict().items():
            if v.is_floating_point():
                shadow[k].lerp_(v, 1 - decay)
            else:
                shadow[k].copy_(v)
        last["d"], last["g"] = _state(model_.discriminator), _state(model_.generator)

    history = train.fit(m, x, train.TrainConfig(steps=4, batch_size=8, lr=1e-2, ema_decay=decay, progress=False),
                        hook=hook)
    assert {"loss", "d_loss", "g_loss", "d_real", "d_fake"} <= set(history.values)
    assert _same(last["d"], _state(m.discriminator)), "the discriminator must keep its last trained weights"
    assert not _same(last["g"], _state(m.generator)), "the generator's weights must be the average"
    for k, v in m.generator.state_dict().items():
        assert torch.allclose(v, shadow[k]), k


def test_training_step_uses_the_swappable_parts():
    m = model(r1=1.0)
    calls = []
    d_loss, g_loss = m.losses

    def recording(name, fn):
        def wrapped(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return wrapped

    m.losses = (recording("d", d_loss), recording("g", g_loss))
    m.penalty = recording("r1", m.penalty)
    m.update = recording("update", m.update)
    _fit(m, torch.rand(16, 1, 8, 8), steps=2)
    assert calls == ["update", "d", "r1", "g"] * 2


# ----------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("network", G.NETWORKS)
def test_decode_and_sample_agree_for_the_same_latents(network):
    m = model(network=network)
    _fit(m, torch.rand(16, 1, 8, 8), steps=2)  # BatchNorm's running statistics are no longer the defaults
    x = m.sample(6, generator=_g(4))
    assert torch.equal(x, m.decode(draw_normal((6, 4), _g(4))))
    assert x.shape == (6, 1, 8, 8) and 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("network", G.NETWORKS)
def test_conditional_samples_depend_on_the_label(network):
    m = model(network=network, num_classes=3)
    a, b = m.sample(5, generator=_g(), y=0), m.sample(5, generator=_g(), y=1)
    assert not torch.allclose(a, b)
    assert torch.equal(a, m.sample(5, generator=_g(), y=torch.zeros(5, dtype=torch.long)))


def test_slerp_runs_from_z0_to_z1_on_the_sphere():
    g = _g()
    z0, z1 = torch.randn(16, generator=g), torch.randn(16, generator=g)
    z1 = z1 * z0.norm() / z1.norm()                                  # equal norms
    path = G.slerp(z0, z1, 9)
    assert path.shape == (9, 16)
    assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    assert torch.allclose(path.norm(dim=1), z0.norm().expand(9), rtol=1e-4)
    assert ((z0 + z1) / 2).norm() < 0.9 * z0.norm(), "the straight line would cut inside the sphere"
    same = G.slerp(z0, 2 * z0, 3)                                    # one direction: the straight line
    assert torch.allclose(same[1], 1.5 * z0)


def test_a_toy_gan_learns_to_cover_the_ring():
    torch.manual_seed(0)
    m = G.GAN(G.GANConfig.toy(hidden=64, depth=2))
    points = data.toy2d("eight_gaussians", 512)

    def covered() -> int:
        return evaluate.mode_coverage(m.sample(1000, generator=_g()), data.ring_modes(), data.RING_STD).modes

    before = covered()                     # untrained: a blob near the centre, far from every mode
    train.fit(m, points, train.TrainConfig(steps=400, batch_size=128, lr=2e-3, progress=False))
    after = covered()
    assert before <= 2 and after >= 6, f"{before} -> {after} of 8 modes"


# ----------------------------------------------------------------------------- the Keras twin

def _keras_gan(**changes):
    from gencourse.keras import gan as kg
    kg.keras.utils.set_random_seed(0)
    return kg, kg.KerasGAN(tiny(network="dcgan", **changes))


def test_keras_gan_refuses_what_it_does_not_build():
    kg = _keras_gan()[0]
    with pytest.raises(ValueError, match="config.network"):
        kg.KerasGAN(tiny())
    with pytest.raises(ValueError, match="num_classes"):
        kg.KerasGAN(tiny(network="dcgan", num_classes=3))
    with pytest.raises(TypeError, match="config"):
        kg.KerasGAN(dict(latent_dim=4))


@pytest.mark.parametrize("frozen", ["generator", "discriminator"])
def test_keras_gan_moves_each_player_by_its_own_optimizer(frozen):
    kg, m = _keras_gan()
    lr = dict(generator=0.0, discriminator=0.0)
    lr[{"generator": "discriminator", "discriminator": "generator"}[frozen]] = 1e-2
    m.compile(kg.keras.optimizers.Adam(lr["discriminator"]), kg.keras.optimizers.Adam(lr["generator"]))
    before = {name: [w.numpy().copy() for w in getattr(m, name).trainable_weights]
              for name in ("generator", "discriminator")}
    history = m.fit(torch.rand(32, 1, 8, 8).numpy(), batch_size=8, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "g_loss"}
    for name, weights in before.items():
        moved = any((w.numpy() != w0).any() for w, w0 in zip(getattr(m, name).trainable_weights, weights))
        assert moved is (name != frozen), f"{name} moved={moved}"


def test_keras_gan_uses_the_shared_losses():
    kg, m = _keras_gan(loss="nonsaturating", r1=0.0)
    x = torch.rand(8, 1, 8, 8)
    torch.manual_seed(1)
    out = m.loss_terms(x)
    torch.manual_seed(1)
    fake = m.generator(torch.randn(8, 4), training=False)
    real_logits, fake_logits = m.discriminator(2 * x - 1)[:, 0], m.discriminator(fake)[:, 0]
    assert out["loss"].item() == pytest.approx(G.discriminator_loss(real_logits, fake_logits).item(), rel=1e-5)
    assert out["g_loss"].item() == pytest.approx(G.generator_loss(fake_logits).item(), rel=1e-5)
    assert torch.equal(m.sample(3, generator=_g(2)), m(draw_normal((3, 4), _g(2)), training=False))


def test_full_preset_code_path_on_tiny_sizes():
    """The full profile's MNIST DCGAN (28x28), shrunk: it builds, trains a step and samples on the CPU."""
    config = G.GANConfig.full(base=4, latent_dim=8)
    assert (config.shape, config.network) == ((1, 28, 28), "dcgan")
    model = G.GAN(config)
    x = torch.rand(6, 1, 28, 28)
    history = train.fit(model, x, train.TrainConfig(steps=2, batch_size=3, progress=False))
    assert len(history["d_loss"]) == 2
    samples = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
