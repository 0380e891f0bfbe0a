"""Checks of lab 04, "Variational autoencoders": the reparameterised sample, the Gaussian KL, the ELBO
loss, the importance-weighted bound, vector quantisation, and latent diffusion assembled from the pieces.

Each check calls the learner's code on fixed inputs and compares it with the reference
(gencourse.vae.reparameterize, gaussian_kl, negative_elbo, iw_bound, vector_quantize and
LatentDiffusion); before the generic "values differ" message it tries the usual slips and names the
one it recognises. `use` (from gencourse.checks) is re-exported here: the lab trains with the
learner's function only once it passes its check.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .. import diffusion, train, vae
from . import call, close, describe, expect_tensor, fixed, gradients, graded, mismatch, observe, passed, seeded, use  # noqa: F401  (use: lab)


def _randn(*shape, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=seeded(seed)) + shift


def _grads(out: torch.Tensor, inputs: list) -> tuple:
    """The gradients of `out` with respect to `inputs`, None for each one it does not reach
    (all None when `out` is cut from the graph altogether, where autograd.grad would raise)."""
    if not out.requires_grad:
        return (None,) * len(inputs)
    return torch.autograd.grad(out, inputs, allow_unused=True, retain_graph=True)


def _gradients(exercise: str, got: torch.Tensor, want: torch.Tensor, inputs: dict, what: str) -> None:
    """The learner's `what` must send to each input the gradient the reference sends."""
    tensors = list(inputs.values())
    mine = gradients(f"the gradient of {what}", got.sum(), tensors)
    ref = _grads(want.sum(), tensors)
    for (name, _), g, r in zip(inputs.items(), mine, ref):
        if g is None or (not g.any() and r.any()):
            raise AssertionError(f"Exercise {exercise}: {what} has the right value, but no gradient reaches {name}: "
                                 "a .detach(), .item(), torch.no_grad() or a new tensor built from numbers cuts it "
                                 "from the graph, and the encoder could not learn.")
        if not close(g, r):
            raise AssertionError(f"Exercise {exercise}: {what} has the right value, but its gradient with respect "
                                 f"to {name} differs from the reference's; write it with differentiable torch "
                                 "operations only.")


# ----------------------------------------------------------------------------- 4.1 the reparameterised sample

@graded("gencourse.vae.reparameterize")
def reparameterize(fn) -> None:
    """Exercise 4.1: z = mu + exp(logvar / 2) * eps, differentiable in mu and logvar."""
    mu = _randn(6, 3, seed=1).requires_grad_()
    logvar = _randn(6, 3, seed=2, scale=0.8, shift=-0.5).requires_grad_()
    eps = _randn(6, 3, seed=3)
    got = expect_tensor("4.1", "z", call("4.1", fn, mu, logvar, eps), (6, 3))
    want = vae.reparameterize(mu, logvar, eps)
    if not close(got, want):
        with torch.no_grad():
            slips = [
                (mu + logvar.exp() * eps, "you scale eps by exp(logvar), the VARIANCE sigma^2; the standard "
                                          "deviation is sigma = exp(logvar / 2)."),
                (mu + logvar * eps, "logvar is the log of the variance, not the standard deviation: "
                                    "sigma = exp(logvar / 2)."),
                (mu + 0.5 * logvar * eps, "you scale eps by logvar / 2, which is log sigma; sigma itself is "
                                          "exp(logvar / 2)."),
                (mu * eps + logvar.mul(0.5).exp(), "mu and sigma have swapped roles: the mean is added, the noise "
                                                   "is multiplied by sigma."),
                (mu + eps, "the noise is not scaled: multiply eps by sigma = exp(logvar / 2)."),
                (mu - logvar.mul(0.5).exp() * eps, "z = mu + sigma * eps (a minus sign gives the same distribution, "
                                                   "but not the same z for a given eps, which the lab relies on)."),
            ]
            raise mismatch("4.1", "z", got, want, "for the test mu, logvar and eps", slips, dims=("row", "column"),
                           hint="z = mu + sigma * eps with sigma = exp(logvar / 2).")
    _gradients("4.1", got, want, {"mu": mu, "logvar": logvar}, "your sample")
    passed("the reparameterised sample is right, and gradients reach mu and logvar")


