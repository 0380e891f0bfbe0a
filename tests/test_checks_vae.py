"""The checks of lab 04 pass on correct answers and on the package's references, and fail on stubs and on
typical slips, each with its own message."""

from __future__ import annotations

import math

import pytest
from checks_contract import fails_untouched, passes_quietly
import torch
import torch.nn.functional as F

from gencourse import diffusion, train, vae
from gencourse.checks import vae as checks

# ----------------------------------------------------------------------------- references (what a learner writes)
# Written independently of gencourse.vae: other but equivalent formulas, so that the checks' tolerances are
# exercised as well as their logic.


def reparameterize(mu, logvar, eps):
    return mu + eps * torch.sqrt(torch.exp(logvar))


def gaussian_kl(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu ** 2 - torch.exp(logvar), dim=1)


def _elbo(model, x, beta=1.0, *, z_at_mean=False, detach_z=False, sum_batch=False, pixel_mean=False, sign=1,
          beta_in_nll=False, beta_in_loss=True, recon_sign=1, per_example=False):
    """negative_elbo, with switches for the usual slips."""
    mu, logvar = model.encode(x)
    z = mu if z_at_mean else reparameterize(mu, logvar, torch.randn_like(mu))
    if detach_z:
        z = z.detach()
    if pixel_mean:
        recon = F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").flatten(1).mean(1)
    else:
        recon = -model.log_likelihood(x, z)
    recon, kl = recon_sign * recon, gaussian_kl(mu, logvar)
    if not per_example:
        recon, kl = (recon.sum(), kl.sum()) if sum_batch else (recon.mean(), kl.mean())
    b = beta if beta_in_loss else 1.0
    return {"loss": recon + sign * b * kl, "recon": recon, "kl": kl,
            "nll": recon + sign * (beta if beta_in_nll else 1.0) * kl}


def negative_elbo(model, x, beta=1.0):
    return _elbo(model, x, beta)


def _log_weights(model, x, eps, prior=True, posterior=True):
    """(K, B) log p(x|z_k) [+ log p(z_k)] [- log q(z_k|x)], with torch.distributions."""
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps                                                       # (K, B, D)
    k = eps.shape[0]
    xs = x.unsqueeze(0).expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])
    log_w = model.log_likelihood(xs, z.reshape(k * x.shape[0], -1)).reshape(k, x.shape[0])
    if prior:
        log_w = log_w + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    if posterior:
        log_w = log_w - torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    return log_w


def iw_bound(model, x, eps):
    return torch.logsumexp(_log_weights(model, x, eps), dim=0) - math.log(eps.shape[0])


