"""Unit tests of gencourse.baselines: the Gaussian mixture and independent pixels, against hand computations.

The generic contract (loss keys, sample shapes, seeds, modes, overfitting) is in test_contract.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from gencourse import baselines, data, train



def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- Gaussian mixture

def _mixture() -> baselines.GaussianMixture:
    """Two components in 2-D with weights 0.75 / 0.25, set by hand."""
    m = baselines.GaussianMixture(2, dim=2)
    with torch.no_grad():
        m.logits.copy_(torch.tensor([math.log(3.0), 0.0]))
        m.means.copy_(torch.tensor([[0.0, 0.0], [8.0, -2.0]]))
        m.log_scales.copy_(torch.tensor([[0.0, 0.0], [math.log(0.5), math.log(2.0)]]))
    return m


def _normal_pdf(x: float, mean: float, std: float) -> float:
    return math.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def test_mixture_log_prob_by_hand():
    m = _mixture()
    points = [(0.0, 0.0), (8.0, -2.0), (7.0, 3.0), (-2.5, 0.5)]
    lp = m.log_prob(torch.tensor(points))
    assert lp.shape == (4,)
    for (a, b), got in zip(points, lp.tolist()):
        p = 0.75 * _normal_pdf(a, 0, 1) * _normal_pdf(b, 0, 1) + 0.25 * _normal_pdf(a, 8, 0.5) * _normal_pdf(b, -2, 2)
        assert got == pytest.approx(math.log(p), rel=1e-5)


def test_mixture_log_prob_is_stable_far_from_every_component():
    lp = _mixture().log_prob(torch.tensor([[300.0, -300.0]]))
    assert torch.isfinite(lp).all() and lp.item() < -1e4     # logsumexp: no log(0)


def test_mixture_loss_is_the_mean_nll():
    m = _mixture()
    x = torch.randn(10, 2, generator=_g())
    out = m.loss(x)
    assert set(out) == {"loss", "nll"}
    assert torch.allclose(out["nll"], -m.log_prob(x).mean()) and torch.equal(out["loss"], out["nll"])
    assert torch.allclose(m.loss((x, torch.zeros(10)))["nll"], out["nll"])   # labels are ignored


def test_mixture_samples_follow_the_weights_and_components():
    m = _mixture()
    s = m.sample(8000, generator=_g(1))
    assert s.shape == (8000, 2)
    second = s[:, 0] > 4                                  # the components do not overlap along x
    assert second.float().mean().item() == pytest.approx(0.25, abs=0.02)
    assert torch.allclose(s[second].mean(0), torch.tensor([8.0, -2.0]), atol=0.1)
    assert torch.allclose(s[second].std(0), torch.tensor([0.5, 2.0]), atol=0.1)
    assert torch.allclose(s[~second].std(0), torch.ones(2), atol=0.05)
    assert torch.equal(s, m.sample(8000, generator=_g(1)))


def test_mixture_learns_two_clusters_with_fit():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(300, 2) * 0.3 + torch.tensor([2.0, 0.0]), torch.randn(100, 2) * 0.3 - 2.0])
    m = baselines.GaussianMixture(2)
    before = m.loss(x)["nll"].item()
    history = train.fit(m, x, train.TrainConfig(steps=300, batch_size=100, lr=5e-2, progress=False))
    assert history.final("nll", 20) < before - 5
    big, small = (0, 1) if m.means[0, 0] > 0 else (1, 0)   # which component found which cluster
    weights = m.logits.softmax(0)
    assert weights[big].item() == pytest.approx(0.75, abs=0.03)
    assert torch.allclose(m.means[big], torch.tensor([2.0, 0.0]), atol=0.1)
    assert torch.allclose(m.means[small], torch.tensor([-2.0, -2.0]), atol=0.1)
    assert torch.allclose(m.log_scales.exp(), torch.full((2, 2), 0.3), atol=0.05)


# ----------------------------------------------------------------------------- a mixture of independent pixels

def _two_patterns():
    """Two near-deterministic components over (1, 2, 2): one on the left column, one on the right."""
    probs = torch.tensor([[[[0.99, 0.01], [0.99, 0.01]]], [[[0.01, 0.99], [0.01, 0.99]]]])
    return torch.tensor([0.7, 0.3]).log(), probs


def test_mixture_nll_by_hand():
    log_weights, probs = _two_patterns()
    x = _binary(5, seed=3).view(5, 1, 2, 3)[..., :2].contiguous()
    got = baselines.mixture_nll(log_weights, probs, x)
    for image, value in zip(x, got.tolist()):
        p = sum(w * math.exp(-baselines.bernoulli_nll(pk, image[None]).item())
                for w, pk in zip(log_weights.exp().tolist(), probs))
        assert value == pytest.approx(-math.log(p), rel=1e-5)


def test_mixture_of_one_is_independent_pixels():
    x = _binary(6)
    probs = baselines.pixel_probabilities(x)
    assert torch.allclose(baselines.mixture_nll(torch.zeros(1), probs[None], x), baselines.bernoulli_nll(probs, x))
    log_weights, new = baselines.em_step(x, torch.zeros(1), torch.full((1, 1, 2, 3), 0.3))
    assert torch.allclose(new[0], probs) and log_weights.tolist() == [0.0]      # one step: exercise 0.1's counts


def test_mixture_nll_survives_where_probabilities_underflow():
    probs = torch.full((3, 1, 28, 28), 0.02)
    x = torch.ones(2, 1, 28, 28)                                                # each component: 784 * log 0.02
    nll = baselines.mixture_nll(torch.full((3,), -math.log(3)), probs, x)
    assert torch.isfinite(nll).all() and nll.tolist() == pytest.approx([-784 * math.log(0.02)] * 2, rel=1e-5)


def test_em_step_raises_the_likelihood_and_keeps_probabilities_inside():
    x = data.images("digits", "train", binarize=True).tensors[0][:300]
    model = baselines.BernoulliMixture(6, generator=_g(0))
    nlls = []
    for _ in range(8):
        model.log_weights, model.probs = baselines.em_step(x, model.log_weights, model.probs)
        nlls.append(float(-model.log_prob(x).mean()))
        assert math.isclose(float(model.log_weights.exp().sum()), 1.0, rel_tol=1e-5)
        assert 0 < model.probs.min() and model.probs.max() < 1
    assert all(b <= a + 0.05 for a, b in zip(nlls, nlls[1:])), nlls
    coins = baselines.bernoulli_nll(baselines.pixel_probabilities(x), x).mean()
    assert nlls[-1] < float(coins) - 2                                            # the latent variable pays


def test_em_step_by_hand():
    x = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]], [[[0.0, 1.0]]]])        # (3, 1, 1, 2)
    log_weights = torch.tensor([0.5, 0.5]).log()
    probs = torch.tensor([[[[0.9, 0.1]]], [[[0.1, 0.9]]]])
    r = baselines.responsibilities(log_weights, probs, x)
    assert r[:, 0].tolist() == pytest.approx([81 / 82, 81 / 82, 1 / 82], rel=1e-5)
    new_log_weights, new_probs = baselines.em_step(x, log_weights, probs)
    counts = r.sum(0)
    assert new_log_weights.exp().tolist() == pytest.approx(((counts + 1) / 5).tolist(), rel=1e-5)
    on = (r[:, 0] * x[:, 0, 0, 0]).sum()
    assert new_probs[0, 0, 0, 0].item() == pytest.approx(((on + 1) / (counts[0] + 2)).item(), rel=1e-5)


def test_bernoulli_mixture_samples_follow_weights_and_components():
    model = baselines.BernoulliMixture(2, shape=(1, 2, 2))
    model.log_weights, model.probs = _two_patterns()
    s = model.sample(4000, generator=_g(1))
    assert s.shape == (4000, 1, 2, 2) and set(s.unique().tolist()) <= {0.0, 1.0}
    left = (s[:, 0, :, 0].sum(1) == 2) & (s[:, 0, :, 1].sum(1) == 0)
    assert float(left.float().mean()) == pytest.approx(0.7 * 0.99**4, abs=0.03)   # whole images, not pixels
    assert torch.equal(s, model.sample(4000, generator=_g(1)))


def test_complete_keeps_what_is_seen_and_follows_the_posterior():
    log_weights, probs = _two_patterns()
    observed = torch.tensor([[[True, True], [False, False]]])                    # the top row is seen
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]]).repeat(500, 1, 1, 1)         # top row says "right"; bottom lies
    filled = baselines.complete(log_weights, probs, x, observed, generator=_g(2))
    assert torch.equal(filled[:, :, 0], x[:, :, 0])
    right = (filled[:, 0, 1] == torch.tensor([0.0, 1.0])).all(dim=1).float().mean()
    assert right > 0.95                                 # the posterior, from the seen row only, says "right"
    assert torch.equal(filled, baselines.complete(log_weights, probs, x, observed, generator=_g(2)))
    nothing_seen = baselines.complete(log_weights, probs, x, torch.zeros(1, 2, 2, dtype=torch.bool), generator=_g(3))
    left = (nothing_seen[:, 0, 1] == torch.tensor([1.0, 0.0])).all(dim=1).float().mean()
    assert float(left) == pytest.approx(0.7 * 0.99**2, abs=0.06)                # the prior


@pytest.mark.parametrize("call, exc, match", [
    (lambda: baselines.mixture_nll(torch.zeros(2), torch.full((3, 1, 2, 2), 0.5), torch.zeros(1, 1, 2, 2)),
     ValueError, r"probs must have shape \(K, C, H, W\) with K = len\(log_weights\) = 2"),
    (lambda: baselines.em_step(torch.zeros(1, 1, 3, 2), torch.zeros(1), torch.full((1, 1, 2, 2), 0.5)),
     ValueError, r"x must have shape \(N, 1, 2, 2\)"),
    (lambda: baselines.complete(torch.zeros(1), torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, 1, 2, 2),
                                torch.ones(1, 2, 2)), TypeError, "observed must be a boolean mask"),
    (lambda: baselines.BernoulliMixture(0), ValueError, "components must be at least 1"),
    (lambda: baselines.GaussianMixture(0), ValueError, "components must be at least 1"),
    (lambda: baselines.GaussianMixture(2.0), TypeError, "components must be an int"),
    (lambda: baselines.GaussianMixture(2, dim=0), ValueError, "dim must be at least 1"),
    (lambda: _mixture().log_prob(torch.zeros(3, 3)), ValueError, r"x must have shape \(N, 2\)"),
    (lambda: _mixture().log_prob(torch.zeros(2)), ValueError, "x must have shape"),
    (lambda: _mixture().log_prob(torch.zeros(3, 2, dtype=torch.long)), TypeError, "x must be a floating-point"),
    (lambda: _mixture().sample(0), ValueError, "n must be at least 1"),
])
def test_mixture_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ----------------------------------------------------------------------------- independent pixels

def _binary(n: int = 6, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, 1, 2, 3, generator=_g(seed)) < 0.4).float()


def test_pixel_probabilities_are_laplace_smoothed_counts():
    x = torch.zeros(3, 1, 1, 2)
    x[:2, 0, 0, 0] = 1.0                                  # pixel 0 on in 2 of 3 images, pixel 1 never
    p = baselines.pixel_probabilities(x)
    assert p.shape == (1, 1, 2)
    assert p.flatten().tolist() == pytest.approx([3 / 5, 1 / 5])
    all_on = baselines.pixel_probabilities(torch.ones(4, 1, 2, 2))
    assert torch.allclose(all_on, torch.full((1, 2, 2), 5 / 6)) and (all_on < 1).all()   # never exactly 0 or 1


def test_bernoulli_nll_by_hand():
    probs = torch.tensor([[[0.8, 0.1]]])                  # (1, 1, 2)
    x = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])    # (2, 1, 1, 2)
    nll = baselines.bernoulli_nll(probs, x)
    assert nll.shape == (2,)
    assert nll.tolist() == pytest.approx([-math.log(0.8) - math.log(0.9), -math.log(0.2) - math.log(0.1)])


def test_independent_pixels_log_prob_by_hand():
    m = baselines.IndependentPixels((1, 2, 3))
    with torch.no_grad():
        m.logits.copy_(torch.tensor([[[0.0, 1.0, -2.0], [3.0, -0.5, 0.25]]]))
    x = _binary(4)
    lp = m.log_prob(x)
    assert lp.shape == (4,)
    p = torch.sigmoid(m.logits).flatten().tolist()
    for image, got in zip(x.flatten(1).tolist(), lp.tolist()):
        expected = sum(math.log(pi) if v else math.log(1 - pi) for v, pi in zip(image, p))
        assert got == pytest.approx(expected, rel=1e-5)
    untrained = baselines.IndependentPixels((1, 2, 3)).log_prob(x)
    assert torch.allclose(untrained, torch.full((4,), -6 * math.log(2)))   # a fair coin per pixel


def test_independent_pixels_loss_per_pixel_and_per_image():
    m = baselines.IndependentPixels.from_data(_binary(6))
    x = _binary(5, seed=1)
    out = m.loss(x)
    assert set(out) == {"loss", "nll"}
    assert torch.allclose(out["nll"], -m.log_prob(x).mean()) and torch.allclose(out["loss"] * 6, out["nll"])


def test_from_data_is_pixel_probabilities():
    x = _binary(6)
    m = baselines.IndependentPixels.from_data(x)
    assert m.shape == (1, 2, 3)
    assert torch.allclose(torch.sigmoid(m.logits), baselines.pixel_probabilities(x), atol=1e-6)
    assert torch.allclose(-m.log_prob(x), baselines.bernoulli_nll(baselines.pixel_probabilities(x), x), atol=1e-5)
    # its nll on the data is below that of any other setting nearby (the smoothed maximum likelihood)
    worse = baselines.IndependentPixels.from_data(x)
    with torch.no_grad():
        worse.logits.add_(0.3)
    assert m.loss(x)["nll"] < worse.loss(x)["nll"]


def test_independent_pixels_samples_follow_the_probabilities():
    m = baselines.IndependentPixels.from_data(_binary(6))
    s = m.sample(6000, generator=_g(2))
    assert s.shape == (6000, 1, 2, 3) and set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(s.mean(0), torch.sigmoid(m.logits).detach(), atol=0.03)
    assert torch.equal(s, m.sample(6000, generator=_g(2)))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: baselines.pixel_probabilities(torch.zeros(3, 4)), ValueError, "x must have 4 dimensions"),
    (lambda: baselines.pixel_probabilities(torch.full((2, 1, 2, 2), 2.0)), ValueError, r"x must lie in \[0.0, 1.0\]"),
    (lambda: baselines.pixel_probabilities(torch.zeros(2, 1, 2, 2, dtype=torch.long)), TypeError,
     "x must be a floating-point"),
    (lambda: baselines.bernoulli_nll(torch.full((1, 2, 2), 0.5), torch.zeros(3, 1, 3, 3)), ValueError,
     r"x must have shape \(N, 1, 2, 2\)"),
    (lambda: baselines.bernoulli_nll(torch.full((1, 2, 2), 0.5).long(), torch.zeros(3, 1, 2, 2)), TypeError,
     "probs must be a floating-point"),
    (lambda: baselines.IndependentPixels((1, 2, 3)).log_prob(torch.zeros(4, 1, 3, 2)), ValueError,
     r"x must have shape \(N, 1, 2, 3\)"),
    (lambda: baselines.IndependentPixels((1, 2, 3)).log_prob(torch.zeros(4, 1, 2, 3, dtype=torch.long)), TypeError,
     "x must be a floating-point"),
    (lambda: baselines.IndependentPixels.from_data(torch.zeros(3, 6)), ValueError, "x must have 4 dimensions"),
])
def test_independent_pixels_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_unseen_pixels_are_summed_out_even_where_a_probability_is_zero():
    probs = torch.tensor([[[[0.0, 0.5]]], [[[1.0, 0.25]]]])                  # (2, 1, 1, 2)
    x = torch.tensor([[[[1.0, 1.0]]]])
    seen = torch.tensor([[[False, True]]])
    got = baselines.component_log_likelihoods(probs, x, seen)
    assert got[0].tolist() == pytest.approx([math.log(0.5), math.log(0.25)])