# ----------------------------------------------------------------------------- 4.2 the Gaussian KL

@graded("gencourse.vae.gaussian_kl")
def gaussian_kl(fn) -> None:
    """Exercise 4.2: KL(N(mu, sigma^2) || N(0, I)) per example, summed over the latent dimensions."""
    mu = _randn(5, 4, seed=4).requires_grad_()
    logvar = _randn(5, 4, seed=5, scale=0.7).requires_grad_()
    got = call("4.2", fn, mu, logvar)
    want = vae.gaussian_kl(mu, logvar)
    if isinstance(got, torch.Tensor) and got.dim() == 0:
        raise AssertionError("Exercise 4.2: your KL is one number; return one KL per example, shape (B,) = (5,): "
                             "sum over the latent dimensions (dim=1) only. The loss averages over the batch later.")
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (5, 4):
        raise AssertionError("Exercise 4.2: your KL has one value per latent dimension, shape (5, 4); the KL of "
                             "the whole Gaussian is the SUM over dimensions (they are independent): shape (5,).")
    got = expect_tensor("4.2", "the KL", got, (5,))
    if not close(got, want):
        with torch.no_grad():
            var = logvar.exp()
            terms = mu.square() + var - 1 - logvar
            slips = [
                (terms.sum(1), "you forgot the factor 1/2 in front of the sum."),
                (-0.5 * terms.sum(1), "the sign is flipped: a KL divergence is never negative."),
                (0.5 * terms.mean(1), "you average over the latent dimensions; the KL of independent dimensions is "
                                      "their SUM."),
                (0.5 * (mu.square() + var - logvar).sum(1), "the -1 inside the sum is missing (it makes the KL zero "
                                                            "when q is exactly N(0, I))."),
                (0.5 * (mu.square() + var.square() - 1 - 2 * logvar).sum(1),
                 "you treat exp(logvar) as the standard deviation: it is the variance sigma^2, so the terms are "
                 "mu^2 + exp(logvar) - 1 - logvar."),
                (0.5 * (mu + var - 1 - logvar).sum(1), "mu must be squared: the term is mu^2."),
                (0.5 * (mu.square() + var - 1 + logvar).sum(1), "the log-variance enters with a minus sign: "
                                                                "-log sigma^2."),
            ]
            raise mismatch("4.2", "the KL", got, want, "for the test mu and logvar", slips, dims=("example",),
                           hint="KL = 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).")
    _gradients("4.2", got, want, {"mu": mu, "logvar": logvar}, "your KL")
    zero = call("4.2", fn, torch.zeros(2, 3), torch.zeros(2, 3))
    if not close(zero, torch.zeros(2)):
        raise AssertionError(f"Exercise 4.2: the KL of N(0, I) from itself should be 0, got {describe(zero)} "
                             f"{zero.tolist() if isinstance(zero, torch.Tensor) else zero}.")
    passed("the Gaussian KL is right: one value per example, zero when q is the prior")


# ----------------------------------------------------------------------------- 4.3 the ELBO loss

def _tiny_vae(**changes) -> vae.VAE:
    sizes = {**dict(shape=(1, 4, 4), latent_dim=3, hidden=16, depth=1), **changes}
    return fixed(lambda: vae.VAE(vae.VAEConfig.fast(**sizes)), seed=40)


def _binary(n: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, 1, 4, 4, generator=seeded(seed)) < 0.4).float()


def _reference_elbo(model, x, beta, z_at_mean=False):
    """negative_elbo's terms under seed 41 (or at z = mu): what the learner's function should return."""
    def run():
        mu, logvar = model.encode(x)
        z = mu if z_at_mean else vae.reparameterize(mu, logvar, torch.randn_like(mu))
        return -model.log_likelihood(x, z), vae.gaussian_kl(mu, logvar)
    return fixed(run, seed=41)


_ELBO_KEYS = ("loss", "recon", "kl", "nll")