def vector_quantize(z_e, codebook):
    squared = ((z_e[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)       # (N, K)
    indices = squared.argmin(dim=1)
    e = codebook[indices]
    z_q = z_e + (e - z_e).detach()
    return z_q, indices, ((e - z_e.detach()) ** 2).mean(), ((z_e - e.detach()) ** 2).mean()


def _fit(vae_model, images, config, budget, *, freeze=True, finetune=False, scale_of=None, sample=False,
         divide=True, returns=None, draw_after=False):
    """fit_latent_diffusion, with switches for the usual slips."""
    if finetune:
        train.fit(vae_model, images, train.TrainConfig(steps=2, batch_size=4, lr=1e-2, progress=False))
    if freeze:
        for p in vae_model.parameters():
            p.requires_grad_(False)
    vae_model.eval()
    with torch.no_grad():
        mu, logvar = vae_model.encode(images)
    scale = mu.std() if scale_of is None else scale_of(mu)
    model = diffusion.DiffusionModel(config)
    if sample:
        with torch.no_grad():
            latents = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    else:
        latents = mu
    train.fit(model, latents / scale if divide else latents, budget)
    if draw_after:
        torch.randn(5)
    if returns is not None:
        return returns(vae_model, model, scale)
    return model, scale


def fit_latent_diffusion(vae_model, images, config, budget):
    return _fit(vae_model, images, config, budget)


REFERENCES = {
    checks.reparameterize: reparameterize,
    checks.gaussian_kl: gaussian_kl,
    checks.negative_elbo: negative_elbo,
    checks.iw_bound: iw_bound,
    checks.vector_quantize: vector_quantize,
    checks.fit_latent_diffusion: fit_latent_diffusion,
}


@pytest.mark.parametrize("check, fn", REFERENCES.items(), ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_on_a_correct_answer(check, fn, capsys):
    passes_quietly(check, fn, capsys)


@pytest.mark.parametrize("check, k", [(checks.reparameterize, 1), (checks.gaussian_kl, 2), (checks.negative_elbo, 3),
                                      (checks.iw_bound, 4), (checks.vector_quantize, 5),
                                      (checks.fit_latent_diffusion, 6)])
def test_check_fails_on_an_untouched_exercise(check, k):
    fails_untouched(check, f"4.{k}")


@pytest.mark.parametrize("check, fn", [
    (checks.reparameterize, vae.reparameterize), (checks.gaussian_kl, vae.gaussian_kl),
    (checks.negative_elbo, vae.negative_elbo), (checks.iw_bound, vae.iw_bound),
    (checks.vector_quantize, vae.vector_quantize), (checks.fit_latent_diffusion, vae.fit_latent_diffusion),
], ids=lambda v: getattr(v, "__name__", ""))
def test_the_packages_own_functions_pass_their_checks(check, fn, capsys):
    passes_quietly(check, fn, capsys)


@pytest.mark.parametrize("check, fn", [
    (checks.negative_elbo, lambda m, x, beta=1.0: (torch.randn(4), negative_elbo(m, x, beta))[1]),
    (checks.fit_latent_diffusion, lambda *a: _fit(*a, draw_after=True)),
])
def test_a_learner_who_draws_random_numbers_leaves_the_global_state_alone(check, fn):
    torch.manual_seed(7)
    before = torch.get_rng_state()
    try:
        check(fn)
    except AssertionError:
        pass                                     # drawing before the sample changes it: a failure, still no leak
    assert torch.equal(torch.get_rng_state(), before)


def test_the_elbo_check_says_to_draw_nothing_before_the_sample():
    _fails(checks.negative_elbo, lambda m, x, beta=1.0: (torch.randn(4), negative_elbo(m, x, beta))[1],
           "draw nothing else before it")


def _elbo_with_probabilities(model, x, beta=1.0):
    """Another correct answer: Bernoulli probabilities and a summed BCE, eps from torch.randn."""
    mu, logvar = model.encode(x)
    z = mu + torch.exp(logvar / 2) * torch.randn(mu.shape)
    recon = F.binary_cross_entropy(torch.sigmoid(model.decoder(z)), x, reduction="sum") / len(x)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum() / len(x)
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "nll": recon + kl, "beta": beta}


def _iw_bound_with_repeat(model, x, eps):
    """Another correct answer: x.repeat and vae.normal_log_prob, as the lab's solution writes it."""
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    k = len(eps)
    log_px = model.log_likelihood(x.repeat(k, *[1] * (x.dim() - 1)), z.flatten(0, 1)).view(k, len(x))
    log_w = log_px + vae.normal_log_prob(z) - vae.normal_log_prob(z, mu, logvar)
    return torch.logsumexp(log_w, dim=0) - math.log(k)


def _vector_quantize_with_torch_min(z_e, codebook):
    """Another correct answer: squared distances expanded, .min(dim=1).indices, the codebook side first."""
    d = z_e.pow(2).sum(1, keepdim=True) - 2 * z_e @ codebook.T + codebook.pow(2).sum(1)
    idx = d.min(dim=1).indices
    e = codebook[idx]
    return e.detach() + z_e - z_e.detach(), idx, F.mse_loss(z_e.detach(), e), F.mse_loss(e.detach(), z_e)


@pytest.mark.parametrize("check, fn", [(checks.negative_elbo, _elbo_with_probabilities),
                                       (checks.iw_bound, _iw_bound_with_repeat),
                                       (checks.vector_quantize, _vector_quantize_with_torch_min)],
                         ids=lambda v: getattr(v, "__name__", ""))
def test_checks_accept_other_correct_formulas(check, fn, capsys):
    passes_quietly(check, fn, capsys)


def test_the_latent_diffusion_check_accepts_a_plain_number_for_scale():
    checks.fit_latent_diffusion(lambda *a: (lambda m, s: (m, s.item()))(*fit_latent_diffusion(*a)))


# ----------------------------------------------------------------------------- typical slips, one message each

def _fails(check, fn, match):
    with pytest.raises(AssertionError, match=match):
        check(fn)


@pytest.mark.parametrize("fn, match", [
    (lambda mu, lv, eps: mu + torch.exp(lv) * eps, r"you scale eps by exp\(logvar\), the VARIANCE"),
    (lambda mu, lv, eps: mu + lv * eps, "logvar is the log of the variance, not the standard deviation"),
    (lambda mu, lv, eps: mu + 0.5 * lv * eps, r"you scale eps by logvar / 2, which is log sigma"),
    (lambda mu, lv, eps: mu * eps + torch.exp(0.5 * lv), "mu and sigma have swapped roles"),
    (lambda mu, lv, eps: mu + eps, "the noise is not scaled"),
    (lambda mu, lv, eps: mu - torch.exp(0.5 * lv) * eps, "a minus sign gives the same distribution"),
    (lambda mu, lv, eps: mu.detach() + torch.exp(0.5 * lv) * eps, "right value, but no gradient reaches mu"),
    (lambda mu, lv, eps: mu + torch.exp(0.5 * lv.detach()) * eps, "no gradient reaches logvar"),
    (lambda mu, lv, eps: torch.tensor((mu + torch.exp(0.5 * lv) * eps).tolist()), "no gradient reaches mu"),
    (lambda mu, lv, eps: mu + torch.exp(0.5 * lv) * torch.randn_like(mu),
     r"differs from the reference for the test mu, logvar and eps: at position \(row \d, column \d\)"),
    (lambda mu, lv, eps: (mu + torch.exp(0.5 * lv) * eps).sum(1), r"z should have shape \(6, 3\), got \(6,\)"),
])
def test_reparameterize_slips(fn, match):
    _fails(checks.reparameterize, fn, match)


def _kl_terms(mu, logvar):
    return mu ** 2 + logvar.exp() - 1 - logvar


def _kl_with_std(mu, logvar):
    sigma = torch.exp(logvar)                     # taken for the standard deviation
    return 0.5 * (mu ** 2 + sigma ** 2 - 1 - torch.log(sigma ** 2)).sum(dim=1)


@pytest.mark.parametrize("fn, match", [
    (lambda mu, lv: _kl_terms(mu, lv).sum(1), "you forgot the factor 1/2"),
    (lambda mu, lv: 0.5 * torch.sum(1 + lv - mu ** 2 - lv.exp(), dim=1), "the sign is flipped"),
    (lambda mu, lv: 0.5 * _kl_terms(mu, lv).mean(1), "you average over the latent dimensions"),
    (lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - lv).sum(1), "the -1 inside the sum is missing"),
    (_kl_with_std, r"you treat exp\(logvar\) as the standard deviation"),
    (lambda mu, lv: 0.5 * (mu + lv.exp() - 1 - lv).sum(1), "mu must be squared"),
    (lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 + lv).sum(1), "the log-variance enters with a minus sign"),
    (lambda mu, lv: 0.5 * _kl_terms(mu, lv).sum(), r"your KL is one number; return one KL per example"),
    (lambda mu, lv: 0.5 * _kl_terms(mu, lv).sum(1).mean(), "your KL is one number"),
    (lambda mu, lv: 0.5 * _kl_terms(mu, lv), r"one value per latent dimension, shape \(5, 4\)"),
    (lambda mu, lv: 0.5 * _kl_terms(mu, lv).sum(0), r"the KL should have shape \(5,\), got \(4,\)"),
    (lambda mu, lv: gaussian_kl(mu.detach(), lv), "right value, but no gradient reaches mu"),
    (lambda mu, lv: 1.1 * gaussian_kl(mu, lv), r"at position \(example \d\) of the KL"),
])
def test_gaussian_kl_slips(fn, match):
    _fails(checks.gaussian_kl, fn, match)


def _elbo_under_no_grad(model, x, beta=1.0):
    with torch.no_grad():
        return negative_elbo(model, x, beta)


def _elbo_slip(**switches):
    return lambda model, x, beta=1.0: _elbo(model, x, beta, **switches)


@pytest.mark.parametrize("fn, match", [
    (_elbo_slip(z_at_mean=True), "scored at z = mu"),
    (_elbo_slip(beta_in_loss=False), "the loss ignores beta"),
    (_elbo_slip(beta_in_nll=True), "\"nll\" must be recon \\+ kl whatever beta is"),
    (_elbo_slip(sign=-1), "the KL is ADDED"),
    (_elbo_slip(sum_batch=True), "you sum over the batch"),
    (_elbo_slip(pixel_mean=True), "the reconstruction term is averaged over pixels"),
    (_elbo_slip(recon_sign=-1), "recon is the NEGATIVE log-likelihood"),
    (lambda m, x, beta=1.0: (lambda o: {"loss": o["loss"], "reconstruction": o["recon"], "kl": o["kl"],
                                        "nll": o["nll"]})(negative_elbo(m, x, beta)),
     r"return a dict with the keys \['loss', 'recon', 'kl', 'nll'\], got keys"),
    (lambda m, x, beta=1.0: negative_elbo(m, x, beta)["loss"], "return a dict with the keys .*got Tensor"),
    (lambda m, x, beta=1.0: {k: v.detach() for k, v in negative_elbo(m, x, beta).items()}, "carries no gradient"),
    (lambda m, x, beta=1.0: {k: v.item() for k, v in negative_elbo(m, x, beta).items()},
     r"out\[\"loss\"\] should be one number .*got float"),
    (_elbo_slip(per_example=True),
     r"out\[\"loss\"\] should be one number \(a 0-dim tensor: the mean over the batch\), got \(8,\)"),
    (_elbo_slip(detach_z=True), "right value, but its gradient with respect to the encoder's weights differs.*"
                                "do not detach z"),
    (_elbo_under_no_grad, "the loss carries no gradient"),
])
def test_negative_elbo_slips(fn, match):
    _fails(checks.negative_elbo, fn, match)