@graded("gencourse.vae.negative_elbo")
def negative_elbo(fn) -> None:
    """Exercise 4.3: {"loss": recon + beta kl, "recon", "kl", "nll": recon + kl}, batch means, one z per x."""
    model, x, beta = _tiny_vae(), _binary(8, seed=42), 0.5
    out = fixed(lambda: call("4.3", fn, model, x, beta), seed=41)
    if not isinstance(out, dict) or any(k not in out for k in _ELBO_KEYS):
        keys = f"keys {sorted(map(str, out))}" if isinstance(out, dict) else type(out).__name__
        raise AssertionError(f"Exercise 4.3: return a dict with the keys {list(_ELBO_KEYS)}, got {keys}.")
    for key in _ELBO_KEYS:
        value = out[key]
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise AssertionError(f"Exercise 4.3: out[\"{key}\"] should be one number (a 0-dim tensor: the mean over "
                                 f"the batch), got {describe(value)}.")
    recon, kl = _reference_elbo(model, x, beta)
    want = vae.negative_elbo  # for the message only
    r, k = recon.mean(), kl.mean()
    got = torch.stack([out[key].detach() for key in _ELBO_KEYS])
    reference = torch.stack([r + beta * k, r, k, r + k]).detach()
    if not close(got, reference):
        with torch.no_grad():
            at_mean, _ = _reference_elbo(model, x, beta, z_at_mean=True)
            rm = at_mean.mean()
            slips = [
                (torch.stack([rm + beta * k, rm, k, rm + k]),
                 "the reconstruction is scored at z = mu, the encoder's mean: the ELBO needs a SAMPLE "
                 "z ~ q(z|x), drawn with your reparameterize (eps from torch.randn_like(mu)), or the encoder's "
                 "variance is never trained and the bound is not a bound."),
                (torch.stack([r + k, r, k, r + k]), "the loss ignores beta: loss = recon + beta * kl."),
                (torch.stack([r + beta * k, r, k, r + beta * k]),
                 "\"nll\" must be recon + kl whatever beta is: it is the negative ELBO, the bound on -log p(x) "
                 "that the lab reports; only \"loss\" weighs the KL by beta."),
                (torch.stack([r - beta * k, r, k, r - k]), "the KL is ADDED to the reconstruction term: the ELBO is "
                                                           "E[log p(x|z)] - KL, and the loss is its negative."),
                (torch.stack([(recon + beta * kl).sum(), recon.sum(), kl.sum(), (recon + kl).sum()]),
                 "you sum over the batch; average each term over the examples."),
                (torch.stack([r / 16 + beta * k, r / 16, k, r / 16 + k]),
                 "the reconstruction term is averaged over pixels; -log p(x|z) of an image is the SUM over its "
                 "pixels (they are independent given z), then averaged over the batch."),
                (torch.stack([-r + beta * k, -r, k, -r + k]), "recon is the NEGATIVE log-likelihood, -log p(x|z), "
                                                              "a positive number of nats."),
            ]
            names = ", ".join(f"{key} {float(v):.5g}" for key, v in zip(_ELBO_KEYS, got))
            raise mismatch("4.3", "[loss, recon, kl, nll]", got, reference, f"(you return {names}) for a small VAE "
                           f"with beta = {beta}", slips,
                           hint=f"Use model.encode, your reparameterize with eps = torch.randn_like(mu) (the check "
                                f"fixes the seed, so draw nothing else before it), model.log_likelihood and your "
                                f"gaussian_kl, as {want.__module__}.negative_elbo's docstring says.")
    loss = out["loss"]
    if not loss.requires_grad:
        raise AssertionError("Exercise 4.3: the loss carries no gradient: do not detach it or take .item().")
    ref_loss = fixed(lambda: vae.negative_elbo(model, x, beta)["loss"], seed=41)
    for name, part in (("the encoder", model.encoder), ("the decoder", model.decoder)):
        weights = list(part.parameters())
        mine = gradients(f"the gradient of the loss with respect to {name}'s weights", loss, weights)
        for p, g, r in zip(weights, mine, _grads(ref_loss, weights)):
            if p.dim() > 1 and (g is None or not g.any()):
                raise AssertionError(f"Exercise 4.3: no gradient reaches {name}'s weights; compute the loss from "
                                     "the encoder's outputs through the sample z and the decoder, without .detach().")
            if not close(g if g is not None else torch.zeros_like(p), r, rtol=1e-3):
                raise AssertionError(f"Exercise 4.3: the loss has the right value, but its gradient with respect to "
                                     f"{name}'s weights differs from the reference's: the reconstruction term must "
                                     "reach the encoder through the sample z = mu + sigma * eps, so do not detach z, "
                                     "mu or logvar, nor compute them under torch.no_grad().")
    passed("the ELBO loss is right (recon + beta * kl, with one reparameterised sample), and trains both networks")