def _iw_slip(combine=None, **terms):
    def fn(model, x, eps):
        log_w = _log_weights(model, x, eps, **terms)
        if combine is None:
            return torch.logsumexp(log_w, dim=0) - math.log(len(eps))
        return combine(log_w, len(eps))
    return fn


def _iw_first_sample(model, x, eps):
    """eps taken for one (B, D) draw: the K = 1 bound of the first sample."""
    return _log_weights(model, x, eps[:1])[0]


@pytest.mark.parametrize("fn, match", [
    (_iw_slip(lambda w, k: w.mean(0)), "you average the log-weights over the K samples: that is the ELBO"),
    (_iw_slip(lambda w, k: torch.logsumexp(w, 0)), r"the - log K is missing"),
    (_iw_slip(lambda w, k: torch.logsumexp(w, 0) - math.log2(k)), r"you subtract log2\(K\)"),
    (_iw_first_sample, "only the first sample is used"),
    (_iw_slip(prior=False), r"the \+ log p\(z_k\) term \(the prior, a standard normal\) is missing"),
    (_iw_slip(posterior=False), r"the - log q\(z_k\|x\) term is missing"),
    (_iw_slip(prior=False, posterior=False), r"the weights are p\(x\|z_k\) only"),
    (_iw_slip(lambda w, k: torch.log(torch.exp(w).mean(0))),
     r"right for moderate log-weights, but for a model whose log-weights are about -400 .*\[-inf.*torch.logsumexp"),
    (_iw_slip(lambda w, k: torch.logsumexp(w, 0).mean() - math.log(k)), "your bound is one number"),
    (_iw_slip(lambda w, k: torch.logsumexp(w.flatten(), 0) - math.log(k)), "your bound is one number"),
    (_iw_slip(lambda w, k: torch.logsumexp(w, 1) - math.log(k)), r"the bound should have shape \(6,\), got \(7,\)"),
])
def test_iw_bound_slips(fn, match):
    _fails(checks.iw_bound, fn, match)


def _vq(*, pick=torch.argmin, straight=lambda z_e, e: z_e + (e - z_e).detach(), losses=None, values=False):
    def fn(z_e, codebook):
        indices = pick(torch.cdist(z_e, codebook), dim=1)
        e = codebook[indices]
        if values:                                # .min(dim=1) returns (values, indices): the first taken
            indices = torch.cdist(z_e, codebook).min(dim=1)[0]
        z_q = straight(z_e, e)
        if losses is None:
            return z_q, indices, F.mse_loss(e, z_e.detach()), F.mse_loss(z_e, e.detach())
        return (z_q, indices, *losses(z_e, e))
    return fn


@pytest.mark.parametrize("fn, match", [
    (_vq(pick=torch.argmax), r"you pick the FARTHEST codebook entry \(argmax\)"),
    (_vq(straight=lambda z_e, e: e), "the gradient does not pass STRAIGHT THROUGH to z_e"),
    (_vq(straight=lambda z_e, e: z_e + (e.detach() - z_e)), "STRAIGHT THROUGH"),
    (_vq(straight=lambda z_e, e: e.detach()), "STRAIGHT THROUGH"),
    (_vq(straight=lambda z_e, e: z_e + e - z_e.detach()), r"z_q sends gradient into the codebook.*Detach the whole"),
    (_vq(straight=lambda z_e, e: z_e + (e - z_e.detach())), "z_q sends gradient into the codebook"),
    (_vq(losses=lambda z_e, e: (F.mse_loss(z_e, e.detach()), F.mse_loss(e, z_e.detach()))),
     r"codebook_loss sends gradient into z_e\. It should move only the codebook: detach z_e"),
    (_vq(losses=lambda z_e, e: (F.mse_loss(e, z_e), F.mse_loss(z_e, e.detach()))), "codebook_loss sends gradient "
                                                                                   "into z_e"),
    (_vq(losses=lambda z_e, e: (F.mse_loss(e, z_e.detach()), F.mse_loss(z_e, e))),
     r"commitment_loss sends gradient into the codebook\. It should move only the encoder \(z_e\): detach the chosen"),
    (_vq(losses=lambda z_e, e: (F.mse_loss(e.detach(), z_e.detach()), F.mse_loss(z_e, e.detach()))),
     "codebook_loss sends no gradient into the codebook"),
    (_vq(losses=lambda z_e, e: ((e - z_e.detach()).square().sum(), F.mse_loss(z_e, e.detach()))),
     r"codebook_loss is \S+, expected \S+: the mean over every entry"),
    (_vq(losses=lambda z_e, e: (F.mse_loss(e, z_e.detach()), (z_e - e.detach()).square().sum(1).mean())),
     r"commitment_loss is 2\.10\d+, expected 0\.700\d+: the mean over every entry \(all vectors and all "
     r"components\)"),
    (_vq(losses=lambda z_e, e: (F.mse_loss(e, z_e.detach(), reduction="none"), F.mse_loss(z_e, e.detach()))),
     r"codebook_loss should be one number, got \(10, 3\)"),
    (_vq(losses=lambda z_e, e: (F.mse_loss(e, z_e.detach()) + 0.25 * F.mse_loss(z_e, e.detach()),)),
     r"return a tuple \(z_q, indices, codebook_loss, commitment_loss\), got tuple of length 3"),
    (lambda z_e, cb: list(vector_quantize(z_e, cb)), r"return a tuple .*got list"),
    (_vq(values=True), r"indices should be a tensor of integers of shape \(10,\).*torch.float32"),
    (lambda z_e, cb: (lambda q, i, c, m: (q, F.one_hot(i, len(cb)), c, m))(*vector_quantize(z_e, cb)),
     r"indices should be a tensor of integers of shape \(10,\), one code per vector, got \(10, 6\)"),
    (_vq(pick=lambda d, dim: (d + torch.arange(6.0)).argmin(dim=dim)), r"vector \d+ should take code \d+, its "
                                                                      "nearest codebook entry, you give \\d+"),
])
def test_vector_quantize_slips(fn, match):
    _fails(checks.vector_quantize, fn, match)


def _fit_encoding_with_gradient(vae_model, images, config, budget):
    """Neither frozen nor encoded without gradient: train.fit backpropagates into the VAE's graph twice."""
    mu = vae_model.encode(images)[0]
    model = diffusion.DiffusionModel(config)
    train.fit(model, mu / mu.std(), budget)
    return model, mu.std()


def _fit_slip(**switches):
    return lambda *a: _fit(*a, **switches)


@pytest.mark.parametrize("fn, match", [
    (_fit_slip(freeze=False), "the VAE's parameters still require gradients: freeze it"),
    (_fit_slip(finetune=True), "the VAE's weights changed: the autoencoder is trained already"),
    (_fit_encoding_with_gradient, r"Exercise 4\.6: _fit_encoding_with_gradient raised RuntimeError"),
    (_fit_slip(scale_of=lambda mu: mu.std(dim=0)), "scale should be ONE number"),
    (_fit_slip(scale_of=lambda mu: mu.var()), "not their variance"),
    (_fit_slip(scale_of=lambda mu: mu.abs().max()), "not their largest value"),
    (_fit_slip(scale_of=lambda mu: mu.std() * 1.3), r"scale is \S+, expected \S+ for the test VAE and images"),
    (_fit_slip(sample=True), r"scale is right, but the trained diffusion model's weights differ.*encoder MEANS"),
    (_fit_slip(divide=False), "scale is right, but the trained diffusion model's weights differ"),
    (_fit_slip(returns=lambda v, m, s: vae.LatentDiffusion(v, m, s)),
     r"return a pair \(model, scale\), got LatentDiffusion"),
    (_fit_slip(returns=lambda v, m, s: m), r"return a pair \(model, scale\), got DiffusionModel"),
    (_fit_slip(returns=lambda v, m, s: (vae.LatentDiffusion(v, m, s), s)),
     "the first thing returned should be the diffusion.DiffusionModel you trained, got LatentDiffusion"),
    (_fit_slip(returns=lambda v, m, s: (s, m)), "should be the diffusion.DiffusionModel you trained, got Tensor"),
])
def test_fit_latent_diffusion_slips(fn, match):
    _fails(checks.fit_latent_diffusion, fn, match)


def test_a_crash_in_the_learners_code_becomes_a_message():
    _fails(checks.iw_bound, lambda model, x, eps: model.encode(eps), r"Exercise 4\.4: <lambda> raised")