# ----------------------------------------------------------------------------- 4.4 the importance-weighted bound

class _SharpVAE(nn.Module):
    """A 'VAE' whose log-weights are hundreds of nats below zero: exp() of them underflows in float32."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(0.3))

    def encode(self, x):
        return x[:, :2] * 0.5 + self.shift, torch.full_like(x[:, :2], -1.0)

    def log_likelihood(self, x, z):
        return -400.0 - 50.0 * (z - x[:, :2]).square().sum(dim=1)


@graded("gencourse.vae.iw_bound")
def iw_bound(fn) -> None:
    """Exercise 4.4: logsumexp_k (log p(x|z_k) + log p(z_k) - log q(z_k|x)) - log K per example."""
    model, x = _tiny_vae(), _binary(6, seed=43)
    eps = _randn(7, 6, 3, seed=44)
    got = call("4.4", fn, model, x, eps)
    if isinstance(got, torch.Tensor) and got.dim() == 0:
        raise AssertionError("Exercise 4.4: your bound is one number; return one bound per example, shape (B,) "
                             "= (6,): the logsumexp runs over the K samples (dim 0 of eps), not over the batch.")
    got = expect_tensor("4.4", "the bound", got, (6,))
    want = vae.iw_bound(model, x, eps)
    if not close(got, want):
        with torch.no_grad():
            w = vae.log_weights(model, x, eps)
            slips = [
                (w.mean(0), "you average the log-weights over the K samples: that is the ELBO estimated with K "
                            "samples, not the importance-weighted bound. Average the WEIGHTS, then take the log: "
                            "log (1/K) sum_k exp(log w_k), with torch.logsumexp."),
                (torch.logsumexp(w, 0), "the - log K is missing: the bound is the log of the MEAN weight, "
                                        "logsumexp - log K."),
                (torch.logsumexp(w, 0) - math.log2(len(eps)), "you subtract log2(K); natural logs throughout: "
                                                             "math.log(K)."),
                (w[0], "only the first sample is used: combine all K samples of eps."),
                (torch.logsumexp(w - w.mean(0), 0) - math.log(len(eps)), "you subtract a constant from the "
                                                                       "log-weights and do not add it back."),
            ]
            mu, logvar = model.encode(x)
            z = vae.reparameterize(mu, logvar, eps)
            px = model.log_likelihood(x.expand(len(eps), *x.shape).flatten(0, 1), z.flatten(0, 1)).view(7, 6)
            slips += [
                (torch.logsumexp(px, 0) - math.log(len(eps)),
                 "the weights are p(x|z_k) only: each is p(x, z_k) / q(z_k|x), so add log p(z_k) (the standard "
                 "normal prior) and subtract log q(z_k|x) (the encoder's Gaussian), both summed over latent dims."),
                (torch.logsumexp(px + vae.normal_log_prob(z), 0) - math.log(len(eps)),
                 "the - log q(z_k|x) term is missing: the weights are p(x, z_k) / q(z_k|x)."),
                (torch.logsumexp(px - vae.normal_log_prob(z, mu, logvar), 0) - math.log(len(eps)),
                 "the + log p(z_k) term (the prior, a standard normal) is missing."),
            ]
            raise mismatch("4.4", "the bound", got, want, "for a small VAE and K = 7 draws of eps", slips,
                           dims=("example",), hint="z_k = mu + sigma * eps_k; log w_k = log p(x|z_k) + log p(z_k) "
                                                   "- log q(z_k|x); the bound is log of the mean of the w_k.")
    sharp, xs = _SharpVAE(), _randn(4, 3, seed=45)
    eps = _randn(5, 4, 2, seed=46)
    got = call("4.4", fn, sharp, xs, eps)
    want = vae.iw_bound(sharp, xs, eps)
    if not isinstance(got, torch.Tensor) or not torch.isfinite(got).all() or not close(got, want, rtol=1e-5):
        raise AssertionError("Exercise 4.4: your bound is right for moderate log-weights, but for a model whose "
                             f"log-weights are about -400 it gives {got.tolist() if isinstance(got, torch.Tensor) else got}"
                             f", expected {[round(v, 3) for v in want.tolist()]}. exp(-400) is 0 in float32, so "
                             "log(mean(exp(w))) becomes log(0) = -inf. torch.logsumexp subtracts the largest "
                             "log-weight before exponentiating and adds it back: use it.")
    passed("the importance-weighted bound is right per example, and stable for log-weights far below zero")


# ----------------------------------------------------------------------------- 4.5 vector quantisation

@graded("gencourse.vae.vector_quantize")
def vector_quantize(fn) -> None:
    """Exercise 4.5: nearest codebook entries, the straight-through gradient, the two VQ losses."""
    z_e = _randn(10, 3, seed=50).requires_grad_()
    codebook = _randn(6, 3, seed=51).requires_grad_()
    out = call("4.5", fn, z_e, codebook)
    if not isinstance(out, tuple) or len(out) != 4:
        raise AssertionError(f"Exercise 4.5: return a tuple (z_q, indices, codebook_loss, commitment_loss), got "
                             f"{describe(out)}" + (f" of length {len(out)}" if isinstance(out, tuple) else "") + ".")
    z_q, idx, cb_loss, commit = out
    want_q, want_idx, want_cb, want_commit = vae.vector_quantize(z_e, codebook)
    if not isinstance(idx, torch.Tensor) or tuple(idx.shape) != (10,) or idx.is_floating_point():
        raise AssertionError(f"Exercise 4.5: indices should be a tensor of integers of shape (10,), one code per "
                             f"vector, got {describe(idx)}" + (f" of {idx.dtype}" if isinstance(idx, torch.Tensor)
                                                                else "") + ".")
    if not torch.equal(idx, want_idx):
        with torch.no_grad():
            far = torch.cdist(z_e, codebook).argmax(dim=1)
        if torch.equal(idx, far):
            raise AssertionError("Exercise 4.5: you pick the FARTHEST codebook entry (argmax); each vector takes "
                                 "its nearest one, the argmin of the distances.")
        i = int((idx != want_idx).nonzero()[0])
        raise AssertionError(f"Exercise 4.5: vector {i} should take code {int(want_idx[i])}, its nearest codebook "
                             f"entry, you give {int(idx[i])}. Compare every vector with every entry "
                             "(torch.cdist, or the expanded squared distances) and take the argmin over entries.")
    z_q = expect_tensor("4.5", "z_q", z_q, (10, 3))
    if not close(z_q, want_q):
        raise mismatch("4.5", "z_q", z_q.detach(), want_q.detach(), "", dims=("vector", "component"),
                       hint="Forward, z_q must equal the chosen entries codebook[indices].")
    for name, got, want, slip in (("codebook_loss", cb_loss, want_cb, commit), ("commitment_loss", commit,
                                                                                 want_commit, cb_loss)):
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise AssertionError(f"Exercise 4.5: {name} should be one number, got {describe(got)}.")
        if not close(got, want):
            raise AssertionError(f"Exercise 4.5: {name} is {float(got.detach()):.5g}, expected "
                                 f"{float(want.detach()):.5g}: the mean over every entry (all vectors and all "
                                 "components) of the squared difference between z_e and its chosen codebook "
                                 "entries, as F.mse_loss computes it.")
    grad_e = gradients("the gradient of z_q with respect to z_e", z_q.sum(), [z_e])[0]
    if grad_e is None or not close(grad_e, torch.ones_like(z_e)):
        raise AssertionError("Exercise 4.5: z_q has the right values, but the gradient does not pass STRAIGHT "
                             "THROUGH to z_e: the nearest-entry lookup has no useful gradient, so the encoder would "
                             "never learn. Write z_q as z_e plus a correction that is detached, so that forward it "
                             "equals the chosen entry and backward it is the identity for z_e.")
    grad_c = gradients("the gradient of z_q with respect to the codebook", z_q.sum(), [codebook])[0]
    if grad_c is not None and grad_c.any():
        raise AssertionError("Exercise 4.5: z_q sends gradient into the codebook; with the straight-through "
                             "estimator the reconstruction's gradient goes to the encoder only (the codebook learns "
                             "from codebook_loss). Detach the whole correction (e - z_e).")
    for name, loss, target, other in (("codebook_loss", cb_loss, codebook, z_e), ("commitment_loss", commit, z_e,
                                                                                codebook)):
        g_target, g_other = gradients(f"the gradients of {name}", loss, [target, other])
        if g_other is not None and g_other.any():
            which = "z_e" if other is z_e else "the codebook"
            stop = "z_e" if name == "codebook_loss" else "the chosen entries"
            raise AssertionError(f"Exercise 4.5: {name} sends gradient into {which}. It should move only "
                                 f"{'the codebook' if name == 'codebook_loss' else 'the encoder (z_e)'}: detach "
                                 f"{stop} in it (the sg[.] of van den Oord et al.).")
        if g_target is None or not g_target.any():
            raise AssertionError(f"Exercise 4.5: {name} sends no gradient into "
                                 f"{'the codebook' if name == 'codebook_loss' else 'z_e'}, which it is there to move.")
    passed("vector quantisation is right: nearest entries, the straight-through gradient, and the two losses")


# ----------------------------------------------------------------------------- 4.6 latent diffusion

def _latent_parts():
    base = _tiny_vae(decoder="gaussian", shape=(1, 8, 8))
    config = diffusion.DiffusionConfig.latent(3, hidden=16, depth=1, timesteps=10)
    images = torch.rand(12, 1, 8, 8, generator=seeded(60))
    budget = train.TrainConfig(steps=6, batch_size=4, lr=1e-2, progress=False)
    return base, config, images, budget


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


@graded("gencourse.vae.fit_latent_diffusion")
def fit_latent_diffusion(fn) -> None:
    """Exercise 4.6: freeze the VAE, scaled encoder means, a DiffusionModel trained on them by train.fit."""
    base, config, images, budget = _latent_parts()
    mine_vae, ref_vae = copy.deepcopy(base), copy.deepcopy(base)
    out = fixed(lambda: call("4.6", fn, mine_vae, images, config, budget), seed=61)
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError(f"Exercise 4.6: return a pair (model, scale), got {describe(out)}.")
    model, scale = out
    if not observe("a DiffusionModel came back", lambda: isinstance(model, diffusion.DiffusionModel)):
        raise AssertionError(f"Exercise 4.6: the first thing returned should be the diffusion.DiffusionModel you "
                             f"trained, got {type(model).__name__}.")
    want_model, want_scale = fixed(lambda: vae.fit_latent_diffusion(ref_vae, images, config, budget), seed=61)
    if not close(observe("the VAE's weights after your function", lambda: _weights(mine_vae)), _weights(base)):
        raise AssertionError("Exercise 4.6: the VAE's weights changed: the autoencoder is trained already and must "
                             "stay as it is. Train only the diffusion model, on latents computed without gradient.")
    if observe("the VAE still requires gradients", lambda: any(p.requires_grad for p in mine_vae.parameters())):
        raise AssertionError("Exercise 4.6: the VAE's parameters still require gradients: freeze it (vae.freeze, "
                             "or requires_grad_(False) on each parameter) so that nothing downstream trains it.")
    mu = vae.encoder_means(base, images)
    if not close(scale, want_scale):
        slips = [(mu.std(dim=0), "scale should be ONE number, the standard deviation of all the latents' entries "
                                 "together, not one per latent dimension."),
                 (mu.var(), "scale is the standard deviation of the latents, not their variance."),
                 (mu.abs().max(), "scale is the standard deviation of the latents, not their largest value.")]
        raise mismatch("4.6", "scale", scale, want_scale, "for the test VAE and images", slips,
                       hint="Encode every image to its encoder mean (no sampling) and take the standard deviation "
                            "of all those numbers.")
    if not close(observe("the trained model's weights", lambda: _weights(model)), _weights(want_model), rtol=1e-3,
                 atol=1e-4):
        raise AssertionError(
            "Exercise 4.6: scale is right, but the trained diffusion model's weights differ from the reference's "
            f"after {budget.steps} steps of train.fit. Make the DiffusionModel from `config` (the check seeds the "
            "random state just before calling you, so draw nothing else first), and train it with "
            "train.fit(model, latents, budget) on the encoder MEANS divided by scale (a sampled z, or unscaled "
            "latents, train a different model).")
    passed("latent diffusion is assembled right: the VAE frozen, its scaled mean latents, chapter 2's diffusion "
           "trained on them")
